//! One invocation: decide, plan, send, respond.
//!
//! The rejitter's event source mapping (on the consumer's own queue, with
//! `ReportBatchItemFailures`) is on only during a recovery. For each batch:
//!
//! 1. A record without a `messageId` could not be listed in `batchItemFailures`, so the whole
//!    invocation fails before any call: the mapping retries the batch and nothing is re-sent
//!    twice.
//! 2. A record whose `eventSourceARN` is not the configured `QUEUE_ARN` is left on its queue:
//!    the mapping never delivers one, but re-sending it would move it to another queue.
//! 3. A record this recovery already rejittered ([`crate::marker`]) is left on the queue, hidden
//!    until the phase must be over ([`crate::hide`]) so the rejitter receives it at most once
//!    more.
//! 4. Before the first call the queue is looked up ([`Queue::info`]: one `GetQueueUrl` and one
//!    `GetQueueAttributes` call per process); if that fails, the whole invocation fails before
//!    anything is sent or hidden (the mapping retries the batch, and the next invocation looks
//!    the queue up again). No call at all when no record is to be planned or hidden (all from
//!    another queue, or already rejittered without a receipt handle).
//! 5. The rest is planned ([`crate::plan::plan`], marker = the current epoch second, against the
//!    queue's `MaximumMessageSize`). Each batch is sent with one `SendMessageBatch` call, up to
//!    [`MAX_CONCURRENT_SENDS`] at once; meanwhile the records of step 3 are hidden with
//!    `ChangeMessageVisibilityBatch`.
//! 6. `batchItemFailures` lists exactly the records not re-sent (left on the queue: from
//!    another queue, already rejittered, whether hidden or not, rejected by the plan, or not
//!    confirmed by SQS), in record order. Lambda deletes the others, whose delayed copies are
//!    now on the queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::Diagnostic;
use tokio::task::JoinSet;
use tracing::instrument::WithSubscriber;
use tracing::Instrument;

use crate::config::Config;
use crate::delay::random_unit;
use crate::hide::hide_seconds;
use crate::marker::{already_rejittered, marker_of, marker_seconds};
use crate::metrics::{emf_line, Counts};
use crate::plan::{plan, Outgoing};
use crate::sender::{hide_all, send_batch, Hide, Queue, QueueLookupError, SendFailure};

/// Most `SendMessageBatch` calls in flight at once in one invocation.
pub const MAX_CONCURRENT_SENDS: usize = 4;

/// Why an invocation failed as a whole (the mapping then retries the whole batch).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    #[error(
        "{} of {batch_size} records have no messageId (record indexes {indexes:?}), so they \
         cannot be reported as batch item failures; nothing was sent and the whole batch will \
         be retried",
        .indexes.len()
    )]
    MissingMessageId {
        indexes: Vec<usize>,
        batch_size: usize,
    },

    #[error(
        "cannot look up the URL of the queue {queue_arn} (GetQueueUrl failed: {reason}); \
         nothing was sent and the whole batch will be retried"
    )]
    QueueUrlUnavailable { queue_arn: String, reason: String },

    #[error(
        "cannot read the attributes of the queue {queue_arn} (GetQueueAttributes failed: \
         {reason}); nothing was sent and the whole batch will be retried"
    )]
    QueueAttributesUnavailable { queue_arn: String, reason: String },
}

impl HandlerError {
    /// The error type Lambda reports.
    pub fn name(&self) -> &'static str {
        match self {
            HandlerError::MissingMessageId { .. } => "MissingMessageId",
            HandlerError::QueueUrlUnavailable { .. } => "QueueUrlUnavailable",
            HandlerError::QueueAttributesUnavailable { .. } => "QueueAttributesUnavailable",
        }
    }
}

impl From<QueueLookupError> for HandlerError {
    fn from(e: QueueLookupError) -> HandlerError {
        let (queue_arn, reason) = (e.queue_arn.clone(), e.message.clone());
        if e.is_url() {
            HandlerError::QueueUrlUnavailable { queue_arn, reason }
        } else {
            HandlerError::QueueAttributesUnavailable { queue_arn, reason }
        }
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(err: HandlerError) -> Diagnostic {
        Diagnostic {
            error_type: err.name().to_owned(),
            error_message: err.to_string(),
        }
    }
}

/// The response for the event source mapping, and what the invocation did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub response: SqsBatchResponse,
    pub counts: Counts,
}

/// Why a record stays on the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OtherQueue,
    AlreadyRejittered,
    Rejected,
    SendFailed,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::OtherQueue => "other_queue",
            Kind::AlreadyRejittered => "already_rejittered",
            Kind::Rejected => "rejected",
            Kind::SendFailed => "send_failed",
        }
    }
}

struct Left {
    message_id: String,
    reason: String,
    kind: Kind,
}

