//! The consumer function: its timeout, the probe invocation, the optional health check.

use crate::error::StepError;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_lambda::config::retry::RetryConfig;
use aws_sdk_lambda::config::timeout::TimeoutConfig;
use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use std::time::Duration;

/// What one synchronous invocation returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub function_error: Option<String>,
    pub payload: Vec<u8>,
}

/// The consumer's timeout in seconds (`function_arn` may carry a qualifier).
pub async fn timeout_seconds(
    lambda: &aws_sdk_lambda::Client,
    function_arn: &str,
) -> Result<u32, StepError> {
    let out = lambda
        .get_function_configuration()
        .function_name(function_arn)
        .send()
        .await
        .map_err(|e| StepError::aws("GetFunctionConfiguration", e))?;
    // Lambda's default timeout, should the field be missing.
    Ok(out.timeout().unwrap_or(3).max(1) as u32)
}

/// The function error a probe records when the consumer did not answer in time.
pub const NO_ANSWER: &str = "NoAnswer";

async fn invoke(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    payload: Vec<u8>,
    timeout: Option<Duration>,
) -> Result<Invocation, StepError> {
    let mut call = lambda
        .invoke()
        .function_name(function)
        .invocation_type(InvocationType::RequestResponse)
        .payload(Blob::new(payload))
        .customize();
    if let Some(timeout) = timeout {
        // One attempt, bounded: an SDK retry would hand the consumer the record again.
        call = call.config_override(
            aws_sdk_lambda::config::Config::builder()
                .timeout_config(
                    TimeoutConfig::builder()
                        .operation_timeout(timeout)
                        .operation_attempt_timeout(timeout)
                        .build(),
                )
                .retry_config(RetryConfig::disabled()),
        );
    }
    let out = match call.send().await {
        Ok(out) => out,
        Err(SdkError::TimeoutError(_)) => {
            let waited = timeout.unwrap_or_default().as_secs();
            return Ok(Invocation {
                function_error: Some(NO_ANSWER.into()),
                payload: format!("the consumer did not answer within {waited} s").into_bytes(),
            });
        }
        Err(e) => return Err(StepError::aws("Invoke", e)),
    };
    Ok(Invocation {
        function_error: out.function_error().map(str::to_string),
        payload: out
            .payload()
            .map(|p| p.as_ref().to_vec())
            .unwrap_or_default(),
    })
}

/// Hands the consumer one record, exactly as its event source mapping would, and waits for
/// its answer at most `timeout`.
pub async fn invoke_with_record(
    lambda: &aws_sdk_lambda::Client,
    function_arn: &str,
    record: SqsMessage,
    timeout: Duration,
) -> Result<Invocation, StepError> {
    let mut event = SqsEvent::default();
    event.records = vec![record];
    let payload = serde_json::to_vec(&event)
        .map_err(|e| StepError::Fatal(format!("serialising the probe event: {e}")))?;
    invoke(lambda, function_arn, payload, Some(timeout)).await
}

/// Invokes the health-check function with an empty object; healthy means no function error.
pub async fn health_check(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
) -> Result<bool, StepError> {
    let out = invoke(lambda, function, b"{}".to_vec(), None).await?;
    Ok(out.function_error.is_none())
}

/// The consumer's `AWS/Lambda` `Errors` (Sum) from the start of the minute holding
/// `from_ms` until now: CloudWatch keeps Lambda metrics per minute, so the first minute may
/// hold errors from before `from_ms` (the caller subtracts what it held at the start).
pub async fn errors_since(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    function: &str,
    from_ms: u64,
    now_ms: u64,
) -> Result<u64, StepError> {
    use aws_sdk_cloudwatch::primitives::DateTime;
    let minute = 60_000;
    let start = from_ms / minute * minute;
    // The end is exclusive: reach past the current minute.
    let end = (now_ms / minute + 1) * minute;
    let datapoints = metric_statistics(
        cloudwatch,
        ("AWS/Lambda", "Errors"),
        ("FunctionName", function),
        DateTime::from_millis(start as i64),
        DateTime::from_millis(end as i64),
        aws_sdk_cloudwatch::types::Statistic::Sum,
    )
    .await?;
    Ok(datapoints
        .iter()
        .filter_map(|d| d.sum())
        .sum::<f64>()
        .max(0.0)
        .round() as u64)
}

/// One statistic of one metric with one dimension, per minute, between `start` and `end`.
pub(crate) async fn metric_statistics(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    (namespace, metric): (&str, &str),
    (dimension, value): (&str, &str),
    start: aws_sdk_cloudwatch::primitives::DateTime,
    end: aws_sdk_cloudwatch::primitives::DateTime,
    statistic: aws_sdk_cloudwatch::types::Statistic,
) -> Result<Vec<aws_sdk_cloudwatch::types::Datapoint>, StepError> {
    use aws_sdk_cloudwatch::types::Dimension;
    let out = cloudwatch
        .get_metric_statistics()
        .namespace(namespace)
        .metric_name(metric)
        .dimensions(Dimension::builder().name(dimension).value(value).build())
        .start_time(start)
        .end_time(end)
        .period(60)
        .statistics(statistic)
        .send()
        .await
        .map_err(|e| StepError::aws("GetMetricStatistics", e))?;
    Ok(out.datapoints().to_vec())
}
