//! The breaker's own workflow executions: whether one runs, its history, the state machine's
//! executions. The operator command and the tests read them here too.

use crate::error::StepError;
use aws_sdk_sfn::error::ProvideErrorMetadata;
use aws_sdk_sfn::types::{ExecutionListItem, ExecutionStatus, HistoryEvent};

/// True while the execution runs; an execution Step Functions does not know has ended.
pub async fn is_running(sfn: &aws_sdk_sfn::Client, execution: &str) -> Result<bool, StepError> {
    Ok(ended(sfn, execution).await?.is_none())
}

/// How the execution ended (`ABORTED`, `FAILED`, ...); `None` while it runs. An execution
/// Step Functions does not know has ended.
pub async fn ended(
    sfn: &aws_sdk_sfn::Client,
    execution: &str,
) -> Result<Option<String>, StepError> {
    match sfn
        .describe_execution()
        .execution_arn(execution)
        .send()
        .await
    {
        Ok(out) if *out.status() == ExecutionStatus::Running => Ok(None),
        Ok(out) => Ok(Some(out.status().as_str().to_string())),
        Err(e) if e.code() == Some("ExecutionDoesNotExist") => Ok(Some("unknown".into())),
        Err(e) => Err(StepError::aws("DescribeExecution", e)),
    }
}

/// The input an execution was started with (`DescribeExecution`): an input that is not JSON
/// is `Value::Null`.
pub async fn input(
    sfn: &aws_sdk_sfn::Client,
    execution: &str,
) -> Result<serde_json::Value, StepError> {
    let out = sfn
        .describe_execution()
        .execution_arn(execution)
        .send()
        .await
        .map_err(|e| StepError::aws("DescribeExecution", e))?;
    Ok(out
        .input()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(serde_json::Value::Null))
}

/// Which of an execution's history events to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRead {
    /// Newest event first (Step Functions' `reverseOrder`).
    pub newest_first: bool,
    /// With each state's input and output (`includeExecutionData`).
    pub with_data: bool,
    /// Stop after this many events; None reads the whole history.
    pub at_most: Option<usize>,
}

impl HistoryRead {
    /// Every event, oldest first, with the states' inputs and outputs.
    pub const ALL: HistoryRead = HistoryRead {
        newest_first: false,
        with_data: true,
        at_most: None,
    };

    /// The newest `n` events, newest first, with data.
    pub fn newest(n: usize) -> HistoryRead {
        HistoryRead {
            newest_first: true,
            with_data: true,
            at_most: Some(n),
        }
    }
}

/// An execution's history events (`GetExecutionHistory`, every page `read` asks for).
pub async fn history(
    sfn: &aws_sdk_sfn::Client,
    execution: &str,
    read: HistoryRead,
) -> Result<Vec<HistoryEvent>, StepError> {
    let mut events = Vec::new();
    let mut request = sfn
        .get_execution_history()
        .execution_arn(execution)
        .reverse_order(read.newest_first)
        .include_execution_data(read.with_data);
    if let Some(n) = read.at_most {
        // One page when it fits in one (a page holds at most 1000 events).
        request = request.max_results(n.clamp(1, 1000) as i32);
    }
    let mut pages = request.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| StepError::aws("GetExecutionHistory", e))?;
        events.extend(page.events().iter().cloned());
        if let Some(n) = read.at_most.filter(|n| events.len() >= *n) {
            events.truncate(n);
            break;
        }
    }
    Ok(events)
}

/// A state machine's executions, newest first (`ListExecutions`): those started at or after
/// `since_ms` (every one, with None), at most `at_most` of them.
pub async fn list(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    since_ms: Option<u64>,
    at_most: Option<usize>,
) -> Result<Vec<ExecutionListItem>, StepError> {
    let mut executions = Vec::new();
    let mut request = sfn.list_executions().state_machine_arn(state_machine_arn);
    if let Some(n) = at_most {
        request = request.max_results(n.clamp(1, 1000) as i32);
    }
    let mut pages = request.into_paginator().send();
    'pages: while let Some(page) = pages.next().await {
        let page = page.map_err(|e| StepError::aws("ListExecutions", e))?;
        for execution in page.executions() {
            let started = execution.start_date().to_millis().unwrap_or_default();
            // Newest first: the rest started earlier still.
            if since_ms.is_some_and(|since| started < since as i64) {
                break 'pages;
            }
            executions.push(execution.clone());
            if at_most.is_some_and(|n| executions.len() >= n) {
                break 'pages;
            }
        }
    }
    Ok(executions)
}
