//! Driving and watching the deployed breaker: alarm events, executions, their histories.

use anyhow::{Context, Result};
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{json, Value};
use std::time::Duration;

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

/// One state of an execution: when it was entered and left (epoch milliseconds), and the
/// output it passed on.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryStep {
    pub name: String,
    pub entered_ms: i64,
    pub exited_ms: Option<i64>,
    pub output: Option<serde_json::Value>,
}

/// The states the execution entered, in order.
pub async fn history(sfn: &aws_sdk_sfn::Client, execution: &str) -> Result<Vec<HistoryStep>> {
    let mut steps: Vec<HistoryStep> = Vec::new();
    let mut pages = sfn
        .get_execution_history()
        .execution_arn(execution)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.context("GetExecutionHistory")?;
        for event in page.events() {
            let at = event.timestamp().to_millis().unwrap_or_default();
            if let Some(entered) = event.state_entered_event_details() {
                steps.push(HistoryStep {
                    name: entered.name().to_string(),
                    entered_ms: at,
                    exited_ms: None,
                    output: None,
                });
            } else if let Some(exited) = event.state_exited_event_details() {
                if let Some(step) = steps
                    .iter_mut()
                    .rev()
                    .find(|s| s.name == exited.name() && s.exited_ms.is_none())
                {
                    step.exited_ms = Some(at);
                    step.output = exited.output().and_then(|o| serde_json::from_str(o).ok());
                }
            }
        }
    }
    Ok(steps)
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
    let out = lambda
        .get_event_source_mapping()
        .uuid(uuid)
        .send()
        .await
        .context("GetEventSourceMapping")?;
    Ok(out.state().unwrap_or_default().to_string())
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
