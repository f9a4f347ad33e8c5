//! The rejitter phase: after a healthy probe, switch on the rejitter's mapping so the backlog
//! is re-sent with random delays, wait until the visible backlog is gone, switch it off.

use super::hold::{hold, Hold};
use super::Context;
use crate::adapters::{mapping, queue};
use crate::circuit::{Circuit, RejitterPhase};
use crate::core::history::{no_room_for, task, FLOW_STATE, REJITTER_LOOP_WORST};
use crate::core::Next;
use crate::core::{after_backlog_check, with_slow_start};
use crate::error::StepError;

fn rejitter_function(ctx: &Context) -> Result<&str, StepError> {
    ctx.config
        .rejitter_function
        .as_deref()
        .ok_or_else(|| StepError::Config("the rejitter phase needs REJITTER_FUNCTION_NAME".into()))
}

pub async fn start_rejitter(
    ctx: &Context,
    mut circuit: Circuit,
    retries: u32,
) -> Result<Circuit, StepError> {
    circuit.history_events += task(retries);
    ctx.store()
        .owned(&circuit.mapping.uuid, &circuit.execution)
        .await?;
    let lambda = &ctx.clients.lambda;
    // The rejitter's mapping is the breaker's own (its stack made it), found from the
    // configuration, never from the step's input.
    let found = mapping::find(lambda, &ctx.config.queue_arn, rejitter_function(ctx)?).await?;
    mapping::switch(lambda, &found.uuid, true, ctx.settle_timeout(), ctx.poll).await?;
    circuit.rejitter = Some(RejitterPhase {
        mapping: found.uuid,
        started_at_ms: ctx.now_ms(),
        empty_readings: 0,
    });
    circuit.next = None;
    tracing::info!("rejitter started");
    Ok(circuit)
}

pub async fn check_backlog(
    ctx: &Context,
    mut circuit: Circuit,
    retries: u32,
) -> Result<Circuit, StepError> {
    // WaitForBacklog, this Task, BacklogSpread.
    circuit.history_events += FLOW_STATE + task(retries) + FLOW_STATE;
    if let Hold::Elsewhere(reason) = hold(ctx, &circuit).await? {
        tracing::warn!(reason = %reason, "the circuit was ended by someone else");
        circuit.next = Some(Next::ClosedElsewhere);
        circuit.reason = reason;
        return Ok(circuit);
    }
    let visible = queue::visible_messages(&ctx.clients.sqs, &circuit.queue_url).await?;
    let now = ctx.now_ms();
    let history_events = circuit.history_events;
    let phase = circuit
        .rejitter
        .as_mut()
        .ok_or_else(|| StepError::Fatal("CheckBacklog before StartRejitter".into()))?;
    let (streak, mut next) = after_backlog_check(
        phase.empty_readings,
        visible,
        phase.started_at_ms,
        now,
        ctx.config.rejitter_max_seconds,
    );
    phase.empty_readings = streak;
    circuit.reason = format!("{visible} messages visible; {streak} empty readings in a row");
    // Closing early loses nothing: what is not yet spread waits for the consumer.
    if next == Next::WaitForBacklog && no_room_for(history_events, REJITTER_LOOP_WORST) {
        next = Next::Close;
        circuit.reason = format!(
            "{}; the execution history ({history_events} events) has no room for another \
             backlog check",
            circuit.reason
        );
    }
    circuit.next = Some(next);
    tracing::info!(visible, empty_readings = streak, next = ?next, "backlog checked");
    Ok(circuit)
}

/// StopRejitter: the backlog is spread; then the slow start, if configured, or the close.
pub async fn stop_rejitter(ctx: &Context, mut circuit: Circuit) -> Result<Circuit, StepError> {
    ctx.store()
        .owned(&circuit.mapping.uuid, &circuit.execution)
        .await?;
    ensure_rejitter_off(ctx, &ctx.config.queue_arn).await?;
    circuit.next = Some(with_slow_start(Next::Close, ctx.config.slow_start_seconds));
    tracing::info!("rejitter stopped");
    Ok(circuit)
}

/// Switches the rejitter's mapping off if there is one (every ending's clean-up).
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
    match mapping::switch(lambda, &found.uuid, false, ctx.settle_timeout(), ctx.poll).await {
        Ok(_) | Err(StepError::MappingDeleted { .. }) => Ok(true),
        Err(e) => Err(e),
    }
}
