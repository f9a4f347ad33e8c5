//! The rejitter phase: after a healthy probe, switch on the rejitter's mapping so the backlog
//! is re-sent with random delays, wait until the visible backlog is gone (or the rejitter
//! stalls, or the phase's time is up), switch it off.

use super::hold::{hold, Hold};
use super::Context;
use crate::adapters::signals::Transition;
use crate::adapters::{mapping, queue};
use crate::circuit::{Circuit, RejitterPhase};
use crate::core::backlog::{
    after_backlog_check, Decision, Progress, Sample, Settings, STALL_SECONDS,
};
use crate::core::history::{no_room_for, task, FLOW_STATE, REJITTER_LOOP_WORST};
use crate::core::with_slow_start;
use crate::core::Next;
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
    // The baseline the backlog checks judge progress against, read before the rejitter runs.
    let baseline = queue::backlog(&ctx.clients.sqs, &circuit.queue_url, ctx.now_ms()).await?;
    mapping::switch(lambda, &found.uuid, true, ctx.settle_timeout(), ctx.poll).await?;
    // The phase, and its stall window, start once the rejitter's mapping is on.
    let started_at_ms = ctx.now_ms();
    circuit.rejitter = Some(RejitterPhase {
        mapping: found.uuid,
        started_at_ms,
        progress: Progress {
            progress_at_ms: started_at_ms,
            ..Progress::start(baseline)
        },
    });
    circuit.next = None;
    tracing::info!(
        visible = baseline.visible,
        in_flight = baseline.in_flight,
        delayed = baseline.delayed,
        "rejitter started"
    );
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
    let sample = queue::backlog(&ctx.clients.sqs, &circuit.queue_url, ctx.now_ms()).await?;
    let history_events = circuit.history_events;
    let phase = circuit
        .rejitter
        .as_mut()
        .ok_or_else(|| StepError::Fatal("CheckBacklog before StartRejitter".into()))?;
    let settings = Settings {
        started_at_ms: phase.started_at_ms,
        max_seconds: ctx.config.rejitter_max_seconds,
        stall_seconds: STALL_SECONDS,
    };
    let (progress, decision) = after_backlog_check(phase.progress, sample, settings);
    phase.progress = progress;
    let rejitter_mapping = phase.mapping.clone();
    circuit.reason = reason(&sample, &progress, decision, &settings);
    if let Decision::Stalled { .. } = decision {
        circuit.reason = format!(
            "{}; {}",
            circuit.reason,
            mapping_seen(ctx, &rejitter_mapping).await
        );
    }
    let mut next = if decision.waits() {
        Next::WaitForBacklog
    } else {
        Next::Close
    };
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
    if let Decision::Stalled { idle_seconds } = decision {
        tracing::warn!(
            visible = sample.visible,
            in_flight = sample.in_flight,
            delayed = sample.delayed,
            idle_seconds,
            reason = %circuit.reason,
            "rejitter stalled"
        );
        ctx.signals()
            .emit(
                Transition::RejitterStalled,
                &ctx.detail(&circuit, &circuit.reason),
            )
            .await;
    }
    tracing::info!(
        visible = sample.visible,
        in_flight = sample.in_flight,
        delayed = sample.delayed,
        empty_readings = progress.empty_readings,
        decision = ?decision,
        next = ?next,
        "backlog checked"
    );
    Ok(circuit)
}

/// Why the check decided so, for the execution's readers and the events.
fn reason(sample: &Sample, progress: &Progress, decision: Decision, settings: &Settings) -> String {
    let counts = format!(
        "{} messages visible, {} in flight, {} delayed",
        sample.visible, sample.in_flight, sample.delayed
    );
    match decision {
        Decision::Wait | Decision::Spread => {
            format!(
                "{counts}; {} empty readings in a row",
                progress.empty_readings
            )
        }
        Decision::TimedOut => format!(
            "{counts}; the rejitter phase reached RejitterMaxSeconds ({} s): what is not \
             spread is left to the consumer",
            settings.max_seconds
        ),
        Decision::Stalled { idle_seconds } => format!(
            "rejitter stalled: no message spread for {idle_seconds} s (visible and in flight \
             no lower than {}); {counts}; what is not spread is left to the consumer",
            progress.lowest_unspread.unwrap_or(sample.unspread())
        ),
    }
}

/// The rejitter's mapping as a stalled phase finds it, for the reason: `Enabled` means it
/// does not poll or the rejitter fails; anything else, that it is not on. Only informs: a
/// failed read changes nothing.
async fn mapping_seen(ctx: &Context, uuid: &str) -> String {
    match mapping::get(&ctx.clients.lambda, uuid).await {
        Ok(found) if found.state == "Enabled" => format!(
            "the rejitter's mapping reads {}: it does not poll, or the rejitter fails",
            found.state
        ),
        Ok(found) => format!("the rejitter's mapping reads {}", found.state),
        Err(e) => {
            tracing::warn!(error = %e, mapping = %uuid, "could not read the rejitter's mapping");
            format!("the rejitter's mapping could not be read: {e}")
        }
    }
}

/// StopRejitter: the phase is over (spread, stalled or out of time); then the slow start, if
/// configured, or the close.
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
