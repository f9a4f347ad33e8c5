//! The created alarm sees every way a consumer fails, on a local emulator (the emulator gap
//! bridge publishes the queue's `AWS/SQS` metrics and evaluates the metric-math and composite
//! alarms as CloudWatch does): with `AlarmSignal` `any` (the default) and 10 s periods, a
//! consumer that raises, one that returns its records in `batchItemFailures`, one that fails
//! half of them and one that hangs each open the circuit, which closes once the consumer is
//! healthy, with nothing lost; a healthy consumer with a poison message and slow batches never
//! opens it; the slow start reopens on failed records; a composite alarm of the user's own
//! opens and re-arms; a dead-letter queue's depth as the alarm does not loop.

use anyhow::{ensure, Result};
use aws_sdk_sfn::types::ExecutionStatus;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xtask::stack::{fast_breaker, Deployment, Parameters};
use xtask::traffic::{self, Sent};
use xtask::wait::eventually;
use xtask::{breaker, consumer};

/// The created alarms' period here (60 s on AWS).
const PERIOD_S: u64 = 10;

/// A consumer that may hang: its timeout is long, so that the hang is seen well before it.
fn example() -> Parameters {
    vec![
        ("VisibilityTimeoutSeconds", "70".into()),
        ("ConsumerTimeoutSeconds", "60".into()),
        ("MaxReceiveCount", "1000".into()),
    ]
}

/// The breaker with the default signal (`any`) on 10 s periods.
fn any_signal(extra: &[(&'static str, &str)]) -> Parameters {
    let mut breaker = fast_breaker();
    breaker.extend([
        ("AlarmSignal", "any".to_string()),
        ("AlarmPeriodSeconds", PERIOD_S.to_string()),
        ("MaxCircuitsPerHour", "0".to_string()),
    ]);
    breaker.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    breaker
}

/// Sends `rate` messages a second to the consumer's queue until stopped; returns what it sent.
struct Steady {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<Vec<Sent>>>,
}

impl Steady {
    fn start(d: &Deployment, prefix: &'static str, rate: usize) -> Steady {
        let stop = Arc::new(AtomicBool::new(false));
        let (sqs, queue, flag) = (d.sqs.clone(), d.queue().to_string(), stop.clone());
        let task = tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut n = 0;
            while !flag.load(Ordering::Relaxed) {
                let batch = traffic::send(&sqs, &queue, &format!("{prefix}-{n}"), rate).await?;
                sent.extend(batch);
                n += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(sent)
        });
        Steady { stop, task }
    }

    async fn stop(self) -> Result<Vec<Sent>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await?
    }
}

/// Sets the example consumer's variables (`SHOULD_ERROR`, `FAILURE_RATE`, `LATENCY_MS`).
async fn consumer_fails(d: &Deployment, variables: &[(&str, &str)]) -> Result<()> {
    let variables: Vec<(&str, String)> =
        variables.iter().map(|(k, v)| (*k, v.to_string())).collect();
    consumer::configure(&d.lambda, d.function(), &variables, None).await
}

const HEALTHY: [(&str, &str); 3] = [
    ("SHOULD_ERROR", "false"),
    ("FAILURE_RATE", "0"),
    ("LATENCY_MS", "0"),
];

/// The executions that entered `state` and are not in `seen`.
async fn entered(d: &Deployment, state: &str, seen: &HashSet<String>) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for execution in breaker::executions(&d.sfn, &d.breaker["StateMachineArn"]).await? {
        if !seen.contains(&execution.arn)
            && breaker::visited_states(&d.sfn, &execution.arn)
                .await?
                .iter()
                .any(|s| s == state)
        {
            found.push(execution.arn);
        }
    }
    Ok(found)
}

async fn all_executions(d: &Deployment) -> Result<HashSet<String>> {
    Ok(breaker::executions(&d.sfn, &d.breaker["StateMachineArn"])
        .await?
        .into_iter()
        .map(|e| e.arn)
        .collect())
}

/// Waits until no execution runs and the alarm is OK: the last phase's echoes are over.
async fn settled(d: &Deployment) -> Result<()> {
    eventually(
        "the breaker to settle",
        Duration::from_secs(180),
        || async {
            let running = breaker::executions(&d.sfn, &d.breaker["StateMachineArn"])
                .await?
                .iter()
                .any(|e| e.status == ExecutionStatus::Running);
            let alarm = d.alarm().await?;
            Ok(
                (!running && alarm.value == "OK" && d.mapping_state().await? == "Enabled")
                    .then_some(()),
            )
        },
    )
    .await
}

