//! The endings outside the happy workflow, against mocked AWS clients: the failsafe (a step
//! failed for good) and the recovery of an execution that ended while it held a circuit open.
//! Both find the circuits from the item (never by looking the mapping up), and end them as
//! CloseCircuit does.

use crate::support;

use aws_sdk_sfn::types::ExecutionStatus;
use controller::steps::{self, Request};
use serde_json::{json, Value};
use support::*;

// =============================================================================================
// failsafe

fn caught_error() -> Value {
    json!({"Error": "MappingNotSettled", "Cause": "mapping is Disabling, still not Disabled after 60s"})
}

/// The failsafe's calls for one circuit held open: the scan, the consumer given back, the
/// item finished, the alarm reset, the alert.
fn failsafe_ended() -> Vec<(&'static str, usize)> {
    vec![
        ("scan", 1),
        ("get_mapping", 3),
        ("enable", 1),
        ("finish", 1),
        ("reset_alarm", 1),
        ("put_event", 1),
        ("put_metric", 1),
    ]
}

#[tokio::test]
async fn failsafe_ends_the_circuit_this_execution_holds_from_its_item() {
    // No mapping lookup: the item names the mapping and what was changed on it.
    let ending = Ending::gave_up();
    let (ctx, log) = ending.spied(config(&[]));

    let result = steps::failsafe(&ctx, EXECUTION, &caught_error())
        .await
        .expect("failsafe");

    assert_eq!(result["restored"], true);
    ending.assert_calls(&failsafe_ended());
    let reason = ending.details()[0]["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("still not Disabled") && reason.contains("given back"),
        "{reason}"
    );
    assert_eq!(
        entries(&log, &["UpdateItem", "SetAlarmState"]),
        ["UpdateItem finish CLOSED", "SetAlarmState OK"]
    );
}

