//! What the controller accepts: the step requests the state machine sends (with the retry
//! count), the execution status event that starts a recovery, and nothing else.

use crate::support;

use controller::circuit::Circuit;
use controller::steps::{self, Request};
use serde_json::{json, Value};
use support::*;

#[test]
fn requests_parse() {
    let (open, retries) = Request::parse(json!({"step": "open", "event": {}, "execution": "arn"}))
        .expect("open parses");
    assert!(matches!(&open, Request::Open { execution, .. } if execution == "arn"));
    assert_eq!(open.name(), "open");
    assert_eq!(open.execution(), "arn");
    assert_eq!(retries, 0, "no retries field: the first attempt");

    let circuit = serde_json::to_value(circuit()).unwrap();
    for step in [
        "probe",
        "backoff",
        "close",
        "give_up",
        "start_rejitter",
        "check_backlog",
        "stop_rejitter",
        "release",
        "rearm",
    ] {
        let (request, _) = Request::parse(json!({"step": step, "circuit": circuit}))
            .unwrap_or_else(|e| panic!("{step}: {e}"));
        assert_eq!(request.name(), step);
        assert_eq!(request.execution(), EXECUTION);
    }

    let (failsafe, _) = Request::parse(json!({"step": "failsafe", "execution": "arn"}))
        .expect("failsafe without error parses");
    assert!(matches!(
        &failsafe,
        Request::Failsafe {
            error: Value::Null,
            ..
        }
    ));
}

#[test]
fn requests_carry_their_retry_count() {
    let circuit = serde_json::to_value(circuit()).unwrap();
    for (retries, want) in [(json!(0), 0), (json!(3), 3), (json!(6), 6)] {
        let (request, got) =
            Request::parse(json!({"step": "probe", "circuit": circuit, "retries": retries}))
                .expect("parses");
        assert_eq!(request.name(), "probe");
        assert_eq!(got, want);
    }
    // Anything but a count is no retry.
    for odd in [json!(null), json!("2"), json!(-1)] {
        let (_, got) = Request::parse(json!({"step": "probe", "circuit": circuit, "retries": odd}))
            .expect("parses");
        assert_eq!(got, 0, "{odd}");
    }
}

#[test]
fn an_execution_status_change_is_a_recovery() {
    let event = json!({
        "version": "0",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "detail": {"executionArn": EXECUTION, "status": "ABORTED", "name": "run-1"}
    });
    let (request, retries) = Request::parse(event).expect("parses");
    match &request {
        Request::Recover { execution, status } => {
            assert_eq!(execution, EXECUTION);
            assert_eq!(status, "ABORTED");
        }
        other => panic!("expected Recover, got {other:?}"),
    }
    assert_eq!(request.name(), "recover");
    assert_eq!(request.execution(), EXECUTION);
    assert_eq!(retries, 0);

    for broken in [
        json!({"detail-type": "Step Functions Execution Status Change", "detail": {"status": "ABORTED"}}),
        json!({"detail-type": "Step Functions Execution Status Change", "detail": {"executionArn": EXECUTION}}),
        json!({"detail-type": "Step Functions Execution Status Change"}),
    ] {
        let err = Request::parse(broken.clone()).expect_err("incomplete event");
        assert!(err.contains("detail."), "{broken}: {err}");
    }
}

#[test]
fn malformed_requests_are_refused() {
    for bad in [
        json!({"step": "explode", "execution": "arn"}),
        json!({"step": "Open", "event": {}, "execution": "arn"}),
        json!({"event": {}, "execution": "arn"}),
        json!({"step": "open", "event": {}}),
        json!({"step": "probe"}),
        json!({"step": "probe", "circuit": {"status": "Opened"}}),
        json!({"step": "recover", "execution": "arn"}),
        json!({"detail-type": "CloudWatch Alarm State Change", "detail": {}}),
        json!("probe"),
        json!(null),
    ] {
        assert!(Request::parse(bad.clone()).is_err(), "{bad} parsed");
    }
}

#[tokio::test]
async fn run_returns_the_circuit_as_json() {
    let ctx = Mocks::default().context(config(&[("MAX_PROBE_ATTEMPTS", "1")]));
    let value = steps::run(&ctx, Request::Backoff { circuit: circuit() }, 2)
        .await
        .expect("ran");
    assert_eq!(value["next"], "GiveUp");
    assert_eq!(value["status"], "Opened");
    assert_eq!(value["execution"], EXECUTION);
    // This Task after two failed attempts (5 + 2 * 3) and BackoffOrGiveUp (2).
    assert_eq!(value["history_events"], HISTORY_EVENTS + 13);
    let back: Circuit = serde_json::from_value(value).expect("round-trips");
    assert_eq!(back.attempt, 1);
}

#[test]
fn a_circuit_from_before_the_history_count_still_parses() {
    let mut old = serde_json::to_value(circuit()).unwrap();
    old.as_object_mut().unwrap().remove("history_events");
    let back: Circuit = serde_json::from_value(old).expect("parses");
    assert_eq!(back.history_events, 0);
}

#[test]
fn a_snapshot_from_an_older_breaker_still_parses() {
    // The old snapshot carried the mapping's configuration; only what the breaker changed
    // is kept now, and an old Enabled snapshot means Enabled was changed.
    let old = json!({
        "uuid": UUID,
        "function_arn": FUNCTION_ARN,
        "event_source_arn": QUEUE_ARN,
        "state": "Enabled",
        "batch_size": 10,
        "maximum_batching_window_in_seconds": 5,
        "function_response_types": ["ReportBatchItemFailures"],
        "maximum_concurrency": 20
    });
    let snapshot: controller::circuit::MappingSnapshot =
        serde_json::from_value(old).expect("parses");
    assert_eq!(snapshot.changed, None);
    assert!(snapshot.changes().enabled);
}
