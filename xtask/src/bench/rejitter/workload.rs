//! The events the bench hands the rejitter: message-size mixes, records and the SQS event
//! its mapping would deliver, and the fewest `SendMessageBatch` calls that could carry them.

use rand::rngs::StdRng;
use rand::RngExt;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{KIB, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, PLACEHOLDER_MD5, QUEUE_ARN, REFUSE_PREFIX};

/// A distribution of message body sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// 100 B - 2 KiB: ten always fit in one call.
    Small,
    /// 80% 256 B - 8 KiB, 15% 8-64 KiB, 5% 64-200 KiB.
    Mixed,
    Fixed(usize),
    /// 300-500 KiB: two or three fit in one call, so packing order matters.
    Large,
    /// 200-250 KiB: near the 256 KiB message limit SQS had before 1 MiB (and a queue may keep);
    /// four or five fit in one call.
    NearOldLimit,
}

impl Mix {
    pub fn label(self) -> String {
        match self {
            Mix::Small => "small: 0.1-2 KiB".into(),
            Mix::Mixed => "mixed: 80% <8, 15% <64, 5% <200 KiB".into(),
            Mix::Fixed(n) => format!("{} KiB each", n / KIB),
            Mix::Large => "large: 300-500 KiB".into(),
            Mix::NearOldLimit => "200-250 KiB".into(),
        }
    }

    pub fn body_len(self, rng: &mut StdRng) -> usize {
        match self {
            Mix::Small => rng.random_range(100..=2 * KIB),
            Mix::Mixed => match rng.random_range(0..=99) {
                0..=79 => rng.random_range(256..=8 * KIB),
                80..=94 => rng.random_range(8 * KIB..=64 * KIB),
                _ => rng.random_range(64 * KIB..=200 * KIB),
            },
            Mix::Fixed(n) => n,
            Mix::Large => rng.random_range(300 * KIB..=500 * KIB),
            Mix::NearOldLimit => rng.random_range(200 * KIB..=250 * KIB),
        }
    }
}

/// One record of a generated event.
#[derive(Debug, Clone, Copy)]
pub struct RecordSpec {
    pub body_len: usize,
    /// The body starts with [`REFUSE_PREFIX`], so the fake SQS refuses the re-send.
    pub refuse: bool,
    /// The record carries the rejitter's marker with this value (epoch seconds): already
    /// rejittered when recent.
    pub marker: Option<u64>,
}

/// `n` records with sizes from `mix`, none refused.
pub fn specs(mix: Mix, n: usize, rng: &mut StdRng) -> Vec<RecordSpec> {
    (0..n)
        .map(|_| RecordSpec {
            body_len: mix.body_len(rng),
            refuse: false,
            marker: None,
        })
        .collect()
}

/// The `messageId` of record `i` of invocation `invocation`.
pub fn message_id(invocation: usize, i: usize) -> String {
    format!("{invocation:08x}-0000-4000-8000-{i:012x}")
}

/// A body of exactly `len` bytes (unless the prefix alone is longer).
pub fn body(invocation: usize, i: usize, spec: RecordSpec) -> String {
    let prefix = if spec.refuse { REFUSE_PREFIX } else { "msg-" };
    let mut body = format!("{prefix}{invocation}-{i}-");
    let pad = spec.body_len.saturating_sub(body.len());
    body.extend(std::iter::repeat_n('x', pad));
    body
}

