//! The handler's JSON log lines.
//!
//! In a test binary of its own: tracing caches each log site's interest globally, so a scoped
//! subscriber in one test can miss lines when other tests hit the same sites in parallel.

mod support;

use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError;
use aws_smithy_mocks::MockResponse;
use rejitter::{delay::random_unit, handle, logging};
use serde_json::{json, Value};
use support::*;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::EnvFilter;

#[tokio::test]
async fn logs_each_record_left_and_one_line_per_invocation() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| {
        if starts_with(input, 11) {
            MockResponse::Error(SendMessageBatchError::RequestThrottled(throttled()))
        } else if starts_with(input, 0) {
            // The copy of the already rejittered record 0, alone in its call.
            MockResponse::Output(output(input, &["m0"]))
        } else {
            MockResponse::Output(output(input, &["m1"]))
        }
    });
    let mut values = numbered(13);
    values[0] = with_marker(record_json(0), &NOW.to_string());
    values[12]["eventSourceARN"] = json!("arn:aws:sqs:us-east-2:123456789012:payments");
    let capture = Capture::default();
    let subscriber = logging::subscriber(EnvFilter::new("info"), capture.clone());
    handle(&queue(&rule), &config(), &records(values), NOW, random_unit)
        .with_subscriber(subscriber)
        .await
        .expect("handled");

    let lines = capture.lines();
    let resolved: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "queue URL resolved")
        .collect();
    assert_eq!(resolved.len(), 1, "{lines:#?}");
    assert_eq!(resolved[0]["queue_arn"], QUEUE_ARN);
    assert_eq!(resolved[0]["queue_url"], QUEUE_URL);
    assert_eq!(resolved[0]["max_message_bytes"], 1_048_576);
    assert!(resolved[0]["retention_seconds"].is_null(), "{lines:#?}");
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
    assert!(
        !messages
            .iter()
            .any(|m| m.contains("ChangeMessageVisibility")),
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
    // Record 0 is re-sent alone (its copy refused); records 1..=10 go in batch 1 (entry m1 is
    // record 2, refused), record 11 alone in batch 2 (the failed call); record 12 comes from
    // another queue.
    assert_eq!(
        left,
        [
            ("WARN", "id-0", "send_failed"),
            ("WARN", "id-2", "send_failed"),
            ("WARN", "id-11", "send_failed"),
            ("WARN", "id-12", "other_queue"),
        ]
    );
    let other = lines.iter().find(|l| l["message_id"] == "id-12").unwrap();
    assert_eq!(
        other["reason"],
        format!(
            "the record comes from arn:aws:sqs:us-east-2:123456789012:payments, not from \
             QUEUE_ARN {QUEUE_ARN}; not re-sent to another queue"
        )
    );
    let resent = lines.iter().find(|l| l["message_id"] == "id-0").unwrap();
    assert_eq!(
        resent["reason"],
        "already rejittered during this recovery, its copy delayed 60 s was not sent: SQS \
         refused the entry: InternalError: try again (sender fault: false)"
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
        json!({"level": "INFO", "message": "invocation done", "records": 13, "rejittered": 9,
               "batches": 3, "failures": 4, "resent_already_rejittered": 0,
               "batch_item_failures": 4, "pass": NOW})
    );
}
