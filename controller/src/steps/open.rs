//! OpenCircuit: check the alarm event, take the circuit, disable the consumer's mapping and
//! wait until it is Disabled.

use super::Context;
use crate::adapters::signals::Transition;
use crate::adapters::store::Acquire;
use crate::adapters::{mapping, queue};
use crate::circuit::{Circuit, OpenStatus};
use crate::core::{alarm_transition, oldest_sent_ms};
use crate::error::StepError;
use serde_json::Value;
use std::time::{Duration, UNIX_EPOCH};

/// Seconds added to the consumer's timeout for the probe message's visibility, so the
/// message cannot reappear while the consumer still works on it.
const PROBE_VISIBILITY_MARGIN_SECONDS: u32 = 30;

/// Mapping states that end in Enabled without anyone's action.
const SETTLING_TOWARDS_ENABLED: [&str; 3] = ["Creating", "Enabling", "Updating"];

pub async fn open(ctx: &Context, event: &Value, execution: &str) -> Result<Circuit, StepError> {
    let transition = alarm_transition(event, &ctx.config.alarm_name)
        .map_err(|e| StepError::InvalidEvent(e.to_string()))?;
    let queue_arn = ctx
        .config
        .queue()
        .map_err(|e| StepError::Config(e.to_string()))?;
    let lambda = &ctx.clients.lambda;
    let found = mapping::find(lambda, &ctx.config.queue_arn, &ctx.config.consumer_function).await?;
    // A mapping on its way to Enabled (a deploy of the consumer during the outage, say) is
    // not an operator's choice: wait for it (the state machine retries MappingNotSettled)
    // rather than leave the consumer unprotected while the alarm stays in ALARM.
    if SETTLING_TOWARDS_ENABLED.contains(&found.state.as_str()) {
        return Err(StepError::MappingNotSettled {
            mapping: found.uuid.clone(),
            wanted: "Enabled".into(),
            actual: found.state.clone(),
            seconds: 0,
        });
    }
    let info = queue::describe(&ctx.clients.sqs, &queue_arn.name, &queue_arn.account).await?;
    let now = ctx.now_ms();

    let mut circuit = Circuit {
        status: OpenStatus::Opened,
        execution: execution.to_string(),
        mapping: found.clone(),
        queue_url: info.url,
        queue_arn: ctx.config.queue_arn.clone(),
        region: queue_arn.region.clone(),
        opened_at_ms: now,
        oldest_sent_ms: now,
        retention_seconds: info.retention_seconds,
        probe_visibility_seconds: 0,
        attempt: 0,
        last_probe: String::new(),
        wait_seconds: 0,
        backoff_ceiling_seconds: 0,
        next: None,
        reason: format!("alarm {}: {}", transition.alarm_name, transition.reason),
        rejitter: None,
    };

    let store = ctx.store();
    let snapshot = match store.acquire(&found.uuid, execution, now, &found).await? {
        Acquire::HeldBy(owner) => {
            tracing::info!(mapping = %found.uuid, owner = %owner, "circuit already owned; nothing to do");
            circuit.status = OpenStatus::AlreadyOpen;
            circuit.reason = format!("execution {owner} owns this circuit");
            return Ok(circuit);
        }
        Acquire::Acquired(snapshot) => snapshot,
    };
    // Only a mapping that was Enabled when the circuit was taken is the breaker's to open;
    // anything else (Disabled by an operator, mid-update) is left exactly as it is.
    if snapshot.state != "Enabled" {
        store.release(&found.uuid, execution, now).await?;
        tracing::info!(mapping = %found.uuid, state = %snapshot.state, "mapping not enabled; left alone");
        circuit.status = OpenStatus::MappingNotEnabled;
        circuit.reason = format!(
            "the mapping was {}, not Enabled; it is left alone",
            snapshot.state
        );
        return Ok(circuit);
    }
    circuit.mapping = snapshot;

    // Disabling: a retry of this step after MappingNotSettled; Lambda refuses to update a
    // mapping in a transitional state (ResourceInUseException), so only wait.
    if found.state != "Disabled" && found.state != "Disabling" {
        mapping::disable(lambda, &found.uuid).await?;
    }
    mapping::wait_for_state(
        lambda,
        &found.uuid,
        "Disabled",
        ctx.settle_timeout(),
        ctx.poll,
    )
    .await?;

    let consumer_timeout =
        crate::adapters::consumer::timeout_seconds(lambda, &circuit.mapping.function_arn).await?;
    circuit.probe_visibility_seconds = consumer_timeout + PROBE_VISIBILITY_MARGIN_SECONDS;
    let age = queue::oldest_message_age_seconds(
        &ctx.clients.cloudwatch,
        &queue_arn.name,
        UNIX_EPOCH + Duration::from_millis(now),
    )
    .await?;
    circuit.oldest_sent_ms = oldest_sent_ms(now, age, []);
    circuit.wait_seconds = ctx.config.backoff.delay(0, (ctx.random)());
    circuit.backoff_ceiling_seconds = ctx.config.backoff.ceiling(0);

    ctx.signals()
        .emit(
            Transition::CircuitOpened,
            &ctx.detail(&circuit, &circuit.reason),
        )
        .await?;
    tracing::info!(mapping = %circuit.mapping.uuid, wait_seconds = circuit.wait_seconds, "circuit opened");
    Ok(circuit)
}