/// Handles one batch at `now_s` (epoch seconds, also the marker written); `draw` yields the
/// uniform `[0, 1)` values for the delays (see [`crate::delay::random_unit`]).
pub async fn handle(
    queue: &Queue,
    config: &Config,
    records: &[SqsMessage],
    now_s: u64,
    draw: impl FnMut() -> f64,
) -> Result<Outcome, HandlerError> {
    let batch_size = records.len();
    // Before any call: a record that cannot be listed fails the whole batch.
    let missing: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.message_id.is_none())
        .map(|(i, _)| i)
        .collect();
    if !missing.is_empty() {
        let error = HandlerError::MissingMessageId {
            indexes: missing,
            batch_size,
        };
        log_error(&error, batch_size);
        return Err(error);
    }

    let mut left = Vec::new();
    let mut to_send = Vec::with_capacity(batch_size);
    // Already rejittered: (index in `left`, marker second, receipt handle).
    let mut to_hide = Vec::new();
    let max_delay = config.delays.max();
    for record in records {
        let message_id = record.message_id.clone().unwrap_or_default();
        if record.event_source_arn.as_deref() != Some(config.queue_arn.as_str()) {
            left.push(Left {
                message_id,
                reason: format!(
                    "the record comes from {}, not from QUEUE_ARN {}; not re-sent to another queue",
                    record
                        .event_source_arn
                        .as_deref()
                        .unwrap_or("an unknown queue (no eventSourceARN)"),
                    config.queue_arn
                ),
                kind: Kind::OtherQueue,
            });
            continue;
        }
        let marker = marker_of(record);
        if already_rejittered(marker, now_s, max_delay) {
            let reason = format!(
                "already rejittered during this recovery (marker {}); left for the consumer",
                marker.unwrap_or_default()
            );
            match (marker_seconds(marker), record.receipt_handle.as_deref()) {
                (Some(sent_s), Some(handle)) if !handle.is_empty() => {
                    to_hide.push((left.len(), sent_s, handle.to_owned()))
                }
                _ => {}
            }
            left.push(Left {
                message_id,
                reason,
                kind: Kind::AlreadyRejittered,
            });
        } else {
            to_send.push(record.clone());
        }
    }
    let other_queue = left.iter().filter(|l| l.kind == Kind::OtherQueue).count();
    let skipped_already_rejittered = left.len() - other_queue;

    // Before any send or hide: without the URL nothing can be done, so the batch is retried.
    let info = if to_send.is_empty() && to_hide.is_empty() {
        None
    } else {
        Some(queue.info().await.map_err(|e| {
            let error = HandlerError::from(e);
            log_error(&error, batch_size);
            error
        })?)
    };

    let limit = info.map_or(crate::size::SQS_MAX_MESSAGE_BYTES, |i| i.max_message_bytes);
    let (batches, rejected) = plan(&to_send, &config.delays, &now_s.to_string(), limit, draw);
    left.extend(rejected.iter().filter_map(|r| {
        Some(Left {
            message_id: r.message_id.clone()?,
            reason: r.reason.to_string(),
            kind: Kind::Rejected,
        })
    }));

    // How long to hide each already rejittered record; 0 means no call.
    let retention = info.and_then(|i| i.retention_seconds);
    let mut hides = Vec::new();
    let mut hidden_records = Vec::new();
    for (index, sent_s, receipt_handle) in to_hide {
        let seconds = hide_seconds(sent_s, now_s, config.rejitter_max_seconds, retention);
        if seconds == 0 {
            left[index]
                .reason
                .push_str("; not hidden: the rejitter phase must be over by now");
            continue;
        }
        hidden_records.push(index);
        hides.push(Hide {
            message_id: left[index].message_id.clone(),
            receipt_handle,
            seconds,
        });
    }

    let planned: usize = batches.iter().map(Vec::len).sum();
    let batch_count = batches.len();
    let (send_failures, hide_failures) = match info {
        None => (Vec::new(), Vec::new()),
        Some(info) => {
            tokio::join!(
                send_all(queue.client(), &info.url, batches),
                hide_all(queue.client(), &info.url, &hides)
            )
        }
    };
    let failed_sends = send_failures.len();
    let hidden = hides.len() - hide_failures.len();
    let hide_failed: HashMap<usize, String> = hide_failures
        .into_iter()
        .map(|f| (f.index, f.reason))
        .collect();
    for (i, (index, hide)) in hidden_records.into_iter().zip(&hides).enumerate() {
        let reason = &mut left[index].reason;
        match hide_failed.get(&i) {
            None => reason.push_str(&format!("; hidden for {} s", hide.seconds)),
            Some(why) => reason.push_str(&format!(
                "; could not be hidden for {} s: {why}",
                hide.seconds
            )),
        }
    }
    left.extend(send_failures.into_iter().map(|f| Left {
        message_id: f.message_id,
        reason: f.reason,
        kind: Kind::SendFailed,
    }));

    // Record order, so the response and the logs read like the batch.
    let position: HashMap<&str, usize> = records
        .iter()
        .enumerate()
        .rev()
        .filter_map(|(i, r)| Some((r.message_id.as_deref()?, i)))
        .collect();
    left.sort_by_key(|l| position.get(l.message_id.as_str()).copied());

    for l in &left {
        let (message_id, reason) = (l.message_id.as_str(), l.reason.as_str());
        let outcome = l.kind.as_str();
        match l.kind {
            Kind::AlreadyRejittered => {
                tracing::info!(message_id, outcome, reason, "record left on the queue")
            }
            Kind::OtherQueue | Kind::Rejected | Kind::SendFailed => {
                tracing::warn!(message_id, outcome, reason, "record left on the queue")
            }
        }
    }

    let counts = Counts {
        rejittered: planned.saturating_sub(failed_sends),
        batches: batch_count,
        failures: other_queue + rejected.len() + failed_sends,
        skipped_already_rejittered,
    };
    tracing::info!(
        records = batch_size,
        rejittered = counts.rejittered,
        batches = counts.batches,
        failures = counts.failures,
        skipped_already_rejittered = counts.skipped_already_rejittered,
        hidden,
        batch_item_failures = left.len(),
        pass = now_s,
        "invocation done"
    );

    let mut response = SqsBatchResponse::default();
    response.set_failures(left.into_iter().map(|l| l.message_id));
    Ok(Outcome { response, counts })
}

