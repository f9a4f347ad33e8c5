//! Message attributes, from the record Lambda received to what the re-sent message carries.
//!
//! The consumer may depend on any attribute, so every one is carried over exactly or the record
//! is refused (and left on the queue); nothing is dropped quietly. The outgoing types are plain
//! data so this crate needs no AWS SDK; the sender converts them.

use std::collections::BTreeMap;

use aws_lambda_events::event::sqs::{SqsMessage, SqsMessageAttribute};

/// Name of the attribute recording which pass re-sent a message, so its history can be traced.
pub const MARKER: &str = "sqscb-rejittered";

/// SQS refuses a message with more than this many message attributes.
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;

/// The system attribute carrying the X-Ray trace header; re-sent as a message system attribute
/// so the trace continues.
pub const TRACE_HEADER: &str = "AWSTraceHeader";

/// One message attribute to send, independent of any SDK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutAttribute {
    /// As received, custom suffix included (`"Number.float"`).
    pub data_type: String,
    pub value: AttributeValue,
}

/// The value of an attribute: SQS's `StringValue` (String and Number types) or `BinaryValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    String(String),
    Binary(Vec<u8>),
}

impl AttributeValue {
    /// The bytes SQS counts for the value: UTF-8 length or binary length.
    pub fn byte_len(&self) -> usize {
        match self {
            AttributeValue::String(s) => s.len(),
            AttributeValue::Binary(b) => b.len(),
        }
    }
}

/// Why a record's attributes cannot be carried over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributeError {
    #[error("message {message_id}: attribute {name:?} has no dataType")]
    MissingDataType { message_id: String, name: String },

    #[error(
        "message {message_id}: attribute {name:?} has dataType {data_type:?}, which is not \
         String, Number or Binary (with an optional \".label\")"
    )]
    UnknownDataType {
        message_id: String,
        name: String,
        data_type: String,
    },

    #[error("message {message_id}: attribute {name:?} of dataType {data_type:?} has no {field}")]
    MissingValue {
        message_id: String,
        name: String,
        data_type: String,
        field: &'static str,
    },
}

/// Maps every message attribute of `record` to an [`OutAttribute`].
///
/// The base type is the part of the data type before the first `.`: `String` and `Number` use
/// `stringValue`, `Binary` uses `binaryValue`. The list values are ignored because SQS does not
/// implement them. Attributes are checked in name order so the error reported is stable.
pub fn out_attributes(
    record: &SqsMessage,
) -> Result<BTreeMap<String, OutAttribute>, AttributeError> {
    let message_id = record.message_id.as_deref().unwrap_or("(no messageId)");
    let sorted: BTreeMap<&String, &SqsMessageAttribute> =
        record.message_attributes.iter().collect();
    sorted
        .into_iter()
        .map(|(name, attribute)| Ok((name.clone(), out_attribute(message_id, name, attribute)?)))
        .collect()
}

fn out_attribute(
    message_id: &str,
    name: &str,
    attribute: &SqsMessageAttribute,
) -> Result<OutAttribute, AttributeError> {
    let Some(data_type) = attribute.data_type.as_deref().filter(|t| !t.is_empty()) else {
        return Err(AttributeError::MissingDataType {
            message_id: message_id.to_owned(),
            name: name.to_owned(),
        });
    };
    let missing = |field| AttributeError::MissingValue {
        message_id: message_id.to_owned(),
        name: name.to_owned(),
        data_type: data_type.to_owned(),
        field,
    };
    let base = data_type
        .split_once('.')
        .map_or(data_type, |(base, _)| base);
    let value = match base {
        "String" | "Number" => attribute
            .string_value
            .clone()
            .map(AttributeValue::String)
            .ok_or_else(|| missing("stringValue"))?,
        "Binary" => attribute
            .binary_value
            .as_ref()
            .map(|b| AttributeValue::Binary(b.to_vec()))
            .ok_or_else(|| missing("binaryValue"))?,
        _ => {
            return Err(AttributeError::UnknownDataType {
                message_id: message_id.to_owned(),
                name: name.to_owned(),
                data_type: data_type.to_owned(),
            })
        }
    };
    Ok(OutAttribute {
        data_type: data_type.to_owned(),
        value,
    })
}

/// The record's X-Ray trace header, if it has a non-empty one (SQS refuses an empty value).
pub fn trace_header(record: &SqsMessage) -> Option<String> {
    record
        .attributes
        .get(TRACE_HEADER)
        .filter(|h| !h.is_empty())
        .cloned()
}

