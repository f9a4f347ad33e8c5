//! Event source mappings: find the consumer's (only when a circuit opens), read one, switch
//! one on or off once it has settled.

use crate::circuit::{Changed, MappingSnapshot};
use crate::error::StepError;
use aws_sdk_lambda::error::ProvideErrorMetadata;
use std::time::{Duration, Instant};

/// A mapping as read now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub uuid: String,
    pub function_arn: String,
    pub event_source_arn: String,
    pub state: String,
    pub function_response_types: Vec<String>,
    /// `ScalingConfig.MaximumConcurrency` (`None`: no cap).
    pub maximum_concurrency: Option<u32>,
    /// The mapping runs in provisioned mode (`ProvisionedPollerConfig`).
    pub provisioned: bool,
    /// Records per batch (SQS's default, 10, when the mapping does not say).
    pub batch_size: u32,
}

impl Mapping {
    pub fn reports_batch_item_failures(&self) -> bool {
        self.function_response_types
            .iter()
            .any(|t| t == "ReportBatchItemFailures")
    }

    pub fn snapshot(&self, changed: Changed) -> MappingSnapshot {
        MappingSnapshot {
            uuid: self.uuid.clone(),
            function_arn: self.function_arn.clone(),
            event_source_arn: self.event_source_arn.clone(),
            state: self.state.clone(),
            changed: Some(changed),
        }
    }
}

/// States a mapping passes through on its own; Lambda refuses updates meanwhile
/// (ResourceInUseException).
const SETTLING: [&str; 5] = ["Creating", "Enabling", "Disabling", "Updating", "Deleting"];

pub fn is_settling(state: &str) -> bool {
    SETTLING.contains(&state)
}

/// List and Get return different types with the same getters.
macro_rules! mapping {
    ($m:expr) => {
        Mapping {
            uuid: $m.uuid().unwrap_or_default().to_string(),
            function_arn: $m.function_arn().unwrap_or_default().to_string(),
            event_source_arn: $m.event_source_arn().unwrap_or_default().to_string(),
            state: $m.state().unwrap_or_default().to_string(),
            function_response_types: $m
                .function_response_types()
                .iter()
                .map(|t| t.as_str().to_string())
                .collect(),
            maximum_concurrency: $m
                .scaling_config()
                .and_then(|c| c.maximum_concurrency())
                .map(|c| c.max(0) as u32),
            provisioned: $m.provisioned_poller_config().is_some(),
            batch_size: $m.batch_size().map_or(10, |b| b.max(1) as u32),
        }
    };
}

/// The one mapping from `queue_arn` to `function`; none or several is an error.
pub async fn find(
    lambda: &aws_sdk_lambda::Client,
    queue_arn: &str,
    function: &str,
) -> Result<Mapping, StepError> {
    let mut found = Vec::new();
    let mut pages = lambda
        .list_event_source_mappings()
        .event_source_arn(queue_arn)
        .function_name(function)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| StepError::aws("ListEventSourceMappings", e))?;
        found.extend(page.event_source_mappings().iter().map(|m| mapping!(m)));
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

/// Reads one mapping; a deleted one is `MappingDeleted`.
pub async fn get(lambda: &aws_sdk_lambda::Client, uuid: &str) -> Result<Mapping, StepError> {
    match lambda.get_event_source_mapping().uuid(uuid).send().await {
        Ok(out) => Ok(mapping!(out)),
        Err(e) if e.code() == Some("ResourceNotFoundException") => Err(StepError::MappingDeleted {
            mapping: uuid.to_string(),
        }),
        Err(e) => Err(StepError::aws("GetEventSourceMapping", e)),
    }
}

/// Waits until the mapping has settled (no deploy or switch in progress) and returns it.
async fn settled(
    lambda: &aws_sdk_lambda::Client,
    uuid: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<Mapping, StepError> {
    let started = Instant::now();
    loop {
        let current = get(lambda, uuid).await?;
        if !is_settling(&current.state) {
            return Ok(current);
        }
        if started.elapsed() >= timeout {
            return Err(StepError::MappingNotSettled {
                mapping: uuid.to_string(),
                wanted: "a settled state".to_string(),
                actual: current.state,
                seconds: timeout.as_secs() as u32,
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// Sets the mapping's `ScalingConfig.MaximumConcurrency` (`None` removes the cap, with an
/// empty `ScalingConfig` as Lambda documents) once it has settled, changing nothing else, and
/// waits until the update has settled. Returns the mapping as it was before the update.
pub async fn set_maximum_concurrency(
    lambda: &aws_sdk_lambda::Client,
    uuid: &str,
    cap: Option<u32>,
    timeout: Duration,
    poll: Duration,
) -> Result<Mapping, StepError> {
    use aws_sdk_lambda::types::ScalingConfig;
    let before = loop {
        let current = settled(lambda, uuid, timeout, poll).await?;
        if current.maximum_concurrency == cap {
            return Ok(current);
        }
        let scaling = ScalingConfig::builder()
            .set_maximum_concurrency(cap.map(|c| c as i32))
            .build();
        let update = lambda
            .update_event_source_mapping()
            .uuid(uuid)
            .scaling_config(scaling)
            .send()
            .await;
        match update {
            Ok(_) => break current,
            Err(e) if e.code() == Some("ResourceInUseException") => tokio::time::sleep(poll).await,
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                return Err(StepError::MappingDeleted {
                    mapping: uuid.to_string(),
                })
            }
            Err(e) => return Err(StepError::aws("UpdateEventSourceMapping", e)),
        }
    };
    settled(lambda, uuid, timeout, poll).await?;
    Ok(before)
}

/// Brings the mapping to Enabled or Disabled and waits until it is there, changing nothing
/// else about it. A mapping in transition (a deploy in progress) is waited for first, and one
/// already in the wanted state is left alone, so a retried step does no harm.
pub async fn switch(
    lambda: &aws_sdk_lambda::Client,
    uuid: &str,
    enabled: bool,
    timeout: Duration,
    poll: Duration,
) -> Result<Mapping, StepError> {
    let wanted = if enabled { "Enabled" } else { "Disabled" };
    let started = Instant::now();
    let mut requested = false;
    loop {
        let current = get(lambda, uuid).await?;
        if current.state == wanted {
            return Ok(current);
        }
        if !requested && !is_settling(&current.state) {
            let update = lambda
                .update_event_source_mapping()
                .uuid(uuid)
                .enabled(enabled)
                .send()
                .await;
            match update {
                Ok(_) => requested = true,
                // It started moving between the read and the update: wait for it.
                Err(e) if e.code() == Some("ResourceInUseException") => {}
                Err(e) if e.code() == Some("ResourceNotFoundException") => {
                    return Err(StepError::MappingDeleted {
                        mapping: uuid.to_string(),
                    })
                }
                Err(e) => return Err(StepError::aws("UpdateEventSourceMapping", e)),
            }
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
