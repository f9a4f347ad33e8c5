//! The emulator shows the breaker's new alarm signals (xtask/src/emulator_gaps): on a local
//! stack with the example consumer failing, the queue's `AWS/SQS` metrics appear (zeros
//! included), the metric-math alarms and the composite over them deploy through
//! CloudFormation and go to ALARM with AWS's events, and every transition is delivered (also
//! through a rule target's input transformer, rendered as EventBridge renders it): when
//! an operator stops the circuit's execution mid-outage, the breaker gives the consumer back
//! and resets the alarm to OK, and the still failing consumer puts it back in ALARM, which
//! opens a new circuit. Healed, the composite returns to OK. A mapping CloudFormation creates
//! disabled reads `Disabled` and is not polled. An invocation in flight when its function is
//! updated finishes.

use anyhow::{ensure, Context, Result};
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};
use xtask::stack::{fast_breaker, fast_example, Deployment};
use xtask::wait::eventually;
use xtask::{breaker, paths, sam, traffic};

const ALARMS_STACK: &str = "sqscb-alarms";
const FLIP: &str = "xtask: ALARM and back within one tick";
const BY_HAND: &str = "xtask: set by hand";

fn alarm_arn(name: &str) -> String {
    format!(
        "arn:aws:cloudwatch:{}:000000000000:alarm:{ALARMS_STACK}-{name}",
        sam::REGION
    )
}

/// Deploys the alarms (tests/fixtures/consumer-alarms.yaml) on the example's queue and
/// consumer, as a user's plain `sam deploy` would.
fn deploy_alarms(d: &Deployment, queue_name: &str) -> Result<HashMap<String, String>> {
    let template = paths::root().join("xtask/tests/fixtures/consumer-alarms.yaml");
    let parameters = [
        ("QueueName", queue_name.to_string()),
        ("FunctionName", d.function().to_string()),
    ];
    {
        let _turn = sam::turn()?;
        sam::deploy(
            &d.local.tools,
            &d.local.emulator,
            &template,
            ALARMS_STACK,
            &parameters,
        )?;
    }
    tokio::runtime::Runtime::new()?.block_on(async {
        let config = xtask::aws::config(&d.local.emulator).await;
        xtask::aws::stack_outputs(&config, ALARMS_STACK).await
    })
}

/// Moves the events the bridge delivered to the events queue into `seen`.
async fn drain(d: &Deployment, queue: &str, seen: &mut Vec<Value>) -> Result<()> {
    loop {
        let out = d
            .sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .send()
            .await
            .context("ReceiveMessage")?;
        if out.messages().is_empty() {
            return Ok(());
        }
        for m in out.messages() {
            seen.push(serde_json::from_str(m.body().unwrap_or("null"))?);
            d.sqs
                .delete_message()
                .queue_url(queue)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await?;
        }
    }
}

