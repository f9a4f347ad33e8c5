//! The ends of a circuit the workflow reaches, against mocked AWS clients: CloseCircuit,
//! GiveUp, ReleaseCircuit and RearmAlarm. Every ending acts only on a circuit this execution
//! holds open, gives back `Enabled: true` and nothing else once the mapping has settled,
//! releases the item and only then re-arms the alarm.

use crate::support;

use aws_sdk_lambda::operation::update_event_source_mapping::UpdateEventSourceMappingInput;
use aws_smithy_mocks::mock;
use controller::circuit::{Circuit, MappingSnapshot};
use controller::core::Next;
use controller::error::StepError;
use controller::steps;
use std::sync::{Arc, Mutex};
use support::*;

// =============================================================================================
// close

#[tokio::test]
async fn close_gives_enabled_back_releases_the_circuit_then_rearms() {
    let ending = Ending::close();
    let (ctx, log) = ending.spied(config(&[]));

    let circuit = steps::close(&ctx, healthy()).await.expect("closed");

    ending.assert_calls(&ended(3, 1));
    assert_eq!(
        circuit,
        Circuit {
            next: None,
            ..healthy()
        }
    );
    // The item is CLOSED before the alarm is reset: an ALARM the reset raises must find the
    // circuit free.
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
            format!("UpdateEventSourceMapping {UUID} enabled=Some(true)"),
            "UpdateItem finish CLOSED".to_string(),
            "SetAlarmState OK".to_string(),
            "PutEvents Circuit Closed".to_string(),
        ]
    );
}

#[tokio::test]
async fn close_writes_only_enabled_true() {
    // The consumer's owners may have changed its batch size, window, response types or
    // concurrency while the circuit was open: the breaker gives back Enabled and nothing else.
    let seen: Arc<Mutex<Vec<UpdateEventSourceMappingInput>>> = Arc::default();
    let keep = seen.clone();
    let ending = Ending {
        enable: mock!(aws_sdk_lambda::Client::update_event_source_mapping)
            .match_requests(move |r| {
                keep.lock().unwrap().push(r.clone());
                r.uuid() == Some(UUID)
            })
            .then_output(|| {
                aws_sdk_lambda::operation::update_event_source_mapping::UpdateEventSourceMappingOutput::builder()
                    .uuid(UUID)
                    .state("Enabling")
                    .build()
            }),
        ..Ending::close()
    };

    steps::close(&ending.context(config(&[])), healthy())
        .await
        .expect("closed");

    let seen = seen.lock().unwrap();
    let [update] = &seen[..] else {
        panic!("{} updates", seen.len())
    };
    assert_eq!(update.uuid(), Some(UUID));
    assert_eq!(update.enabled(), Some(true));
    assert_eq!(update.batch_size(), None);
    assert_eq!(update.maximum_batching_window_in_seconds(), None);
    assert!(update.function_response_types().is_empty());
    assert!(update.scaling_config().is_none());
    assert!(update.filter_criteria().is_none());
    assert!(update.function_name().is_none());
    assert_eq!(
        *update,
        UpdateEventSourceMappingInput::builder()
            .uuid(UUID)
            .enabled(true)
            .build()
            .unwrap(),
        "nothing but the uuid and Enabled"
    );
}

#[tokio::test]
async fn close_waits_for_a_mapping_being_updated_then_switches_it_on_once() {
    // A deploy of the consumer is updating the mapping: Lambda would refuse an update now.
    let ending = Ending {
        get_mapping: get_mapping(&["Updating", "Disabled", "Enabled"]),
        ..Ending::close()
    };
    steps::close(&ending.context(config(&[])), healthy())
        .await
        .expect("closed");
    ending.assert_calls(&ended(3, 1));
}

#[tokio::test]
async fn close_leaves_a_mapping_that_is_already_enabled_alone() {
    let ending = Ending {
        get_mapping: get_mapping(&["Enabled"]),
        ..Ending::close()
    };
    steps::close(&ending.context(config(&[])), healthy())
        .await
        .expect("closed");
    ending.assert_calls(&ended(1, 0));
}

#[tokio::test]
async fn close_polls_through_a_mapping_that_turned_busy_under_its_update() {
    // Read Disabled, then the update is refused (ResourceInUseException): something started
    // updating it in between. The close waits for it and switches it on after all.
    let ending = Ending {
        get_mapping: get_mapping(&["Disabled", "Updating", "Disabled", "Enabled"]),
        enable: enable_mapping_in_use_once(),
        ..Ending::close()
    };
    steps::close(&ending.context(config(&[])), healthy())
        .await
        .expect("closed");
    ending.assert_calls(&ended(4, 2));
}

