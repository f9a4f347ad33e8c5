//! Recovery: an execution ended (an operator stopped it, it failed, timed out, hit the
//! history limit, or its failsafe failed) while it still held a circuit open. The breaker's
//! rule on "Step Functions Execution Status Change" runs this within seconds: it ends the
//! circuit as the failsafe would, so no consumer is left disabled.

use super::end::{end_open_circuit, rearm_alarm};
use super::Context;
use crate::adapters::signals::{Detail, Transition};
use crate::adapters::store::recovery_owner;
use crate::adapters::{alarm, execution};
use crate::core::attachment::{route, Target};
use crate::error::StepError;
use serde_json::{json, Value};

/// How long a recovery holds a circuit it took over: past the controller's own timeout, so
/// that an alarm meanwhile stands aside, and a recovery that died is taken over after it.
const RECOVERY_LEASE_MS: u64 = 180_000;

pub async fn recover(ctx: &Context, execution: &str, status: &str) -> Result<Value, StepError> {
    let Some(recovery) = recover_circuits(ctx, execution, status).await? else {
        return Ok(json!({"recovered": []}));
    };
    if recovery.held == 0 && status == "ABORTED" {
        rearm_unanswered(ctx, execution).await?;
    }
    Ok(json!({ "recovered": recovery.recovered }))
}

/// What [`recover_circuits`] found.
pub(super) struct Recovery {
    /// The circuits the ended execution (or this recovery) still held open.
    pub held: usize,
    /// The mappings whose circuits it ended.
    pub recovered: Vec<String>,
}

/// [`recover`] without re-arming an alarm the execution left unanswered; `None` while the
/// execution runs.
pub(super) async fn recover_circuits(
    ctx: &Context,
    execution: &str,
    status: &str,
) -> Result<Option<Recovery>, StepError> {
    // The event may be late or forged; a running execution looks after its own circuit.
    if execution::is_running(&ctx.clients.sfn, execution).await? {
        tracing::info!(status, "the execution is still running; nothing to recover");
        return Ok(None);
    }
    let reason = format!("execution ended {status} while it held the circuit open; recovered");
    let store = ctx.store();
    let me = recovery_owner(execution);
    let mut recovered = Vec::new();
    // The ended execution's circuits, and any a previous attempt of this recovery took.
    let circuits = store.open_circuits_of(execution, Some(&me)).await?;
    let held = circuits.len();
    for mut record in circuits {
        // Take the circuit first: an alarm's execution may take it over at the same moment,
        // and only one of the two may act on the mapping.
        let lease = ctx.now_ms() + RECOVERY_LEASE_MS;
        if record.owner == execution
            && !store
                .take_over(&record.mapping_id, &me, execution, &reason, lease)
                .await?
        {
            tracing::info!(mapping = %record.mapping_id, "the circuit changed hands; nothing to recover");
            continue;
        }
        record.owner = me.clone();
        // Its consumer as the circuit item recorded it: no read of the attachments table, so a
        // consumer detached mid-outage is given back too.
        let ctx = ctx.for_ending(record.attachment.as_deref()).await?;
        let snapshot = end_open_circuit(&ctx, &me, &record, &reason).await?;
        let detail = Detail {
            mapping: snapshot.uuid.clone(),
            queue: snapshot.event_source_arn.clone(),
            function: ctx.config.consumer_function.clone(),
            execution: execution.to_string(),
            attempt: 0,
            reason: reason.clone(),
        };
        ctx.signals()
            .emit(Transition::CircuitRecovered, &detail)
            .await;
        tracing::warn!(mapping = %snapshot.uuid, status, "recovered a stranded circuit");
        recovered.push(snapshot.uuid);
    }
    Ok(Some(Recovery { held, recovered }))
}

/// An execution stopped before it took a circuit leaves the ALARM that started it unanswered:
/// the alarm stays in ALARM and raises no new transition, so the breaker would sit out the
/// rest of the outage. Re-arming it lets its next evaluation decide: still breaching, it
/// starts a new circuit. Only a stop does this: an execution that ran its course without a
/// circuit (another held it, the alarm was stale) meant to leave the alarm alone, and a failed
/// one re-armed would fail again every period.
async fn rearm_unanswered(ctx: &Context, execution: &str) -> Result<(), StepError> {
    let input = execution::input(&ctx.clients.sfn, execution).await?;
    let Ok(routed) = route(&input) else {
        return Ok(());
    };
    let attachment = match routed.target {
        Target::BuiltIn if ctx.fleet.fleet_only => return Ok(()),
        Target::BuiltIn => None,
        Target::Attachment(id) => {
            let Some(table) = ctx.fleet.attachments.as_ref() else {
                return Ok(());
            };
            let Some(attachment) = table.get(id).await? else {
                return Ok(());
            };
            Some(attachment)
        }
    };
    let ctx = ctx.for_ending(attachment.as_ref()).await?;
    let alarm = &ctx.config.alarm_name;
    if !matches!(alarm::current(&ctx.clients.cloudwatch, alarm).await?, Some((state, _)) if state == "ALARM")
    {
        return Ok(());
    }
    rearm_alarm(
        &ctx,
        &format!("execution {execution} was stopped before it opened a circuit; re-armed"),
    )
    .await?;
    tracing::warn!(alarm = %alarm, "re-armed the alarm a stopped execution left unanswered");
    Ok(())
}
