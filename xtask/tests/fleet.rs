//! A fleet's circuits stay independent, on the local stack: one breaker deployment, nine more
//! example consumers, ten attachments (`infra/attachment.yaml`), each with an alarm of its
//! own, delivered through its own rule's input transformer. Five scenarios share the
//! deployment, each on its own consumers and queues, and run at once:
//!
//! 1. two consumers fail at once: each opens its own circuit (its mapping `Disabled`, the
//!    circuit's owner an execution naming its attachment), both close once healed, nothing
//!    lost; a third, attached and healthy, is never touched (its mapping as it was, no
//!    execution naming it, no circuit item);
//! 2. one consumer fails while another recovers: the second stays open through the first's
//!    close;
//! 3. two functions on one queue, each attached with an alarm on its own `Errors`: only the
//!    failing function's mapping is disabled;
//! 4. one function on two queues, each attached with an alarm on its queue's failed records:
//!    failing on one queue's messages (a poison marker only they carry) opens only that
//!    mapping's circuit;
//! 5. an attachment deleted while its circuit is open: the delete gives the consumer back
//!    (mapping `Enabled`, circuit `CLOSED` and `Circuit Closed` with a "detached" reason),
//!    nothing lost.
//!
//! "Opened" is an execution that entered `WaitBeforeProbe`: each failing attachment has
//! exactly one. An alarm that goes back to ALARM on its outage's old datapoints after the
//! close starts an execution that stands aside (`retrip.rs`); it opens nothing and is allowed.

use crate::support::{self, attachment, Consumer};
use anyhow::{bail, ensure, Context, Result};
use aws_sdk_cloudwatch::types::{ComparisonOperator, Metric, MetricDataQuery, MetricStat};
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use xtask::breaker::{self, Mapping};
use xtask::shapes::Steady;
use xtask::stack::{fast_breaker, fast_example, Deployment, Parameters};
use xtask::traffic::{self, Sent};
use xtask::wait::eventually;

/// The consumers' alarms' period (high resolution; 60 s on AWS).
const PERIOD_S: i32 = 10;
const OPEN_WITHIN: Duration = Duration::from_secs(120);
const CLOSE_WITHIN: Duration = Duration::from_secs(120);

/// The consumer stacks, in the order [`a_fleet_s_circuits_stay_independent`] takes them.
const STACKS: [&str; 9] = [
    "fleet-a", "fleet-b", "fleet-h", "fleet-c", "fleet-d", "fleet-e", "fleet-f", "fleet-g",
    "fleet-x",
];

/// The function's simulated outage (`SHOULD_ERROR`).
async fn outage(d: &Deployment, c: &Consumer, on: bool) -> Result<()> {
    xtask::consumer::set_should_error(&d.lambda, &c.function, on).await
}

/// The attachment each execution's input names (None: the built-in consumer's), by ARN.
async fn named(d: &Deployment) -> Result<Vec<(String, Option<String>)>> {
    let mut all = Vec::new();
    for e in breaker::executions(&d.sfn, &d.breaker["StateMachineArn"]).await? {
        all.push((e.arn.clone(), attachment_of(d, &e.arn).await?));
    }
    Ok(all)
}

async fn attachment_of(d: &Deployment, execution: &str) -> Result<Option<String>> {
    let out = d
        .sfn
        .describe_execution()
        .execution_arn(execution)
        .send()
        .await
        .context("DescribeExecution")?;
    let input: Value = serde_json::from_str(out.input().unwrap_or("{}"))?;
    Ok(input
        .get("attachment")
        .and_then(Value::as_str)
        .map(str::to_string))
}

/// The executions whose input names attachment `id`.
async fn naming(d: &Deployment, id: &str) -> Result<Vec<String>> {
    Ok(named(d)
        .await?
        .into_iter()
        .filter(|(_, named)| named.as_deref() == Some(id))
        .map(|(arn, _)| arn)
        .collect())
}

