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
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};
    use std::collections::HashSet;

    #[test]
    fn the_fingerprint_ignores_the_marker_the_rejitter_adds() {
        assert_eq!(
            example_consumer::fingerprint::REJITTER_MARKER,
            rejitter::MARKER
        );
    }

    #[test]
    fn a_received_message_has_the_fingerprint_it_was_sent_with() {
        use aws_sdk_sqs::types::MessageAttributeValue;
        let sent = example_message("fp", 3);
        let mut received = aws_sdk_sqs::types::Message::builder()
            .message_id("another id")
            .body(&sent.body);
        for (name, a) in &sent.attributes {
            let value = MessageAttributeValue::builder().data_type(&a.data_type);
            let value = match &a.value {
                AttributeValue::String(s) => value.string_value(s),
                AttributeValue::Binary(b) => {
                    value.binary_value(aws_smithy_types::Blob::new(b.clone()))
                }
            };
            received = received.message_attributes(name, value.build().unwrap());
        }
        assert_eq!(received_fingerprint(&received.build()), sent.fingerprint());
        let other = aws_sdk_sqs::types::Message::builder()
            .body(&sent.body)
            .build();
        assert_ne!(received_fingerprint(&other), sent.fingerprint());
    }

    /// Standard base64, as Lambda delivers binary values.
    fn base64(bytes: &[u8]) -> String {
        aws_smithy_types::base64::encode(bytes)
    }

    /// The record Lambda's SQS event source mapping would deliver for `message`.
    fn as_lambda_record(message: &Message) -> Value {
        let attributes: Map<String, Value> = message
            .attributes
            .iter()
            .map(|(name, a)| {
                let value = match &a.value {
                    AttributeValue::String(s) => json!({"stringValue": s,
                        "stringListValues": [], "binaryListValues": [], "dataType": a.data_type}),
                    AttributeValue::Binary(b) => json!({"binaryValue": base64(b),
                        "stringListValues": [], "binaryListValues": [], "dataType": a.data_type}),
                };
                (name.clone(), value)
            })
            .collect();
        json!({"messageId": "m", "body": message.body, "messageAttributes": attributes})
    }

    fn mixed(count: usize) -> Vec<Message> {
        let mix = Mix::default();
        (0..count).map(|n| mixed_message("t", n, &mix)).collect()
    }

    #[test]
    fn sender_and_consumer_compute_the_same_fingerprint() {
        let mut messages = mixed(60);
        messages.extend((0..3).map(|n| example_message("p", n)));
        for message in &messages {
            let record = serde_json::from_value(as_lambda_record(message)).expect("record");
            assert_eq!(
                example_consumer::fingerprint::of_record(&record),
                message.fingerprint(),
                "{}",
                message.body
            );
        }
    }

    #[test]
    fn example_messages_are_the_documented_ones() {
        let m = example_message("demo", 7);
        assert_eq!(m.body, r#"{"id":"demo-7","n":7}"#);
        assert_eq!(m.attributes["sequence"], string("Number", "7"));
        assert_eq!(m.attributes["checksum"], binary("Binary", vec![0, 0, 0, 7]));
    }

    /// SQS's rules for attribute names: letters, digits, `_`, `-` and `.`, no leading,
    /// trailing or doubled dot, no `AWS.`/`Amazon.` prefix, at most 256 characters.
    fn valid_name(name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        (1..=256).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            && !name.starts_with('.')
            && !name.ends_with('.')
            && !name.contains("..")
            && !lower.starts_with("aws.")
            && !lower.starts_with("amazon.")
    }

    #[test]
    fn the_mix_is_valid_sqs_traffic_with_every_shape_the_test_needs() {
        let messages = mixed(5000);
        let bodies: HashSet<&str> = messages.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies.len(), messages.len(), "bodies are unique");

        let mut counts = [0usize; MAX_MESSAGE_ATTRIBUTES + 1];
        let mut types = HashSet::new();
        for m in &messages {
            assert!(m.size() <= MAX_MESSAGE_BYTES, "{} bytes", m.size());
            serde_json::from_str::<Value>(&m.body).expect("JSON body");
            counts[m.attributes.len()] += 1;
            for (name, a) in &m.attributes {
                assert!(valid_name(name), "{name}");
                types.insert(a.data_type.clone());
                let base = a.data_type.split('.').next().unwrap_or_default();
                match (&a.value, base) {
                    (AttributeValue::String(s), "String") => assert!(!s.is_empty()),
                    (AttributeValue::String(s), "Number") => {
                        assert!(s.parse::<f64>().is_ok(), "{s}")
                    }
                    (AttributeValue::Binary(b), "Binary") => assert!(!b.is_empty()),
                    other => panic!("{name}: value does not fit its type: {other:?}"),
                }
            }
        }
        assert!(
            counts.iter().all(|&c| c > 0),
            "0 to 10 attributes: {counts:?}"
        );
        assert!(counts[MAX_MESSAGE_ATTRIBUTES] >= 400, "{counts:?}");
        for t in [
            "String",
            "String.json",
            "Number",
            "Number.int",
            "Binary",
            "Binary.gz",
        ] {
            assert!(types.contains(t), "{t} missing from {types:?}");
        }

        let full: Vec<&Message> = messages
            .iter()
            .filter(|m| m.size() == MAX_MESSAGE_BYTES)
            .collect();
        assert_eq!(full.len(), 5);
        assert!(
            full.iter().any(|m| !m.attributes.is_empty()),
            "a full one with attributes"
        );
        let large = messages
            .iter()
            .filter(|m| LARGE_BODY.contains(&m.body.len()))
            .count();
        assert_eq!(large, 95, "every 50th but the full-size ones");
        assert!(
            messages.iter().any(|m| m.body.contains('€')),
            "multi-byte text"
        );
    }

    #[test]
    fn a_full_size_message_is_exact_whatever_its_attributes() {
        let mix = Mix {
            full_size_every: 1,
            large_every: 0,
        };
        for n in 0..50 {
            assert_eq!(mixed_message("p", n, &mix).size(), MAX_MESSAGE_BYTES, "{n}");
        }
        let none = Mix {
            full_size_every: 0,
            large_every: 0,
        };
        assert!((0..50).all(|n| mixed_message("p", n, &none).size() < 2048));
    }
}
