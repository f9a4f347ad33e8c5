//! What the breaker tells the world: an EventBridge event and a CloudWatch metric for each
//! transition.

use crate::error::StepError;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde::Serialize;

pub const EVENT_SOURCE: &str = "sqs-circuit-breaker";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    CircuitOpened,
    ProbeFailed,
    ProbeSucceeded,
    CircuitClosed,
    CircuitGaveUp,
    /// An execution ended without closing its circuit; the recovery closed it.
    CircuitRecovered,
    /// The consumer failed during the slow start: the mapping is disabled again and probing
    /// resumes.
    CircuitReopened,
    /// The alarm stayed in ALARM although the consumer was healthy right after a close: it
    /// is left as it is rather than re-armed into another circuit.
    AlarmNotClearing,
    /// The rejitter spread nothing for the stall window: the phase ends early.
    RejitterStalled,
}

impl Transition {
    /// The EventBridge detail-type.
    pub fn detail_type(self) -> &'static str {
        match self {
            Transition::CircuitOpened => "Circuit Opened",
            Transition::ProbeFailed => "Probe Failed",
            Transition::ProbeSucceeded => "Probe Succeeded",
            Transition::CircuitClosed => "Circuit Closed",
            Transition::CircuitGaveUp => "Circuit Gave Up",
            Transition::CircuitRecovered => "Circuit Recovered",
            Transition::CircuitReopened => "Circuit Reopened",
            Transition::AlarmNotClearing => "Alarm Not Clearing",
            Transition::RejitterStalled => "Rejitter Stalled",
        }
    }

    /// The CloudWatch metric name.
    pub fn metric(self) -> &'static str {
        match self {
            Transition::CircuitOpened => "CircuitOpened",
            Transition::ProbeFailed => "ProbeFailed",
            Transition::ProbeSucceeded => "ProbeSucceeded",
            Transition::CircuitClosed => "CircuitClosed",
            Transition::CircuitGaveUp => "CircuitGaveUp",
            Transition::CircuitRecovered => "CircuitRecovered",
            Transition::CircuitReopened => "CircuitReopened",
            Transition::AlarmNotClearing => "AlarmNotClearing",
            Transition::RejitterStalled => "RejitterStalled",
        }
    }
}

/// The event's detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detail {
    pub mapping: String,
    pub queue: String,
    pub function: String,
    pub execution: String,
    pub attempt: u32,
    pub reason: String,
}

/// Where signals go.
#[derive(Debug, Clone)]
pub struct Signals {
    pub eventbridge: aws_sdk_eventbridge::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub event_bus: String,
    pub namespace: String,
}

impl Signals {
    /// Puts the event and the metric. Alerting never steers the circuit: a failure (a deleted
    /// bus, a bus policy, throttling past the SDK's retries) is logged with what was lost,
    /// and the step goes on as if it had been sent.
    pub async fn emit(&self, transition: Transition, detail: &Detail) {
        if let Err(e) = self.put_event(transition, detail).await {
            tracing::error!(
                error = %e,
                lost_event = transition.detail_type(),
                lost_detail = %serde_json::to_string(detail).unwrap_or_default(),
                "could not send the breaker's event"
            );
        }
        if let Err(e) = self.put_metric(transition, detail).await {
            tracing::error!(
                error = %e,
                lost_metric = transition.metric(),
                function = %detail.function,
                "could not put the breaker's metric"
            );
        }
    }

    async fn put_event(&self, transition: Transition, detail: &Detail) -> Result<(), StepError> {
        let body = serde_json::to_string(detail)
            .map_err(|e| StepError::Fatal(format!("serialising event detail: {e}")))?;
        let out = self
            .eventbridge
            .put_events()
            .entries(
                PutEventsRequestEntry::builder()
                    .source(EVENT_SOURCE)
                    .detail_type(transition.detail_type())
                    .detail(body)
                    .event_bus_name(&self.event_bus)
                    .resources(&detail.mapping)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| StepError::aws("PutEvents", e))?;
        if out.failed_entry_count() > 0 {
            let reason = out
                .entries()
                .iter()
                .find_map(|e| e.error_message())
                .unwrap_or("no reason given");
            return Err(StepError::Transient {
                operation: "PutEvents".into(),
                message: reason.to_string(),
            });
        }
        Ok(())
    }

    async fn put_metric(&self, transition: Transition, detail: &Detail) -> Result<(), StepError> {
        self.cloudwatch
            .put_metric_data()
            .namespace(&self.namespace)
            .metric_data(
                MetricDatum::builder()
                    .metric_name(transition.metric())
                    .dimensions(
                        Dimension::builder()
                            .name("ConsumerFunction")
                            .value(&detail.function)
                            .build(),
                    )
                    .unit(StandardUnit::Count)
                    .value(1.0)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| StepError::aws("PutMetricData", e))?;
        Ok(())
    }
}

/// Announces a refused configuration ("Breaker Misconfigured") on `bus`.
pub async fn put_misconfigured(
    eventbridge: &aws_sdk_eventbridge::Client,
    bus: &str,
    detail: &crate::core::deploy_check::Misconfigured,
) -> Result<(), StepError> {
    let body = serde_json::to_string(detail)
        .map_err(|e| StepError::Fatal(format!("serialising event detail: {e}")))?;
    let out = eventbridge
        .put_events()
        .entries(
            PutEventsRequestEntry::builder()
                .source(EVENT_SOURCE)
                .detail_type(crate::core::deploy_check::MISCONFIGURED)
                .detail(body)
                .event_bus_name(bus)
                .build(),
        )
        .send()
        .await
        .map_err(|e| StepError::aws("PutEvents", e))?;
    match out.entries().iter().find_map(|e| e.error_message()) {
        Some(reason) => Err(StepError::Transient {
            operation: "PutEvents".into(),
            message: reason.to_string(),
        }),
        None => Ok(()),
    }
}
