//! The breaker on a local emulator, deployed with sam next to the example stack and driven
//! by alarm-shaped events: it opens, probes, closes, loses nothing, acts once per mapping,
//! and never touches a mapping an operator disabled.

use anyhow::{ensure, Context, Result};
use aws_sdk_sfn::types::ExecutionStatus;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use xtask::stack::{fast_breaker, fast_example, Deployment as Deployed, Parameters};
use xtask::wait::eventually;
use xtask::{breaker, status, traffic};

/// One emulator with both stacks at a time: these scenarios are CPU-bound on small machines.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Fast timings ([`fast_example`], [`fast_breaker`]), then `example` and `breaker`.
fn deploy(example: Parameters, breaker: Parameters) -> Result<(tokio::runtime::Runtime, Deployed)> {
    let mut example_parameters = fast_example();
    example_parameters.extend(example);
    let mut breaker_parameters = fast_breaker();
    breaker_parameters.extend([
        ("RetentionMarginSeconds", "60".into()),
        // These scenarios start their executions themselves; the alarm bridge must not
        // start more from the outages they stage (the e2e test covers the alarm path).
        ("AlarmThreshold", "1000000".into()),
    ]);
    breaker_parameters.extend(breaker);
    Deployed::start(&example_parameters, &breaker_parameters)
}

