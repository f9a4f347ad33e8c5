//! The state machine's steps. Each receives a typed request and returns the circuit,
//! updated; the handler only parses the request and dispatches here.

mod backoff;
mod close;
pub mod end;
mod failsafe;
pub mod fleet;
mod hold;
mod open;
mod probe;
mod recover;
mod rejitter;
mod slow_start;

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

pub use backoff::backoff;
pub use close::{check_hold, close, give_up, rearm, release};
pub use failsafe::failsafe;
pub use fleet::{AssumedRoles, Fleet, Roles};
pub use open::open;
pub use probe::probe;
pub use recover::recover;
pub use rejitter::{check_backlog, ensure_rejitter_off, start_rejitter, stop_rejitter};
pub use slow_start::{ramp_up, reopen, start_slow_start};

/// The detail-type of the event Step Functions sends when an execution's status changes;
/// the breaker's rule delivers it to the controller as it is, and it runs the recovery.
pub const EXECUTION_STATUS_CHANGE: &str = "Step Functions Execution Status Change";

/// What the state machine sends, `{"step": "...", "retries": n, ...}`, or the execution
/// status event that starts a recovery.
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
    /// The consumer is healthy: half-open the circuit with a capped mapping.
    StartSlowStart {
        circuit: Circuit,
    },
    /// One step of the slow start's ramp.
    RampUp {
        circuit: Circuit,
    },
    /// The consumer failed during the slow start: disable the mapping again.
    Reopen {
        circuit: Circuit,
    },
    /// The circuit was ended by someone else: release what the breaker still holds.
    Release {
        circuit: Circuit,
    },
    /// The cooldown is over: reset the alarm so the next outage opens a circuit.
    Rearm {
        circuit: Circuit,
    },
    /// A circuit held open by hand: still held?
    CheckHold {
        circuit: Circuit,
    },
    Failsafe {
        execution: String,
        #[serde(default)]
        error: Value,
    },
    /// An execution ended (`status`): close whatever circuit it left open.
    Recover {
        execution: String,
        status: String,
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
            Request::StartSlowStart { .. } => "start_slow_start",
            Request::RampUp { .. } => "ramp_up",
            Request::Reopen { .. } => "reopen",
            Request::Release { .. } => "release",
            Request::Rearm { .. } => "rearm",
            Request::CheckHold { .. } => "check_hold",
            Request::Failsafe { .. } => "failsafe",
            Request::Recover { .. } => "recover",
        }
    }

    /// Reads a step request and the number of failed attempts before this one
    /// (`$$.State.RetryCount`), or an execution status event as a recovery request.
    pub fn parse(payload: Value) -> Result<(Request, u32), String> {
        if payload.get("detail-type").and_then(Value::as_str) == Some(EXECUTION_STATUS_CHANGE) {
            let field = |name: &str| {
                payload
                    .pointer(&format!("/detail/{name}"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| format!("the execution status event has no detail.{name}"))
            };
            let request = Request::Recover {
                execution: field("executionArn")?,
                status: field("status")?,
            };
            return Ok((request, 0));
        }
        let retries = payload
            .get("retries")
            .and_then(Value::as_u64)
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
        let request = serde_json::from_value(payload).map_err(|e| e.to_string())?;
        Ok((request, retries))
    }

    /// The circuit a step request carries (`None` for the open, the failsafe and the
    /// recovery, which find theirs).
    pub fn circuit(&self) -> Option<&Circuit> {
        match self {
            Request::Open { .. } | Request::Failsafe { .. } | Request::Recover { .. } => None,
            Request::Probe { circuit }
            | Request::Backoff { circuit }
            | Request::Close { circuit }
            | Request::GiveUp { circuit }
            | Request::StartRejitter { circuit }
            | Request::CheckBacklog { circuit }
            | Request::StopRejitter { circuit }
            | Request::StartSlowStart { circuit }
            | Request::RampUp { circuit }
            | Request::Reopen { circuit }
            | Request::Release { circuit }
            | Request::Rearm { circuit }
            | Request::CheckHold { circuit } => Some(circuit),
        }
    }

    pub fn execution(&self) -> &str {
        match self {
            Request::Open { execution, .. }
            | Request::Failsafe { execution, .. }
            | Request::Recover { execution, .. } => execution,
            Request::Probe { circuit }
            | Request::Backoff { circuit }
            | Request::Close { circuit }
            | Request::GiveUp { circuit }
            | Request::StartRejitter { circuit }
            | Request::CheckBacklog { circuit }
            | Request::StopRejitter { circuit }
            | Request::StartSlowStart { circuit }
            | Request::RampUp { circuit }
            | Request::Reopen { circuit }
            | Request::Release { circuit }
            | Request::Rearm { circuit }
            | Request::CheckHold { circuit } => &circuit.execution,
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
    /// When this invocation's Lambda time runs out, in epoch milliseconds (`None` in tests):
    /// the probe stops waiting for a hanging consumer before it.
    pub deadline_ms: Option<u64>,
    /// The deployment's attachments: resolving a request's consumer (`for_consumer`).
    pub fleet: Fleet,
}

impl Context {
    /// A context on AWS (or whatever endpoint `sdk` names): the wall clock, real randomness,
    /// half-second polls, no invocation deadline.
    pub fn live(config: Config, sdk: &aws_config::SdkConfig) -> Context {
        Context {
            config,
            clients: Clients::new(sdk),
            clock: Arc::new(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0)
            }),
            random: Arc::new(rand::random::<f64>),
            poll: Duration::from_millis(500),
            deadline_ms: None,
            fleet: Fleet::default(),
        }
    }

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
        let own = self.fleet.own.as_ref().unwrap_or(&self.clients);
        Signals {
            eventbridge: own.eventbridge.clone(),
            cloudwatch: own.cloudwatch.clone(),
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

/// Runs one step; `retries` is how many attempts of it failed before this one. A circuit's
/// step runs with the consumer its circuit was opened for.
pub async fn run(ctx: &Context, request: Request, retries: u32) -> Result<Value, StepError> {
    let resolved;
    let ctx = match request.circuit() {
        Some(circuit) => {
            resolved = ctx.for_consumer(circuit.attachment.as_ref()).await?;
            &resolved
        }
        None => ctx,
    };
    let circuit = match request {
        Request::Open { event, execution } => open(ctx, &event, &execution, retries).await?,
        Request::Probe { circuit } => probe(ctx, circuit, retries).await?,
        Request::Backoff { circuit } => backoff(ctx, circuit, retries).await?,
        Request::Close { circuit } => close(ctx, circuit).await?,
        Request::GiveUp { circuit } => give_up(ctx, circuit).await?,
        Request::StartRejitter { circuit } => start_rejitter(ctx, circuit, retries).await?,
        Request::CheckBacklog { circuit } => check_backlog(ctx, circuit, retries).await?,
        Request::StopRejitter { circuit } => stop_rejitter(ctx, circuit).await?,
        Request::StartSlowStart { circuit } => start_slow_start(ctx, circuit, retries).await?,
        Request::RampUp { circuit } => ramp_up(ctx, circuit, retries).await?,
        Request::Reopen { circuit } => reopen(ctx, circuit, retries).await?,
        Request::Release { circuit } => release(ctx, circuit).await?,
        Request::Rearm { circuit } => rearm(ctx, circuit).await?,
        Request::CheckHold { circuit } => check_hold(ctx, circuit, retries).await?,
        Request::Failsafe { execution, error } => {
            return failsafe(ctx, &execution, &error).await;
        }
        Request::Recover { execution, status } => {
            return recover(ctx, &execution, &status).await;
        }
    };
    serde_json::to_value(circuit)
        .map_err(|e| StepError::Fatal(format!("serialising the circuit: {e}")))
}