/// Drains the events queue into `seen` until `done(seen)`, or fails after `timeout`.
async fn events_until(
    d: &Deployment,
    queue: &str,
    seen: &mut Vec<Value>,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        drain(d, queue, seen).await?;
        if done(seen) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; events: {seen:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The states `alarm` went to, in the order of its events.
fn transitions(seen: &[Value], alarm: &str) -> Vec<String> {
    seen.iter()
        .filter(|e| e["detail"]["alarmName"] == alarm)
        .filter_map(|e| e["detail"]["state"]["value"].as_str().map(str::to_string))
        .collect()
}

/// The states `alarm` went to with `reason` (SetAlarmState's), in the order of their events.
fn by_reason(seen: &[Value], alarm: &str, reason: &str) -> Vec<String> {
    seen.iter()
        .filter(|e| e["detail"]["alarmName"] == alarm && e["detail"]["state"]["reason"] == reason)
        .filter_map(|e| e["detail"]["state"]["value"].as_str().map(str::to_string))
        .collect()
}

/// Whether `wanted` occurs in `states` in this order (not necessarily adjacent).
fn went_through(states: &[String], wanted: &[&str]) -> bool {
    let mut rest = wanted.iter().peekable();
    for s in states {
        if rest.peek().is_some_and(|w| **w == s) {
            rest.next();
        }
    }
    rest.peek().is_none()
}

/// A queue metric's datapoints (statistic per 10 s) over the last two minutes.
async fn queue_metric(
    d: &Deployment,
    queue: &str,
    metric: &str,
    statistic: Statistic,
) -> Result<Vec<f64>> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs() as i64;
    let out = d
        .cloudwatch
        .get_metric_statistics()
        .namespace("AWS/SQS")
        .metric_name(metric)
        .dimensions(Dimension::builder().name("QueueName").value(queue).build())
        .start_time(aws_smithy_types::DateTime::from_secs(now - 120))
        .end_time(aws_smithy_types::DateTime::from_secs(now + 10))
        .period(10)
        .statistics(statistic.clone())
        .send()
        .await
        .context("GetMetricStatistics")?;
    Ok(out
        .datapoints()
        .iter()
        .filter_map(|p| match statistic {
            Statistic::Sum => p.sum(),
            _ => p.maximum(),
        })
        .collect())
}

async fn alarm_state(d: &Deployment, name: &str) -> Result<String> {
    let out = d
        .cloudwatch
        .describe_alarms()
        .alarm_names(name)
        .alarm_types(aws_sdk_cloudwatch::types::AlarmType::MetricAlarm)
        .alarm_types(aws_sdk_cloudwatch::types::AlarmType::CompositeAlarm)
        .send()
        .await?;
    let state = out
        .metric_alarms()
        .iter()
        .filter_map(|a| a.state_value())
        .chain(
            out.composite_alarms()
                .iter()
                .filter_map(|a| a.state_value()),
        )
        .next()
        .with_context(|| format!("no alarm {name}"))?;
    Ok(state.as_str().to_string())
}

async fn executions(d: &Deployment) -> Result<Vec<String>> {
    Ok(breaker::executions(&d.sfn, &d.breaker["StateMachineArn"])
        .await?
        .into_iter()
        .map(|e| e.arn)
        .collect())
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn the_emulator_shows_the_new_alarm_signals_and_every_transition() -> Result<()> {
    let started = Instant::now();
    let mut breaker_parameters = fast_breaker();
    // The breaker watches the failed-records alarm: today's controller resets only the alarm
    // it watches, and a composite returns to its children's state only when one changes.
    breaker_parameters.push(("AlarmArn", alarm_arn("consumer-failed-records")));
    let (runtime, d) = Deployment::start(&fast_example(), &breaker_parameters)?;
    let queue_name = d
        .queue()
        .rsplit('/')
        .next()
        .context("queue URL")?
        .to_string();
    let alarms = deploy_alarms(&d, &queue_name)?;
    let deployed = started.elapsed();
    let failed_records = alarms["FailedRecordsAlarmName"].clone();
    let composite = alarms["CompositeAlarmName"].clone();
    let events_queue = alarms["EventsQueueUrl"].clone();

    runtime.block_on(async {
        // Gap 3: created disabled, the mapping reads Disabled and takes nothing.
        let disabled = breaker::mapping_state(&d.lambda, &alarms["DisabledMappingId"]).await?;
        ensure!(
            disabled == "Disabled",
            "the disabled mapping reads {disabled}"
        );
        traffic::send(&d.sqs, &alarms["DisabledSourceUrl"], "untouched", 1).await?;

        // A flip within one look of the bridge (it looks every 500 ms) delivers both events.
        let error_share = alarms["ErrorShareAlarmName"].clone();
        for value in ["ALARM", "OK"] {
            breaker::set_alarm_state(&d.cloudwatch, &error_share, value, FLIP).await?;
        }
        let mut seen = Vec::new();
        events_until(
            &d,
            &events_queue,
            &mut seen,
            "both events of a flip within one tick",
            Duration::from_secs(15),
            |seen| by_reason(seen, &error_share, FLIP) == ["ALARM", "OK"],
        )
        .await?;
        // The same two events through the input transformer of a second rule.
        let mut transformed = Vec::new();
        events_until(
            &d,
            &alarms["TransformedQueueUrl"],
            &mut transformed,
            "the flip's events rendered by the input transformer",
            Duration::from_secs(5),
            |t| {
                t.iter()
                    .filter(|t| t["event"]["detail"]["state"]["reason"] == FLIP)
                    .count()
                    == 2
            },
        )
        .await?;
        let rendered_flip = transformed
            .iter()
            .filter(|t| t["event"]["detail"]["state"]["reason"] == FLIP);
        for rendered in rendered_flip {
            let event = seen
                .iter()
                .find(|e| e["id"] == rendered["event"]["id"])
                .with_context(|| format!("{rendered} renders no delivered event"))?;
            let state = event["detail"]["state"]["value"]
                .as_str()
                .unwrap_or_default();
            let alarm = event["resources"][0].as_str().unwrap_or_default();
            let rule = rendered["rule"].as_str().unwrap_or_default();
            ensure!(
                rendered["attachment"] == "orders"
                    && rendered["state"] == state
                    && rendered["text"] == format!("{alarm} is {state}")
                    && rule.contains("TransformedAlarmEvents")
                    && rendered["event"] == *event,
                "input transformer rendered {rendered} for {event}"
            );
        }

        // An outage: every batch fails and is back 5 s later.
        d.outage(true).await?;
        traffic::send(&d.sqs, d.queue(), "gaps", 60).await?;

        eventually(
            "the queue's AWS/SQS metrics",
            Duration::from_secs(60),
            || async {
                let sent: f64 =
                    queue_metric(&d, &queue_name, "NumberOfMessagesSent", Statistic::Sum)
                        .await?
                        .iter()
                        .sum();
                let received: f64 =
                    queue_metric(&d, &queue_name, "NumberOfMessagesReceived", Statistic::Sum)
                        .await?
                        .iter()
                        .sum();
                // Nothing is deleted, and AWS says so: zeros for an active queue.
                let deleted =
                    queue_metric(&d, &queue_name, "NumberOfMessagesDeleted", Statistic::Sum)
                        .await?;
                let in_flight = queue_metric(
                    &d,
                    &queue_name,
                    "ApproximateNumberOfMessagesNotVisible",
                    Statistic::Maximum,
                )
                .await?;
                let age = queue_metric(
                    &d,
                    &queue_name,
                    "ApproximateAgeOfOldestMessage",
                    Statistic::Maximum,
                )
                .await?;
                Ok((sent >= 60.0
                    && received > 0.0
                    && !deleted.is_empty()
                    && deleted.iter().all(|v| *v == 0.0)
                    && in_flight.iter().any(|v| *v > 0.0)
                    && !age.is_empty())
                .then_some(()))
            },
        )
        .await?;

        let first = eventually(
            "the failed-records alarm to open a circuit",
            Duration::from_secs(120),
            || async { Ok(executions(&d).await?.into_iter().next()) },
        )
        .await?;
        let opened = started.elapsed();

        events_until(
            &d,
            &events_queue,
            &mut seen,
            "the ALARM events of the metric-math alarm and the composite",
            Duration::from_secs(30),
            |seen| {
                went_through(&transitions(seen, &failed_records), &["ALARM"])
                    && went_through(&transitions(seen, &composite), &["ALARM"])
            },
        )
        .await?;
        let math = seen
            .iter()
            .find(|e| {
                e["detail"]["alarmName"] == failed_records.as_str()
                    && e["detail"]["state"]["value"] == "ALARM"
            })
            .context("the metric-math ALARM event")?;
        let queries = math["detail"]["configuration"]["metrics"]
            .as_array()
            .context("configuration.metrics")?;
        ensure!(
            queries.iter().any(|q| q["id"] == "failed_share"
                && q["returnData"] == true
                && q["expression"]
                    .as_str()
                    .is_some_and(|e| e.contains("FILL(deleted, 0)")))
                && queries.iter().any(|q| q["id"] == "received"
                    && q["metricStat"]["metric"]["name"] == "NumberOfMessagesReceived"
                    && q["metricStat"]["metric"]["dimensions"]["QueueName"] == queue_name.as_str()),
            "metric-math event: {math}"
        );
        let reason: Value = serde_json::from_str(
            math["detail"]["state"]["reasonData"]
                .as_str()
                .context("reasonData")?,
        )?;
        let breaching = reason["evaluatedDatapoints"]
            .as_array()
            .context("evaluatedDatapoints")?
            .iter()
            .filter(|p| p["value"].as_f64().is_some_and(|v| v >= 20.0))
            .count();
        ensure!(breaching >= 2, "2 of 3 breaching datapoints: {reason}");
        let composite_alarm = seen
            .iter()
            .find(|e| {
                e["detail"]["alarmName"] == composite.as_str()
                    && e["detail"]["state"]["value"] == "ALARM"
            })
            .context("the composite ALARM event")?;
        ensure!(
            composite_alarm["resources"][0] == alarms["CompositeAlarmArn"].as_str()
                && composite_alarm["detail"]["configuration"]["alarmRule"]
                    .as_str()
                    .is_some_and(|r| r.contains("consumer-failed-records"))
                && composite_alarm["detail"]["state"]["reasonData"]
                    .as_str()
                    .is_some_and(|r| r.contains("triggeringAlarms")),
            "composite event: {composite_alarm}"
        );

        // The operator stops the execution mid-outage: the breaker gives the consumer back and
        // resets the alarm; still failing, the consumer puts it back in ALARM: a new circuit.
        // The stop comes about a second after the start, so it lands while OpenCircuit runs:
        // before its first look (the recovery re-arms the alarm the execution left in ALARM),
        // before it takes the circuit, or before it disables the mapping (the step looks again
        // and recovers it); every order ends in the same transitions.
        breaker::stop(&d.sfn, &first, "xtask: an operator stopped it").await?;
        let end = breaker::finished(&d.sfn, &first, Duration::from_secs(60)).await?;
        ensure!(end == ExecutionStatus::Aborted, "stopped, it ended {end:?}");
        let second = eventually(
            "a new circuit while the consumer still fails",
            // The recovery runs on the execution's end event, then the re-armed alarm's next
            // evaluation: a loaded machine takes a while.
            Duration::from_secs(240),
            || async { Ok(executions(&d).await?.into_iter().find(|e| *e != first)) },
        )
        .await?;
        drain(&d, &events_queue, &mut seen).await?;
        let states = transitions(&seen, &failed_records);
        ensure!(
            went_through(&states, &["ALARM", "OK", "ALARM"]),
            "the failed-records alarm went {states:?}"
        );
        let healing = Instant::now();

        // Healed, the circuit closes and the composite returns to OK.
        d.outage(false).await?;
        events_until(
            &d,
            &events_queue,
            &mut seen,
            "the failed-records alarm and the composite back to OK",
            Duration::from_secs(120),
            // The composite follows the reset to OK only while its other child, the stalled
            // alarm, is OK: failing batches hidden for three whole periods put that one in
            // ALARM too, on some runs.
            |seen| {
                let again = ["ALARM", "OK", "ALARM", "OK"];
                let composite = transitions(seen, &composite);
                went_through(&transitions(seen, &failed_records), &again)
                    && went_through(&composite, &["ALARM", "OK"])
                    && composite.last().is_some_and(|s| s == "OK")
            },
        )
        .await?;
        // Set by hand, a composite keeps that state until one of its children changes, as on
        // AWS, and the change is delivered.
        breaker::set_alarm_state(&d.cloudwatch, &composite, "ALARM", BY_HAND).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let held = alarm_state(&d, &composite).await?;
        ensure!(
            held == "ALARM",
            "the composite set to ALARM by hand is {held}"
        );
        drain(&d, &events_queue, &mut seen).await?;
        ensure!(
            by_reason(&seen, &composite, BY_HAND) == ["ALARM"],
            "the composite's hand-set ALARM event: {:?}",
            transitions(&seen, &composite)
        );

        let stalled = alarm_state(&d, &alarms["StalledAlarmName"]).await?;
        let error_share = alarm_state(&d, &alarms["ErrorShareAlarmName"]).await?;
        ensure!(
            stalled != "INSUFFICIENT_DATA" && error_share != "INSUFFICIENT_DATA",
            "evaluated: stalled {stalled}, error share {error_share}"
        );
        let untouched = xtask::status::queue_depth(&d.sqs, &alarms["DisabledSourceUrl"]).await?;
        ensure!(
            untouched.total() == 1,
            "the disabled mapping's queue: {untouched:?}"
        );
        an_update_lets_the_invocation_in_flight_finish(&d).await?;
        println!(
            "  deployed in {:.0}s, first circuit at {:.0}s, second {second} at {:.0}s, healed \
             in {:.0}s; failed-records {:?}, composite {:?}, stalled {:?}, error share {:?}",
            deployed.as_secs_f64(),
            opened.as_secs_f64(),
            (started.elapsed() - healing.elapsed()).as_secs_f64(),
            healing.elapsed().as_secs_f64(),
            transitions(&seen, &failed_records),
            transitions(&seen, &composite),
            transitions(&seen, &alarms["StalledAlarmName"]),
            transitions(&seen, &alarms["ErrorShareAlarmName"]),
        );
        Ok(())
    })
}

/// Gap 5: an invocation in flight when its function is updated finishes on the code and
/// configuration it started with, as on AWS, instead of losing its process.
async fn an_update_lets_the_invocation_in_flight_finish(d: &Deployment) -> Result<()> {
    let function = d.function().to_string();
    // The example's timeout is 3 s; the invocation must outlast the update's few seconds.
    xtask::consumer::configure(
        &d.lambda,
        &function,
        &[("LATENCY_MS", "5000".into())],
        Some(30),
    )
    .await?;
    let event = serde_json::json!({"Records": [{
        "messageId": "in-flight-through-an-update",
        "receiptHandle": "in-flight",
        "body": "in flight through an update",
        "attributes": {},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "awsRegion": sam::REGION,
    }]});
    let invocation = tokio::spawn({
        let (lambda, function) = (d.lambda.clone(), function.clone());
        async move {
            lambda
                .invoke()
                .function_name(function)
                .payload(aws_smithy_types::Blob::new(event.to_string()))
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        !invocation.is_finished(),
        "the invocation ended before the update"
    );
    xtask::consumer::configure(&d.lambda, &function, &[("LATENCY_MS", "0".into())], None).await?;
    let out = invocation.await??;
    ensure!(
        out.function_error().is_none(),
        "the invocation in flight failed through the update: {:?}",
        out.payload()
            .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
    );
    Ok(())
}
