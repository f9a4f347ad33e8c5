//! The half-open circuit: StartSlowStart enables the consumer's mapping at a small
//! `MaximumConcurrency`, RampUp raises it step by step while the consumer does not fail (by
//! the signal that opened the circuit: `core::signal`),
//! and ReopenCircuit disables the mapping again when it does (see `core::slow_start`). The
//! circuit item stays OPEN and this execution's throughout: every ending gives back the cap
//! and `Enabled` from what the item recorded.

use super::Context;
use crate::adapters::mapping::{self, Mapping};
use crate::adapters::signals::Transition;
use crate::adapters::{consumer, queue, store::Store};
use crate::circuit::{Changed, Circuit, MappingSnapshot};
use crate::core::history::{no_room_for, task, FLOW_STATE, RAMP_LOOP_WORST};
use crate::core::signal::{self, Observed, QueueCounts};
use crate::core::slow_start::{self, ConcurrencyChange, Plan, Ramp, RampStep};
use crate::core::Next;
use crate::error::StepError;

/// The mapping snapshot of the circuit this execution owns open: what the breaker recorded.
async fn owned_snapshot(store: &Store, circuit: &Circuit) -> Result<MappingSnapshot, StepError> {
    store
        .owned(&circuit.mapping.uuid, &circuit.execution)
        .await?
        .snapshot
        .ok_or_else(|| StepError::Fatal("the circuit item has no mapping snapshot".into()))
}

/// Records the cap about to be set in the circuit item (over `snapshot`, read at the step's
/// start), before the mapping changes.
async fn record_cap(
    store: &Store,
    circuit: &Circuit,
    mut snapshot: MappingSnapshot,
    change: Option<ConcurrencyChange>,
) -> Result<(), StepError> {
    snapshot.changed = Some(Changed {
        maximum_concurrency: change,
        ..snapshot.changes()
    });
    store
        .record_changes(
            &circuit.mapping.uuid,
            &circuit.execution,
            &snapshot,
            circuit.attachment.as_ref(),
        )
        .await
}

/// What the signal that opened the circuit counts, from the start of the minute holding
/// `from_ms` until `now_ms`: the consumer's errors (when the signal watches them) and the
/// queue's counts (when it watches records).
async fn signal_counts(
    ctx: &Context,
    from_ms: u64,
    now_ms: u64,
) -> Result<(u64, Option<QueueCounts>), StepError> {
    let signal = ctx.config.signal.signal;
    let cloudwatch = &ctx.clients.cloudwatch;
    let errors = if signal.watches_errors() {
        consumer::errors_since(cloudwatch, &ctx.config.consumer_function, from_ms, now_ms).await?
    } else {
        0
    };
    let records = if signal.watches_records() {
        let queue = ctx
            .config
            .queue()
            .map_err(|e| StepError::Config(e.to_string()))?;
        Some(queue::counts_since(cloudwatch, &queue.name, from_ms, now_ms).await?)
    } else {
        None
    };
    Ok((errors, records))
}

fn step_seconds(ctx: &Context, ramp: &Ramp) -> u32 {
    slow_start::step_seconds(ctx.config.slow_start_seconds, ramp.start, ramp.original)
}

/// StartSlowStart: the consumer is healthy. Caps the mapping at the first level, enables it,
/// and notes the consumer's errors so far; or closes at once when no ramp applies.
pub async fn start_slow_start(
    ctx: &Context,
    mut circuit: Circuit,
    retries: u32,
) -> Result<Circuit, StepError> {
    circuit.history_events += task(retries) + FLOW_STATE;
    let store = ctx.store();
    let uuid = circuit.mapping.uuid.clone();
    let snapshot = owned_snapshot(&store, &circuit).await?;
    let recorded = snapshot.changes().maximum_concurrency;
    let lambda = &ctx.clients.lambda;
    let found: Mapping = mapping::get(lambda, &uuid).await?;
    // The cap the mapping's owners want: the one recorded before an earlier ramp (this step
    // retried, or the circuit reopened), unless someone has set another since.
    let original = match recorded {
        Some(change) if change.is_ours(found.maximum_concurrency) => change.original,
        _ => found.maximum_concurrency,
    };
    let start = ctx.config.slow_start_concurrency;
    let mut plan = slow_start::plan(
        ctx.config.slow_start_seconds,
        start,
        original,
        found.provisioned,
    );
    if no_room_for(circuit.history_events, RAMP_LOOP_WORST) {
        plan = Plan::Skip("the execution history has no room for a slow start".into());
    }
    let original = match plan {
        Plan::Skip(reason) => {
            tracing::info!(reason = %reason, "no slow start");
            circuit.reason = format!("{}; {reason}", circuit.reason);
            circuit.next = Some(Next::Close);
            return Ok(circuit);
        }
        Plan::Ramp { original } => original,
    };
    let change = ConcurrencyChange {
        original,
        set: start,
        // After a reopen the mapping may still have the last ramp's cap: it stays the
        // breaker's until this one is set.
        previous: recorded
            .filter(|c| c.is_ours(found.maximum_concurrency))
            .and(found.maximum_concurrency),
    };
    record_cap(&store, &circuit, snapshot, Some(change)).await?;
    let timeout = ctx.settle_timeout();
    mapping::set_maximum_concurrency(lambda, &uuid, Some(start), timeout, ctx.poll).await?;
    let now = ctx.now_ms();
    let (errors_baseline, records_baseline) = signal_counts(ctx, now, now).await?;
    mapping::switch(lambda, &uuid, true, timeout, ctx.poll).await?;
    let ramp = Ramp {
        start,
        original,
        level: start,
        started_at_ms: now,
        errors_baseline,
        records_baseline,
    };
    circuit.wait_seconds = step_seconds(ctx, &ramp);
    circuit.reason = format!(
        "HALF-OPEN: the mapping is enabled at MaximumConcurrency {} (its own: {}), doubling \
         every {} s while the consumer does not fail ({} signal)",
        ramp.level,
        original.map_or("none".to_string(), |c| c.to_string()),
        circuit.wait_seconds,
        ctx.config.signal.signal
    );
    tracing::info!(level = ramp.level, original = ?original, step_seconds = circuit.wait_seconds, "slow start began");
    circuit.slow_start = Some(ramp);
    circuit.next = Some(Next::Ramp);
    Ok(circuit)
}

