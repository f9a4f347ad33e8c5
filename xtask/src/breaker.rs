//! Driving and watching the deployed breaker: alarm events, executions, their histories.

use anyhow::{Context, Result};
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The "CloudWatch Alarm State Change" event AWS sends to EventBridge when `alarm` moves
/// from OK to ALARM (documented shape; `configuration` trimmed to what the breaker reads).
pub fn alarm_event(alarm: &str, account: &str, region: &str, time: &str) -> Value {
    json!({
        "version": "0",
        "id": format!("alarm-{alarm}-{time}"),
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": account,
        "time": time,
        "region": region,
        "resources": [format!("arn:aws:cloudwatch:{region}:{account}:alarm:{alarm}")],
        "detail": {
            "alarmName": alarm,
            "state": {"value": "ALARM", "reason": "Threshold Crossed", "timestamp": time},
            "previousState": {"value": "OK", "reason": "", "timestamp": time},
            "configuration": {"metrics": []}
        }
    })
}

/// [`alarm_event`] for an ALARM entered now, its state timestamp in milliseconds as
/// CloudWatch writes it (an ALARM raised within the second of a close is not older than it).
pub fn alarm_event_now(alarm: &str, account: &str, region: &str) -> Value {
    let now = epoch_ms(SystemTime::now());
    let mut event = alarm_event(
        alarm,
        account,
        region,
        &crate::emulator_gaps::alarm_evaluation::event_time(now),
    );
    event["detail"]["state"]["timestamp"] =
        crate::emulator_gaps::alarm_evaluation::state_timestamp(now).into();
    event
}

/// Adds what a CloudWatch evaluation writes into an alarm event's `detail.state.reasonData`:
/// the datapoints it evaluated (period start in epoch ms, value), per `period_s`, against
/// `threshold`. An event without it reads as a state set by hand (SetAlarmState).
pub fn with_evaluated_datapoints(
    event: &mut Value,
    statistic: &str,
    period_s: u32,
    threshold: f64,
    evaluated: &[(i64, f64)],
) {
    use crate::emulator_gaps::alarm_evaluation::state_timestamp;
    let points: Vec<Value> = evaluated
        .iter()
        .map(|&(start, value)| {
            json!({"timestamp": state_timestamp(start), "sampleCount": 1.0, "value": value})
        })
        .collect();
    event["detail"]["state"]["reasonData"] = json!({
        "version": "1.0",
        "statistic": statistic,
        "period": period_s,
        "recentDatapoints": evaluated.iter().map(|p| p.1).collect::<Vec<_>>(),
        "threshold": threshold,
        "evaluatedDatapoints": points,
    })
    .to_string()
    .into();
}

/// An alarm event's `time` for the instant `at`, in UTC to the second:
/// `2026-12-01T10:11:12Z`.
pub fn utc_time(at: SystemTime) -> String {
    crate::emulator_gaps::alarm_evaluation::event_time(epoch_ms(at))
}

/// Now, in milliseconds since the Unix epoch: the one wall clock of xtask's tools.
pub fn now_ms() -> i64 {
    epoch_ms(SystemTime::now())
}

/// Milliseconds since the Unix epoch (negative before it).
pub fn epoch_ms(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_millis() as i64,
        Err(before) => -(before.duration().as_millis() as i64),
    }
}

pub async fn start(
    sfn: &aws_sdk_sfn::Client,
    state_machine: &str,
    input: &Value,
) -> Result<String> {
    let out = sfn
        .start_execution()
        .state_machine_arn(state_machine)
        .input(input.to_string())
        .send()
        .await
        .context("StartExecution")?;
    Ok(out.execution_arn().to_string())
}

pub async fn status(sfn: &aws_sdk_sfn::Client, execution: &str) -> Result<ExecutionStatus> {
    let out = sfn
        .describe_execution()
        .execution_arn(execution)
        .send()
        .await
        .context("DescribeExecution")?;
    Ok(out.status().clone())
}

