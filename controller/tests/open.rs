//! OpenCircuit against mocked AWS clients: the calls it makes (and does not make), the
//! requests it sends and the circuit it returns; taking over a stranded circuit, stale alarms
//! and the cooldown.

use crate::support;

use aws_sdk_lambda::operation::update_event_source_mapping::UpdateEventSourceMappingError;
use aws_sdk_lambda::types::error::TooManyRequestsException;
use aws_sdk_sfn::types::ExecutionStatus;
use aws_smithy_mocks::{mock, Rule};
use controller::circuit::{Circuit, OpenStatus};
use controller::core::Config;
use controller::error::StepError;
use controller::steps;
use serde_json::{json, Value};
use support::*;

/// Every rule the open step may use, answering as in the happy path: no circuit item yet, an
/// Enabled mapping that settles Disabled.
struct Open {
    list: Rule,
    queue_url: Rule,
    queue_attributes: Rule,
    get_item: Rule,
    acquire: Rule,
    take_over: Rule,
    release: Rule,
    describe: Rule,
    describe_self: Rule,
    describe_alarm: Rule,
    disable: Rule,
    get_mapping: Rule,
    function_configuration: Rule,
    oldest_age: Rule,
    put_event: Rule,
    put_metric: Rule,
}

impl Open {
    fn happy() -> Open {
        Open {
            list: list_mappings(&["Enabled"]),
            queue_url: queue_url(),
            queue_attributes: queue_attributes(),
            get_item: get_item(None),
            acquire: acquire(),
            take_over: take_over(OTHER_EXECUTION),
            release: release_circuit(),
            describe: describe_execution(OTHER_EXECUTION, ExecutionStatus::Running),
            describe_self: describe_execution(EXECUTION, ExecutionStatus::Running),
            describe_alarm: describe_alarm("ALARM", NOW_MS - 10_000),
            disable: disable_mapping(),
            get_mapping: get_mapping(&["Enabled", "Disabling", "Disabled"]),
            function_configuration: function_configuration(),
            oldest_age: oldest_age(&[]),
            put_event: put_event("Circuit Opened"),
            put_metric: put_metric("CircuitOpened"),
        }
    }

    /// The circuit item already there, as every read answers it.
    fn with_item(item: Item) -> Open {
        Open {
            get_item: get_item(Some(item)),
            ..Open::happy()
        }
    }

    fn mocks(&self) -> Mocks {
        Mocks {
            sqs: vec![self.queue_url.clone(), self.queue_attributes.clone()],
            lambda: vec![
                self.list.clone(),
                self.disable.clone(),
                self.get_mapping.clone(),
                self.function_configuration.clone(),
            ],
            cloudwatch: vec![
                self.oldest_age.clone(),
                self.put_metric.clone(),
                self.describe_alarm.clone(),
            ],
            eventbridge: vec![self.put_event.clone()],
            dynamodb: vec![
                self.get_item.clone(),
                self.acquire.clone(),
                self.take_over.clone(),
                self.release.clone(),
            ],
            sfn: vec![self.describe.clone(), self.describe_self.clone()],
        }
    }

    async fn run(&self, event: &Value) -> Result<Circuit, StepError> {
        self.run_with(config(&[]), event).await
    }

    async fn run_with(&self, config: Config, event: &Value) -> Result<Circuit, StepError> {
        let ctx = self.mocks().context(config);
        steps::open(&ctx, event, EXECUTION, 0).await
    }

    #[track_caller]
    fn assert_calls(&self, expected: &[(&str, usize)]) {
        assert_only(
            &[
                ("list", &self.list),
                ("queue_url", &self.queue_url),
                ("queue_attributes", &self.queue_attributes),
                ("get_item", &self.get_item),
                ("acquire", &self.acquire),
                ("take_over", &self.take_over),
                ("release", &self.release),
                ("describe", &self.describe),
                ("describe_self", &self.describe_self),
                ("describe_alarm", &self.describe_alarm),
                ("disable", &self.disable),
                ("get_mapping", &self.get_mapping),
                ("function_configuration", &self.function_configuration),
                ("oldest_age", &self.oldest_age),
                ("put_event", &self.put_event),
                ("put_metric", &self.put_metric),
            ],
            expected,
        );
    }
}

/// Before anything is taken: the execution checked, the mapping found, the queue described,
/// the item read.
const LOOKED: [(&str, usize); 5] = [
    ("describe_self", 1),
    ("list", 1),
    ("queue_url", 1),
    ("queue_attributes", 1),
    ("get_item", 1),
];

/// The calls of an open that disables an Enabled mapping, after `LOOKED`.
fn opened(
    get_item: usize,
    acquire: usize,
    take_over: usize,
    describe: usize,
) -> Vec<(&'static str, usize)> {
    vec![
        // Before anything is taken, and again once the mapping is Disabled.
        ("describe_self", 2),
        ("list", 1),
        ("queue_url", 1),
        ("queue_attributes", 1),
        ("get_item", get_item),
        ("acquire", acquire),
        ("take_over", take_over),
        ("describe", describe),
        ("function_configuration", 1),
        ("oldest_age", 1),
        ("put_event", 1),
        ("put_metric", 1),
    ]
}

fn alarm() -> Value {
    alarm_event(ALARM, "ALARM")
}

