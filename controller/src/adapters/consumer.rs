//! The consumer function: its timeout, the probe invocation, the optional health check.

use crate::error::StepError;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;

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

async fn invoke(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    payload: Vec<u8>,
) -> Result<Invocation, StepError> {
    let out = lambda
        .invoke()
        .function_name(function)
        .invocation_type(InvocationType::RequestResponse)
        .payload(Blob::new(payload))
        .send()
        .await
        .map_err(|e| StepError::aws("Invoke", e))?;
    Ok(Invocation {
        function_error: out.function_error().map(str::to_string),
        payload: out
            .payload()
            .map(|p| p.as_ref().to_vec())
            .unwrap_or_default(),
    })
}

/// Hands the consumer one record, exactly as its event source mapping would.
pub async fn invoke_with_record(
    lambda: &aws_sdk_lambda::Client,
    function_arn: &str,
    record: SqsMessage,
) -> Result<Invocation, StepError> {
    let mut event = SqsEvent::default();
    event.records = vec![record];
    let payload = serde_json::to_vec(&event)
        .map_err(|e| StepError::Fatal(format!("serialising the probe event: {e}")))?;
    invoke(lambda, function_arn, payload).await
}

/// Invokes the health-check function with an empty object; healthy means no function error.
pub async fn health_check(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
) -> Result<bool, StepError> {
    let out = invoke(lambda, function, b"{}".to_vec()).await?;
    Ok(out.function_error.is_none())
}
