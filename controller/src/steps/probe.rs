//! Probe: hand exactly one real message to the consumer, as its mapping would, and judge.

use super::Context;
use crate::adapters::signals::Transition;
use crate::adapters::{consumer, queue};
use crate::circuit::Circuit;
use crate::core::{
    after_probe, judge, must_give_up, retention_deadline_ms, with_rejitter, Next, ProbeInvocation,
    ProbeOutcome,
};
use crate::error::StepError;
use aws_sdk_sqs::types::MessageSystemAttributeName;

pub async fn probe(ctx: &Context, mut circuit: Circuit) -> Result<Circuit, StepError> {
    let now = ctx.now_ms();
    let deadline = retention_deadline_ms(
        circuit.oldest_sent_ms,
        circuit.retention_seconds,
        ctx.config.retention_margin_seconds,
    );
    if must_give_up(now, deadline) {
        circuit.next = Some(Next::GiveUp);
        circuit.reason = format!(
            "retention guard: the oldest message (sent at {} ms) would expire within the {}s margin",
            circuit.oldest_sent_ms, ctx.config.retention_margin_seconds
        );
        return Ok(circuit);
    }

    circuit.attempt += 1;
    let (outcome, reason) = probe_once(ctx, &mut circuit).await?;
    circuit.next = Some(with_rejitter(
        after_probe(&outcome, ctx.config.empty_queue),
        &outcome,
        ctx.config.rejitter_function.is_some(),
    ));
    circuit.reason = reason;
    circuit.last_probe = format!("{outcome:?}");
    tracing::info!(
        attempt = circuit.attempt,
        outcome = ?outcome,
        next = ?circuit.next,
        reason = %circuit.reason,
        "probe done"
    );

    let transition = match outcome {
        ProbeOutcome::Healthy | ProbeOutcome::HealthCheckPassed => Some(Transition::ProbeSucceeded),
        ProbeOutcome::Failed | ProbeOutcome::HealthCheckFailed => Some(Transition::ProbeFailed),
        ProbeOutcome::Empty | ProbeOutcome::OnlyHidden => None,
    };
    ctx.store()
        .record_probe(
            &circuit.mapping.uuid,
            &circuit.execution,
            now,
            &format!("{outcome:?}"),
        )
        .await?;
    if let Some(transition) = transition {
        ctx.signals()
            .emit(transition, &ctx.detail(&circuit, &circuit.reason))
            .await?;
    }
    Ok(circuit)
}

async fn probe_once(
    ctx: &Context,
    circuit: &mut Circuit,
) -> Result<(ProbeOutcome, String), StepError> {
    let lambda = &ctx.clients.lambda;
    // A health check is consulted first: a failed one costs no message a receive.
    let health_checked = match &ctx.config.health_check_function {
        Some(function) => {
            if !consumer::health_check(lambda, function).await? {
                return Ok((
                    ProbeOutcome::HealthCheckFailed,
                    format!("health check {function} failed"),
                ));
            }
            true
        }
        None => false,
    };

    let sqs = &ctx.clients.sqs;
    let Some(message) =
        queue::receive_one(sqs, &circuit.queue_url, circuit.probe_visibility_seconds).await?
    else {
        if health_checked {
            return Ok((
                ProbeOutcome::HealthCheckPassed,
                "no visible message; health check passed".into(),
            ));
        }
        // Right after the circuit opens, the consumer's last failed batches are typically
        // hidden for the visibility timeout: that queue is not empty, and closing on it would
        // re-enable a consumer that is still failing.
        let hidden = queue::hidden_messages(sqs, &circuit.queue_url).await?;
        return Ok(if hidden > 0 {
            (
                ProbeOutcome::OnlyHidden,
                format!("no visible message; {hidden} in flight or delayed: waiting for them"),
            )
        } else {
            (
                ProbeOutcome::Empty,
                "queue empty: nothing to probe with".into(),
            )
        });
    };
    let receipt = message.receipt_handle().unwrap_or_default().to_string();
    let message_id = message.message_id().unwrap_or_default().to_string();
    if let Some(sent) = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
        .and_then(|v| v.parse::<u64>().ok())
    {
        circuit.oldest_sent_ms = circuit.oldest_sent_ms.min(sent);
    }

    let record = queue::to_record(&message, &circuit.queue_arn, &circuit.region);
    let invocation = match consumer::invoke_with_record(
        lambda,
        &circuit.mapping.function_arn,
        record,
    )
    .await
    {
        Ok(invocation) => invocation,
        Err(e) => {
            // Give the message back before failing the step: nothing may stay borrowed.
            if let Err(release) = queue::release(sqs, &circuit.queue_url, &receipt, 0).await {
                tracing::warn!(message_id = %message_id, error = %release, "could not release the probe message; it reappears after its visibility timeout");
            }
            return Err(e);
        }
    };
    let verdict = judge(&ProbeInvocation {
        function_error: invocation.function_error.as_deref(),
        payload: &invocation.payload,
        reports_batch_item_failures: circuit.mapping.reports_batch_item_failures(),
        message_id: &message_id,
    });
    match verdict {
        crate::core::Verdict::Healthy => {
            queue::delete(sqs, &circuit.queue_url, &receipt).await?;
            Ok((
                ProbeOutcome::Healthy,
                format!("message {message_id} processed"),
            ))
        }
        crate::core::Verdict::Failed { reason } => {
            // Hidden until about the next probe, which then takes another message; its
            // receive count grew, so redrive still applies to a poison message.
            let hide = ctx
                .config
                .backoff
                .failed_probe_hide_seconds(circuit.attempt);
            queue::release(sqs, &circuit.queue_url, &receipt, hide).await?;
            Ok((
                ProbeOutcome::Failed,
                format!("message {message_id}: {reason}"),
            ))
        }
    }
}
