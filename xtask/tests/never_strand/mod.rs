//! Never strand a consumer, on a local emulator: whatever happens while a circuit is
//! open (a deploy of the consumer, a second mapping, an operator stopping the execution or
//! re-enabling the mapping, a mapping being updated at the close, duplicate and late alarm
//! events), the consumer ends up reading its queue again, with the configuration it was
//! last given, and no message is lost.
//!
//! One deployed stack serves every scenario (a deploy costs a minute or more). Each scenario
//! is its own `async fn`, returns the messages it sent, and is followed by the same invariants
//! ([`invariants`]), the last of which is that a new outage opens the circuit and it closes
//! again: every scenario begins with one, so within a test the next scenario is that check,
//! and after a test's last scenario the invariants make one more. A failed scenario is
//! reported, the stack is put back as well as it can be ([`reset`]), and the next scenario
//! runs; the test fails at the end, listing every failed scenario.
//!
//! Two things of the local stack shape these scenarios:
//! - The emulator-gap alarm bridge delivers the "CloudWatch Alarm State Change" event for a
//!   SetAlarmState too, as CloudWatch does. Putting the alarm in ALARM before starting an
//!   execution therefore starts a second execution a moment later. The scenarios never
//!   assume which one owns the circuit: the owner is the circuit item's `owner`, and every
//!   other new execution must stand aside.
//! - The rejitter re-sends messages under new SQS message ids: messages are accounted for by
//!   content fingerprint ([`traffic::processed_fingerprints`]), never by message id.

use anyhow::{bail, ensure, Context, Result};
use aws_sdk_lambda::types::FunctionResponseType;
use aws_sdk_sfn::types::ExecutionStatus;
use rejitter::attributes::{AttributeValue, OutAttribute};
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant, SystemTime};
use xtask::breaker::{self, epoch_ms, Mapping};
use xtask::stack::{fast_breaker, fast_example, Deployment};
use xtask::status;
use xtask::traffic::{self, Sent};
use xtask::wait::eventually;

mod checks;
mod circuit;
use checks::*;
use circuit::*;

/// How soon the recovery (the EventBridge rule on "Step Functions Execution Status Change")
/// must have put the consumer back after an execution is stopped.
const RECOVERY: Duration = Duration::from_secs(120);
/// How long an execution may take to close once the consumer is healthy again.
const TO_CLOSE: Duration = Duration::from_secs(180);
/// How long the consumer may take to work off a scenario's messages.
const TO_DRAIN: Duration = Duration::from_secs(240);

/// The example stack's mapping configuration (infra/example.yaml), which every scenario must
/// leave as it found it.
const BATCH_SIZE: i32 = 10;
const REPORT_BATCH_ITEM_FAILURES: &str = "ReportBatchItemFailures";

fn deploy() -> Result<(tokio::runtime::Runtime, Deployment)> {
    mark("deploying");
    let example = fast_example();
    let mut breaker = fast_breaker();
    breaker.extend([
        ("RetentionMarginSeconds", "60".into()),
        // The alarm can never trip on the outages staged here: the scenarios raise it with
        // SetAlarmState and start the executions themselves.
        ("AlarmThreshold", "1000000".into()),
        ("RejitterEnabled", "true".into()),
        // Longer than the rejitter phase (two 5 s backlog checks, about 11 s): a message
        // delayed less comes back to the rejitter while it still polls, and its re-send waits
        // 60 s (rejitter::marker::RESEND_DELAY_SECONDS), a minute on every drain.
        ("MinDelaySeconds", "20".into()),
        ("MaxDelaySeconds", "25".into()),
        ("RejitterMaxSeconds", "60".into()),
        ("MaxCircuitsPerHour", "0".into()),
    ]);
    Deployment::start(&example, &breaker)
}

