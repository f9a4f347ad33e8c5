//! The size SQS counts for a message, to keep each send within its limits.
//!
//! SQS counts the body and, for every message attribute, its name, data type and value. System
//! attributes such as `AWSTraceHeader` do not count, so the trace header is not an input here.

use std::collections::BTreeMap;

use crate::attributes::OutAttribute;

/// Largest message SQS accepts by default (256 KiB).
pub const MAX_MESSAGE_BYTES: usize = 262_144;

/// Largest total of one `SendMessageBatch` request's messages.
pub const MAX_BATCH_BYTES: usize = 262_144;

/// Most entries in one `SendMessageBatch` request.
pub const MAX_BATCH_ENTRIES: usize = 10;

/// Bytes one message attribute adds: name + data type + value.
pub fn attribute_bytes(name: &str, attribute: &OutAttribute) -> usize {
    name.len() + attribute.data_type.len() + attribute.value.byte_len()
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

    proptest! {
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
