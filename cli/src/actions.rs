//! `open` and `close`: a person's hand on the circuit. Opening goes through the workflow, as
//! an alarm would; closing goes through the same ending as every other end
//! ([`end_open_circuit`]).

use crate::error::OperatorError;
use crate::fleet::open_input;
use crate::status::circuit;
use controller::adapters::execution;
use controller::adapters::signals::{Detail, Transition};
use controller::adapters::store::{CLOSED, GAVE_UP, OPEN};
use controller::core::operator::OperatorOpen;
use controller::error::StepError;
use controller::steps::end::end_open_circuit;
use controller::steps::Context;
use serde::Serialize;

/// How long an operator's close holds the circuit while it ends it: an alarm meanwhile
/// stands aside, and a close that died is taken over after it.
const CLOSE_LEASE_MS: u64 = 180_000;

/// Starts the workflow with an operator's `open` of the built-in consumer or of
/// `attachment` (single-flight holds: the execution takes the circuit like any other);
/// returns the execution ARN.
pub async fn open(
    ctx: &Context,
    state_machine_arn: &str,
    request: &OperatorOpen,
    attachment: Option<&str>,
) -> Result<String, OperatorError> {
    let out = ctx
        .clients
        .sfn
        .start_execution()
        .state_machine_arn(state_machine_arn)
        .name(format!("operator-open-{}", ctx.now_ms()))
        .input(open_input(request.input(), attachment).to_string())
        .send()
        .await
        .map_err(|e| StepError::aws("StartExecution", e))?;
    Ok(out.execution_arn().to_string())
}

/// What an operator's close did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloseReport {
    /// The circuit's state before (`CLOSED`: nothing was done).
    pub was: String,
    /// Each thing done, in order, for the operator to read.
    pub actions: Vec<String>,
}

/// Closes the circuit of `ctx`'s consumer now: stops the owning execution, then ends the
/// circuit as every end does (rejitter off, consumer enabled, circuit CLOSED, alarm
/// re-armed) and announces it, with the configuration the circuit opened with (an
/// attachment's, as the circuit item recorded it, even if it was updated since). Closing a
/// closed circuit changes nothing.
pub async fn close(ctx: &Context, reason: &str) -> Result<CloseReport, OperatorError> {
    let (found, record) = circuit(ctx).await?;
    let Some(mut record) = record.filter(|r| r.state == OPEN || r.state == GAVE_UP) else {
        return Ok(CloseReport {
            was: CLOSED.into(),
            actions: vec![format!(
                "the circuit of mapping {} is already closed; nothing changed",
                found.uuid
            )],
        });
    };
    let recorded = match record.attachment.as_deref() {
        Some(attachment) => Some(crate::fleet::context(ctx, Some(attachment)).await?),
        None => None,
    };
    let ctx = recorded.as_ref().unwrap_or(ctx);
    let was = record.state.clone();
    let mut actions = Vec::new();
    let reason = format!("closed by an operator: {reason}");
    let previous = record.owner.clone();
    if previous.starts_with("arn:") && execution::is_running(&ctx.clients.sfn, &previous).await? {
        ctx.clients
            .sfn
            .stop_execution()
            .execution_arn(&previous)
            .cause(&reason)
            .send()
            .await
            .map_err(|e| StepError::aws("StopExecution", e))?;
        actions.push(format!("stopped execution {previous}"));
    }
    // Take the circuit before acting on the mapping: the recovery of the stopped execution
    // (or an alarm) may reach for it at the same moment, and only one may act.
    let me = format!("operator close at {}", ctx.now_ms());
    let lease = ctx.now_ms() + CLOSE_LEASE_MS;
    let store = ctx.store();
    if !store
        .take_over(&found.uuid, &me, &previous, &reason, lease)
        .await?
    {
        let now = store.get(&found.uuid).await?.unwrap_or_default();
        actions.push(format!(
            "the circuit changed hands meanwhile: it is {} ({}), owned by {}",
            now.state, now.reason, now.owner
        ));
        return Ok(CloseReport { was, actions });
    }
    record.owner = me.clone();
    let snapshot = end_open_circuit(ctx, &me, &record, &reason).await?;
    actions.push("switched the rejitter off (if it was on)".into());
    if snapshot.changes().enabled {
        actions.push(format!("enabled the consumer's mapping {}", snapshot.uuid));
    }
    actions.push("marked the circuit CLOSED".into());
    actions.push(format!("re-armed the alarm {}", ctx.config.alarm_name));
    let detail = Detail {
        mapping: snapshot.uuid.clone(),
        queue: snapshot.event_source_arn.clone(),
        function: ctx.config.consumer_function.clone(),
        execution: previous,
        attempt: 0,
        reason: reason.clone(),
    };
    ctx.signals().emit(Transition::CircuitClosed, &detail).await;
    actions.push("emitted Circuit Closed".into());
    tracing::info!(mapping = %snapshot.uuid, reason = %reason, "circuit closed by an operator");
    Ok(CloseReport { was, actions })
}
