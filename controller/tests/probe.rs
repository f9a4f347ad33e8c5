//! Probe and NextBackoff against mocked AWS clients: the probe acts only on the circuit this
//! execution holds, invokes the function the circuit item recorded, judges with the mapping as
//! it is now, and stands aside when someone else ended the circuit; the history budget.

use crate::support;

use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::types::error::TooManyRequestsException;
use aws_smithy_mocks::{mock, Rule};
use controller::circuit::{Circuit, OpenStatus};
use controller::core::Next;
use controller::error::StepError;
use controller::steps;
use serde_json::{json, Value};
use support::*;

/// Every rule the probe step may use.
struct Probe {
    get_item: Rule,
    get_mapping: Rule,
    health: Rule,
    receive: Rule,
    hidden: Rule,
    invoke: Rule,
    delete: Rule,
    release: Rule,
    send_copy: Rule,
    record: Rule,
    put_event: Rule,
    put_metric: Rule,
}

impl Probe {
    fn mocks(&self) -> Mocks {
        Mocks {
            sqs: vec![
                self.receive.clone(),
                self.delete.clone(),
                self.release.clone(),
                self.hidden.clone(),
                self.send_copy.clone(),
            ],
            lambda: vec![
                self.get_mapping.clone(),
                self.health.clone(),
                self.invoke.clone(),
            ],
            cloudwatch: vec![self.put_metric.clone()],
            eventbridge: vec![self.put_event.clone()],
            dynamodb: vec![self.get_item.clone(), self.record.clone()],
            ..Mocks::default()
        }
    }

    async fn run(
        &self,
        config: controller::core::Config,
        circuit: Circuit,
    ) -> Result<Circuit, StepError> {
        steps::probe(&self.mocks().context(config), circuit, 0).await
    }

    #[track_caller]
    fn assert_calls(&self, expected: &[(&str, usize)]) {
        assert_only(
            &[
                ("get_item", &self.get_item),
                ("get_mapping", &self.get_mapping),
                ("health", &self.health),
                ("receive", &self.receive),
                ("hidden", &self.hidden),
                ("invoke", &self.invoke),
                ("delete", &self.delete),
                ("release", &self.release),
                ("send_copy", &self.send_copy),
                ("record", &self.record),
                ("put_event", &self.put_event),
                ("put_metric", &self.put_metric),
            ],
            expected,
        );
    }
}

/// The hold check every probe starts with: the item read, the mapping read.
const HELD: [(&str, usize); 2] = [("get_item", 1), ("get_mapping", 1)];

