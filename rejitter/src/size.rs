//! The size SQS counts for a message, to keep each send within its limits.
//!
//! SQS counts the body and, for every message attribute, its name, data type and value. System
//! attributes such as `AWSTraceHeader` do not count, so the trace header is not an input here.
//!
//! Two limits apply: one message may not exceed the queue's `MaximumMessageSize` attribute
//! (1,024 to [`SQS_MAX_MESSAGE_BYTES`]; [`crate::sender::Queue`] reads it once per process), and
//! one `SendMessageBatch` call may not exceed [`MAX_BATCH_BYTES`] in total, whatever the queue.

use std::collections::BTreeMap;

use crate::attributes::OutAttribute;

/// Largest message SQS accepts on any queue (1 MiB): the ceiling of a queue's
/// `MaximumMessageSize`.
pub const SQS_MAX_MESSAGE_BYTES: usize = 1_048_576;

/// 256 KiB: SQS's message limit before it was raised to 1 MiB, and still the limit of a queue
/// whose `MaximumMessageSize` says so. The rejitter does not plan against it (it plans against
/// [`message_limit`]); kept for test traffic that must fit such queues (`xtask::traffic`).
pub const MAX_MESSAGE_BYTES: usize = 262_144;

/// Smallest `MaximumMessageSize` a queue can have (1 KiB).
pub const SQS_MIN_MESSAGE_BYTES: usize = 1_024;

/// Largest total of one `SendMessageBatch` request's messages (1 MiB).
pub const MAX_BATCH_BYTES: usize = 1_048_576;

/// Most entries in one `SendMessageBatch` request.
pub const MAX_BATCH_ENTRIES: usize = 10;

/// Bytes one message attribute adds: name + data type + value.
pub fn attribute_bytes(name: &str, attribute: &OutAttribute) -> usize {
    name.len() + attribute.data_type.len() + attribute.value.byte_len()
}

/// The per-message limit to plan against: the queue's `MaximumMessageSize` (if it was read and
/// is a number), kept within what SQS allows, so never above [`SQS_MAX_MESSAGE_BYTES`].
pub fn message_limit(queue_maximum: Option<&str>) -> usize {
    queue_maximum
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(SQS_MAX_MESSAGE_BYTES, |n| {
            n.clamp(SQS_MIN_MESSAGE_BYTES, SQS_MAX_MESSAGE_BYTES)
        })
}

/// Bytes SQS counts for a message: UTF-8 body plus every message attribute.
pub fn message_bytes(body: &str, attributes: &BTreeMap<String, OutAttribute>) -> usize {
    body.len()
        + attributes
            .iter()
            .map(|(name, a)| attribute_bytes(name, a))
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::AttributeValue;
    use proptest::prelude::*;

    fn attr(data_type: &str, value: AttributeValue) -> OutAttribute {
        OutAttribute {
            data_type: data_type.to_owned(),
            value,
        }
    }

    #[test]
    fn counts_the_body_in_utf8_bytes() {
        assert_eq!(message_bytes("", &BTreeMap::new()), 0);
        assert_eq!(message_bytes("abc", &BTreeMap::new()), 3);
        // "é" is two bytes, "€" three, "😀" four.
        assert_eq!(message_bytes("é€😀", &BTreeMap::new()), 9);
    }

    #[test]
    fn counts_name_type_and_value_of_each_attribute() {
        let attrs = BTreeMap::from([
            (
                "n".to_owned(),
                attr("Number.float", AttributeValue::String("1.5".to_owned())),
            ),
            (
                "bin".to_owned(),
                attr("Binary", AttributeValue::Binary(vec![0; 7])),
            ),
            (
                "s€".to_owned(),
                attr("String", AttributeValue::String("€".to_owned())),
            ),
        ]);
        let want = 4 + (1 + 12 + 3) + (3 + 6 + 7) + (4 + 6 + 3);
        assert_eq!(message_bytes("body", &attrs), want);
    }

    #[test]
    fn the_limit_is_the_queue_maximum_within_what_sqs_allows() {
        assert_eq!(message_limit(Some("262144")), 262_144);
        assert_eq!(message_limit(Some(" 1048576 ")), SQS_MAX_MESSAGE_BYTES);
        assert_eq!(message_limit(Some("1024")), 1_024);
        // Out of range or unreadable: what SQS allows at most (a refusal is then reported).
        assert_eq!(message_limit(Some("2097152")), SQS_MAX_MESSAGE_BYTES);
        assert_eq!(message_limit(Some("10")), SQS_MIN_MESSAGE_BYTES);
        assert_eq!(message_limit(Some("")), SQS_MAX_MESSAGE_BYTES);
        assert_eq!(message_limit(Some("256 KiB")), SQS_MAX_MESSAGE_BYTES);
        assert_eq!(message_limit(None), SQS_MAX_MESSAGE_BYTES);
    }

    #[test]
    fn a_batch_may_carry_as_much_as_the_largest_message() {
        assert_eq!(MAX_BATCH_BYTES, SQS_MAX_MESSAGE_BYTES);
    }

    proptest! {
        #[test]
        fn the_limit_never_leaves_the_sqs_range(n in any::<u64>()) {
            let limit = message_limit(Some(&n.to_string()));
            prop_assert!((SQS_MIN_MESSAGE_BYTES..=SQS_MAX_MESSAGE_BYTES).contains(&limit));
            if (SQS_MIN_MESSAGE_BYTES as u64..=SQS_MAX_MESSAGE_BYTES as u64).contains(&n) {
                prop_assert_eq!(limit as u64, n);
            }
        }

        /// Each attribute adds exactly its name, type and value bytes, whatever is there already.
        #[test]
        fn adding_an_attribute_adds_its_three_parts(
            body in any::<String>(),
            name in "[A-Za-z0-9_.-]{1,30}",
            data_type in "(String|Number|Binary)(\\.[a-z]{1,10})?",
            text in any::<String>(),
            bytes in proptest::collection::vec(any::<u8>(), 0..100),
            binary in any::<bool>(),
        ) {
            let value = if binary {
                AttributeValue::Binary(bytes.clone())
            } else {
                AttributeValue::String(text.clone())
            };
            let value_len = if binary { bytes.len() } else { text.len() };
            let without = BTreeMap::new();
            let with = BTreeMap::from([(name.clone(), attr(&data_type, value))]);
            prop_assert_eq!(message_bytes(&body, &without), body.len());
            prop_assert_eq!(
                message_bytes(&body, &with),
                body.len() + name.len() + data_type.len() + value_len
            );
        }
    }
}
