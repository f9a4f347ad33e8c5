//! Ending a circuit: the one way every ending (close, give up with restore, someone else's
//! hand, the failsafe, the recovery) gives the consumer back and re-arms the breaker.

use super::Context;
use crate::adapters::store::{CircuitRecord, CLOSED};
use crate::adapters::{alarm, mapping};
use crate::circuit::MappingSnapshot;
use crate::core::slow_start::ConcurrencyChange;
use crate::error::StepError;

/// Gives back what the breaker changed on the mapping, and only that (`Enabled`, and the
/// slow start's `MaximumConcurrency` while the mapping still has the breaker's value), once
/// the mapping has settled. A deleted mapping has nothing to give back.
pub async fn give_back(ctx: &Context, snapshot: &MappingSnapshot) -> Result<(), StepError> {
    let changes = snapshot.changes();
    let given = async {
        if let Some(change) = changes.maximum_concurrency {
            give_back_concurrency(ctx, &snapshot.uuid, change).await?;
        }
        if changes.enabled {
            let lambda = &ctx.clients.lambda;
            mapping::switch(lambda, &snapshot.uuid, true, ctx.settle_timeout(), ctx.poll).await?;
        }
        Ok(())
    };
    match given.await {
        Err(StepError::MappingDeleted { mapping }) => {
            tracing::warn!(mapping = %mapping, "the consumer's mapping was deleted; nothing to give back");
            Ok(())
        }
        other => other,
    }
}

/// Puts the mapping's own `MaximumConcurrency` back (removes the cap if it had none), unless
/// someone set another value since the breaker's: theirs stays.
async fn give_back_concurrency(
    ctx: &Context,
    uuid: &str,
    change: ConcurrencyChange,
) -> Result<(), StepError> {
    let lambda = &ctx.clients.lambda;
    let now = mapping::get(lambda, uuid).await?.maximum_concurrency;
    if now == change.original {
        return Ok(());
    }
    if !change.is_ours(now) {
        tracing::warn!(mapping = %uuid, now = ?now, set = change.set, "the mapping's MaximumConcurrency was changed during the slow start; keeping it");
        return Ok(());
    }
    mapping::set_maximum_concurrency(
        lambda,
        uuid,
        change.original,
        ctx.settle_timeout(),
        ctx.poll,
    )
    .await?;
    tracing::info!(mapping = %uuid, original = ?change.original, "gave the mapping's MaximumConcurrency back");
    Ok(())
}

/// Sets the alarm back to OK: an alarm left in ALARM raises no new transition, so the next
/// outage would open no circuit. CloudWatch re-evaluates it on its next period.
pub async fn rearm_alarm(ctx: &Context, reason: &str) -> Result<(), StepError> {
    alarm::reset(
        &ctx.clients.cloudwatch,
        &ctx.config.alarm_name,
        ctx.config.signal.signal.may_be_composite(),
        &format!("sqs-circuit-breaker: {reason}"),
    )
    .await
}

/// Ends a circuit `execution` holds open: the rejitter off, the consumer given back, the
/// circuit CLOSED (before the alarm is re-armed, so that an ALARM raised by the re-arm finds
/// the circuit free), the alarm re-armed. Every part is idempotent, so a retry is safe.
pub async fn end_open_circuit(
    ctx: &Context,
    execution: &str,
    record: &CircuitRecord,
    reason: &str,
) -> Result<MappingSnapshot, StepError> {
    let snapshot = end_open_circuit_unarmed(ctx, execution, record, reason).await?;
    rearm_alarm(ctx, reason).await?;
    Ok(snapshot)
}

/// [`end_open_circuit`] without re-arming the alarm.
pub async fn end_open_circuit_unarmed(
    ctx: &Context,
    execution: &str,
    record: &CircuitRecord,
    reason: &str,
) -> Result<MappingSnapshot, StepError> {
    let snapshot = record.snapshot.clone().ok_or_else(|| {
        StepError::Fatal(format!(
            "the circuit item of mapping {} has no mapping snapshot",
            record.mapping_id
        ))
    })?;
    super::ensure_rejitter_off(ctx, &ctx.config.queue_arn).await?;
    give_back(ctx, &snapshot).await?;
    ctx.store()
        .finish(&record.mapping_id, execution, ctx.now_ms(), CLOSED, reason)
        .await?;
    Ok(snapshot)
}
