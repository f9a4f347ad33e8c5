//! The rejitter phase against mocked AWS clients: StartRejitter, CheckBacklog and
//! StopRejitter act only on the circuit this execution holds open, switch only the
//! rejitter's own mapping (found from the configuration), and CheckBacklog stands aside when
//! someone else ended the circuit.

use crate::support;

use aws_smithy_mocks::Rule;
use controller::circuit::{Circuit, RejitterPhase};
use controller::core::backlog::Progress;
use controller::core::Next;
use controller::error::StepError;
use controller::steps::{self, Request};
use serde_json::json;
use support::*;

/// Every rule the rejitter steps may use: by default this execution holds the circuit open
/// and the consumer's mapping is off.
struct Rejitter {
    get_item: Rule,
    get_mapping: Rule,
    list: Rule,
    enable: Rule,
    disable: Rule,
    get_rejitter: Rule,
    visible: Rule,
    stalled_event: Rule,
    stalled_metric: Rule,
}

impl Rejitter {
    fn new(listed: &str, states: &[&str], visible: &'static str) -> Rejitter {
        Rejitter {
            get_item: get_item(Some(item("OPEN", EXECUTION))),
            get_mapping: get_mapping(&["Disabled"]),
            list: list_rejitter_mappings(&[listed]),
            enable: switch_rejitter(true),
            disable: switch_rejitter(false),
            get_rejitter: get_rejitter_mapping(states),
            visible: visible_messages(visible),
            stalled_event: put_event("Rejitter Stalled"),
            stalled_metric: put_metric("RejitterStalled"),
        }
    }

    fn mocks(&self) -> Mocks {
        Mocks {
            sqs: vec![self.visible.clone()],
            lambda: vec![
                self.get_mapping.clone(),
                self.list.clone(),
                self.enable.clone(),
                self.disable.clone(),
                self.get_rejitter.clone(),
            ],
            dynamodb: vec![self.get_item.clone()],
            eventbridge: vec![self.stalled_event.clone()],
            cloudwatch: vec![self.stalled_metric.clone()],
            ..Mocks::default()
        }
    }

    fn context(&self) -> controller::steps::Context {
        self.mocks().context(rejitter_config(&[]))
    }

    #[track_caller]
    fn assert_calls(&self, expected: &[(&str, usize)]) {
        assert_only(
            &[
                ("get_item", &self.get_item),
                ("get_mapping", &self.get_mapping),
                ("list", &self.list),
                ("enable", &self.enable),
                ("disable", &self.disable),
                ("get_rejitter", &self.get_rejitter),
                ("visible", &self.visible),
                ("stalled_event", &self.stalled_event),
                ("stalled_metric", &self.stalled_metric),
            ],
            expected,
        );
    }
}

fn after_healthy_probe() -> Circuit {
    Circuit {
        attempt: 2,
        next: Some(Next::Rejitter),
        reason: "message processed".into(),
        ..circuit()
    }
}

/// Circuit items this execution must not act on.
fn not_mine() -> Vec<Option<Item>> {
    vec![
        Some(item("OPEN", OTHER_EXECUTION)),
        Some(item("CLOSED", EXECUTION)),
        Some(item("GAVE_UP", EXECUTION)),
        None,
    ]
}

// ---------------------------------------------------------------------------------------------
// StartRejitter

