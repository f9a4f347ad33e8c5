//! The consumer's SQS event source mapping: find it, switch it, wait for it to settle.

use crate::circuit::MappingSnapshot;
use crate::error::StepError;
use aws_sdk_lambda::types::{FunctionResponseType, ScalingConfig};
use std::time::{Duration, Instant};

/// List and Get return different types with the same getters.
macro_rules! snapshot {
    ($m:expr) => {
        MappingSnapshot {
            uuid: $m.uuid().unwrap_or_default().to_string(),
            function_arn: $m.function_arn().unwrap_or_default().to_string(),
            event_source_arn: $m.event_source_arn().unwrap_or_default().to_string(),
            state: $m.state().unwrap_or_default().to_string(),
            batch_size: $m.batch_size(),
            maximum_batching_window_in_seconds: $m.maximum_batching_window_in_seconds(),
            function_response_types: $m
                .function_response_types()
                .iter()
                .map(|t| t.as_str().to_string())
                .collect(),
            maximum_concurrency: $m.scaling_config().and_then(|s| s.maximum_concurrency()),
        }
    };
}

/// The one mapping from `queue_arn` to `function`; none or several is an error.
pub async fn find(
    lambda: &aws_sdk_lambda::Client,
    queue_arn: &str,
    function: &str,
) -> Result<MappingSnapshot, StepError> {
    let mut found = Vec::new();
    let mut pages = lambda
        .list_event_source_mappings()
        .event_source_arn(queue_arn)
        .function_name(function)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| StepError::aws("ListEventSourceMappings", e))?;
        found.extend(page.event_source_mappings().iter().map(|m| snapshot!(m)));
    }
    match found.len() {
        0 => Err(StepError::MappingNotFound {
            queue: queue_arn.to_string(),
            function: function.to_string(),
        }),
        1 => Ok(found.remove(0)),
        count => Err(StepError::SeveralMappings {
            queue: queue_arn.to_string(),
            function: function.to_string(),
            count,
        }),
    }
}

pub async fn get(
    lambda: &aws_sdk_lambda::Client,
    uuid: &str,
) -> Result<MappingSnapshot, StepError> {
    let out = lambda
        .get_event_source_mapping()
        .uuid(uuid)
        .send()
        .await
        .map_err(|e| StepError::aws("GetEventSourceMapping", e))?;
    Ok(snapshot!(out))
}

/// Disables the mapping. Only `Enabled` changes: the rest of its configuration stays.
pub async fn disable(lambda: &aws_sdk_lambda::Client, uuid: &str) -> Result<(), StepError> {
    set_enabled(lambda, uuid, false).await
}

/// Switches the mapping on or off, changing nothing else.
pub async fn set_enabled(
    lambda: &aws_sdk_lambda::Client,
    uuid: &str,
    enabled: bool,
) -> Result<(), StepError> {
    lambda
        .update_event_source_mapping()
        .uuid(uuid)
        .enabled(enabled)
        .send()
        .await
        .map_err(|e| StepError::aws("UpdateEventSourceMapping", e))?;
    Ok(())
}

/// Enables the mapping with the configuration it had when the circuit opened.
pub async fn restore(
    lambda: &aws_sdk_lambda::Client,
    snapshot: &MappingSnapshot,
) -> Result<(), StepError> {
    let mut update = lambda
        .update_event_source_mapping()
        .uuid(&snapshot.uuid)
        .enabled(true)
        .set_batch_size(snapshot.batch_size)
        .set_maximum_batching_window_in_seconds(snapshot.maximum_batching_window_in_seconds)
        .set_function_response_types(Some(
            snapshot
                .function_response_types
                .iter()
                .map(|t| FunctionResponseType::from(t.as_str()))
                .collect(),
        ));
    if let Some(max) = snapshot.maximum_concurrency {
        update = update.scaling_config(ScalingConfig::builder().maximum_concurrency(max).build());
    }
    update
        .send()
        .await
        .map_err(|e| StepError::aws("UpdateEventSourceMapping", e))?;
    Ok(())
}

/// Waits until the mapping's State is `wanted` (updates are asynchronous in AWS).
pub async fn wait_for_state(
    lambda: &aws_sdk_lambda::Client,
    uuid: &str,
    wanted: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<MappingSnapshot, StepError> {
    let started = Instant::now();
    loop {
        let current = get(lambda, uuid).await?;
        if current.state == wanted {
            return Ok(current);
        }
        if started.elapsed() >= timeout {
            return Err(StepError::MappingNotSettled {
                mapping: uuid.to_string(),
                wanted: wanted.to_string(),
                actual: current.state,
                seconds: timeout.as_secs() as u32,
            });
        }
        tokio::time::sleep(poll).await;
    }
}