/// Waits until the execution is no longer running; returns its final status.
pub async fn finished(
    sfn: &aws_sdk_sfn::Client,
    execution: &str,
    timeout: Duration,
) -> Result<ExecutionStatus> {
    crate::wait::eventually("the execution to finish", timeout, || async {
        let status = status(sfn, execution).await?;
        Ok((status != ExecutionStatus::Running).then_some(status))
    })
    .await
}

/// One state of an execution (the operator command's live view reads them the same way).
pub use sqs_circuit_breaker::watch::Step as HistoryStep;

/// The states the execution entered, in order.
pub async fn history(sfn: &aws_sdk_sfn::Client, execution: &str) -> Result<Vec<HistoryStep>> {
    Ok(sqs_circuit_breaker::watch::steps(sfn, execution).await?)
}

/// The history events written before `state` was first entered, and how many of them were
/// Task attempts (`TaskScheduled`): what the history budget is checked against.
pub async fn events_before(
    sfn: &aws_sdk_sfn::Client,
    execution: &str,
    state: &str,
) -> Result<(u32, u32)> {
    let (mut events, mut attempts) = (0, 0);
    let read = controller::adapters::execution::HistoryRead::ALL;
    for event in controller::adapters::execution::history(sfn, execution, read).await? {
        if event
            .state_entered_event_details()
            .is_some_and(|d| d.name() == state)
        {
            return Ok((events, attempts));
        }
        events += 1;
        if event.r#type() == &aws_sdk_sfn::types::HistoryEventType::TaskScheduled {
            attempts += 1;
        }
    }
    anyhow::bail!("the execution never entered {state}")
}

/// The names of the states the execution entered, in order.
pub async fn visited_states(sfn: &aws_sdk_sfn::Client, execution: &str) -> Result<Vec<String>> {
    Ok(history(sfn, execution)
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect())
}

pub async fn mapping_state(lambda: &aws_sdk_lambda::Client, uuid: &str) -> Result<String> {
    Ok(mapping(lambda, uuid).await?.state)
}

/// How long each state the execution entered took (entered to exited), in order.
pub async fn state_durations(
    sfn: &aws_sdk_sfn::Client,
    execution: &str,
) -> Result<Vec<(String, Duration)>> {
    Ok(history(sfn, execution)
        .await?
        .into_iter()
        .filter_map(|s| {
            let took = s.exited_ms? - s.entered_ms;
            Some((s.name, Duration::from_millis(took.max(0) as u64)))
        })
        .collect())
}

/// Stops a running execution, as an operator would in the console.
pub async fn stop(sfn: &aws_sdk_sfn::Client, execution: &str, cause: &str) -> Result<()> {
    sfn.stop_execution()
        .execution_arn(execution)
        .error("StoppedByOperator")
        .cause(cause)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "StopExecution {execution}: {}",
                aws_smithy_types::error::display::DisplayErrorContext(e)
            )
        })?;
    Ok(())
}

/// An execution of the state machine as ListExecutions reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub arn: String,
    pub status: ExecutionStatus,
    pub started_ms: i64,
}

/// Every execution of `state_machine`, newest first.
pub async fn executions(sfn: &aws_sdk_sfn::Client, state_machine: &str) -> Result<Vec<Execution>> {
    let all = controller::adapters::execution::list(sfn, state_machine, None, None).await?;
    Ok(all
        .iter()
        .map(|e| Execution {
            arn: e.execution_arn().to_string(),
            status: e.status().clone(),
            started_ms: e.start_date().to_millis().unwrap_or_default(),
        })
        .collect())
}

/// The circuit item the breaker keeps in DynamoDB for one event source mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Circuit {
    /// `OPEN`, `CLOSED` or `GAVE_UP`.
    pub state: String,
    /// The execution ARN that owns (or last owned) the circuit.
    pub owner: Option<String>,
    /// When the circuit entered `state`, epoch milliseconds.
    pub since_ms: Option<i64>,
    pub reason: Option<String>,
}

