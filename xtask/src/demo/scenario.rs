//! The scenario's course: steady traffic, the outage switched on, then healed (and the
//! traffic stopped) once the circuit opened and a probe failed, one reading a second until the
//! circuit closed and the queue drained, then the count of what the consumer processed.

use super::narration::{last, observe, Watch};
use super::report::{probes, Report};
use super::setup::Deployed;
use super::Options;
use crate::breaker::now_ms;
use crate::status::queue_depth;
use crate::{consumer, traffic};
use anyhow::{Context, Result};
use sqs_circuit_breaker::locate::Breaker;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The AWS clients the scenario drives.
pub struct Clients {
    pub sqs: aws_sdk_sqs::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub logs: crate::logs::Logs,
}

/// Sends traffic, starts the outage, heals it (and stops the traffic) when [`heal_due`], and
/// follows the breaker until the circuit closed and the queue drained; returns what was sent.
pub async fn drive(
    watch: &mut Watch,
    breaker: &Breaker,
    clients: &Clients,
    deployed: &Deployed,
    tap: &str,
    options: &Options,
) -> Result<Vec<traffic::Sent>> {
    let run_id = format!("demo{}", watch.report.started_ms / 1000);
    let sent = Arc::new(Mutex::new(Vec::new()));
    let stop_traffic = Arc::new(AtomicBool::new(false));
    let traffic_task = steady_traffic(
        clients.sqs.clone(),
        deployed.queue_url.clone(),
        run_id,
        options.rate,
        sent.clone(),
        stop_traffic.clone(),
    );
    watch.say(&format!(
        "steady traffic: {} messages/s to the example queue until the outage heals; the consumer is healthy",
        options.rate
    ));

    let deadline = Instant::now() + options.timeout;
    let outage_at = Instant::now() + options.warmup;
    let mut outage_since: Option<Instant> = None;
    let mut closed_at: Option<i64> = None;
    let mut last_status = Instant::now() - Duration::from_secs(60);
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the demo did not finish within {:?}",
            options.timeout
        );
        if outage_since.is_none() && Instant::now() >= outage_at {
            consumer::set_should_error(&clients.lambda, &deployed.consumer, true).await?;
            watch.report.outage_on_ms = now_ms();
            outage_since = Some(Instant::now());
            watch.say("OUTAGE: SHOULD_ERROR=true on the consumer; every batch now fails");
        }

        observe(watch, breaker, &clients.sqs, tap).await?;
        if let Some(since) = outage_since {
            let failed = failed_probes(&watch.report);
            if watch.report.healed_ms == 0 && heal_due(since.elapsed(), failed, options) {
                consumer::set_should_error(&clients.lambda, &deployed.consumer, false).await?;
                watch.report.healed_ms = now_ms();
                stop_traffic.store(true, Ordering::Relaxed);
                watch.say(&heal_line(failed));
            }
        }
        if last_status.elapsed() >= Duration::from_secs(5) {
            last_status = Instant::now();
            let sent_so_far = sent.lock().map(|s| s.len()).unwrap_or_default();
            status_line(watch, sent_so_far);
        }

        if owner_done(watch) && closed_at.is_none() {
            closed_at = Some(now_ms());
            watch.say(
                "waiting for the consumer to drain the queue (the backlog the rejitter delayed)",
            );
        }
        if let Some(closed_ms) = closed_at {
            // A queue reading taken after the close, so that it counts what the closing
            // execution left.
            let (read_ms, depth) = watch.report.depths.last().copied().unwrap_or_default();
            let running = watch.live.seen.statuses().values().any(|s| s == "RUNNING");
            if read_ms >= closed_ms && depth.total() == 0 && !running {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    traffic_task
        .await
        .context("the traffic task panicked")?
        .context("sending traffic")?;
    let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(sent)
}

/// Whether the consumer heals now: the outage lasted `options.outage` and `failed` probes
/// reached `options.failed_probes`.
pub fn heal_due(outage_for: Duration, failed: usize, options: &Options) -> bool {
    outage_for >= options.outage && failed >= options.failed_probes
}

/// The probes that failed so far, in every execution.
fn failed_probes(report: &Report) -> usize {
    probes(&report.executions, report.started_ms)
        .iter()
        .filter(|p| p.failed())
        .count()
}

/// What the demo says as it heals the consumer.
fn heal_line(failed: usize) -> String {
    let after = match failed {
        0 => String::new(),
        1 => " after 1 failed probe".to_string(),
        n => format!(" after {n} failed probes"),
    };
    format!(
        "HEALED{after}: SHOULD_ERROR=false; the next probe should succeed. Traffic stops: \
         the rejitter and the drain now see only the outage's backlog"
    )
}

/// The periodic one-line status: the mapping, the alarm, the queue and the traffic so far.
fn status_line(watch: &Watch, sent_so_far: usize) {
    let (_, depth) = watch.report.depths.last().copied().unwrap_or_default();
    watch.say(&format!(
        "[mapping {} | alarm {} | queue visible {} in flight {} delayed {} | sent {}]",
        last(&watch.report.mapping_states),
        last(&watch.report.alarm_states),
        depth.visible,
        depth.in_flight,
        depth.delayed,
        sent_so_far
    ));
}

/// The outage is healed and an execution that probed has ended.
fn owner_done(watch: &Watch) -> bool {
    watch.report.healed_ms > 0
        && watch.live.seen.statuses().iter().any(|(arn, status)| {
            status != "RUNNING"
                && watch
                    .report
                    .executions
                    .iter()
                    .any(|e| &e.arn == arn && e.visited("WaitBeforeProbe"))
        })
}

/// Every message sent must have been processed (or be in the DLQ): the consumer's own log,
/// where each processed record carries its content fingerprint, against what was sent.
pub async fn account(
    mut report: Report,
    sent: &[traffic::Sent],
    clients: &Clients,
    deployed: &Deployed,
) -> Result<Report> {
    let wanted: HashSet<&str> = sent.iter().map(|s| s.fingerprint.as_str()).collect();
    let logs_deadline = Instant::now() + Duration::from_secs(60);
    let (processed, duplicates) = loop {
        let counted = count_processed(&clients.logs, &deployed.consumer, &wanted).await?;
        if counted.0 == wanted.len() || Instant::now() > logs_deadline {
            break counted;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let in_dlq = queue_depth(&clients.sqs, &deployed.dlq_url).await?.total();
    report.sent = sent.len();
    report.processed = processed;
    report.duplicates = duplicates;
    report.in_dlq = in_dlq;
    report.lost = sent.len().saturating_sub(processed + in_dlq as usize);
    report
        .executions
        .sort_by_key(|e| e.steps.first().map(|s| s.entered_ms));
    report.probes = probes(&report.executions, report.started_ms);
    Ok(report)
}

/// Sends `rate` messages every second until `stop` is set; returns what it sent.
fn steady_traffic(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    run: String,
    rate: usize,
    sent: Arc<Mutex<Vec<traffic::Sent>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Result<()>> {
    tokio::spawn(async move {
        let mut second = 0u64;
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            ticker.tick().await;
            let batch = traffic::send(&sqs, &queue_url, &format!("{run}-{second}"), rate).await?;
            sent.lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .extend(batch);
            second += 1;
        }
        Ok(())
    })
}

/// How many of the `wanted` fingerprints the consumer logged as processed, and how many
/// extra times (at-least-once delivery).
async fn count_processed(
    logs: &crate::logs::Logs,
    consumer: &str,
    wanted: &HashSet<&str>,
) -> Result<(usize, usize)> {
    let seen = traffic::processed_fingerprints(logs, consumer).await?;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for fingerprint in &seen {
        if let Some(known) = wanted.get(fingerprint.as_str()) {
            *counts.entry(known).or_default() += 1;
        }
    }
    Ok((counts.len(), counts.values().map(|n| n - 1).sum()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(outage_s: u64, failed_probes: usize) -> Options {
        Options {
            outage: Duration::from_secs(outage_s),
            failed_probes,
            ..Options::default()
        }
    }

    #[test]
    fn the_consumer_heals_only_after_the_failed_probes_asked_for() {
        let options = options(0, 1);
        assert!(!heal_due(Duration::from_secs(300), 0, &options));
        assert!(heal_due(Duration::from_secs(1), 1, &options));
        assert!(heal_due(Duration::ZERO, 3, &options));
    }

    #[test]
    fn the_consumer_heals_no_sooner_than_the_shortest_outage() {
        let options = options(40, 1);
        assert!(!heal_due(Duration::from_secs(39), 5, &options));
        assert!(heal_due(Duration::from_secs(40), 1, &options));
        // No failed probe asked for: the outage's length alone, a fixed outage.
        let fixed = self::options(40, 0);
        assert!(!heal_due(Duration::from_secs(39), 0, &fixed));
        assert!(heal_due(Duration::from_secs(40), 0, &fixed));
    }

    #[test]
    fn the_default_demo_heals_after_one_failed_probe_however_slow_the_alarm() {
        let options = Options::default();
        assert_eq!(options.failed_probes, 1);
        assert!(!heal_due(Duration::from_secs(120), 0, &options));
        assert!(heal_due(Duration::from_secs(1), 1, &options));
    }

    #[test]
    fn the_heal_says_that_the_traffic_stops() {
        let line = heal_line(1);
        assert!(line.starts_with("HEALED after 1 failed probe:"), "{line}");
        assert!(line.contains("Traffic stops"), "{line}");
        assert!(heal_line(2).starts_with("HEALED after 2 failed probes:"));
        assert!(heal_line(0).starts_with("HEALED:"));
    }

    #[test]
    fn the_default_rejitter_delays_outlast_its_phase() {
        // The phase is two backlog checks 5 s apart after the re-sends: about 11 s. A
        // message delayed less comes back while the rejitter polls and is re-sent with 60 s
        // more, which the drain then waits out.
        let options = Options::default();
        assert!(options.min_delay_s >= 15, "{}", options.min_delay_s);
        assert!(options.min_delay_s <= options.max_delay_s);
    }
}
