//! The operator's close (`sqs-circuit-breaker close`) against mocked AWS clients: it stops a
//! running owner, takes the circuit (an OPEN one, or one a `leave-open` give-up left), ends
//! it as every end does, and announces it; a closed circuit is left alone.

// The controller's mocked clients and fixtures, so that the close is tested against the same
// AWS the steps' tests describe.
#[path = "../../controller/tests/support/mod.rs"]
mod support;

use aws_sdk_sfn::types::ExecutionStatus;
use aws_smithy_mocks::{mock, Rule};
use sqs_circuit_breaker::actions;
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

    async fn run(&self) -> actions::CloseReport {
        let mut mocks = self.ending.mocks();
        mocks.lambda.push(self.list.clone());
        mocks.sfn.push(self.stop.clone());
        actions::close(&mocks.context(config(&[])), "DB is back")
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