#[tokio::test]
async fn start_rejitter_enables_the_rejitter_mapping_and_starts_the_phase() {
    let rejitter = Rejitter {
        visible: backlog("383", "7", "0"),
        ..Rejitter::new("Disabled", &["Disabled", "Enabling", "Enabled"], "0")
    };
    let healthy = after_healthy_probe();

    let circuit = steps::start_rejitter(&rejitter.context(), healthy.clone(), 0)
        .await
        .expect("started");

    rejitter.assert_calls(&[
        ("get_item", 1),
        ("list", 1),
        ("visible", 1),
        ("enable", 1),
        ("get_rejitter", 3),
    ]);
    // The backlog before the rejitter runs is the baseline its progress is judged against.
    assert_eq!(
        circuit.rejitter,
        Some(RejitterPhase {
            mapping: REJITTER_UUID.into(),
            started_at_ms: NOW_MS,
            progress: Progress {
                empty_readings: 0,
                lowest_unspread: Some(390),
                progress_at_ms: NOW_MS,
                moved: false,
                start_visible: 383,
            },
        })
    );
    assert_eq!(
        circuit,
        Circuit {
            next: None,
            rejitter: circuit.rejitter.clone(),
            history_events: HISTORY_EVENTS + 5,
            ..healthy
        },
        "nothing else changes"
    );
}

#[tokio::test]
async fn start_rejitter_retried_on_a_switching_or_switched_mapping_only_waits() {
    for states in [&["Enabling", "Enabled"][..], &["Enabled"][..]] {
        let rejitter = Rejitter::new("Enabling", states, "0");
        let circuit = steps::start_rejitter(&rejitter.context(), after_healthy_probe(), 1)
            .await
            .expect("started");
        // One mid-switch would refuse an update; one already Enabled needs none.
        rejitter.assert_calls(&[
            ("get_item", 1),
            ("list", 1),
            ("visible", 1),
            ("get_rejitter", states.len()),
        ]);
        assert_eq!(
            circuit.rejitter.map(|p| p.mapping).as_deref(),
            Some(REJITTER_UUID),
            "{states:?}"
        );
        assert_eq!(circuit.history_events, HISTORY_EVENTS + 5 + 3);
    }
}

#[tokio::test]
async fn start_rejitter_without_a_rejitter_function_is_a_configuration_error() {
    let rejitter = Rejitter::new("Disabled", &["Enabled"], "0");
    let ctx = rejitter.mocks().context(config(&[]));

    let err = steps::start_rejitter(&ctx, after_healthy_probe(), 0)
        .await
        .expect_err("no rejitter");

    assert!(matches!(err, StepError::Config(_)), "{err:?}");
    assert_eq!(err.name(), "ConfigError");
    rejitter.assert_calls(&[("get_item", 1)]);
}

#[tokio::test]
async fn start_rejitter_fails_when_the_mapping_does_not_settle() {
    let rejitter = Rejitter::new("Enabling", &["Enabling"], "0");
    let ctx = rejitter
        .mocks()
        .context(rejitter_config(&[("SETTLE_TIMEOUT_SECONDS", "0")]));
    let err = steps::start_rejitter(&ctx, after_healthy_probe(), 0)
        .await
        .expect_err("not settled");
    assert!(
        matches!(&err, StepError::MappingNotSettled { mapping, wanted, actual, .. }
            if mapping == REJITTER_UUID && wanted == "Enabled" && actual == "Enabling"),
        "{err:?}"
    );
    rejitter.assert_calls(&[
        ("get_item", 1),
        ("list", 1),
        ("visible", 1),
        ("get_rejitter", 1),
    ]);
}

#[tokio::test]
async fn start_rejitter_acts_only_on_the_circuit_this_execution_holds_open() {
    for record in not_mine() {
        let rejitter = Rejitter {
            get_item: get_item(record.clone()),
            ..Rejitter::new("Disabled", &["Disabled", "Enabled"], "0")
        };
        let err = steps::start_rejitter(&rejitter.context(), after_healthy_probe(), 0)
            .await
            .expect_err("not the owner");
        assert_eq!(err.name(), "NotOwner", "{record:?}: {err:?}");
        rejitter.assert_calls(&[("get_item", 1)]);
    }
}

// ---------------------------------------------------------------------------------------------
// CheckBacklog

/// The hold check (the item, the consumer's mapping) and the backlog read.
const CHECKED: [(&str, usize); 3] = [("get_item", 1), ("get_mapping", 1), ("visible", 1)];