/// The executions naming `id` that opened a circuit.
async fn opening(d: &Deployment, id: &str) -> Result<Vec<String>> {
    let mut opened = Vec::new();
    for arn in naming(d, id).await? {
        let states = breaker::visited_states(&d.sfn, &arn).await?;
        if states.iter().any(|s| s == "WaitBeforeProbe") {
            opened.push(arn);
        }
    }
    Ok(opened)
}

/// Waits for the circuit of `mapping` to open (item `OPEN`, mapping `Disabled`) and checks
/// that its owner is an execution for attachment `id`; returns the owner.
async fn opens(d: &Deployment, id: &str, mapping: &str) -> Result<String> {
    let table = &d.breaker["CircuitTableName"];
    let waited = eventually(&format!("{id}'s circuit to open"), OPEN_WITHIN, || async {
        let circuit = breaker::circuit(&d.dynamodb, table, mapping).await?;
        let state = breaker::mapping_state(&d.lambda, mapping).await?;
        Ok(match circuit {
            Some(c) if c.state == "OPEN" && state == "Disabled" => c.owner,
            _ => None,
        })
    })
    .await;
    // A circuit that never opened may have opened for someone else: say whose.
    let owner = match waited {
        Ok(owner) => owner,
        Err(e) => bail!(
            "{e}; the attachments the executions name: {:?}",
            named(d).await?
        ),
    };
    let owner_names = attachment_of(d, &owner).await?;
    ensure!(
        owner_names.as_deref() == Some(id),
        "{id}'s circuit is owned by an execution for {owner_names:?}"
    );
    Ok(owner)
}

/// Waits for the circuit of `mapping` to close (item `CLOSED`, mapping `Enabled`, its owner
/// ended) and checks that exactly one execution opened a circuit for `id`.
async fn closes(d: &Deployment, id: &str, mapping: &str, owner: &str) -> Result<()> {
    let end = breaker::finished(&d.sfn, owner, CLOSE_WITHIN).await?;
    ensure!(
        end == ExecutionStatus::Succeeded,
        "{id}'s owner ended {end:?}"
    );
    let table = &d.breaker["CircuitTableName"];
    let circuit = breaker::circuit(&d.dynamodb, table, mapping)
        .await?
        .context("no circuit item")?;
    ensure!(circuit.state == "CLOSED", "{id}: {circuit:?}");
    let state = breaker::mapping_state(&d.lambda, mapping).await?;
    ensure!(
        state == "Enabled",
        "{id}'s mapping is {state} after the close"
    );
    let opened = opening(d, id).await?;
    ensure!(opened.len() == 1, "{id}: circuits opened by {opened:?}");
    Ok(())
}

/// A consumer the breaker must leave alone: its mapping as it was (state, settings, last
/// modified), no execution naming its attachment, no circuit item.
async fn untouched(d: &Deployment, id: &str, before: &Mapping) -> Result<()> {
    let now = breaker::mapping(&d.lambda, &before.uuid).await?;
    ensure!(
        now == *before,
        "{id}'s mapping changed: {before:?} -> {now:?}"
    );
    let named = naming(d, id).await?;
    ensure!(named.is_empty(), "executions for healthy {id}: {named:?}");
    let table = &d.breaker["CircuitTableName"];
    let circuit = breaker::circuit(&d.dynamodb, table, &before.uuid).await?;
    ensure!(circuit.is_none(), "{id} has a circuit: {circuit:?}");
    Ok(())
}

