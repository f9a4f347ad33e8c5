//! A content fingerprint of an SQS message: its body and message attributes, hashed.
//!
//! The rejitter re-sends messages, and a re-sent message gets a new SQS message id, so tests
//! recognise a message by what it carries instead. Two messages have the same fingerprint
//! exactly when their bodies and attributes (name, data type and value) are the same,
//! whatever the order the attributes come in, with one exception: [`REJITTER_MARKER`].
//!
//! The encoding hashed (SHA-256, version 1) is canonical and unambiguous: every variable-length
//! part is prefixed with its length as a big-endian `u64`, so no two different messages encode
//! to the same bytes, and attributes are sorted by name:
//!
//! ```text
//! "sqscb-fingerprint-v1" len(body) body count
//! then per attribute, by name: len(name) name len(type) type kind len(value) value
//! ```
//!
//! `kind` is one byte, `S` for a string value (String and Number types) and `B` for a binary
//! one, so a string and a binary value with the same bytes differ even under the same type.

use aws_lambda_events::event::sqs::SqsMessage;
use sha2::{Digest, Sha256};

/// The attribute the rejitter adds to a message it re-sends. It is the only change the
/// rejitter is allowed to make, so it is left out: a re-sent message keeps its fingerprint.
/// Must equal `rejitter::MARKER` (checked by a test in `xtask`, which depends on both).
pub const REJITTER_MARKER: &str = "sqscb-rejittered";

/// Version tag, so a change of encoding cannot be mistaken for a change of content.
const DOMAIN: &[u8] = b"sqscb-fingerprint-v1";

/// A message attribute's value: SQS's `StringValue` or `BinaryValue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttributeValue<'a> {
    String(&'a str),
    Binary(&'a [u8]),
}

impl AttributeValue<'_> {
    fn kind(self) -> u8 {
        match self {
            AttributeValue::String(_) => b'S',
            AttributeValue::Binary(_) => b'B',
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            AttributeValue::String(s) => s.as_bytes(),
            AttributeValue::Binary(b) => b,
        }
    }
}

/// The lowercase hex SHA-256 fingerprint of `body` and `attributes` (name, data type, value),
/// in any order; an attribute named [`REJITTER_MARKER`] is ignored. A name given twice (which
/// SQS never delivers) counts twice.
pub fn fingerprint<'a>(
    body: &str,
    attributes: impl IntoIterator<Item = (&'a str, &'a str, AttributeValue<'a>)>,
) -> String {
    let mut encoded: Vec<(&str, Vec<u8>)> = attributes
        .into_iter()
        .filter(|(name, _, _)| *name != REJITTER_MARKER)
        .map(|(name, data_type, value)| {
            let mut bytes = Vec::new();
            framed(&mut bytes, name.as_bytes());
            framed(&mut bytes, data_type.as_bytes());
            bytes.push(value.kind());
            framed(&mut bytes, value.bytes());
            (name, bytes)
        })
        .collect();
    // Ties on the name (only for repeated names) are broken by the rest, so the order given
    // never matters.
    encoded.sort_unstable();

    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    let mut head = Vec::with_capacity(body.len() + 16);
    framed(&mut head, body.as_bytes());
    head.extend_from_slice(&(encoded.len() as u64).to_be_bytes());
    hasher.update(&head);
    for (_, bytes) in &encoded {
        hasher.update(bytes);
    }
    hex(&hasher.finalize())
}

/// The fingerprint of a record as Lambda delivers it. A record attribute carries a
/// `stringValue` or a `binaryValue` (SQS delivers no other shape); the string value is used
/// when present, else the binary one, else an empty string, and a missing body or data type
/// counts as empty, so a malformed record still gets a fingerprint instead of failing.
pub fn of_record(record: &SqsMessage) -> String {
    fingerprint(
        record.body.as_deref().unwrap_or(""),
        record.message_attributes.iter().map(|(name, attribute)| {
            let value = match (&attribute.string_value, &attribute.binary_value) {
                (Some(s), _) => AttributeValue::String(s),
                (None, Some(b)) => AttributeValue::Binary(b),
                (None, None) => AttributeValue::String(""),
            };
            (
                name.as_str(),
                attribute.data_type.as_deref().unwrap_or(""),
                value,
            )
        }),
    )
}