#[tokio::test]
async fn failsafe_holding_no_circuit_touches_nothing_but_alerts() {
    for config in [config(&[]), rejitter_config(&[])] {
        let (put_event, details) = put_event_where("Circuit Gave Up", |d| {
            d["mapping"] == "" && d["execution"] == EXECUTION && d["queue"] == QUEUE_ARN
        });
        let ending = Ending {
            scan: scan_open_circuits(vec![]),
            put_event,
            ..Ending::gave_up()
        };

        let result = steps::failsafe(&ending.context(config), EXECUTION, &Value::Null)
            .await
            .expect("failsafe");

        assert_eq!(result["restored"], false);
        ending.assert_calls(&[("scan", 1), ("put_event", 1), ("put_metric", 1)]);
        let reason = details.lock().unwrap()[0]["reason"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(reason.contains("nothing was touched"), "{reason}");
    }
}

#[tokio::test]
async fn failsafe_switches_the_rejitter_off_before_giving_the_consumer_back() {
    let ending = Ending::gave_up();
    let (ctx, log) = ending.spied(rejitter_config(&[]));

    let result = steps::failsafe(&ctx, EXECUTION, &caught_error())
        .await
        .expect("failsafe");

    assert_eq!(result["restored"], true);
    let mut calls = failsafe_ended();
    calls.extend([
        ("list_rejitter", 1),
        ("disable_rejitter", 1),
        ("get_rejitter", 3),
    ]);
    ending.assert_calls(&calls);
    assert_eq!(
        entries(&log, &["UpdateEventSourceMapping", "GetEventSourceMapping"]),
        [
            format!("GetEventSourceMapping {REJITTER_UUID}"),
            format!("UpdateEventSourceMapping {REJITTER_UUID} enabled=Some(false)"),
            format!("GetEventSourceMapping {REJITTER_UUID}"),
            format!("GetEventSourceMapping {REJITTER_UUID}"),
            format!("GetEventSourceMapping {UUID}"),
            format!("UpdateEventSourceMapping {UUID} enabled=Some(true)"),
            format!("GetEventSourceMapping {UUID}"),
            format!("GetEventSourceMapping {UUID}"),
        ]
    );
}

#[tokio::test]
async fn failsafe_leaves_a_rejitter_that_is_off_alone() {
    let ending = Ending {
        list_rejitter: list_rejitter_mappings(&["Disabled"]),
        ..Ending::gave_up()
    };
    let result = steps::failsafe(
        &ending.context(rejitter_config(&[])),
        EXECUTION,
        &caught_error(),
    )
    .await
    .expect("failsafe");
    assert_eq!(result["restored"], true);
    let mut calls = failsafe_ended();
    calls.push(("list_rejitter", 1));
    ending.assert_calls(&calls);
}

#[tokio::test]
async fn failsafe_gives_the_consumer_back_when_the_rejitter_has_no_single_mapping() {
    // StartRejitter failing with MappingNotFound (or SeveralMappings) for the rejitter lands
    // here: the consumer must still come back.
    for states in [&[][..], &["Enabled", "Enabled"][..]] {
        let ending = Ending {
            list_rejitter: list_rejitter_mappings(states),
            ..Ending::gave_up()
        };
        let result = steps::failsafe(
            &ending.context(rejitter_config(&[])),
            EXECUTION,
            &caught_error(),
        )
        .await
        .unwrap_or_else(|e| panic!("{states:?}: {e:?}"));
        assert_eq!(result["restored"], true, "{states:?}");
        let mut calls = failsafe_ended();
        calls.push(("list_rejitter", 1));
        ending.assert_calls(&calls);
    }
}

#[tokio::test]
async fn failsafe_waits_for_a_rejitter_already_switching_off() {
    // Lambda refuses updates to a mapping in a transitional state.
    let ending = Ending {
        list_rejitter: list_rejitter_mappings(&["Disabling"]),
        get_rejitter: get_rejitter_mapping(&["Disabling", "Disabled"]),
        ..Ending::gave_up()
    };
    let result = steps::failsafe(
        &ending.context(rejitter_config(&[])),
        EXECUTION,
        &caught_error(),
    )
    .await
    .expect("failsafe");
    assert_eq!(result["restored"], true);
    let mut calls = failsafe_ended();
    calls.extend([("list_rejitter", 1), ("get_rejitter", 2)]);
    ending.assert_calls(&calls);
}

// =============================================================================================
// recover

fn status_change(status: &str) -> Value {
    json!({
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": ACCOUNT,
        "time": "2026-05-28T20:26:40Z",
        "region": REGION,
        "resources": [EXECUTION],
        "detail": {
            "executionArn": EXECUTION,
            "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:orders-breaker",
            "name": "0f6c7a52-run-1",
            "status": status,
            "startDate": 1_779_996_400_000u64,
            "stopDate": 1_780_000_000_000u64,
        }
    })
}

#[tokio::test]
async fn recover_leaves_a_running_execution_to_look_after_its_circuit() {
    // A late or forged event: the execution still runs.
    let ending = Ending {
        describe: describe_execution(EXECUTION, ExecutionStatus::Running),
        ..Ending::recovered()
    };
    let result = steps::recover(&ending.context(rejitter_config(&[])), EXECUTION, "ABORTED")
        .await
        .expect("recovered");
    assert_eq!(result["recovered"], json!([]));
    ending.assert_calls(&[("describe", 1)]);
}

#[tokio::test]
async fn recover_ends_the_circuit_an_ended_execution_held_open() {
    for describe in [
        describe_execution(EXECUTION, ExecutionStatus::Aborted),
        execution_does_not_exist(EXECUTION),
    ] {
        let ending = Ending {
            describe,
            ..Ending::recovered()
        };
        let (ctx, log) = ending.spied(rejitter_config(&[]));

        let result = steps::recover(&ctx, EXECUTION, "ABORTED")
            .await
            .expect("recovered");

        assert_eq!(result["recovered"], json!([UUID]));
        ending.assert_calls(&[
            ("describe", 1),
            ("scan", 1),
            ("take_over", 1),
            ("list_rejitter", 1),
            ("disable_rejitter", 1),
            ("get_rejitter", 3),
            ("get_mapping", 3),
            ("enable", 1),
            ("finish", 1),
            ("reset_alarm", 1),
            ("put_event", 1),
            ("put_metric", 1),
        ]);
        assert_eq!(
            entries(
                &log,
                &[
                    "UpdateEventSourceMapping",
                    "UpdateItem",
                    "SetAlarmState",
                    "PutEvents"
                ]
            ),
            [
                // The circuit is taken first, so an alarm's take-over cannot race the recovery.
                "UpdateItem take_over".to_string(),
                format!("UpdateEventSourceMapping {REJITTER_UUID} enabled=Some(false)"),
                format!("UpdateEventSourceMapping {UUID} enabled=Some(true)"),
                "UpdateItem finish CLOSED".to_string(),
                "SetAlarmState OK".to_string(),
                "PutEvents Circuit Recovered".to_string(),
            ]
        );
        let reason = ending.details()[0]["reason"].as_str().unwrap().to_string();
        assert!(reason.contains("ABORTED"), "{reason}");
    }
}

#[tokio::test]
async fn recover_of_an_execution_that_held_nothing_touches_nothing() {
    let ending = Ending {
        scan: scan_recoverable_circuits(vec![]),
        ..Ending::recovered()
    };
    let result = steps::recover(
        &ending.context(rejitter_config(&[])),
        EXECUTION,
        "SUCCEEDED",
    )
    .await
    .expect("recovered");
    assert_eq!(result["recovered"], json!([]));
    ending.assert_calls(&[("describe", 1), ("scan", 1)]);
}

#[tokio::test]
async fn recover_runs_from_the_status_change_event_itself() {
    let ending = Ending::recovered();
    let (request, retries) = Request::parse(status_change("TIMED_OUT")).expect("parses");
    assert_eq!(retries, 0);

    let result = steps::run(&ending.context(config(&[])), request, retries)
        .await
        .expect("recovered");

    assert_eq!(result["recovered"], json!([UUID]));
    let reason = ending.details()[0]["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("TIMED_OUT"), "{reason}");
}

#[tokio::test]
async fn recover_that_loses_the_circuit_to_an_alarm_touches_nothing() {
    // An alarm's execution took the circuit over from the ended execution between the scan
    // and the recovery's own take-over: the circuit is that execution's now.
    let ending = Ending {
        take_over: take_over_lost_by(EXECUTION, recovery_owner(EXECUTION)),
        ..Ending::recovered()
    };
    let result = steps::recover(&ending.context(rejitter_config(&[])), EXECUTION, "ABORTED")
        .await
        .expect("nothing to recover");
    assert_eq!(result["recovered"], json!([]));
    ending.assert_calls(&[("describe", 1), ("scan", 1), ("take_over", 1)]);
}

#[tokio::test]
async fn recover_retried_after_taking_the_circuit_finishes_the_job() {
    // A first attempt took the circuit and died; the retry finds it under the recovery's
    // own name and ends it without taking it again.
    let ending = Ending {
        scan: scan_recoverable_circuits(vec![item("OPEN", &recovery_owner(EXECUTION))]),
        ..Ending::recovered()
    };
    let result = steps::recover(&ending.context(config(&[])), EXECUTION, "ABORTED")
        .await
        .expect("recovered");
    assert_eq!(result["recovered"], json!([UUID]));
    ending.assert_calls(&[
        ("describe", 1),
        ("scan", 1),
        ("get_mapping", 3),
        ("enable", 1),
        ("finish", 1),
        ("reset_alarm", 1),
        ("put_event", 1),
        ("put_metric", 1),
    ]);
}

#[tokio::test]
async fn recover_of_an_execution_stopped_before_it_opened_re_arms_the_alarm() {
    // Stopped before its OpenCircuit took the circuit: the ALARM that started it would stay
    // unanswered, and a breaching alarm raises no new transition.
    for (alarm, resets) in [("ALARM", 1), ("OK", 0)] {
        let ending = Ending {
            scan: scan_recoverable_circuits(vec![]),
            ..Ending::recovered()
        };
        let describe_alarm = describe_alarm(alarm, NOW_MS - 10_000);
        let mut mocks = ending.mocks();
        mocks.cloudwatch.push(describe_alarm.clone());
        let (mocks, log) = mocks.spied();

        let result = steps::recover(&mocks.context(config(&[])), EXECUTION, "ABORTED")
            .await
            .expect("recovered");

        assert_eq!(result["recovered"], json!([]));
        // The execution's input (the alarm event: the built-in consumer), its alarm, and no
        // mapping touched.
        ending.assert_calls(&[("describe", 2), ("scan", 1), ("reset_alarm", resets)]);
        assert_eq!(describe_alarm.num_calls(), 1);
        assert_eq!(
            entries(
                &log,
                &["UpdateEventSourceMapping", "UpdateItem", "SetAlarmState"]
            )
            .len(),
            resets,
            "{alarm}"
        );
    }
}