/// `HELD` and then `more`.
fn held(more: &[(&'static str, usize)]) -> Vec<(&'static str, usize)> {
    HELD.iter().chain(more).copied().collect()
}

/// A rule no test expects to be used (for the health-check slot when none is configured).
fn unused_health_check() -> Rule {
    invoke(HEALTH_FUNCTION, None, "{}")
}

/// How long ago the probe message was sent: before the circuit's current anchor.
const SENT_MS: u64 = NOW_MS - 7_200_000;

/// Checks the probe event against what Lambda's SQS event source would send.
fn check_probe_event(event: &Value) -> Result<(), String> {
    let records = event["Records"].as_array().ok_or("no Records array")?;
    if records.len() != 1 {
        return Err(format!("{} records", records.len()));
    }
    let r = &records[0];
    let expect = |path: &str, want: Value| {
        let got = r.pointer(path).cloned().unwrap_or(Value::Null);
        if got == want {
            Ok(())
        } else {
            Err(format!("Records[0]{path}: got {got}, want {want}"))
        }
    };
    expect("/messageId", json!(MESSAGE_ID))?;
    expect("/receiptHandle", json!(RECEIPT))?;
    expect("/body", json!(BODY))?;
    expect("/md5OfBody", json!(MD5_OF_BODY))?;
    expect("/eventSource", json!("aws:sqs"))?;
    expect("/eventSourceARN", json!(QUEUE_ARN))?;
    expect("/awsRegion", json!(REGION))?;
    expect("/attributes/SentTimestamp", json!(SENT_MS.to_string()))?;
    expect("/attributes/ApproximateReceiveCount", json!("3"))?;
    expect("/attributes/AWSTraceHeader", json!(TRACE_HEADER))?;
    expect("/messageAttributes/customer/stringValue", json!("alice"))?;
    expect("/messageAttributes/customer/dataType", json!("String"))?;
    expect("/messageAttributes/quantity/stringValue", json!("42"))?;
    expect("/messageAttributes/quantity/dataType", json!("Number"))?;
    expect("/messageAttributes/tag/stringValue", json!("urgent"))?;
    expect("/messageAttributes/tag/dataType", json!("String.custom"))?;
    // [0, 1, 2, 255] in base64.
    expect(
        "/messageAttributes/signature/binaryValue",
        json!("AAEC/w=="),
    )?;
    expect("/messageAttributes/signature/dataType", json!("Binary"))?;
    Ok(())
}

/// The consumer's Invoke: the mapping's qualified FunctionArn and the probe event.
fn invoke_consumer(function_error: Option<&'static str>, payload: &'static str) -> Rule {
    use aws_sdk_lambda::operation::invoke::InvokeOutput;
    use aws_sdk_lambda::primitives::Blob;
    use aws_sdk_lambda::types::InvocationType;
    mock!(aws_sdk_lambda::Client::invoke)
        .match_requests(|r| {
            if r.function_name() != Some(FUNCTION_ARN)
                || r.invocation_type() != Some(&InvocationType::RequestResponse)
            {
                return false;
            }
            match check_probe_event(&invoke_payload(r)) {
                Ok(()) => true,
                Err(e) => {
                    eprintln!("probe event mismatch: {e}");
                    false
                }
            }
        })
        .then_output(move || {
            InvokeOutput::builder()
                .status_code(200)
                .set_function_error(function_error.map(str::to_string))
                .payload(Blob::new(payload))
                .build()
        })
}

fn probe_with_message(
    invoke: Rule,
    invoke_fails: bool,
    verdict: &'static str,
    event: &'static str,
    metric: &'static str,
) -> Probe {
    Probe {
        // This execution holds the circuit and the mapping is still off.
        get_item: get_item(Some(item("OPEN", EXECUTION))),
        get_mapping: get_mapping(&["Disabled"]),
        health: unused_health_check(),
        receive: receive(Some(probe_message(SENT_MS))),
        // An empty receive asks how many are hidden; by default none.
        hidden: hidden_messages("0"),
        invoke,
        delete: delete_message(),
        // A failed probe's message (circuit() has made 1 probe, this is the 2nd) hides for
        // the next backoff window, min(cap, base * 2^2); a step that fails gives it back.
        release: release_message(if verdict == "Failed" && !invoke_fails {
            (BACKOFF_BASE * 4) as i32
        } else {
            0
        }),
        send_copy: send_fresh_copy(),
        record: record_probe(verdict),
        put_event: put_event(event),
        put_metric: put_metric(metric),
    }
}

fn healthy_probe() -> Probe {
    probe_with_message(
        invoke_consumer(None, r#"{"batchItemFailures":[]}"#),
        false,
        "Healthy",
        "Probe Succeeded",
        "ProbeSucceeded",
    )
}

#[tokio::test]
async fn probe_healthy_deletes_the_message_and_closes() {
    let probe = healthy_probe();

    let circuit = probe.run(config(&[]), circuit()).await.expect("probed");

    probe.assert_calls(&held(&[
        ("receive", 1),
        ("invoke", 1),
        ("delete", 1),
        ("record", 1),
        ("put_event", 1),
        ("put_metric", 1),
    ]));
    assert_eq!(circuit.next, Some(Next::Close));
    assert_eq!(circuit.last_probe, "Healthy");
    assert_eq!(circuit.attempt, 2);
    assert_eq!(circuit.oldest_sent_ms, SENT_MS);
    assert!(circuit.reason.contains(MESSAGE_ID), "{}", circuit.reason);
    assert_eq!(circuit.status, OpenStatus::Opened);
    assert_eq!(circuit.mapping, snapshot("Enabled"));
}

#[tokio::test]
async fn probe_keeps_an_older_anchor_than_the_message() {
    let probe = probe_with_message(
        invoke_consumer(None, ""),
        false,
        "Healthy",
        "Probe Succeeded",
        "ProbeSucceeded",
    );
    let mut older = circuit();
    older.oldest_sent_ms = SENT_MS - 1;
    let circuit = probe.run(config(&[]), older).await.expect("probed");
    assert_eq!(circuit.oldest_sent_ms, SENT_MS - 1);
    assert_eq!(circuit.next, Some(Next::Close));
}

/// A failed probe: the message given back (hidden), the verdict recorded and announced.
fn failed_calls() -> Vec<(&'static str, usize)> {
    held(&[
        ("receive", 1),
        ("invoke", 1),
        ("release", 1),
        ("record", 1),
        ("put_event", 1),
        ("put_metric", 1),
    ])
}

#[tokio::test]
async fn probe_with_a_function_error_releases_the_message_and_backs_off() {
    let probe = probe_with_message(
        invoke_consumer(
            Some("Unhandled"),
            r#"{"errorType":"Error","errorMessage":"database unreachable"}"#,
        ),
        false,
        "Failed",
        "Probe Failed",
        "ProbeFailed",
    );

    let circuit = probe.run(config(&[]), circuit()).await.expect("probed");

    probe.assert_calls(&failed_calls());
    assert_eq!(circuit.next, Some(Next::Backoff));
    assert_eq!(circuit.last_probe, "Failed");
    assert_eq!(circuit.attempt, 2);
    assert!(circuit.reason.contains("Unhandled"), "{}", circuit.reason);
}

#[tokio::test]
async fn probe_reported_as_a_batch_item_failure_is_failed() {
    let probe = probe_with_message(
        invoke_consumer(
            None,
            r#"{"batchItemFailures":[{"itemIdentifier":"059f36b4-87a3-44ab-83d2-661975830a7d"}]}"#,
        ),
        false,
        "Failed",
        "Probe Failed",
        "ProbeFailed",
    );

    let circuit = probe.run(config(&[]), circuit()).await.expect("probed");

    probe.assert_calls(&failed_calls());
    assert_eq!(circuit.next, Some(Next::Backoff));
}

#[tokio::test]
async fn probe_judges_with_the_response_types_the_mapping_has_now() {
    // A deploy during the outage switched ReportBatchItemFailures off: the mapping would now
    // delete a batch whose invocation did not error, whatever it returned, and so does the
    // probe's verdict.
    let probe = Probe {
        get_mapping: get_mapping_with(&[], &["Disabled"]),
        ..probe_with_message(
            invoke_consumer(
                None,
                r#"{"batchItemFailures":[{"itemIdentifier":"059f36b4-87a3-44ab-83d2-661975830a7d"}]}"#,
            ),
            false,
            "Healthy",
            "Probe Succeeded",
            "ProbeSucceeded",
        )
    };

    let circuit = probe.run(config(&[]), circuit()).await.expect("probed");

    assert_eq!(circuit.last_probe, "Healthy");
    assert_eq!(circuit.next, Some(Next::Close));
}

#[tokio::test]
async fn probe_releases_the_message_when_invoke_fails() {
    let invoke = mock!(aws_sdk_lambda::Client::invoke)
        .match_requests(|r| r.function_name() == Some(FUNCTION_ARN))
        .then_error(|| {
            InvokeError::TooManyRequestsException(
                TooManyRequestsException::builder()
                    .message("Rate exceeded")
                    .meta(too_many_requests_meta())
                    .build(),
            )
        });
    let probe = probe_with_message(invoke, true, "Failed", "Probe Failed", "ProbeFailed");

    let err = probe
        .run(config(&[]), circuit())
        .await
        .expect_err("throttled");

    assert_eq!(err.name(), "Transient");
    assert!(
        matches!(&err, StepError::Transient { operation, .. } if operation == "Invoke"),
        "{err:?}"
    );
    // The message is given back; nothing recorded or announced.
    probe.assert_calls(&held(&[("receive", 1), ("invoke", 1), ("release", 1)]));
}

fn empty_queue_probe(verdict: &'static str) -> Probe {
    Probe {
        receive: receive(None),
        invoke: invoke_consumer(None, ""),
        release: release_message(0),
        record: record_probe(verdict),
        put_event: put_event("Probe Succeeded"),
        put_metric: put_metric("ProbeSucceeded"),
        ..healthy_probe()
    }
}

#[tokio::test]
async fn probe_on_an_empty_queue_follows_the_empty_queue_policy() {
    for (policy, next) in [("close", Next::Close), ("wait", Next::Backoff)] {
        let probe = empty_queue_probe("Empty");

        let circuit = probe
            .run(config(&[("EMPTY_QUEUE_POLICY", policy)]), circuit())
            .await
            .expect("probed");

        assert_eq!(circuit.next, Some(next), "policy {policy}");
        assert_eq!(circuit.attempt, 2);
        assert_eq!(circuit.oldest_sent_ms, NOW_MS - 3_600_000);
        // Recorded, but no event: nothing was learnt about the consumer.
        probe.assert_calls(&held(&[("receive", 1), ("hidden", 1), ("record", 1)]));
    }
}

#[tokio::test]
async fn probe_with_only_hidden_messages_backs_off_even_when_policy_is_close() {
    let probe = Probe {
        hidden: hidden_messages("3"),
        ..empty_queue_probe("OnlyHidden")
    };

    let circuit = probe
        .run(config(&[("EMPTY_QUEUE_POLICY", "close")]), circuit())
        .await
        .expect("probed");

    assert_eq!(circuit.next, Some(Next::Backoff));
    assert_eq!(circuit.last_probe, "OnlyHidden");
    assert!(
        circuit.reason.contains("6 in flight or delayed"),
        "{}",
        circuit.reason
    );
    probe.assert_calls(&held(&[("receive", 1), ("hidden", 1), ("record", 1)]));
}

#[tokio::test]
async fn probe_with_a_failing_health_check_backs_off_without_receiving() {
    let health = mock!(aws_sdk_lambda::Client::invoke)
        .match_requests(|r| {
            r.function_name() == Some(HEALTH_FUNCTION) && invoke_payload(r) == json!({})
        })
        .then_output(|| {
            aws_sdk_lambda::operation::invoke::InvokeOutput::builder()
                .status_code(200)
                .function_error("Unhandled")
                .payload(aws_sdk_lambda::primitives::Blob::new(
                    r#"{"errorMessage":"db down"}"#,
                ))
                .build()
        });
    let probe = Probe {
        health,
        record: record_probe("HealthCheckFailed"),
        put_event: put_event("Probe Failed"),
        put_metric: put_metric("ProbeFailed"),
        ..empty_queue_probe("HealthCheckFailed")
    };
    let config = config(&[
        ("HEALTH_CHECK_FUNCTION", HEALTH_FUNCTION),
        ("EMPTY_QUEUE_POLICY", "health-check"),
    ]);

    let circuit = probe.run(config, circuit()).await.expect("probed");

    assert_eq!(circuit.next, Some(Next::Backoff));
    assert!(
        circuit.reason.contains(HEALTH_FUNCTION),
        "{}",
        circuit.reason
    );
    probe.assert_calls(&held(&[
        ("health", 1),
        ("record", 1),
        ("put_event", 1),
        ("put_metric", 1),
    ]));
}

#[tokio::test]
async fn probe_with_a_passing_health_check_and_an_empty_queue_closes() {
    let probe = Probe {
        health: invoke(HEALTH_FUNCTION, None, "null"),
        ..empty_queue_probe("HealthCheckPassed")
    };
    let config = config(&[
        ("HEALTH_CHECK_FUNCTION", HEALTH_FUNCTION),
        ("EMPTY_QUEUE_POLICY", "health-check"),
    ]);

    let circuit = probe.run(config, circuit()).await.expect("probed");

    assert_eq!(circuit.next, Some(Next::Close));
    probe.assert_calls(&held(&[
        ("health", 1),
        ("receive", 1),
        ("record", 1),
        ("put_event", 1),
        ("put_metric", 1),
    ]));
}

#[tokio::test]
async fn probe_past_the_retention_deadline_gives_up_without_touching_the_queue() {
    let probe = healthy_probe();
    let open = circuit();
    let deadline = open.oldest_sent_ms + u64::from(RETENTION_SECONDS - MARGIN_SECONDS) * 1000;

    for now in [deadline, deadline + 1, deadline + 86_400_000] {
        let ctx = probe.mocks().context_with(config(&[]), now, RANDOM);
        let circuit = steps::probe(&ctx, open.clone(), 0).await.expect("gave up");
        assert_eq!(circuit.next, Some(Next::GiveUp), "now {now}");
        assert_eq!(circuit.attempt, open.attempt, "no probe was made");
        assert!(circuit.reason.contains("retention"), "{}", circuit.reason);
        assert_eq!(circuit.history_events, HISTORY_EVENTS + 2 + 5 + 2);
    }
    probe.assert_calls(&[]);
}

#[tokio::test]
async fn probe_healthy_with_a_rejitter_spreads_the_backlog_first() {
    let probe = healthy_probe();

    let circuit = probe
        .run(rejitter_config(&[]), circuit())
        .await
        .expect("probed");

    // The probe message is still deleted: only the backlog is left to the rejitter.
    probe.assert_calls(&held(&[
        ("receive", 1),
        ("invoke", 1),
        ("delete", 1),
        ("record", 1),
        ("put_event", 1),
        ("put_metric", 1),
    ]));
    assert_eq!(circuit.next, Some(Next::Rejitter));
    assert_eq!(circuit.rejitter, None, "the phase starts in StartRejitter");
}

#[tokio::test]
async fn probe_on_an_empty_queue_with_a_rejitter_closes() {
    let probe = empty_queue_probe("Empty");

    let circuit = probe
        .run(rejitter_config(&[]), circuit())
        .await
        .expect("probed");

    // Nothing to spread.
    assert_eq!(circuit.next, Some(Next::Close));
    probe.assert_calls(&held(&[("receive", 1), ("hidden", 1), ("record", 1)]));
}

#[tokio::test]
async fn probe_failed_with_a_rejitter_still_backs_off() {
    let probe = probe_with_message(
        invoke_consumer(Some("Unhandled"), r#"{"errorMessage":"db down"}"#),
        false,
        "Failed",
        "Probe Failed",
        "ProbeFailed",
    );
    let circuit = probe
        .run(rejitter_config(&[]), circuit())
        .await
        .expect("probed");
    assert_eq!(circuit.next, Some(Next::Backoff));
    probe.assert_calls(&failed_calls());
}

#[tokio::test]
async fn probe_counts_its_history_events_with_its_retries() {
    // WaitBeforeProbe (2), this Task (5, and 3 per failed attempt), ProbeVerdict (2).
    for (retries, added) in [(0, 9), (1, 12), (2, 15)] {
        let probe = healthy_probe();
        let ctx = probe.mocks().context(config(&[]));
        let circuit = steps::probe(&ctx, circuit(), retries)
            .await
            .expect("probed");
        assert_eq!(
            circuit.history_events,
            HISTORY_EVENTS + added,
            "{retries} retries"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Whose circuit, whose function

#[tokio::test]
async fn probe_acts_only_on_the_circuit_this_execution_holds_open() {
    for (item, why) in [
        (Some(item("OPEN", OTHER_EXECUTION)), OTHER_EXECUTION),
        (Some(item("CLOSED", OTHER_EXECUTION)), OTHER_EXECUTION),
        // This execution's own circuit, already ended (a person's GAVE_UP fix, a retry).
        (Some(item("CLOSED", EXECUTION)), "already ended"),
        (Some(item("GAVE_UP", EXECUTION)), "already ended"),
        (None, "no circuit"),
    ] {
        let probe = Probe {
            get_item: get_item(item.clone()),
            ..healthy_probe()
        };

        let circuit = probe.run(config(&[]), circuit()).await.expect("no error");

        assert_eq!(circuit.next, Some(Next::ClosedElsewhere), "{item:?}");
        assert!(circuit.reason.contains(why), "{item:?}: {}", circuit.reason);
        assert_eq!(circuit.attempt, 1, "no probe was made");
        // The item read; no mapping, queue or consumer call.
        probe.assert_calls(&[("get_item", 1)]);
    }
}

#[tokio::test]
async fn probe_stands_aside_when_someone_enabled_or_deleted_the_mapping() {
    for (get_mapping, why) in [
        (get_mapping(&["Enabled"]), "enabled outside the breaker"),
        (get_mapping(&["Enabling"]), "enabled outside the breaker"),
        (mapping_deleted(), "deleted"),
    ] {
        let probe = Probe {
            get_mapping,
            ..healthy_probe()
        };

        let circuit = probe.run(config(&[]), circuit()).await.expect("no error");

        assert_eq!(circuit.next, Some(Next::ClosedElsewhere));
        assert!(circuit.reason.contains(why), "{}", circuit.reason);
        // Nothing received, invoked, recorded or announced.
        probe.assert_calls(&HELD);
    }
}

#[tokio::test]
async fn probe_invokes_the_function_the_circuit_item_recorded_not_the_inputs() {
    // Anyone allowed to start the state machine can hand a step any input: the function to
    // invoke comes from the item the breaker wrote when it opened the circuit.
    let probe = healthy_probe();
    let mut forged = circuit();
    forged.mapping.function_arn = "arn:aws:lambda:us-east-1:123456789012:function:billing".into();
    forged.mapping.event_source_arn = "arn:aws:sqs:us-east-1:123456789012:payments".into();

    let circuit = probe.run(config(&[]), forged).await.expect("probed");

    // invoke_consumer matches FUNCTION_ARN only: a call to the forged function would find no
    // rule and fail the test.
    assert_eq!(probe.invoke.num_calls(), 1);
    assert_eq!(circuit.next, Some(Next::Close));
}

#[tokio::test]
async fn probe_of_a_forged_mapping_id_touches_nothing() {
    // The input names a mapping the breaker holds no circuit for.
    const FORGED: &str = "00000000-forged-mapping";
    let probe = Probe {
        get_item: get_items(FORGED, vec![None]),
        ..healthy_probe()
    };
    let mut forged = circuit();
    forged.mapping.uuid = FORGED.into();

    let circuit = probe.run(config(&[]), forged).await.expect("no error");

    assert_eq!(circuit.next, Some(Next::ClosedElsewhere));
    probe.assert_calls(&[("get_item", 1)]);
}

// =============================================================================================
// backoff

#[tokio::test]
async fn backoff_gives_up_when_attempts_are_exhausted() {
    let ctx = Mocks::default().context(config(&[("MAX_PROBE_ATTEMPTS", "3")]));
    let mut exhausted = circuit();
    exhausted.attempt = 3;
    let circuit = steps::backoff(&ctx, exhausted, 0).await.expect("decided");
    assert_eq!(circuit.next, Some(Next::GiveUp));
    assert!(circuit.reason.contains("3 probes"), "{}", circuit.reason);
}

/// The most history events a backoff may leave and still allow another probe loop: the
/// limit, less the worst probe loop (52) and the longest way out (123).
const LAST_ROOM: u32 = 25_000 - 52 - 123;

#[tokio::test]
async fn backoff_gives_up_before_the_execution_history_fills_up() {
    let ctx = Mocks::default().context(config(&[]));
    for (before, retries, next) in [
        (LAST_ROOM - 7, 0, Next::Backoff),
        (LAST_ROOM - 6, 0, Next::GiveUp),
        (LAST_ROOM - 10, 1, Next::Backoff),
        (LAST_ROOM - 9, 1, Next::GiveUp),
        (24_999, 0, Next::GiveUp),
    ] {
        let mut long = circuit();
        long.history_events = before;
        let circuit = steps::backoff(&ctx, long, retries).await.expect("decided");
        assert_eq!(
            circuit.next,
            Some(next),
            "{before} events, {retries} retries"
        );
        if next == Next::GiveUp {
            assert!(circuit.reason.contains("history"), "{}", circuit.reason);
        }
    }
}

#[tokio::test]
async fn backoff_counts_its_history_events_with_its_retries() {
    // This Task (5, and 3 per failed attempt) and BackoffOrGiveUp (2).
    for (retries, added) in [(0, 7), (1, 10), (4, 19)] {
        let ctx = Mocks::default().context(config(&[]));
        let circuit = steps::backoff(&ctx, circuit(), retries)
            .await
            .expect("decided");
        assert_eq!(circuit.history_events, HISTORY_EVENTS + added, "{retries}");
    }
}

#[tokio::test]
async fn backoff_gives_up_when_open_too_long() {
    let ctx = Mocks::default().context(config(&[("MAX_OPEN_SECONDS", "600")]));
    // Opened exactly 600 s ago.
    let circuit = steps::backoff(&ctx, circuit(), 0).await.expect("decided");
    assert_eq!(circuit.next, Some(Next::GiveUp));
}

#[tokio::test]
async fn backoff_waits_no_longer_than_the_cap() {
    for (attempt, random, want, ceiling) in [
        (1, 0.5, 5, 10),
        (2, 1.0, 20, 20),
        (3, 0.999, 40, 40),
        (5, 1.0, BACKOFF_CAP, BACKOFF_CAP),
        (30, 1.0, BACKOFF_CAP, BACKOFF_CAP),
        (4, 0.0, 1, BACKOFF_CAP),
    ] {
        let ctx =
            Mocks::default().context_with(config(&[("MAX_PROBE_ATTEMPTS", "100")]), NOW_MS, random);
        let mut failed = circuit();
        failed.attempt = attempt;
        let circuit = steps::backoff(&ctx, failed, 0).await.expect("decided");
        assert_eq!(circuit.next, Some(Next::Backoff));
        assert_eq!(
            circuit.wait_seconds, want,
            "attempt {attempt}, random {random}"
        );
        assert!((1..=BACKOFF_CAP).contains(&circuit.wait_seconds));
        // The window the wait was drawn from, which the console and the demo show.
        assert_eq!(
            circuit.backoff_ceiling_seconds, ceiling,
            "attempt {attempt}"
        );
        assert_eq!(circuit.attempt, attempt, "backoff does not count probes");
    }
}

#[tokio::test]
async fn backoff_never_waits_past_the_retention_deadline() {
    let headroom_ms = u64::from(RETENTION_SECONDS - MARGIN_SECONDS) * 1000;
    for (left_ms, want) in [(7_500, 7), (500, 1), (0, 1)] {
        let mut failed = circuit();
        failed.attempt = 10;
        failed.oldest_sent_ms = NOW_MS + left_ms - headroom_ms;
        let ctx = Mocks::default().context_with(config(&[]), NOW_MS, 1.0);
        let circuit = steps::backoff(&ctx, failed, 0).await.expect("decided");
        assert_eq!(circuit.next, Some(Next::Backoff));
        assert_eq!(circuit.wait_seconds, want, "{left_ms} ms left");
    }
}

#[tokio::test]
async fn a_failed_probe_gives_a_message_at_its_last_receive_back_as_a_fresh_copy() {
    // The probe's receive took the message to the queue's maxReceiveCount (3 of 3): hidden,
    // its next receive would move it to the DLQ for an outage that was not its fault.
    let probe = probe_with_message(
        invoke_consumer(
            Some("Unhandled"),
            r#"{"errorMessage":"database unreachable"}"#,
        ),
        false,
        "Failed",
        "Probe Failed",
        "ProbeFailed",
    );
    let at_the_limit = Circuit {
        max_receive_count: Some(3),
        ..circuit()
    };
    let circuit = probe.run(config(&[]), at_the_limit).await.expect("probed");

    assert_eq!(circuit.next, Some(Next::Backoff));
    assert!(circuit.reason.contains("fresh copy"), "{}", circuit.reason);
    // Sent again with everything it carried, then deleted; not hidden.
    probe.assert_calls(&held(&[
        ("receive", 1),
        ("invoke", 1),
        ("send_copy", 1),
        ("delete", 1),
        ("record", 1),
        ("put_event", 1),
        ("put_metric", 1),
    ]));
}

#[tokio::test]
async fn a_failed_probe_keeps_a_message_with_receives_left_and_a_fifo_message_in_place() {
    for (max, queue) in [
        (Some(4), QUEUE_ARN),
        (None, QUEUE_ARN),
        (Some(3), "arn:aws:sqs:us-east-1:123456789012:orders.fifo"),
    ] {
        let probe = probe_with_message(
            invoke_consumer(
                Some("Unhandled"),
                r#"{"errorMessage":"database unreachable"}"#,
            ),
            false,
            "Failed",
            "Probe Failed",
            "ProbeFailed",
        );
        let open = Circuit {
            max_receive_count: max,
            ..circuit()
        };
        probe
            .run(config(&[("QUEUE_ARN", queue)]), open)
            .await
            .expect("probed");
        probe.assert_calls(&failed_calls());
    }
}
