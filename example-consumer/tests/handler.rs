//! Handler-level tests: real SQS event JSON in, serialised response and JSON
//! log lines out.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use example_consumer::fingerprint::{
    fingerprint, AttributeValue::Binary, AttributeValue::String as Text,
};
use example_consumer::{handle, logging, BatchError, Config, FailureRate};
use serde_json::{json, Value};
use tracing::instrument::WithSubscriber;
use tracing::{Dispatch, Instrument};
use tracing_subscriber::EnvFilter;

/// Shape of what the SQS event source mapping sends, attributes included.
const EVENT: &str = r#"{
  "Records": [
    {
      "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
      "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
      "body": "{\"order\": 1}",
      "attributes": {
        "ApproximateReceiveCount": "1",
        "SentTimestamp": "1545082649183",
        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
        "ApproximateFirstReceiveTimestamp": "1545082649185"
      },
      "messageAttributes": {
        "tenant": {
          "stringValue": "acme",
          "stringListValues": [],
          "binaryListValues": [],
          "dataType": "String"
        }
      },
      "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
      "eventSource": "aws:sqs",
      "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
      "awsRegion": "us-east-2"
    },
    {
      "messageId": "2e1424d4-f796-459a-8184-9c92662be6da",
      "receiptHandle": "AQEBzWwaftRI0KuVm4tP+/7q1rGgNqicHq...",
      "body": "{\"order\": 2}",
      "attributes": {
        "ApproximateReceiveCount": "3",
        "SentTimestamp": "1545082650636",
        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
        "ApproximateFirstReceiveTimestamp": "1545082650649",
        "MessageGroupId": "g1",
        "MessageDeduplicationId": "d-2",
        "SequenceNumber": "18849496460467696128"
      },
      "messageAttributes": {
        "blob": {
          "binaryValue": "MTEwMA==",
          "stringListValues": [],
          "binaryListValues": [],
          "dataType": "Binary"
        }
      },
      "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
      "eventSource": "aws:sqs",
      "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
      "awsRegion": "us-east-2"
    },
    {
      "messageId": "c80e8021-a70a-42c7-a470-796e1186f753",
      "receiptHandle": "AQEBqzTZ1A2P3mGaHaF1VD7l+PeO6LaT3...",
      "body": "plain text",
      "attributes": {
        "ApproximateReceiveCount": "1",
        "SentTimestamp": "1545082651000",
        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
        "ApproximateFirstReceiveTimestamp": "1545082651010"
      },
      "messageAttributes": {},
      "md5OfBody": "0b26e313ed4a7ca6904b0e9369e5b957",
      "eventSource": "aws:sqs",
      "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
      "awsRegion": "us-east-2"
    }
  ]
}"#;

const ID_2: &str = "2e1424d4-f796-459a-8184-9c92662be6da";

fn event(json: &str) -> SqsEvent {
    serde_json::from_str(json).expect("valid SQS event JSON")
}

fn config(rate: f64) -> Config {
    Config {
        failure_rate: FailureRate::new(rate).expect("valid rate in test"),
        ..Config::default()
    }
}

fn draws(values: Vec<f64>) -> impl FnMut() -> f64 {
    let mut values = values.into_iter();
    move || values.next().expect("draw called more often than expected")
}

#[tokio::test]
async fn partial_failure_serialises_to_batch_item_failures() {
    let response = handle(&config(0.5), event(EVENT), draws(vec![0.7, 0.2, 0.5]))
        .await
        .expect("batch handled");
    assert_eq!(
        serde_json::to_string(&response).expect("serialises"),
        format!(r#"{{"batchItemFailures":[{{"itemIdentifier":"{ID_2}"}}]}}"#)
    );
}

#[tokio::test]
async fn rate_zero_returns_empty_failure_list() {
    let response = handle(&Config::default(), event(EVENT), || 0.0)
        .await
        .expect("batch handled");
    assert_eq!(
        serde_json::to_string(&response).expect("serialises"),
        r#"{"batchItemFailures":[]}"#
    );
}

#[tokio::test]
async fn rate_one_lists_every_message_id_in_order() {
    let response = handle(&config(1.0), event(EVENT), || 0.999)
        .await
        .expect("batch handled");
    assert_eq!(
        serde_json::to_value(&response).expect("serialises"),
        json!({"batchItemFailures": [
            {"itemIdentifier": "059f36b4-87a3-44ab-83d2-661975830a7d"},
            {"itemIdentifier": ID_2},
            {"itemIdentifier": "c80e8021-a70a-42c7-a470-796e1186f753"},
        ]})
    );
}

#[tokio::test]
async fn should_error_fails_the_invocation() {
    let config = Config {
        should_error: true,
        ..Config::default()
    };
    let error = handle(&config, event(EVENT), draws(vec![]))
        .await
        .expect_err("outage");
    assert_eq!(error, BatchError::SimulatedOutage { batch_size: 3 });
}

#[tokio::test]
async fn record_without_message_id_fails_the_invocation() {
    let mut value: Value = serde_json::from_str(EVENT).expect("json");
    let records = value["Records"].as_array_mut().expect("records array");
    records[1]
        .as_object_mut()
        .expect("record object")
        .remove("messageId");
    let error = handle(&config(0.0), event(&value.to_string()), draws(vec![]))
        .await
        .expect_err("missing messageId");
    assert_eq!(
        error,
        BatchError::MissingMessageId {
            indexes: vec![1],
            batch_size: 3
        }
    );
}

#[tokio::test]
async fn latency_is_slept_once_per_batch() {
    let config = Config {
        latency: Duration::from_millis(60),
        ..Config::default()
    };
    let start = Instant::now();
    handle(&config, event(EVENT), || 0.0)
        .await
        .expect("batch handled");
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(60), "{elapsed:?}");
    // Per batch, not per record (3 records would be >= 180ms).
    assert!(elapsed < Duration::from_millis(170), "{elapsed:?}");
}

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().expect("lock").clone();
        String::from_utf8(bytes)
            .expect("utf8")
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
            .collect()
    }
}

