//! Failure shapes on a local stack: steady traffic to the example consumer, the consumer
//! made to fail one way (raise, return records in `batchItemFailures`, hang), and the
//! breaker watched until its circuit opens and closes. Used by the signal tests and by
//! `cargo xtask bench signals`.

use crate::stack::Deployment;
use crate::traffic::{self, Sent};
use crate::wait::eventually;
use crate::{breaker, consumer};
use anyhow::{ensure, Result};
use aws_sdk_sfn::types::ExecutionStatus;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sends `rate` messages a second to the consumer's queue until stopped.
pub struct Steady {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<Vec<Sent>>>,
}

impl Steady {
    pub fn start(d: &Deployment, prefix: &str, rate: usize) -> Steady {
        Steady::on(&d.sqs, d.queue(), prefix, rate)
    }

    /// Sends `rate` messages a second to the queue `queue_url` until stopped.
    pub fn on(sqs: &aws_sdk_sqs::Client, queue_url: &str, prefix: &str, rate: usize) -> Steady {
        let stop = Arc::new(AtomicBool::new(false));
        let (sqs, queue, flag) = (sqs.clone(), queue_url.to_string(), stop.clone());
        let prefix = prefix.to_string();
        let task = tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut n = 0;
            while !flag.load(Ordering::Relaxed) {
                sent.extend(traffic::send(&sqs, &queue, &format!("{prefix}-{n}"), rate).await?);
                n += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(sent)
        });
        Steady { stop, task }
    }

    /// Stops sending; what was sent.
    pub async fn stop(self) -> Result<Vec<Sent>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await?
    }
}

/// The example consumer's variables for a healthy consumer.
pub const HEALTHY: [(&str, &str); 3] = [
    ("SHOULD_ERROR", "false"),
    ("FAILURE_RATE", "0"),
    ("LATENCY_MS", "0"),
];

/// Sets the example consumer's variables (`SHOULD_ERROR`, `FAILURE_RATE`, `LATENCY_MS`).
pub async fn set_consumer(d: &Deployment, variables: &[(&str, &str)]) -> Result<()> {
    let variables: Vec<(&str, String)> =
        variables.iter().map(|(k, v)| (*k, v.to_string())).collect();
    consumer::configure(&d.lambda, d.function(), &variables, None).await
}

/// Every execution of the breaker so far.
pub async fn all_executions(d: &Deployment) -> Result<HashSet<String>> {
    Ok(breaker::executions(&d.sfn, &d.breaker["StateMachineArn"])
        .await?
        .into_iter()
        .map(|e| e.arn)
        .collect())
}

/// The executions that entered `state` and are not in `seen`.
pub async fn entered(d: &Deployment, state: &str, seen: &HashSet<String>) -> Result<Vec<String>> {
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

/// Waits up to `within` for a circuit to open: an execution not in `before` that reached
/// `WaitBeforeProbe`; returns its ARN.
pub async fn opened(
    d: &Deployment,
    what: &str,
    within: Duration,
    before: &HashSet<String>,
) -> Result<String> {
    eventually(what, within, || async {
        Ok(entered(d, "WaitBeforeProbe", before)
            .await?
            .into_iter()
            .next())
    })
    .await
}

/// Whether an execution of the breaker runs.
pub async fn any_running(d: &Deployment) -> Result<bool> {
    Ok(breaker::executions(&d.sfn, &d.breaker["StateMachineArn"])
        .await?
        .iter()
        .any(|e| e.status == ExecutionStatus::Running))
}

/// Waits until no execution runs, the alarm is OK and the consumer's mapping Enabled: the
/// last outage's echoes are over.
pub async fn settled(d: &Deployment) -> Result<()> {
    eventually(
        "the breaker to settle",
        Duration::from_secs(180),
        || async {
            let running = any_running(d).await?;
            let alarm = d.alarm().await?;
            Ok(
                (!running && alarm.value == "OK" && d.mapping_state().await? == "Enabled")
                    .then_some(()),
            )
        },
    )
    .await
}

/// What one outage showed.
#[derive(Debug)]
pub struct Outage {
    /// From the consumer's first failure to the circuit open (`None`: it never opened).
    pub opened_after: Option<Duration>,
    pub sent: Vec<Sent>,
    /// Executions that opened a circuit.
    pub circuits: usize,
}

/// Under steady traffic (`rate` a second), makes the consumer fail as `failing` says and
/// waits up to `open_within` for a circuit to open; then heals the consumer and, when a
/// circuit opened, waits for it to close.
pub async fn outage(
    d: &Deployment,
    shape: &str,
    failing: &[(&str, &str)],
    rate: usize,
    open_within: Duration,
) -> Result<Outage> {
    let before = all_executions(d).await?;
    let traffic = Steady::start(d, shape, rate);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let started = Instant::now();
    set_consumer(d, failing).await?;
    let opened = opened(
        d,
        &format!("the circuit to open on a consumer that {shape}"),
        open_within,
        &before,
    )
    .await
    .ok();
    let opened_after = opened.as_ref().map(|_| started.elapsed());
    set_consumer(d, &HEALTHY).await?;
    let sent = traffic.stop().await?;
    if let Some(opened) = &opened {
        let end = breaker::finished(&d.sfn, opened, Duration::from_secs(300)).await?;
        ensure!(end == ExecutionStatus::Succeeded, "{shape}: {end:?}");
        let states = breaker::visited_states(&d.sfn, opened).await?;
        ensure!(
            states.iter().any(|s| s == "CloseCircuit"),
            "{shape}: {states:?}"
        );
    }
    let circuits = entered(d, "WaitBeforeProbe", &before).await?.len();
    Ok(Outage {
        opened_after,
        sent,
        circuits,
    })
}