#[test]
fn the_alarm_event_entered_alarm_ten_seconds_ago() {
    assert_eq!(controller::core::epoch_ms(ALARM_AT), Some(ALARM_AT_MS));
}

#[tokio::test]
async fn open_disables_the_mapping_and_opens_the_circuit() {
    let (put_event, details) = put_event_where("Circuit Opened", |d| {
        d["mapping"] == UUID
            && d["queue"] == QUEUE_ARN
            && d["function"] == FUNCTION
            && d["execution"] == EXECUTION
            && d["attempt"] == 0
    });
    let open = Open {
        put_event,
        ..Open::happy()
    };

    let circuit = open.run(&alarm()).await.expect("opened");

    let mut calls = opened(1, 1, 0, 0);
    calls.extend([("disable", 1), ("get_mapping", 3)]);
    open.assert_calls(&calls);
    assert_eq!(circuit.status, OpenStatus::Opened);
    assert_eq!(circuit.execution, EXECUTION);
    // The snapshot says the breaker switched an Enabled mapping off: that is all it gives back.
    assert_eq!(circuit.mapping, snapshot("Enabled"));
    assert!(circuit.mapping.changes().enabled);
    assert_eq!(circuit.queue_url, QUEUE_URL);
    assert_eq!(circuit.queue_arn, QUEUE_ARN);
    assert_eq!(circuit.region, REGION);
    assert_eq!(circuit.opened_at_ms, NOW_MS);
    // No datapoint: the oldest message is taken to be as old as the circuit.
    assert_eq!(circuit.oldest_sent_ms, NOW_MS);
    assert_eq!(circuit.retention_seconds, RETENTION_SECONDS);
    // The consumer's 10 s timeout plus the 30 s margin.
    assert_eq!(circuit.probe_visibility_seconds, PROBE_VISIBILITY);
    assert_eq!(circuit.attempt, 0);
    assert!(
        (1..=BACKOFF_BASE).contains(&circuit.wait_seconds),
        "wait_seconds {} outside [1, {BACKOFF_BASE}]",
        circuit.wait_seconds
    );
    assert_eq!(circuit.backoff_ceiling_seconds, BACKOFF_BASE);
    assert_eq!(circuit.next, None);
    assert!(circuit.reason.contains(ALARM) && circuit.reason.contains("Threshold Crossed"));
    // ExecutionStarted, then this Task (5) and the Choice after it (2).
    assert_eq!(circuit.history_events, 1 + 5 + 2);
    let details = details.lock().unwrap();
    assert!(details[0]["reason"]
        .as_str()
        .unwrap()
        .contains("Threshold Crossed"));
}

#[tokio::test]
async fn open_counts_its_failed_attempts_in_the_history() {
    for (retries, events) in [(0, 8), (1, 11), (3, 17)] {
        let open = Open::happy();
        let ctx = open.mocks().context(config(&[]));
        let circuit = steps::open(&ctx, &alarm(), EXECUTION, retries)
            .await
            .expect("opened");
        // Each failed attempt wrote Scheduled, Started and Failed.
        assert_eq!(circuit.history_events, events, "{retries} retries");
    }
}

#[tokio::test]
async fn open_anchors_the_retention_guard_on_the_oldest_message_age() {
    let open = Open {
        oldest_age: oldest_age(&[90.0, 125.4, 30.0]),
        ..Open::happy()
    };
    let circuit = open.run(&alarm()).await.expect("opened");
    assert_eq!(open.oldest_age.num_calls(), 1);
    assert_eq!(circuit.oldest_sent_ms, NOW_MS - 125_000);
}

#[tokio::test]
async fn open_refuses_invalid_events_without_calling_aws() {
    let invalid = [
        alarm_event("someone-elses-alarm", "ALARM"),
        alarm_event(ALARM, "OK"),
        alarm_event(ALARM, "INSUFFICIENT_DATA"),
        json!({}),
        json!({"detail-type": "CloudWatch Alarm State Change", "detail": {"alarmName": ALARM}}),
        json!({"detail-type": "EC2 Instance State-change Notification", "detail": {}}),
        json!("ALARM"),
    ];
    for event in invalid {
        let open = Open::happy();
        let result = open.run(&event).await;
        match &result {
            Err(e @ StepError::InvalidEvent(_)) => assert_eq!(e.name(), "InvalidEvent"),
            other => panic!("{event}: expected InvalidEvent, got {other:?}"),
        }
        open.assert_calls(&[]);
    }
}

#[tokio::test]
async fn open_without_a_mapping_touches_nothing() {
    let open = Open {
        list: list_mappings(&[]),
        ..Open::happy()
    };
    let err = open.run(&alarm()).await.expect_err("no mapping");
    match &err {
        StepError::MappingNotFound { queue, function } => {
            assert_eq!(queue, QUEUE_ARN);
            assert_eq!(function, FUNCTION);
        }
        other => panic!("expected MappingNotFound, got {other:?}"),
    }
    assert_eq!(err.name(), "MappingNotFound");
    open.assert_calls(&[("describe_self", 1), ("list", 1)]);
}

#[tokio::test]
async fn open_with_several_mappings_touches_nothing() {
    let open = Open {
        list: list_mappings(&["Enabled", "Enabled"]),
        ..Open::happy()
    };
    let err = open.run(&alarm()).await.expect_err("two mappings");
    assert!(
        matches!(err, StepError::SeveralMappings { count: 2, .. }),
        "expected SeveralMappings, got {err:?}"
    );
    assert_eq!(err.name(), "SeveralMappings");
    open.assert_calls(&[("describe_self", 1), ("list", 1)]);
}