/// Adds (or updates) the [`MARKER`] attribute with value `pass`; returns whether the result
/// carries it.
///
/// The marker is only a trace, never worth losing the message over: it is skipped when the
/// message already has [`MAX_MESSAGE_ATTRIBUTES`] other attributes, and when `pass` is empty
/// (SQS refuses empty values). A marker from an earlier pass is overwritten, which needs no new
/// slot.
pub fn with_marker(
    mut attributes: BTreeMap<String, OutAttribute>,
    pass: &str,
) -> (BTreeMap<String, OutAttribute>, bool) {
    let has_room = attributes.len() < MAX_MESSAGE_ATTRIBUTES || attributes.contains_key(MARKER);
    if pass.is_empty() || !has_room {
        return (attributes, false);
    }
    attributes.insert(
        MARKER.to_owned(),
        OutAttribute {
            data_type: "String".to_owned(),
            value: AttributeValue::String(pass.to_owned()),
        },
    );
    (attributes, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn record(message_attributes: Value) -> SqsMessage {
        // The shape Lambda delivers (see the SQS event in the Lambda developer guide).
        serde_json::from_value(json!({
            "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
            "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
            "body": "test",
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "1545082649183",
                "AWSTraceHeader": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
            },
            "messageAttributes": message_attributes,
            "md5OfBody": "098f6bcd4621d373cade4e832627b4f6",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
            "awsRegion": "us-east-2"
        }))
        .unwrap()
    }

    fn string(data_type: &str, value: &str) -> OutAttribute {
        OutAttribute {
            data_type: data_type.to_owned(),
            value: AttributeValue::String(value.to_owned()),
        }
    }

    #[test]
    fn maps_string_number_and_binary_from_the_lambda_shape() {
        let r = record(json!({
            "s": {"stringValue": "hello", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
            "n": {"stringValue": "1.5", "stringListValues": [], "binaryListValues": [], "dataType": "Number.float"},
            "b": {"binaryValue": "AQID/w==", "stringListValues": [], "binaryListValues": [], "dataType": "Binary.gif"}
        }));
        let got = out_attributes(&r).unwrap();
        let want = BTreeMap::from([
            ("s".to_owned(), string("String", "hello")),
            ("n".to_owned(), string("Number.float", "1.5")),
            (
                "b".to_owned(),
                OutAttribute {
                    data_type: "Binary.gif".to_owned(),
                    value: AttributeValue::Binary(vec![1, 2, 3, 255]),
                },
            ),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn no_attributes_is_an_empty_map() {
        assert!(out_attributes(&record(json!({}))).unwrap().is_empty());
        assert!(out_attributes(&record(Value::Null)).unwrap().is_empty());
    }

    #[test]
    fn a_missing_data_type_is_an_error_naming_attribute_and_message() {
        let err = out_attributes(&record(json!({"a": {"stringValue": "x"}}))).unwrap_err();
        assert_eq!(
            err,
            AttributeError::MissingDataType {
                message_id: "059f36b4-87a3-44ab-83d2-661975830a7d".to_owned(),
                name: "a".to_owned(),
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("\"a\"") && text.contains("059f36b4"),
            "{text}"
        );
    }

    #[test]
    fn a_value_missing_for_its_type_is_an_error() {
        // A binary value does not stand in for a string one, nor a list for a single value.
        let cases = [
            (
                json!({"dataType": "String", "binaryValue": "AQID"}),
                "stringValue",
            ),
            (
                json!({"dataType": "Number", "stringListValues": ["1"]}),
                "stringValue",
            ),
            (
                json!({"dataType": "Binary", "stringValue": "x"}),
                "binaryValue",
            ),
            (
                json!({"dataType": "Binary.png", "binaryListValues": ["AQID"]}),
                "binaryValue",
            ),
        ];
        for (attribute, field) in cases {
            let err = out_attributes(&record(json!({ "k": attribute }))).unwrap_err();
            match err {
                AttributeError::MissingValue { name, field: f, .. } => {
                    assert_eq!((name.as_str(), f), ("k", field));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn an_unknown_data_type_is_an_error() {
        for data_type in ["Stringy", "string", "Date", ".String"] {
            let r = record(json!({"k": {"dataType": data_type, "stringValue": "x"}}));
            assert!(
                matches!(
                    out_attributes(&r),
                    Err(AttributeError::UnknownDataType { .. })
                ),
                "{data_type}"
            );
        }
    }

    #[test]
    fn one_bad_attribute_fails_the_whole_record() {
        let r = record(json!({
            "good": {"dataType": "String", "stringValue": "x"},
            "bad": {"dataType": "String"}
        }));
        assert!(out_attributes(&r).is_err());
    }

    #[test]
    fn trace_header_is_kept_when_present() {
        let r = record(json!({}));
        assert_eq!(
            trace_header(&r).as_deref(),
            Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
        );
        let mut r = r;
        r.attributes.remove(TRACE_HEADER);
        assert_eq!(trace_header(&r), None);
        r.attributes.insert(TRACE_HEADER.to_owned(), String::new());
        assert_eq!(trace_header(&r), None);
    }

    fn numbered(n: usize) -> BTreeMap<String, OutAttribute> {
        (0..n)
            .map(|i| (format!("a{i}"), string("String", "v")))
            .collect()
    }

    #[test]
    fn marker_is_added_below_ten_attributes() {
        let (attrs, added) = with_marker(numbered(9), "pass-1");
        assert!(added);
        assert_eq!(attrs.len(), 10);
        assert_eq!(attrs[MARKER], string("String", "pass-1"));
    }

    #[test]
    fn marker_is_skipped_at_ten_attributes() {
        let (attrs, added) = with_marker(numbered(10), "pass-1");
        assert!(!added);
        assert_eq!(attrs, numbered(10));
    }

    #[test]
    fn an_earlier_marker_is_updated_even_at_ten() {
        let mut before = numbered(9);
        before.insert(MARKER.to_owned(), string("String", "pass-0"));
        let (attrs, added) = with_marker(before, "pass-1");
        assert!(added);
        assert_eq!(attrs.len(), 10);
        assert_eq!(attrs[MARKER], string("String", "pass-1"));
    }

    #[test]
    fn an_empty_pass_adds_no_marker() {
        let (attrs, added) = with_marker(numbered(1), "");
        assert!(!added);
        assert_eq!(attrs, numbered(1));
    }

    /// Standard base64, written out here so the test does not trust the decoder under test.
    fn base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn test_base64_matches_known_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[1, 2, 3, 255]), "AQID/w==");
    }

    /// Valid SQS attribute names: letters, digits, `_`, `-` and non-adjacent inner dots.
    fn name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_-]{1,12}(\\.[A-Za-z0-9_-]{1,8}){0,2}".prop_filter(
            "AWS. and Amazon. prefixes are reserved",
            |n| {
                let lower = n.to_ascii_lowercase();
                !lower.starts_with("aws.") && !lower.starts_with("amazon.")
            },
        )
    }

    #[derive(Debug, Clone)]
    enum Generated {
        Text(String, String),
        Bytes(String, Vec<u8>),
    }

    fn attribute() -> impl Strategy<Value = Generated> {
        let suffix = proptest::option::of("\\.[A-Za-z0-9_.-]{1,20}");
        prop_oneof![
            (
                prop_oneof![Just("String"), Just("Number")],
                suffix.clone(),
                any::<String>()
            )
                .prop_map(|(base, s, v)| Generated::Text(
                    format!("{base}{}", s.unwrap_or_default()),
                    v
                )),
            (suffix, proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(s, v)| {
                Generated::Bytes(format!("Binary{}", s.unwrap_or_default()), v)
            }),
        ]
    }

    proptest! {
        #[test]
        fn attributes_round_trip_exactly(
            attrs in proptest::collection::btree_map(name(), attribute(), 0..=10)
        ) {
            let wire: serde_json::Map<String, Value> = attrs
                .iter()
                .map(|(name, a)| {
                    let v = match a {
                        Generated::Text(t, v) => json!({
                            "stringValue": v, "stringListValues": [], "binaryListValues": [], "dataType": t
                        }),
                        Generated::Bytes(t, v) => json!({
                            "binaryValue": base64(v), "stringListValues": [], "binaryListValues": [], "dataType": t
                        }),
                    };
                    (name.clone(), v)
                })
                .collect();
            let got = out_attributes(&record(Value::Object(wire))).unwrap();
            prop_assert_eq!(got.len(), attrs.len());
            for (name, a) in &attrs {
                let out = &got[name];
                match a {
                    Generated::Text(t, v) => {
                        prop_assert_eq!(&out.data_type, t);
                        prop_assert_eq!(&out.value, &AttributeValue::String(v.clone()));
                    }
                    Generated::Bytes(t, v) => {
                        prop_assert_eq!(&out.data_type, t);
                        prop_assert_eq!(&out.value, &AttributeValue::Binary(v.clone()));
                    }
                }
            }
        }

        #[test]
        fn marker_never_pushes_past_ten_and_never_drops_anything(
            n in 0usize..=10,
            pass in "[a-z0-9-]{0,12}",
        ) {
            let before = numbered(n);
            let (after, added) = with_marker(before.clone(), &pass);
            prop_assert!(after.len() <= MAX_MESSAGE_ATTRIBUTES);
            prop_assert_eq!(added, n < MAX_MESSAGE_ATTRIBUTES && !pass.is_empty());
            prop_assert_eq!(after.contains_key(MARKER), added);
            for (k, v) in &before {
                prop_assert_eq!(after.get(k), Some(v));
            }
        }
    }
}