#[tokio::test]
async fn check_backlog_closes_on_the_second_empty_reading() {
    let rejitter = Rejitter::new("Enabled", &["Enabled"], "0");
    let phase = rejittering(NOW_MS - 10_000, 1);

    let circuit = steps::check_backlog(&rejitter.context(), phase.clone(), 0)
        .await
        .expect("checked");

    rejitter.assert_calls(&CHECKED);
    assert_eq!(circuit.next, Some(Next::Close));
    let got = circuit.rejitter.clone().expect("still in the phase");
    assert_eq!(got.progress.empty_readings, 2);
    assert_eq!(got.mapping, REJITTER_UUID);
    assert_eq!(got.started_at_ms, NOW_MS - 10_000);
    assert!(
        circuit
            .reason
            .contains("0 messages visible, 0 in flight, 0 delayed"),
        "{}",
        circuit.reason
    );
}

#[tokio::test]
async fn check_backlog_waits_while_messages_are_visible() {
    for empty_readings in [0, 1] {
        let rejitter = Rejitter::new("Enabled", &["Enabled"], "5");

        let circuit = steps::check_backlog(
            &rejitter.context(),
            rejittering(NOW_MS - 10_000, empty_readings),
            0,
        )
        .await
        .expect("checked");

        rejitter.assert_calls(&CHECKED);
        assert_eq!(circuit.next, Some(Next::WaitForBacklog));
        assert_eq!(circuit.rejitter.map(|p| p.progress.empty_readings), Some(0));
        assert!(
            circuit.reason.contains("5 messages visible"),
            "{}",
            circuit.reason
        );
    }
}

#[tokio::test]
async fn check_backlog_waits_after_a_single_empty_reading() {
    let rejitter = Rejitter::new("Enabled", &["Enabled"], "0");
    let circuit = steps::check_backlog(&rejitter.context(), rejittering(NOW_MS - 10_000, 0), 0)
        .await
        .expect("checked");
    assert_eq!(circuit.next, Some(Next::WaitForBacklog));
    assert_eq!(circuit.rejitter.map(|p| p.progress.empty_readings), Some(1));
}

#[tokio::test]
async fn check_backlog_closes_past_the_time_limit_even_with_a_backlog() {
    let limit_ms = u64::from(REJITTER_MAX_SECONDS) * 1000;
    for (elapsed_ms, next) in [
        (limit_ms, Next::Close),
        (limit_ms + 1, Next::Close),
        (limit_ms - 1, Next::WaitForBacklog),
    ] {
        let rejitter = Rejitter::new("Enabled", &["Enabled"], "5");
        let circuit =
            steps::check_backlog(&rejitter.context(), rejittering(NOW_MS - elapsed_ms, 0), 0)
                .await
                .expect("checked");
        assert_eq!(circuit.next, Some(next), "{elapsed_ms} ms in");
        assert_eq!(circuit.rejitter.map(|p| p.progress.empty_readings), Some(0));
    }
}

/// A phase with a long `RejitterMaxSeconds`, started 90 s ago, whose lowest count of
/// messages visible or in flight (383) was first read `idle_ms` ago.
fn rejittering_idle(idle_ms: u64) -> Circuit {
    let mut circuit = rejittering(NOW_MS - 90_000, 0);
    let phase = circuit.rejitter.as_mut().expect("in the phase");
    phase.progress = Progress {
        empty_readings: 0,
        lowest_unspread: Some(383),
        progress_at_ms: NOW_MS - idle_ms,
        moved: false,
        start_visible: 383,
    };
    circuit
}

/// The configuration of `rejittering_idle`: the phase may run 15 minutes.
const LONG_PHASE: [(&str, &str); 1] = [("REJITTER_MAX_SECONDS", "900")];

