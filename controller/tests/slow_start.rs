//! The half-open circuit against mocked AWS clients: StartSlowStart records the cap it is
//! about to set before setting it, then enables; RampUp raises, finishes, reopens on errors
//! and keeps a cap someone else set; every ending gives the original cap back only while
//! the mapping still has the breaker's value.

use crate::support;

use aws_sdk_cloudwatch::operation::get_metric_statistics::GetMetricStatisticsOutput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
use aws_sdk_lambda::operation::get_event_source_mapping::GetEventSourceMappingOutput;
use aws_sdk_lambda::operation::update_event_source_mapping::{
    UpdateEventSourceMappingInput, UpdateEventSourceMappingOutput,
};
use aws_smithy_mocks::{mock, Rule};
use controller::circuit::{Changed, Circuit, MappingSnapshot};
use controller::core::slow_start::{ConcurrencyChange, Ramp};
use controller::core::Next;
use controller::steps;
use std::sync::{Arc, Mutex};
use support::*;

/// GetEventSourceMapping of the consumer's mapping: `state` and `cap`, then each reading in
/// turn, the last one from then on.
fn get_capped(readings: &[(&'static str, Option<i32>)]) -> Rule {
    let mut sequence = mock!(aws_sdk_lambda::Client::get_event_source_mapping)
        .match_requests(|r| r.uuid() == Some(UUID))
        .sequence();
    for &(state, cap) in readings {
        sequence = sequence.output(move || {
            let mut out = GetEventSourceMappingOutput::builder()
                .uuid(UUID)
                .function_arn(FUNCTION_ARN)
                .event_source_arn(QUEUE_ARN)
                .state(state)
                .batch_size(10);
            if let Some(cap) = cap {
                out = out.scaling_config(
                    aws_sdk_lambda::types::ScalingConfig::builder()
                        .maximum_concurrency(cap)
                        .build(),
                );
            }
            out.build()
        });
    }
    sequence.repeatedly().build()
}

/// Every UpdateEventSourceMapping, recorded as `enabled=..` or `cap=..`.
fn updates() -> (Rule, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let keep = seen.clone();
    let rule = mock!(aws_sdk_lambda::Client::update_event_source_mapping)
        .match_requests(move |r: &UpdateEventSourceMappingInput| {
            let entry = match (r.enabled(), r.scaling_config()) {
                (Some(enabled), None) => format!("enabled={enabled}"),
                (None, Some(scaling)) => format!("cap={:?}", scaling.maximum_concurrency()),
                _ => format!("unexpected update {r:?}"),
            };
            keep.lock().unwrap().push(entry);
            r.uuid() == Some(UUID)
        })
        .then_output(|| UpdateEventSourceMappingOutput::builder().uuid(UUID).build());
    (rule, seen)
}

/// The owner's snapshot writes, as the recorded cap change.
fn record_changes() -> (Rule, Arc<Mutex<Vec<Option<ConcurrencyChange>>>>) {
    let seen: Arc<Mutex<Vec<Option<ConcurrencyChange>>>> = Arc::default();
    let keep = seen.clone();
    let rule = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| {
            let ours = r.update_expression() == Some("SET mapping_snapshot = :snapshot")
                && r.condition_expression() == Some("#owner = :me AND #state = :open");
            if ours {
                let stored = r
                    .expression_attribute_values()
                    .and_then(|v| v.get(":snapshot"))
                    .and_then(|v| v.as_s().ok())
                    .expect("a snapshot");
                let snapshot: MappingSnapshot = serde_json::from_str(stored).expect("json");
                keep.lock()
                    .unwrap()
                    .push(snapshot.changes().maximum_concurrency);
            }
            ours
        })
        .then_output(|| UpdateItemOutput::builder().build());
    (rule, seen)
}

/// The consumer's Errors since the ramp's first minute: `sum`.
fn errors(sum: f64) -> Rule {
    mock!(aws_sdk_cloudwatch::Client::get_metric_statistics)
        .match_requests(|r| {
            r.namespace() == Some("AWS/Lambda")
                && r.metric_name() == Some("Errors")
                && r.dimensions().first().and_then(|d| d.value()) == Some(FUNCTION)
        })
        .then_output(move || {
            GetMetricStatisticsOutput::builder()
                .datapoints(
                    aws_sdk_cloudwatch::types::Datapoint::builder()
                        .sum(sum)
                        .build(),
                )
                .build()
        })
}

fn open_item(change: Option<ConcurrencyChange>) -> Item {
    let mut item = item("OPEN", EXECUTION);
    item.snapshot = Some(MappingSnapshot {
        changed: Some(Changed {
            enabled: true,
            maximum_concurrency: change,
        }),
        ..snapshot("Enabled")
    });
    item
}

fn ramping(original: Option<u32>, level: u32) -> Circuit {
    Circuit {
        next: Some(Next::Ramp),
        slow_start: Some(Ramp {
            start: 2,
            original,
            level,
            started_at_ms: NOW_MS - 10_000,
            errors_baseline: 2,
            records_baseline: None,
        }),
        ..circuit()
    }
}

#[tokio::test]
async fn start_records_the_original_cap_then_caps_at_two_and_enables() {
    let (update, seen) = updates();
    let (record, recorded) = record_changes();
    let mocks = Mocks {
        lambda: vec![
            update,
            get_capped(&[
                ("Disabled", Some(10)),
                ("Disabled", Some(10)),
                ("Disabled", Some(2)),
                ("Disabled", Some(2)),
                ("Enabled", Some(2)),
            ]),
        ],
        dynamodb: vec![get_item(Some(open_item(None))), record],
        cloudwatch: vec![errors(2.0)],
        ..Mocks::default()
    };
    let ctx = mocks.context(config(&[("SLOW_START_SECONDS", "60")]));

    let circuit = steps::start_slow_start(&ctx, circuit(), 0)
        .await
        .expect("started");

    assert_eq!(
        *recorded.lock().unwrap(),
        [Some(ConcurrencyChange {
            original: Some(10),
            set: 2,
            previous: None
        })]
    );
    assert_eq!(*seen.lock().unwrap(), ["cap=Some(2)", "enabled=true"]);
    assert_eq!(circuit.next, Some(Next::Ramp));
    assert_eq!(circuit.wait_seconds, 20, "levels 2, 4, 8 share 60 s");
    assert_eq!(
        circuit.slow_start,
        Some(Ramp {
            start: 2,
            original: Some(10),
            level: 2,
            started_at_ms: NOW_MS,
            errors_baseline: 2,
            records_baseline: None,
        })
    );
}

#[tokio::test]
async fn after_a_reopen_a_cap_someone_set_meanwhile_becomes_the_one_to_give_back() {
    // The first ramp recorded the mapping's own 10 and set 8; while the circuit was open
    // again, its owners set 50.
    let first = ConcurrencyChange {
        original: Some(10),
        set: 8,
        previous: Some(4),
    };
    let (update, _) = updates();
    let (record, recorded) = record_changes();
    let mocks = Mocks {
        lambda: vec![
            update,
            get_capped(&[
                ("Disabled", Some(50)),
                ("Disabled", Some(50)),
                ("Disabled", Some(2)),
                ("Disabled", Some(2)),
                ("Enabled", Some(2)),
            ]),
        ],
        dynamodb: vec![get_item(Some(open_item(Some(first)))), record],
        cloudwatch: vec![errors(0.0)],
        ..Mocks::default()
    };
    let ctx = mocks.context(config(&[("SLOW_START_SECONDS", "60")]));

    steps::start_slow_start(&ctx, circuit(), 0)
        .await
        .expect("started");

    assert_eq!(
        *recorded.lock().unwrap(),
        [Some(ConcurrencyChange {
            original: Some(50),
            set: 2,
            previous: None
        })]
    );
}

#[tokio::test]
async fn a_retried_start_keeps_the_original_it_recorded() {
    // The first attempt recorded 10 and set 2, then failed.
    let first = ConcurrencyChange {
        original: Some(10),
        set: 2,
        previous: None,
    };
    let (update, seen) = updates();
    let (record, recorded) = record_changes();
    let mocks = Mocks {
        lambda: vec![
            update,
            get_capped(&[
                ("Disabled", Some(2)),
                ("Disabled", Some(2)),
                ("Disabled", Some(2)),
                ("Enabled", Some(2)),
            ]),
        ],
        dynamodb: vec![get_item(Some(open_item(Some(first)))), record],
        cloudwatch: vec![errors(0.0)],
        ..Mocks::default()
    };
    let ctx = mocks.context(config(&[("SLOW_START_SECONDS", "60")]));

    let circuit = steps::start_slow_start(&ctx, circuit(), 1)
        .await
        .expect("started");

    assert_eq!(
        *recorded.lock().unwrap(),
        [Some(ConcurrencyChange {
            original: Some(10),
            set: 2,
            previous: Some(2)
        })]
    );
    assert_eq!(*seen.lock().unwrap(), ["enabled=true"]);
    assert_eq!(circuit.slow_start.map(|r| r.original), Some(Some(10)));
}

#[tokio::test]
async fn a_provisioned_mapping_is_left_alone() {
    let provisioned = mock!(aws_sdk_lambda::Client::get_event_source_mapping)
        .match_requests(|r| r.uuid() == Some(UUID))
        .then_output(|| {
            GetEventSourceMappingOutput::builder()
                .uuid(UUID)
                .state("Disabled")
                .provisioned_poller_config(
                    aws_sdk_lambda::types::ProvisionedPollerConfig::builder()
                        .minimum_pollers(2)
                        .build(),
                )
                .build()
        });
    let mocks = Mocks {
        lambda: vec![provisioned],
        dynamodb: vec![get_item(Some(open_item(None)))],
        ..Mocks::default()
    };
    let ctx = mocks.context(config(&[("SLOW_START_SECONDS", "60")]));

    let circuit = steps::start_slow_start(&ctx, circuit(), 0)
        .await
        .expect("skipped");

    assert_eq!(circuit.next, Some(Next::Close));
    assert!(
        circuit.reason.contains("provisioned mode"),
        "{}",
        circuit.reason
    );
    assert_eq!(circuit.slow_start, None);
}

#[tokio::test]
async fn a_step_records_then_raises_the_cap() {
    let (update, seen) = updates();
    let (record, recorded) = record_changes();
    let change = ConcurrencyChange {
        original: Some(10),
        set: 2,
        previous: None,
    };
    let mocks = Mocks {
        lambda: vec![update, get_capped(&[("Enabled", Some(2))])],
        dynamodb: vec![get_item(Some(open_item(Some(change)))), record],
        cloudwatch: vec![errors(2.0)],
        ..Mocks::default()
    };
    let ctx = mocks.context(config(&[("SLOW_START_SECONDS", "60")]));

    let circuit = steps::ramp_up(&ctx, ramping(Some(10), 2), 0)
        .await
        .expect("raised");

    assert_eq!(
        *recorded.lock().unwrap(),
        [Some(ConcurrencyChange {
            original: Some(10),
            set: 4,
            previous: Some(2)
        })]
    );
    assert_eq!(*seen.lock().unwrap(), ["cap=Some(4)"]);
    assert_eq!(circuit.next, Some(Next::Ramp));
    assert_eq!(circuit.slow_start.map(|r| r.level), Some(4));
}

#[tokio::test]
async fn errors_during_the_ramp_reopen_without_touching_the_cap() {
    let (update, seen) = updates();
    let mocks = Mocks {
        lambda: vec![update, get_capped(&[("Enabled", Some(4))])],
        dynamodb: vec![get_item(Some(open_item(None)))],
        cloudwatch: vec![errors(5.0)],
        ..Mocks::default()
    };
    let ctx = mocks.context(config(&[("SLOW_START_SECONDS", "60")]));

    let circuit = steps::ramp_up(&ctx, ramping(Some(10), 4), 0)
        .await
        .expect("decided");

    assert_eq!(circuit.next, Some(Next::Reopen));
    assert!(circuit.reason.contains("3 errors"), "{}", circuit.reason);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_cap_someone_else_set_stops_the_ramp_and_is_kept() {
    let (update, seen) = updates();
    let (record, recorded) = record_changes();
    let mocks = Mocks {
        lambda: vec![update, get_capped(&[("Enabled", Some(7))])],
        dynamodb: vec![get_item(Some(open_item(None))), record],
        cloudwatch: vec![errors(2.0)],
        ..Mocks::default()
    };
    let ctx = mocks.context(config(&[("SLOW_START_SECONDS", "60")]));

    let circuit = steps::ramp_up(&ctx, ramping(Some(10), 4), 0)
        .await
        .expect("decided");

    assert_eq!(circuit.next, Some(Next::Close));
    assert_eq!(
        *recorded.lock().unwrap(),
        [None],
        "nothing left to give back"
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn giving_back_restores_the_original_cap_only_while_it_is_the_breakers() {
    let change = ConcurrencyChange {
        original: None,
        set: 8,
        previous: Some(4),
    };
    let snapshot = MappingSnapshot {
        changed: Some(Changed {
            enabled: true,
            maximum_concurrency: Some(change),
        }),
        ..snapshot("Enabled")
    };
    for (cap_now, expected) in [
        (Some(8), vec!["cap=None", "enabled=true"]),
        (Some(4), vec!["cap=None", "enabled=true"]),
        (Some(7), vec!["enabled=true"]),
        (None, vec!["enabled=true"]),
    ] {
        let (update, seen) = updates();
        let mocks = Mocks {
            lambda: vec![
                update,
                get_capped(&[
                    ("Disabled", cap_now),
                    ("Disabled", cap_now),
                    ("Disabled", None),
                    ("Disabled", None),
                    ("Enabled", None),
                ]),
            ],
            ..Mocks::default()
        };
        let ctx = mocks.context(config(&[]));

        steps::end::give_back(&ctx, &snapshot)
            .await
            .expect("given back");

        assert_eq!(*seen.lock().unwrap(), expected, "cap now {cap_now:?}");
    }
}

#[tokio::test]
async fn a_mapping_disabled_during_the_ramp_ends_the_circuit_elsewhere() {
    let (update, seen) = updates();
    let mocks = Mocks {
        lambda: vec![update, get_capped(&[("Disabled", Some(4))])],
        dynamodb: vec![get_item(Some(open_item(None)))],
        ..Mocks::default()
    };
    let ctx = mocks.context(config(&[("SLOW_START_SECONDS", "60")]));

    let circuit = steps::ramp_up(&ctx, ramping(Some(10), 4), 0)
        .await
        .expect("decided");

    assert_eq!(circuit.next, Some(Next::ClosedElsewhere));
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_released_circuit_gives_the_cap_back_and_leaves_the_mapping_off() {
    // What ReleaseCircuit gives back after someone disabled the mapping mid-ramp: the cap,
    // not `Enabled`.
    let snapshot = MappingSnapshot {
        changed: Some(Changed {
            enabled: false,
            maximum_concurrency: Some(ConcurrencyChange {
                original: Some(10),
                set: 4,
                previous: Some(2),
            }),
        }),
        ..snapshot("Enabled")
    };
    let (update, seen) = updates();
    let mocks = Mocks {
        lambda: vec![
            update,
            get_capped(&[
                ("Disabled", Some(4)),
                ("Disabled", Some(4)),
                ("Disabled", Some(10)),
            ]),
        ],
        ..Mocks::default()
    };

    steps::end::give_back(&mocks.context(config(&[])), &snapshot)
        .await
        .expect("given back");

    assert_eq!(*seen.lock().unwrap(), ["cap=Some(10)"]);
}

/// The queue's `AWS/SQS` counts as each read finds them: `received` and `deleted` (Sum),
/// `in_flight` (Maximum, one datapoint).
fn queue_counts(now: (f64, f64, f64)) -> Vec<Rule> {
    use aws_sdk_cloudwatch::types::Datapoint;
    let metric = |name: &'static str, pick: fn((f64, f64, f64)) -> f64, sum: bool| {
        mock!(aws_sdk_cloudwatch::Client::get_metric_statistics)
            .match_requests(move |r| {
                r.namespace() == Some("AWS/SQS")
                    && r.metric_name() == Some(name)
                    && r.dimensions().first().and_then(|d| d.value()) == Some(QUEUE_NAME)
            })
            .then_output(move || point(pick(now), sum))
    };
    fn point(value: f64, sum: bool) -> GetMetricStatisticsOutput {
        let datapoint = if sum {
            Datapoint::builder().sum(value)
        } else {
            Datapoint::builder()
                .maximum(value)
                .timestamp(aws_smithy_types::DateTime::from_millis(NOW_MS as i64))
        };
        GetMetricStatisticsOutput::builder()
            .datapoints(datapoint.build())
            .build()
    }
    vec![
        metric("NumberOfMessagesReceived", |c| c.0, true),
        metric("NumberOfMessagesDeleted", |c| c.1, true),
        metric("ApproximateNumberOfMessagesNotVisible", |c| c.2, false),
    ]
}

#[tokio::test]
async fn failed_records_during_the_ramp_reopen_by_the_queue_s_signal() {
    // A consumer that returns its records in batchItemFailures raises no error: the queue's
    // counts show it (40 received since the ramp began, 10 deleted, 5 still in flight).
    let (update, seen) = updates();
    let mut cloudwatch = queue_counts((50.0, 20.0, 5.0));
    cloudwatch.push(errors(0.0));
    let mocks = Mocks {
        lambda: vec![update, get_capped(&[("Enabled", Some(4))])],
        dynamodb: vec![get_item(Some(open_item(None)))],
        cloudwatch,
        ..Mocks::default()
    };
    let ctx = mocks.context(config(&[
        ("SLOW_START_SECONDS", "60"),
        ("ALARM_SIGNAL", "any"),
    ]));
    let mut circuit = ramping(Some(10), 4);
    // The baseline the start took.
    circuit
        .slow_start
        .as_mut()
        .expect("ramping")
        .records_baseline = Some(controller::core::signal::QueueCounts {
        received: 10,
        deleted: 10,
        in_flight: 0,
    });

    let circuit = steps::ramp_up(&ctx, circuit, 0).await.expect("decided");

    assert_eq!(circuit.next, Some(Next::Reopen));
    assert!(
        circuit.reason.contains("left 25 of the 40 messages"),
        "{}",
        circuit.reason
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_start_under_the_queue_s_signal_takes_the_queue_s_baseline() {
    let (update, _) = updates();
    let (record, _) = record_changes();
    let mocks = Mocks {
        lambda: vec![
            update,
            get_capped(&[
                ("Disabled", Some(10)),
                ("Disabled", Some(2)),
                ("Enabled", Some(2)),
            ]),
        ],
        dynamodb: vec![get_item(Some(open_item(None))), record],
        cloudwatch: queue_counts((7.0, 6.0, 1.0)),
        ..Mocks::default()
    };
    let ctx = mocks.context(config(&[
        ("SLOW_START_SECONDS", "60"),
        ("ALARM_SIGNAL", "failed-records"),
    ]));

    let circuit = steps::start_slow_start(&ctx, circuit(), 0)
        .await
        .expect("started");

    let ramp = circuit.slow_start.expect("ramping");
    assert_eq!(
        ramp.records_baseline,
        Some(controller::core::signal::QueueCounts {
            received: 7,
            deleted: 6,
            in_flight: 1
        })
    );
    assert!(
        circuit.reason.contains("failed-records signal"),
        "{}",
        circuit.reason
    );
}
