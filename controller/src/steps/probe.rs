//! Probe: hand exactly one real message to the consumer, as its mapping would, and judge.

use super::hold::{hold, Hold};
use super::Context;
use crate::adapters::signals::Transition;
use crate::adapters::{consumer, queue};
use crate::circuit::Circuit;
use crate::core::hang::{probe_invoke_timeout, PROBE_VISIBILITY_MARGIN_SECONDS};
use crate::core::history::{task, FLOW_STATE};
use crate::core::receives::{after_failed_probe, GiveBack};
use crate::core::{
    after_probe, judge, must_give_up, retention_deadline_ms, with_rejitter, with_slow_start, Next,
    ProbeInvocation, ProbeOutcome,
};
use crate::error::StepError;
use aws_sdk_sqs::types::MessageSystemAttributeName;

/// What the probe hands the consumer and how it judges the answer: the function the circuit
/// recorded at open, and the mapping's response types as they are now (a deploy may change
/// them while the circuit is open).
struct Target {
    function_arn: String,
    reports_batch_item_failures: bool,
}

pub async fn probe(
    ctx: &Context,
    mut circuit: Circuit,
    retries: u32,
) -> Result<Circuit, StepError> {
    // WaitBeforeProbe, this Task, ProbeVerdict.
    circuit.history_events += FLOW_STATE + task(retries) + FLOW_STATE;
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

    let target = match hold(ctx, &circuit).await? {
        Hold::Mine { snapshot, mapping } => Target {
            function_arn: snapshot.function_arn,
            reports_batch_item_failures: mapping.reports_batch_item_failures(),
        },
        Hold::Elsewhere(reason) => {
            tracing::warn!(reason = %reason, "the circuit was ended by someone else");
            circuit.next = Some(Next::ClosedElsewhere);
            circuit.reason = reason;
            return Ok(circuit);
        }
    };

    circuit.attempt += 1;
    let (outcome, reason) = probe_once(ctx, &mut circuit, &target).await?;
    circuit.next = Some(with_slow_start(
        with_rejitter(
            after_probe(&outcome, ctx.config.empty_queue),
            &outcome,
            ctx.config.rejitter_function.is_some(),
        ),
        ctx.config.slow_start_seconds,
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
            .await;
    }
    Ok(circuit)
}

async fn probe_once(
    ctx: &Context,
    circuit: &mut Circuit,
    target: &Target,
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
    // The probe's message stays hidden for the consumer's timeout + 30 s: that is what the
    // consumer may take, and so what the probe waits for at most.
    let consumer_timeout = circuit
        .probe_visibility_seconds
        .saturating_sub(PROBE_VISIBILITY_MARGIN_SECONDS)
        .max(1);
    let remaining = ctx.deadline_ms.map(|d| d.saturating_sub(ctx.now_ms()));
    let timeout = probe_invoke_timeout(consumer_timeout, remaining);
    let invocation = match consumer::invoke_with_record(
        lambda,
        &target.function_arn,
        record,
        timeout,
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
        reports_batch_item_failures: target.reports_batch_item_failures,
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
            let receive_count = message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let fifo = ctx.config.queue_is_fifo();
            let given_back = match after_failed_probe(
                receive_count,
                circuit.max_receive_count,
                fifo,
            ) {
                // Hidden until about the next probe, which then takes another message; its
                // receive count grew, so redrive still applies to a poison message.
                GiveBack::Hide => {
                    let mut hide = ctx
                        .config
                        .backoff
                        .failed_probe_hide_seconds(circuit.attempt);
                    // A consumer that did not answer may still be working on it: keep it
                    // hidden as long as the consumer may run.
                    if invocation.function_error.as_deref() == Some(consumer::NO_ANSWER) {
                        hide = hide.max(circuit.probe_visibility_seconds);
                    }
                    queue::release(sqs, &circuit.queue_url, &receipt, hide).await?;
                    String::new()
                }
                // Its next receive would move it to the DLQ: send it again fresh, then delete
                // this one (a failure between the two duplicates it, never loses it).
                GiveBack::FreshCopy => {
                    let copy = queue::send_copy(sqs, &circuit.queue_url, &message).await?;
                    queue::delete(sqs, &circuit.queue_url, &receipt).await?;
                    tracing::info!(message_id = %message_id, copy = %copy, receive_count, "probe message given back as a fresh copy");
                    format!(
                        "; it had reached maxReceiveCount ({receive_count}), so it was given \
                         back as a fresh copy {copy}"
                    )
                }
            };
            Ok((
                ProbeOutcome::Failed,
                format!("message {message_id}: {reason}{given_back}"),
            ))
        }
    }
}