/// The SQS event the rejitter's mapping would deliver: one record per spec, from
/// [`QUEUE_ARN`], each with two message attributes and an X-Ray trace header to carry over.
pub fn sqs_event(invocation: usize, records: &[RecordSpec]) -> Value {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .to_string();
    let records: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(i, &spec)| {
            let mut attributes = json!({
                "tenant": {"stringValue": "acme", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
                "attempt": {"stringValue": "1", "stringListValues": [], "binaryListValues": [], "dataType": "Number"}
            });
            if let Some(marker) = spec.marker {
                attributes[rejitter::MARKER] = json!({
                    "stringValue": marker.to_string(), "stringListValues": [], "binaryListValues": [], "dataType": "String"
                });
            }
            json!({
                "messageId": message_id(invocation, i),
                "receiptHandle": format!("AQEB-bench-{invocation}-{i}"),
                "body": body(invocation, i, spec),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now_ms,
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": now_ms,
                    "AWSTraceHeader": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
                },
                "messageAttributes": attributes,
                "md5OfBody": PLACEHOLDER_MD5,
                "eventSource": "aws:sqs",
                "eventSourceARN": QUEUE_ARN,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The `itemIdentifier`s of an `SQSBatchResponse`.
pub fn batch_item_failures(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["itemIdentifier"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A lower bound on the `SendMessageBatch` calls that can carry messages of these sizes: ten
/// entries and [`MAX_BATCH_BYTES`] per call, and, for each k from 2 to ten, at most k - 1
/// messages over 1/k of [`MAX_BATCH_BYTES`] in one call (k of them would exceed it; k = 2: no
/// two messages over half in one call).
pub fn fewest_calls(sizes: &[usize]) -> usize {
    let by_count = sizes.len().div_ceil(MAX_BATCH_ENTRIES);
    let by_bytes = sizes.iter().sum::<usize>().div_ceil(MAX_BATCH_BYTES);
    let by_share = (2..=MAX_BATCH_ENTRIES)
        .map(|k| {
            let over = sizes
                .iter()
                .filter(|&&s| s.saturating_mul(k) > MAX_BATCH_BYTES)
                .count();
            over.div_ceil(k - 1)
        })
        .max()
        .unwrap_or_default();
    by_count.max(by_bytes).max(by_share)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn events_have_the_lambda_shape_and_exact_body_sizes() {
        let specs = [
            RecordSpec {
                body_len: 300,
                refuse: false,
                marker: None,
            },
            RecordSpec {
                body_len: 5000,
                refuse: true,
                marker: Some(1_700_000_000),
            },
        ];
        let event = sqs_event(7, &specs);
        let records = event["Records"].as_array().unwrap();
        assert_eq!(records.len(), 2);
        for (record, spec) in records.iter().zip(specs) {
            assert_eq!(record["body"].as_str().unwrap().len(), spec.body_len);
            assert_eq!(record["eventSourceARN"], QUEUE_ARN);
            assert_eq!(record["eventSource"], "aws:sqs");
            assert_eq!(record["messageAttributes"]["tenant"]["dataType"], "String");
            assert!(record["attributes"]["AWSTraceHeader"].is_string());
        }
        assert!(records[0]["messageAttributes"][rejitter::MARKER].is_null());
        assert_eq!(
            records[1]["messageAttributes"][rejitter::MARKER]["stringValue"],
            "1700000000"
        );
        assert_eq!(records[0]["messageId"], message_id(7, 0));
        assert_ne!(records[0]["messageId"], records[1]["messageId"]);
        assert!(!records[0]["body"]
            .as_str()
            .unwrap()
            .starts_with(REFUSE_PREFIX));
        assert!(records[1]["body"]
            .as_str()
            .unwrap()
            .starts_with(REFUSE_PREFIX));
    }

    #[test]
    fn mixes_stay_in_their_ranges_and_repeat() {
        let (mut a, mut b) = (StdRng::seed_from_u64(3), StdRng::seed_from_u64(3));
        let mixes = [
            Mix::Small,
            Mix::Mixed,
            Mix::Fixed(120 * KIB),
            Mix::Large,
            Mix::NearOldLimit,
        ];
        for mix in mixes {
            let sizes: Vec<usize> = (0..2000).map(|_| mix.body_len(&mut a)).collect();
            let again: Vec<usize> = (0..2000).map(|_| mix.body_len(&mut b)).collect();
            assert_eq!(sizes, again);
            let (lo, hi) = match mix {
                Mix::Small => (100, 2 * KIB),
                Mix::Mixed => (256, 200 * KIB),
                Mix::Fixed(n) => (n, n),
                Mix::Large => (300 * KIB, 500 * KIB),
                Mix::NearOldLimit => (200 * KIB, 250 * KIB),
            };
            assert!(sizes.iter().all(|s| (lo..=hi).contains(s)), "{mix:?}");
        }
        let mixed: Vec<usize> = (0..2000).map(|_| Mix::Mixed.body_len(&mut a)).collect();
        let large = mixed.iter().filter(|&&s| s > 64 * KIB).count();
        assert!((50..=150).contains(&large), "about 5% large: {large}");
    }

    #[test]
    fn fewest_calls_is_bound_by_count_and_bytes() {
        assert_eq!(fewest_calls(&[]), 0);
        assert_eq!(fewest_calls(&[100; 10]), 1);
        assert_eq!(fewest_calls(&[100; 11]), 2);
        assert_eq!(fewest_calls(&[30 * KIB; 10]), 1);
        assert_eq!(fewest_calls(&[120 * KIB; 10]), 2);
        assert_eq!(fewest_calls(&[MAX_BATCH_BYTES / 2; 2]), 1);
        // Bytes alone would say 8; no two fit together.
        assert_eq!(fewest_calls(&[600 * KIB; 10]), 10);
        assert_eq!(fewest_calls(&[600 * KIB, 50 * KIB, 600 * KIB]), 2);
        // Bytes alone would say 4 (3.5 MiB); over a third, at most two fit together.
        assert_eq!(fewest_calls(&[350 * KIB; 10]), 5);
        // Over a quarter, at most three: bytes say 3 (2.9 MiB), shares 4.
        assert_eq!(fewest_calls(&[300 * KIB; 10]), 4);
        // Exactly a third: three fit.
        assert_eq!(fewest_calls(&[MAX_BATCH_BYTES / 3; 3]), 1);
    }

    proptest::proptest! {
        /// Whatever the sizes, the rejitter's own packing never beats the bound (it is a bound)
        /// and every packed call is within the limits the bound assumes.
        #[test]
        fn fewest_calls_is_a_lower_bound_of_the_packing(
            sizes in proptest::collection::vec(1..=MAX_BATCH_BYTES, 0..40)
        ) {
            let batches = rejitter::batch::pack(&sizes);
            proptest::prop_assert!(fewest_calls(&sizes) <= batches.len());
        }
    }

    #[test]
    fn batch_item_failures_lists_item_identifiers() {
        let response =
            json!({"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]});
        assert_eq!(batch_item_failures(&response), ["a", "b"]);
        assert!(batch_item_failures(&json!({"batchItemFailures": []})).is_empty());
        assert!(batch_item_failures(&json!({})).is_empty());
    }
}
