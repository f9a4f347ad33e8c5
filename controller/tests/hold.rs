//! CheckHold against mocked AWS clients: a circuit held open by hand (`sqs-circuit-breaker
//! open --hold`) stays held while its execution owns it and the mapping is off.

use crate::support;

use support::*;

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
