//! The rejitter phase: after a healthy probe, switch on the rejitter's mapping so the backlog
//! is re-sent with random delays, wait until the visible backlog is gone, switch it off.

use super::Context;
use crate::adapters::{mapping, queue};
use crate::circuit::{Circuit, RejitterPhase};
use crate::core::after_backlog_check;
use crate::error::StepError;

fn rejitter_function(ctx: &Context) -> Result<&str, StepError> {
    ctx.config
        .rejitter_function
        .as_deref()
        .ok_or_else(|| StepError::Config("the rejitter phase needs REJITTER_FUNCTION_NAME".into()))
}

pub async fn start_rejitter(ctx: &Context, mut circuit: Circuit) -> Result<Circuit, StepError> {
    let lambda = &ctx.clients.lambda;
    let found = mapping::find(lambda, &circuit.queue_arn, rejitter_function(ctx)?).await?;
    // Ask for Enabled even when the mapping says so already: the request is idempotent, and
    // the state read a moment ago is no proof. Only a mapping mid-switch refuses updates.
    if found.state != "Enabling" {
        mapping::set_enabled(lambda, &found.uuid, true).await?;
    }
    mapping::wait_for_state(
        lambda,
        &found.uuid,
        "Enabled",
        ctx.settle_timeout(),
        ctx.poll,
    )
    .await?;
    circuit.rejitter = Some(RejitterPhase {
        mapping: found.uuid,
        started_at_ms: ctx.now_ms(),
        empty_readings: 0,
    });
    circuit.next = None;
    tracing::info!("rejitter started");
    Ok(circuit)
}

pub async fn check_backlog(ctx: &Context, mut circuit: Circuit) -> Result<Circuit, StepError> {
    let visible = queue::visible_messages(&ctx.clients.sqs, &circuit.queue_url).await?;
    let now = ctx.now_ms();
    let phase = circuit
        .rejitter
        .as_mut()
        .ok_or_else(|| StepError::Fatal("CheckBacklog before StartRejitter".into()))?;
    let (streak, next) = after_backlog_check(
        phase.empty_readings,
        visible,
        phase.started_at_ms,
        now,
        ctx.config.rejitter_max_seconds,
    );
    phase.empty_readings = streak;
    circuit.next = Some(next);
    circuit.reason = format!("{visible} messages visible; {streak} empty readings in a row");
    tracing::info!(visible, empty_readings = streak, next = ?next, "backlog checked");
    Ok(circuit)
}

pub async fn stop_rejitter(ctx: &Context, circuit: Circuit) -> Result<Circuit, StepError> {
    let phase = circuit
        .rejitter
        .as_ref()
        .ok_or_else(|| StepError::Fatal("StopRejitter before StartRejitter".into()))?;
    let lambda = &ctx.clients.lambda;
    mapping::set_enabled(lambda, &phase.mapping, false).await?;
    mapping::wait_for_state(
        lambda,
        &phase.mapping,
        "Disabled",
        ctx.settle_timeout(),
        ctx.poll,
    )
    .await?;
    tracing::info!("rejitter stopped");
    Ok(circuit)
}

/// Switches the rejitter's mapping off if it is on (the failsafe's clean-up).
pub async fn ensure_rejitter_off(ctx: &Context, queue_arn: &str) -> Result<bool, StepError> {
    let Some(function) = ctx.config.rejitter_function.as_deref() else {
        return Ok(false);
    };
    let lambda = &ctx.clients.lambda;
    let found = match mapping::find(lambda, queue_arn, function).await {
        Ok(found) => found,
        // No single rejitter mapping (StartRejitter fails so, and lands here): nothing the
        // breaker switched on; the consumer must still be restored.
        Err(StepError::MappingNotFound { .. } | StepError::SeveralMappings { .. }) => {
            return Ok(false)
        }
        Err(e) => return Err(e),
    };
    if found.state == "Disabled" {
        return Ok(false);
    }
    // Lambda refuses to update a mapping in a transitional state: a Disabling one only waits.
    if found.state != "Disabling" {
        mapping::set_enabled(lambda, &found.uuid, false).await?;
    }
    mapping::wait_for_state(
        lambda,
        &found.uuid,
        "Disabled",
        ctx.settle_timeout(),
        ctx.poll,
    )
    .await?;
    Ok(true)
}
