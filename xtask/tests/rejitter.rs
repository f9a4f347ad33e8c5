//! The rejitter at scale on a local emulator: a 5,000-message backlog of mixed shapes and
//! sizes (0 to 10 attributes of every type, a few messages of the largest size SQS takes) is
//! spread by the real workflow, and the consumer then receives every message exactly once,
//! body and attributes intact, although each was re-sent under a new message id; and as the
//! copy's first receive: the rejitter added one receive to each original, then deleted it.

use anyhow::{ensure, Result};
use aws_sdk_sfn::types::ExecutionStatus;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use xtask::stack::{fast_breaker, fast_example, Deployment};
use xtask::status::{self, Depth};
use xtask::wait::eventually;
use xtask::{breaker, traffic};

const MESSAGES: usize = 5_000;

/// Every re-sent message waits at least this long, measured from its re-send, which comes
/// after the outage ends. Checking the queue sooner than this after the outage ends therefore
/// finds every message still delayed, however the delays were drawn.
const MIN_DELAY_SECONDS: u64 = 60;
const MAX_DELAY_SECONDS: u64 = 120;

/// The example stack (fast retries, no DLQ move from the outage's failed probes) and the
/// breaker with the rejitter. The alarm cannot fire: the test starts the one execution itself,
/// so no second recovery can open the circuit again while the backlog is spread.
fn deploy() -> Result<(tokio::runtime::Runtime, Deployment)> {
    let example = fast_example();
    let mut breaker = fast_breaker();
    breaker.extend([
        ("RetentionMarginSeconds", "60".into()),
        // Probes find an empty queue until the backlog is sent: keep the circuit open.
        ("EmptyQueuePolicy", "wait".into()),
        ("AlarmThreshold", "1000000".into()),
        ("RejitterEnabled", "true".into()),
        ("MinDelaySeconds", MIN_DELAY_SECONDS.to_string()),
        ("MaxDelaySeconds", MAX_DELAY_SECONDS.to_string()),
        ("RejitterMaxSeconds", "600".into()),
    ]);
    Deployment::start(&example, &breaker)
}