#[tokio::test]
async fn close_fails_when_the_mapping_never_settles_and_keeps_the_circuit() {
    for (states, updates, actual) in [
        (&["Updating"][..], 0, "Updating"),
        (&["Disabled", "Enabling"][..], 1, "Disabled"),
    ] {
        let ending = Ending {
            get_mapping: get_mapping(states),
            ..Ending::close()
        };
        let ctx = ending.context(config(&[("SETTLE_TIMEOUT_SECONDS", "0")]));

        let err = steps::close(&ctx, healthy())
            .await
            .expect_err("not settled");

        match &err {
            StepError::MappingNotSettled {
                mapping,
                wanted,
                actual: got,
                ..
            } => {
                assert_eq!(mapping, UUID);
                assert_eq!(wanted, "Enabled");
                assert_eq!(got, actual);
            }
            other => panic!("expected MappingNotSettled, got {other:?}"),
        }
        // Retried by the state machine: the circuit stays this execution's, the alarm as it is.
        ending.assert_calls(&[("get_item", 1), ("get_mapping", 1), ("enable", updates)]);
    }
}

#[tokio::test]
async fn close_of_a_deleted_mapping_still_releases_the_circuit() {
    let ending = Ending {
        get_mapping: mapping_deleted(),
        ..Ending::close()
    };
    steps::close(&ending.context(config(&[])), healthy())
        .await
        .expect("closed");
    ending.assert_calls(&ended(1, 0));
}

#[tokio::test]
async fn close_gives_back_only_what_the_breaker_changed() {
    // A circuit item written by an older breaker has no `changed`: it only ever disabled an
    // Enabled mapping, so Enabled is given back.
    let older = Ending {
        get_item: get_item(Some(Item {
            snapshot: Some(MappingSnapshot {
                changed: None,
                ..snapshot("Enabled")
            }),
            ..item("OPEN", EXECUTION)
        })),
        ..Ending::close()
    };
    steps::close(&older.context(config(&[])), healthy())
        .await
        .expect("closed");
    older.assert_calls(&ended(3, 1));

    // Nothing changed: nothing to give back.
    let unchanged = Ending {
        get_item: get_item(Some(Item {
            snapshot: Some(snapshot("Disabled")),
            ..item("OPEN", EXECUTION)
        })),
        ..Ending::close()
    };
    steps::close(&unchanged.context(config(&[])), healthy())
        .await
        .expect("closed");
    unchanged.assert_calls(&ended(0, 0));
}

#[tokio::test]
async fn close_retried_after_it_released_the_circuit_only_rearms_and_announces() {
    let ending = Ending {
        get_item: get_item(Some(item("CLOSED", EXECUTION))),
        ..Ending::close()
    };
    steps::close(&ending.context(config(&[])), healthy())
        .await
        .expect("closed");
    ending.assert_calls(&[
        ("get_item", 1),
        ("reset_alarm", 1),
        ("put_event", 1),
        ("put_metric", 1),
    ]);
}

#[tokio::test]
async fn close_acts_only_on_the_circuit_this_execution_holds() {
    for record in others() {
        let ending = Ending {
            get_item: get_item(record.clone()),
            ..Ending::close()
        };
        let err = steps::close(&ending.context(config(&[])), healthy())
            .await
            .expect_err("not the owner");
        match &err {
            StepError::NotOwner { mapping, owner } => {
                assert_eq!(mapping, UUID);
                let want = record.as_ref().map_or("", |r| r.owner.as_str());
                assert_eq!(owner, want);
            }
            other => panic!("expected NotOwner, got {other:?}"),
        }
        // Ownership is read before the mapping is touched.
        ending.assert_calls(&[("get_item", 1)]);
    }
}

#[tokio::test]
async fn close_switches_the_rejitter_off_before_giving_the_consumer_back() {
    let ending = Ending::close();
    let (ctx, log) = ending.spied(rejitter_config(&[]));

    steps::close(&ctx, healthy()).await.expect("closed");

    let mut calls = ended(3, 1);
    calls.extend([
        ("list_rejitter", 1),
        ("disable_rejitter", 1),
        ("get_rejitter", 3),
    ]);
    ending.assert_calls(&calls);
    assert_eq!(
        entries(
            &log,
            &["UpdateEventSourceMapping", "UpdateItem", "SetAlarmState"]
        ),
        [
            format!("UpdateEventSourceMapping {REJITTER_UUID} enabled=Some(false)"),
            format!("UpdateEventSourceMapping {UUID} enabled=Some(true)"),
            "UpdateItem finish CLOSED".to_string(),
            "SetAlarmState OK".to_string(),
        ]
    );
}