/// Reads the circuit item of `mapping_id` (consistent read); None when there is none.
pub async fn circuit(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    mapping_id: &str,
) -> Result<Option<Circuit>> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let out = dynamodb
        .get_item()
        .table_name(table)
        .key("mapping_id", AttributeValue::S(mapping_id.to_string()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "GetItem {table}: {}",
                aws_smithy_types::error::display::DisplayErrorContext(e)
            )
        })?;
    let Some(item) = out.item() else {
        return Ok(None);
    };
    let string = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    Ok(Some(Circuit {
        state: string("state").context("the circuit item has no string `state`")?,
        owner: string("owner"),
        since_ms: item
            .get("since_ms")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok()),
        reason: string("reason"),
    }))
}

/// A CloudWatch alarm's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub value: String,
    pub reason: String,
    pub updated_ms: Option<i64>,
}

/// The alarm named `name`, a metric or a composite alarm.
pub async fn alarm(cloudwatch: &aws_sdk_cloudwatch::Client, name: &str) -> Result<Alarm> {
    use aws_sdk_cloudwatch::types::AlarmType;
    let out = cloudwatch
        .describe_alarms()
        .alarm_names(name)
        .alarm_types(AlarmType::MetricAlarm)
        .alarm_types(AlarmType::CompositeAlarm)
        .send()
        .await
        .context("DescribeAlarms")?;
    let found = out
        .metric_alarms()
        .first()
        .map(|a| {
            (
                a.state_value(),
                a.state_reason(),
                a.state_updated_timestamp(),
            )
        })
        .or_else(|| {
            out.composite_alarms().first().map(|a| {
                (
                    a.state_value(),
                    a.state_reason(),
                    a.state_updated_timestamp(),
                )
            })
        });
    let (value, reason, updated) = found.with_context(|| format!("no alarm named {name}"))?;
    Ok(Alarm {
        value: value.map(|s| s.as_str().to_string()).unwrap_or_default(),
        reason: reason.unwrap_or_default().to_string(),
        updated_ms: updated.and_then(|t| t.to_millis().ok()),
    })
}

/// SetAlarmState: `value` is `OK`, `ALARM` or `INSUFFICIENT_DATA`.
pub async fn set_alarm_state(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    name: &str,
    value: &str,
    reason: &str,
) -> Result<()> {
    cloudwatch
        .set_alarm_state()
        .alarm_name(name)
        .state_value(aws_sdk_cloudwatch::types::StateValue::from(value))
        .state_reason(reason)
        .send()
        .await
        .context("SetAlarmState")?;
    Ok(())
}

/// What the breaker and the tests look at in an event source mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub uuid: String,
    pub state: String,
    pub function_arn: String,
    pub batch_size: Option<i32>,
    pub function_response_types: Vec<String>,
    pub last_modified_ms: Option<i64>,
    /// `ScalingConfig.MaximumConcurrency` (`None`: no cap).
    pub maximum_concurrency: Option<i32>,
}

impl Mapping {
    /// The function's name (the ARN's seventh field; a qualifier, if any, follows it).
    pub fn function_name(&self) -> &str {
        self.function_arn.split(':').nth(6).unwrap_or_default()
    }
}

/// Get and List answer with different types that have the same getters.
macro_rules! mapping_of {
    ($m:expr) => {
        Mapping {
            uuid: $m.uuid().unwrap_or_default().to_string(),
            state: $m.state().unwrap_or_default().to_string(),
            function_arn: $m.function_arn().unwrap_or_default().to_string(),
            batch_size: $m.batch_size(),
            function_response_types: $m
                .function_response_types()
                .iter()
                .map(|t| t.as_str().to_string())
                .collect(),
            last_modified_ms: $m.last_modified().and_then(|t| t.to_millis().ok()),
            maximum_concurrency: $m.scaling_config().and_then(|c| c.maximum_concurrency()),
        }
    };
}