/// How two multisets differ, briefly: counts, not 5,000 hashes.
fn multiset_difference(sent: &[String], processed: &[String]) -> String {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for f in sent {
        *count.entry(f.as_str()).or_default() += 1;
    }
    for f in processed {
        *count.entry(f.as_str()).or_default() -= 1;
    }
    let missing = count.values().filter(|&&c| c > 0).count();
    let extra = count.values().filter(|&&c| c < 0).count();
    let example = count.iter().find(|(_, &c)| c != 0).map(|(f, c)| (*f, *c));
    format!(
        "{} sent, {} processed: {missing} fingerprints never processed, {extra} processed more \
         often than sent (or never sent); e.g. {example:?}",
        sent.len(),
        processed.len()
    )
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn the_rejitter_delays_a_5000_message_mixed_backlog_and_the_consumer_gets_each_once() -> Result<()>
{
    let started = Instant::now();
    let (runtime, d) = deploy()?;
    let deployed = started.elapsed();
    runtime.block_on(async {
        // Open the circuit on an empty queue and keep every probe failing while the backlog
        // is sent, so nothing is consumed or spread before all 5,000 messages are queued.
        d.outage(true).await?;
        let execution = d.start_alarm_execution().await?;
        eventually(
            "the consumer's mapping to be Disabled",
            Duration::from_secs(60),
            || async {
                let state = d.mapping_state().await?;
                Ok((state == "Disabled").then_some(()))
            },
        )
        .await?;

        let sending = Instant::now();
        let sent = traffic::send_mixed(&d.sqs, d.queue(), "mixed", MESSAGES).await?;
        let send_time = sending.elapsed();
        let mut sent_fingerprints: Vec<String> =
            sent.iter().map(|s| s.fingerprint.clone()).collect();
        sent_fingerprints.sort_unstable();
        let distinct: HashSet<&String> = sent_fingerprints.iter().collect();
        ensure!(
            sent.len() == MESSAGES && distinct.len() == MESSAGES,
            "{} sent, {} distinct fingerprints",
            sent.len(),
            distinct.len()
        );

        // The next probe is healthy; it consumes one message, then the rejitter phase runs.
        d.outage(false).await?;
        let healed = Instant::now();
        let mut peak = Depth::default();
        let end = loop {
            let depth = status::queue_depth(&d.sqs, d.queue()).await?;
            peak.visible = peak.visible.max(depth.visible);
            peak.in_flight = peak.in_flight.max(depth.in_flight);
            peak.delayed = peak.delayed.max(depth.delayed);
            let status = breaker::status(&d.sfn, &execution).await?;
            if status != ExecutionStatus::Running {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let phase_time = healed.elapsed();

        // Right after the phase, before any delay can have run out: nothing is visible, and
        // every message but the probe's is delayed, or still in flight in a rejitter batch
        // that is being deleted (its re-sent copy is already delayed or counted here).
        let after = status::queue_depth(&d.sqs, d.queue()).await?;
        let checked_at = healed.elapsed();
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
        ensure!(
            checked_at < Duration::from_secs(MIN_DELAY_SECONDS),
            "the phase took {}, so delays may have run out before the check: raise \
             MIN_DELAY_SECONDS",
            secs(checked_at)
        );
        let waiting = MESSAGES as u64 - 1;
        ensure!(
            after.visible == 0 && after.delayed + after.in_flight == waiting,
            "right after the phase: {after:?}, expected {waiting} delayed or in flight"
        );
        // In-flight rejitter batches finish and are deleted; no message is left behind for
        // the consumer undelayed (a left one would come back visible, not delayed).
        let settled = eventually(
            "the rejitter's last batches to be deleted",
            Duration::from_secs(15),
            || async {
                let depth = status::queue_depth(&d.sqs, d.queue()).await?;
                Ok((depth.in_flight == 0).then_some(depth))
            },
        )
        .await?;
        ensure!(
            healed.elapsed() < Duration::from_secs(MIN_DELAY_SECONDS),
            "settling took until {}: raise MIN_DELAY_SECONDS",
            secs(healed.elapsed())
        );
        ensure!(
            settled
                == Depth {
                    visible: 0,
                    in_flight: 0,
                    delayed: waiting
                },
            "after the phase settled: {settled:?}, expected {waiting} delayed"
        );
        let early = traffic::processed_fingerprints(&d.logs, d.function()).await?;
        ensure!(
            early.len() == 1,
            "only the probe's message may be processed before the delays run out: {}",
            early.len()
        );

        // The consumer gets each message once the delays run out: exactly what was sent.
        let draining = Instant::now();
        let records = eventually(
            "the delayed backlog to be processed",
            Duration::from_secs(MAX_DELAY_SECONDS + 240),
            || async {
                let done = traffic::processed_records(&d.logs, d.function()).await?;
                let depth = status::queue_depth(&d.sqs, d.queue()).await?;
                Ok((done.len() >= MESSAGES && depth.total() == 0).then_some(done))
            },
        )
        .await?;
        let drain_time = draining.elapsed();
        // The rejitter received each message once and re-sent it as a new message, so the
        // consumer's receive is each copy's first. Only the probe's message (processed first,
        // by the probe) may have been received before, by failed probes.
        let received_again: Vec<&traffic::Processed> = records
            .iter()
            .skip(1)
            .filter(|r| r.receive_count != Some(1))
            .collect();
        ensure!(
            received_again.is_empty(),
            "{} messages reached the consumer with a receive count other than 1, e.g. {:?}",
            received_again.len(),
            received_again.first()
        );
        let mut processed: Vec<String> = records.into_iter().map(|r| r.fingerprint).collect();
        processed.sort_unstable();
        ensure!(
            processed == sent_fingerprints,
            "{}",
            multiset_difference(&sent_fingerprints, &processed)
        );
        let dead = status::queue_depth(&d.sqs, &d.example["DeadLetterQueueUrl"]).await?;
        ensure!(dead.total() == 0, "nothing may reach the DLQ: {dead:?}");

        eprintln!(
            "rejitter test timings: deploy {}, send {} ({MESSAGES} messages), phase {} \
             (outage end to workflow end; peak {peak:?}), drain {}, total {}",
            secs(deployed),
            secs(send_time),
            secs(phase_time),
            secs(drain_time),
            secs(started.elapsed())
        );
        Ok(())
    })
}