// =============================================================================================
// give up

#[tokio::test]
async fn give_up_with_restore_gives_the_consumer_back() {
    let ending = Ending::gave_up();
    let ctx = ending.context(config(&[("GIVE_UP_POLICY", "restore")]));

    let circuit = steps::give_up(&ctx, circuit()).await.expect("gave up");

    ending.assert_calls(&ended(3, 1));
    assert!(
        circuit.reason.contains("give-up policy: restore"),
        "{}",
        circuit.reason
    );
}

#[tokio::test]
async fn give_up_with_leave_open_keeps_the_consumer_off() {
    let ending = Ending {
        finish: finish("GAVE_UP"),
        ..Ending::gave_up()
    };
    let ctx = ending.context(config(&[("GIVE_UP_POLICY", "leave-open")]));

    let circuit = steps::give_up(&ctx, circuit()).await.expect("gave up");

    // No give-back, no alarm reset: the mapping stays off for an operator.
    ending.assert_calls(&[("finish", 1), ("put_event", 1), ("put_metric", 1)]);
    assert!(
        circuit.reason.contains("give-up policy: leave-open"),
        "{}",
        circuit.reason
    );
}

#[tokio::test]
async fn give_up_acts_only_on_the_circuit_this_execution_holds() {
    for record in others() {
        let ending = Ending {
            get_item: get_item(record.clone()),
            ..Ending::gave_up()
        };
        let ctx = ending.context(config(&[("GIVE_UP_POLICY", "restore")]));
        let err = steps::give_up(&ctx, circuit())
            .await
            .expect_err("not the owner");
        assert_eq!(err.name(), "NotOwner", "{record:?}");
        ending.assert_calls(&[("get_item", 1)]);

        // Leaving it open is a conditional write the store refuses.
        let ending = Ending {
            get_item: get_item(record.clone()),
            finish: finish_not_owner("GAVE_UP"),
            ..Ending::gave_up()
        };
        let ctx = ending.context(config(&[("GIVE_UP_POLICY", "leave-open")]));
        let err = steps::give_up(&ctx, circuit())
            .await
            .expect_err("not the owner");
        assert_eq!(err.name(), "NotOwner", "{record:?}");
        ending.assert_calls(&[("finish", 1), ("get_item", 2)]);
    }
}

// =============================================================================================
// release and rearm

#[tokio::test]
async fn release_leaves_the_mapping_to_whoever_enabled_it_and_releases_the_circuit() {
    let ending = Ending::close();
    let (ctx, log) = ending.spied(rejitter_config(&[]));
    let ended_elsewhere = Circuit {
        next: Some(Next::ClosedElsewhere),
        reason: format!("the consumer's mapping {UUID} was enabled outside the breaker"),
        ..circuit()
    };

    let circuit = steps::release(&ctx, ended_elsewhere)
        .await
        .expect("released");

    // The rejitter off, the item CLOSED, the alarm reset, an event; the consumer's mapping
    // neither read nor written.
    ending.assert_calls(&[
        ("get_item", 1),
        ("list_rejitter", 1),
        ("disable_rejitter", 1),
        ("get_rejitter", 3),
        ("finish", 1),
        ("reset_alarm", 1),
        ("put_event", 1),
        ("put_metric", 1),
    ]);
    assert_eq!(circuit.next, None);
    assert!(
        circuit.reason.contains("closed by someone else")
            && circuit.reason.contains("enabled outside the breaker"),
        "{}",
        circuit.reason
    );
    assert!(entries(&log, &[&format!("UpdateEventSourceMapping {UUID}")]).is_empty());
    assert_eq!(
        entries(&log, &["UpdateItem", "SetAlarmState"]),
        ["UpdateItem finish CLOSED", "SetAlarmState OK"]
    );
}

#[tokio::test]
async fn release_of_a_circuit_this_execution_no_longer_holds_touches_nothing() {
    let mut records = others();
    records.push(Some(item("CLOSED", EXECUTION)));
    for record in records {
        let ending = Ending {
            get_item: get_item(record.clone()),
            ..Ending::close()
        };
        let circuit = steps::release(&ending.context(rejitter_config(&[])), circuit())
            .await
            .expect("no error");
        assert_eq!(circuit.next, None, "{record:?}");
        ending.assert_calls(&[("get_item", 1)]);
    }
}

