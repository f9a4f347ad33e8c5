//! One invocation: decide, plan, send, respond.
//!
//! The rejitter's event source mapping (on the consumer's own queue, with
//! `ReportBatchItemFailures`) is on only during a recovery. For each batch:
//!
//! 1. A record without a `messageId` could not be listed in `batchItemFailures`, so the whole
//!    invocation fails before any call: the mapping retries the batch and nothing is re-sent
//!    twice.
//! 2. Each record is re-sent to the queue it came from (its `eventSourceARN`): the
//!    deployment's consumer's queue (`QUEUE_ARN`) or an attachment's, whose stack maps the
//!    rejitter to it ([`Queues`]). A record with no usable `eventSourceARN` (missing, not an
//!    SQS ARN, a FIFO queue) is left on its queue: re-sending it could move it elsewhere.
//! 3. A record this recovery already rejittered ([`crate::marker`]) is re-sent as a fresh copy
//!    delayed [`RESEND_DELAY_SECONDS`] with a fresh marker, instead of a random delay: while the
//!    phase lasts it comes back about once a minute, and after it the consumer waits at most
//!    that long for it.
//! 4. Before the first call the queue is looked up ([`Queue::info`]: one `GetQueueUrl` and one
//!    `GetQueueAttributes` call per process); if that fails, the whole invocation fails before
//!    anything is sent (the mapping retries the batch, and the next invocation looks the queue
//!    up again). No call at all when no record is to be planned (all from another queue).
//! 5. The records of step 3 and the others are planned apart ([`crate::plan::plan`], marker =
//!    the current epoch second, against the queue's `MaximumMessageSize`), the others with the
//!    configured random delays. Each batch of either is sent with one `SendMessageBatch` call,
//!    up to [`MAX_CONCURRENT_SENDS`] at once.
//! 6. `batchItemFailures` lists exactly the records not re-sent (left on the queue: from
//!    another queue, rejected by the plan, or not confirmed by SQS), in record order. Lambda
//!    deletes the others, whose delayed copies are now on the queue.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::Diagnostic;
use tokio::task::JoinSet;
use tracing::instrument::WithSubscriber;
use tracing::Instrument;

use crate::config::Config;
use crate::delay::{random_unit, DelayRange};
use crate::marker::{already_rejittered, marker_of, RESEND_DELAY_SECONDS};
use crate::metrics::{emf_line, Counts};
use crate::plan::{plan, Outgoing};
use crate::queues::Queues;
use crate::sender::{send_batch, Queue, QueueLookupError, SendFailure};

/// Most `SendMessageBatch` calls in flight at once in one invocation.
pub const MAX_CONCURRENT_SENDS: usize = 4;

/// The delay of every copy of an already rejittered record.
const RESEND_DELAYS: DelayRange = DelayRange::fixed(RESEND_DELAY_SECONDS);

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
    Rejected,
    SendFailed,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::OtherQueue => "other_queue",
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
    // Already rejittered during this recovery: re-sent with the short fixed delay.
    let mut to_resend = Vec::new();
    let max_delay = config.delays.max();
    for record in records {
        let message_id = record.message_id.clone().unwrap_or_default();
        if record.event_source_arn.as_deref() != Some(queue.arn()) {
            left.push(Left {
                message_id,
                reason: format!(
                    "the record comes from {}, not from QUEUE_ARN {}; not re-sent to another queue",
                    record
                        .event_source_arn
                        .as_deref()
                        .unwrap_or("an unknown queue (no eventSourceARN)"),
                    queue.arn()
                ),
                kind: Kind::OtherQueue,
            });
        } else if already_rejittered(marker_of(record), now_s, max_delay) {
            to_resend.push(record.clone());
        } else {
            to_send.push(record.clone());
        }
    }
    let other_queue = left.len();

    // Before any send: without the URL nothing can be done, so the batch is retried.
    let info = if to_send.is_empty() && to_resend.is_empty() {
        None
    } else {
        Some(queue.info().await.map_err(|e| {
            let error = HandlerError::from(e);
            log_error(&error, batch_size);
            error
        })?)
    };

    let limit = info.map_or(crate::size::SQS_MAX_MESSAGE_BYTES, |i| i.max_message_bytes);
    let pass = now_s.to_string();
    let (mut batches, mut rejected) = plan(&to_send, &config.delays, &pass, limit, draw);
    // The delay is fixed: no draw is taken from `draw`.
    let (resend_batches, resend_rejected) = plan(&to_resend, &RESEND_DELAYS, &pass, limit, || 0.0);
    let resent: HashSet<String> = resend_batches
        .iter()
        .flatten()
        .map(|o| o.message_id.clone())
        .collect();
    batches.extend(resend_batches);
    rejected.extend(resend_rejected);
    left.extend(rejected.iter().filter_map(|r| {
        Some(Left {
            message_id: r.message_id.clone()?,
            reason: r.reason.to_string(),
            kind: Kind::Rejected,
        })
    }));

    let planned: usize = batches.iter().map(Vec::len).sum();
    let batch_count = batches.len();
    let send_failures = match info {
        None => Vec::new(),
        Some(info) => send_all(queue.client(), &info.url, batches).await,
    };
    let failed_sends = send_failures.len();
    let failed_resends = send_failures
        .iter()
        .filter(|f| resent.contains(&f.message_id))
        .count();
    left.extend(send_failures.into_iter().map(|f| Left {
        reason: if resent.contains(&f.message_id) {
            format!(
                "already rejittered during this recovery, its copy delayed \
                 {RESEND_DELAY_SECONDS} s was not sent: {}",
                f.reason
            )
        } else {
            f.reason
        },
        message_id: f.message_id,
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
        tracing::warn!(message_id, outcome, reason, "record left on the queue");
    }

    let counts = Counts {
        rejittered: planned.saturating_sub(failed_sends),
        batches: batch_count,
        failures: other_queue + rejected.len() + failed_sends,
        resent_already_rejittered: resent.len().saturating_sub(failed_resends),
    };
    tracing::info!(
        records = batch_size,
        rejittered = counts.rejittered,
        batches = counts.batches,
        failures = counts.failures,
        resent_already_rejittered = counts.resent_already_rejittered,
        batch_item_failures = left.len(),
        pass = now_s,
        "invocation done"
    );

    let mut response = SqsBatchResponse::default();
    response.set_failures(left.into_iter().map(|l| l.message_id));
    Ok(Outcome { response, counts })
}

/// [`handle`] with the real clock and random draws, once per source queue of the batch
/// ([`Queues::group`]), then one EMF metrics line per queue on stdout. A mapping's batch
/// comes from its one queue, so there is one group in practice. A failed group fails the
/// whole invocation and counts its records as failures.
pub async fn invoke(
    queues: &Queues,
    config: &Config,
    event: SqsEvent,
) -> Result<SqsBatchResponse, HandlerError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let timestamp_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
    let mut failures = Vec::new();
    for (queue, records) in queues.group(&event.records) {
        let result = handle(&queue, config, &records, now.as_secs(), random_unit).await;
        let counts = match &result {
            Ok(outcome) => outcome.counts,
            Err(_) => Counts {
                failures: records.len(),
                ..Counts::default()
            },
        };
        println!(
            "{}",
            emf_line(
                &config.metrics_namespace,
                queue.name(),
                timestamp_ms,
                &counts
            )
        );
        failures.extend(result?.response.batch_item_failures);
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    Ok(response)
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