#[tokio::test]
async fn logs_one_json_line_per_record_with_exact_fields() {
    let capture = Capture::default();
    let dispatch = Dispatch::new(logging::subscriber(EnvFilter::new("info"), capture.clone()));
    // Same span the runtime opens around each invocation; it must be created
    // under the capturing subscriber to be recorded.
    let span = tracing::dispatcher::with_default(&dispatch, || {
        tracing::info_span!("Lambda runtime invoke", requestId = "req-1")
    });
    handle(&config(0.5), event(EVENT), draws(vec![0.7, 0.2, 0.5]))
        .instrument(span)
        .with_subscriber(dispatch)
        .await
        .expect("batch handled");

    let span = json!({"name": "Lambda runtime invoke", "requestId": "req-1"});
    // What each record of EVENT carries, written out from the JSON above.
    let fingerprints = [
        fingerprint(r#"{"order": 1}"#, [("tenant", "String", Text("acme"))]),
        fingerprint(r#"{"order": 2}"#, [("blob", "Binary", Binary(b"1100"))]),
        fingerprint("plain text", []),
    ];
    assert_eq!(
        capture.lines(),
        [
            json!({"level": "INFO", "message": "record processed",
                   "message_id": "059f36b4-87a3-44ab-83d2-661975830a7d",
                   "outcome": "processed", "fingerprint": fingerprints[0],
                   "receive_count": "1", "batch_size": 3, "span": span}),
            json!({"level": "WARN", "message": "record failed (simulated)",
                   "message_id": ID_2, "outcome": "failed", "fingerprint": fingerprints[1],
                   "receive_count": "3", "message_group_id": "g1",
                   "sequence_number": "18849496460467696128", "deduplication_id": "d-2",
                   "batch_size": 3, "span": span}),
            json!({"level": "INFO", "message": "record processed",
                   "message_id": "c80e8021-a70a-42c7-a470-796e1186f753",
                   "outcome": "processed", "fingerprint": fingerprints[2],
                   "receive_count": "1", "batch_size": 3, "span": span}),
            json!({"level": "INFO", "message": "batch done",
                   "batch_size": 3, "failed_count": 1, "span": span}),
        ]
    );
}

#[tokio::test]
async fn logs_missing_message_id_as_error_lines() {
    let capture = Capture::default();
    let subscriber = logging::subscriber(EnvFilter::new("info"), capture.clone());
    let event = event(r#"{"Records":[{"body":"no id"},{"messageId":"ok","body":"x"}]}"#);
    handle(&Config::default(), event, draws(vec![]))
        .with_subscriber(subscriber)
        .await
        .expect_err("missing messageId");

    assert_eq!(
        capture.lines(),
        [
            json!({"level": "ERROR", "message": "record has no messageId",
                   "record_index": 0, "batch_size": 2, "error_type": "MissingMessageId"}),
            json!({"level": "ERROR", "message": "batch failed", "batch_size": 2,
                   "error_type": "MissingMessageId",
                   "error": "1 of 2 records have no messageId (record indexes [0]); \
                             failing the whole batch because they cannot be listed in batchItemFailures"}),
        ]
    );
}

#[tokio::test]
async fn warn_filter_keeps_only_failed_records() {
    let capture = Capture::default();
    let subscriber = logging::subscriber(EnvFilter::new("warn"), capture.clone());
    handle(&config(0.5), event(EVENT), draws(vec![0.7, 0.2, 0.5]))
        .with_subscriber(subscriber)
        .await
        .expect("batch handled");
    let lines = capture.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["message_id"], ID_2);
}