#[tokio::test]
async fn check_backlog_ends_a_stalled_phase_early_with_an_event() {
    // The rejitter's mapping is on but does not poll (383 visible, none in flight), or the
    // rejitter fails and its batches come back (373 visible, 10 in flight): no new low for a
    // minute either way. The reason says how the rejitter's mapping reads (someone may have
    // switched it off).
    for (visible, in_flight, state) in [
        ("383", "0", "Enabled"),
        ("373", "10", "Enabled"),
        ("383", "0", "Disabled"),
    ] {
        let (stalled_event, events) = put_event_where("Rejitter Stalled", |d| {
            d["mapping"] == UUID && d["execution"] == EXECUTION && d["attempt"] == 2
        });
        let rejitter = Rejitter {
            visible: backlog(visible, in_flight, "0"),
            stalled_event,
            ..Rejitter::new("Enabled", &[state], "0")
        };
        let ctx = rejitter.mocks().context(rejitter_config(&LONG_PHASE));

        let circuit = steps::check_backlog(&ctx, rejittering_idle(60_000), 0)
            .await
            .expect("checked");

        assert_eq!(circuit.next, Some(Next::Close), "{visible}/{in_flight}");
        rejitter.assert_calls(&[
            ("get_item", 1),
            ("get_mapping", 1),
            ("visible", 1),
            ("get_rejitter", 1),
            ("stalled_event", 1),
            ("stalled_metric", 1),
        ]);
        let reason = events.lock().unwrap()[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            reason.starts_with("rejitter stalled: no message spread for 60 s")
                && reason.contains(&format!(
                    "{visible} messages visible, {in_flight} in flight"
                ))
                && reason.contains(&format!("the rejitter's mapping reads {state}")),
            "{reason}"
        );
        assert_eq!(circuit.reason, reason, "the close reports it too");
    }
}

#[tokio::test]
async fn a_stalled_phase_ends_even_when_the_rejitter_mapping_cannot_be_read() {
    use aws_sdk_lambda::operation::get_event_source_mapping::GetEventSourceMappingError;
    use aws_sdk_lambda::types::error::ServiceException;
    let rejitter = Rejitter {
        visible: backlog("383", "0", "0"),
        get_rejitter: aws_smithy_mocks::mock!(aws_sdk_lambda::Client::get_event_source_mapping)
            .match_requests(|r| r.uuid() == Some(REJITTER_UUID))
            .then_error(|| {
                GetEventSourceMappingError::ServiceException(
                    ServiceException::builder().message("try later").build(),
                )
            }),
        ..Rejitter::new("Enabled", &["Enabled"], "0")
    };
    let ctx = rejitter.mocks().context(rejitter_config(&LONG_PHASE));

    let circuit = steps::check_backlog(&ctx, rejittering_idle(61_000), 0)
        .await
        .expect("the read only informs the reason");

    assert_eq!(circuit.next, Some(Next::Close));
    assert!(
        circuit
            .reason
            .contains("the rejitter's mapping could not be read"),
        "{}",
        circuit.reason
    );
    rejitter.assert_calls(&[
        ("get_item", 1),
        ("get_mapping", 1),
        ("visible", 1),
        ("get_rejitter", 1),
        ("stalled_event", 1),
        ("stalled_metric", 1),
    ]);
}

#[tokio::test]
async fn a_stalled_phase_closes_through_the_usual_path() {
    // BacklogSpread sends Close to StopRejitter: the rejitter's mapping is switched off and
    // the circuit goes on to the slow start, if configured, or the close.
    for (extra, after) in [
        (&LONG_PHASE[..], Next::Close),
        (
            &[LONG_PHASE[0], ("SLOW_START_SECONDS", "60")][..],
            Next::SlowStart,
        ),
    ] {
        let rejitter = Rejitter {
            visible: backlog("383", "0", "0"),
            // Read by the stalled check, then by StopRejitter's switch.
            ..Rejitter::new(
                "Enabled",
                &["Enabled", "Enabled", "Disabling", "Disabled"],
                "0",
            )
        };
        let ctx = rejitter.mocks().context(rejitter_config(extra));
        let stalled = steps::check_backlog(&ctx, rejittering_idle(65_000), 0)
            .await
            .expect("checked");
        assert_eq!(stalled.next, Some(Next::Close));

        let stopped = steps::stop_rejitter(&ctx, stalled).await.expect("stopped");

        assert_eq!(stopped.next, Some(after), "{extra:?}");
        assert!(
            stopped.reason.starts_with("rejitter stalled"),
            "{}",
            stopped.reason
        );
        rejitter.assert_calls(&[
            ("get_item", 2),
            ("get_mapping", 1),
            ("visible", 1),
            ("stalled_event", 1),
            ("stalled_metric", 1),
            ("list", 1),
            ("disable", 1),
            ("get_rejitter", 4),
        ]);
    }
}