#[tokio::test]
async fn open_reads_every_page_of_mappings() {
    // The mapping is on the second page.
    let open = Open {
        list: list_mappings_page(None, Some("page-2"), &[]),
        ..Open::happy()
    };
    let second = list_mappings_page(Some("page-2"), None, &["Enabled"]);
    let mut mocks = open.mocks();
    mocks.lambda.push(second.clone());
    let circuit = steps::open(&mocks.context(config(&[])), &alarm(), EXECUTION, 0)
        .await
        .expect("opened");
    assert_eq!(circuit.status, OpenStatus::Opened);
    assert_eq!(second.num_calls(), 1);
    let mut calls = opened(1, 1, 0, 0);
    calls.extend([("disable", 1), ("get_mapping", 3)]);
    open.assert_calls(&calls);

    // One mapping on each page is two mappings.
    let open = Open {
        list: list_mappings_page(None, Some("page-2"), &["Enabled"]),
        ..Open::happy()
    };
    let second = list_mappings_page(Some("page-2"), None, &["Enabled"]);
    let mut mocks = open.mocks();
    mocks.lambda.push(second.clone());
    let err = steps::open(&mocks.context(config(&[])), &alarm(), EXECUTION, 0)
        .await
        .expect_err("two mappings");
    assert!(
        matches!(err, StepError::SeveralMappings { count: 2, .. }),
        "{err:?}"
    );
    assert_eq!(second.num_calls(), 1);
    open.assert_calls(&[("describe_self", 1), ("list", 1)]);
}

#[tokio::test]
async fn open_leaves_a_mapping_disabled_by_an_operator_alone() {
    for state in ["Disabled", "Disabling"] {
        let open = Open {
            list: list_mappings(&[state]),
            ..Open::happy()
        };
        let circuit = open.run(&alarm()).await.expect("not enabled is no error");
        assert_eq!(circuit.status, OpenStatus::MappingNotEnabled, "{state}");
        assert_eq!(circuit.mapping.state, state);
        assert!(!circuit.mapping.changes().enabled);
        // The lock was taken and given back (CLOSED, trip uncounted); the mapping never
        // read again nor updated.
        let mut calls = LOOKED.to_vec();
        calls.extend([("acquire", 1), ("release", 1)]);
        open.assert_calls(&calls);
    }
}

#[tokio::test]
async fn open_waits_for_a_mapping_that_is_being_updated_or_enabled() {
    for state in ["Updating", "Enabling", "Creating"] {
        let open = Open {
            list: list_mappings(&[state]),
            ..Open::happy()
        };
        let err = open.run(&alarm()).await.expect_err("not settled yet");
        match &err {
            StepError::MappingNotSettled { wanted, actual, .. } => {
                assert_eq!((wanted.as_str(), actual.as_str()), ("Enabled", state));
            }
            other => panic!("expected MappingNotSettled, got {other:?}"),
        }
        // Retried by the state machine; nothing taken or touched meanwhile.
        open.assert_calls(&[("describe_self", 1), ("list", 1)]);
    }
}

#[tokio::test]
async fn open_retried_after_disabling_carries_on_with_its_own_snapshot() {
    // The first attempt took the circuit and disabled the mapping, then failed; the retry
    // finds the mapping Disabled and the store naming this execution with the Enabled snapshot.
    let open = Open {
        list: list_mappings(&["Disabled"]),
        acquire: acquire_held(),
        get_mapping: get_mapping(&["Disabled"]),
        ..Open::with_item(item("OPEN", EXECUTION))
    };
    let circuit = open.run(&alarm()).await.expect("opened");
    assert_eq!(circuit.status, OpenStatus::Opened);
    assert_eq!(circuit.mapping, snapshot("Enabled"));
    assert_eq!(circuit.probe_visibility_seconds, PROBE_VISIBILITY);
    // Already Disabled: read once, not updated again.
    let mut calls = opened(2, 1, 0, 0);
    calls.push(("get_mapping", 1));
    open.assert_calls(&calls);
}

#[tokio::test]
async fn open_retried_while_the_mapping_is_still_disabling_does_not_update_it_again() {
    // The first attempt disabled the mapping but gave up waiting (MappingNotSettled, which is
    // retried). Lambda refuses to update a mapping in a transitional state, so the retry must
    // only wait.
    let open = Open {
        list: list_mappings(&["Disabling"]),
        acquire: acquire_held(),
        disable: disable_mapping_fails(resource_in_use),
        get_mapping: get_mapping(&["Disabling", "Disabling", "Disabled"]),
        ..Open::with_item(item("OPEN", EXECUTION))
    };
    let circuit = open.run(&alarm()).await.expect("opened");
    assert_eq!(circuit.status, OpenStatus::Opened);
    let mut calls = opened(2, 1, 0, 0);
    calls.push(("get_mapping", 3));
    open.assert_calls(&calls);
}

