//! The state machine's steps. Each receives a typed request and returns the circuit,
//! updated; the handler only parses the request and dispatches here.

mod backoff;
mod close;
mod failsafe;
mod open;
mod probe;
mod rejitter;

use crate::adapters::signals::{Detail, Signals};
use crate::adapters::store::Store;
use crate::adapters::Clients;
use crate::circuit::Circuit;
use crate::core::Config;
use crate::error::StepError;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

pub use backoff::{backoff, MAX_PROBES_PER_EXECUTION};
pub use close::{close, give_up};
pub use failsafe::failsafe;
pub use open::open;
pub use probe::probe;
pub use rejitter::{check_backlog, ensure_rejitter_off, start_rejitter, stop_rejitter};

/// What the state machine sends: `{"step": "...", ...}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Request {
    Open {
        event: Value,
        execution: String,
    },
    Probe {
        circuit: Circuit,
    },
    Backoff {
        circuit: Circuit,
    },
    Close {
        circuit: Circuit,
    },
    GiveUp {
        circuit: Circuit,
    },
    StartRejitter {
        circuit: Circuit,
    },
    CheckBacklog {
        circuit: Circuit,
    },
    StopRejitter {
        circuit: Circuit,
    },
    Failsafe {
        execution: String,
        #[serde(default)]
        error: Value,
    },
}

impl Request {
    pub fn name(&self) -> &'static str {
        match self {
            Request::Open { .. } => "open",
            Request::Probe { .. } => "probe",
            Request::Backoff { .. } => "backoff",
            Request::Close { .. } => "close",
            Request::GiveUp { .. } => "give_up",
            Request::StartRejitter { .. } => "start_rejitter",
            Request::CheckBacklog { .. } => "check_backlog",
            Request::StopRejitter { .. } => "stop_rejitter",
            Request::Failsafe { .. } => "failsafe",
        }
    }

    pub fn execution(&self) -> &str {
        match self {
            Request::Open { execution, .. } | Request::Failsafe { execution, .. } => execution,
            Request::Probe { circuit }
            | Request::Backoff { circuit }
            | Request::Close { circuit }
            | Request::GiveUp { circuit }
            | Request::StartRejitter { circuit }
            | Request::CheckBacklog { circuit }
            | Request::StopRejitter { circuit } => &circuit.execution,
        }
    }
}

/// Everything a step needs from outside: configuration, clients, a clock and a source of
/// randomness (both injectable, so steps are testable).
#[derive(Clone)]
pub struct Context {
    pub config: Config,
    pub clients: Clients,
    /// Now, in epoch milliseconds.
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// A uniform draw in [0, 1).
    pub random: Arc<dyn Fn() -> f64 + Send + Sync>,
    /// Pause between polls of a mapping's state.
    pub poll: Duration,
}

impl Context {
    pub fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    pub fn store(&self) -> Store {
        Store {
            dynamodb: self.clients.dynamodb.clone(),
            table: self.config.circuit_table.clone(),
        }
    }

    pub fn signals(&self) -> Signals {
        Signals {
            eventbridge: self.clients.eventbridge.clone(),
            cloudwatch: self.clients.cloudwatch.clone(),
            event_bus: self.config.event_bus.clone(),
            namespace: self.config.metrics_namespace.clone(),
        }
    }

    pub fn settle_timeout(&self) -> Duration {
        Duration::from_secs(self.config.settle_timeout_seconds.into())
    }

    pub fn detail(&self, circuit: &Circuit, reason: &str) -> Detail {
        Detail {
            mapping: circuit.mapping.uuid.clone(),
            queue: circuit.queue_arn.clone(),
            function: self.config.consumer_function.clone(),
            execution: circuit.execution.clone(),
            attempt: circuit.attempt,
            reason: reason.to_string(),
        }
    }
}

/// Runs one step.
pub async fn run(ctx: &Context, request: Request) -> Result<Value, StepError> {
    let circuit = match request {
        Request::Open { event, execution } => open(ctx, &event, &execution).await?,
        Request::Probe { circuit } => probe(ctx, circuit).await?,
        Request::Backoff { circuit } => backoff(ctx, circuit).await?,
        Request::Close { circuit } => close(ctx, circuit).await?,
        Request::GiveUp { circuit } => give_up(ctx, circuit).await?,
        Request::StartRejitter { circuit } => start_rejitter(ctx, circuit).await?,
        Request::CheckBacklog { circuit } => check_backlog(ctx, circuit).await?,
        Request::StopRejitter { circuit } => stop_rejitter(ctx, circuit).await?,
        Request::Failsafe { execution, error } => {
            return failsafe(ctx, &execution, &error).await;
        }
    };
    serde_json::to_value(circuit)
        .map_err(|e| StepError::Fatal(format!("serialising the circuit: {e}")))
}