#[tokio::test]
async fn check_backlog_keeps_a_slow_but_progressing_phase_going() {
    // A new low (382 visible or in flight, below 383) restarts the window; no new low is
    // still within it at 59 s, also while batches are in flight.
    for (visible, in_flight, idle_ms, lowest, progress_at_ms) in [
        ("380", "2", 59_000, 382, NOW_MS),
        ("383", "0", 59_000, 383, NOW_MS - 59_000),
        ("200", "190", 59_999, 383, NOW_MS - 59_999),
    ] {
        let rejitter = Rejitter {
            visible: backlog(visible, in_flight, "120"),
            ..Rejitter::new("Enabled", &["Enabled"], "0")
        };
        let ctx = rejitter.mocks().context(rejitter_config(&LONG_PHASE));

        let circuit = steps::check_backlog(&ctx, rejittering_idle(idle_ms), 0)
            .await
            .expect("checked");

        assert_eq!(
            circuit.next,
            Some(Next::WaitForBacklog),
            "{visible}/{in_flight}"
        );
        let progress = circuit.rejitter.expect("in the phase").progress;
        assert_eq!(
            progress.progress_at_ms, progress_at_ms,
            "{visible}/{in_flight}"
        );
        assert_eq!(progress.lowest_unspread, Some(lowest));
        // No event: CHECKED lists no PutEvents.
        rejitter.assert_calls(&CHECKED);
    }
}

#[tokio::test]
async fn check_backlog_does_not_call_a_backlog_held_in_flight_spread() {
    // The rejitter took every message and re-sent none: nothing visible twice in a row, but
    // nothing spread either. It waits, and stalls once the window has passed.
    for (idle_ms, next) in [(30_000, Next::WaitForBacklog), (60_000, Next::Close)] {
        let rejitter = Rejitter {
            visible: backlog("0", "383", "0"),
            ..Rejitter::new("Enabled", &["Enabled"], "0")
        };
        let ctx = rejitter.mocks().context(rejitter_config(&LONG_PHASE));
        let mut held = rejittering_idle(idle_ms);
        held.rejitter
            .as_mut()
            .expect("in the phase")
            .progress
            .empty_readings = 1;

        let circuit = steps::check_backlog(&ctx, held, 0).await.expect("checked");

        assert_eq!(circuit.next, Some(next), "{idle_ms} ms idle");
        let stalled = usize::from(next == Next::Close);
        rejitter.assert_calls(&[
            ("get_item", 1),
            ("get_mapping", 1),
            ("visible", 1),
            ("get_rejitter", stalled),
            ("stalled_event", stalled),
            ("stalled_metric", stalled),
        ]);
    }
}

#[tokio::test]
async fn a_phase_without_a_baseline_takes_its_first_reading_as_one() {
    // A phase a breaker without baselines started.
    let rejitter = Rejitter {
        visible: backlog("383", "0", "0"),
        ..Rejitter::new("Enabled", &["Enabled"], "0")
    };
    let ctx = rejitter.mocks().context(rejitter_config(&LONG_PHASE));
    let mut old = rejittering(NOW_MS - 70_000, 0);
    old.rejitter.as_mut().expect("in the phase").progress = Progress::default();
    let circuit = steps::check_backlog(&ctx, old, 0).await.expect("checked");
    assert_eq!(circuit.next, Some(Next::WaitForBacklog));
    let progress = circuit.rejitter.expect("in the phase").progress;
    assert_eq!(
        (progress.lowest_unspread, progress.progress_at_ms),
        (Some(383), NOW_MS)
    );
    rejitter.assert_calls(&CHECKED);
}