#[tokio::test]
async fn open_fails_when_the_mapping_does_not_settle() {
    let open = Open {
        list: list_mappings(&["Disabling"]),
        acquire: acquire_held(),
        get_mapping: get_mapping(&["Disabling"]),
        ..Open::with_item(item("OPEN", EXECUTION))
    };
    let err = open
        .run_with(config(&[("SETTLE_TIMEOUT_SECONDS", "0")]), &alarm())
        .await
        .expect_err("not settled");
    match &err {
        StepError::MappingNotSettled {
            mapping,
            wanted,
            actual,
            seconds,
        } => {
            assert_eq!(mapping, UUID);
            assert_eq!(wanted, "Disabled");
            assert_eq!(actual, "Disabling");
            assert_eq!(*seconds, 0);
        }
        other => panic!("expected MappingNotSettled, got {other:?}"),
    }
    assert_eq!(err.name(), "MappingNotSettled");
    let mut calls = LOOKED.to_vec();
    calls.extend([("get_item", 2), ("acquire", 1), ("get_mapping", 1)]);
    open.assert_calls(&calls);
}

#[tokio::test]
async fn open_reports_throttling_as_transient() {
    let open = Open {
        disable: disable_mapping_fails(|| {
            UpdateEventSourceMappingError::TooManyRequestsException(
                TooManyRequestsException::builder()
                    .message("Rate exceeded")
                    .meta(too_many_requests_meta())
                    .build(),
            )
        }),
        ..Open::happy()
    };
    let err = open.run(&alarm()).await.expect_err("throttled");
    assert_eq!(err.name(), "Transient");
    match &err {
        StepError::Transient { operation, .. } => assert_eq!(operation, "UpdateEventSourceMapping"),
        other => panic!("expected Transient, got {other:?}"),
    }
    // Retries are off: one call, then the step fails (Step Functions retries it).
    let mut calls = LOOKED.to_vec();
    calls.extend([("acquire", 1), ("get_mapping", 1), ("disable", 1)]);
    open.assert_calls(&calls);
}

#[tokio::test]
async fn open_reports_access_denied_as_an_aws_error() {
    let open = Open {
        disable: disable_mapping_fails(|| {
            UpdateEventSourceMappingError::generic(
                aws_sdk_lambda::error::ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message("no")
                    .build(),
            )
        }),
        ..Open::happy()
    };
    let err = open.run(&alarm()).await.expect_err("denied");
    assert_eq!(err.name(), "AwsError");
    match &err {
        StepError::Aws { operation, message } => {
            assert_eq!(operation, "UpdateEventSourceMapping");
            assert!(message.contains("AccessDeniedException"), "{message}");
        }
        other => panic!("expected Aws, got {other:?}"),
    }
    let mut calls = LOOKED.to_vec();
    calls.extend([("acquire", 1), ("get_mapping", 1), ("disable", 1)]);
    open.assert_calls(&calls);
}

// ---------------------------------------------------------------------------------------------
// Someone holds the circuit

#[tokio::test]
async fn open_when_another_running_execution_owns_the_circuit_does_nothing() {
    let open = Open {
        list: list_mappings(&["Disabled"]),
        acquire: acquire_held(),
        ..Open::with_item(item("OPEN", OTHER_EXECUTION))
    };
    let circuit = open.run(&alarm()).await.expect("already open is no error");
    assert_eq!(circuit.status, OpenStatus::AlreadyOpen);
    assert!(
        circuit.reason.contains(OTHER_EXECUTION),
        "{}",
        circuit.reason
    );
    // The owner's execution was asked about; the mapping was not touched.
    let mut calls = LOOKED.to_vec();
    calls.extend([("get_item", 2), ("acquire", 1), ("describe", 1)]);
    open.assert_calls(&calls);
}