// The scenarios run on three stacks, one after another on each, so that the three thirds run
// side by side (cargo-nextest runs each test in its own process): most of their time is
// waiting. The hanging consumer alone takes minutes, so its third has one scenario less.

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn never_strand_a_consumer_through_deploys_mappings_and_stops() -> Result<()> {
    let (runtime, d) = deploy()?;
    let failed = runtime.block_on(async {
        let mut failed = Vec::new();
        let d = &d;
        let next = Then::NextScenario;
        run(
            d,
            "deploy-during-open",
            deploy_during_open(d),
            next,
            &mut failed,
        )
        .await;
        run(
            d,
            "second-mapping",
            second_mapping_mid_open(d),
            next,
            &mut failed,
        )
        .await;
        run(
            d,
            "stop-while-probing",
            stop_while_probing(d),
            Then::End,
            &mut failed,
        )
        .await;
        failed
    });
    report(failed)
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn never_strand_a_consumer_through_rejitter_stops_hands_updates_and_late_alarms() -> Result<()> {
    let (runtime, d) = deploy()?;
    let failed = runtime.block_on(async {
        let mut failed = Vec::new();
        let d = &d;
        let next = Then::NextScenario;
        let rejittering = stop_while_rejittering(d);
        run(d, "stop-while-rejitter", rejittering, next, &mut failed).await;
        run(
            d,
            "operator-re-enables",
            operator_re_enables(d),
            next,
            &mut failed,
        )
        .await;
        run(
            d,
            "updating-at-close",
            updating_at_close(d),
            next,
            &mut failed,
        )
        .await;
        let late = duplicate_and_late_alarms(d);
        run(d, "duplicate-and-late", late, Then::End, &mut failed).await;
        failed
    });
    report(failed)
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn never_strand_a_consumer_through_take_overs_and_hangs() -> Result<()> {
    let (runtime, d) = deploy()?;
    let failed = runtime.block_on(async {
        let mut failed = Vec::new();
        let d = &d;
        let takeover = takeover_from_a_stopped_owner(d);
        run(d, "takeover", takeover, Then::NextScenario, &mut failed).await;
        run(
            d,
            "hanging-consumer",
            hanging_consumer(d),
            Then::End,
            &mut failed,
        )
        .await;
        failed
    });
    report(failed)
}

/// Prints `what` with the seconds since the process's first mark (the test's start under
/// cargo-nextest, a process a test): where a slow or failed run spent its time.
pub(super) fn mark(what: &str) {
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t0 = T0.get_or_init(Instant::now);
    println!("[{:6.1}s] {what}", t0.elapsed().as_secs_f64());
}

fn report(failed: Vec<String>) -> Result<()> {
    if !failed.is_empty() {
        bail!(
            "{} scenario(s) failed:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    Ok(())
}

/// What follows a scenario, which decides whether the invariants make an outage of their own
/// to see the circuit open and close again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Another scenario, which begins by opening the circuit (each does) and sees it close.
    NextScenario,
    /// The end of the test: the invariants open and close the circuit once more.
    End,
}

/// Runs one scenario, then the invariants; reports, and on failure puts the stack back.
async fn run(
    d: &Deployment,
    name: &str,
    scenario: impl Future<Output = Result<Vec<Sent>>>,
    then: Then,
    failed: &mut Vec<String>,
) {
    let started = Instant::now();
    mark(&format!("scenario {name}"));
    let outcome = async {
        let known = execution_arns(d).await?;
        let sent = scenario.await?;
        mark("  invariants");
        invariants(d, name, &sent, &known, then)
            .await
            .context("after the scenario")
    }
    .await;
    let took = started.elapsed().as_secs_f64();
    match outcome {
        Ok(()) => println!("scenario {name}: ok ({took:.0}s)"),
        Err(e) => {
            println!("scenario {name}: FAILED ({took:.0}s): {e:#}");
            failed.push(format!("{name}: {e:#}"));
            reset(d).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

/// 1. A deploy of the consumer while the circuit is open changes its mapping's batch size and
///    response types (the mapping stays disabled): closing enables the mapping and keeps both
///    changes, since it writes `Enabled` and nothing else.
async fn deploy_during_open(d: &Deployment) -> Result<Vec<Sent>> {
    let (sent, owner) = outage_and_open(d, "s1-deploy", 10).await?;

    update_mapping(d, d.mapping(), Some(5), Some(vec![])).await?;
    let deployed = d.consumer_mapping().await?;
    ensure!(
        deployed.state == "Disabled"
            && deployed.batch_size == Some(5)
            && deployed.function_response_types.is_empty(),
        "the deploy's update did not take: {deployed:?}"
    );

    d.outage(false).await?;
    closes(d, &owner).await?;
    let after = d.consumer_mapping().await?;
    ensure!(
        after.state == "Enabled"
            && after.batch_size == Some(5)
            && after.function_response_types.is_empty(),
        "the close must enable the mapping and keep the deploy's BatchSize 5 and empty \
         FunctionResponseTypes: {after:?}"
    );

    restore_mapping_configuration(d).await?;
    Ok(sent)
}

/// 2. A second mapping from the same queue to the consumer appears while the circuit is open
///    (disabled): the circuit closes on its own mapping, the new one is left untouched.
async fn second_mapping_mid_open(d: &Deployment) -> Result<Vec<Sent>> {
    let (sent, owner) = outage_and_open(d, "s2-second-mapping", 10).await?;

    let created = d
        .lambda
        .create_event_source_mapping()
        .function_name(d.function())
        .event_source_arn(&d.example["QueueArn"])
        .enabled(false)
        .batch_size(BATCH_SIZE)
        .send()
        .await
        .context("CreateEventSourceMapping")?;
    let second = created
        .uuid()
        .context("CreateEventSourceMapping returned no UUID")?
        .to_string();
    let before = eventually(
        "the second mapping to be Disabled",
        Duration::from_secs(60),
        || async {
            let m = breaker::mapping(&d.lambda, &second).await?;
            Ok((m.state == "Disabled").then_some(m))
        },
    )
    .await?;

    let outcome = async {
        d.outage(false).await?;
        closes(d, &owner).await?;
        let own = d.consumer_mapping().await?;
        ensure!(
            own.state == "Enabled",
            "own mapping after the close: {own:?}"
        );
        let after = breaker::mapping(&d.lambda, &second).await?;
        ensure!(
            after == before,
            "the second mapping must be left untouched:\n  before {before:?}\n  after  {after:?}"
        );
        Ok(())
    }
    .await;
    delete_mapping(d, &second).await?;
    outcome?;
    Ok(sent)
}

/// 3. An operator stops the execution while it probes (the outage still on): the recovery
///    re-enables the consumer, closes the circuit and resets the alarm, all within
///    [`RECOVERY`]; nothing is lost once the consumer heals.
async fn stop_while_probing(d: &Deployment) -> Result<Vec<Sent>> {
    let (sent, owner) = outage_and_open(d, "s3-stop-probing", 10).await?;
    eventually("a failed probe", Duration::from_secs(90), || async {
        let states = breaker::visited_states(&d.sfn, &owner).await?;
        Ok(states.iter().any(|s| s == "NextBackoff").then_some(()))
    })
    .await?;

    stop_and_wait(d, &owner).await?;
    let recovered = Instant::now();
    eventually(
        "the recovery: consumer mapping Enabled, circuit CLOSED, alarm OK",
        RECOVERY,
        || async {
            let mapping = d.consumer_mapping().await?.state;
            let circuit = circuit_state(d).await?;
            let alarm = d.alarm().await?.value;
            Ok((mapping == "Enabled" && circuit == "CLOSED" && alarm == "OK").then_some(()))
        },
    )
    .await?;
    println!(
        "  stop-while-probing: recovered {:.0}s after the stop",
        recovered.elapsed().as_secs_f64()
    );
    let rejitter = d.rejitter_mapping().await?;
    ensure!(rejitter.state == "Disabled", "rejitter: {rejitter:?}");

    d.outage(false).await?;
    Ok(sent)
}

/// 4. An operator stops the execution while the rejitter spreads the backlog: the recovery
///    switches the rejitter's mapping off and re-enables the consumer within [`RECOVERY`];
///    nothing is lost (messages in the rejitter's hands come back, delayed ones arrive).
async fn stop_while_rejittering(d: &Deployment) -> Result<Vec<Sent>> {
    let (sent, owner) = outage_and_open(d, "s4-stop-rejitter", 100).await?;
    d.outage(false).await?;

    // As soon as the backlog is being checked, the rejitter is on.
    eventually("the rejitter phase (CheckBacklog)", TO_CLOSE, || async {
        let states = breaker::visited_states(&d.sfn, &owner).await?;
        if states
            .iter()
            .any(|s| s == "StopRejitter" || s == "CloseCircuit")
        {
            bail!(
                "the rejitter phase ended before it could be stopped (raise the backlog): \
                     {states:?}"
            );
        }
        Ok(states.iter().any(|s| s == "CheckBacklog").then_some(()))
    })
    .await?;
    let rejitter = d.rejitter_mapping().await?;
    ensure!(
        rejitter.state == "Enabled",
        "the rejitter must be on during CheckBacklog: {rejitter:?}"
    );

    stop_and_wait(d, &owner).await?;
    eventually(
        "the recovery: rejitter mapping Disabled, consumer mapping Enabled, circuit CLOSED",
        RECOVERY,
        || async {
            let rejitter = d.rejitter_mapping().await?.state;
            let consumer = d.consumer_mapping().await?.state;
            let circuit = circuit_state(d).await?;
            Ok(
                (rejitter == "Disabled" && consumer == "Enabled" && circuit == "CLOSED")
                    .then_some(()),
            )
        },
    )
    .await?;
    Ok(sent)
}

/// 5. An operator re-enables the mapping while the circuit is open: the next probe notices,
///    releases the circuit (ReleaseCircuit) and ends in CircuitClosedElsewhere, leaving the
///    mapping enabled and the rejitter off.
async fn operator_re_enables(d: &Deployment) -> Result<Vec<Sent>> {
    let (sent, owner) = outage_and_open(d, "s5-re-enabled", 10).await?;
    eventually("a failed probe", Duration::from_secs(90), || async {
        let states = breaker::visited_states(&d.sfn, &owner).await?;
        Ok(states.iter().any(|s| s == "NextBackoff").then_some(()))
    })
    .await?;

    d.lambda
        .update_event_source_mapping()
        .uuid(d.mapping())
        .enabled(true)
        .send()
        .await
        .context("UpdateEventSourceMapping Enabled=true")?;

    // The outage is still on: only the operator's choice may end the circuit.
    let end = breaker::finished(&d.sfn, &owner, TO_CLOSE).await?;
    let states = breaker::visited_states(&d.sfn, &owner).await?;
    ensure!(end == ExecutionStatus::Succeeded, "{end:?}: {states:?}");
    ensure!(
        states.last().map(String::as_str) == Some("CircuitClosedElsewhere")
            && states.iter().any(|s| s == "ReleaseCircuit")
            && !states.iter().any(|s| s == "CloseCircuit"),
        "{states:?}"
    );
    ensure!(circuit_state(d).await? == "CLOSED");
    let rejitter = d.rejitter_mapping().await?;
    ensure!(rejitter.state == "Disabled", "rejitter: {rejitter:?}");
    let mapping = d.consumer_mapping().await?;
    ensure!(
        mapping.state == "Enabled",
        "the operator's choice stands: {mapping:?}"
    );

    d.outage(false).await?;
    Ok(sent)
}

/// 6. The mapping is being updated when the close comes.
///
/// Not stageable on MiniStack 1.5.33: its `lambda_svc.py` sets a mapping's `State` to
/// `Enabled` or `Disabled` within the Create/UpdateEventSourceMapping request itself
/// (`_create_esm`, `_update_esm`); no mapping is ever reported `Creating`, `Enabling`,
/// `Disabling` or `Updating` (only DeleteEventSourceMapping's response says `Deleting`, and the
/// mapping is gone by then), and no update is refused because another is in progress. What
/// is staged instead: configuration writes racing the close. A deploy's UpdateEventSourceMapping
/// (BatchSize 10 -> 7, `Enabled` not sent) right before the heal, then the same write about
/// once a second until the execution ends; on AWS each of them would put the mapping in
/// `Updating`. The close must still happen, enable the mapping and keep BatchSize 7.
async fn updating_at_close(d: &Deployment) -> Result<Vec<Sent>> {
    let (sent, owner) = outage_and_open(d, "s6-updating", 10).await?;
    update_mapping(d, d.mapping(), Some(7), None).await?;
    d.outage(false).await?;

    let end = eventually(
        "the close while the mapping keeps being updated",
        TO_CLOSE,
        || async {
            update_mapping(d, d.mapping(), Some(7), None).await?;
            let status = breaker::status(&d.sfn, &owner).await?;
            Ok((status != ExecutionStatus::Running).then_some(status))
        },
    )
    .await?;
    let states = breaker::visited_states(&d.sfn, &owner).await?;
    ensure!(end == ExecutionStatus::Succeeded, "{end:?}: {states:?}");
    ensure!(
        states.last().map(String::as_str) == Some("CircuitClosed")
            && !states.iter().any(|s| s == "Failsafe"),
        "{states:?}"
    );
    let after = d.consumer_mapping().await?;
    ensure!(
        after.state == "Enabled"
            && after.batch_size == Some(7)
            && after.function_response_types == [REPORT_BATCH_ITEM_FAILURES],
        "the close must enable the mapping and keep the deploy's BatchSize 7: {after:?}"
    );

    restore_mapping_configuration(d).await?;
    Ok(sent)
}

/// 7. Duplicate and late alarm events around a close: two executions started at once with
///    the same event, one stands aside; after the close, an execution with that (now old)
///    event ends in IgnoreStaleAlarm and touches nothing.
async fn duplicate_and_late_alarms(d: &Deployment) -> Result<Vec<Sent>> {
    d.outage(true).await?;
    let sent = traffic::send(&d.sqs, d.queue(), "s7-duplicate", 5).await?;
    let opened = open_circuit(d, Starts::TwoAtOnce).await?;
    ensure!(
        opened.ours.len() == 2,
        "two executions were started: {:?}",
        opened.ours
    );
    let aside: Vec<&String> = opened.ours.iter().filter(|e| **e != opened.owner).collect();
    ensure!(
        !aside.is_empty() && aside.iter().all(|e| opened.stood_aside.contains(e)),
        "of the two executions started at once, at most one may own the circuit and the \
         other must stand aside: owner {}, ours {:?}, stood aside {:?}",
        opened.owner,
        opened.ours,
        opened.stood_aside
    );

    d.outage(false).await?;
    closes(d, &opened.owner).await?;

    let circuit = d
        .circuit()
        .await?
        .context("no circuit item after the close")?;
    let mapping = d.consumer_mapping().await?;
    let alarm = d.alarm().await?;
    ensure!(circuit.state == "CLOSED", "{circuit:?}");
    ensure!(mapping.state == "Enabled", "{mapping:?}");

    // The first event, delivered late: its time is before the close.
    let late = d.start_alarm_execution_at(&opened.time).await?;
    let end = breaker::finished(&d.sfn, &late, Duration::from_secs(60)).await?;
    let states = breaker::visited_states(&d.sfn, &late).await?;
    ensure!(end == ExecutionStatus::Succeeded, "{end:?}: {states:?}");
    ensure!(
        states.last().map(String::as_str) == Some("IgnoreStaleAlarm")
            && !states.iter().any(|s| s == "WaitBeforeProbe"),
        "{states:?}"
    );
    let circuit_after = d.circuit().await?.context("the circuit item vanished")?;
    ensure!(
        circuit_after == circuit,
        "a stale event must not touch the circuit:\n  before {circuit:?}\n  after  \
         {circuit_after:?}"
    );
    let mapping_after = d.consumer_mapping().await?;
    ensure!(
        mapping_after == mapping,
        "a stale event must not touch the mapping:\n  before {mapping:?}\n  after  \
         {mapping_after:?}"
    );
    let alarm_after = d.alarm().await?;
    ensure!(
        alarm_after.value == alarm.value,
        "a stale event must not touch the alarm: {alarm:?} then {alarm_after:?}"
    );
    Ok(sent)
}

/// 8. The owner is no longer running but the circuit is still OPEN (its recovery has not
///    run: the recovery rule is disabled for the scenario): a new alarm execution takes the
///    circuit over instead of standing aside, and closes it.
async fn takeover_from_a_stopped_owner(d: &Deployment) -> Result<Vec<Sent>> {
    let (sent, first) = outage_and_open(d, "s8-takeover", 10).await?;
    let rules = recovery_rules(d).await?;
    set_rules(d, &rules, false).await?;
    let outcome = async {
        stop_and_wait(d, &first).await?;
        let circuit = d.circuit().await?.context("no circuit item")?;
        ensure!(
            circuit.state == "OPEN" && circuit.owner.as_deref() == Some(first.as_str()),
            "cannot stage a stranded circuit: with the recovery rule disabled the stopped \
             owner's circuit should still be OPEN, found {circuit:?}"
        );
        let opened = open_circuit(d, Starts::One).await?;
        ensure!(opened.owner != first, "the owner did not change");
        set_rules(d, &rules, true).await?;
        d.outage(false).await?;
        closes(d, &opened.owner).await
    }
    .await;
    if let Err(e) = set_rules(d, &rules, true).await {
        println!("  takeover: re-enabling the recovery rule failed: {e:#}");
    }
    outcome?;
    Ok(sent)
}

/// The consumer's timeout in the hanging scenario: above 120 s, so that a controller with a
/// fixed 120 s of its own would be cut off mid-probe.
const HANGING_TIMEOUT_SECONDS: i32 = 125;

/// 9. The consumer's dependency hangs while the circuit is open: the consumer's timeout is
///    125 s and it sleeps far longer. The probe waits for it and judges the silence a failed
///    probe; the circuit stays open (no failsafe) and closes once the consumer answers again.
async fn hanging_consumer(d: &Deployment) -> Result<Vec<Sent>> {
    // The breaker reads the consumer's timeout when it opens the circuit.
    xtask::consumer::configure(&d.lambda, d.function(), &[], Some(HANGING_TIMEOUT_SECONDS)).await?;
    let (sent, owner) = outage_and_open(d, "s9-hanging", 5).await?;
    let hang = [
        ("SHOULD_ERROR", "false".to_string()),
        ("LATENCY_MS", "600000".to_string()),
    ];
    xtask::consumer::configure(&d.lambda, d.function(), &hang, None).await?;
    let hung_since = Instant::now();
    // A probe that waited longer than 120 s, and failed.
    let waited = eventually(
        "a probe that waited out the hanging consumer",
        Duration::from_secs(400),
        || async {
            let steps = breaker::history(&d.sfn, &owner).await?;
            Ok(steps
                .iter()
                .filter(|s| s.name == "Probe")
                .filter_map(|s| Some((s.exited_ms? - s.entered_ms, s.output.clone()?)))
                .find(|(took, _)| *took > 120_000)
                .map(|(took, output)| (took, output["circuit"].clone())))
        },
    )
    .await?;
    let (took, circuit) = waited;
    ensure!(
        circuit["last_probe"] == "Failed" && circuit["next"] == "Backoff",
        "a hanging consumer is a failed probe: {circuit}"
    );
    println!(
        "  hanging-consumer: a probe waited {:.0}s and failed ({})",
        took as f64 / 1000.0,
        circuit["reason"]
    );
    let states = breaker::visited_states(&d.sfn, &owner).await?;
    ensure!(
        !states.iter().any(|s| s == "Failsafe"),
        "the circuit stays open: {states:?}"
    );
    ensure!(d.consumer_mapping().await?.state == "Disabled");

    let heal = [("LATENCY_MS", "0".to_string())];
    xtask::consumer::configure(&d.lambda, d.function(), &heal, Some(3)).await?;
    println!(
        "  hanging-consumer: healed after {:.0}s",
        hung_since.elapsed().as_secs_f64()
    );
    closes(d, &owner).await?;
    Ok(sent)
}
