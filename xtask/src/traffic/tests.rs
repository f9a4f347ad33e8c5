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
            AttributeValue::Binary(b) => value.binary_value(aws_smithy_types::Blob::new(b.clone())),
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
