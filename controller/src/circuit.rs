//! The circuit as the workflow carries it from step to step (`$.circuit` in the state
//! machine). Every step receives it and returns it updated.

use crate::core::Next;
use serde::{Deserialize, Serialize};

/// What `OpenCircuit` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpenStatus {
    /// This execution disabled the mapping and owns the circuit.
    Opened,
    /// Another execution owns the circuit of this mapping; this one does nothing.
    AlreadyOpen,
    /// The mapping was not enabled (an operator disabled it): the breaker never touches it.
    MappingNotEnabled,
}

/// The mapping's configuration when the breaker opened the circuit; restored on close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingSnapshot {
    pub uuid: String,
    /// The mapping's FunctionArn, qualifier included: probes invoke exactly this.
    pub function_arn: String,
    pub event_source_arn: String,
    pub state: String,
    pub batch_size: Option<i32>,
    pub maximum_batching_window_in_seconds: Option<i32>,
    #[serde(default)]
    pub function_response_types: Vec<String>,
    pub maximum_concurrency: Option<i32>,
}

impl MappingSnapshot {
    pub fn reports_batch_item_failures(&self) -> bool {
        self.function_response_types
            .iter()
            .any(|t| t == "ReportBatchItemFailures")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Circuit {
    pub status: OpenStatus,
    pub execution: String,
    pub mapping: MappingSnapshot,
    pub queue_url: String,
    pub queue_arn: String,
    pub region: String,
    pub opened_at_ms: u64,
    /// Earliest SentTimestamp known to be in the queue: the retention guard's anchor.
    pub oldest_sent_ms: u64,
    pub retention_seconds: u32,
    /// Visibility timeout for the probe message: longer than the consumer may run.
    pub probe_visibility_seconds: u32,
    /// Probes made so far.
    pub attempt: u32,
    /// The last probe's outcome (`Healthy`, `Failed`, `OnlyHidden`, `Empty`, ...), for people
    /// and tools reading the execution.
    #[serde(default)]
    pub last_probe: String,
    /// How long `WaitBeforeProbe` waits next.
    pub wait_seconds: u32,
    /// The upper end of the jitter window `wait_seconds` was drawn from: it doubles per probe
    /// up to the cap, while the draw itself may be shorter than the previous one.
    #[serde(default)]
    pub backoff_ceiling_seconds: u32,
    /// The decision the next Choice state reads.
    pub next: Option<Next>,
    /// Why the last decision was made, for people reading the execution.
    #[serde(default)]
    pub reason: String,
    /// The rejitter phase, once started.
    #[serde(default)]
    pub rejitter: Option<RejitterPhase>,
}

/// The backlog-spreading phase between a healthy probe and closing the circuit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejitterPhase {
    /// The rejitter's own event source mapping on the consumer's queue.
    pub mapping: String,
    pub started_at_ms: u64,
    /// Consecutive readings of an empty visible backlog.
    pub empty_readings: u32,
}
