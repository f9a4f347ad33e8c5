//! Failsafe: a step failed for good. If this execution had disabled the consumer, restore it;
//! always alert. Policy: the consumer is never left disabled by an accident of the breaker.

use super::Context;
use crate::adapters::mapping;
use crate::adapters::signals::{Detail, Transition};
use crate::adapters::store::{CLOSED, OPEN};
use crate::error::StepError;
use serde_json::{json, Value};

pub async fn failsafe(ctx: &Context, execution: &str, error: &Value) -> Result<Value, StepError> {
    let lambda = &ctx.clients.lambda;
    let cause = error
        .get("Cause")
        .and_then(Value::as_str)
        .or_else(|| error.get("Error").and_then(Value::as_str))
        .unwrap_or("unknown error");
    let found =
        match mapping::find(lambda, &ctx.config.queue_arn, &ctx.config.consumer_function).await {
            Ok(found) => Some(found),
            // No single mapping: the breaker cannot have disabled anything.
            Err(StepError::MappingNotFound { .. } | StepError::SeveralMappings { .. }) => None,
            Err(e) => return Err(e),
        };
    let mut restored = false;
    if let Some(found) = &found {
        let store = ctx.store();
        if let Some(record) = store.get(&found.uuid).await? {
            if record.owner == execution && record.state == OPEN {
                // The rejitter must not keep re-sending once the consumer is back.
                super::ensure_rejitter_off(ctx, &ctx.config.queue_arn).await?;
                let snapshot = record.snapshot.unwrap_or_else(|| found.clone());
                mapping::restore(lambda, &snapshot).await?;
                mapping::wait_for_state(
                    lambda,
                    &found.uuid,
                    "Enabled",
                    ctx.settle_timeout(),
                    ctx.poll,
                )
                .await?;
                store
                    .finish(&found.uuid, execution, ctx.now_ms(), CLOSED)
                    .await?;
                restored = true;
            }
        }
    }
    let detail = Detail {
        mapping: found.as_ref().map(|f| f.uuid.clone()).unwrap_or_default(),
        queue: ctx.config.queue_arn.clone(),
        function: ctx.config.consumer_function.clone(),
        execution: execution.to_string(),
        attempt: 0,
        reason: format!(
            "failsafe: {cause}; consumer {}",
            if restored {
                "restored"
            } else {
                "not touched by this execution"
            }
        ),
    };
    ctx.signals()
        .emit(Transition::CircuitGaveUp, &detail)
        .await?;
    tracing::error!(cause = %cause, restored, "failsafe");
    Ok(json!({"restored": restored, "reason": detail.reason}))
}
