//! CloseCircuit and GiveUp: give the consumer back its mapping (or, when giving up with the
//! leave-open policy, keep it off), reset the alarm, record and announce it.

use super::Context;
use crate::adapters::signals::Transition;
use crate::adapters::store::{CLOSED, GAVE_UP};
use crate::adapters::{alarm, mapping};
use crate::circuit::Circuit;
use crate::core::GiveUpPolicy;
use crate::error::StepError;

/// Re-enables the mapping with its snapshot configuration and waits until it is Enabled.
async fn restore_consumer(ctx: &Context, circuit: &Circuit) -> Result<(), StepError> {
    ctx.store()
        .ensure_owner(&circuit.mapping.uuid, &circuit.execution)
        .await?;
    let lambda = &ctx.clients.lambda;
    mapping::restore(lambda, &circuit.mapping).await?;
    mapping::wait_for_state(
        lambda,
        &circuit.mapping.uuid,
        "Enabled",
        ctx.settle_timeout(),
        ctx.poll,
    )
    .await?;
    Ok(())
}

pub async fn close(ctx: &Context, mut circuit: Circuit) -> Result<Circuit, StepError> {
    restore_consumer(ctx, &circuit).await?;
    alarm::reset(
        &ctx.clients.cloudwatch,
        &ctx.config.alarm_name,
        "sqs-circuit-breaker closed the circuit: the consumer is healthy again",
    )
    .await?;
    ctx.store()
        .finish(
            &circuit.mapping.uuid,
            &circuit.execution,
            ctx.now_ms(),
            CLOSED,
        )
        .await?;
    circuit.next = None;
    ctx.signals()
        .emit(
            Transition::CircuitClosed,
            &ctx.detail(&circuit, &circuit.reason),
        )
        .await?;
    tracing::info!(attempt = circuit.attempt, "circuit closed");
    Ok(circuit)
}

pub async fn give_up(ctx: &Context, mut circuit: Circuit) -> Result<Circuit, StepError> {
    let state = match ctx.config.give_up {
        GiveUpPolicy::Restore => {
            restore_consumer(ctx, &circuit).await?;
            alarm::reset(
                &ctx.clients.cloudwatch,
                &ctx.config.alarm_name,
                "sqs-circuit-breaker gave up and restored the consumer",
            )
            .await?;
            CLOSED
        }
        GiveUpPolicy::LeaveOpen => GAVE_UP,
    };
    ctx.store()
        .finish(
            &circuit.mapping.uuid,
            &circuit.execution,
            ctx.now_ms(),
            state,
        )
        .await?;
    circuit.reason = format!(
        "{} (give-up policy: {})",
        circuit.reason, ctx.config.give_up
    );
    ctx.signals()
        .emit(
            Transition::CircuitGaveUp,
            &ctx.detail(&circuit, &circuit.reason),
        )
        .await?;
    tracing::warn!(reason = %circuit.reason, "circuit gave up");
    Ok(circuit)
}