fn count(states: &[String], name: &str) -> usize {
    states.iter().filter(|s| s.as_str() == name).count()
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn breaker_opens_probes_and_closes_without_losing_a_message() -> Result<()> {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (runtime, d) = deploy(vec![], vec![])?;
    runtime.block_on(async {
        d.outage(true).await?;
        let sent: HashSet<String> = traffic::send(&d.sqs, d.queue(), "outage", 30)
            .await?
            .into_iter()
            .map(|sent| sent.message_id)
            .collect();
        let execution = d.start_alarm_execution().await?;

        eventually(
            "the mapping to be Disabled",
            Duration::from_secs(60),
            || async { Ok((d.mapping_state().await? == "Disabled").then_some(())) },
        )
        .await?;
        eventually("two failed probes", Duration::from_secs(90), || async {
            let states = breaker::visited_states(&d.sfn, &execution).await?;
            Ok((count(&states, "NextBackoff") >= 2).then_some(()))
        })
        .await?;
        ensure!(
            d.mapping_state().await? == "Disabled",
            "the circuit must stay open while probes fail"
        );

        d.outage(false).await?;
        let end = breaker::finished(&d.sfn, &execution, Duration::from_secs(120)).await?;
        let states = breaker::visited_states(&d.sfn, &execution).await?;
        ensure!(
            end == ExecutionStatus::Succeeded,
            "execution ended {end:?}: {states:?}"
        );
        ensure!(
            states.last().map(String::as_str) == Some("CircuitClosed"),
            "{states:?}"
        );
        ensure!(
            count(&states, "Probe") >= 3,
            "expected failed probes then a healthy one: {states:?}"
        );
        ensure!(d.mapping_state().await? == "Enabled");

        // The history budget counts events as AWS writes them; the emulator writes one event
        // fewer per Task attempt (no LambdaFunctionStarted). Up to CloseCircuit, every state
        // counted its own events, so the workflow's count is the emulator's plus one per
        // attempt: neither more nor less.
        let output = d
            .sfn
            .describe_execution()
            .execution_arn(&execution)
            .send()
            .await
            .context("DescribeExecution")?;
        let output: serde_json::Value =
            serde_json::from_str(output.output().unwrap_or("{}")).context("execution output")?;
        let counted = output["circuit"]["history_events"].as_u64().unwrap_or(0);
        let (events, attempts) = breaker::events_before(&d.sfn, &execution, "CloseCircuit").await?;
        ensure!(
            counted == u64::from(events + attempts),
            "the workflow counted {counted} history events; the emulator wrote {events} with \
             {attempts} Task attempts before CloseCircuit"
        );

        // Closing set the alarm to OK (SetAlarmState records its reason even when the state
        // does not change), so the next outage raises a fresh transition.
        let alarm = d
            .cloudwatch
            .describe_alarms()
            .alarm_names(&d.breaker["AlarmName"])
            .send()
            .await
            .context("DescribeAlarms")?;
        let alarm = alarm
            .metric_alarms()
            .first()
            .context("the breaker's alarm")?;
        ensure!(
            alarm.state_value().map(|s| s.as_str()) == Some("OK")
                && alarm
                    .state_reason()
                    .is_some_and(|r| r.contains("closed the circuit")),
            "closing resets the alarm to OK: {:?} {:?}",
            alarm.state_value(),
            alarm.state_reason()
        );

        eventually(
            "every message to be processed",
            Duration::from_secs(120),
            || async {
                let done = traffic::processed_ids(&d.logs, d.function()).await?;
                let depth = status::queue_depth(&d.sqs, d.queue()).await?;
                Ok((sent.is_subset(&done) && depth.total() == 0).then_some(()))
            },
        )
        .await?;
        let dead = status::queue_depth(&d.sqs, &d.example["DeadLetterQueueUrl"]).await?;
        ensure!(dead.total() == 0, "nothing may reach the DLQ: {dead:?}");
        Ok(())
    })
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn two_executions_at_once_only_one_acts() -> Result<()> {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (runtime, d) = deploy(vec![], vec![])?;
    runtime.block_on(async {
        d.outage(true).await?;
        traffic::send(&d.sqs, d.queue(), "race", 5).await?;
        let (a, b) = tokio::join!(d.start_alarm_execution(), d.start_alarm_execution());
        let (a, b) = (a?, b?);

        // The loser ends at once; the winner keeps the circuit open while the outage lasts.
        let loser = eventually(
            "one execution to stand aside",
            Duration::from_secs(60),
            || async {
                for execution in [&a, &b] {
                    let states = breaker::visited_states(&d.sfn, execution).await?;
                    if states.iter().any(|s| s == "AnotherExecutionOwnsCircuit") {
                        return Ok(Some(execution.clone()));
                    }
                }
                Ok(None)
            },
        )
        .await?;
        let winner = if loser == a { b.clone() } else { a.clone() };
        let loser_states = breaker::visited_states(&d.sfn, &loser).await?;
        ensure!(
            !loser_states.iter().any(|s| s == "WaitBeforeProbe"),
            "{loser_states:?}"
        );

        d.outage(false).await?;
        let end = breaker::finished(&d.sfn, &winner, Duration::from_secs(120)).await?;
        let states = breaker::visited_states(&d.sfn, &winner).await?;
        ensure!(end == ExecutionStatus::Succeeded, "{end:?}: {states:?}");
        ensure!(
            states.last().map(String::as_str) == Some("CircuitClosed"),
            "{states:?}"
        );
        ensure!(d.mapping_state().await? == "Enabled");
        Ok(())
    })
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn empty_queue_closes_and_an_operator_disabled_mapping_stays_disabled() -> Result<()> {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (runtime, d) = deploy(vec![], vec![])?;
    runtime.block_on(async {
        // Empty queue, default policy "close": nothing is at risk, the consumer comes back.
        let execution = d.start_alarm_execution().await?;
        let end = breaker::finished(&d.sfn, &execution, Duration::from_secs(60)).await?;
        let states = breaker::visited_states(&d.sfn, &execution).await?;
        ensure!(end == ExecutionStatus::Succeeded, "{end:?}: {states:?}");
        ensure!(
            states.last().map(String::as_str) == Some("CircuitClosed"),
            "{states:?}"
        );
        ensure!(d.mapping_state().await? == "Enabled");

        // An operator disabled the mapping: the breaker must neither touch nor re-enable it.
        d.lambda
            .update_event_source_mapping()
            .uuid(d.mapping())
            .enabled(false)
            .send()
            .await
            .context("UpdateEventSourceMapping")?;
        let execution = d.start_alarm_execution().await?;
        let end = breaker::finished(&d.sfn, &execution, Duration::from_secs(60)).await?;
        let states = breaker::visited_states(&d.sfn, &execution).await?;
        ensure!(end == ExecutionStatus::Succeeded, "{end:?}: {states:?}");
        ensure!(
            states.last().map(String::as_str) == Some("MappingDisabledByOperator"),
            "{states:?}"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        ensure!(
            d.mapping_state().await? == "Disabled",
            "the operator's choice stands"
        );

        // Not an ALARM transition of our alarm: refused, nothing touched.
        let mut other =
            breaker::alarm_event("someone-elses-alarm", "000000000000", "us-east-1", "t");
        other["detail"]["state"]["value"] = "ALARM".into();
        let execution = breaker::start(&d.sfn, &d.breaker["StateMachineArn"], &other).await?;
        let end = breaker::finished(&d.sfn, &execution, Duration::from_secs(60)).await?;
        let states = breaker::visited_states(&d.sfn, &execution).await?;
        ensure!(end == ExecutionStatus::Failed, "{end:?}: {states:?}");
        ensure!(
            states.last().map(String::as_str) == Some("IgnoreInvalidEvent"),
            "{states:?}"
        );
        Ok(())
    })
}

/// A small backlog through a long outage: probes never take a good message to the DLQ (a
/// message at its last receive goes back as a fresh copy), and the poison message still gets
/// there through normal redrive once the consumer is back.
#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn a_poison_message_reaches_the_dlq_while_the_circuit_closes() -> Result<()> {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (runtime, d) = deploy(
        vec![
            ("PoisonMarker", "poison".into()),
            ("MaxReceiveCount", "2".into()),
        ],
        vec![],
    )?;
    runtime.block_on(async {
        // Park the messages behind an outage, poison first, then open the circuit.
        d.outage(true).await?;
        d.sqs
            .send_message()
            .queue_url(d.queue())
            .message_body(r#"{"poison":true}"#)
            .send()
            .await
            .context("SendMessage")?;
        let good: HashSet<String> = traffic::send(&d.sqs, d.queue(), "good", 5)
            .await?
            .into_iter()
            .map(|sent| sent.fingerprint)
            .collect();
        let execution = d.start_alarm_execution().await?;
        eventually(
            "the mapping to be Disabled",
            Duration::from_secs(60),
            || async { Ok((d.mapping_state().await? == "Disabled").then_some(())) },
        )
        .await?;
        // A long outage for so small a backlog: more failed probes than messages, each
        // probe one receive, with maxReceiveCount 2. Without fresh copies every good message
        // would be in the DLQ by now.
        eventually(
            "more failed probes than messages",
            Duration::from_secs(180),
            || async {
                let states = breaker::visited_states(&d.sfn, &execution).await?;
                Ok((count(&states, "NextBackoff") >= 8).then_some(()))
            },
        )
        .await?;
        d.outage(false).await?;

        let end = breaker::finished(&d.sfn, &execution, Duration::from_secs(180)).await?;
        let states = breaker::visited_states(&d.sfn, &execution).await?;
        ensure!(end == ExecutionStatus::Succeeded, "{end:?}: {states:?}");
        ensure!(
            states.last().map(String::as_str) == Some("CircuitClosed"),
            "{states:?}"
        );

        let dlq = &d.example["DeadLetterQueueUrl"];
        eventually(
            "the poison message in the DLQ",
            Duration::from_secs(120),
            || async {
                let dead = d
                    .sqs
                    .receive_message()
                    .queue_url(dlq)
                    .max_number_of_messages(10)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .context("ReceiveMessage")?;
                Ok(dead
                    .messages()
                    .iter()
                    .any(|m| m.body().is_some_and(|b| b.contains("poison")))
                    .then_some(()))
            },
        )
        .await?;
        // Good messages given back as fresh copies carry new ids: count them by body.
        eventually(
            "every good message processed",
            Duration::from_secs(120),
            || async {
                let done: HashSet<String> = traffic::processed_fingerprints(&d.logs, d.function())
                    .await?
                    .into_iter()
                    .collect();
                Ok(good.is_subset(&done).then_some(()))
            },
        )
        .await?;
        // Only the poison message is in the DLQ: the outage cost no good message its place.
        let dead = status::queue_depth(&d.sqs, dlq).await?;
        ensure!(
            dead.total() == 1,
            "only the poison message may be dead: {dead:?}"
        );
        Ok(())
    })
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn the_rejitter_spreads_the_backlog_before_the_consumer_returns() -> Result<()> {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (runtime, d) = deploy(
        vec![],
        vec![
            ("RejitterEnabled", "true".into()),
            // Shorter than the rejitter phase (two 5 s backlog checks at least): messages come
            // back to the rejitter while it polls and take the loop prevention's path (a
            // fresh copy 60 s later), which the exactly-once check below then covers too.
            ("MinDelaySeconds", "2".into()),
            ("MaxDelaySeconds", "10".into()),
            // Far beyond both scenarios' phases: a stalled one must end well before it.
            ("RejitterMaxSeconds", "900".into()),
        ],
    )?;
    runtime.block_on(async {
        d.outage(true).await?;
        let sent = traffic::send(&d.sqs, d.queue(), "backlog", 200).await?;
        let execution = d.start_alarm_execution().await?;
        eventually(
            "the mapping to be Disabled",
            Duration::from_secs(60),
            || async { Ok((d.mapping_state().await? == "Disabled").then_some(())) },
        )
        .await?;
        d.outage(false).await?;

        // While the workflow runs, the backlog must turn into delayed messages.
        let mut most_delayed = 0;
        let end = loop {
            let depth = status::queue_depth(&d.sqs, d.queue()).await?;
            most_delayed = most_delayed.max(depth.delayed);
            let status = breaker::status(&d.sfn, &execution).await?;
            if status != ExecutionStatus::Running {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let states = breaker::visited_states(&d.sfn, &execution).await?;
        ensure!(end == ExecutionStatus::Succeeded, "{end:?}: {states:?}");
        for phase in [
            "StartRejitter",
            "CheckBacklog",
            "StopRejitter",
            "CircuitClosed",
        ] {
            ensure!(
                states.iter().any(|s| s == phase),
                "{phase} missing: {states:?}"
            );
        }
        ensure!(most_delayed > 0, "the rejitter delayed nothing");

        // Every message processed exactly once: the probe's, and the 199 re-sent ones (new
        // SQS ids), with no message processed twice.
        let processed = eventually(
            "the spread backlog to be processed",
            Duration::from_secs(120),
            || async {
                let log = traffic::processed_log(&d.logs, d.function()).await?;
                let depth = status::queue_depth(&d.sqs, d.queue()).await?;
                Ok((log.len() >= sent.len() && depth.total() == 0).then_some(log))
            },
        )
        .await?;
        let distinct: HashSet<&String> = processed.iter().collect();
        ensure!(
            processed.len() == sent.len() && distinct.len() == sent.len(),
            "{} processed ({} distinct) for {} sent",
            processed.len(),
            distinct.len(),
            sent.len()
        );
        let dead = status::queue_depth(&d.sqs, &d.example["DeadLetterQueueUrl"]).await?;
        ensure!(dead.total() == 0, "nothing may reach the DLQ: {dead:?}");
        let resent = resent_already_rejittered(&d).await?;
        ensure!(
            resent > 0,
            "no record came back to the rejitter during the phase: the loop prevention went \
             unexercised (are the delays still shorter than the phase?)"
        );

        // The same stack, the backlog drained: a second outage with a rejitter that cannot
        // consume.
        a_stalled_rejitter_phase_ends_early(&d).await
    })
}

/// How many records the rejitter re-sent as already rejittered (its `invocation done` log
/// lines' `resent_already_rejittered`, summed).
async fn resent_already_rejittered(d: &Deployed) -> Result<u64> {
    let group = format!("/aws/lambda/{}-rejitter", xtask::stack::BREAKER_STACK);
    let lines = d
        .logs
        .messages(&group, "resent_already_rejittered")
        .await
        .with_context(|| format!("FilterLogEvents on {group}"))?;
    Ok(lines
        .iter()
        .filter_map(|m| serde_json::from_str::<serde_json::Value>(m).ok())
        .filter_map(|line| line["resent_already_rejittered"].as_u64())
        .sum())
}

/// A rejitter that cannot send (its SQS endpoint refuses every connection, as a rejitter
/// without the rights to send or a key to encrypt would fail) leaves every record of its
/// batches in the queue; they come
/// back visible after the visibility timeout and the count not yet spread stays flat. The
/// phase ends a minute after its first check, not at `RejitterMaxSeconds` (900 s), with a
/// `Rejitter Stalled` event; the rejitter is switched off, the consumer is back within two
/// minutes of the heal, and it gets every message.
async fn a_stalled_rejitter_phase_ends_early(d: &Deployed) -> Result<()> {
    let began = Instant::now();
    let tap = crate::support::event_tap(
        &d.sqs,
        &d.events,
        "sqscb-test-event-tap",
        "Rejitter Stalled",
    )
    .await?;
    let rejitter = format!("{}-rejitter", xtask::stack::BREAKER_STACK);
    // Nothing listens on the discard port: every send is refused (the function's variables
    // win over the emulator's endpoint, as on AWS).
    let unreachable = ("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:9".to_string());
    xtask::consumer::configure(&d.lambda, &rejitter, &[unreachable], None).await?;

    d.outage(true).await?;
    let sent = traffic::send(&d.sqs, d.queue(), "stalled", 30).await?;
    let execution = d.start_alarm_execution().await?;
    eventually(
        "the mapping to be Disabled",
        Duration::from_secs(60),
        || async { Ok((d.mapping_state().await? == "Disabled").then_some(())) },
    )
    .await?;
    d.outage(false).await?;
    let healed = Instant::now();

    let end = breaker::finished(&d.sfn, &execution, Duration::from_secs(180)).await?;
    let took = healed.elapsed();
    let history = breaker::history(&d.sfn, &execution).await?;
    let states: Vec<&str> = history.iter().map(|s| s.name.as_str()).collect();
    ensure!(end == ExecutionStatus::Succeeded, "{end:?}: {states:?}");
    ensure!(
        states.ends_with(&[
            "StopRejitter",
            "SlowStartOrClose",
            "CloseCircuit",
            "CircuitClosed"
        ]),
        "{states:?}"
    );
    let reason = history
        .iter()
        .rev()
        .find(|s| s.name == "CheckBacklog")
        .and_then(|s| s.output.as_ref())
        .and_then(|o| o["circuit"]["reason"].as_str())
        .unwrap_or_default()
        .to_string();
    ensure!(
        reason.starts_with("rejitter stalled")
            && reason.contains("the rejitter's mapping reads Enabled"),
        "{reason}"
    );
    ensure!(
        took < Duration::from_secs(120),
        "the consumer was back {took:?} after the heal: {states:?}"
    );
    ensure!(d.consumer_mapping().await?.state == "Enabled");
    ensure!(d.rejitter_mapping().await?.state == "Disabled");

    let event = eventually(
        "the Rejitter Stalled event",
        Duration::from_secs(30),
        || async {
            let out = d
                .sqs
                .receive_message()
                .queue_url(&tap)
                .max_number_of_messages(10)
                .send()
                .await
                .context("ReceiveMessage from the event tap")?;
            Ok(out.messages().first().and_then(|m| {
                serde_json::from_str::<serde_json::Value>(m.body().unwrap_or_default()).ok()
            }))
        },
    )
    .await?;
    ensure!(
        event["detail-type"] == "Rejitter Stalled"
            && event["detail"]["execution"] == execution.as_str()
            && event["detail"]["reason"] == reason.as_str(),
        "{event}"
    );
    // Nothing lost: the rejitter's batches came back, and the consumer processes them all.
    d.every_message_processed(&sent).await?;
    eprintln!(
        "stalled rejitter: the consumer was back {took:?} after the heal; the scenario took {:?}",
        began.elapsed()
    );
    Ok(())
}
