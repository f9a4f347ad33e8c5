//! The handler's JSON log lines.
//!
//! In a test binary of its own: tracing caches each log site's interest globally, so a scoped
//! subscriber in one test can miss lines when other tests hit the same sites in parallel.

mod support;

use std::io;
use std::sync::{Arc, Mutex};

use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError;
use aws_smithy_mocks::MockResponse;
use rejitter::{delay::random_unit, handle, logging};
use serde_json::{json, Value};
use support::*;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::EnvFilter;

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
async fn logs_each_record_left_and_one_line_per_invocation() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| {
        if starts_with(input, 11) {
            MockResponse::Error(SendMessageBatchError::RequestThrottled(throttled()))
        } else {
            MockResponse::Output(output(input, &["m1"]))
        }
    });
    let mut values = numbered(12);
    values[0] = with_marker(record_json(0), &NOW.to_string());
    let capture = Capture::default();
    let subscriber = logging::subscriber(EnvFilter::new("info"), capture.clone());
    handle(
        &client(&rule),
        &config(),
        &records(values),
        NOW,
        random_unit,
    )
    .with_subscriber(subscriber)
    .await
    .expect("handled");

    let lines = capture.lines();
    let messages: Vec<&str> = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.starts_with("SendMessageBatch call failed"))
            .count(),
        1,
        "{lines:#?}"
    );
    let call = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .unwrap()
                .starts_with("SendMessageBatch call failed")
        })
        .unwrap();
    assert_eq!(call["level"], "ERROR");
    assert_eq!(call["transient"], true);
    assert_eq!(call["entries"], 1);
    assert_eq!(call["error"], "RequestThrottled: slow down");

    let left: Vec<(&str, &str, &str)> = lines
        .iter()
        .filter(|l| l["message"] == "record left on the queue")
        .map(|l| {
            (
                l["level"].as_str().unwrap(),
                l["message_id"].as_str().unwrap(),
                l["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    // Record 0 is skipped; records 1..=10 go in batch 1 (entry m1 is record 2, refused), record
    // 11 alone in batch 2 (the failed call).
    assert_eq!(
        left,
        [
            ("INFO", "id-0", "already_rejittered"),
            ("WARN", "id-2", "send_failed"),
            ("WARN", "id-11", "send_failed"),
        ]
    );
    let refused = lines.iter().find(|l| l["message_id"] == "id-2").unwrap();
    assert_eq!(
        refused["reason"],
        "SQS refused the entry: InternalError: try again (sender fault: false)"
    );

    let done: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "invocation done")
        .collect();
    assert_eq!(done.len(), 1);
    assert_eq!(
        *done[0],
        json!({"level": "INFO", "message": "invocation done", "records": 12, "rejittered": 9,
               "batches": 2, "failures": 2, "skipped_already_rejittered": 1,
               "batch_item_failures": 3, "pass": NOW})
    );
}
