//! Recovery: an execution ended (an operator stopped it, it failed, timed out, hit the
//! history limit, or its failsafe failed) while it still held a circuit open. The breaker's
//! rule on "Step Functions Execution Status Change" runs this within seconds: it ends the
//! circuit as the failsafe would, so no consumer is left disabled.

use super::end::end_open_circuit;
use super::Context;
use crate::adapters::execution;
use crate::adapters::signals::{Detail, Transition};
use crate::adapters::store::recovery_owner;
use crate::error::StepError;
use serde_json::{json, Value};

/// How long a recovery holds a circuit it took over: past the controller's own timeout, so
/// that an alarm meanwhile stands aside, and a recovery that died is taken over after it.
const RECOVERY_LEASE_MS: u64 = 180_000;

pub async fn recover(ctx: &Context, execution: &str, status: &str) -> Result<Value, StepError> {
    let recovered = recover_circuits(ctx, execution, status).await?;
    Ok(json!({ "recovered": recovered }))
}

/// [`recover`]: the mappings whose circuits it ended.
pub(super) async fn recover_circuits(
    ctx: &Context,
    execution: &str,
    status: &str,
) -> Result<Vec<String>, StepError> {
    // The event may be late or forged; a running execution looks after its own circuit.
    if execution::is_running(&ctx.clients.sfn, execution).await? {
        tracing::info!(status, "the execution is still running; nothing to recover");
        return Ok(Vec::new());
    }
    let reason = format!("execution ended {status} while it held the circuit open; recovered");
    let store = ctx.store();
    let me = recovery_owner(execution);
    let mut recovered = Vec::new();
    // The ended execution's circuits, and any a previous attempt of this recovery took.
    for mut record in store.open_circuits_of(execution, Some(&me)).await? {
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
        let ctx = ctx.for_consumer(record.attachment.as_deref()).await?;
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
    Ok(recovered)
}
