//! `cargo xtask bench slow-start`: figures, not pass/fail. A backlog waits behind an open
//! circuit; once the consumer is healthy the breaker hands the mapping back, and this
//! measures, from the moment the mapping is enabled again, the consumer's peak in-flight
//! batches in the first minute and the time until the backlog is drained, without and with
//! the slow start. Each case runs on its own local stack (the emulator honours a mapping's
//! `MaximumConcurrency`). The emulator runs a mapping without a cap at 5 batches at once,
//! where AWS starts there and adds up to 300 a minute: the mapping gets a cap of its own
//! (`mapping_cap`) to stand for the burst a recovered dependency would take on AWS.

use crate::stack::{fast_breaker, fast_example, Deployment};
use crate::wait::eventually;
use crate::{breaker, consumer, status, traffic};
use anyhow::Result;
use std::time::{Duration, Instant};

/// The example stack's batch size (infra/example.yaml).
const BATCH_SIZE: u64 = 10;
/// The window the peak is taken over, from the mapping's re-enabling.
const FIRST_MINUTE: Duration = Duration::from_secs(60);

/// What one case measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// Most messages in flight at once in the first minute, and as batches (rounded up).
    pub peak_in_flight: u64,
    pub peak_batches: u64,
    /// From the mapping's re-enabling until the queue held nothing.
    pub drain_seconds: f64,
}

/// Batches in flight for `messages` in flight: a partial batch is a batch.
pub fn batches(messages: u64) -> u64 {
    messages.div_ceil(BATCH_SIZE)
}

pub fn run(
    messages: usize,
    slow_start_seconds: u32,
    latency_ms: u32,
    mapping_cap: u32,
) -> Result<()> {
    println!(
        "slow start: {messages} messages queued behind an open circuit, consumer latency \
         {latency_ms} ms per batch, batch size {BATCH_SIZE}, the mapping's own \
         MaximumConcurrency {mapping_cap}; one local stack per case"
    );
    let mut rows = Vec::new();
    for seconds in [0, slow_start_seconds] {
        let mut breaker_parameters = fast_breaker();
        breaker_parameters.extend([
            ("SlowStartSeconds", seconds.to_string()),
            // Probes before the backlog is sent must not close on an empty queue.
            ("EmptyQueuePolicy", "wait".into()),
            ("AlarmThreshold", "1000000".into()),
            ("MaxCircuitsPerHour", "0".into()),
        ]);
        let mut example = fast_example();
        // Room for a batch's latency within the visibility timeout.
        example.retain(|(name, _)| *name != "VisibilityTimeoutSeconds");
        let (runtime, d) = Deployment::start(&example, &breaker_parameters)?;
        let figures = runtime.block_on(async {
            breaker::set_maximum_concurrency(&d.lambda, d.mapping(), Some(mapping_cap as i32))
                .await?;
            measure(&d, messages, latency_ms).await
        })?;
        rows.push((seconds, figures));
    }
    println!();
    println!("| SlowStartSeconds | peak in flight, first minute | as batches | drained after |");
    println!("| ---: | ---: | ---: | ---: |");
    for (seconds, f) in &rows {
        println!(
            "| {seconds} | {} messages | {} | {:.0} s |",
            f.peak_in_flight, f.peak_batches, f.drain_seconds
        );
    }
    Ok(())
}

async fn measure(d: &Deployment, messages: usize, latency_ms: u32) -> Result<Figures> {
    consumer::configure(
        &d.lambda,
        d.function(),
        &[("LATENCY_MS", latency_ms.to_string())],
        None,
    )
    .await?;
    d.outage(true).await?;
    let execution = d.start_alarm_execution().await?;
    eventually("the circuit to open", Duration::from_secs(60), || async {
        Ok((d.mapping_state().await? == "Disabled").then_some(()))
    })
    .await?;
    traffic::send(&d.sqs, d.queue(), "backlog", messages).await?;
    d.outage(false).await?;
    // The healthy probe hands the mapping back: at once, or under the slow start's cap.
    let enabled = eventually(
        "the mapping to be enabled again",
        Duration::from_secs(120),
        || async {
            Ok(d.mapping_state()
                .await?
                .starts_with("Enabled")
                .then(Instant::now))
        },
    )
    .await?;
    let mut peak = 0;
    loop {
        let depth = status::queue_depth(&d.sqs, d.queue()).await?;
        if enabled.elapsed() <= FIRST_MINUTE {
            peak = peak.max(depth.in_flight);
        }
        if depth.total() == 0 {
            break;
        }
        anyhow::ensure!(
            enabled.elapsed() < Duration::from_secs(600),
            "the backlog was not drained in 10 minutes: {depth:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drain_seconds = enabled.elapsed().as_secs_f64();
    breaker::finished(&d.sfn, &execution, Duration::from_secs(300)).await?;
    Ok(Figures {
        peak_in_flight: peak,
        peak_batches: batches(peak),
        drain_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::batches;

    #[test]
    fn a_partial_batch_counts_as_a_batch() {
        assert_eq!(batches(0), 0);
        assert_eq!(batches(1), 1);
        assert_eq!(batches(10), 1);
        assert_eq!(batches(11), 2);
    }
}
