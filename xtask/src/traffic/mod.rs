//! Example traffic for the example queue, and reading back what the consumer processed.
//!
//! Every message sent is returned with its content fingerprint
//! ([`example_consumer::fingerprint`]), which the consumer logs for each record: tests compare
//! the two as multisets, since the rejitter re-sends messages under new SQS message ids. Sizes
//! and batches follow the rejitter's rules ([`rejitter::size`], [`rejitter::batch::pack`]), so
//! both count a message the way SQS does.

use anyhow::{bail, Context, Result};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_smithy_types::error::display::DisplayErrorContext;
use example_consumer::fingerprint::{fingerprint, AttributeValue as Fingerprinted};
use rejitter::attributes::{AttributeValue, OutAttribute, MAX_MESSAGE_ATTRIBUTES};
use rejitter::size::{message_bytes, MAX_MESSAGE_BYTES};
use std::collections::BTreeMap;

mod processed;
pub use processed::{
    processed_field, processed_fingerprints, processed_ids, processed_log, processed_message_id,
    processed_record, processed_records, Processed,
};

/// A message that was sent: its SQS id and its content fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub message_id: String,
    pub fingerprint: String,
}

/// A message to send: body and message attributes by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub body: String,
    pub attributes: BTreeMap<String, OutAttribute>,
}

impl Message {
    /// The bytes SQS counts: body plus every attribute's name, data type and value.
    pub fn size(&self) -> usize {
        message_bytes(&self.body, &self.attributes)
    }

    /// The fingerprint the consumer will log for this message.
    pub fn fingerprint(&self) -> String {
        fingerprint(
            &self.body,
            self.attributes.iter().map(|(name, attribute)| {
                let value = match &attribute.value {
                    AttributeValue::String(s) => Fingerprinted::String(s),
                    AttributeValue::Binary(b) => Fingerprinted::Binary(b),
                };
                (name.as_str(), attribute.data_type.as_str(), value)
            }),
        )
    }
}

fn string(data_type: &str, value: impl Into<String>) -> OutAttribute {
    OutAttribute {
        data_type: data_type.to_owned(),
        value: AttributeValue::String(value.into()),
    }
}

fn binary(data_type: &str, value: Vec<u8>) -> OutAttribute {
    OutAttribute {
        data_type: data_type.to_owned(),
        value: AttributeValue::Binary(value),
    }
}

/// The fingerprint of a message as received from SQS (asked with every message attribute):
/// the one the consumer would log for it, e.g. for a message read from a dead-letter queue.
pub fn received_fingerprint(m: &aws_sdk_sqs::types::Message) -> String {
    let attributes = m.message_attributes().into_iter().flatten();
    fingerprint(
        m.body().unwrap_or_default(),
        attributes.map(|(name, a)| {
            let value = match (a.string_value(), a.binary_value()) {
                (_, Some(b)) => Fingerprinted::Binary(b.as_ref()),
                (s, None) => Fingerprinted::String(s.unwrap_or_default()),
            };
            (name.as_str(), a.data_type(), value)
        }),
    )
}

/// The `n`-th plain example message: body `{"id":"{prefix}-{n}","n":n}` with String, Number
/// and Binary attributes.
pub fn example_message(prefix: &str, n: usize) -> Message {
    Message {
        body: format!(r#"{{"id":"{prefix}-{n}","n":{n}}}"#),
        attributes: BTreeMap::from([
            ("source".to_owned(), string("String", "xtask")),
            ("sequence".to_owned(), string("Number", n.to_string())),
            (
                "checksum".to_owned(),
                binary("Binary", (n as u32).to_be_bytes().to_vec()),
            ),
        ]),
    }
}

/// Sends `count` plain example messages ([`example_message`]); returns them as sent, in order.
pub async fn send(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    prefix: &str,
    count: usize,
) -> Result<Vec<Sent>> {
    let messages: Vec<Message> = (0..count).map(|n| example_message(prefix, n)).collect();
    send_messages(sqs, queue_url, &messages).await
}

/// How [`mixed_message`] varies its messages. Every message has `n % 11` attributes (0 to 10,
/// so one in eleven has ten and no room for the rejitter's marker) of String, Number and
/// Binary types, some with custom suffixes, and a small body, unless it is picked below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    /// Every `full_size_every`-th message is exactly [`MAX_MESSAGE_BYTES`] (0: none).
    pub full_size_every: usize,
    /// Every `large_every`-th other message has a body of 8 to 64 KiB (0: none).
    pub large_every: usize,
}

impl Default for Mix {
    /// For 5,000 messages: 5 of the largest size SQS takes, 95 large ones, the rest small.
    fn default() -> Self {
        Mix {
            full_size_every: 1000,
            large_every: 50,
        }
    }
}

/// The smallest and largest body of a "large" message.
const LARGE_BODY: std::ops::Range<usize> = 8 * 1024..64 * 1024;

