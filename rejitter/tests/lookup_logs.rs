//! The JSON log lines of a failed `GetQueueUrl` lookup.
//!
//! In a test binary of its own, like `logs.rs`: tracing caches each log site's interest
//! globally, so a scoped subscriber in one test can miss lines when other tests hit the same
//! sites in parallel.

mod support;

use aws_smithy_mocks::MockResponse;
use rejitter::{delay::random_unit, handle, logging};
use serde_json::{json, Value};
use support::*;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::EnvFilter;

#[tokio::test]
async fn a_failed_lookup_logs_the_call_and_the_failed_invocation() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let lookup = lookup_rule_failing_once();
    let queue = queue_with(&[&lookup, &rule]);
    let capture = Capture::default();
    let subscriber = logging::subscriber(EnvFilter::new("info"), capture.clone());
    handle(&queue, &config(), &records(numbered(3)), NOW, random_unit)
        .with_subscriber(subscriber)
        .await
        .expect_err("no URL");

    let lines = capture.lines();
    let error = "AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist.";
    let call: Vec<&Value> = lines
        .iter()
        .filter(|l| l["operation"] == "GetQueueUrl")
        .collect();
    assert_eq!(
        call,
        [
            &json!({"level": "ERROR", "message": "GetQueueUrl call failed; nothing is sent",
                 "operation": "GetQueueUrl", "queue_arn": QUEUE_ARN, "transient": false,
                 "error": error})
        ],
        "{lines:#?}"
    );
    let failed: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "invocation failed")
        .collect();
    assert_eq!(failed.len(), 1, "{lines:#?}");
    assert_eq!(failed[0]["level"], "ERROR");
    assert_eq!(failed[0]["error_type"], "QueueUrlUnavailable");
    assert_eq!(failed[0]["queue_arn"], QUEUE_ARN);
    assert_eq!(failed[0]["batch_size"], 3);
    assert!(
        failed[0]["error"].as_str().unwrap().contains(error),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l["message"] == "invocation done"),
        "{lines:#?}"
    );
}
