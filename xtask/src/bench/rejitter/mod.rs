//! `cargo xtask bench rejitter`: figures for the release rejitter binary, never pass/fail.
//!
//! The binary runs as Lambda runs it, against two fakes on loopback, each an axum router on
//! a runtime of its own ([`serve`]): a Lambda Runtime API that hands out SQS events and
//! collects the responses ([`runtime_api`]), and an SQS endpoint (`AWS_ENDPOINT_URL`,
//! [`fake_sqs`]) speaking the SDK's JSON protocol (`GetQueueUrl`, `GetQueueAttributes`,
//! `SendMessageBatch`; any other operation is refused and counted), which checks the batch
//! limits (10 entries and 1 MiB a call) and the queue's `MaximumMessageSize`, and counts calls
//! and entries ([`sqs_protocol`]). [`workload`] makes the events, [`session`] runs one process
//! between the fakes and [`runs`] drives one figure each: cold start, `SendMessageBatch` calls
//! per message for several message-size mixes, warm throughput and invocation latency,
//! `batchItemFailures` when SQS refuses entries, already rejittered records re-sent with the
//! fixed short delay, and peak RSS.
//!
//! aws-sdk-sqs (1.119) does not check the MD5 digests SQS returns (no checksum interceptor,
//! unlike the Java SDK), so the fake answers with a placeholder digest; a unit test runs the
//! real SDK client against the fake so an SDK that starts checking is noticed.

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{bench, paths};
use runs::{already_rejittered, refusals, throughput, workload, EmfCheck, MARKER_AGE_SECONDS};
use workload::Mix;

mod fake_sqs;
mod runs;
mod runtime_api;
mod serve;
mod session;
mod sqs_protocol;
mod workload;

pub const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:orders";
const ACCOUNT: &str = "123456789012";
const QUEUE_NAME: &str = "orders";
const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:rejitter";

/// SQS limits, repeated from the rejitter so the fake checks the binary independently: one
/// `SendMessageBatch` call carries at most 10 entries and 1 MiB, whatever the queue.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
pub const MAX_BATCH_ENTRIES: usize = 10;
/// The fake queue's `MaximumMessageSize` unless a run asks for a smaller one: SQS's largest.
pub const QUEUE_MAX_MESSAGE_BYTES: usize = 1_048_576;
/// The fake queue's `MessageRetentionPeriod`: 4 days, SQS's default.
pub const RETENTION_SECONDS: u32 = 345_600;
const MAX_DELAY_SECONDS: i64 = 900;

/// The fake SQS refuses the entries whose body starts with this.
pub const REFUSE_PREFIX: &str = "REFUSE-";

/// aws-sdk-sqs does not verify it (see the module doc).
const PLACEHOLDER_MD5: &str = "00000000000000000000000000000000";

/// Records per event: the rejitter mapping's `BatchSize` in infra/template.yaml.
const MAPPING_BATCH_SIZE: usize = 10;
/// Invocations per message-size mix.
const WORKLOAD_INVOCATIONS: usize = 30;
const KIB: usize = 1024;

