//! Slow start (the half-open circuit) on a local emulator, which honours a mapping's
//! `MaximumConcurrency`: after a healthy probe the consumer's mapping is enabled at a cap of
//! 2, doubled step by step back to the mapping's own cap (or removed, if it had none); a
//! consumer failure during the ramp reopens the circuit in the same execution and loses
//! nothing; a cap an operator sets during the ramp is kept.

use anyhow::{ensure, Context, Result};
use aws_sdk_sfn::types::ExecutionStatus;
use std::time::{Duration, Instant};
use xtask::breaker;
use xtask::stack::{fast_breaker, fast_example, Deployment};
use xtask::traffic::{self, Sent};
use xtask::wait::eventually;

fn deploy(slow_start_seconds: u32) -> Result<(tokio::runtime::Runtime, Deployment)> {
    let mut breaker = fast_breaker();
    breaker.extend([
        ("SlowStartSeconds", slow_start_seconds.to_string()),
        // The tests start their executions themselves.
        ("AlarmThreshold", "1000000".into()),
        ("MaxCircuitsPerHour", "0".into()),
    ]);
    Deployment::start(&fast_example(), &breaker)
}

/// The consumer mapping's caps as they changed, read every 200 ms.
#[derive(Default)]
struct Caps(Vec<Option<i32>>);

impl Caps {
    /// Reads the cap now, notes it if it changed, and returns it.
    async fn read(&mut self, d: &Deployment) -> Result<Option<i32>> {
        let now = d.consumer_mapping().await?.maximum_concurrency;
        if self.0.last() != Some(&now) {
            self.0.push(now);
        }
        Ok(now)
    }
}

/// Opens a circuit on a failing consumer with `count` messages queued, heals it once the
/// circuit is open, and returns the execution and what was sent.
async fn open_and_heal(d: &Deployment, prefix: &str, count: usize) -> Result<(String, Vec<Sent>)> {
    d.outage(true).await?;
    let sent = traffic::send(&d.sqs, d.queue(), prefix, count).await?;
    let execution = d.start_alarm_execution().await?;
    eventually("the circuit to open", Duration::from_secs(60), || async {
        let states = breaker::visited_states(&d.sfn, &execution).await?;
        Ok(states.iter().any(|s| s == "WaitBeforeProbe").then_some(()))
    })
    .await?;
    d.outage(false).await?;
    Ok((execution, sent))
}