fn framed(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u64).to_be_bytes());
    out.extend_from_slice(part);
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::AttributeValue::{Binary, String as Text};
    use super::*;
    use aws_lambda_events::encodings::Base64Data;
    use aws_lambda_events::event::sqs::SqsMessageAttribute;
    use proptest::prelude::*;

    /// An attribute as owned data, so strategies can generate it.
    #[derive(Debug, Clone, PartialEq)]
    struct Attr {
        name: String,
        data_type: String,
        value: Owned,
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Owned {
        Text(String),
        Bytes(Vec<u8>),
    }

    impl Attr {
        fn view(&self) -> (&str, &str, AttributeValue<'_>) {
            let value = match &self.value {
                Owned::Text(s) => Text(s),
                Owned::Bytes(b) => Binary(b),
            };
            (&self.name, &self.data_type, value)
        }
    }

    fn of(body: &str, attrs: &[Attr]) -> String {
        fingerprint(body, attrs.iter().map(Attr::view))
    }

    fn attr() -> impl Strategy<Value = Attr> {
        let value = prop_oneof![
            any::<String>().prop_map(Owned::Text),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Owned::Bytes),
        ];
        (
            "[A-Za-z0-9_.-]{1,12}",
            "(String|Number|Binary)(\\.[a-z]{1,6})?",
            value,
        )
            .prop_map(|(name, data_type, value)| Attr {
                name,
                data_type,
                value,
            })
    }

    /// Attributes with distinct names, none of them the marker, as SQS delivers them.
    fn attrs() -> impl Strategy<Value = Vec<Attr>> {
        proptest::collection::vec(attr(), 0..=10).prop_map(|mut attrs| {
            attrs.retain(|a| a.name != REJITTER_MARKER);
            let mut seen = std::collections::HashSet::new();
            attrs.retain(|a| seen.insert(a.name.clone()));
            attrs
        })
    }

    #[test]
    fn the_encoding_is_the_documented_one() {
        // Built by hand from the module docs, so a change of encoding fails here.
        let mut want = b"sqscb-fingerprint-v1".to_vec();
        want.extend_from_slice(&2u64.to_be_bytes());
        want.extend_from_slice(b"hi");
        want.extend_from_slice(&2u64.to_be_bytes());
        for (name, data_type, kind, value) in [
            ("a", "Binary.gz", b'B', &[0u8, 255][..]),
            ("b", "String", b'S', b"x"),
        ] {
            for part in [name.as_bytes(), data_type.as_bytes()] {
                want.extend_from_slice(&(part.len() as u64).to_be_bytes());
                want.extend_from_slice(part);
            }
            want.push(kind);
            want.extend_from_slice(&(value.len() as u64).to_be_bytes());
            want.extend_from_slice(value);
        }
        let got = fingerprint(
            "hi",
            [
                ("b", "String", Text("x")),
                ("a", "Binary.gz", Binary(&[0, 255])),
            ],
        );
        assert_eq!(got, hex(&Sha256::digest(&want)));
        assert_eq!(got.len(), 64);
        assert!(got
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn hex_is_lowercase_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn a_known_value_is_stable() {
        // SHA-256 of "sqscb-fingerprint-v1" + 0u64 + 0u64: an empty message.
        let mut empty = b"sqscb-fingerprint-v1".to_vec();
        empty.extend_from_slice(&[0; 16]);
        assert_eq!(fingerprint("", []), hex(&Sha256::digest(&empty)));
    }

    #[test]
    fn shifting_bytes_between_parts_changes_it() {
        // Without length prefixes each pair would encode to the same bytes.
        let cases = [
            (
                ("ab", [("c", "String", Text("v"))]),
                ("a", [("bc", "String", Text("v"))]),
            ),
            (
                ("", [("ab", "String", Text("v"))]),
                ("", [("a", "bString", Text("v"))]),
            ),
            (
                ("", [("n", "String", Text("ab"))]),
                ("", [("n", "Stringa", Text("b"))]),
            ),
        ];
        for ((body_a, attrs_a), (body_b, attrs_b)) in cases {
            assert_ne!(fingerprint(body_a, attrs_a), fingerprint(body_b, attrs_b));
        }
        // The count keeps an attribute apart from body bytes that look like one.
        let one = fingerprint("", [("n", "String", Text("v"))]);
        let mut spoof = Vec::new();
        framed(&mut spoof, b"n");
        framed(&mut spoof, b"String");
        spoof.push(b'S');
        framed(&mut spoof, b"v");
        let spoof = String::from_utf8(spoof).expect("ascii");
        assert_ne!(one, fingerprint(&spoof, []));
    }

    #[test]
    fn string_and_binary_with_the_same_bytes_differ() {
        for data_type in ["String", "Binary", "Custom"] {
            assert_ne!(
                fingerprint("b", [("k", data_type, Text("abc"))]),
                fingerprint("b", [("k", data_type, Binary(b"abc"))]),
            );
        }
    }

    #[test]
    fn only_the_exact_marker_name_is_ignored() {
        let base = fingerprint("b", [("k", "String", Text("v"))]);
        let marked = fingerprint(
            "b",
            [
                ("k", "String", Text("v")),
                (REJITTER_MARKER, "String", Text("1700000000")),
            ],
        );
        assert_eq!(base, marked);
        for near in ["sqscb-rejittered2", "Sqscb-Rejittered", "sqscb-rejittere"] {
            let other = fingerprint(
                "b",
                [("k", "String", Text("v")), (near, "String", Text("1"))],
            );
            assert_ne!(base, other, "{near}");
        }
    }

    fn lambda_attribute(data_type: &str, value: AttributeValue<'_>) -> SqsMessageAttribute {
        let mut attribute = SqsMessageAttribute::default();
        attribute.data_type = Some(data_type.to_owned());
        match value {
            Text(s) => attribute.string_value = Some(s.to_owned()),
            Binary(b) => {
                let mut data = Base64Data::default();
                data.extend_from_slice(b);
                attribute.binary_value = Some(data);
            }
        }
        attribute
    }

    #[test]
    fn a_record_from_lambda_json_matches_what_was_sent() {
        let record: SqsMessage = serde_json::from_value(serde_json::json!({
            "messageId": "m-1",
            "body": "{\"id\":\"x-1\"}",
            "messageAttributes": {
                "blob": {"binaryValue": "AQID/w==", "stringListValues": [],
                         "binaryListValues": [], "dataType": "Binary.gz"},
                "n": {"stringValue": "42", "stringListValues": [], "binaryListValues": [],
                      "dataType": "Number.int"},
                "sqscb-rejittered": {"stringValue": "1700000000", "stringListValues": [],
                                     "binaryListValues": [], "dataType": "String"}
            }
        }))
        .expect("Lambda's SQS record shape");
        let sent = fingerprint(
            "{\"id\":\"x-1\"}",
            [
                ("n", "Number.int", Text("42")),
                ("blob", "Binary.gz", Binary(&[1, 2, 3, 255])),
            ],
        );
        assert_eq!(of_record(&record), sent);
    }

    #[test]
    fn a_malformed_record_still_has_a_fingerprint() {
        let mut record = SqsMessage::default();
        record
            .message_attributes
            .insert("k".to_owned(), SqsMessageAttribute::default());
        assert_eq!(of_record(&record), fingerprint("", [("k", "", Text(""))]));
    }

    proptest! {
        #[test]
        fn attribute_order_does_not_matter(
            body in any::<String>(),
            attrs in attrs(),
            seed in any::<u64>(),
        ) {
            let mut shuffled = attrs.clone();
            // A seeded rotation and reversal: enough to move every attribute.
            if !shuffled.is_empty() {
                let by = (seed % shuffled.len() as u64) as usize;
                shuffled.rotate_left(by);
                if seed & 1 == 1 {
                    shuffled.reverse();
                }
            }
            prop_assert_eq!(of(&body, &attrs), of(&body, &shuffled));
        }

        #[test]
        fn the_marker_is_ignored_wherever_it_is(
            body in any::<String>(),
            attrs in attrs(),
            at in any::<proptest::sample::Index>(),
            data_type in "String|Number|Binary",
            value in any::<String>(),
        ) {
            let mut marked = attrs.clone();
            marked.insert(at.index(attrs.len() + 1), Attr {
                name: REJITTER_MARKER.to_owned(),
                data_type,
                value: Owned::Text(value),
            });
            prop_assert_eq!(of(&body, &attrs), of(&body, &marked));
        }

        #[test]
        fn any_change_changes_it(
            body in any::<String>(),
            attrs in attrs().prop_filter("an attribute to change", |a| !a.is_empty()),
            pick in any::<proptest::sample::Index>(),
            change in 0..6u8,
            extra in "[a-z]{1,3}",
        ) {
            let before = of(&body, &attrs);
            let (mut body2, mut attrs2) = (body.clone(), attrs.clone());
            let i = pick.index(attrs.len());
            match change {
                0 => body2.push_str(&extra),
                1 => attrs2[i].name.push_str(&extra),
                2 => attrs2[i].data_type.push_str(&extra),
                3 => match &mut attrs2[i].value {
                    Owned::Text(s) => s.push_str(&extra),
                    Owned::Bytes(b) => b.extend_from_slice(extra.as_bytes()),
                },
                4 => {
                    attrs2.remove(i);
                }
                _ => attrs2.push(Attr {
                    name: format!("{}{extra}", attrs[i].name),
                    ..attrs[i].clone()
                }),
            }
            // Each change alters the multiset of (name, type, value) or the body.
            prop_assert_ne!(before, of(&body2, &attrs2), "change {}", change);
        }

        #[test]
        fn of_record_agrees_with_fingerprint(body in any::<String>(), attrs in attrs()) {
            let mut record = SqsMessage::default();
            record.body = Some(body.clone());
            for a in &attrs {
                let (name, data_type, value) = a.view();
                record
                    .message_attributes
                    .insert(name.to_owned(), lambda_attribute(data_type, value));
            }
            prop_assert_eq!(of_record(&record), of(&body, &attrs));
        }
    }
}