/// RampUp: one step of the ramp, after WaitRampStep.
pub async fn ramp_up(
    ctx: &Context,
    mut circuit: Circuit,
    retries: u32,
) -> Result<Circuit, StepError> {
    // WaitRampStep, this Task, RampVerdict.
    circuit.history_events += FLOW_STATE + task(retries) + FLOW_STATE;
    let store = ctx.store();
    let snapshot = owned_snapshot(&store, &circuit).await?;
    let mut ramp = circuit
        .slow_start
        .clone()
        .ok_or_else(|| StepError::Fatal("RampUp before StartSlowStart".into()))?;
    let lambda = &ctx.clients.lambda;
    let uuid = circuit.mapping.uuid.clone();
    let found = match mapping::get(lambda, &uuid).await {
        Ok(found) => found,
        Err(StepError::MappingDeleted { .. }) => {
            circuit.next = Some(Next::Close);
            circuit.reason = "the consumer's mapping was deleted during the slow start".into();
            return Ok(circuit);
        }
        Err(e) => return Err(e),
    };
    if found.state == "Disabled" {
        // Someone switched the consumer off during the ramp: theirs to switch on again.
        circuit.next = Some(Next::ClosedElsewhere);
        circuit.reason = "the consumer's mapping was disabled during the slow start".into();
        return Ok(circuit);
    }
    let now = ctx.now_ms();
    let (errors, records) = signal_counts(ctx, ramp.started_at_ms, now).await?;
    let observed = Observed {
        errors: errors.saturating_sub(ramp.errors_baseline),
        records: ramp.records_baseline.zip(records),
        processing: u64::from(ramp.level) * u64::from(found.batch_size),
        elapsed_seconds: now.saturating_sub(ramp.started_at_ms) / 1000,
    };
    let failing = signal::failing(&ctx.config.signal, &observed);
    let mut decision = slow_start::step(&ramp, failing, found.maximum_concurrency);
    if matches!(decision, RampStep::Raise(_))
        && no_room_for(circuit.history_events, RAMP_LOOP_WORST)
    {
        // Closing early loses nothing: the cap is given back with the close.
        decision = RampStep::Finish;
    }
    match decision {
        RampStep::Raise(level) => {
            let change = ConcurrencyChange {
                original: ramp.original,
                set: level,
                previous: Some(ramp.level),
            };
            record_cap(&store, &circuit, snapshot, Some(change)).await?;
            let timeout = ctx.settle_timeout();
            mapping::set_maximum_concurrency(lambda, &uuid, Some(level), timeout, ctx.poll).await?;
            ramp.level = level;
            circuit.wait_seconds = step_seconds(ctx, &ramp);
            circuit.next = Some(Next::Ramp);
            circuit.reason = format!("HALF-OPEN: MaximumConcurrency raised to {level}");
            tracing::info!(level, "slow start raised the cap");
        }
        RampStep::Finish => {
            // CloseCircuit gives the original cap back with everything else.
            circuit.next = Some(Next::Close);
            circuit.reason = format!(
                "the slow start reached its last level ({}) without consumer errors",
                ramp.level
            );
        }
        RampStep::Reopen { why } => {
            circuit.next = Some(Next::Reopen);
            circuit.reason = format!(
                "{why} during the slow start, at MaximumConcurrency {}",
                ramp.level
            );
            tracing::warn!(why = %why, level = ramp.level, "the consumer failed during the slow start");
        }
        RampStep::Changed { now } => {
            // Their value stays: nothing of the cap is the breaker's to give back any more.
            record_cap(&store, &circuit, snapshot, None).await?;
            circuit.next = Some(Next::Close);
            circuit.reason = format!(
                "the mapping's MaximumConcurrency was changed during the slow start (now {}); \
                 the breaker keeps it and stops ramping",
                now.map_or("none".to_string(), |c| c.to_string())
            );
            tracing::warn!(now = ?now, set = ramp.level, "MaximumConcurrency changed during the slow start");
        }
    }
    circuit.slow_start = Some(ramp);
    Ok(circuit)
}

/// ReopenCircuit: the consumer failed during the slow start. Disables the mapping again
/// (the cap stays recorded, to be given back at the end) and goes back to probing with the
/// backoff the circuit had.
pub async fn reopen(
    ctx: &Context,
    mut circuit: Circuit,
    retries: u32,
) -> Result<Circuit, StepError> {
    circuit.history_events += task(retries);
    ctx.store()
        .owned(&circuit.mapping.uuid, &circuit.execution)
        .await?;
    let lambda = &ctx.clients.lambda;
    mapping::switch(
        lambda,
        &circuit.mapping.uuid,
        false,
        ctx.settle_timeout(),
        ctx.poll,
    )
    .await?;
    circuit.slow_start = None;
    circuit.last_probe = "FailedDuringSlowStart".into();
    circuit.next = Some(Next::Backoff);
    ctx.signals()
        .emit(
            Transition::CircuitReopened,
            &ctx.detail(&circuit, &circuit.reason),
        )
        .await;
    tracing::warn!(reason = %circuit.reason, "circuit reopened");
    Ok(circuit)
}