pub async fn mapping(lambda: &aws_sdk_lambda::Client, uuid: &str) -> Result<Mapping> {
    let m = lambda
        .get_event_source_mapping()
        .uuid(uuid)
        .send()
        .await
        .context("GetEventSourceMapping")?;
    Ok(mapping_of!(m))
}

/// Sets (or, with `None`, removes) a mapping's `ScalingConfig.MaximumConcurrency`, as its
/// owners would.
pub async fn set_maximum_concurrency(
    lambda: &aws_sdk_lambda::Client,
    uuid: &str,
    cap: Option<i32>,
) -> Result<()> {
    let scaling = aws_sdk_lambda::types::ScalingConfig::builder()
        .set_maximum_concurrency(cap)
        .build();
    lambda
        .update_event_source_mapping()
        .uuid(uuid)
        .scaling_config(scaling)
        .send()
        .await
        .context("UpdateEventSourceMapping ScalingConfig")?;
    Ok(())
}

/// Every event source mapping reading `queue_arn`, whatever its function.
pub async fn queue_mappings(
    lambda: &aws_sdk_lambda::Client,
    queue_arn: &str,
) -> Result<Vec<Mapping>> {
    let mut all = Vec::new();
    let mut pages = lambda
        .list_event_source_mappings()
        .event_source_arn(queue_arn)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.context("ListEventSourceMappings")?;
        all.extend(page.event_source_mappings().iter().map(|m| mapping_of!(m)));
    }
    Ok(all)
}

/// The rejitter's mapping: the one mapping on `queue_arn` whose function is not
/// `consumer_function` (a name).
pub async fn rejitter_mapping(
    lambda: &aws_sdk_lambda::Client,
    queue_arn: &str,
    consumer_function: &str,
) -> Result<Mapping> {
    let others: Vec<Mapping> = queue_mappings(lambda, queue_arn)
        .await?
        .into_iter()
        .filter(|m| m.function_name() != consumer_function)
        .collect();
    match <[Mapping; 1]>::try_from(others) {
        Ok([rejitter]) => Ok(rejitter),
        Err(others) => anyhow::bail!(
            "expected one mapping on {queue_arn} besides {consumer_function}'s (the \
             rejitter's), found {}: {others:?}",
            others.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_formats_an_instant_to_the_second() {
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        assert_eq!(utc_time(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(utc_time(at(1_796_119_872_000)), "2026-12-01T10:11:12Z");
        // Milliseconds are dropped, never rounded up.
        assert_eq!(utc_time(at(1_796_119_872_999)), "2026-12-01T10:11:12Z");
        // A leap day, and the last second of a year.
        assert_eq!(utc_time(at(951_782_400_000)), "2000-02-29T00:00:00Z");
        assert_eq!(utc_time(at(1_798_761_599_000)), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn the_alarm_event_carries_its_time_in_both_places() {
        let event = alarm_event("a", "000000000000", "us-east-1", "2026-12-01T10:11:12Z");
        assert_eq!(event["time"], "2026-12-01T10:11:12Z");
        assert_eq!(
            event["detail"]["state"]["timestamp"],
            "2026-12-01T10:11:12Z"
        );
    }

    #[test]
    fn a_mapping_names_its_function_with_or_without_a_qualifier() {
        let mut m = Mapping {
            uuid: "u".into(),
            state: "Enabled".into(),
            function_arn: "arn:aws:lambda:us-east-1:000000000000:function:consumer".into(),
            batch_size: Some(10),
            function_response_types: vec![],
            last_modified_ms: None,
            maximum_concurrency: None,
        };
        assert_eq!(m.function_name(), "consumer");
        m.function_arn.push_str(":live");
        assert_eq!(m.function_name(), "consumer");
    }
}