/// The `n`-th message of a [`Mix`]; deterministic, so a failure can be reproduced. The body is
/// JSON carrying `{prefix}-{n}`, so bodies are unique within a prefix.
pub fn mixed_message(prefix: &str, n: usize, mix: &Mix) -> Message {
    let picked = |every: usize| every != 0 && n % every == every - 1;
    let attributes: BTreeMap<String, OutAttribute> = (0..n % (MAX_MESSAGE_ATTRIBUTES + 1))
        .map(|k| mixed_attribute(n, k))
        .collect();
    // Multi-byte text in some bodies, so sizes are counted in UTF-8 bytes, not characters.
    let text = if n.is_multiple_of(3) {
        "é€😀"
    } else {
        "plain"
    };
    let head = format!(r#"{{"id":"{prefix}-{n}","n":{n},"text":"{text}","pad":""#);
    let tail = "\"}";
    let body_bytes = if picked(mix.full_size_every) {
        let attribute_bytes = message_bytes("", &attributes);
        MAX_MESSAGE_BYTES.saturating_sub(attribute_bytes)
    } else if picked(mix.large_every) {
        LARGE_BODY.start + n.wrapping_mul(7919) % LARGE_BODY.len()
    } else {
        head.len() + tail.len() + n % 200
    };
    let pad = body_bytes.saturating_sub(head.len() + tail.len());
    Message {
        body: format!("{head}{}{tail}", "x".repeat(pad)),
        attributes,
    }
}

/// The `k`-th attribute of message `n`: six kinds in turn, with valid names, numbers and
/// non-empty values (SQS refuses empty ones).
fn mixed_attribute(n: usize, k: usize) -> (String, OutAttribute) {
    let bytes = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|i| (n.wrapping_mul(31) + k * 7 + i * 13) as u8)
            .collect()
    };
    match (n + k) % 6 {
        0 => (
            format!("text-{k}"),
            string("String", format!("v{n}.{k} é€😀")),
        ),
        1 => (
            format!("doc_{k}.json"),
            string("String.json", format!(r#"{{"n":{n},"k":{k}}}"#)),
        ),
        2 => (format!("amount{k}"), string("Number", format!("-{n}.{k}5"))),
        3 => (
            format!("count.{k}"),
            string("Number.int", (n * k).to_string()),
        ),
        4 => (format!("raw{k}"), binary("Binary", bytes(1 + (n + k) % 32))),
        _ => {
            let mut gz = vec![0x1f, 0x8b, 0x08];
            gz.extend(bytes(8 + n % 24));
            (format!("blob-{k}.gz"), binary("Binary.gz", gz))
        }
    }
}

/// Sends `count` messages of the default [`Mix`]; returns them as sent, in order.
pub async fn send_mixed(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    prefix: &str,
    count: usize,
) -> Result<Vec<Sent>> {
    let mix = Mix::default();
    let messages: Vec<Message> = (0..count).map(|n| mixed_message(prefix, n, &mix)).collect();
    send_messages(sqs, queue_url, &messages).await
}

/// Sends `messages` in as few `SendMessageBatch` calls as SQS's limits allow (10 entries and
/// 1 MiB a call, [`rejitter::batch::pack`]); fails if SQS refuses any entry. Returns them as
/// sent, in order.
pub async fn send_messages(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    messages: &[Message],
) -> Result<Vec<Sent>> {
    let sizes: Vec<usize> = messages.iter().map(Message::size).collect();
    let mut sent = Vec::with_capacity(messages.len());
    for batch in rejitter::batch::pack(&sizes) {
        let start = batch.start;
        let mut entries = Vec::with_capacity(batch.len());
        for (i, message) in messages[batch.clone()].iter().enumerate() {
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(format!("e{i}"))
                .message_body(&message.body);
            for (name, attribute) in &message.attributes {
                entry =
                    entry.message_attributes(name, rejitter::sender::message_attribute(attribute)?);
            }
            entries.push(entry.build()?);
        }
        let out = sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("SendMessageBatch: {}", DisplayErrorContext(e)))?;
        if let Some(failed) = out.failed().first() {
            bail!(
                "SendMessageBatch refused entry {} of the batch starting at message {start}: \
                 {}: {}",
                failed.id(),
                failed.code(),
                failed.message().unwrap_or("no reason given")
            );
        }
        let ids: BTreeMap<&str, &str> = out
            .successful()
            .iter()
            .map(|s| (s.id(), s.message_id()))
            .collect();
        for (i, message) in messages[batch].iter().enumerate() {
            let message_id = ids
                .get(format!("e{i}").as_str())
                .with_context(|| format!("SendMessageBatch did not list message {}", start + i))?;
            sent.push(Sent {
                message_id: (*message_id).to_owned(),
                fingerprint: message.fingerprint(),
            });
        }
    }
    Ok(sent)
}

/// A message sent to a FIFO queue: its place in its group, and what SQS gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentFifo {
    pub group: String,
    /// Its place in its group, from 0, in send order.
    pub index: usize,
    pub deduplication_id: String,
    pub sequence_number: String,
    pub fingerprint: String,
}

/// Sends `per_group` example messages to each of `groups` on a FIFO queue, one at a time and
/// round-robin across the groups (so their sequence numbers interleave), each with its own
/// deduplication id; returns them in send order.
pub async fn send_fifo(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    groups: &[&str],
    per_group: usize,
) -> Result<Vec<SentFifo>> {
    let mut sent = Vec::with_capacity(groups.len() * per_group);
    for index in 0..per_group {
        for group in groups {
            let message = example_message(group, index);
            let deduplication_id = format!("{group}-{index}");
            let mut send = sqs
                .send_message()
                .queue_url(queue_url)
                .message_body(&message.body)
                .message_group_id(*group)
                .message_deduplication_id(&deduplication_id);
            for (name, attribute) in &message.attributes {
                send =
                    send.message_attributes(name, rejitter::sender::message_attribute(attribute)?);
            }
            let out = send
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("SendMessage: {}", DisplayErrorContext(e)))?;
            sent.push(SentFifo {
                group: (*group).to_owned(),
                index,
                deduplication_id,
                sequence_number: out
                    .sequence_number()
                    .context("a FIFO SendMessage returned no SequenceNumber")?
                    .to_owned(),
                fingerprint: message.fingerprint(),
            });
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests;