#[tokio::test]
async fn the_time_limit_is_reported_as_such() {
    let rejitter = Rejitter::new("Enabled", &["Enabled"], "5");
    let limit_ms = u64::from(REJITTER_MAX_SECONDS) * 1000;
    let circuit = steps::check_backlog(&rejitter.context(), rejittering(NOW_MS - limit_ms, 0), 0)
        .await
        .expect("checked");
    assert_eq!(circuit.next, Some(Next::Close));
    assert!(
        circuit.reason.contains(&format!(
            "reached RejitterMaxSeconds ({REJITTER_MAX_SECONDS} s)"
        )),
        "{}",
        circuit.reason
    );
    // Not a stall: no event.
    rejitter.assert_calls(&CHECKED);
}

/// The most history events a backlog check may leave and still allow another rejitter loop:
/// the limit, less the worst rejitter loop (27) and the longest way out (123).
const LAST_ROOM: u32 = 25_000 - 27 - 123;

#[tokio::test]
async fn check_backlog_closes_early_when_the_history_has_no_room_for_another_check() {
    // WaitForBacklog (2), this Task (5), BacklogSpread (2): 9 events.
    for (before, retries, next) in [
        (LAST_ROOM - 9, 0, Next::WaitForBacklog),
        (LAST_ROOM - 8, 0, Next::Close),
        (LAST_ROOM - 12, 1, Next::WaitForBacklog),
        (LAST_ROOM - 11, 1, Next::Close),
    ] {
        let rejitter = Rejitter::new("Enabled", &["Enabled"], "5");
        let mut long = rejittering(NOW_MS - 10_000, 0);
        long.history_events = before;

        let circuit = steps::check_backlog(&rejitter.context(), long, retries)
            .await
            .expect("checked");

        assert_eq!(
            circuit.next,
            Some(next),
            "{before} events, {retries} retries"
        );
        assert_eq!(circuit.history_events, before + 9 + 3 * retries);
        if next == Next::Close {
            assert!(circuit.reason.contains("history"), "{}", circuit.reason);
        }
        rejitter.assert_calls(&CHECKED);
    }
}

#[tokio::test]
async fn check_backlog_stands_aside_when_the_circuit_was_ended_elsewhere() {
    // Someone enabled the consumer's mapping (or deleted it): nothing is read from the queue.
    for get_mapping in [
        get_mapping(&["Enabled"]),
        get_mapping(&["Enabling"]),
        mapping_deleted(),
    ] {
        let rejitter = Rejitter {
            get_mapping,
            ..Rejitter::new("Enabled", &["Enabled"], "5")
        };
        let circuit = steps::check_backlog(&rejitter.context(), rejittering(NOW_MS - 10_000, 0), 0)
            .await
            .expect("no error");
        assert_eq!(circuit.next, Some(Next::ClosedElsewhere));
        rejitter.assert_calls(&[("get_item", 1), ("get_mapping", 1)]);
    }
    // The circuit is not this execution's (any more): not even the mapping is read.
    for record in not_mine() {
        let rejitter = Rejitter {
            get_item: get_item(record.clone()),
            ..Rejitter::new("Enabled", &["Enabled"], "5")
        };
        let circuit = steps::check_backlog(&rejitter.context(), rejittering(NOW_MS - 10_000, 0), 0)
            .await
            .expect("no error");
        assert_eq!(circuit.next, Some(Next::ClosedElsewhere), "{record:?}");
        rejitter.assert_calls(&[("get_item", 1)]);
    }
}

