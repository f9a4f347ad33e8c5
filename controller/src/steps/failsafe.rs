//! Failsafe: a step failed for good. End every circuit this execution holds open, from what
//! the circuit item recorded (never by looking the mapping up again), and always alert.
//! Policy: the consumer is never left disabled by an accident of the breaker.

use super::end::end_open_circuit;
use super::Context;
use crate::adapters::signals::{Detail, Transition};
use crate::error::StepError;
use serde_json::{json, Value};

pub async fn failsafe(ctx: &Context, execution: &str, error: &Value) -> Result<Value, StepError> {
    let cause = error
        .get("Cause")
        .and_then(Value::as_str)
        .or_else(|| error.get("Error").and_then(Value::as_str))
        .unwrap_or("unknown error");
    let reason = format!("failsafe: {cause}");
    let circuits = ctx.store().open_circuits_of(execution, None).await?;
    let mut restored = Vec::new();
    // The consumer of the circuit it gives back (an attachment's, from the circuit item).
    let mut consumer = None;
    for record in &circuits {
        let ctx = ctx.for_ending(record.attachment.as_deref()).await?;
        let snapshot = end_open_circuit(&ctx, execution, record, &reason).await?;
        restored.push(snapshot.uuid);
        consumer.get_or_insert(ctx.config);
    }
    let config = consumer.as_ref().unwrap_or(&ctx.config);
    let detail = Detail {
        mapping: restored.first().cloned().unwrap_or_default(),
        queue: config.queue_arn.clone(),
        function: config.consumer_function.clone(),
        execution: execution.to_string(),
        attempt: 0,
        reason: format!(
            "{reason}; {}",
            if restored.is_empty() {
                "this execution held no circuit: nothing was touched"
            } else {
                "the consumer was given back and the circuit closed"
            }
        ),
    };
    ctx.signals().emit(Transition::CircuitGaveUp, &detail).await;
    tracing::error!(cause = %cause, restored = ?restored, "failsafe");
    Ok(json!({"restored": !restored.is_empty(), "reason": detail.reason}))
}