/// Runs every figure and prints it.
pub fn run(runs: usize, invocations: usize, sqs_latency_ms: u64) -> Result<()> {
    let binary = build()?;
    let size = std::fs::metadata(&binary)?.len();
    println!(
        "rejitter binary: {} ({:.1} MiB)",
        binary.display(),
        size as f64 / 1048576.0
    );
    let mut emf = EmfCheck::default();

    let runs = runs.max(1);
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        // No SQS call happens at init; the endpoint is set anyway so none could leave loopback.
        samples.push(bench::cold_start_with(&binary, |api| {
            rejitter_env(api, "127.0.0.1:9")
        })?);
    }
    let (min, median, p90) = bench::summary(samples);
    println!(
        "cold start, process start to first Runtime API poll ({runs} runs): min {}  median {}  p90 {}  (goal <= 10 ms)",
        bench::ms(min),
        bench::ms(median),
        bench::ms(p90)
    );

    println!();
    println!(
        "SendMessageBatch calls per message ({WORKLOAD_INVOCATIONS} invocations of {MAPPING_BATCH_SIZE} records each, the mapping's BatchSize; goal <= 0.1 when ten fit per batch):"
    );
    println!(
        "  {:<34} {:>9} {:>11} {:>12} {:>12} {:>11}  TypeScript design / this (1 SendMessage per message = 1.00 calls/msg)",
        "message sizes (body)",
        "calls/msg",
        "lower bound",
        "entries/call",
        "largest call",
        "peak RSS",
    );
    // (sizes, the queue's MaximumMessageSize)
    let rows = [
        (Mix::Small, QUEUE_MAX_MESSAGE_BYTES),
        (Mix::Mixed, QUEUE_MAX_MESSAGE_BYTES),
        (Mix::Fixed(120 * KIB), QUEUE_MAX_MESSAGE_BYTES),
        (Mix::Large, QUEUE_MAX_MESSAGE_BYTES),
        (Mix::NearOldLimit, 256 * KIB),
    ];
    for (seed, (mix, queue_max)) in (1u64..).zip(rows) {
        let w = workload(&binary, mix, queue_max, seed)?;
        emf.add(&w.stopped);
        let sqs = &w.stopped.sqs;
        ensure!(
            sqs.refused_calls.is_empty(),
            "the fake SQS refused whole calls: {:?}",
            sqs.refused_calls
        );
        let per_message = sqs.calls as f64 / w.messages as f64;
        let label = if queue_max == QUEUE_MAX_MESSAGE_BYTES {
            mix.label()
        } else {
            format!("{}, {} queue", mix.label(), kib_short(queue_max))
        };
        println!(
            "  {:<34} {:>9.3} {:>11.3} {:>12.1} {:>12} {:>11}  {:.1}x as many calls",
            label,
            per_message,
            w.lower_bound as f64 / w.messages as f64,
            sqs.entry_bytes.len() as f64 / sqs.calls as f64,
            kib(sqs.largest_call_bytes),
            mib(w.stopped.peak_rss_kib),
            1.0 / per_message
        );
    }
    println!(
        "  lower bound: summed over invocations, max(ceil(records / {MAX_BATCH_ENTRIES}), ceil(bytes / 1 MiB), \
         and for k = 2..{MAX_BATCH_ENTRIES} ceil(messages over 1/k MiB / (k - 1)), as k of those exceed 1 MiB), \
         bytes as SQS counts them (body, attribute names, types and values, the marker included)."
    );
    println!(
        "  A call carries at most {MAX_BATCH_ENTRIES} entries and 1 MiB, whatever the queue's MaximumMessageSize: \
         ten small or mixed messages fit in one call unless they add up to more than 1 MiB; 120 KiB messages fit 8 to a call; \
         300-500 KiB messages go 2 or 3 to a call, packed in arrival order, so a little above the bound; \
         200-250 KiB messages on a queue whose limit is still 256 KiB go 4 or 5 to a full call (each alone with 256 KiB calls). \
         Ten records of 300-500 KiB stay under the 6 MB a mapping puts in one event."
    );

    println!();
    println!(
        "warm invocations (the first, which looks up the queue's URL and attributes, not counted), through the fake Runtime API and a fake SQS on loopback:"
    );
    println!(
        "  {:>8} {:>12} {:>11} {:>9} {:>15} {:>11} {:>10} {:>11}",
        "records",
        "SQS latency",
        "invocations",
        "msgs/s",
        "latency median",
        "p90",
        "CPU/msg",
        "first"
    );
    let mut rows = vec![
        (10, 0, invocations.max(1)),
        (100, 0, (invocations / 10).max(1)),
    ];
    if sqs_latency_ms > 0 {
        rows.push((10, sqs_latency_ms, invocations.clamp(1, 200)));
        rows.push((100, sqs_latency_ms, (invocations / 10).clamp(1, 50)));
    }
    let mut headline = None;
    for (records, latency_ms, count) in rows {
        let t = throughput(&binary, records, count, Duration::from_millis(latency_ms))?;
        emf.add(&t.stopped);
        let messages = records * count;
        let (_, median, p90) = bench::summary(t.latencies.clone());
        println!(
            "  {:>8} {:>12} {:>11} {:>9.0} {:>15} {:>11} {:>10} {:>11}",
            records,
            format!("{latency_ms} ms"),
            count,
            messages as f64 / t.elapsed.as_secs_f64(),
            bench::ms(median),
            bench::ms(p90),
            format!("{:.1} us", t.cpu_ns as f64 / 1000.0 / messages as f64),
            bench::ms(t.first)
        );
        if headline.is_none() {
            headline = Some((records, count, t));
        }
    }
    println!(
        "  msgs/s: records of the warm invocations over their wall time, one invocation at a time as one Lambda instance runs them; \
         latency: event handed out on /next to /response received; CPU/msg: the process's CPU time (all threads) over the warm run."
    );
    if let Some((records, count, t)) = headline {
        let sqs = &t.stopped.sqs;
        let (lo, hi, mean) = delay_spread(&sqs.delays);
        println!(
            "  GetQueueUrl calls: {}, GetQueueAttributes calls: {} for {} invocations (looked up once per process); delays drawn: {} in [{lo}, {hi}] s, mean {mean:.0} s (configured 0-900)",
            sqs.get_queue_url,
            sqs.get_queue_attributes,
            count + 1,
            sqs.delays.len()
        );
        println!();
        println!(
            "peak RSS (VmHWM, read just before the process is stopped) after {count} warm invocations of {records} records: {}",
            mib(t.stopped.peak_rss_kib)
        );
    }

    println!();
    let f = refusals(&binary)?;
    emf.add(&f.stopped);
    println!(
        "SQS refusing entries (bodies starting {REFUSE_PREFIX:?}, 2 of every 10): {} records, {} refused, batchItemFailures listed {} ({})",
        f.records,
        f.refused,
        f.listed,
        if f.exact {
            "exactly the refused ones"
        } else {
            "NOT the refused ones"
        }
    );
    let a = already_rejittered(&binary)?;
    emf.add(&a.stopped);
    let resend_delay = rejitter::RESEND_DELAY_SECONDS;
    println!(
        "already rejittered records (a marker {MARKER_AGE_SECONDS} s old, 2 of every 10): {} records, {} marked, \
         batchItemFailures listed {}; {} marked re-sent once each as a fresh copy delayed {resend_delay} s with a fresh marker ({}), \
         {} SendMessageBatch calls for {} invocations (marked and unmarked records go in separate calls); \
         calls the fake SQS refused (a ChangeMessageVisibilityBatch would be one): {}",
        a.records,
        a.marked,
        a.listed,
        a.resent,
        if a.exact {
            "exactly the marked ones"
        } else {
            "NOT exactly the marked ones"
        },
        a.stopped.sqs.calls,
        a.invocations,
        a.stopped.sqs.refused_calls.len(),
    );
    println!(
        "EMF metrics (stdout) vs the fake SQS over all runs: RejitterBatches {} / SendMessageBatch calls {}, MessagesRejittered {} / entries accepted {}",
        emf.emf.batches, emf.calls, emf.emf.rejittered, emf.accepted
    );
    Ok(())
}

