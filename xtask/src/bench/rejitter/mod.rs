//! `cargo xtask bench rejitter`: figures for the release rejitter binary, never pass/fail.
//!
//! The binary runs as Lambda runs it, against two fakes on loopback served by plain std
//! threads: a Lambda Runtime API that hands out SQS events and collects the responses, and an
//! SQS endpoint (`AWS_ENDPOINT_URL`) speaking the SDK's JSON protocol (`GetQueueUrl`,
//! `GetQueueAttributes`, `SendMessageBatch`; any other operation is refused and counted), which
//! checks the batch limits (10 entries and 1 MiB a call) and the queue's `MaximumMessageSize`,
//! and counts calls and entries. Figures: cold start, `SendMessageBatch` calls per message for
//! several message-size mixes, warm throughput and invocation latency, `batchItemFailures` when
//! SQS refuses entries, already rejittered records re-sent with the fixed short delay, and peak
//! RSS.
//!
//! aws-sdk-sqs (1.119) does not check the MD5 digests SQS returns (no checksum interceptor,
//! unlike the Java SDK), so the fake answers with a placeholder digest; a unit test runs the
//! real SDK client against the fake so an SDK that starts checking is noticed.

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{bench, paths};

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
    let output = Command::new(&cargo)
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

// ---------------------------------------------------------------------------------------------
// Workloads

/// splitmix64: the same workloads on every run, without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

/// A distribution of message body sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// 100 B - 2 KiB: ten always fit in one call.
    Small,
    /// 80% 256 B - 8 KiB, 15% 8-64 KiB, 5% 64-200 KiB.
    Mixed,
    Fixed(usize),
    /// 300-500 KiB: two or three fit in one call, so packing order matters.
    Large,
    /// 200-250 KiB: near the 256 KiB message limit SQS had before 1 MiB (and a queue may keep);
    /// four or five fit in one call.
    NearOldLimit,
}

impl Mix {
    pub fn label(self) -> String {
        match self {
            Mix::Small => "small: 0.1-2 KiB".into(),
            Mix::Mixed => "mixed: 80% <8, 15% <64, 5% <200 KiB".into(),
            Mix::Fixed(n) => format!("{} KiB each", n / KIB),
            Mix::Large => "large: 300-500 KiB".into(),
            Mix::NearOldLimit => "200-250 KiB".into(),
        }
    }

    pub fn body_len(self, rng: &mut Rng) -> usize {
        match self {
            Mix::Small => rng.range(100, 2 * KIB),
            Mix::Mixed => match rng.range(0, 99) {
                0..=79 => rng.range(256, 8 * KIB),
                80..=94 => rng.range(8 * KIB, 64 * KIB),
                _ => rng.range(64 * KIB, 200 * KIB),
            },
            Mix::Fixed(n) => n,
            Mix::Large => rng.range(300 * KIB, 500 * KIB),
            Mix::NearOldLimit => rng.range(200 * KIB, 250 * KIB),
        }
    }
}

/// One record of a generated event.
#[derive(Debug, Clone, Copy)]
pub struct RecordSpec {
    pub body_len: usize,
    /// The body starts with [`REFUSE_PREFIX`], so the fake SQS refuses the re-send.
    pub refuse: bool,
    /// The record carries the rejitter's marker with this value (epoch seconds): already
    /// rejittered when recent.
    pub marker: Option<u64>,
}

/// `n` records with sizes from `mix`, none refused.
pub fn specs(mix: Mix, n: usize, rng: &mut Rng) -> Vec<RecordSpec> {
    (0..n)
        .map(|_| RecordSpec {
            body_len: mix.body_len(rng),
            refuse: false,
            marker: None,
        })
        .collect()
}

/// The `messageId` of record `i` of invocation `invocation`.
pub fn message_id(invocation: usize, i: usize) -> String {
    format!("{invocation:08x}-0000-4000-8000-{i:012x}")
}

/// A body of exactly `len` bytes (unless the prefix alone is longer).
pub fn body(invocation: usize, i: usize, spec: RecordSpec) -> String {
    let prefix = if spec.refuse { REFUSE_PREFIX } else { "msg-" };
    let mut body = format!("{prefix}{invocation}-{i}-");
    let pad = spec.body_len.saturating_sub(body.len());
    body.extend(std::iter::repeat_n('x', pad));
    body
}

