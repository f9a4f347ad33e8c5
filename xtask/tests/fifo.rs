//! The breaker (without the rejitter) on a FIFO queue, on a local emulator: probes take the
//! head of a message group and hand the consumer the record the mapping would (with
//! `MessageGroupId`, `MessageDeduplicationId` and `SequenceNumber`), a failed probe keeps its
//! group blocked, and after the close every group is processed once, in send order.

use anyhow::{ensure, Context, Result};
use aws_sdk_sfn::types::ExecutionStatus;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use xtask::stack::{fast_breaker, fast_example, Deployment};
use xtask::traffic::{self, Processed, SentFifo};
use xtask::wait::eventually;
use xtask::{breaker, status};

const GROUPS: [&str; 4] = ["tenant-a", "tenant-b", "tenant-c", "tenant-d"];
const PER_GROUP: usize = 8;
/// Failed probes before the outage ends: each takes a group's head and must leave it there.
const FAILED_PROBES: usize = 3;

fn deploy() -> Result<(tokio::runtime::Runtime, Deployment)> {
    // Failed probes add receives; FIFO messages are never given back as fresh copies (the
    // copy would go to the back of its group): the fast example's 1,000 leaves room for them.
    let mut example = fast_example();
    example.push(("FifoQueue", "true".into()));
    let mut breaker = fast_breaker();
    breaker.extend([
        // Probes find an empty queue until the messages are sent: keep the circuit open.
        ("EmptyQueuePolicy", "wait".into()),
        // The test starts its one execution itself.
        ("AlarmThreshold", "1000000".into()),
        ("MaxCircuitsPerHour", "0".into()),
    ]);
    Deployment::start(&example, &breaker)
}

/// Where each processed record sits in what was sent, checking that the record carries the
/// FIFO attributes SQS gave that message.
fn place<'a>(
    record: &Processed,
    by_fingerprint: &HashMap<&str, &'a SentFifo>,
) -> Result<&'a SentFifo> {
    let sent = by_fingerprint
        .get(record.fingerprint.as_str())
        .with_context(|| format!("processed a message that was never sent: {record:?}"))?;
    ensure!(
        record.message_group_id.as_deref() == Some(sent.group.as_str())
            && record.deduplication_id.as_deref() == Some(sent.deduplication_id.as_str())
            && record.sequence_number.as_deref() == Some(sent.sequence_number.as_str()),
        "the record of {}-{} does not carry its FIFO attributes as sent ({sent:?}): {record:?}",
        sent.group,
        sent.index
    );
    Ok(sent)
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn on_a_fifo_queue_probes_keep_each_group_in_order_and_nothing_is_lost() -> Result<()> {
    let (runtime, d) = deploy()?;
    runtime.block_on(async {
        d.outage(true).await?;
        let execution = d.start_alarm_execution().await?;
        eventually(
            "the consumer's mapping to be Disabled",
            Duration::from_secs(60),
            || async { Ok((d.mapping_state().await? == "Disabled").then_some(())) },
        )
        .await?;
        // Probes of the still empty queue also back off (EmptyQueuePolicy wait): count from
        // here.
        let backoffs = |states: Vec<String>| states.iter().filter(|s| *s == "NextBackoff").count();
        let before = backoffs(breaker::visited_states(&d.sfn, &execution).await?);
        let sent = traffic::send_fifo(&d.sqs, d.queue(), &GROUPS, PER_GROUP).await?;

        // Let probes take group heads and fail.
        eventually(
            "probes to fail during the outage",
            Duration::from_secs(120),
            || async {
                let failed = backoffs(breaker::visited_states(&d.sfn, &execution).await?);
                Ok((failed >= before + FAILED_PROBES).then_some(()))
            },
        )
        .await?;
        let during = traffic::processed_records(&d.logs, d.function()).await?;
        ensure!(
            during.is_empty(),
            "nothing may be processed while the outage lasts: {during:?}"
        );

        // The next probe succeeds and the circuit closes.
        d.outage(false).await?;
        let end = breaker::finished(&d.sfn, &execution, Duration::from_secs(180)).await?;
        let states = breaker::visited_states(&d.sfn, &execution).await?;
        ensure!(
            end == ExecutionStatus::Succeeded && states.iter().any(|s| s == "CircuitClosed"),
            "the circuit must close once a probe succeeds: {end:?}, {states:?}"
        );
        ensure!(
            !states.iter().any(|s| s == "StartRejitter"),
            "the rejitter is off: {states:?}"
        );

        let processed = eventually(
            "every group to be processed",
            Duration::from_secs(180),
            || async {
                let done = traffic::processed_records(&d.logs, d.function()).await?;
                let depth = status::queue_depth(&d.sqs, d.queue()).await?;
                Ok((done.len() >= sent.len() && depth.total() == 0).then_some(done))
            },
        )
        .await?;

        let by_fingerprint: HashMap<&str, &SentFifo> =
            sent.iter().map(|s| (s.fingerprint.as_str(), s)).collect();
        // The first record processed is the successful probe's: the head of its group.
        let first = place(&processed[0], &by_fingerprint)?;
        ensure!(
            first.index == 0,
            "the probe took {}-{}, not the head of a group",
            first.group,
            first.index
        );
        let mut order: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for record in &processed {
            let sent = place(record, &by_fingerprint)?;
            order
                .entry(sent.group.as_str())
                .or_default()
                .push(sent.index);
        }
        let in_send_order: Vec<usize> = (0..PER_GROUP).collect();
        for group in GROUPS {
            let got = order.get(group).cloned().unwrap_or_default();
            ensure!(
                got == in_send_order,
                "group {group} was processed as {got:?}, not once each in send order"
            );
        }

        let dead = status::queue_depth(&d.sqs, &d.example["DeadLetterQueueUrl"]).await?;
        ensure!(dead.total() == 0, "nothing may reach the DLQ: {dead:?}");
        ensure!(
            d.mapping_state().await? == "Enabled",
            "the consumer's mapping must be Enabled after the close"
        );
        Ok(())
    })
}
