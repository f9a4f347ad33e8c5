//! Issue 9, "never strand a consumer", on a local emulator: whatever happens while a circuit is
//! open (a deploy of the consumer, a second mapping, an operator stopping the execution or
//! re-enabling the mapping, a mapping being updated at the close, duplicate and late alarm
//! events), the consumer ends up reading its queue again, with the configuration it was
//! last given, and no message is lost.
//!
//! One deployed stack serves every scenario (a deploy costs a minute or more). Each scenario
//! is its own `async fn`, returns the messages it sent, and is followed by the same invariants
//! ([`invariants`]), the last of which opens and closes the circuit once more. A failed
//! scenario is reported, the stack is put back as well as it can be ([`reset`]), and the next
//! scenario runs; the test fails at the end, listing every failed scenario.
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
use xtask::stack::{Deployment, Parameters};
use xtask::status;
use xtask::traffic::{self, Sent};
use xtask::wait::eventually;

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
    let example: Parameters = vec![
        ("VisibilityTimeoutSeconds", "5".into()),
        ("ConsumerTimeoutSeconds", "3".into()),
        ("MaxReceiveCount", "1000".into()),
    ];
    let breaker: Parameters = vec![
        ("BackoffBaseSeconds", "1".into()),
        ("BackoffCapSeconds", "2".into()),
        ("SettleTimeoutSeconds", "20".into()),
        ("RetentionMarginSeconds", "60".into()),
        // The alarm can never trip on the outages staged here: the scenarios raise it with
        // SetAlarmState and start the executions themselves.
        ("AlarmThreshold", "1000000".into()),
        ("RejitterEnabled", "true".into()),
        ("MinDelaySeconds", "1".into()),
        ("MaxDelaySeconds", "3".into()),
        ("RejitterMaxSeconds", "60".into()),
        ("MaxCircuitsPerHour", "0".into()),
    ];
    Deployment::start(&example, &breaker)
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn never_strand_a_consumer() -> Result<()> {
    let (runtime, d) = deploy()?;
    let failed = runtime.block_on(async {
        let mut failed = Vec::new();
        let d = &d;
        run(d, "deploy-during-open", deploy_during_open(d), &mut failed).await;
        run(d, "second-mapping", second_mapping_mid_open(d), &mut failed).await;
        run(d, "stop-while-probing", stop_while_probing(d), &mut failed).await;
        run(
            d,
            "stop-while-rejitter",
            stop_while_rejittering(d),
            &mut failed,
        )
        .await;
        run(
            d,
            "operator-re-enables",
            operator_re_enables(d),
            &mut failed,
        )
        .await;
        run(d, "updating-at-close", updating_at_close(d), &mut failed).await;
        run(
            d,
            "duplicate-and-late",
            duplicate_and_late_alarms(d),
            &mut failed,
        )
        .await;
        run(d, "takeover", takeover_from_a_stopped_owner(d), &mut failed).await;
        failed
    });
    if !failed.is_empty() {
        bail!(
            "{} scenario(s) failed:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    Ok(())
}

/// Runs one scenario, then the invariants; reports, and on failure puts the stack back.
async fn run(
    d: &Deployment,
    name: &str,
    scenario: impl Future<Output = Result<Vec<Sent>>>,
    failed: &mut Vec<String>,
) {
    let started = Instant::now();
    let outcome = async {
        let known = execution_arns(d).await?;
        let sent = scenario.await?;
        invariants(d, name, &sent, &known)
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

// ---------------------------------------------------------------------------------------
// Invariants
// ---------------------------------------------------------------------------------------

/// What every scenario must leave behind: every message it sent processed (by fingerprint)
/// or in the DLQ and the queue drained; the consumer's mapping Enabled with its original
/// configuration; the rejitter off; the circuit not OPEN; the alarm not in ALARM unless a
/// running execution owns the circuit; no execution of the scenario failed or still running;
/// and a second outage afterwards opens the circuit again, which then closes.
async fn invariants(
    d: &Deployment,
    name: &str,
    sent: &[Sent],
    known: &HashSet<String>,
) -> Result<()> {
    eventually(
        "the consumer's mapping Enabled and the circuit not OPEN",
        RECOVERY,
        || async {
            let mapping = d.consumer_mapping().await?.state;
            let circuit = circuit_state(d).await?;
            Ok((mapping == "Enabled" && circuit != "OPEN").then_some(()))
        },
    )
    .await?;
    original_configuration(&d.consumer_mapping().await?)?;
    let rejitter = d.rejitter_mapping().await?;
    ensure!(rejitter.state == "Disabled", "rejitter: {rejitter:?}");
    alarm_not_raised_without_an_owner(d).await?;
    all_processed(d, sent).await?;

    // A second outage afterwards opens the circuit again, and it closes again.
    let (again, owner) = outage_and_open(d, &format!("{name}-again"), 3).await?;
    d.outage(false).await?;
    closes(d, &owner).await?;
    all_processed(d, &again).await?;
    ensure!(circuit_state(d).await? == "CLOSED");
    original_configuration(&d.consumer_mapping().await?)?;
    alarm_not_raised_without_an_owner(d).await?;

    // Every execution started during the scenario ended, none failed.
    let ended = eventually(
        "every execution of the scenario to end",
        RECOVERY,
        || async {
            let new: Vec<breaker::Execution> =
                breaker::executions(&d.sfn, &d.breaker["StateMachineArn"])
                    .await?
                    .into_iter()
                    .filter(|e| !known.contains(&e.arn))
                    .collect();
            Ok((!new.iter().any(|e| e.status == ExecutionStatus::Running)).then_some(new))
        },
    )
    .await?;
    let bad: Vec<&breaker::Execution> = ended
        .iter()
        .filter(|e| {
            !matches!(
                e.status,
                ExecutionStatus::Succeeded | ExecutionStatus::Aborted
            )
        })
        .collect();
    ensure!(bad.is_empty(), "executions that did not succeed: {bad:?}");
    Ok(())
}

fn original_configuration(mapping: &Mapping) -> Result<()> {
    ensure!(
        mapping.batch_size == Some(BATCH_SIZE)
            && mapping.function_response_types == [REPORT_BATCH_ITEM_FAILURES],
        "the consumer's mapping must keep BatchSize {BATCH_SIZE} and FunctionResponseTypes \
         [{REPORT_BATCH_ITEM_FAILURES}]: {mapping:?}"
    );
    Ok(())
}

/// The alarm is in ALARM only while a running execution owns an OPEN circuit.
async fn alarm_not_raised_without_an_owner(d: &Deployment) -> Result<()> {
    eventually(
        "the alarm out of ALARM (no running execution owns the circuit)",
        Duration::from_secs(60),
        || async {
            if d.alarm().await?.value != "ALARM" {
                return Ok(Some(()));
            }
            let Some(circuit) = d.circuit().await? else {
                return Ok(None);
            };
            let owned = match (&circuit.state[..], &circuit.owner) {
                ("OPEN", Some(owner)) => {
                    breaker::status(&d.sfn, owner).await? == ExecutionStatus::Running
                }
                _ => false,
            };
            Ok(owned.then_some(()))
        },
    )
    .await
}

/// Waits until every message of `sent` was processed (by fingerprint) or is in the DLQ, and
/// the queue is empty (visible, in flight and delayed).
async fn all_processed(d: &Deployment, sent: &[Sent]) -> Result<()> {
    let wanted: HashSet<&str> = sent.iter().map(|s| s.fingerprint.as_str()).collect();
    let last = std::cell::RefCell::new(String::new());
    let done = eventually("every message processed or dead-lettered", TO_DRAIN, || {
        let wanted = &wanted;
        let last = &last;
        async move {
            let processed: HashSet<String> = traffic::processed_fingerprints(&d.logs, d.function())
                .await?
                .into_iter()
                .collect();
            let depth = status::queue_depth(&d.sqs, d.queue()).await?;
            let mut missing: Vec<&str> = wanted
                .iter()
                .copied()
                .filter(|f| !processed.contains(*f))
                .collect();
            if !missing.is_empty() {
                let dlq = &d.example["DeadLetterQueueUrl"];
                if status::queue_depth(&d.sqs, dlq).await?.total() > 0 {
                    let dead = dead_letter_fingerprints(d).await?;
                    missing.retain(|f| !dead.contains(*f));
                }
            }
            *last.borrow_mut() = format!(
                "{} of {} missing, queue {depth:?}",
                missing.len(),
                wanted.len()
            );
            Ok((missing.is_empty() && depth.total() == 0).then_some(()))
        }
    })
    .await;
    done.with_context(|| format!("last seen: {}", last.borrow()))
}

/// The fingerprints of the messages in the DLQ. Each is received (hidden for 30 s while the
/// DLQ is read through) and made visible again at once.
async fn dead_letter_fingerprints(d: &Deployment) -> Result<HashSet<String>> {
    let dlq = &d.example["DeadLetterQueueUrl"];
    let mut fingerprints = HashSet::new();
    let mut handles = Vec::new();
    for _ in 0..100 {
        let out = d
            .sqs
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(10)
            .visibility_timeout(30)
            .message_attribute_names("All")
            .send()
            .await
            .context("ReceiveMessage from the DLQ")?;
        if out.messages().is_empty() {
            break;
        }
        for m in out.messages() {
            let attributes: BTreeMap<String, OutAttribute> = m
                .message_attributes()
                .into_iter()
                .flatten()
                .map(|(name, a)| {
                    let value = match a.binary_value() {
                        Some(b) => AttributeValue::Binary(b.as_ref().to_vec()),
                        None => AttributeValue::String(a.string_value().unwrap_or_default().into()),
                    };
                    let attribute = OutAttribute {
                        data_type: a.data_type().to_string(),
                        value,
                    };
                    (name.clone(), attribute)
                })
                .collect();
            let message = traffic::Message {
                body: m.body().unwrap_or_default().to_string(),
                attributes,
            };
            fingerprints.insert(message.fingerprint());
            handles.extend(m.receipt_handle().map(str::to_string));
        }
    }
    for handle in handles {
        d.sqs
            .change_message_visibility()
            .queue_url(dlq)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await
            .context("ChangeMessageVisibility in the DLQ")?;
    }
    Ok(fingerprints)
}

/// After a failed scenario: puts the stack back as well as it can for the next one, and
/// reports (never fails on) what it could not.
async fn reset(d: &Deployment) {
    let report = |what: &str, outcome: Result<()>| {
        if let Err(e) = outcome {
            println!("  reset: {what}: {e:#}");
        }
    };
    report("healing the consumer", d.outage(false).await);
    if let Ok(rules) = recovery_rules(d).await {
        report(
            "enabling the recovery rule",
            set_rules(d, &rules, true).await,
        );
    }
    let stopping = async {
        for e in breaker::executions(&d.sfn, &d.breaker["StateMachineArn"]).await? {
            if e.status == ExecutionStatus::Running {
                breaker::stop(&d.sfn, &e.arn, "xtask: reset after a failed scenario").await?;
            }
        }
        Ok(())
    };
    report("stopping running executions", stopping.await);
    let recovered = eventually("the circuit not OPEN", RECOVERY, || async {
        Ok((circuit_state(d).await? != "OPEN").then_some(()))
    })
    .await;
    if recovered.is_err() {
        // Last resort: no circuit at all, so the next scenario can open one.
        let deleting = async {
            use aws_sdk_dynamodb::types::AttributeValue as Ddb;
            d.dynamodb
                .delete_item()
                .table_name(&d.breaker["CircuitTableName"])
                .key("mapping_id", Ddb::S(d.mapping().to_string()))
                .send()
                .await
                .context("DeleteItem")?;
            Ok(())
        };
        report("the circuit stayed OPEN; deleting its item", deleting.await);
    }
    let mappings = async {
        for m in breaker::queue_mappings(&d.lambda, &d.example["QueueArn"]).await? {
            if m.function_name() == d.function() && m.uuid != d.mapping() {
                delete_mapping(d, &m.uuid).await?;
            }
        }
        d.lambda
            .update_event_source_mapping()
            .uuid(d.mapping())
            .enabled(true)
            .batch_size(BATCH_SIZE)
            .function_response_types(FunctionResponseType::ReportBatchItemFailures)
            .send()
            .await
            .context("UpdateEventSourceMapping")?;
        let rejitter = d.rejitter_mapping().await?;
        if rejitter.state != "Disabled" {
            d.lambda
                .update_event_source_mapping()
                .uuid(&rejitter.uuid)
                .enabled(false)
                .send()
                .await
                .context("UpdateEventSourceMapping (rejitter)")?;
        }
        Ok(())
    };
    report("restoring the mappings", mappings.await);
    report(
        "resetting the alarm",
        d.set_alarm("OK", "xtask: reset after a failed scenario")
            .await,
    );
    let drained = eventually("the queue to drain", TO_DRAIN, || async {
        Ok((status::queue_depth(&d.sqs, d.queue()).await?.total() == 0).then_some(()))
    })
    .await;
    report("draining the queue", drained);
}

// ---------------------------------------------------------------------------------------
// Opening and closing
// ---------------------------------------------------------------------------------------

/// Starts the outage, sends `count` messages, and opens the circuit ([`open_circuit`]).
/// Returns the messages and the owner execution.
async fn outage_and_open(
    d: &Deployment,
    prefix: &str,
    count: usize,
) -> Result<(Vec<Sent>, String)> {
    d.outage(true).await?;
    let sent = traffic::send(&d.sqs, d.queue(), prefix, count).await?;
    let opened = open_circuit(d, Starts::One).await?;
    Ok((sent, opened.owner))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Starts {
    One,
    /// Two executions with the same event, started concurrently.
    TwoAtOnce,
}

/// An open circuit, as [`open_circuit`] left it.
#[derive(Debug)]
struct Opened {
    /// The execution that owns the circuit (the circuit item's `owner`).
    owner: String,
    /// The executions the test started, all with the alarm event of `time`.
    ours: Vec<String>,
    /// The alarm event's time.
    time: String,
    /// Every other execution that started meanwhile (the test's, the alarm bridge's) and
    /// ended in AnotherExecutionOwnsCircuit.
    stood_aside: Vec<String>,
}

/// Opens the circuit as AWS would: the alarm goes to ALARM (SetAlarmState) and the alarm
/// event starts an execution (`starts`; the alarm bridge starts one more, see the module's
/// documentation). Waits until one execution owns the circuit, is probing (WaitBeforeProbe)
/// and has the consumer's mapping Disabled, and until every other new execution has stood
/// aside. A circuit left OPEN by an owner that no longer runs may be taken over.
async fn open_circuit(d: &Deployment, starts: Starts) -> Result<Opened> {
    let before = d.circuit().await?;
    if let Some(c) = &before {
        if c.state == "OPEN" {
            let running = match &c.owner {
                Some(owner) => breaker::status(&d.sfn, owner).await? == ExecutionStatus::Running,
                None => false,
            };
            ensure!(
                !running,
                "the circuit is already open, owned by a running execution: {c:?}"
            );
        }
    }
    // The breaker ignores an ALARM event older than the circuit's last close, and the event's
    // time counts whole seconds: start in a later second than the last change.
    let last_change = before.as_ref().and_then(|c| c.since_ms).unwrap_or(0);
    eventually(
        "a second later than the circuit's last change",
        Duration::from_secs(10),
        || async {
            let now_s = epoch_ms(SystemTime::now()).div_euclid(1000);
            Ok((now_s * 1000 > last_change).then_some(()))
        },
    )
    .await?;

    let known = execution_arns(d).await?;
    d.set_alarm(
        "ALARM",
        "xtask: the consumer's errors crossed the threshold",
    )
    .await?;
    let time = breaker::utc_time(SystemTime::now());
    let ours: Vec<String> = match starts {
        Starts::One => vec![d.start_alarm_execution_at(&time).await?],
        Starts::TwoAtOnce => {
            let (a, b) = tokio::join!(
                d.start_alarm_execution_at(&time),
                d.start_alarm_execution_at(&time)
            );
            vec![a?, b?]
        }
    };

    let owner = eventually(
        "a running execution to own the OPEN circuit",
        Duration::from_secs(90),
        || async {
            let Some(c) = d.circuit().await? else {
                return Ok(None);
            };
            // Only a new execution counts: a stopped owner of a circuit left OPEN is known.
            let Some(owner) = c.owner.filter(|o| c.state == "OPEN" && !known.contains(o)) else {
                return Ok(None);
            };
            let status = breaker::status(&d.sfn, &owner).await?;
            ensure!(
                status == ExecutionStatus::Running,
                "the owner {owner} ended {status:?} right after opening"
            );
            Ok(Some(owner))
        },
    )
    .await?;
    eventually(
        "the owner probing (WaitBeforeProbe) with the consumer's mapping Disabled",
        Duration::from_secs(90),
        || async {
            let states = breaker::visited_states(&d.sfn, &owner).await?;
            let mapping = d.consumer_mapping().await?.state;
            Ok(
                (states.iter().any(|s| s == "WaitBeforeProbe") && mapping == "Disabled")
                    .then_some(()),
            )
        },
    )
    .await?;

    // Every other new execution stands aside. The alarm bridge's one normally shows up within
    // a second of SetAlarmState; it is waited for a while, but not required.
    let others_done = |at_least: usize| {
        let known = &known;
        let owner = &owner;
        async move {
            let others: Vec<breaker::Execution> =
                breaker::executions(&d.sfn, &d.breaker["StateMachineArn"])
                    .await?
                    .into_iter()
                    .filter(|e| !known.contains(&e.arn) && &e.arn != owner)
                    .collect();
            let done = others.len() >= at_least
                && others.iter().all(|e| e.status != ExecutionStatus::Running);
            Ok(done.then_some(others))
        }
    };
    let expected = ours.len(); // ours, less the owner if it is ours, plus the bridge's
    let others = match within(Duration::from_secs(20), || others_done(expected)).await? {
        Some(others) => others,
        None => {
            eventually(
                "the other new executions to end",
                Duration::from_secs(60),
                || others_done(0),
            )
            .await?
        }
    };
    let mut stood_aside = Vec::new();
    for e in others {
        let states = breaker::visited_states(&d.sfn, &e.arn).await?;
        ensure!(
            e.status == ExecutionStatus::Succeeded
                && states.last().map(String::as_str) == Some("AnotherExecutionOwnsCircuit")
                && !states.iter().any(|s| s == "WaitBeforeProbe"),
            "execution {} should have stood aside (owner {owner}): {:?} {states:?}",
            e.arn,
            e.status
        );
        stood_aside.push(e.arn);
    }
    Ok(Opened {
        owner,
        ours,
        time,
        stood_aside,
    })
}

/// Waits for the owner (the consumer healthy again) to close the circuit: CircuitClosed,
/// mapping Enabled, circuit CLOSED.
async fn closes(d: &Deployment, owner: &str) -> Result<()> {
    let end = breaker::finished(&d.sfn, owner, TO_CLOSE).await?;
    let states = breaker::visited_states(&d.sfn, owner).await?;
    ensure!(end == ExecutionStatus::Succeeded, "{end:?}: {states:?}");
    ensure!(
        states.last().map(String::as_str) == Some("CircuitClosed"),
        "{states:?}"
    );
    let mapping = d.consumer_mapping().await?;
    ensure!(mapping.state == "Enabled", "after the close: {mapping:?}");
    ensure!(circuit_state(d).await? == "CLOSED");
    Ok(())
}

/// Stops `execution` as an operator would and waits until it is ABORTED.
async fn stop_and_wait(d: &Deployment, execution: &str) -> Result<()> {
    breaker::stop(&d.sfn, execution, "xtask: an operator stopped it").await?;
    let end = breaker::finished(&d.sfn, execution, Duration::from_secs(60)).await?;
    ensure!(end == ExecutionStatus::Aborted, "stopped, it ended {end:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// The circuit item's state, `NONE` without an item.
async fn circuit_state(d: &Deployment) -> Result<String> {
    Ok(d.circuit()
        .await?
        .map(|c| c.state)
        .unwrap_or_else(|| "NONE".into()))
}

async fn execution_arns(d: &Deployment) -> Result<HashSet<String>> {
    Ok(breaker::executions(&d.sfn, &d.breaker["StateMachineArn"])
        .await?
        .into_iter()
        .map(|e| e.arn)
        .collect())
}

/// UpdateEventSourceMapping of the configuration only, as a deploy would (never `Enabled`).
async fn update_mapping(
    d: &Deployment,
    uuid: &str,
    batch_size: Option<i32>,
    response_types: Option<Vec<FunctionResponseType>>,
) -> Result<()> {
    d.lambda
        .update_event_source_mapping()
        .uuid(uuid)
        .set_batch_size(batch_size)
        .set_function_response_types(response_types)
        .send()
        .await
        .context("UpdateEventSourceMapping")?;
    Ok(())
}

/// Puts the consumer's mapping configuration back to the example stack's.
async fn restore_mapping_configuration(d: &Deployment) -> Result<()> {
    update_mapping(
        d,
        d.mapping(),
        Some(BATCH_SIZE),
        Some(vec![FunctionResponseType::ReportBatchItemFailures]),
    )
    .await?;
    original_configuration(&d.consumer_mapping().await?)
}

async fn delete_mapping(d: &Deployment, uuid: &str) -> Result<()> {
    d.lambda
        .delete_event_source_mapping()
        .uuid(uuid)
        .send()
        .await
        .context("DeleteEventSourceMapping")?;
    eventually(
        "the mapping to be deleted",
        Duration::from_secs(60),
        || async {
            let left = breaker::queue_mappings(&d.lambda, &d.example["QueueArn"]).await?;
            Ok((!left.iter().any(|m| m.uuid == uuid)).then_some(()))
        },
    )
    .await
}

/// The EventBridge rules of the default bus that match "Step Functions Execution Status
/// Change" events (the breaker's recovery).
async fn recovery_rules(d: &Deployment) -> Result<Vec<String>> {
    let mut rules = Vec::new();
    let mut token = None;
    loop {
        let page = d
            .events
            .list_rules()
            .event_bus_name("default")
            .set_next_token(token)
            .send()
            .await
            .context("ListRules")?;
        rules.extend(
            page.rules()
                .iter()
                .filter(|r| {
                    r.event_pattern()
                        .is_some_and(|p| p.contains("Step Functions Execution Status Change"))
                })
                .filter_map(|r| r.name().map(str::to_string)),
        );
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    ensure!(
        !rules.is_empty(),
        "no rule on \"Step Functions Execution Status Change\" (the recovery) is deployed"
    );
    Ok(rules)
}

async fn set_rules(d: &Deployment, rules: &[String], enabled: bool) -> Result<()> {
    for rule in rules {
        if enabled {
            d.events
                .enable_rule()
                .name(rule)
                .send()
                .await
                .context("EnableRule")?;
        } else {
            d.events
                .disable_rule()
                .name(rule)
                .send()
                .await
                .context("DisableRule")?;
        }
    }
    Ok(())
}

/// Like [`eventually`], but a timeout is an answer (None), not an error.
async fn within<T, F, Fut>(timeout: Duration, mut check: F) -> Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(Some(value));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
