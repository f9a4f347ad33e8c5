//! An operator stops the execution while its OpenCircuit step runs. Step Functions lets the
//! step run to its end, and the recovery rule runs on the stop meanwhile: it may find no
//! circuit yet (the step takes it after the look), or close the circuit before the step
//! disables the mapping. Either way the step, looking again once the mapping is Disabled,
//! gives the consumer back, and leaves a circuit someone new holds to its holder.

use crate::support;

use aws_sdk_sfn::types::ExecutionStatus;
use aws_smithy_mocks::Rule;
use controller::adapters::store::recovery_owner;
use controller::error::StepError;
use controller::steps;
use support::*;

/// The open step's rules up to its disable, the execution running at the first look and
/// ABORTED from the second on, and the recovery's rules; `scan` and `get_item` say what the
/// recovery rule left.
fn mocks(scan: Rule, get_item: Rule, get_mapping: Rule) -> Mocks {
    Mocks {
        sqs: vec![queue_url(), queue_attributes()],
        lambda: vec![
            list_mappings(&["Enabled"]),
            disable_mapping(),
            enable_mapping(),
            get_mapping,
        ],
        cloudwatch: vec![
            reset_alarm(),
            put_metric("CircuitRecovered"),
            describe_alarm("ALARM", ALARM_AT_MS),
        ],
        eventbridge: vec![put_event("Circuit Recovered")],
        dynamodb: vec![
            get_item,
            acquire(),
            scan,
            take_over_by(EXECUTION, recovery_owner(EXECUTION)),
            finish_by("CLOSED", recovery_owner(EXECUTION)),
        ],
        sfn: vec![describe_execution_turns(
            EXECUTION,
            &[ExecutionStatus::Running, ExecutionStatus::Aborted],
        )],
    }
}

const MUTATIONS: [&str; 4] = [
    "UpdateItem",
    "UpdateEventSourceMapping",
    "SetAlarmState",
    "PutEvents",
];

async fn open(mocks: Mocks) -> (Result<controller::circuit::Circuit, StepError>, Vec<String>) {
    let (mocks, log) = mocks.spied();
    let result = steps::open(
        &mocks.context(config(&[])),
        &alarm_event(ALARM, "ALARM"),
        EXECUTION,
        0,
    )
    .await;
    (result, entries(&log, &MUTATIONS))
}

#[track_caller]
fn assert_refused_as_ended(result: &Result<controller::circuit::Circuit, StepError>) {
    match result {
        Err(StepError::InvalidEvent(why)) => {
            assert!(why.contains("ABORTED") && why.contains(UUID), "{why}")
        }
        other => panic!("expected the ended execution's refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn stopped_before_the_circuit_was_taken_the_step_recovers_it() {
    // The recovery rule looked before the acquire and found nothing: the step's own look
    // after the disable finds the execution ended and recovers the circuit as the rule would.
    let (result, calls) = open(mocks(
        scan_recoverable_circuits(vec![item("OPEN", EXECUTION)]),
        get_item(None),
        get_mapping(&[
            "Enabled",
            "Disabling",
            "Disabled",
            "Disabled",
            "Enabling",
            "Enabled",
        ]),
    ))
    .await;

    assert_refused_as_ended(&result);
    assert_eq!(
        calls,
        [
            "UpdateItem acquire".to_string(),
            format!("UpdateEventSourceMapping {UUID} enabled=Some(false)"),
            "UpdateItem take_over".to_string(),
            format!("UpdateEventSourceMapping {UUID} enabled=Some(true)"),
            "UpdateItem finish CLOSED".to_string(),
            "SetAlarmState OK".to_string(),
            "PutEvents Circuit Recovered".to_string(),
        ]
    );
}

#[tokio::test]
async fn stopped_and_recovered_before_the_disable_the_step_gives_the_consumer_back() {
    // The recovery rule took the circuit after the acquire and closed it before the disable:
    // no circuit is left to recover, and the consumer would stay Disabled.
    let (result, calls) = open(mocks(
        scan_recoverable_circuits(vec![]),
        get_items(
            UUID,
            vec![None, Some(item("CLOSED", &recovery_owner(EXECUTION)))],
        ),
        get_mapping(&[
            "Enabled",
            "Disabling",
            "Disabled",
            "Disabled",
            "Enabling",
            "Enabled",
        ]),
    ))
    .await;

    assert_refused_as_ended(&result);
    assert_eq!(
        calls,
        [
            "UpdateItem acquire".to_string(),
            format!("UpdateEventSourceMapping {UUID} enabled=Some(false)"),
            format!("UpdateEventSourceMapping {UUID} enabled=Some(true)"),
            // The re-armed alarm, still breaching, opens the next circuit.
            "SetAlarmState OK".to_string(),
        ]
    );
}

#[tokio::test]
async fn stopped_while_opening_a_new_circuit_keeps_the_mapping() {
    // A new execution took the circuit over from the ended one: the mapping is its to act on.
    let (result, calls) = open(mocks(
        scan_recoverable_circuits(vec![]),
        get_items(UUID, vec![None, Some(item("OPEN", OTHER_EXECUTION))]),
        get_mapping(&["Enabled", "Disabling", "Disabled"]),
    ))
    .await;

    assert_refused_as_ended(&result);
    assert_eq!(
        calls,
        [
            "UpdateItem acquire".to_string(),
            format!("UpdateEventSourceMapping {UUID} enabled=Some(false)"),
        ]
    );
}
