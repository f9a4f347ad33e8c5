//! The whole decision for one invocation: which records are re-sent, how, and in which batches.
//!
//! Pure so the handler is left with I/O only: send each batch, then report as
//! `batchItemFailures` every rejected record and every entry SQS refused. A record is either
//! planned or rejected, never dropped.

use std::collections::BTreeMap;

use aws_lambda_events::event::sqs::SqsMessage;

use crate::attributes::{out_attributes, trace_header, with_marker, AttributeError, OutAttribute};
use crate::batch::pack_within;
use crate::delay::DelayRange;
use crate::size::message_bytes;

/// One message to re-send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The received record's id, to report it in `batchItemFailures` if sending fails.
    pub message_id: String,
    /// The `SendMessageBatch` entry id: `m{i}` for the i-th entry of its batch, which is unique
    /// in the batch and within SQS's 1-80 characters of `[A-Za-z0-9_-]`.
    pub entry_id: String,
    /// The body exactly as received.
    pub body: String,
    /// The received message attributes, plus the [`crate::attributes::MARKER`] when it fits.
    pub attributes: BTreeMap<String, OutAttribute>,
    /// `AWSTraceHeader`, to send as a message system attribute.
    pub trace_header: Option<String>,
    pub delay_seconds: u32,
}

impl Outgoing {
    /// The bytes SQS counts for this message (see [`crate::size`]).
    pub fn size(&self) -> usize {
        message_bytes(&self.body, &self.attributes)
    }
}

/// A record that cannot be re-sent as received. The handler reports it as a batch item failure
/// (when it has an id) so it stays on the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub message_id: Option<String>,
    pub reason: RejectReason,
}

/// Why a record was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("the record has no messageId")]
    MissingMessageId,

    #[error("the record has no body")]
    MissingBody,

    #[error(transparent)]
    Attributes(#[from] AttributeError),
}

/// Plans the re-send of `records`: batches of [`Outgoing`] in record order, and the rejected
/// records in record order.
///
/// `draw` yields uniform values in `[0, 1)` (see [`crate::delay::random_unit`]); it is called
/// once per accepted record, in order, for its delay. `pass` is the marker value; the marker is
/// left off when it does not fit (see [`with_marker`]) or would push a message that fits over
/// `max_message_bytes`, the queue's limit ([`crate::size::message_limit`]). A message already
/// over that limit is still planned, alone in its batch, so the send reports it. Batches total
/// at most [`crate::size::MAX_BATCH_BYTES`] (see [`pack_within`]).
pub fn plan(
    records: &[SqsMessage],
    range: &DelayRange,
    pass: &str,
    max_message_bytes: usize,
    mut draw: impl FnMut() -> f64,
) -> (Vec<Vec<Outgoing>>, Vec<Rejected>) {
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    for record in records {
        match prepare(record, pass, max_message_bytes) {
            Ok(mut outgoing) => {
                outgoing.delay_seconds = range.draw(draw());
                accepted.push(outgoing);
            }
            Err(r) => rejected.push(r),
        }
    }

    let sizes: Vec<usize> = accepted.iter().map(Outgoing::size).collect();
    let mut messages = accepted.into_iter();
    let batches = pack_within(&sizes, max_message_bytes)
        .into_iter()
        .map(|range| {
            messages
                .by_ref()
                .take(range.len())
                .enumerate()
                .map(|(i, outgoing)| Outgoing {
                    entry_id: format!("m{i}"),
                    ..outgoing
                })
                .collect()
        })
        .collect();
    (batches, rejected)
}

/// Everything but the entry id and delay, which depend on the other records and the draw.
fn prepare(
    record: &SqsMessage,
    pass: &str,
    max_message_bytes: usize,
) -> Result<Outgoing, Rejected> {
    let Some(message_id) = record.message_id.clone() else {
        return Err(Rejected {
            message_id: None,
            reason: RejectReason::MissingMessageId,
        });
    };
    let reject = |reason| Rejected {
        message_id: Some(message_id.clone()),
        reason,
    };
    let Some(body) = record.body.clone() else {
        return Err(reject(RejectReason::MissingBody));
    };
    let received = out_attributes(record).map_err(|e| reject(e.into()))?;
    let (marked, _) = with_marker(received.clone(), pass);
    let attributes = if message_bytes(&body, &marked) > max_message_bytes
        && message_bytes(&body, &received) <= max_message_bytes
    {
        received
    } else {
        marked
    };
    Ok(Outgoing {
        message_id,
        entry_id: String::new(),
        body,
        attributes,
        trace_header: trace_header(record),
        delay_seconds: 0,
    })
}

#[cfg(test)]
mod tests;