#[tokio::test]
async fn rearm_only_resets_the_alarm() {
    let ending = Ending::close();
    let cooling = Circuit {
        status: controller::circuit::OpenStatus::CoolingDown,
        ..circuit()
    };
    let circuit = steps::rearm(&ending.context(config(&[])), cooling)
        .await
        .expect("rearmed");
    assert_eq!(circuit.next, None);
    ending.assert_calls(&[("reset_alarm", 1)]);
}

#[tokio::test]
async fn a_re_trip_healthy_at_its_first_probe_with_the_alarm_still_up_is_not_re_armed() {
    // A dead-letter queue's depth, say: the alarm stays in ALARM although the consumer is
    // healthy; re-arming it would open the next circuit at once.
    let ending = Ending::close();
    let (not_clearing, details) = put_event_where("Alarm Not Clearing", |d| d["mapping"] == UUID);
    let mut mocks = ending.mocks();
    mocks.cloudwatch.extend([
        describe_alarm("ALARM", NOW_MS - 60_000),
        put_metric("AlarmNotClearing"),
    ]);
    mocks.eventbridge.push(not_clearing);
    let ctx = mocks.context(config(&[]));
    let circuit = Circuit {
        retrip: true,
        attempt: 1,
        ..healthy()
    };

    let closed = steps::close(&ctx, circuit).await.expect("closed");

    assert_eq!(ending.reset_alarm.num_calls(), 0, "the alarm was re-armed");
    assert_eq!(
        ending.enable.num_calls(),
        1,
        "the consumer was not given back"
    );
    assert_eq!(ending.finish.num_calls(), 1);
    assert!(
        closed.reason.contains("does not clear"),
        "{}",
        closed.reason
    );
    assert_eq!(details.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_re_trip_whose_probes_failed_first_is_re_armed_as_usual() {
    // The consumer did fail again after the close: the alarm is right, and re-armed.
    let ending = Ending::close();
    let mut mocks = ending.mocks();
    mocks
        .cloudwatch
        .push(describe_alarm("ALARM", NOW_MS - 60_000));
    let circuit = Circuit {
        retrip: true,
        attempt: 4,
        ..healthy()
    };

    steps::close(&mocks.context(config(&[])), circuit)
        .await
        .expect("closed");

    assert_eq!(ending.reset_alarm.num_calls(), 1);
}

#[tokio::test]
async fn a_composite_alarm_is_re_armed_with_its_children_first() {
    use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
    use aws_sdk_cloudwatch::operation::set_alarm_state::SetAlarmStateOutput;
    use aws_sdk_cloudwatch::types::{CompositeAlarm, StateValue};
    let reset: Arc<Mutex<Vec<String>>> = Arc::default();
    let keep = reset.clone();
    let ending = Ending {
        reset_alarm: mock!(aws_sdk_cloudwatch::Client::set_alarm_state)
            .match_requests(move |r| {
                keep.lock()
                    .unwrap()
                    .push(r.alarm_name().unwrap_or_default().to_string());
                r.state_value() == Some(&StateValue::Ok)
            })
            .then_output(|| SetAlarmStateOutput::builder().build()),
        ..Ending::close()
    };
    let mut mocks = ending.mocks();
    mocks.cloudwatch.push(
        mock!(aws_sdk_cloudwatch::Client::describe_alarms)
            .match_requests(|r| r.alarm_names() == [ALARM.to_string()])
            .then_output(|| {
                DescribeAlarmsOutput::builder()
                    .composite_alarms(
                        CompositeAlarm::builder()
                            .alarm_name(ALARM)
                            .alarm_rule(format!(
                                "ALARM(\"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:orders-consumer-failed-records\") OR ALARM(\"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:orders-consumer-stalled\")"
                            ))
                            .state_value(StateValue::Alarm)
                            .build(),
                    )
                    .build()
            }),
    );

    steps::close(
        &mocks.context(config(&[("ALARM_SIGNAL", "any")])),
        healthy(),
    )
    .await
    .expect("closed");

    assert_eq!(
        *reset.lock().unwrap(),
        [
            "orders-consumer-failed-records",
            "orders-consumer-stalled",
            ALARM
        ]
    );
}