/// The SQS event the rejitter's mapping would deliver: one record per spec, from
/// [`QUEUE_ARN`], each with two message attributes and an X-Ray trace header to carry over.
pub fn sqs_event(invocation: usize, records: &[RecordSpec]) -> Value {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .to_string();
    let records: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(i, &spec)| {
            let mut attributes = json!({
                "tenant": {"stringValue": "acme", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
                "attempt": {"stringValue": "1", "stringListValues": [], "binaryListValues": [], "dataType": "Number"}
            });
            if let Some(marker) = spec.marker {
                attributes[rejitter::MARKER] = json!({
                    "stringValue": marker.to_string(), "stringListValues": [], "binaryListValues": [], "dataType": "String"
                });
            }
            json!({
                "messageId": message_id(invocation, i),
                "receiptHandle": format!("AQEB-bench-{invocation}-{i}"),
                "body": body(invocation, i, spec),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now_ms,
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": now_ms,
                    "AWSTraceHeader": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
                },
                "messageAttributes": attributes,
                "md5OfBody": PLACEHOLDER_MD5,
                "eventSource": "aws:sqs",
                "eventSourceARN": QUEUE_ARN,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The `itemIdentifier`s of an `SQSBatchResponse`.
pub fn batch_item_failures(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["itemIdentifier"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A lower bound on the `SendMessageBatch` calls that can carry messages of these sizes: ten
/// entries and [`MAX_BATCH_BYTES`] per call, and, for each k from 2 to ten, at most k - 1
/// messages over 1/k of [`MAX_BATCH_BYTES`] in one call (k of them would exceed it; k = 2: no
/// two messages over half in one call).
pub fn fewest_calls(sizes: &[usize]) -> usize {
    let by_count = sizes.len().div_ceil(MAX_BATCH_ENTRIES);
    let by_bytes = sizes.iter().sum::<usize>().div_ceil(MAX_BATCH_BYTES);
    let by_share = (2..=MAX_BATCH_ENTRIES)
        .map(|k| {
            let over = sizes
                .iter()
                .filter(|&&s| s.saturating_mul(k) > MAX_BATCH_BYTES)
                .count();
            over.div_ceil(k - 1)
        })
        .max()
        .unwrap_or_default();
    by_count.max(by_bytes).max(by_share)
}

// ---------------------------------------------------------------------------------------------
// Runs

struct Workload {
    messages: usize,
    lower_bound: usize,
    stopped: Stopped,
}

/// [`WORKLOAD_INVOCATIONS`] invocations of `mix`-sized records, counted by the fake SQS, whose
/// queue's `MaximumMessageSize` is `queue_max`.
fn workload(binary: &Path, mix: Mix, queue_max: usize, seed: u64) -> Result<Workload> {
    let mut session = Session::start(binary, Duration::ZERO, queue_max)?;
    let mut rng = Rng(seed);
    let (mut messages, mut lower_bound) = (0, 0);
    for invocation in 0..WORKLOAD_INVOCATIONS {
        let specs = specs(mix, MAPPING_BATCH_SIZE, &mut rng);
        let before = session.sqs.snapshot().entry_bytes.len();
        let (_, response) = session.invoke(sqs_event(invocation, &specs).to_string())?;
        let failures = batch_item_failures(&response);
        ensure!(
            failures.is_empty(),
            "{}: records not re-sent: {failures:?}",
            mix.label()
        );
        // Sequential invocations: the entries since `before` are exactly this one's.
        lower_bound += fewest_calls(&session.sqs.snapshot().entry_bytes[before..]);
        messages += specs.len();
    }
    Ok(Workload {
        messages,
        lower_bound,
        stopped: session.stop()?,
    })
}

struct Throughput {
    latencies: Vec<Duration>,
    elapsed: Duration,
    first: Duration,
    cpu_ns: u64,
    stopped: Stopped,
}

/// One process, a first invocation, then `invocations` timed ones of `records` small records.
fn throughput(
    binary: &Path,
    records: usize,
    invocations: usize,
    sqs_latency: Duration,
) -> Result<Throughput> {
    let mut rng = Rng(7);
    // Generated up front so the generator is not timed.
    let events: Vec<String> = (0..=invocations)
        .map(|i| sqs_event(i, &specs(Mix::Small, records, &mut rng)).to_string())
        .collect();
    let mut session = Session::start(binary, sqs_latency, QUEUE_MAX_MESSAGE_BYTES)?;
    let mut events = events.into_iter();
    let (first, _) = session.invoke(events.next().unwrap_or_default())?;
    let cpu_before = session.cpu_ns()?;
    let mut latencies = Vec::with_capacity(invocations);
    let started = Instant::now();
    for event in events {
        let (latency, response) = session.invoke(event)?;
        let failures = batch_item_failures(&response);
        ensure!(failures.is_empty(), "records not re-sent: {failures:?}");
        latencies.push(latency);
    }
    let elapsed = started.elapsed();
    let cpu_ns = session.cpu_ns()?.saturating_sub(cpu_before);
    Ok(Throughput {
        latencies,
        elapsed,
        first,
        cpu_ns,
        stopped: session.stop()?,
    })
}

struct Refusals {
    records: usize,
    refused: usize,
    listed: usize,
    exact: bool,
    stopped: Stopped,
}

/// 20 invocations in which SQS refuses records 3 and 8 of every 10.
fn refusals(binary: &Path) -> Result<Refusals> {
    let mut session = Session::start(binary, Duration::ZERO, QUEUE_MAX_MESSAGE_BYTES)?;
    let mut rng = Rng(11);
    let (mut records, mut refused, mut listed, mut exact) = (0, 0, 0, true);
    for invocation in 0..20 {
        let mut specs = specs(Mix::Small, MAPPING_BATCH_SIZE, &mut rng);
        for (i, spec) in specs.iter_mut().enumerate() {
            spec.refuse = i % 5 == 3;
        }
        let want: HashSet<String> = (0..specs.len())
            .filter(|&i| specs[i].refuse)
            .map(|i| message_id(invocation, i))
            .collect();
        let (_, response) = session.invoke(sqs_event(invocation, &specs).to_string())?;
        let got = batch_item_failures(&response);
        exact &= got.len() == want.len() && got.iter().all(|id| want.contains(id));
        records += specs.len();
        refused += want.len();
        listed += got.len();
    }
    Ok(Refusals {
        records,
        refused,
        listed,
        exact,
        stopped: session.stop()?,
    })
}

/// How old the marker of an already rejittered record is in [`already_rejittered`].
const MARKER_AGE_SECONDS: u64 = 60;

struct AlreadyRejittered {
    invocations: usize,
    records: usize,
    marked: usize,
    listed: usize,
    /// Marked records whose copy SQS accepted with the fixed delay and a fresh marker.
    resent: usize,
    exact: bool,
    stopped: Stopped,
}

/// 20 invocations in which records 1 and 6 of every 10 carry a marker [`MARKER_AGE_SECONDS`]
/// old: the rejitter re-sends each as a fresh copy delayed
/// [`rejitter::RESEND_DELAY_SECONDS`] with a fresh marker, and lists none of them in
/// `batchItemFailures`.
fn already_rejittered(binary: &Path) -> Result<AlreadyRejittered> {
    let mut session = Session::start(binary, Duration::ZERO, QUEUE_MAX_MESSAGE_BYTES)?;
    let mut rng = Rng(13);
    let invocations = 20;
    let (mut records, mut marked, mut listed, mut resent, mut exact) = (0, 0, 0, 0, true);
    let resend_delay = i64::from(rejitter::RESEND_DELAY_SECONDS);
    for invocation in 0..invocations {
        let now_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut specs = specs(Mix::Small, MAPPING_BATCH_SIZE, &mut rng);
        for (i, spec) in specs.iter_mut().enumerate() {
            if i % 5 == 1 {
                spec.marker = Some(now_s - MARKER_AGE_SECONDS);
            }
        }
        let before = session.sqs.snapshot().sent.len();
        let (_, response) = session.invoke(sqs_event(invocation, &specs).to_string())?;
        let got = batch_item_failures(&response);
        // Sequential invocations: the entries since `before` are exactly this one's.
        let sent = session.sqs.snapshot().sent.split_off(before);
        let old_marker = (now_s - MARKER_AGE_SECONDS).to_string();
        for (i, &spec) in specs.iter().enumerate() {
            let head = sent_head(&body(invocation, i, spec));
            let copies: Vec<&SentEntry> = sent.iter().filter(|e| e.head == head).collect();
            let fresh = |e: &SentEntry| {
                e.marker
                    .as_deref()
                    .is_some_and(|m| m != old_marker && m.parse::<u64>().is_ok_and(|m| m >= now_s))
            };
            let ok = match copies[..] {
                [copy] => {
                    let short = copy.delay == resend_delay;
                    if spec.marker.is_some() {
                        resent += usize::from(short && fresh(copy));
                        short && fresh(copy)
                    } else {
                        // The random 0-900 s delay may happen to be the short one.
                        fresh(copy)
                    }
                }
                _ => false,
            };
            exact &= ok;
        }
        exact &= got.is_empty();
        records += specs.len();
        marked += specs.iter().filter(|s| s.marker.is_some()).count();
        listed += got.len();
    }
    Ok(AlreadyRejittered {
        invocations,
        records,
        marked,
        listed,
        resent,
        exact,
        stopped: session.stop()?,
    })
}

/// EMF totals against what the fake SQS saw, over every process.
#[derive(Default)]
struct EmfCheck {
    emf: EmfTally,
    calls: usize,
    accepted: usize,
}

impl EmfCheck {
    fn add(&mut self, stopped: &Stopped) {
        self.emf.lines += stopped.emf.lines;
        self.emf.rejittered += stopped.emf.rejittered;
        self.emf.batches += stopped.emf.batches;
        self.emf.failures += stopped.emf.failures;
        self.calls += stopped.sqs.calls;
        self.accepted += stopped.sqs.accepted;
    }
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

// ---------------------------------------------------------------------------------------------
// One rejitter process between the two fakes

/// What a stopped process leaves.
struct Stopped {
    peak_rss_kib: u64,
    emf: EmfTally,
    sqs: SqsTally,
}

struct Session {
    child: Child,
    runtime: RuntimeApi,
    sqs: FakeSqs,
    stdout: Option<JoinHandle<EmfTally>>,
    stderr: Option<JoinHandle<String>>,
    invocations: usize,
}

impl Session {
    /// The fake queue's `MaximumMessageSize` is `queue_max`.
    fn start(binary: &Path, sqs_latency: Duration, queue_max: usize) -> Result<Session> {
        let sqs = FakeSqs::start(sqs_latency, queue_max)?;
        let runtime = RuntimeApi::start()?;
        let mut child = Command::new(binary)
            .env_clear()
            .envs(rejitter_env(
                &runtime.server.addr.to_string(),
                &sqs.server.addr.to_string(),
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        // Read like Lambda's log pipe, so logging costs what it costs when deployed.
        let stdout = child.stdout.take().map(|out| {
            thread::spawn(move || {
                let mut tally = EmfTally::default();
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    tally.add_line(&line);
                }
                tally
            })
        });
        let stderr = child.stderr.take().map(|mut err| {
            thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                text
            })
        });
        Ok(Session {
            child,
            runtime,
            sqs,
            stdout,
            stderr,
            invocations: 0,
        })
    }

    /// Hands `event` out on `/next` and waits for its `/response`; returns the time between
    /// the two and the response.
    fn invoke(&mut self, event: String) -> Result<(Duration, Value)> {
        let id = format!("bench-{:08}", self.invocations);
        self.invocations += 1;
        let handed_out = Instant::now();
        self.runtime
            .events
            .send((id.clone(), event))
            .context("the fake Runtime API stopped")?;
        let done = loop {
            match self.runtime.done.recv_timeout(Duration::from_millis(200)) {
                Ok(done) => break done,
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(status) = self.child.try_wait()? {
                        bail!(
                            "the rejitter exited ({status}) during invocation {id}: {}",
                            self.stderr_tail()
                        );
                    }
                    if handed_out.elapsed() > Duration::from_secs(60) {
                        bail!("invocation {id} got no response in 60 s");
                    }
                }
                Err(RecvTimeoutError::Disconnected) => bail!("the fake Runtime API stopped"),
            }
        };
        match done.outcome {
            Outcome::Response(body) => {
                ensure!(
                    done.request_id == id,
                    "response for {}, expected {id}",
                    done.request_id
                );
                let latency = done.at.saturating_duration_since(handed_out);
                Ok((latency, serde_json::from_slice(&body)?))
            }
            Outcome::Error(body) => {
                bail!("invocation {id} failed: {}", String::from_utf8_lossy(&body))
            }
            Outcome::InitError(body) => {
                bail!("init failed: {}", String::from_utf8_lossy(&body))
            }
        }
    }

    fn stderr_tail(&mut self) -> String {
        let text = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        text.get(start..).unwrap_or(&text).to_owned()
    }

    /// CPU time of all the process's threads so far.
    fn cpu_ns(&self) -> Result<u64> {
        let tasks = format!("/proc/{}/task", self.child.id());
        let mut total = 0;
        for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
            let text = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
            total += schedstat_cpu_ns(&text).unwrap_or_default();
        }
        Ok(total)
    }

    /// Reads the peak RSS, then stops the process and collects what it logged.
    fn stop(mut self) -> Result<Stopped> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let peak_rss_kib = vm_hwm_kib(&status).context("no VmHWM in /proc/<pid>/status")?;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let emf = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Ok(Stopped {
            peak_rss_kib,
            emf,
            sqs: self.sqs.snapshot(),
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmHWM` (peak resident set) in KiB from the text of `/proc/<pid>/status`.
pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

/// Time on CPU in ns, the first field of `/proc/<pid>/task/<tid>/schedstat`.
pub fn schedstat_cpu_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// Totals of the EMF lines a process printed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EmfTally {
    pub lines: usize,
    pub rejittered: u64,
    pub batches: u64,
    pub failures: u64,
}

impl EmfTally {
    /// Counts `line` if it is an EMF line; other log lines are skipped.
    pub fn add_line(&mut self, line: &str) {
        if !line.contains("\"_aws\"") {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return;
        };
        let count = |name: &str| v[name].as_u64().unwrap_or_default();
        self.lines += 1;
        self.rejittered += count("MessagesRejittered");
        self.batches += count("RejitterBatches");
        self.failures += count("RejitterFailures");
    }
}

// ---------------------------------------------------------------------------------------------
// Fake Lambda Runtime API

enum Outcome {
    Response(Vec<u8>),
    Error(Vec<u8>),
    InitError(Vec<u8>),
}

struct Done {
    request_id: String,
    outcome: Outcome,
    at: Instant,
}

/// Serves `/next` with the events the driver sends on `events` (blocking until there is one,
/// as Lambda does) and reports every `/response` and `/error` on `done`.
struct RuntimeApi {
    server: Server,
    events: SyncSender<(String, String)>,
    done: Receiver<Done>,
}

impl RuntimeApi {
    fn start() -> Result<RuntimeApi> {
        let (events, next) = mpsc::sync_channel::<(String, String)>(1);
        let (report, done) = mpsc::channel::<Done>();
        let next = Mutex::new(next);
        let handler = move |req: &Request| -> Response {
            let Some(route) = req.path.strip_prefix("/2018-06-01/runtime/") else {
                return Response::text(404, "not found");
            };
            let reported = |request_id: &str, outcome: Outcome| {
                let _ = report.send(Done {
                    request_id: request_id.to_owned(),
                    outcome,
                    at: Instant::now(),
                });
                Response::text(202, "{\"status\":\"OK\"}")
            };
            match (req.method.as_str(), route) {
                ("GET", "invocation/next") => {
                    let event = next.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok((request_id, body)) = event else {
                        return Response::text(500, "the benchmark is over");
                    };
                    let deadline_ms = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis()
                        + 900_000;
                    Response::new(200, "application/json", body.into_bytes())
                        .header("lambda-runtime-aws-request-id", request_id)
                        .header("lambda-runtime-deadline-ms", deadline_ms.to_string())
                        .header("lambda-runtime-invoked-function-arn", FUNCTION_ARN.into())
                        .header(
                            "lambda-runtime-trace-id",
                            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0".into(),
                        )
                }
                ("POST", "init/error") => reported("", Outcome::InitError(req.body.clone())),
                ("POST", route) => {
                    let id = route.strip_prefix("invocation/").unwrap_or_default();
                    if let Some(id) = id.strip_suffix("/response") {
                        reported(id, Outcome::Response(req.body.clone()))
                    } else if let Some(id) = id.strip_suffix("/error") {
                        reported(id, Outcome::Error(req.body.clone()))
                    } else {
                        Response::text(404, "not found")
                    }
                }
                _ => Response::text(404, "not found"),
            }
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        Ok(RuntimeApi {
            server: Server::start(listener, Arc::new(handler))?,
            events,
            done,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Fake SQS (JSON protocol)

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueUrlInput {
    queue_name: String,
    #[serde(rename = "QueueOwnerAWSAccountId")]
    queue_owner: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueAttributesInput {
    queue_url: String,
    #[serde(default)]
    attribute_names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageBatchInput {
    queue_url: String,
    entries: Vec<EntryInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EntryInput {
    id: String,
    message_body: String,
    delay_seconds: Option<i64>,
    #[serde(default)]
    message_attributes: BTreeMap<String, AttributeInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AttributeInput {
    data_type: String,
    string_value: Option<String>,
    /// Base64.
    binary_value: Option<String>,
}

impl EntryInput {
    /// Bytes SQS counts: body, and each attribute's name, data type and value.
    fn bytes(&self) -> usize {
        self.message_body.len()
            + self
                .message_attributes
                .iter()
                .map(|(name, a)| {
                    let value = match (&a.string_value, &a.binary_value) {
                        (Some(s), _) => s.len(),
                        (None, Some(b)) => base64_decoded_len(b),
                        (None, None) => 0,
                    };
                    name.len() + a.data_type.len() + value
                })
                .sum::<usize>()
    }
}

/// Decoded length of padded base64, without decoding.
pub fn base64_decoded_len(text: &str) -> usize {
    let padding = text.bytes().rev().take_while(|&b| b == b'=').count();
    (text.len() / 4 * 3).saturating_sub(padding)
}

/// The one queue the fake SQS serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeQueue {
    pub url: String,
    /// Its `MaximumMessageSize`: a larger entry is refused.
    pub max_message_bytes: usize,
}

/// What one request to the fake SQS was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqsCall {
    GetQueueUrl,
    GetQueueAttributes,
    SendMessageBatch {
        entry_bytes: Vec<usize>,
        accepted: usize,
        refused: usize,
        /// The entries accepted, in order.
        sent: Vec<SentEntry>,
    },
    /// Refused as a whole, as SQS would: `operation: code`.
    Refused(String),
}

/// An entry the fake SQS accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEntry {
    /// The body's first [`SENT_HEAD_CHARS`] characters ([`sent_head`]): enough to tell the
    /// benchmark's records apart.
    pub head: String,
    pub delay: i64,
    /// The rejitter's marker attribute, if the entry carries one with a string value.
    pub marker: Option<String>,
}

/// How much of a body a [`SentEntry`] keeps.
pub const SENT_HEAD_CHARS: usize = 40;

/// The head of `body` a [`SentEntry`] keeps.
pub fn sent_head(body: &str) -> String {
    body.chars().take(SENT_HEAD_CHARS).collect()
}

/// The fake's answer to one request.
#[derive(Debug)]
pub struct SqsReply {
    pub status: u16,
    pub body: String,
    /// `x-amzn-query-error` of an error: the SDK, query-compatible, matches errors on it.
    pub query_error: Option<String>,
    pub call: SqsCall,
}

/// Answers one SQS JSON-protocol request (`target` is the `X-Amz-Target` header) for the one
/// `queue`. `SendMessageBatch` is checked against SQS's limits (a violation refuses the call as
/// SQS does); an entry is refused
/// when its body starts with [`REFUSE_PREFIX`], it is over the queue's `MaximumMessageSize` or
/// its delay is out of range. `next_id` numbers the message ids.
pub fn sqs_reply(
    target: Option<&str>,
    body: &[u8],
    queue: &FakeQueue,
    next_id: &mut u64,
) -> SqsReply {
    let queue_url = queue.url.as_str();
    match target {
        Some("AmazonSQS.GetQueueUrl") => match serde_json::from_slice::<GetQueueUrlInput>(body) {
            Ok(input)
                if input.queue_name == QUEUE_NAME
                    && input.queue_owner.as_deref().is_none_or(|a| a == ACCOUNT) =>
            {
                SqsReply {
                    status: 200,
                    body: json!({ "QueueUrl": queue_url }).to_string(),
                    query_error: None,
                    call: SqsCall::GetQueueUrl,
                }
            }
            Ok(_) => sqs_error(
                "GetQueueUrl",
                "QueueDoesNotExist",
                "The specified queue does not exist.",
            ),
            Err(e) => sqs_error("GetQueueUrl", "InvalidParameterValue", &e.to_string()),
        },
        Some("AmazonSQS.GetQueueAttributes") => {
            match serde_json::from_slice::<GetQueueAttributesInput>(body) {
                Ok(input) => get_queue_attributes(input, queue),
                Err(e) => sqs_error(
                    "GetQueueAttributes",
                    "InvalidParameterValue",
                    &e.to_string(),
                ),
            }
        }
        Some("AmazonSQS.SendMessageBatch") => {
            match serde_json::from_slice::<SendMessageBatchInput>(body) {
                Ok(input) => send_message_batch(input, queue, next_id),
                Err(e) => sqs_error("SendMessageBatch", "InvalidParameterValue", &e.to_string()),
            }
        }
        other => sqs_error(
            other.unwrap_or("(no X-Amz-Target)"),
            "UnknownOperationException",
            "The fake SQS answers GetQueueUrl, GetQueueAttributes and SendMessageBatch only.",
        ),
    }
}

/// The queue's `MaximumMessageSize` and `MessageRetentionPeriod`, the only attributes the fake
/// knows: those asked for (`All`: both), as strings like SQS's.
fn get_queue_attributes(input: GetQueueAttributesInput, queue: &FakeQueue) -> SqsReply {
    if input.queue_url != queue.url {
        return sqs_error(
            "GetQueueAttributes",
            "QueueDoesNotExist",
            "The specified queue does not exist.",
        );
    }
    let known = [
        ("MaximumMessageSize", queue.max_message_bytes.to_string()),
        ("MessageRetentionPeriod", RETENTION_SECONDS.to_string()),
    ];
    let mut attributes = serde_json::Map::new();
    for name in &input.attribute_names {
        if name == "All" {
            for (known, value) in &known {
                attributes.insert((*known).to_owned(), json!(value));
            }
        } else if let Some((known, value)) = known.iter().find(|(k, _)| k == name) {
            attributes.insert((*known).to_owned(), json!(value));
        } else {
            return sqs_error(
                "GetQueueAttributes",
                "InvalidAttributeName",
                &format!("Unknown Attribute {name}."),
            );
        }
    }
    let body = if attributes.is_empty() {
        json!({})
    } else {
        json!({ "Attributes": attributes })
    };
    SqsReply {
        status: 200,
        body: body.to_string(),
        query_error: None,
        call: SqsCall::GetQueueAttributes,
    }
}

/// Why SQS would refuse a batch call with these entry ids as a whole: none, more than
/// [`MAX_BATCH_ENTRIES`], or two alike.
fn batch_shape_error<'a>(
    ids: impl ExactSizeIterator<Item = &'a str>,
) -> Option<(&'static str, &'static str)> {
    let count = ids.len();
    let distinct = ids.collect::<HashSet<_>>().len();
    if count == 0 {
        Some((
            "EmptyBatchRequest",
            "The batch request doesn't contain any entries.",
        ))
    } else if count > MAX_BATCH_ENTRIES {
        Some((
            "TooManyEntriesInBatchRequest",
            "The batch request contains more entries than permissible.",
        ))
    } else if distinct != count {
        Some((
            "BatchEntryIdsNotDistinct",
            "Two or more batch entries in the request have the same Id.",
        ))
    } else {
        None
    }
}

fn send_message_batch(
    input: SendMessageBatchInput,
    queue: &FakeQueue,
    next_id: &mut u64,
) -> SqsReply {
    let refuse = |code, message: &str| sqs_error("SendMessageBatch", code, message);
    if input.queue_url != queue.url {
        return refuse("QueueDoesNotExist", "The specified queue does not exist.");
    }
    if let Some((code, message)) = batch_shape_error(input.entries.iter().map(|e| e.id.as_str())) {
        return refuse(code, message);
    }
    let entry_bytes: Vec<usize> = input.entries.iter().map(EntryInput::bytes).collect();
    if entry_bytes.iter().sum::<usize>() > MAX_BATCH_BYTES {
        return refuse(
            "BatchRequestTooLong",
            "The length of all the messages put together is more than the limit.",
        );
    }
    let (mut successful, mut failed, mut sent) = (Vec::new(), Vec::new(), Vec::new());
    for (entry, &bytes) in input.entries.iter().zip(&entry_bytes) {
        let delay = entry.delay_seconds.unwrap_or_default();
        let too_long = format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {} bytes.",
            queue.max_message_bytes
        );
        let problem = if entry.message_body.starts_with(REFUSE_PREFIX) {
            Some("refused on purpose by the benchmark")
        } else if bytes > queue.max_message_bytes {
            Some(too_long.as_str())
        } else if !(0..=MAX_DELAY_SECONDS).contains(&delay) {
            Some("DelaySeconds must be between 0 and 900")
        } else {
            None
        };
        match problem {
            Some(message) => failed.push(json!({
                "Id": entry.id,
                "SenderFault": true,
                "Code": "InvalidParameterValue",
                "Message": message
            })),
            None => {
                *next_id += 1;
                sent.push(SentEntry {
                    head: sent_head(&entry.message_body),
                    delay,
                    marker: entry
                        .message_attributes
                        .get(rejitter::MARKER)
                        .and_then(|a| a.string_value.clone()),
                });
                successful.push(json!({
                    "Id": entry.id,
                    "MessageId": format!("5fea7756-0ea4-451a-a703-{:012x}", *next_id),
                    "MD5OfMessageBody": PLACEHOLDER_MD5
                }));
            }
        }
    }
    let (accepted, refused) = (successful.len(), failed.len());
    SqsReply {
        status: 200,
        body: json!({ "Successful": successful, "Failed": failed }).to_string(),
        query_error: None,
        call: SqsCall::SendMessageBatch {
            entry_bytes,
            accepted,
            refused,
            sent,
        },
    }
}

fn sqs_error(operation: &str, code: &str, message: &str) -> SqsReply {
    let query_code = match code {
        "QueueDoesNotExist" => Some("AWS.SimpleQueueService.NonExistentQueue".to_owned()),
        "InvalidParameterValue" | "UnknownOperationException" => None,
        _ => Some(format!("AWS.SimpleQueueService.{code}")),
    };
    SqsReply {
        status: 400,
        body: json!({ "__type": format!("com.amazonaws.sqs#{code}"), "message": message })
            .to_string(),
        query_error: query_code.map(|c| format!("{c};Sender")),
        call: SqsCall::Refused(format!("{operation}: {code}")),
    }
}

/// Everything the fake SQS answered.
#[derive(Debug, Default, Clone)]
pub struct SqsTally {
    pub get_queue_url: usize,
    pub get_queue_attributes: usize,
    /// `SendMessageBatch` calls answered 200.
    pub calls: usize,
    /// The size of every entry received, in arrival order.
    pub entry_bytes: Vec<usize>,
    pub largest_call_bytes: usize,
    pub accepted: usize,
    pub refused_entries: usize,
    pub refused_calls: Vec<String>,
    pub delays: Vec<i64>,
    /// Every entry accepted, in arrival order.
    pub sent: Vec<SentEntry>,
}

impl SqsTally {
    fn record(&mut self, call: SqsCall) {
        match call {
            SqsCall::GetQueueUrl => self.get_queue_url += 1,
            SqsCall::GetQueueAttributes => self.get_queue_attributes += 1,
            SqsCall::SendMessageBatch {
                entry_bytes,
                accepted,
                refused,
                sent,
            } => {
                self.calls += 1;
                self.largest_call_bytes = self
                    .largest_call_bytes
                    .max(entry_bytes.iter().sum::<usize>());
                self.entry_bytes.extend(entry_bytes);
                self.accepted += accepted;
                self.refused_entries += refused;
                self.delays.extend(sent.iter().map(|e| e.delay));
                self.sent.extend(sent);
            }
            SqsCall::Refused(what) => self.refused_calls.push(what),
        }
    }
}

struct FakeSqs {
    server: Server,
    tally: Arc<Mutex<SqsTally>>,
}

impl FakeSqs {
    /// Answers after `latency`, to stand in for the network and SQS itself; the queue's
    /// `MaximumMessageSize` is `max_message_bytes`.
    fn start(latency: Duration, max_message_bytes: usize) -> Result<FakeSqs> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let queue = FakeQueue {
            url: format!("http://{}/{ACCOUNT}/{QUEUE_NAME}", listener.local_addr()?),
            max_message_bytes,
        };
        let tally = Arc::new(Mutex::new(SqsTally::default()));
        let next_id = Mutex::new(0u64);
        let recorded = Arc::clone(&tally);
        let handler = move |req: &Request| -> Response {
            let reply = {
                let mut next_id = next_id.lock().unwrap_or_else(PoisonError::into_inner);
                sqs_reply(req.header("x-amz-target"), &req.body, &queue, &mut next_id)
            };
            recorded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(reply.call);
            if !latency.is_zero() {
                thread::sleep(latency);
            }
            let response = Response::new(
                reply.status,
                "application/x-amz-json-1.0",
                reply.body.into(),
            )
            .header(
                "x-amzn-requestid",
                "7a62c49f-347e-4fc4-9331-6e8e7a96aa73".into(),
            );
            match reply.query_error {
                Some(code) => response.header("x-amzn-query-error", code),
                None => response,
            }
        };
        Ok(FakeSqs {
            server: Server::start(listener, Arc::new(handler))?,
            tally,
        })
    }

    fn snapshot(&self) -> SqsTally {
        self.tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 server: keep-alive, Content-Length and chunked bodies, a thread per
// connection (a /next poll blocks its thread until the next event).

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
pub struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("content-type", content_type.to_owned())],
            body,
        }
    }

    fn text(status: u16, body: &str) -> Response {
        Response::new(status, "text/plain", body.as_bytes().to_vec())
    }

    fn header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }

    /// Head and body in one buffer, written with one call.
    pub fn to_bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            202 => "Accepted",
            400 => "Bad Request",
            404 => "Not Found",
            _ => "Error",
        };
        let mut head = format!("HTTP/1.1 {} {reason}\r\n", self.status);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", self.body.len()));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// A line without its CRLF; end of input is an error.
fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// The next request on a connection, or `None` when the client closed it between requests.
pub fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(invalid("malformed request line"));
    };
    let mut request = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        ..Request::default()
    };
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid("malformed header"))?;
        request
            .headers
            .push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        loop {
            let size_line = read_line(reader)?;
            let size = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the blank line.
                while !read_line(reader)?.is_empty() {}
                break;
            }
            let start = request.body.len();
            request.body.resize(start + size, 0);
            reader.read_exact(&mut request.body[start..])?;
            read_line(reader)?;
        }
    } else if let Some(length) = request.header("content-length") {
        let length: usize = length.parse().map_err(|_| invalid("bad content-length"))?;
        request.body.resize(length, 0);
        reader.read_exact(&mut request.body)?;
    }
    Ok(Some(request))
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// Accepts on `listener` until dropped.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    fn start(listener: TcpListener, handler: Arc<Handler>) -> io::Result<Server> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let accept = thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let handler = Arc::clone(&handler);
                thread::spawn(move || serve(stream, &*handler));
            }
        });
        Ok(Server {
            addr,
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn serve(stream: TcpStream, handler: &Handler) -> io::Result<()> {
    // Small requests and replies: without this, Nagle and delayed ACKs add ~40 ms stalls.
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some(request) = read_request(&mut reader)? {
        let response = handler(&request);
        writer.write_all(&response.to_bytes())?;
        if request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const URL: &str = "http://127.0.0.1:1/123456789012/orders";

    fn queue(max_message_bytes: usize) -> FakeQueue {
        FakeQueue {
            url: URL.to_owned(),
            max_message_bytes,
        }
    }

    fn reply_from(queue: &FakeQueue, target: &str, body: Value) -> SqsReply {
        let mut next_id = 0;
        sqs_reply(
            Some(target),
            body.to_string().as_bytes(),
            queue,
            &mut next_id,
        )
    }

    fn reply(target: &str, body: Value) -> SqsReply {
        reply_from(&queue(QUEUE_MAX_MESSAGE_BYTES), target, body)
    }

    fn entry(id: &str, body: &str) -> Value {
        json!({"Id": id, "MessageBody": body, "DelaySeconds": 5})
    }

    #[test]
    fn reads_requests_with_content_length_and_chunked_bodies_on_one_connection() {
        let wire = concat!(
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Amz-Target: T\r\n\r\nhello",
            "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n",
            "POST /b HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3;ext\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );
        let mut reader = Cursor::new(wire.as_bytes());
        let a = read_request(&mut reader).unwrap().unwrap();
        assert_eq!((a.method.as_str(), a.path.as_str()), ("POST", "/a"));
        assert_eq!(a.body, b"hello");
        assert_eq!(a.header("x-amz-target"), Some("T"));
        assert_eq!(a.header("X-AMZ-TARGET"), Some("T"));
        let next = read_request(&mut reader).unwrap().unwrap();
        assert_eq!(next.method, "GET");
        assert!(next.body.is_empty());
        let b = read_request(&mut reader).unwrap().unwrap();
        assert_eq!(b.body, b"abcde");
        assert_eq!(read_request(&mut reader).unwrap(), None);
    }

    #[test]
    fn a_truncated_body_is_an_error() {
        let mut reader = Cursor::new(&b"POST /a HTTP/1.1\r\ncontent-length: 9\r\n\r\nabc"[..]);
        assert!(read_request(&mut reader).is_err());
    }

    #[test]
    fn a_response_has_its_length_and_headers() {
        let bytes = Response::new(202, "application/json", b"{}".to_vec())
            .header("x-a", "1".into())
            .to_bytes();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\nx-a: 1\r\ncontent-length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn get_queue_url_answers_for_the_one_queue() {
        let ok = reply(
            "AmazonSQS.GetQueueUrl",
            json!({"QueueName": "orders", "QueueOwnerAWSAccountId": "123456789012"}),
        );
        assert_eq!(ok.status, 200);
        assert_eq!(ok.call, SqsCall::GetQueueUrl);
        let body: Value = serde_json::from_str(&ok.body).unwrap();
        assert_eq!(body, json!({"QueueUrl": URL}));
        let other = reply("AmazonSQS.GetQueueUrl", json!({"QueueName": "payments"}));
        assert_eq!(other.status, 400);
        assert!(other.body.contains("com.amazonaws.sqs#QueueDoesNotExist"));
    }

    #[test]
    fn send_message_batch_counts_sqs_bytes_and_answers_every_entry() {
        let r = reply(
            "AmazonSQS.SendMessageBatch",
            json!({"QueueUrl": URL, "Entries": [
                {"Id": "m0", "MessageBody": "hello", "DelaySeconds": 900,
                 "MessageAttributes": {
                    "tenant": {"DataType": "String", "StringValue": "acme"},
                    "img": {"DataType": "Binary.gif", "BinaryValue": "AQID/w=="}
                 },
                 "MessageSystemAttributes": {"AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1"}}},
                entry("m1", "REFUSE-1"),
                {"Id": "m2", "MessageBody": "late", "DelaySeconds": 901}
            ]}),
        );
        assert_eq!(r.status, 200);
        // System attributes do not count; binary values count decoded.
        assert_eq!(
            r.call,
            SqsCall::SendMessageBatch {
                entry_bytes: vec![5 + (6 + 6 + 4) + (3 + 10 + 4), 8, 4],
                accepted: 1,
                refused: 2,
                sent: vec![SentEntry {
                    head: "hello".into(),
                    delay: 900,
                    marker: None
                }],
            }
        );
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["Successful"].as_array().unwrap().len(), 1);
        assert_eq!(body["Successful"][0]["Id"], "m0");
        assert_eq!(body["Successful"][0]["MD5OfMessageBody"], PLACEHOLDER_MD5);
        let failed: Vec<&str> = body["Failed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["Id"].as_str().unwrap())
            .collect();
        assert_eq!(failed, ["m1", "m2"]);
        assert_eq!(body["Failed"][0]["SenderFault"], true);
    }

    #[test]
    fn a_batch_over_the_limits_is_refused_as_a_whole() {
        let eleven: Vec<Value> = (0..11).map(|i| entry(&format!("m{i}"), "x")).collect();
        let big = "x".repeat(MAX_BATCH_BYTES / 2 + 1);
        let cases = [
            (json!([]), "EmptyBatchRequest"),
            (json!(eleven), "TooManyEntriesInBatchRequest"),
            (
                json!([entry("m0", "a"), entry("m0", "b")]),
                "BatchEntryIdsNotDistinct",
            ),
            (
                json!([entry("m0", &big), entry("m1", &big)]),
                "BatchRequestTooLong",
            ),
        ];
        for (entries, code) in cases {
            let r = reply(
                "AmazonSQS.SendMessageBatch",
                json!({"QueueUrl": URL, "Entries": entries}),
            );
            assert_eq!(r.status, 400, "{code}");
            assert_eq!(
                r.query_error,
                Some(format!("AWS.SimpleQueueService.{code};Sender"))
            );
            assert!(r.body.contains(&format!("sqs#{code}")), "{}", r.body);
            assert_eq!(
                r.call,
                SqsCall::Refused(format!("SendMessageBatch: {code}"))
            );
        }
        let exactly = "x".repeat(MAX_BATCH_BYTES / 2);
        let r = reply(
            "AmazonSQS.SendMessageBatch",
            json!({"QueueUrl": URL, "Entries": [entry("m0", &exactly), entry("m1", &exactly)]}),
        );
        assert_eq!(r.status, 200, "exactly 1 MiB is allowed");
        assert!(matches!(
            r.call,
            SqsCall::SendMessageBatch { accepted: 2, .. }
        ));
        let tenth = "x".repeat(MAX_BATCH_BYTES / 10);
        let ten: Vec<Value> = (0..10).map(|i| entry(&format!("m{i}"), &tenth)).collect();
        let r = reply(
            "AmazonSQS.SendMessageBatch",
            json!({"QueueUrl": URL, "Entries": ten}),
        );
        assert!(matches!(
            r.call,
            SqsCall::SendMessageBatch { accepted: 10, .. }
        ));
    }

    #[test]
    fn an_entry_over_the_queue_limit_is_refused_alone() {
        let small = queue(256 * KIB);
        let over = "x".repeat(256 * KIB + 1);
        let at = "x".repeat(256 * KIB);
        let r = reply_from(
            &small,
            "AmazonSQS.SendMessageBatch",
            json!({"QueueUrl": URL, "Entries": [entry("m0", &over), entry("m1", &at)]}),
        );
        assert_eq!(r.status, 200);
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["Successful"][0]["Id"], "m1");
        assert_eq!(body["Failed"][0]["Id"], "m0");
        assert_eq!(body["Failed"][0]["Code"], "InvalidParameterValue");
        assert!(body["Failed"][0]["Message"]
            .as_str()
            .unwrap()
            .contains("262144"));
        // The same entry fits a 1 MiB queue.
        let r = reply(
            "AmazonSQS.SendMessageBatch",
            json!({"QueueUrl": URL, "Entries": [entry("m0", &over)]}),
        );
        assert!(matches!(
            r.call,
            SqsCall::SendMessageBatch { accepted: 1, .. }
        ));
    }

    #[test]
    fn get_queue_attributes_answers_the_size_limit_and_retention() {
        let attributes = |queue: &FakeQueue, names: Value| {
            let r = reply_from(
                queue,
                "AmazonSQS.GetQueueAttributes",
                json!({"QueueUrl": URL, "AttributeNames": names}),
            );
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.call, SqsCall::GetQueueAttributes);
            serde_json::from_str::<Value>(&r.body).unwrap()
        };
        let both = json!(["MaximumMessageSize", "MessageRetentionPeriod"]);
        assert_eq!(
            attributes(&queue(QUEUE_MAX_MESSAGE_BYTES), both.clone()),
            json!({"Attributes": {"MaximumMessageSize": "1048576", "MessageRetentionPeriod": "345600"}})
        );
        assert_eq!(
            attributes(&queue(256 * KIB), json!(["All"]))["Attributes"]["MaximumMessageSize"],
            "262144"
        );
        assert_eq!(
            attributes(&queue(256 * KIB), json!(["MessageRetentionPeriod"])),
            json!({"Attributes": {"MessageRetentionPeriod": "345600"}})
        );
        let r = reply(
            "AmazonSQS.GetQueueAttributes",
            json!({"QueueUrl": URL, "AttributeNames": ["Nope"]}),
        );
        assert!(r.body.contains("InvalidAttributeName"), "{}", r.body);
        let r = reply(
            "AmazonSQS.GetQueueAttributes",
            json!({"QueueUrl": "http://elsewhere/1/q", "AttributeNames": both}),
        );
        assert!(r.body.contains("QueueDoesNotExist"), "{}", r.body);
    }

    #[test]
    fn other_operations_and_queues_are_refused() {
        let r = reply("AmazonSQS.SendMessage", json!({}));
        assert_eq!(r.status, 400);
        assert!(r.body.contains("UnknownOperationException"));
        // The rejitter never changes a message's visibility: such a call is refused, counted.
        let r = reply(
            "AmazonSQS.ChangeMessageVisibilityBatch",
            json!({"QueueUrl": URL, "Entries": [{"Id": "h0", "ReceiptHandle": "AQEB-1", "VisibilityTimeout": 60}]}),
        );
        assert_eq!(r.status, 400);
        assert_eq!(
            r.call,
            SqsCall::Refused(
                "AmazonSQS.ChangeMessageVisibilityBatch: UnknownOperationException".into()
            )
        );
        let r = reply(
            "AmazonSQS.SendMessageBatch",
            json!({"QueueUrl": "http://elsewhere/1/q", "Entries": [entry("m0", "x")]}),
        );
        assert!(r.body.contains("QueueDoesNotExist"));
    }

    #[test]
    fn base64_lengths() {
        assert_eq!(base64_decoded_len(""), 0);
        assert_eq!(base64_decoded_len("Zg=="), 1);
        assert_eq!(base64_decoded_len("Zm8="), 2);
        assert_eq!(base64_decoded_len("Zm9v"), 3);
        assert_eq!(base64_decoded_len("AQID/w=="), 4);
    }

    #[test]
    fn events_have_the_lambda_shape_and_exact_body_sizes() {
        let specs = [
            RecordSpec {
                body_len: 300,
                refuse: false,
                marker: None,
            },
            RecordSpec {
                body_len: 5000,
                refuse: true,
                marker: Some(1_700_000_000),
            },
        ];
        let event = sqs_event(7, &specs);
        let records = event["Records"].as_array().unwrap();
        assert_eq!(records.len(), 2);
        for (record, spec) in records.iter().zip(specs) {
            assert_eq!(record["body"].as_str().unwrap().len(), spec.body_len);
            assert_eq!(record["eventSourceARN"], QUEUE_ARN);
            assert_eq!(record["eventSource"], "aws:sqs");
            assert_eq!(record["messageAttributes"]["tenant"]["dataType"], "String");
            assert!(record["attributes"]["AWSTraceHeader"].is_string());
        }
        assert!(records[0]["messageAttributes"][rejitter::MARKER].is_null());
        assert_eq!(
            records[1]["messageAttributes"][rejitter::MARKER]["stringValue"],
            "1700000000"
        );
        assert_eq!(records[0]["messageId"], message_id(7, 0));
        assert_ne!(records[0]["messageId"], records[1]["messageId"]);
        assert!(!records[0]["body"]
            .as_str()
            .unwrap()
            .starts_with(REFUSE_PREFIX));
        assert!(records[1]["body"]
            .as_str()
            .unwrap()
            .starts_with(REFUSE_PREFIX));
    }

    #[test]
    fn mixes_stay_in_their_ranges_and_repeat() {
        let (mut a, mut b) = (Rng(3), Rng(3));
        let mixes = [
            Mix::Small,
            Mix::Mixed,
            Mix::Fixed(120 * KIB),
            Mix::Large,
            Mix::NearOldLimit,
        ];
        for mix in mixes {
            let sizes: Vec<usize> = (0..2000).map(|_| mix.body_len(&mut a)).collect();
            let again: Vec<usize> = (0..2000).map(|_| mix.body_len(&mut b)).collect();
            assert_eq!(sizes, again);
            let (lo, hi) = match mix {
                Mix::Small => (100, 2 * KIB),
                Mix::Mixed => (256, 200 * KIB),
                Mix::Fixed(n) => (n, n),
                Mix::Large => (300 * KIB, 500 * KIB),
                Mix::NearOldLimit => (200 * KIB, 250 * KIB),
            };
            assert!(sizes.iter().all(|s| (lo..=hi).contains(s)), "{mix:?}");
        }
        let mixed: Vec<usize> = (0..2000).map(|_| Mix::Mixed.body_len(&mut a)).collect();
        let large = mixed.iter().filter(|&&s| s > 64 * KIB).count();
        assert!((50..=150).contains(&large), "about 5% large: {large}");
    }

    #[test]
    fn fewest_calls_is_bound_by_count_and_bytes() {
        assert_eq!(fewest_calls(&[]), 0);
        assert_eq!(fewest_calls(&[100; 10]), 1);
        assert_eq!(fewest_calls(&[100; 11]), 2);
        assert_eq!(fewest_calls(&[30 * KIB; 10]), 1);
        assert_eq!(fewest_calls(&[120 * KIB; 10]), 2);
        assert_eq!(fewest_calls(&[MAX_BATCH_BYTES / 2; 2]), 1);
        // Bytes alone would say 8; no two fit together.
        assert_eq!(fewest_calls(&[600 * KIB; 10]), 10);
        assert_eq!(fewest_calls(&[600 * KIB, 50 * KIB, 600 * KIB]), 2);
        // Bytes alone would say 4 (3.5 MiB); over a third, at most two fit together.
        assert_eq!(fewest_calls(&[350 * KIB; 10]), 5);
        // Over a quarter, at most three: bytes say 3 (2.9 MiB), shares 4.
        assert_eq!(fewest_calls(&[300 * KIB; 10]), 4);
        // Exactly a third: three fit.
        assert_eq!(fewest_calls(&[MAX_BATCH_BYTES / 3; 3]), 1);
    }

    proptest::proptest! {
        /// Whatever the sizes, the rejitter's own packing never beats the bound (it is a bound)
        /// and every packed call is within the limits the bound assumes.
        #[test]
        fn fewest_calls_is_a_lower_bound_of_the_packing(
            sizes in proptest::collection::vec(1..=MAX_BATCH_BYTES, 0..40)
        ) {
            let batches = rejitter::batch::pack(&sizes);
            proptest::prop_assert!(fewest_calls(&sizes) <= batches.len());
        }
    }

    #[test]
    fn batch_item_failures_lists_item_identifiers() {
        let response =
            json!({"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]});
        assert_eq!(batch_item_failures(&response), ["a", "b"]);
        assert!(batch_item_failures(&json!({"batchItemFailures": []})).is_empty());
        assert!(batch_item_failures(&json!({})).is_empty());
    }

    #[test]
    fn reads_proc_figures() {
        let status =
            "Name:\trejitter\nVmPeak:\t  20000 kB\nVmHWM:\t    5120 kB\nVmRSS:\t    4000 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(5120));
        assert_eq!(vm_hwm_kib("Name:\tx\n"), None);
        assert_eq!(schedstat_cpu_ns("123456 789 10\n"), Some(123456));
        assert_eq!(schedstat_cpu_ns(""), None);
    }

    #[test]
    fn emf_lines_are_summed_and_other_lines_skipped() {
        let mut tally = EmfTally::default();
        tally.add_line(r#"{"level":"INFO","message":"invocation done","rejittered":10}"#);
        let line = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[]},"QueueName":"orders","MessagesRejittered":8,"RejitterBatches":1,"RejitterFailures":2}"#;
        tally.add_line(line);
        tally.add_line(line);
        assert_eq!(
            tally,
            EmfTally {
                lines: 2,
                rejittered: 16,
                batches: 2,
                failures: 4
            }
        );
    }

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

    /// The real SDK client against the fake: the replies parse, refused entries come back as
    /// `Failed`, and the placeholder MD5 is accepted (the SDK does not check digests).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sdk_accepts_the_fake_sqs_replies() {
        use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
        use aws_sdk_sqs::types::{
            MessageAttributeValue, QueueAttributeName, SendMessageBatchRequestEntry,
        };

        let sqs = FakeSqs::start(Duration::ZERO, QUEUE_MAX_MESSAGE_BYTES).unwrap();
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(format!("http://{}", sqs.server.addr))
            .build();
        let client = aws_sdk_sqs::Client::from_conf(config);
        let url = client
            .get_queue_url()
            .queue_name(QUEUE_NAME)
            .queue_owner_aws_account_id(ACCOUNT)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        assert_eq!(
            url,
            format!("http://{}/{ACCOUNT}/{QUEUE_NAME}", sqs.server.addr)
        );
        let attributes = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::MaximumMessageSize)
            .attribute_names(QueueAttributeName::MessageRetentionPeriod)
            .send()
            .await
            .unwrap();
        let attributes = attributes.attributes().unwrap();
        assert_eq!(
            attributes[&QueueAttributeName::MaximumMessageSize],
            "1048576"
        );
        assert_eq!(
            attributes[&QueueAttributeName::MessageRetentionPeriod],
            "345600"
        );
        let entry = |id: &str, body: &str| {
            SendMessageBatchRequestEntry::builder()
                .id(id)
                .message_body(body)
                .delay_seconds(10)
                .message_attributes(
                    "tenant",
                    MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value("acme")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap()
        };
        let output = client
            .send_message_batch()
            .queue_url(&url)
            .entries(entry("m0", "hello"))
            .entries(entry("m1", "REFUSE-me"))
            .send()
            .await
            .unwrap();
        let ok: Vec<&str> = output.successful().iter().map(|e| e.id()).collect();
        let failed: Vec<&str> = output.failed().iter().map(|e| e.id()).collect();
        assert_eq!((ok, failed), (vec!["m0"], vec!["m1"]));
        assert!(output.failed()[0].sender_fault());

        let too_many: Vec<_> = (0..11).map(|i| entry(&format!("m{i}"), "x")).collect();
        let err = client
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(too_many))
            .send()
            .await
            .unwrap_err();
        let service = err.into_service_error();
        assert!(
            service.is_too_many_entries_in_batch_request(),
            "{service:?}"
        );

        let tally = sqs.snapshot();
        assert_eq!((tally.get_queue_url, tally.calls), (1, 1));
        assert_eq!(tally.get_queue_attributes, 1);
        assert_eq!(tally.sent.len(), 1);
        assert_eq!(
            (tally.sent[0].head.as_str(), tally.sent[0].delay),
            ("hello", 10)
        );
        assert_eq!((tally.accepted, tally.refused_entries), (1, 1));
        assert_eq!(tally.entry_bytes, [5 + 16, 9 + 16]);
        assert_eq!(
            tally.refused_calls,
            ["SendMessageBatch: TooManyEntriesInBatchRequest"]
        );
    }
}
