//! No second circuit on the outage's old errors, on a local emulator with the created alarm in
//! its default shape (3 periods, 2 datapoints to alarm; 10 s periods here, so the test takes
//! minutes, not a quarter of an hour). The alarm opens a circuit; right after the close,
//! the re-armed alarm goes back to ALARM, as CloudWatch's re-evaluation over a window that
//! still holds the outage's errors does, and its event starts an execution: that execution
//! must find every breaching datapoint the event lists from before the close and stand aside
//! (`WaitOutAlarmWindow`, then `RearmAlarm`) with the consumer left enabled. A new outage
//! after the close must still open a circuit, through the alarm bridge's own evaluation.

use anyhow::{ensure, Context, Result};
use aws_sdk_sfn::types::ExecutionStatus;
use std::collections::HashSet;
use std::time::Duration;
use xtask::shapes::{entered, opened};
use xtask::stack::{fast_breaker, fast_example, Deployment};
use xtask::wait::eventually;
use xtask::{breaker, traffic};

/// The created alarm's period here.
const PERIOD_S: u64 = 10;

fn deploy() -> Result<(tokio::runtime::Runtime, Deployment)> {
    let example = fast_example();
    let mut breaker = fast_breaker();
    breaker.extend([
        ("AlarmPeriodSeconds", PERIOD_S.to_string()),
        ("AlarmEvaluationPeriods", "3".into()),
        ("AlarmDatapointsToAlarm", "2".into()),
        ("MaxCircuitsPerHour", "0".into()),
    ]);
    Deployment::start(&example, &breaker)
}

/// Every execution and the states it entered, for a failure's message.
async fn executions_now(d: &Deployment) -> Result<Vec<(String, Vec<String>)>> {
    let mut all = Vec::new();
    for e in breaker::executions(&d.sfn, &d.breaker["StateMachineArn"]).await? {
        let states = breaker::visited_states(&d.sfn, &e.arn).await?;
        all.push((e.arn, states));
    }
    Ok(all)
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn the_outage_s_old_errors_open_no_second_circuit_and_a_new_outage_does() -> Result<()> {
    let (runtime, d) = deploy()?;
    runtime.block_on(async {
        // An outage: failed batches come back every 5 s, so every 10 s period breaches.
        d.outage(true).await?;
        let mut sent = traffic::send(&d.sqs, d.queue(), "first", 30).await?;
        let first = opened(
            &d,
            "the alarm to open a circuit",
            Duration::from_secs(120),
            &HashSet::new(),
        )
        .await?;
        // Heal at once: the circuit closes while the alarm's window still holds the errors.
        d.outage(false).await?;
        let end = breaker::finished(&d.sfn, &first, Duration::from_secs(120)).await?;
        ensure!(end == ExecutionStatus::Succeeded, "{end:?}");

        // CloudWatch re-evaluates the re-armed alarm over a window that still holds those
        // errors: ALARM again, its event listing the datapoints it evaluated. Whether the
        // alarm bridge's evaluation gets there depends on how long the circuit took to close
        // on this machine, so the test delivers that event itself, a period after the close
        // as CloudWatch would: the two periods before the close's breach, the one holding it
        // does not. The execution must see every breaching datapoint predates the close and
        // stand aside.
        let closed = d
            .circuit()
            .await?
            .and_then(|c| c.since_ms)
            .context("the closed circuit has no since_ms")?;
        tokio::time::sleep(Duration::from_secs(PERIOD_S)).await;
        let period_ms = PERIOD_S as i64 * 1000;
        let holding_close = closed / period_ms * period_ms;
        let mut event =
            breaker::alarm_event_now(&d.breaker["AlarmName"], "000000000000", xtask::sam::REGION);
        breaker::with_evaluated_datapoints(
            &mut event,
            "Sum",
            PERIOD_S as u32,
            1.0,
            &[
                (holding_close - 2 * period_ms, 3.0),
                (holding_close - period_ms, 2.0),
                (holding_close, 0.0),
            ],
        );
        let echo = breaker::start(&d.sfn, &d.breaker["StateMachineArn"], &event).await?;
        let only_first = HashSet::from([first.clone()]);
        if let Err(e) = eventually(
            "the alarm's echo to be ignored and the alarm re-armed",
            Duration::from_secs(150),
            || async {
                let mapping = d.mapping_state().await?;
                ensure!(
                    mapping == "Enabled",
                    "the consumer's mapping is {mapping} after the close"
                );
                let opened = entered(&d, "WaitBeforeProbe", &only_first).await?;
                ensure!(
                    opened.is_empty(),
                    "a second circuit opened on the old errors: {opened:?}"
                );
                // The bridge's own evaluation may raise the same echo (see above): its
                // execution must stand aside too (no circuit opened), and may re-arm first.
                Ok(entered(&d, "CircuitRearmed", &only_first)
                    .await?
                    .into_iter()
                    .find(|e| *e == echo))
            },
        )
        .await
        {
            anyhow::bail!("{e}; executions: {:?}", executions_now(&d).await?);
        }
        let states = breaker::visited_states(&d.sfn, &echo).await?;
        ensure!(
            states.iter().any(|s| s == "WaitOutAlarmWindow"),
            "{states:?}"
        );
        let circuit = d.circuit().await?.context("no circuit item")?;
        ensure!(circuit.state == "CLOSED", "{circuit:?}");

        // A new outage after the close opens a circuit again, and closes once healed.
        d.outage(true).await?;
        sent.extend(traffic::send(&d.sqs, d.queue(), "second", 20).await?);
        let before = HashSet::from([first.clone(), echo.clone()]);
        let second = opened(
            &d,
            "the new outage to open a circuit",
            Duration::from_secs(150),
            &before,
        )
        .await?;
        d.outage(false).await?;
        let end = breaker::finished(&d.sfn, &second, Duration::from_secs(120)).await?;
        ensure!(end == ExecutionStatus::Succeeded, "{end:?}");

        d.every_message_processed(&sent).await?;
        Ok(())
    })
}
