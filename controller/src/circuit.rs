//! The circuit as the workflow carries it from step to step (`$.circuit` in the state
//! machine). Every step receives it and returns it updated. What the steps act on, though,
//! comes from the circuit item the breaker wrote when it opened (see `adapters::store`): the
//! input only names the circuit.

use crate::core::backlog::Progress;
use crate::core::slow_start::{ConcurrencyChange, Ramp};
use crate::core::Next;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What `OpenCircuit` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpenStatus {
    /// This execution disabled the mapping and owns the circuit.
    Opened,
    /// Another running execution owns the circuit of this mapping; this one does nothing.
    AlreadyOpen,
    /// The mapping was not enabled (an operator disabled it): the breaker never touches it.
    MappingNotEnabled,
    /// The alarm entered ALARM before the circuit's last close: an old or redelivered event
    /// for an outage that is over.
    Stale,
    /// Too many circuits opened on this mapping in the last hour: the breaker stands aside
    /// for `wait_seconds`, then re-arms the alarm.
    CoolingDown,
    /// Opened by hand with hold: the circuit stays open without probing until an operator
    /// closes it (or enables the mapping).
    Held,
    /// The alarm rests only on the last outage's datapoints from before the circuit closed:
    /// the breaker stands aside for `wait_seconds` (until the alarm's window holds none of
    /// them), then re-arms the alarm.
    PastOutage,
}

/// The consumer's mapping as the breaker found it when it opened the circuit, and what the
/// breaker changed on it: the only thing it ever gives back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingSnapshot {
    pub uuid: String,
    /// The mapping's FunctionArn, qualifier included: probes invoke exactly this.
    pub function_arn: String,
    pub event_source_arn: String,
    /// The mapping's state when the circuit opened.
    pub state: String,
    /// The fields the breaker changed, to give back on every end. Absent in circuits opened
    /// by an older breaker, which only ever disabled an Enabled mapping: see `changes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<Changed>,
}

impl MappingSnapshot {
    /// What the breaker changed on the mapping and must give back.
    pub fn changes(&self) -> Changed {
        self.changed.unwrap_or(Changed {
            enabled: self.state == "Enabled",
            maximum_concurrency: None,
        })
    }
}

/// The mapping fields the breaker changed. Everything else about the mapping belongs to its
/// owners (a deploy of the consumer during an outage keeps its batch size, window, response
/// types, concurrency), and the breaker never writes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// The breaker disabled an Enabled mapping: ending the circuit sets `Enabled: true`.
    #[serde(default)]
    pub enabled: bool,
    /// The slow start capped the mapping's `MaximumConcurrency`: ending the circuit gives the
    /// original back while the mapping still has the breaker's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_concurrency: Option<ConcurrencyChange>,
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
    /// The queue's `maxReceiveCount`, when it has a redrive policy: a failed probe never
    /// takes a message to it.
    #[serde(default)]
    pub max_receive_count: Option<u32>,
    /// Visibility timeout for the probe message: longer than the consumer may run.
    pub probe_visibility_seconds: u32,
    /// Probes made so far.
    pub attempt: u32,
    /// Opened by the alarm soon after the last circuit closed (`core::rearm::is_retrip`).
    #[serde(default)]
    pub retrip: bool,
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
    /// Events this execution's history holds so far, counted as AWS writes them (see
    /// `core::history`): the guard that keeps it below the 25,000-event limit.
    #[serde(default)]
    pub history_events: u32,
    /// The slow start (half-open) phase, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<Ramp>,
    /// The attachment this circuit was opened for, with the settings it opened with; `None`
    /// for the deployment's built-in consumer (and in circuits of older controllers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<CircuitAttachment>,
}

/// An attached consumer as its circuit opened: every later step (and the failsafe and the
/// recovery, from the circuit item) rebuilds the consumer's configuration from this alone,
/// so an attachment updated or deleted mid-outage does not change the circuit it opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitAttachment {
    pub id: String,
    /// The attachment's settings (its item's `settings`: keys are the attachment template's
    /// parameter names, `Id` included), over the deployment's defaults.
    pub settings: Value,
    /// The role the consumer's calls run under; `None`: the controller's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

/// The backlog-spreading phase between a healthy probe and closing the circuit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejitterPhase {
    /// The rejitter's own event source mapping on the consumer's queue.
    pub mapping: String,
    pub started_at_ms: u64,
    /// The backlog checks so far, from the baseline read before the rejitter was switched on.
    #[serde(flatten)]
    pub progress: Progress,
}
