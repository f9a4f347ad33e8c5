//! NextBackoff: how long until the next probe, or give up.

use super::Context;
use crate::circuit::Circuit;
use crate::core::history::{no_room_for, task, FLOW_STATE, PROBE_LOOP_WORST};
use crate::core::{exhausted, retention_deadline_ms, Next};
use crate::error::StepError;

pub async fn backoff(
    ctx: &Context,
    mut circuit: Circuit,
    retries: u32,
) -> Result<Circuit, StepError> {
    // This Task and BackoffOrGiveUp.
    circuit.history_events += task(retries) + FLOW_STATE;
    let now = ctx.now_ms();
    // A Standard execution that reaches 25,000 history events fails outside every Catch:
    // give up (by the policy, with the failsafe still reachable) before one more probe loop
    // could get there.
    if no_room_for(circuit.history_events, PROBE_LOOP_WORST) {
        circuit.next = Some(Next::GiveUp);
        circuit.reason = format!(
            "{} probes: the execution history ({} events) has no room for another probe loop",
            circuit.attempt, circuit.history_events
        );
        return Ok(circuit);
    }
    if exhausted(
        &ctx.config.limits,
        circuit.attempt,
        circuit.opened_at_ms,
        now,
    ) {
        circuit.next = Some(Next::GiveUp);
        circuit.reason = format!(
            "probe limits reached after {} probes ({:?})",
            circuit.attempt, ctx.config.limits
        );
        return Ok(circuit);
    }
    let delay = ctx.config.backoff.delay(circuit.attempt, (ctx.random)());
    // Never sleep past the retention guard's deadline: the next probe must see it.
    let deadline = retention_deadline_ms(
        circuit.oldest_sent_ms,
        circuit.retention_seconds,
        ctx.config.retention_margin_seconds,
    );
    let until_deadline = (deadline.saturating_sub(now) / 1000).max(1);
    circuit.wait_seconds = u64::from(delay).min(until_deadline) as u32;
    circuit.backoff_ceiling_seconds = ctx.config.backoff.ceiling(circuit.attempt);
    circuit.next = Some(Next::Backoff);
    tracing::info!(
        attempt = circuit.attempt,
        wait_seconds = circuit.wait_seconds,
        ceiling_seconds = circuit.backoff_ceiling_seconds,
        "backing off"
    );
    Ok(circuit)
}
