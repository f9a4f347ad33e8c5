//! The scenario's course: steady traffic, the outage switched on and healed on time, one
//! reading a second until the circuit closed and the queue drained, then the count of what
//! the consumer processed.

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
    pub logs: aws_sdk_cloudwatchlogs::Client,
}

/// Sends traffic, starts and heals the outage on time, and follows the breaker until the
/// circuit closed and the queue drained; returns what was sent.
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
        "steady traffic: {} messages/s to the example queue; the consumer is healthy",
        options.rate
    ));

    let deadline = Instant::now() + options.timeout;
    let outage_at = Instant::now() + options.warmup;
    let mut heal_at: Option<Instant> = None;
    let mut closed_at: Option<Instant> = None;
    let mut last_status = Instant::now() - Duration::from_secs(60);
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the demo did not finish within {:?}",
            options.timeout
        );
        if heal_at.is_none() && Instant::now() >= outage_at {
            consumer::set_should_error(&clients.lambda, &deployed.consumer, true).await?;
            watch.report.outage_on_ms = now_ms();
            heal_at = Some(Instant::now() + options.outage);
            watch.say("OUTAGE: SHOULD_ERROR=true on the consumer; every batch now fails");
        }
        if let Some(at) = heal_at {
            if watch.report.healed_ms == 0 && Instant::now() >= at {
                consumer::set_should_error(&clients.lambda, &deployed.consumer, false).await?;
                watch.report.healed_ms = now_ms();
                watch.say("HEALED: SHOULD_ERROR=false; the next probe should succeed");
            }
        }

        observe(watch, breaker, &clients.sqs, tap).await?;
        if last_status.elapsed() >= Duration::from_secs(5) {
            last_status = Instant::now();
            let sent_so_far = sent.lock().map(|s| s.len()).unwrap_or_default();
            status_line(watch, sent_so_far);
        }

        if owner_done(watch) && closed_at.is_none() {
            closed_at = Some(Instant::now());
            stop_traffic.store(true, Ordering::Relaxed);
            watch.say("stopping traffic; waiting for the consumer to drain the queue");
        }
        if let Some(closed) = closed_at {
            let (_, depth) = watch.report.depths.last().copied().unwrap_or_default();
            let running = watch.live.seen.statuses().values().any(|s| s == "RUNNING");
            if depth.total() == 0 && !running && closed.elapsed() > Duration::from_secs(3) {
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
    logs: &aws_sdk_cloudwatchlogs::Client,
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