#[tokio::test]
async fn check_backlog_without_a_rejitter_phase_is_fatal() {
    let rejitter = Rejitter::new("Enabled", &["Enabled"], "0");
    let err = steps::check_backlog(&rejitter.context(), after_healthy_probe(), 0)
        .await
        .expect_err("no phase");
    assert!(matches!(err, StepError::Fatal(_)), "{err:?}");
    assert_eq!(err.name(), "Fatal");
    // Nothing switched.
    rejitter.assert_calls(&CHECKED);
}

#[tokio::test]
async fn check_backlog_without_a_count_is_fatal() {
    let rejitter = Rejitter {
        visible: visible_messages("lots"),
        ..Rejitter::new("Enabled", &["Enabled"], "0")
    };
    let err = steps::check_backlog(&rejitter.context(), rejittering(NOW_MS - 10_000, 1), 0)
        .await
        .expect_err("no count");
    assert!(matches!(err, StepError::Fatal(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// StopRejitter

#[tokio::test]
async fn stop_rejitter_disables_the_rejitter_mapping_and_waits() {
    let rejitter = Rejitter::new("Enabled", &["Enabled", "Disabling", "Disabled"], "0");
    let mut spread = rejittering(NOW_MS - 30_000, 2);
    spread.next = Some(Next::Close);

    let circuit = steps::stop_rejitter(&rejitter.context(), spread.clone())
        .await
        .expect("stopped");

    // The rejitter's mapping is found from the configuration, never from the input.
    rejitter.assert_calls(&[
        ("get_item", 1),
        ("list", 1),
        ("disable", 1),
        ("get_rejitter", 3),
    ]);
    assert_eq!(
        circuit, spread,
        "the circuit goes on to CloseCircuit as it was"
    );
}

#[tokio::test]
async fn stop_rejitter_leaves_a_rejitter_that_is_off_alone() {
    let rejitter = Rejitter::new("Disabled", &["Disabled"], "0");
    steps::stop_rejitter(&rejitter.context(), rejittering(NOW_MS - 30_000, 2))
        .await
        .expect("stopped");
    rejitter.assert_calls(&[("get_item", 1), ("list", 1)]);
}

#[tokio::test]
async fn stop_rejitter_acts_only_on_the_circuit_this_execution_holds_open() {
    for record in not_mine() {
        let rejitter = Rejitter {
            get_item: get_item(record.clone()),
            ..Rejitter::new("Enabled", &["Enabled", "Disabled"], "0")
        };
        let err = steps::stop_rejitter(&rejitter.context(), rejittering(NOW_MS - 30_000, 2))
            .await
            .expect_err("not the owner");
        assert_eq!(err.name(), "NotOwner", "{record:?}: {err:?}");
        rejitter.assert_calls(&[("get_item", 1)]);
    }
}

#[tokio::test]
async fn rejitter_requests_parse_and_run() {
    let phase = serde_json::to_value(rejittering(NOW_MS - 10_000, 1)).unwrap();
    for step in ["start_rejitter", "check_backlog", "stop_rejitter"] {
        let (request, retries) = Request::parse(json!({"step": step, "circuit": phase}))
            .unwrap_or_else(|e| panic!("{step}: {e}"));
        assert_eq!(request.name(), step);
        assert_eq!(request.execution(), EXECUTION);
        assert_eq!(retries, 0);
    }
    // A circuit from before the rejitter existed still parses.
    let mut old = serde_json::to_value(circuit()).unwrap();
    old.as_object_mut().unwrap().remove("rejitter");
    let back: Circuit = serde_json::from_value(old).expect("parses");
    assert_eq!(back.rejitter, None);

    let rejitter = Rejitter::new("Enabled", &["Enabled"], "0");
    let value = steps::run(
        &rejitter.context(),
        Request::CheckBacklog {
            circuit: rejittering(NOW_MS - 10_000, 1),
        },
        0,
    )
    .await
    .expect("ran");
    assert_eq!(value["next"], "Close");
    assert_eq!(value["rejitter"]["mapping"], REJITTER_UUID);
    assert_eq!(value["rejitter"]["empty_readings"], 2);
}
