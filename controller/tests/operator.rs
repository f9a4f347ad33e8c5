//! The operator's close (`sqs-circuit-breaker close`) against mocked AWS clients: it stops a
//! running owner, takes the circuit (an OPEN one, or one a `leave-open` give-up left), ends
//! it as every end does, and announces it; a closed circuit is left alone.

use crate::support;

use aws_sdk_sfn::types::ExecutionStatus;
use aws_smithy_mocks::{mock, Rule};
use controller::operator;
use support::*;

const OPERATOR: &str = "operator close at 1780000000000";

fn stop_execution() -> Rule {
    use aws_sdk_sfn::operation::stop_execution::StopExecutionOutput;
    mock!(aws_sdk_sfn::Client::stop_execution)
        .match_requests(|r| {
            r.execution_arn() == Some(EXECUTION)
                && r.cause()
                    .is_some_and(|c| c == "closed by an operator: DB is back")
        })
        .then_output(|| {
            StopExecutionOutput::builder()
                .stop_date(aws_smithy_types::DateTime::from_millis(NOW_MS as i64))
                .build()
                .expect("a stop date")
        })
}

/// A close of the circuit `held` (its owner EXECUTION, `status`).
struct Close {
    ending: Ending,
    list: Rule,
    stop: Rule,
}

impl Close {
    fn of(held: Item, status: ExecutionStatus) -> Close {
        let (put_event, details) = put_event_where("Circuit Closed", |d| {
            d["mapping"] == UUID
                && d["execution"] == EXECUTION
                && d["reason"] == "closed by an operator: DB is back"
        });
        Close {
            ending: Ending {
                get_item: get_item(Some(held)),
                describe: describe_execution(EXECUTION, status),
                take_over: take_over_by(EXECUTION, OPERATOR.to_string()),
                finish: finish_by("CLOSED", OPERATOR.to_string()),
                put_event,
                details,
                put_metric: put_metric("CircuitClosed"),
                ..Ending::close()
            },
            list: list_mappings(&["Disabled"]),
            stop: stop_execution(),
        }
    }

    async fn run(&self) -> operator::CloseReport {
        let mut mocks = self.ending.mocks();
        mocks.lambda.push(self.list.clone());
        mocks.sfn.push(self.stop.clone());
        operator::close(&mocks.context(config(&[])), "DB is back")
            .await
            .expect("closed")
    }
}

/// Ending a circuit held open: the consumer given back, the item CLOSED, the alarm reset.
const ENDED: [(&str, usize); 6] = [
    ("take_over", 1),
    ("get_mapping", 3),
    ("enable", 1),
    ("finish", 1),
    ("reset_alarm", 1),
    ("put_event", 1),
];

#[tokio::test]
async fn close_stops_a_probing_execution_and_gives_the_consumer_back() {
    let close = Close::of(item("OPEN", EXECUTION), ExecutionStatus::Running);
    let report = close.run().await;
    assert_eq!(report.was, "OPEN");
    assert_eq!(close.stop.num_calls(), 1);
    let mut calls = vec![("get_item", 1), ("describe", 1), ("put_metric", 1)];
    calls.extend(ENDED);
    close.ending.assert_calls(&calls);
    assert_eq!(report.actions[0], format!("stopped execution {EXECUTION}"));
    assert!(
        report
            .actions
            .contains(&format!("enabled the consumer's mapping {UUID}")),
        "{report:?}"
    );
    assert_eq!(close.ending.details().len(), 1);
}

#[tokio::test]
async fn close_ends_a_circuit_a_leave_open_give_up_left() {
    let close = Close::of(item("GAVE_UP", EXECUTION), ExecutionStatus::Failed);
    let report = close.run().await;
    assert_eq!(report.was, "GAVE_UP");
    // Its execution has ended: nothing to stop.
    assert_eq!(close.stop.num_calls(), 0);
    let mut calls = vec![("get_item", 1), ("describe", 1), ("put_metric", 1)];
    calls.extend(ENDED);
    close.ending.assert_calls(&calls);
}

#[tokio::test]
async fn close_of_a_closed_circuit_changes_nothing() {
    for held in [Some(item("CLOSED", EXECUTION)), None] {
        let close = Close {
            ending: Ending {
                get_item: get_item(held.clone()),
                ..Ending::close()
            },
            ..Close::of(item("CLOSED", EXECUTION), ExecutionStatus::Succeeded)
        };
        let report = close.run().await;
        assert_eq!(report.was, "CLOSED", "{held:?}");
        assert!(report.actions[0].contains("already closed; nothing changed"));
        close.ending.assert_calls(&[("get_item", 1)]);
        assert_eq!(close.stop.num_calls(), 0);
    }
}

// ---------------------------------------------------------------------------------------------
// CheckHold: a circuit held open by hand

async fn check_hold(mapping_states: &[&str], held_by: &str) -> controller::circuit::Circuit {
    let mocks = Mocks {
        sqs: vec![],
        lambda: vec![get_mapping(mapping_states)],
        cloudwatch: vec![],
        eventbridge: vec![],
        dynamodb: vec![get_item(Some(item("OPEN", held_by)))],
        sfn: vec![],
    };
    let held = controller::circuit::Circuit {
        history_events: 100,
        ..circuit()
    };
    controller::steps::check_hold(&mocks.context(config(&[])), held, 0)
        .await
        .expect("checked")
}

#[tokio::test]
async fn a_held_circuit_stays_held_while_it_is_this_execution_s_and_the_mapping_is_off() {
    let circuit = check_hold(&["Disabled"], EXECUTION).await;
    assert_eq!(circuit.next, Some(controller::core::Next::Hold));
    assert_eq!(
        circuit.wait_seconds,
        controller::core::operator::HOLD_SECONDS
    );
    // HoldOpen, this Task, StillHeld.
    assert_eq!(circuit.history_events, 100 + 2 + 5 + 2);
}

#[tokio::test]
async fn a_held_circuit_is_released_once_someone_enabled_the_mapping_or_took_it() {
    for (states, owner) in [
        (&["Enabled"][..], EXECUTION),
        (&["Disabled"][..], OTHER_EXECUTION),
    ] {
        let circuit = check_hold(states, owner).await;
        assert_eq!(
            circuit.next,
            Some(controller::core::Next::ClosedElsewhere),
            "{states:?} {owner}"
        );
    }
}