/// One failing shape: the consumer fails as `failing` says under steady traffic; the circuit
/// must open within `open_within`, and close once the consumer is healthy again. Returns the
/// time to open and what was sent.
async fn outage(
    d: &Deployment,
    shape: &'static str,
    failing: &[(&str, &str)],
    open_within: Duration,
) -> Result<(Duration, Vec<Sent>)> {
    settled(d).await?;
    let before = all_executions(d).await?;
    let traffic = Steady::start(d, shape, 3);
    tokio::time::sleep(Duration::from_secs(PERIOD_S)).await;
    let started = Instant::now();
    consumer_fails(d, failing).await?;
    let opened = eventually(
        &format!("the circuit to open on a consumer that {shape}"),
        open_within,
        || async {
            Ok(entered(d, "WaitBeforeProbe", &before)
                .await?
                .into_iter()
                .next())
        },
    )
    .await;
    let took = started.elapsed();
    consumer_fails(d, &HEALTHY).await?;
    let sent = traffic.stop().await?;
    let opened = opened?;
    ensure!(
        d.mapping_state().await? != "Enabled"
            || breaker::status(&d.sfn, &opened).await? != ExecutionStatus::Running,
        "the circuit opened but the consumer's mapping is still Enabled"
    );
    let end = breaker::finished(&d.sfn, &opened, Duration::from_secs(240)).await?;
    ensure!(end == ExecutionStatus::Succeeded, "{shape}: {end:?}");
    let states = breaker::visited_states(&d.sfn, &opened).await?;
    ensure!(
        states.iter().any(|s| s == "CloseCircuit"),
        "{shape}: {states:?}"
    );
    eprintln!(
        "{shape}: the circuit opened {:.0} s into the outage",
        took.as_secs_f64()
    );
    Ok((took, sent))
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn raised_errors_and_failed_records_open_the_circuit() -> Result<()> {
    let (runtime, d) = Deployment::start(&example(), &any_signal(&[]))?;
    runtime.block_on(async {
        let mut sent = Vec::new();
        let (_, more) = outage(
            &d,
            "raises",
            &[("SHOULD_ERROR", "true")],
            Duration::from_secs(90),
        )
        .await?;
        sent.extend(more);
        let (_, more) = outage(
            &d,
            "returns every record in batchItemFailures",
            &[("FAILURE_RATE", "1")],
            Duration::from_secs(90),
        )
        .await?;
        sent.extend(more);
        d.every_message_processed(&sent).await
    })
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn half_failed_records_and_a_hang_open_the_circuit_and_the_slow_start_reopens() -> Result<()> {
    let (runtime, d) = Deployment::start(&example(), &any_signal(&[("SlowStartSeconds", "40")]))?;
    runtime.block_on(async {
        let mut sent = Vec::new();
        let (_, more) = outage(
            &d,
            "returns half of its records in batchItemFailures",
            &[("FAILURE_RATE", "0.5")],
            Duration::from_secs(90),
        )
        .await?;
        sent.extend(more);
        // A hang: the consumer's timeout is 60 s, the stalled alarm's window 3 periods.
        let (took, more) = outage(
            &d,
            "hangs",
            &[("LATENCY_MS", "600000")],
            Duration::from_secs(58),
        )
        .await?;
        sent.extend(more);
        ensure!(
            took < Duration::from_secs(60),
            "the hang was seen only after the consumer's timeout"
        );

        // Half-open: the consumer fails its records again during the slow start.
        settled(&d).await?;
        let before = all_executions(&d).await?;
        let traffic = Steady::start(&d, "ramp", 3);
        consumer_fails(&d, &[("SHOULD_ERROR", "true")]).await?;
        let opened = eventually("a circuit to open", Duration::from_secs(90), || async {
            Ok(entered(&d, "WaitBeforeProbe", &before)
                .await?
                .into_iter()
                .next())
        })
        .await?;
        consumer_fails(&d, &HEALTHY).await?;
        eventually(
            "the slow start to begin",
            Duration::from_secs(120),
            || async {
                Ok(breaker::visited_states(&d.sfn, &opened)
                    .await?
                    .iter()
                    .any(|s| s == "StartSlowStart")
                    .then_some(()))
            },
        )
        .await?;
        consumer_fails(&d, &[("FAILURE_RATE", "1")]).await?;
        let reopened = eventually(
            "the slow start to reopen on failed records",
            Duration::from_secs(60),
            || async {
                Ok(breaker::visited_states(&d.sfn, &opened)
                    .await?
                    .iter()
                    .any(|s| s == "ReopenCircuit")
                    .then_some(()))
            },
        )
        .await;
        consumer_fails(&d, &HEALTHY).await?;
        sent.extend(traffic.stop().await?);
        reopened?;
        let end = breaker::finished(&d.sfn, &opened, Duration::from_secs(240)).await?;
        ensure!(end == ExecutionStatus::Succeeded, "{end:?}");
        d.every_message_processed(&sent).await
    })
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn a_healthy_consumer_with_a_poison_message_and_slow_batches_never_opens_it() -> Result<()> {
    let mut example = example();
    example.extend([
        ("MaxReceiveCount", "3".into()),
        ("VisibilityTimeoutSeconds", "12".into()),
        ("ConsumerTimeoutSeconds", "10".into()),
        ("PoisonMarker", "POISON".into()),
        // Slow but healthy: each batch takes 6 s, within the hang window (3 x 10 s).
        ("LatencyMs", "6000".into()),
    ]);
    let (runtime, d) = Deployment::start(&example, &any_signal(&[]))?;
    runtime.block_on(async {
        let traffic = Steady::start(&d, "steady", 3);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let poison = traffic::send_messages(
            &d.sqs,
            d.queue(),
            &[traffic::Message {
                body: "POISON".into(),
                ..traffic::example_message("poison", 0)
            }],
        )
        .await?;
        // Long enough for every created alarm to evaluate many periods over the slow batches
        // and the poison message's failures, until it reaches the dead-letter queue.
        tokio::time::sleep(Duration::from_secs(90)).await;
        let sent = traffic.stop().await?;
        let executions = all_executions(&d).await?;
        ensure!(
            executions.is_empty(),
            "a healthy consumer opened circuits: {executions:?}"
        );
        ensure!(d.alarm().await?.value != "ALARM", "the alarm is in ALARM");
        let wanted: Vec<Sent> = sent;
        eventually(
            "every healthy message processed",
            Duration::from_secs(120),
            || async {
                let done = traffic::processed_ids(&d.logs, d.function()).await?;
                Ok(wanted
                    .iter()
                    .all(|s| done.contains(&s.message_id))
                    .then_some(()))
            },
        )
        .await?;
        let dead = xtask::status::queue_depth(&d.sqs, &d.example["DeadLetterQueueUrl"]).await?;
        ensure!(
            dead.total() == poison.len() as u64,
            "only the poison message is dead: {dead:?}"
        );
        Ok(())
    })
}