/// Waits until `functions` together have processed every message of `sent`, then checks
/// that the dead-letter queues are empty.
async fn processed(d: &Deployment, functions: &[&str], sent: &[Sent], dlqs: &[&str]) -> Result<()> {
    let wanted: HashSet<&str> = sent.iter().map(|s| s.message_id.as_str()).collect();
    let last = std::sync::Mutex::new(Vec::new());
    eventually(
        "every message to be processed",
        Duration::from_secs(120),
        || async {
            let mut done = HashSet::new();
            for function in functions {
                done.extend(traffic::processed_ids(&d.logs, function).await?);
            }
            let mut missing: Vec<String> = wanted
                .iter()
                .filter(|id| !done.contains(**id))
                .map(|id| id.to_string())
                .collect();
            missing.sort();
            let all_in = missing.is_empty();
            if let Ok(mut last) = last.lock() {
                *last = missing;
            }
            Ok(all_in.then_some(()))
        },
    )
    .await
    .with_context(|| {
        format!(
            "not in the logs of {functions:?}: {:?}",
            last.lock().map(|l| l.clone()).unwrap_or_default()
        )
    })?;
    for dlq in dlqs {
        let dead = xtask::status::queue_depth(&d.sqs, dlq).await?;
        ensure!(dead.total() == 0, "nothing may reach the DLQ: {dead:?}");
    }
    Ok(())
}

/// A queue made with the API, with a dead-letter queue and the example stack's timings.
struct Queue {
    url: String,
    arn: String,
    dlq_url: String,
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .context("GetQueueAttributes")?;
    out.attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .context("no QueueArn")
}

async fn queue(d: &Deployment, name: &str) -> Result<Queue> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let dlq_url = d
        .sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .context("CreateQueue")?
        .queue_url
        .context("no dead-letter queue url")?;
    let dlq_arn = queue_arn(&d.sqs, &dlq_url).await?;
    let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "1000"});
    let url = d
        .sqs
        .create_queue()
        .queue_name(name)
        .attributes(A::VisibilityTimeout, "5")
        .attributes(A::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .context("CreateQueue")?
        .queue_url
        .context("no queue url")?;
    let arn = queue_arn(&d.sqs, &url).await?;
    Ok(Queue { url, arn, dlq_url })
}

/// One more mapping of `function` on `queue_arn`, as the example stack's (batches of 10,
/// failed records reported); waits until it is `Enabled`; returns its UUID.
async fn mapping(d: &Deployment, function: &str, queue_arn: &str) -> Result<String> {
    let uuid = d
        .lambda
        .create_event_source_mapping()
        .function_name(function)
        .event_source_arn(queue_arn)
        .batch_size(10)
        .function_response_types(
            aws_sdk_lambda::types::FunctionResponseType::ReportBatchItemFailures,
        )
        .enabled(true)
        .send()
        .await
        .context("CreateEventSourceMapping")?
        .uuid
        .context("no mapping uuid")?;
    eventually(
        "the mapping to be enabled",
        Duration::from_secs(30),
        || async {
            Ok((breaker::mapping_state(&d.lambda, &uuid).await? == "Enabled").then_some(()))
        },
    )
    .await?;
    Ok(uuid)
}

/// `<queue>-failed-records`, a per-queue alarm: ALARM when at least half the messages the
/// queue gave out in a period (of at least 3) were not deleted. Returns its ARN.
async fn failed_records_alarm(d: &Deployment, queue_arn: &str) -> Result<String> {
    let queue = queue_arn.rsplit(':').next().unwrap_or_default();
    let name = format!("{queue}-failed-records");
    let sum = |id: &str, metric: &str| {
        MetricDataQuery::builder()
            .id(id)
            .return_data(false)
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace("AWS/SQS")
                            .metric_name(metric)
                            .dimensions(
                                aws_sdk_cloudwatch::types::Dimension::builder()
                                    .name("QueueName")
                                    .value(queue)
                                    .build(),
                            )
                            .build(),
                    )
                    .period(PERIOD_S)
                    .stat("Sum")
                    .build(),
            )
            .build()
    };
    d.cloudwatch
        .put_metric_alarm()
        .alarm_name(&name)
        .metrics(sum("received", "NumberOfMessagesReceived"))
        .metrics(sum("deleted", "NumberOfMessagesDeleted"))
        .metrics(
            MetricDataQuery::builder()
                .id("failed_share")
                .return_data(true)
                .expression("IF(received >= 3, 100 * (received - FILL(deleted, 0)) / received, 0)")
                .build(),
        )
        .evaluation_periods(1)
        .threshold(50.0)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
        .treat_missing_data("notBreaching")
        .send()
        .await
        .context("PutMetricAlarm")?;
    Ok(support::alarm_arn(&name))
}

