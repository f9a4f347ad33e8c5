//! NextBackoff: how long until the next probe, or give up.

use super::Context;
use crate::circuit::Circuit;
use crate::core::{exhausted, retention_deadline_ms, Next};
use crate::error::StepError;

/// A Standard execution's history holds 25,000 events and one probe loop writes 16; past
/// this many probes the execution would fail without its failsafe, so it gives up first.
pub const MAX_PROBES_PER_EXECUTION: u32 = 1_400;

pub async fn backoff(ctx: &Context, mut circuit: Circuit) -> Result<Circuit, StepError> {
    let now = ctx.now_ms();
    if circuit.attempt >= MAX_PROBES_PER_EXECUTION {
        circuit.next = Some(Next::GiveUp);
        circuit.reason = format!(
            "{} probes: the execution history is nearly full",
            circuit.attempt
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
