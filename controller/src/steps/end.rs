//! Ending a circuit: the one way every ending (close, give up with restore, someone else's
//! hand, the failsafe, the recovery) gives the consumer back and re-arms the breaker.

use super::Context;
use crate::adapters::store::{CircuitRecord, CLOSED};
use crate::adapters::{alarm, mapping};
use crate::circuit::MappingSnapshot;
use crate::error::StepError;

/// Gives back what the breaker changed on the mapping, and only that (`Enabled`), once the
/// mapping has settled. A deleted mapping has nothing to give back.
pub async fn give_back(ctx: &Context, snapshot: &MappingSnapshot) -> Result<(), StepError> {
    if !snapshot.changes().enabled {
        return Ok(());
    }
    let lambda = &ctx.clients.lambda;
    match mapping::switch(lambda, &snapshot.uuid, true, ctx.settle_timeout(), ctx.poll).await {
        Ok(_) => Ok(()),
        Err(StepError::MappingDeleted { mapping }) => {
            tracing::warn!(mapping = %mapping, "the consumer's mapping was deleted; nothing to give back");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Sets the alarm back to OK: an alarm left in ALARM raises no new transition, so the next
/// outage would open no circuit. CloudWatch re-evaluates it on its next period.
pub async fn rearm_alarm(ctx: &Context, reason: &str) -> Result<(), StepError> {
    alarm::reset(
        &ctx.clients.cloudwatch,
        &ctx.config.alarm_name,
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
    rearm_alarm(ctx, reason).await?;
    Ok(snapshot)
}