/// Follows the cap until the execution ends, calling `act` with each reading; returns the
/// execution's end.
async fn follow<F>(
    d: &Deployment,
    execution: &str,
    caps: &mut Caps,
    timeout: Duration,
    mut act: F,
) -> Result<ExecutionStatus>
where
    F: FnMut(Option<i32>) -> Option<Option<i32>>,
{
    let started = Instant::now();
    loop {
        let cap = caps.read(d).await?;
        if let Some(operator) = act(cap) {
            breaker::set_maximum_concurrency(&d.lambda, d.mapping(), operator).await?;
        }
        let status = breaker::status(&d.sfn, execution).await?;
        if status != ExecutionStatus::Running {
            caps.read(d).await?;
            return Ok(status);
        }
        ensure!(
            started.elapsed() < timeout,
            "the execution still runs after {timeout:?}; caps so far {:?}",
            caps.0
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn count(states: &[String], name: &str) -> usize {
    states.iter().filter(|s| *s == name).count()
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn the_ramp_doubles_back_to_the_mapping_s_own_cap_and_keeps_an_operator_s() -> Result<()> {
    // A cap of 10: levels 2, 4 and 8, four seconds each, then 10 again.
    let (runtime, d) = deploy(12)?;
    runtime.block_on(async {
        breaker::set_maximum_concurrency(&d.lambda, d.mapping(), Some(10)).await?;
        let (first, mut sent) = open_and_heal(&d, "ramp", 20).await?;
        let mut caps = Caps::default();
        let end = follow(&d, &first, &mut caps, Duration::from_secs(120), |_| None).await?;
        ensure!(end == ExecutionStatus::Succeeded, "{end:?}");
        let ramp = caps.0.strip_prefix(&[Some(10)]).unwrap_or(&caps.0);
        ensure!(
            ramp == [Some(2), Some(4), Some(8), Some(10)],
            "the cap went {:?}",
            caps.0
        );
        let states = breaker::visited_states(&d.sfn, &first).await?;
        ensure!(
            count(&states, "StartSlowStart") == 1
                && count(&states, "RampUp") == 3
                && count(&states, "WaitRampStep") == 3
                && states.last().map(String::as_str) == Some("CircuitClosed"),
            "{states:?}"
        );
        let mapping = d.consumer_mapping().await?;
        ensure!(mapping.state == "Enabled", "{mapping:?}");

        // The second circuit's ramp: the owners set 7 as soon as the breaker's 2 is on.
        let (second, more) = open_and_heal(&d, "operator", 10).await?;
        sent.extend(more);
        let mut caps = Caps::default();
        let mut set = false;
        let end = follow(&d, &second, &mut caps, Duration::from_secs(120), |cap| {
            (cap == Some(2) && !std::mem::replace(&mut set, true)).then_some(Some(7))
        })
        .await?;
        ensure!(end == ExecutionStatus::Succeeded, "{end:?}");
        ensure!(set, "the ramp never set 2: {:?}", caps.0);
        let mapping = d.consumer_mapping().await?;
        ensure!(
            mapping.maximum_concurrency == Some(7) && mapping.state == "Enabled",
            "the operator's 7 must stay: {mapping:?}, caps {:?}",
            caps.0
        );
        let circuit = d.circuit().await?.context("no circuit item")?;
        ensure!(circuit.state == "CLOSED", "{circuit:?}");
        d.every_message_processed(&sent).await
    })
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn a_failure_during_the_ramp_reopens_the_circuit_and_an_uncapped_mapping_ends_uncapped(
) -> Result<()> {
    // No cap: levels 2 to 512, three seconds each, then the cap is removed.
    let (runtime, d) = deploy(27)?;
    runtime.block_on(async {
        let (execution, mut sent) = open_and_heal(&d, "before", 20).await?;
        let mut caps = Caps::default();
        let started = Instant::now();
        while caps.read(&d).await? != Some(4) {
            ensure!(
                started.elapsed() < Duration::from_secs(90),
                "the ramp never reached 4: {:?}",
                caps.0
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The dependency fails again while the circuit is half-open.
        d.outage(true).await?;
        sent.extend(traffic::send(&d.sqs, d.queue(), "during", 20).await?);
        eventually(
            "the failure to reopen the circuit",
            Duration::from_secs(60),
            || async {
                let states = breaker::visited_states(&d.sfn, &execution).await?;
                Ok(states.iter().any(|s| s == "ReopenCircuit").then_some(()))
            },
        )
        .await?;
        eventually(
            "the reopened circuit to disable the mapping",
            Duration::from_secs(30),
            || async { Ok((d.mapping_state().await? == "Disabled").then_some(())) },
        )
        .await?;
        // Probing resumes; heal, and the same execution ramps again and closes.
        d.outage(false).await?;
        let end = follow(&d, &execution, &mut caps, Duration::from_secs(180), |_| {
            None
        })
        .await?;
        ensure!(end == ExecutionStatus::Succeeded, "{end:?}");
        let states = breaker::visited_states(&d.sfn, &execution).await?;
        ensure!(
            count(&states, "StartSlowStart") == 2 && count(&states, "ReopenCircuit") == 1,
            "{states:?}"
        );
        let mapping = d.consumer_mapping().await?;
        ensure!(
            mapping.state == "Enabled" && mapping.maximum_concurrency.is_none(),
            "an uncapped mapping ends uncapped: {mapping:?}, caps {:?}",
            caps.0
        );
        ensure!(
            caps.0.last() == Some(&None) && caps.0.contains(&Some(512)),
            "the second ramp went to 512, then the cap was removed: {:?}",
            caps.0
        );
        d.every_message_processed(&sent).await
    })
}