/// Runs `scenario`, reporting its wall time.
async fn timed(name: &str, scenario: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    let started = Instant::now();
    let result = scenario.await.with_context(|| format!("scenario {name}"));
    eprintln!(
        "==> fleet scenario {name}: {} in {:.0} s",
        if result.is_ok() { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    result
}

/// Scenario 1: A and B fail at once, H stays healthy.
async fn two_fail_at_once(d: &Deployment, a: &Consumer, b: &Consumer, h: &Consumer) -> Result<()> {
    let healthy = breaker::mapping(&d.lambda, &h.mapping).await?;
    tokio::try_join!(outage(d, a, true), outage(d, b, true))?;
    let mut sent = Vec::new();
    for (c, prefix) in [(a, "fleet-a"), (b, "fleet-b"), (h, "fleet-h")] {
        sent.push(traffic::send(&d.sqs, &c.queue_url, prefix, 20).await?);
    }
    let (owner_a, owner_b) = tokio::try_join!(
        opens(d, "attach-a", &a.mapping),
        opens(d, "attach-b", &b.mapping)
    )?;
    untouched(d, "attach-h", &healthy).await?;
    tokio::try_join!(outage(d, a, false), outage(d, b, false))?;
    tokio::try_join!(
        closes(d, "attach-a", &a.mapping, &owner_a),
        closes(d, "attach-b", &b.mapping, &owner_b)
    )?;
    for (c, sent) in [a, b, h].into_iter().zip(&sent) {
        processed(d, &[&c.function], sent, &[&c.dlq_url]).await?;
    }
    untouched(d, "attach-h", &healthy).await
}

/// Scenario 2: C fails, then D; C recovers and closes while D stays open; then D closes.
async fn one_fails_while_another_recovers(
    d: &Deployment,
    c: &Consumer,
    dd: &Consumer,
) -> Result<()> {
    outage(d, c, true).await?;
    let sent_c = traffic::send(&d.sqs, &c.queue_url, "fleet-c", 20).await?;
    let owner_c = opens(d, "attach-c", &c.mapping).await?;
    outage(d, dd, true).await?;
    let sent_d = traffic::send(&d.sqs, &dd.queue_url, "fleet-d", 20).await?;
    let owner_d = opens(d, "attach-d", &dd.mapping).await?;
    outage(d, c, false).await?;
    closes(d, "attach-c", &c.mapping, &owner_c).await?;
    // D's outage goes on: its circuit is still open, under the same owner.
    let table = &d.breaker["CircuitTableName"];
    let circuit = breaker::circuit(&d.dynamodb, table, &dd.mapping)
        .await?
        .context("no circuit item for D")?;
    ensure!(
        circuit.state == "OPEN" && circuit.owner.as_deref() == Some(owner_d.as_str()),
        "D's circuit after C's close: {circuit:?}"
    );
    let state = breaker::mapping_state(&d.lambda, &dd.mapping).await?;
    ensure!(
        state == "Disabled",
        "D's mapping is {state} after C's close"
    );
    outage(d, dd, false).await?;
    closes(d, "attach-d", &dd.mapping, &owner_d).await?;
    processed(d, &[&c.function], &sent_c, &[&c.dlq_url]).await?;
    processed(d, &[&dd.function], &sent_d, &[&dd.dlq_url]).await
}

/// Scenario 3: E and F read E's queue (F's mapping `shared`); F fails.
async fn two_functions_on_one_queue(
    d: &Deployment,
    e: &Consumer,
    f: &Consumer,
    shared: &str,
) -> Result<()> {
    let before = breaker::mapping(&d.lambda, &e.mapping).await?;
    outage(d, f, true).await?;
    let steady = Steady::on(&d.sqs, &e.queue_url, "fleet-e", 2);
    let owner = opens(d, "attach-f", shared).await;
    let sent = steady.stop().await?;
    let owner = owner?;
    untouched(d, "attach-e", &before).await?;
    outage(d, f, false).await?;
    closes(d, "attach-f", shared, &owner).await?;
    processed(d, &[&e.function, &f.function], &sent, &[&e.dlq_url]).await?;
    untouched(d, "attach-e", &before).await
}

/// Scenario 4: G reads its queue and a second one (mapping `second`); its records fail on
/// the second queue's messages only.
async fn one_function_two_queues(
    d: &Deployment,
    g: &Consumer,
    g2: &Queue,
    second: &str,
) -> Result<()> {
    let before = breaker::mapping(&d.lambda, &g.mapping).await?;
    let marker = |on: bool| {
        [(
            "POISON_MARKER",
            if on { "fleet-g2" } else { "" }.to_string(),
        )]
    };
    xtask::consumer::configure(&d.lambda, &g.function, &marker(true), None).await?;
    let first_traffic = Steady::on(&d.sqs, &g.queue_url, "fleet-g1", 2);
    let second_traffic = Steady::on(&d.sqs, &g2.url, "fleet-g2", 2);
    let owner = opens(d, "attach-g2", second).await;
    let mut sent = first_traffic.stop().await?;
    sent.extend(second_traffic.stop().await?);
    let owner = owner?;
    untouched(d, "attach-g1", &before).await?;
    xtask::consumer::configure(&d.lambda, &g.function, &marker(false), None).await?;
    closes(d, "attach-g2", second, &owner).await?;
    processed(d, &[&g.function], &sent, &[&g.dlq_url, &g2.dlq_url]).await?;
    untouched(d, "attach-g1", &before).await
}

/// Scenario 5: X's attachment is deleted while its circuit is open.
async fn detached_while_open(d: &Deployment, x: &Consumer, closed_tap: &str) -> Result<()> {
    outage(d, x, true).await?;
    let sent = traffic::send(&d.sqs, &x.queue_url, "fleet-x", 20).await?;
    let owner = opens(d, "attach-x", &x.mapping).await?;
    let config = xtask::aws::config(&d.local.emulator).await;
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    cfn.delete_stack().stack_name("attach-x").send().await?;
    eventually(
        "the attachment's stack to be deleted",
        Duration::from_secs(120),
        || async {
            let Ok(out) = cfn.describe_stacks().stack_name("attach-x").send().await else {
                return Ok(Some(()));
            };
            let status = out
                .stacks()
                .first()
                .and_then(|s| s.stack_status())
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            if status == "DELETE_FAILED" {
                bail!("{}", support::failures(&cfn, "attach-x").await?);
            }
            Ok((status == "DELETE_COMPLETE").then_some(()))
        },
    )
    .await?;
    // Given back: mapping enabled, circuit closed as detached, owner stopped, item gone.
    let state = breaker::mapping_state(&d.lambda, &x.mapping).await?;
    ensure!(
        state == "Enabled",
        "X's mapping is {state} after the detach"
    );
    let table = &d.breaker["CircuitTableName"];
    let circuit = breaker::circuit(&d.dynamodb, table, &x.mapping)
        .await?
        .context("no circuit item for X")?;
    ensure!(
        circuit.state == "CLOSED"
            && circuit
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("detached")),
        "X's circuit after the detach: {circuit:?}"
    );
    let end = breaker::finished(&d.sfn, &owner, Duration::from_secs(60)).await?;
    ensure!(end != ExecutionStatus::Running, "{end:?}");
    ensure!(support::item(d, "attach-x").await?.is_none());
    // Announced: `Circuit Closed` for X's mapping, with the detach as its reason.
    let event = eventually(
        "X's Circuit Closed event",
        Duration::from_secs(30),
        || async {
            let out = d
                .sqs
                .receive_message()
                .queue_url(closed_tap)
                .max_number_of_messages(10)
                .send()
                .await
                .context("ReceiveMessage from the event tap")?;
            Ok(out
                .messages()
                .iter()
                .filter_map(|m| serde_json::from_str::<Value>(m.body().unwrap_or_default()).ok())
                .find(|e| e["detail"]["mapping"] == x.mapping.as_str()))
        },
    )
    .await?;
    ensure!(
        event["detail"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("detached")),
        "{event}"
    );
    outage(d, x, false).await?;
    processed(d, &[&x.function], &sent, &[&x.dlq_url]).await?;
    // The detach may stop the owner before it reaches its first wait: no other execution
    // opened a circuit for X.
    let opened = opening(d, "attach-x").await?;
    ensure!(
        opened.iter().all(|e| *e == owner),
        "X: circuits opened by {opened:?}, owner {owner}"
    );
    Ok(())
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn a_fleet_s_circuits_stay_independent() -> Result<()> {
    let started = Instant::now();
    let (runtime, d) = Deployment::start(&fast_example(), &fast_breaker())?;
    let consumers = support::consumers(&d, &STACKS)?;
    let [a, b, h, c, dd, e, f, g, x] =
        <[Consumer; 9]>::try_from(consumers).map_err(|_| anyhow::anyhow!("nine consumers"))?;
    let (g2, shared, second, closed_tap) = runtime.block_on(async {
        let g2 = queue(&d, "fleet-g2").await?;
        let shared = mapping(&d, &f.function, &e.queue_arn).await?;
        let second = mapping(&d, &g.function, &g2.arn).await?;
        let mut attachments: Vec<(String, Parameters)> = Vec::new();
        for (id, consumer) in [
            ("attach-a", &a),
            ("attach-b", &b),
            ("attach-h", &h),
            ("attach-c", &c),
            ("attach-d", &dd),
            ("attach-x", &x),
        ] {
            let alarm = support::errors_alarm(&d.cloudwatch, &consumer.function, PERIOD_S).await?;
            attachments.push((
                id.into(),
                attachment(&consumer.function, &consumer.queue_arn, &alarm),
            ));
        }
        // Two functions on E's queue: per-function alarms.
        for (id, function) in [("attach-e", &e.function), ("attach-f", &f.function)] {
            let alarm = support::errors_alarm(&d.cloudwatch, function, PERIOD_S).await?;
            attachments.push((id.into(), attachment(function, &e.queue_arn, &alarm)));
        }
        // One function on two queues: per-queue alarms.
        for (id, queue) in [("attach-g1", &g.queue_arn), ("attach-g2", &g2.arn)] {
            let alarm = failed_records_alarm(&d, queue).await?;
            attachments.push((id.into(), attachment(&g.function, queue, &alarm)));
        }
        support::attach_all(&d, &attachments).await?;
        let closed_tap =
            support::event_tap(&d.sqs, &d.events, "sqscb-fleet-closed", "Circuit Closed").await?;
        anyhow::Ok((g2, shared, second, closed_tap))
    })?;
    eprintln!(
        "==> fleet: deployed and attached in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // Every scenario runs to its end, so that each reports its time and its failure.
    let results = runtime.block_on(async {
        tokio::join!(
            timed("two fail at once", two_fail_at_once(&d, &a, &b, &h)),
            timed(
                "one fails while another recovers",
                one_fails_while_another_recovers(&d, &c, &dd)
            ),
            timed(
                "two functions on one queue",
                two_functions_on_one_queue(&d, &e, &f, &shared)
            ),
            timed(
                "one function on two queues",
                one_function_two_queues(&d, &g, &g2, &second)
            ),
            timed(
                "detached while open",
                detached_while_open(&d, &x, &closed_tap)
            ),
        )
    });
    eprintln!("==> fleet: {:.0} s in all", started.elapsed().as_secs_f64());
    let (one, two, three, four, five) = results;
    let failed: Vec<String> = [one, two, three, four, five]
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    ensure!(failed.is_empty(), "{}", failed.join("\n"));
    Ok(())
}