/// [`handle`] with the real clock and random draws, then one EMF metrics line on stdout. A
/// failed invocation counts all its records as failures.
pub async fn invoke(
    queue: &Queue,
    config: &Config,
    event: SqsEvent,
) -> Result<SqsBatchResponse, HandlerError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let result = handle(queue, config, &event.records, now.as_secs(), random_unit).await;
    let counts = match &result {
        Ok(outcome) => outcome.counts,
        Err(_) => Counts {
            failures: event.records.len(),
            ..Counts::default()
        },
    };
    let timestamp_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
    println!(
        "{}",
        emf_line(
            &config.metrics_namespace,
            config.queue_name(),
            timestamp_ms,
            &counts
        )
    );
    result.map(|outcome| outcome.response)
}

/// Sends every batch, at most [`MAX_CONCURRENT_SENDS`] at once; returns the messages not
/// re-sent. A send task that dies (a panic) fails its whole batch.
async fn send_all(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    batches: Vec<Vec<Outgoing>>,
) -> Vec<SendFailure> {
    let queue_url: Arc<str> = queue_url.into();
    let mut pending = batches.into_iter();
    let mut running = JoinSet::new();
    let mut ids_by_task = HashMap::new();
    let mut failures = Vec::new();
    loop {
        while running.len() < MAX_CONCURRENT_SENDS {
            let Some(batch) = pending.next() else { break };
            let ids: Vec<String> = batch.iter().map(|o| o.message_id.clone()).collect();
            let (sqs, queue_url) = (sqs.clone(), Arc::clone(&queue_url));
            // The task logs in the invocation's span (requestId), to the same subscriber.
            let task = running.spawn(
                async move { send_batch(&sqs, &queue_url, &batch).await }
                    .in_current_span()
                    .with_current_subscriber(),
            );
            ids_by_task.insert(task.id(), ids);
        }
        match running.join_next_with_id().await {
            None => break,
            Some(Ok((id, batch_failures))) => {
                ids_by_task.remove(&id);
                failures.extend(batch_failures);
            }
            Some(Err(error)) => {
                tracing::error!(error = %error, "a SendMessageBatch task failed");
                let ids = ids_by_task.remove(&error.id()).unwrap_or_default();
                failures.extend(ids.into_iter().map(|message_id| SendFailure {
                    message_id,
                    reason: format!("the send task failed: {error}"),
                }));
            }
        }
    }
    failures
}

fn log_error(error: &HandlerError, batch_size: usize) {
    let error_type = error.name();
    match error {
        HandlerError::MissingMessageId { indexes, .. } => {
            // One line per bad record so each is searchable on its own.
            for &record_index in indexes {
                tracing::error!(
                    record_index,
                    batch_size,
                    error_type,
                    "record has no messageId"
                );
            }
            tracing::error!(batch_size, error_type, error = %error, "invocation failed");
        }
        HandlerError::QueueUrlUnavailable { queue_arn, .. }
        | HandlerError::QueueAttributesUnavailable { queue_arn, .. } => {
            tracing::error!(
                batch_size,
                error_type,
                queue_arn = %queue_arn,
                error = %error,
                "invocation failed"
            );
        }
    }
}
