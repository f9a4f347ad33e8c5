//! The ends of a circuit the workflow reaches: CloseCircuit (the consumer is healthy),
//! GiveUp (the limits say stop; `restore` gives the consumer back, `leave-open` keeps it off),
//! ReleaseCircuit (someone else ended it), RearmAlarm (after a cooldown) and CheckHold (a
//! circuit held open by hand).

use super::end::{end_open_circuit, end_open_circuit_unarmed, rearm_alarm};
use super::Context;
use crate::adapters::alarm;
use crate::adapters::signals::Transition;
use crate::adapters::store::{Ownership, GAVE_UP};
use crate::circuit::{Changed, Circuit, OpenStatus};
use crate::core::rearm::alarm_not_clearing;
use crate::core::GiveUpPolicy;
use crate::error::StepError;

/// Ends the circuit this execution holds open; a retry after it was ended only re-arms and
/// announces again. A circuit someone else holds is `NotOwner` and stays untouched.
async fn end_own(ctx: &Context, circuit: &Circuit, reason: &str) -> Result<(), StepError> {
    end_own_and(ctx, circuit, reason, true).await
}

/// [`end_own`], re-arming the alarm only when `rearm`.
async fn end_own_and(
    ctx: &Context,
    circuit: &Circuit,
    reason: &str,
    rearm: bool,
) -> Result<(), StepError> {
    match ctx
        .store()
        .ownership(&circuit.mapping.uuid, &circuit.execution)
        .await?
    {
        Ownership::Open(record) => {
            end_open_circuit_unarmed(ctx, &circuit.execution, &record, reason).await?;
            if rearm {
                rearm_alarm(ctx, reason).await?;
            }
        }
        Ownership::Released(_) if rearm => rearm_alarm(ctx, reason).await?,
        Ownership::Released(_) => {}
        Ownership::Other(owner) => {
            return Err(StepError::NotOwner {
                mapping: circuit.mapping.uuid.clone(),
                owner,
            })
        }
    }
    Ok(())
}

pub async fn close(ctx: &Context, mut circuit: Circuit) -> Result<Circuit, StepError> {
    let stuck = circuit.retrip
        && alarm::current(&ctx.clients.cloudwatch, &ctx.config.alarm_name)
            .await?
            .is_some_and(|(state, _)| alarm_not_clearing(circuit.retrip, circuit.attempt, &state));
    end_own_and(
        ctx,
        &circuit,
        "closed the circuit: the consumer is healthy again",
        !stuck,
    )
    .await?;
    if stuck {
        circuit.reason = format!(
            "the alarm {} stayed in ALARM although the consumer was healthy at the first probe, \
             right after the last close: it does not clear with the consumer (a dead-letter \
             queue's depth, say). It is not re-armed; the next circuit opens when it goes from \
             OK to ALARM by itself",
            ctx.config.alarm_name
        );
        ctx.signals()
            .emit(
                Transition::AlarmNotClearing,
                &ctx.detail(&circuit, &circuit.reason),
            )
            .await;
        tracing::warn!(alarm = %ctx.config.alarm_name, "the alarm does not clear with the consumer; not re-armed");
    }
    circuit.next = None;
    ctx.signals()
        .emit(
            Transition::CircuitClosed,
            &ctx.detail(&circuit, &circuit.reason),
        )
        .await;
    tracing::info!(attempt = circuit.attempt, "circuit closed");
    Ok(circuit)
}

pub async fn give_up(ctx: &Context, mut circuit: Circuit) -> Result<Circuit, StepError> {
    circuit.reason = format!(
        "{} (give-up policy: {})",
        circuit.reason, ctx.config.give_up
    );
    match ctx.config.give_up {
        GiveUpPolicy::Restore => {
            end_own(ctx, &circuit, "gave up and restored the consumer").await?
        }
        // The circuit stays held (GAVE_UP) and the mapping off until a person acts.
        GiveUpPolicy::LeaveOpen => {
            ctx.store()
                .finish(
                    &circuit.mapping.uuid,
                    &circuit.execution,
                    ctx.now_ms(),
                    GAVE_UP,
                    &circuit.reason,
                )
                .await?
        }
    }
    ctx.signals()
        .emit(
            Transition::CircuitGaveUp,
            &ctx.detail(&circuit, &circuit.reason),
        )
        .await;
    tracing::warn!(reason = %circuit.reason, "circuit gave up");
    Ok(circuit)
}

/// Someone else ended the circuit (enabled or deleted the consumer's mapping): switch the
/// rejitter off, release the circuit and re-arm, leaving the mapping as they left it. A
/// circuit that changed hands is the new owner's: nothing is touched.
pub async fn release(ctx: &Context, mut circuit: Circuit) -> Result<Circuit, StepError> {
    if let Ownership::Open(mut record) = ctx
        .store()
        .ownership(&circuit.mapping.uuid, &circuit.execution)
        .await?
    {
        let reason = format!("closed by someone else: {}", circuit.reason);
        // The mapping's state is someone else's now: do not enable it. A slow start's cap is
        // still given back while the mapping has the breaker's value.
        if let Some(snapshot) = record.snapshot.as_mut() {
            snapshot.changed = Some(Changed {
                enabled: false,
                maximum_concurrency: snapshot.changes().maximum_concurrency,
            });
        }
        end_open_circuit(ctx, &circuit.execution, &record, &reason).await?;
        circuit.reason = reason;
        ctx.signals()
            .emit(
                Transition::CircuitClosed,
                &ctx.detail(&circuit, &circuit.reason),
            )
            .await;
    }
    circuit.next = None;
    tracing::warn!(reason = %circuit.reason, "circuit released");
    Ok(circuit)
}

/// After a cooldown: reset the alarm, so that an outage still going on opens a circuit.
pub async fn rearm(ctx: &Context, mut circuit: Circuit) -> Result<Circuit, StepError> {
    let reason = match circuit.status {
        OpenStatus::PastOutage => {
            "the last outage's errors have left the alarm's window; the breaker is armed again"
        }
        _ => "the cooldown is over; the breaker is armed again",
    };
    rearm_alarm(ctx, reason).await?;
    circuit.next = None;
    Ok(circuit)
}

/// CheckHold: a circuit held open by hand stays open, without probing, for as long as it is
/// this execution's and the mapping stays off; an operator ends it by closing the circuit
/// (which stops this execution) or by enabling the mapping.
pub async fn check_hold(
    ctx: &Context,
    mut circuit: Circuit,
    retries: u32,
) -> Result<Circuit, StepError> {
    use crate::core::history::{task, FLOW_STATE};
    // HoldOpen, this Task, StillHeld.
    circuit.history_events += FLOW_STATE + task(retries) + FLOW_STATE;
    match super::hold::hold(ctx, &circuit).await? {
        super::hold::Hold::Elsewhere(reason) => {
            tracing::warn!(reason = %reason, "the held circuit was ended by someone else");
            circuit.next = Some(crate::core::Next::ClosedElsewhere);
            circuit.reason = reason;
        }
        super::hold::Hold::Mine { .. } => {
            circuit.next = Some(crate::core::Next::Hold);
            circuit.wait_seconds = crate::core::operator::HOLD_SECONDS;
        }
    }
    Ok(circuit)
}