/// Builds the release binary and returns its path as cargo reports it.
fn build() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("==> cargo build --release -p rejitter");
    let output = crate::run::without_cargo_package_env(&mut Command::new(&cargo))
        .current_dir(paths::root())
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "rejitter",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()?;
    ensure!(output.status.success(), "building the rejitter failed");
    executable(&String::from_utf8_lossy(&output.stdout), "rejitter")
        .context("cargo reported no rejitter executable")
}

/// The path of the `name` binary in cargo's `--message-format=json` output.
pub fn executable(messages: &str, name: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

/// The environment of a deployed rejitter (infra/template.yaml), its SDK pointed at
/// `sqs_endpoint` (`host:port`).
pub fn rejitter_env(runtime_api: &str, sqs_endpoint: &str) -> Vec<(&'static str, String)> {
    let mut env = bench::lambda_env(runtime_api, "rejitter");
    env.extend([
        ("QUEUE_ARN", QUEUE_ARN.into()),
        ("MIN_DELAY_SECONDS", "0".into()),
        ("MAX_DELAY_SECONDS", MAX_DELAY_SECONDS.to_string()),
        ("METRICS_NAMESPACE", "SqsCircuitBreaker".into()),
        ("RUST_LOG", "info".into()),
        ("AWS_ENDPOINT_URL", format!("http://{sqs_endpoint}")),
    ]);
    env
}

/// Min, max and mean.
fn delay_spread(delays: &[i64]) -> (i64, i64, f64) {
    let lo = delays.iter().copied().min().unwrap_or_default();
    let hi = delays.iter().copied().max().unwrap_or_default();
    let mean = delays.iter().sum::<i64>() as f64 / delays.len().max(1) as f64;
    (lo, hi, mean)
}

/// `256 KiB`, `1 MiB`.
fn kib_short(bytes: usize) -> String {
    if bytes.is_multiple_of(KIB * KIB) {
        format!("{} MiB", bytes / (KIB * KIB))
    } else {
        format!("{} KiB", bytes / KIB)
    }
}

fn kib(bytes: usize) -> String {
    format!("{:.1} KiB", bytes as f64 / KIB as f64)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn finds_the_executable_in_cargo_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"rejitter","kind":["lib"]},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"rejitter","kind":["bin"]},"executable":"/t/release/rejitter"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(
            executable(messages, "rejitter"),
            Some(PathBuf::from("/t/release/rejitter"))
        );
        assert_eq!(executable(messages, "controller"), None);
    }

    #[test]
    fn the_rejitter_env_points_the_sdk_at_loopback() {
        let env: BTreeMap<_, _> = rejitter_env("127.0.0.1:1", "127.0.0.1:2")
            .into_iter()
            .collect();
        assert_eq!(env["AWS_ENDPOINT_URL"], "http://127.0.0.1:2");
        assert_eq!(env["AWS_LAMBDA_RUNTIME_API"], "127.0.0.1:1");
        assert_eq!(env["QUEUE_ARN"], QUEUE_ARN);
        assert_eq!(env["AWS_EC2_METADATA_DISABLED"], "true");
    }
}