#[tokio::test]
async fn open_takes_over_a_circuit_whose_execution_ended() {
    // The owner was stopped by an operator, or ran out, or Step Functions forgot it: its
    // circuit would strand the consumer, so the new execution carries it on.
    for describe in [
        describe_execution(OTHER_EXECUTION, ExecutionStatus::Aborted),
        describe_execution(OTHER_EXECUTION, ExecutionStatus::Failed),
        describe_execution(OTHER_EXECUTION, ExecutionStatus::TimedOut),
        execution_does_not_exist(OTHER_EXECUTION),
    ] {
        let (put_event, details) = put_event_where("Circuit Opened", |d| {
            d["mapping"] == UUID && d["execution"] == EXECUTION
        });
        let open = Open {
            list: list_mappings(&["Disabled"]),
            acquire: acquire_held(),
            describe,
            // The dead owner had switched it off.
            get_mapping: get_mapping(&["Disabled"]),
            put_event,
            ..Open::with_item(item("OPEN", OTHER_EXECUTION))
        };

        let circuit = open.run(&alarm()).await.expect("taken over");

        assert_eq!(circuit.status, OpenStatus::Opened);
        assert_eq!(circuit.execution, EXECUTION);
        // The snapshot the first owner took, not the Disabled mapping found now: ending the
        // circuit gives Enabled back.
        assert_eq!(circuit.mapping, snapshot("Enabled"));
        assert!(circuit.mapping.changes().enabled);
        // The item read before acquiring, and after the refused acquire; the snapshot comes
        // from that read.
        let mut calls = opened(2, 1, 1, 1);
        calls.push(("get_mapping", 1));
        open.assert_calls(&calls);
        assert_eq!(details.lock().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn open_that_loses_the_take_over_race_does_nothing() {
    let open = Open {
        list: list_mappings(&["Disabled"]),
        acquire: acquire_held(),
        describe: describe_execution(OTHER_EXECUTION, ExecutionStatus::Aborted),
        take_over: take_over_lost(OTHER_EXECUTION),
        ..Open::with_item(item("OPEN", OTHER_EXECUTION))
    };
    let circuit = open.run(&alarm()).await.expect("already open is no error");
    assert_eq!(circuit.status, OpenStatus::AlreadyOpen);
    let mut calls = LOOKED.to_vec();
    calls.extend([
        ("get_item", 2),
        ("acquire", 1),
        ("describe", 1),
        ("take_over", 1),
    ]);
    open.assert_calls(&calls);
}

#[tokio::test]
async fn open_leaves_a_given_up_circuit_to_its_operator() {
    // GAVE_UP (the leave-open policy) keeps the consumer off until a person acts, whatever
    // became of the execution that gave up: its execution is not even asked about.
    let open = Open {
        list: list_mappings(&["Disabled"]),
        acquire: acquire_held(),
        ..Open::with_item(item("GAVE_UP", OTHER_EXECUTION))
    };
    let circuit = open.run(&alarm()).await.expect("already open is no error");
    assert_eq!(circuit.status, OpenStatus::AlreadyOpen);
    assert!(circuit.reason.contains("GAVE_UP"), "{}", circuit.reason);
    let mut calls = LOOKED.to_vec();
    calls.extend([("get_item", 2), ("acquire", 1)]);
    open.assert_calls(&calls);
}

// ---------------------------------------------------------------------------------------------
// Stale alarms and the cooldown

#[tokio::test]
async fn open_ignores_an_alarm_from_before_the_last_close() {
    // The alarm entered ALARM ten seconds ago; the circuit closed five seconds ago.
    let without_timestamp = {
        let mut event = alarm();
        event["detail"]["state"]
            .as_object_mut()
            .unwrap()
            .remove("timestamp");
        event
    };
    for event in [alarm(), without_timestamp] {
        let open = Open::with_item(Item {
            since_ms: NOW_MS - 5_000,
            ..item("CLOSED", OTHER_EXECUTION)
        });
        let circuit = open.run(&event).await.expect("stale is no error");
        assert_eq!(circuit.status, OpenStatus::Stale);
        assert!(circuit.reason.contains("before"), "{}", circuit.reason);
        // Nothing taken, nothing touched, nothing announced.
        open.assert_calls(&LOOKED);
    }
}

#[tokio::test]
async fn open_after_a_close_opens_again_and_records_the_openings_of_the_hour() {
    // Closed a minute ago, before the alarm entered ALARM: not stale.
    // One opening twenty minutes ago counts; one two hours ago has left the hour.
    let open = Open {
        acquire: acquire_recording(&format!("{},{NOW_MS}", NOW_MS - 1_200_000)),
        ..Open::with_item(Item {
            recent_opens: vec![NOW_MS - 7_200_000, NOW_MS - 1_200_000],
            ..item("CLOSED", OTHER_EXECUTION)
        })
    };
    let circuit = open.run(&alarm()).await.expect("opened");
    assert_eq!(circuit.status, OpenStatus::Opened);
    let mut calls = opened(1, 1, 0, 0);
    calls.extend([("disable", 1), ("get_mapping", 3)]);
    open.assert_calls(&calls);
}

/// The alarm event of a CloudWatch evaluation listing `evaluated` datapoints (period start in
/// epoch ms, value): the template's alarm, Sum per 60 s against 1.0.
fn evaluated_alarm(evaluated: &[(u64, f64)]) -> Value {
    let points: Vec<Value> = evaluated
        .iter()
        .map(|&(start, value)| {
            let at = aws_smithy_types::DateTime::from_millis(start as i64)
                .fmt(aws_smithy_types::date_time::Format::DateTime)
                .expect("a time");
            json!({"timestamp": at, "sampleCount": 1.0, "value": value})
        })
        .collect();
    let mut event = alarm();
    event["detail"]["state"]["reasonData"] = json!(json!({
        "version": "1.0",
        "statistic": "Sum",
        "period": 60,
        "threshold": 1.0,
        "evaluatedDatapoints": points,
    })
    .to_string());
    event
}

/// The start of the minute that holds `ms`.
fn minute(ms: u64) -> u64 {
    ms / 60_000 * 60_000
}

#[tokio::test]
async fn an_alarm_on_the_last_outage_s_old_errors_opens_no_circuit_and_re_arms_later() {
    // Closed a minute ago (see `item`); CloudWatch re-evaluated the re-armed alarm over a
    // window whose breaching periods all began before the close.
    let closed = NOW_MS - 60_000;
    let event = evaluated_alarm(&[
        (minute(closed) - 60_000, 5.0),
        (minute(closed), 2.0),
        (minute(closed) + 60_000, 0.0),
    ]);
    let open = Open::with_item(item("CLOSED", OTHER_EXECUTION));
    let circuit = open.run(&event).await.expect("an echo is no error");
    assert_eq!(circuit.status, OpenStatus::PastOutage);
    // The first whole minute after the close ends the old data; three periods and one to
    // evaluate later, the window holds none of it.
    let clear = minute(closed) + 60_000 + 4 * 60_000;
    assert_eq!(
        u64::from(circuit.wait_seconds),
        (clear - NOW_MS).div_ceil(1000)
    );
    assert!(
        circuit.reason.contains("predates the circuit's close"),
        "{}",
        circuit.reason
    );
    // Nothing taken, the mapping not touched, nothing announced.
    let mut calls = LOOKED.to_vec();
    calls.push(("describe_alarm", 1));
    open.assert_calls(&calls);
}

#[tokio::test]
async fn a_new_outage_right_after_a_close_opens_the_circuit() {
    // The period after the close breaches: the consumer fails again.
    let closed = NOW_MS - 60_000;
    let event = evaluated_alarm(&[(minute(closed), 2.0), (minute(closed) + 60_000, 3.0)]);
    let open = Open::with_item(item("CLOSED", OTHER_EXECUTION));
    let circuit = open.run(&event).await.expect("opened");
    assert_eq!(circuit.status, OpenStatus::Opened);
    let mut calls = opened(1, 1, 0, 0);
    calls.extend([("disable", 1), ("get_mapping", 3), ("describe_alarm", 1)]);
    open.assert_calls(&calls);
}

#[tokio::test]
async fn an_alarm_set_by_hand_or_long_after_the_close_is_not_re_evaluated() {
    // SetAlarmState gives no evaluated datapoints; an hour after the close the window holds
    // nothing from before it.
    let long_ago = Item {
        since_ms: NOW_MS - 3_600_000,
        ..item("CLOSED", OTHER_EXECUTION)
    };
    let echo = evaluated_alarm(&[(minute(NOW_MS) - 120_000, 5.0)]);
    // By hand: not even the alarm is read. Long after: its window is, to know that.
    for (item, event, reads) in [
        (item("CLOSED", OTHER_EXECUTION), alarm(), 0),
        (long_ago, echo, 1),
    ] {
        let open = Open::with_item(item);
        let circuit = open.run(&event).await.expect("opened");
        assert_eq!(circuit.status, OpenStatus::Opened);
        assert_eq!(open.describe_alarm.num_calls(), reads);
    }
}

/// Six openings in the last hour, the oldest 50 minutes ago.
fn six_recent_opens() -> Vec<u64> {
    (0..6).map(|i| NOW_MS - 3_000_000 + i * 500_000).collect()
}

#[tokio::test]
async fn open_cools_down_after_too_many_circuits_in_an_hour() {
    let (put_event, details) = put_event_where("Circuit Gave Up", |d| {
        d["mapping"] == UUID && d["execution"] == EXECUTION
    });
    let open = Open {
        put_event,
        put_metric: put_metric("CircuitGaveUp"),
        ..Open::with_item(Item {
            recent_opens: six_recent_opens(),
            ..item("CLOSED", OTHER_EXECUTION)
        })
    };

    let circuit = open.run(&alarm()).await.expect("cooling down is no error");

    assert_eq!(circuit.status, OpenStatus::CoolingDown);
    // The oldest opening leaves the hour in ten minutes.
    assert_eq!(circuit.wait_seconds, 600);
    assert!(
        circuit.reason.contains("6 circuits") && circuit.reason.contains("600s"),
        "{}",
        circuit.reason
    );
    // One alert; nothing taken, the mapping not touched.
    let mut calls = LOOKED.to_vec();
    calls.extend([("put_event", 1), ("put_metric", 1)]);
    open.assert_calls(&calls);
    assert_eq!(details.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_cooldown_follows_max_circuits_per_hour() {
    let opens: Vec<String> = six_recent_opens()
        .iter()
        .chain([NOW_MS].iter())
        .map(u64::to_string)
        .collect();
    // No bound, and a bound above the count: the circuit opens.
    for max in ["0", "7"] {
        let open = Open {
            acquire: acquire_recording(&opens.join(",")),
            ..Open::with_item(Item {
                recent_opens: six_recent_opens(),
                ..item("CLOSED", OTHER_EXECUTION)
            })
        };
        let circuit = open
            .run_with(config(&[("MAX_CIRCUITS_PER_HOUR", max)]), &alarm())
            .await
            .expect("opened");
        assert_eq!(circuit.status, OpenStatus::Opened, "max {max}");
    }
    // A bound of 3: the fourth oldest opening (25 minutes ago) must leave the hour first.
    let open = Open {
        put_event: put_event("Circuit Gave Up"),
        put_metric: put_metric("CircuitGaveUp"),
        ..Open::with_item(Item {
            recent_opens: six_recent_opens(),
            ..item("CLOSED", OTHER_EXECUTION)
        })
    };
    let circuit = open
        .run_with(config(&[("MAX_CIRCUITS_PER_HOUR", "3")]), &alarm())
        .await
        .expect("cooling down");
    assert_eq!(circuit.status, OpenStatus::CoolingDown);
    assert_eq!(circuit.wait_seconds, 2_100);
}

#[tokio::test]
async fn open_retried_by_its_owner_is_neither_stale_nor_cooling_down() {
    // The circuit is this execution's (its first attempt took it just now): the checks for a
    // new circuit do not apply to it.
    let open = Open {
        list: list_mappings(&["Disabled"]),
        acquire: acquire_held(),
        get_mapping: get_mapping(&["Disabled"]),
        ..Open::with_item(Item {
            since_ms: NOW_MS - 1_000,
            recent_opens: six_recent_opens(),
            ..item("OPEN", EXECUTION)
        })
    };
    let circuit = open.run(&alarm()).await.expect("opened");
    assert_eq!(circuit.status, OpenStatus::Opened);
}

// ---------------------------------------------------------------------------------------------
// The trust boundary: who may open a circuit, with what event

#[tokio::test]
async fn open_refuses_a_step_from_anything_but_a_running_execution_of_the_breaker() {
    // The controller can be invoked by anyone allowed to: a forged open names an execution
    // of another state machine (nothing is asked), or one of ours that is not running.
    let foreign = "arn:aws:states:us-east-1:123456789012:execution:someone-elses:run-1";
    let open = Open::happy();
    let ctx = open.mocks().context(config(&[]));
    let refused = steps::open(&ctx, &alarm(), foreign, 0).await;
    assert!(
        matches!(refused, Err(StepError::InvalidEvent(_))),
        "{refused:?}"
    );
    open.assert_calls(&[]);

    for describe_self in [
        describe_execution(EXECUTION, ExecutionStatus::Succeeded),
        execution_does_not_exist(EXECUTION),
    ] {
        let open = Open {
            describe_self,
            ..Open::happy()
        };
        let refused = open.run(&alarm()).await;
        assert!(
            matches!(refused, Err(StepError::InvalidEvent(_))),
            "{refused:?}"
        );
        // Asked about itself, then nothing: no mapping read, nothing taken or touched.
        open.assert_calls(&[("describe_self", 1)]);
    }
}

#[tokio::test]
async fn open_refuses_events_of_another_account_region_alarm_or_source_without_a_call() {
    let mut cases = Vec::new();
    for (field, value) in [
        ("source", json!("my.app")),
        ("account", json!("999999999999")),
        ("region", json!("eu-west-1")),
        (
            "resources",
            json!(["arn:aws:cloudwatch:us-east-1:123456789012:alarm:other"]),
        ),
    ] {
        let mut event = alarm();
        event[field] = value;
        cases.push(event);
    }
    for event in cases {
        let open = Open::happy();
        let refused = open.run(&event).await;
        assert!(
            matches!(refused, Err(StepError::InvalidEvent(_))),
            "{refused:?}"
        );
        open.assert_calls(&[]);
    }
}

/// The alarm event, as if it had entered ALARM `ago_ms` before the fixed clock.
fn alarm_from(ago_ms: u64) -> Value {
    let mut event = alarm();
    let at = NOW_MS - ago_ms;
    let (secs, millis) = (at / 1000, at % 1000);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since the epoch to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let stamp = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}+0000",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    );
    assert_eq!(controller::core::epoch_ms(&stamp), Some(at), "{stamp}");
    event["detail"]["state"]["timestamp"] = json!(stamp);
    event
}

#[tokio::test]
async fn open_takes_a_late_alarm_only_while_the_alarm_still_holds_it() {
    let twenty_minutes = 20 * 60 * 1000;
    // Delivered twenty minutes late, and the alarm went back to OK since: the outage is over.
    let open = Open {
        describe_alarm: describe_alarm("OK", NOW_MS - 60_000),
        ..Open::happy()
    };
    let circuit = open
        .run(&alarm_from(twenty_minutes))
        .await
        .expect("stale is no error");
    assert_eq!(circuit.status, OpenStatus::Stale);
    assert!(circuit.reason.contains("is OK"), "{}", circuit.reason);
    let mut looked = LOOKED.to_vec();
    looked.push(("describe_alarm", 1));
    open.assert_calls(&looked);

    // Twenty minutes late, but the alarm is still in that same ALARM: the outage goes on.
    let open = Open {
        describe_alarm: describe_alarm("ALARM", NOW_MS - twenty_minutes),
        ..Open::happy()
    };
    let circuit = open.run(&alarm_from(twenty_minutes)).await.expect("opened");
    assert_eq!(circuit.status, OpenStatus::Opened);

    // A fresh alarm is taken as it is: the alarm is not even read.
    let open = Open::happy();
    let circuit = open.run(&alarm_from(60_000)).await.expect("opened");
    assert_eq!(circuit.status, OpenStatus::Opened);
    assert_eq!(open.describe_alarm.num_calls(), 0);
}

// ---------------------------------------------------------------------------------------------
// An operator's open (`sqs-circuit-breaker open`)

fn by_hand(hold: bool) -> Value {
    json!({"operator": {"reason": "database maintenance", "hold": hold}})
}

#[tokio::test]
async fn an_operator_opens_the_circuit_even_right_after_a_close_and_past_the_hourly_bound() {
    // Closed five seconds ago, six circuits this hour: an alarm would be stale and cool down;
    // an operator's decision is neither.
    let opens: Vec<String> = six_recent_opens()
        .iter()
        .chain([NOW_MS].iter())
        .map(u64::to_string)
        .collect();
    let open = Open {
        acquire: acquire_recording(&opens.join(",")),
        ..Open::with_item(Item {
            since_ms: NOW_MS - 5_000,
            recent_opens: six_recent_opens(),
            ..item("CLOSED", OTHER_EXECUTION)
        })
    };
    let circuit = open.run(&by_hand(false)).await.expect("opened");
    assert_eq!(circuit.status, OpenStatus::Opened);
    assert_eq!(circuit.reason, "opened by hand: database maintenance");
    let mut calls = opened(1, 1, 0, 0);
    calls.extend([("disable", 1), ("get_mapping", 3)]);
    open.assert_calls(&calls);
    // It probes like any circuit.
    assert!((1..=BACKOFF_BASE).contains(&circuit.wait_seconds));
}

#[tokio::test]
async fn an_operator_s_hold_opens_the_circuit_to_stay_open_without_probing() {
    let open = Open::happy();
    let circuit = open.run(&by_hand(true)).await.expect("opened");
    assert_eq!(circuit.status, OpenStatus::Held);
    assert_eq!(
        circuit.wait_seconds,
        controller::core::operator::HOLD_SECONDS
    );
    assert!(open.disable.num_calls() == 1, "the mapping is disabled");
}

#[tokio::test]
async fn a_malformed_operator_request_is_an_invalid_event_and_touches_nothing() {
    for event in [
        json!({"operator": {"reason": ""}}),
        json!({"operator": {"hold": true}}),
        json!({"operator": "open"}),
    ] {
        let open = Open::happy();
        let result = open.run(&event).await;
        assert!(
            matches!(&result, Err(StepError::InvalidEvent(_))),
            "{event}: {result:?}"
        );
        open.assert_calls(&[]);
    }
}

/// DescribeAlarms of `child`: a metric-math alarm (period 60, 3 periods, ≥ 20) in ALARM since
/// `since_ms`, whose last evaluation listed `points`.
fn describe_child(child: &'static str, since_ms: u64, points: &[(u64, f64)]) -> Rule {
    use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
    use aws_sdk_cloudwatch::types::{
        ComparisonOperator, Metric, MetricAlarm, MetricDataQuery, MetricStat, StateValue,
    };
    let reason_data = json!({
        "version": "1.0",
        "evaluatedDatapoints": points
            .iter()
            .map(|&(ms, value)| json!({
                "timestamp": chrono_like(ms),
                "value": value,
            }))
            .collect::<Vec<_>>(),
    })
    .to_string();
    mock!(aws_sdk_cloudwatch::Client::describe_alarms)
        .match_requests(move |r| r.alarm_names() == [child.to_string()])
        .then_output(move || {
            DescribeAlarmsOutput::builder()
                .metric_alarms(
                    MetricAlarm::builder()
                        .alarm_name(child)
                        .metrics(
                            MetricDataQuery::builder()
                                .id("received")
                                .metric_stat(
                                    MetricStat::builder()
                                        .metric(Metric::builder().namespace("AWS/SQS").build())
                                        .period(60)
                                        .stat("Sum")
                                        .build(),
                                )
                                .return_data(false)
                                .build(),
                        )
                        .metrics(
                            MetricDataQuery::builder()
                                .id("failed_share")
                                .expression("IF(received >= 10, 100 * (received - FILL(deleted, 0)) / received, 0)")
                                .return_data(true)
                                .build(),
                        )
                        .evaluation_periods(3)
                        .threshold(20.0)
                        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
                        .state_value(StateValue::Alarm)
                        .state_reason_data(reason_data.clone())
                        .state_updated_timestamp(aws_smithy_types::DateTime::from_millis(
                            since_ms as i64,
                        ))
                        .build(),
                )
                .build()
        })
}

/// `2026-05-28T20:26:00.000+0000` for an epoch ms.
fn chrono_like(ms: u64) -> String {
    aws_smithy_types::DateTime::from_millis(ms as i64)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .expect("a date")
}

/// The composite's ALARM, triggered by `child`.
fn composite_alarm(child: &str) -> Value {
    let mut event = alarm();
    event["detail"]["state"]["reasonData"] = json!(json!({
        "triggeringAlarms": [{
            "arn": format!("arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{child}"),
            "state": {"value": "ALARM", "timestamp": ALARM_AT}
        }]
    })
    .to_string());
    event["detail"]["configuration"] = json!({"alarmRule": format!("ALARM(\"{child}\")")});
    event
}

#[tokio::test]
async fn a_composite_on_its_children_s_old_datapoints_opens_no_circuit() {
    // Closed a minute ago; the child that triggered the composite breached only in periods
    // that began before the close.
    let closed = NOW_MS - 60_000;
    let open = Open {
        describe_alarm: describe_child(
            "orders-consumer-failed-records",
            ALARM_AT_MS,
            &[
                (minute(closed) - 60_000, 100.0),
                (minute(closed), 60.0),
                (minute(closed) + 60_000, 0.0),
            ],
        ),
        ..Open::with_item(item("CLOSED", OTHER_EXECUTION))
    };
    let circuit = open
        .run(&composite_alarm("orders-consumer-failed-records"))
        .await
        .expect("an echo is no error");
    assert_eq!(circuit.status, OpenStatus::PastOutage);
    assert!(circuit.reason.contains("predates"), "{}", circuit.reason);
}

#[tokio::test]
async fn a_composite_whose_child_breached_after_the_close_opens_a_re_trip() {
    let closed = NOW_MS - 60_000;
    let open = Open {
        describe_alarm: describe_child(
            "orders-consumer-stalled",
            ALARM_AT_MS,
            &[(minute(closed), 1.0), (minute(closed) + 60_000, 1.0)],
        ),
        ..Open::with_item(item("CLOSED", OTHER_EXECUTION))
    };
    let circuit = open
        .run(&composite_alarm("orders-consumer-stalled"))
        .await
        .expect("opened");
    assert_eq!(circuit.status, OpenStatus::Opened);
    // A minute after the last close: a re-trip, whose first healthy probe would show an
    // alarm that does not clear with the consumer.
    assert!(circuit.retrip);
}
