//! One figure each: a session per run, driven invocation by invocation.

use anyhow::{ensure, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::session::{EmfTally, Session, Stopped};
use super::sqs_protocol::{sent_head, SentEntry};
use super::workload::{batch_item_failures, body, fewest_calls, message_id, specs, sqs_event, Mix};
use super::{MAPPING_BATCH_SIZE, QUEUE_MAX_MESSAGE_BYTES, WORKLOAD_INVOCATIONS};

pub struct Workload {
    pub messages: usize,
    pub lower_bound: usize,
    pub stopped: Stopped,
}

/// [`WORKLOAD_INVOCATIONS`] invocations of `mix`-sized records, counted by the fake SQS, whose
/// queue's `MaximumMessageSize` is `queue_max`.
pub fn workload(binary: &Path, mix: Mix, queue_max: usize, seed: u64) -> Result<Workload> {
    let mut session = Session::start(binary, Duration::ZERO, queue_max)?;
    let mut rng = StdRng::seed_from_u64(seed);
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

pub struct Throughput {
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
    pub first: Duration,
    pub cpu_ns: u64,
    pub stopped: Stopped,
}

/// One process, a first invocation, then `invocations` timed ones of `records` small records.
pub fn throughput(
    binary: &Path,
    records: usize,
    invocations: usize,
    sqs_latency: Duration,
) -> Result<Throughput> {
    let mut rng = StdRng::seed_from_u64(7);
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

pub struct Refusals {
    pub records: usize,
    pub refused: usize,
    pub listed: usize,
    pub exact: bool,
    pub stopped: Stopped,
}

/// 20 invocations in which SQS refuses records 3 and 8 of every 10.
pub fn refusals(binary: &Path) -> Result<Refusals> {
    let mut session = Session::start(binary, Duration::ZERO, QUEUE_MAX_MESSAGE_BYTES)?;
    let mut rng = StdRng::seed_from_u64(11);
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
pub const MARKER_AGE_SECONDS: u64 = 60;

pub struct AlreadyRejittered {
    pub invocations: usize,
    pub records: usize,
    pub marked: usize,
    pub listed: usize,
    /// Marked records whose copy SQS accepted with the fixed delay and a fresh marker.
    pub resent: usize,
    pub exact: bool,
    pub stopped: Stopped,
}

/// 20 invocations in which records 1 and 6 of every 10 carry a marker [`MARKER_AGE_SECONDS`]
/// old: the rejitter re-sends each as a fresh copy delayed
/// [`rejitter::RESEND_DELAY_SECONDS`] with a fresh marker, and lists none of them in
/// `batchItemFailures`.
pub fn already_rejittered(binary: &Path) -> Result<AlreadyRejittered> {
    let mut session = Session::start(binary, Duration::ZERO, QUEUE_MAX_MESSAGE_BYTES)?;
    let mut rng = StdRng::seed_from_u64(13);
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
pub struct EmfCheck {
    pub emf: EmfTally,
    pub calls: usize,
    pub accepted: usize,
}

impl EmfCheck {
    pub fn add(&mut self, stopped: &Stopped) {
        self.emf.lines += stopped.emf.lines;
        self.emf.rejittered += stopped.emf.rejittered;
        self.emf.batches += stopped.emf.batches;
        self.emf.failures += stopped.emf.failures;
        self.calls += stopped.sqs.calls;
        self.accepted += stopped.sqs.accepted;
    }
}
