//! `cargo xtask demo`: an outage of the example consumer, end to end, on the local stack.
//!
//! Deploys the example stack and the breaker (the real templates, with sam), sends steady
//! traffic, switches the consumer's simulated outage on, and narrates what the breaker does
//! (from the workflow's history, the mapping, the alarm, the queue and the breaker's own
//! events) until the outage is healed, the circuit closed and every message processed. The
//! e2e test runs the same scenario with short timings and asserts on its [`Report`].

use crate::breaker::{now_ms, HistoryStep};
use crate::console::{state::EventView, Console};
use crate::emulator::Emulator;
use crate::emulator_gaps::alarm_evaluation::is_emulator_evaluation;
use crate::status::{queue_depth, Depth};
use crate::{aws, consumer, stack, tools::Tools, traffic};
use anyhow::{Context, Result};
use serde_json::Value;
use sqs_circuit_breaker::watch::{Change, Watch as LiveView};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The scenario's timings and sizes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Healthy traffic before the outage starts.
    pub warmup: Duration,
    /// How long the consumer fails.
    pub outage: Duration,
    /// Messages sent per second, for the whole scenario.
    pub rate: usize,
    /// The alarm's period (one breaching period trips it).
    pub alarm_period_s: u32,
    pub backoff_base_s: u32,
    pub backoff_cap_s: u32,
    /// The rejitter's delay range.
    pub min_delay_s: u32,
    pub max_delay_s: u32,
    /// The slow start's length (0: off).
    pub slow_start_s: u32,
    /// Gives up (and fails) when the scenario has not finished by then.
    pub timeout: Duration,
    /// Where the console's last picture (`console.html`) and the histories are written.
    pub out_dir: PathBuf,
    /// The console's port on 127.0.0.1 (0: any free port).
    pub console_port: u16,
    /// Narrates to stdout as things happen.
    pub narrate: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            warmup: Duration::from_secs(10),
            outage: Duration::from_secs(40),
            rate: 5,
            alarm_period_s: 10,
            backoff_base_s: 2,
            backoff_cap_s: 8,
            // Longer than the rejitter phase lasts (two empty readings 5 s apart), so few
            // re-sent messages come back to the rejitter before it is switched off.
            min_delay_s: 10,
            max_delay_s: 30,
            slow_start_s: 20,
            timeout: Duration::from_secs(600),
            out_dir: crate::paths::local().join("demo"),
            console_port: 0,
            narrate: true,
        }
    }
}

/// One probe, as the workflow recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRecord {
    /// Seconds since the scenario started.
    pub at: f64,
    pub attempt: u64,
    /// `Healthy`, `Failed`, `OnlyHidden`, `Empty`, `HealthCheckPassed`, `HealthCheckFailed`.
    pub outcome: String,
    /// The decision after the probe: `Backoff`, `Rejitter`, `Close`, `GiveUp`.
    pub next: String,
    pub reason: String,
    /// The wait NextBackoff drew after this probe, and the window it was drawn from.
    pub wait_s: Option<u64>,
    pub ceiling_s: Option<u64>,
}

impl ProbeRecord {
    pub fn healthy(&self) -> bool {
        matches!(self.outcome.as_str(), "Healthy" | "HealthCheckPassed")
    }

    pub fn failed(&self) -> bool {
        matches!(self.outcome.as_str(), "Failed" | "HealthCheckFailed")
    }
}

/// An execution and the states it went through.
#[derive(Debug, Clone)]
pub struct ExecutionRecord {
    pub arn: String,
    pub status: String,
    pub steps: Vec<HistoryStep>,
}

impl ExecutionRecord {
    pub fn short_name(&self) -> String {
        let name = self.arn.rsplit(':').next().unwrap_or(&self.arn);
        name.chars().take(8).collect()
    }

    pub fn visited(&self, state: &str) -> bool {
        self.steps.iter().any(|s| s.name == state)
    }

    fn exit_of(&self, state: &str) -> Option<i64> {
        self.steps
            .iter()
            .find(|s| s.name == state)
            .and_then(|s| s.exited_ms)
    }
}

/// What happened, for the summary, the picture and the e2e test.
#[derive(Debug, Clone)]
pub struct Report {
    pub started_ms: i64,
    pub outage_on_ms: i64,
    pub healed_ms: i64,
    pub executions: Vec<ExecutionRecord>,
    pub probes: Vec<ProbeRecord>,
    pub sent: usize,
    /// Distinct sent messages the consumer processed (by content fingerprint).
    pub processed: usize,
    /// Extra processings of an already processed message (at-least-once delivery).
    pub duplicates: usize,
    pub in_dlq: u64,
    pub lost: usize,
    /// Alarm states seen, in order, with the time (ms) they were first seen.
    pub alarm_states: Vec<(i64, String)>,
    pub mapping_states: Vec<(i64, String)>,
    pub depths: Vec<(i64, Depth)>,
}

impl Report {
    /// The execution that opened the circuit (the others found it already open).
    pub fn owner(&self) -> Option<&ExecutionRecord> {
        self.executions
            .iter()
            .find(|e| e.visited("WaitBeforeProbe"))
    }

    pub fn time_to_open(&self) -> Option<Duration> {
        let opened = self.owner()?.exit_of("OpenCircuit")?;
        Some(Duration::from_millis(
            (opened - self.outage_on_ms).max(0) as u64
        ))
    }

    pub fn heal_to_enabled(&self) -> Option<Duration> {
        Some(Duration::from_millis(
            (self.enabled_ms()? - self.healed_ms).max(0) as u64,
        ))
    }

    /// When the owner gave the consumer its mapping back: half-open (the slow start), or
    /// closed.
    fn enabled_ms(&self) -> Option<i64> {
        let owner = self.owner()?;
        owner
            .exit_of("StartSlowStart")
            .or_else(|| owner.exit_of("CloseCircuit"))
    }

    /// From the mapping's re-enabling: the most messages in flight in the first minute, and
    /// how long until nothing waited in the queue (none visible, none delayed).
    pub fn after_enabled(&self) -> Option<(u64, Option<Duration>)> {
        let enabled = self.enabled_ms()?;
        let after = || self.depths.iter().filter(move |(at, _)| *at >= enabled);
        let peak = after()
            .filter(|(at, _)| at - enabled <= 60_000)
            .map(|(_, d)| d.in_flight)
            .max()?;
        let drained = after()
            .find(|(_, d)| d.visible + d.delayed == 0)
            .map(|(at, _)| Duration::from_millis((at - enabled) as u64));
        Some((peak, drained))
    }

    /// State transitions, which Step Functions Standard bills: one per state entered.
    pub fn transitions(&self) -> usize {
        self.executions.iter().map(|e| e.steps.len()).sum()
    }

    pub fn summary(&self) -> String {
        let secs = |d: Option<Duration>| {
            d.map(|d| format!("{:.1} s", d.as_secs_f64()))
                .unwrap_or_else(|| "never".into())
        };
        let failed = self.probes.iter().filter(|p| p.failed()).count();
        let healthy = self.probes.iter().filter(|p| p.healthy()).count();
        let waits: Vec<String> = self
            .probes
            .iter()
            .filter_map(|p| Some(format!("{}/{}", p.wait_s?, p.ceiling_s?)))
            .collect();
        let transitions = self.transitions();
        let mut out = String::new();
        out.push_str("==> summary\n");
        out.push_str(&format!(
            "  outage -> circuit open:        {}\n",
            secs(self.time_to_open())
        ));
        out.push_str(&format!(
            "  probes made:                   {} ({failed} failed, {healthy} healthy, {} found only hidden messages)\n",
            self.probes.len(),
            self.probes.len() - failed - healthy
        ));
        out.push_str(&format!(
            "  backoff waits (drawn/window s): {}\n",
            if waits.is_empty() {
                "-".into()
            } else {
                waits.join(" ")
            }
        ));
        out.push_str(&format!(
            "  heal -> consumer re-enabled:   {}\n",
            secs(self.heal_to_enabled())
        ));
        if let Some((peak, drained)) = self.after_enabled() {
            out.push_str(&format!(
                "  after re-enabling:             peak {peak} in flight in the first minute \
                 (~{} batches of 10); nothing waiting after {}\n",
                peak.div_ceil(10),
                secs(drained)
            ));
        }
        out.push_str(&format!("  messages sent:                 {}\n", self.sent));
        out.push_str(&format!(
            "  processed:                     {} (+{} duplicate deliveries)\n",
            self.processed, self.duplicates
        ));
        out.push_str(&format!(
            "  in DLQ:                        {}\n",
            self.in_dlq
        ));
        out.push_str(&format!("  lost:                          {}\n", self.lost));
        out.push_str(&format!(
            "  executions:                    {} ({})\n",
            self.executions.len(),
            self.executions
                .iter()
                .map(|e| format!("{} {}", e.short_name(), e.status))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out.push_str(&format!(
            "  state transitions:             {transitions} (Step Functions Standard: ${:.5} at $0.025 per 1,000)\n",
            transitions as f64 * 0.025 / 1000.0
        ));
        out
    }
}

/// The probes of every execution, in time order, each with the backoff drawn after it.
pub fn probes(executions: &[ExecutionRecord], started_ms: i64) -> Vec<ProbeRecord> {
    let mut probes = Vec::new();
    for execution in executions {
        let mut pending: Option<ProbeRecord> = None;
        for step in &execution.steps {
            let circuit = step.output.as_ref().and_then(|o| o.get("circuit"));
            let field = |name: &str| circuit.and_then(|c| c.get(name));
            match step.name.as_str() {
                "Probe" => {
                    probes.extend(pending.take());
                    let Some(exited) = step.exited_ms else {
                        continue;
                    };
                    pending = Some(ProbeRecord {
                        at: (exited - started_ms) as f64 / 1000.0,
                        attempt: field("attempt").and_then(Value::as_u64).unwrap_or(0),
                        outcome: field("last_probe")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        next: field("next")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        reason: field("reason")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        wait_s: None,
                        ceiling_s: None,
                    });
                }
                "NextBackoff" => {
                    if let Some(probe) = pending.as_mut() {
                        probe.wait_s = field("wait_seconds").and_then(Value::as_u64);
                        probe.ceiling_s = field("backoff_ceiling_seconds").and_then(Value::as_u64);
                    }
                }
                _ => {}
            }
        }
        probes.extend(pending);
    }
    probes.sort_by(|a, b| a.at.total_cmp(&b.at));
    probes
}

struct Deployed {
    queue_url: String,
    dlq_url: String,
    consumer: String,
    state_machine: String,
}

async fn deploy(tools: &Tools, emulator: &Emulator, options: &Options) -> Result<Deployed> {
    let example = vec![
        // Failed batches come back quickly, so the queue shows the outage; the receive
        // limit leaves room for the outage's retries and probes.
        ("VisibilityTimeoutSeconds", "15".to_string()),
        ("ConsumerTimeoutSeconds", "5".to_string()),
        ("MaxReceiveCount", "10".to_string()),
        // A batch takes a second, as real work does: the queue shows batches in flight, and
        // the slow start's cap on them.
        ("LatencyMs", "1000".to_string()),
    ];
    stack::deploy_example(tools, emulator, &example)?;
    let breaker = vec![
        ("AlarmPeriodSeconds", options.alarm_period_s.to_string()),
        ("AlarmEvaluationPeriods", "1".to_string()),
        ("AlarmDatapointsToAlarm", "1".to_string()),
        ("BackoffBaseSeconds", options.backoff_base_s.to_string()),
        ("BackoffCapSeconds", options.backoff_cap_s.to_string()),
        ("RejitterEnabled", "true".to_string()),
        ("MinDelaySeconds", options.min_delay_s.to_string()),
        ("MaxDelaySeconds", options.max_delay_s.to_string()),
        ("SlowStartSeconds", options.slow_start_s.to_string()),
    ];
    stack::deploy_breaker(tools, emulator, &breaker).await?;
    let config = aws::config(emulator).await;
    let example = aws::stack_outputs(&config, stack::EXAMPLE_STACK).await?;
    let breaker = aws::stack_outputs(&config, stack::BREAKER_STACK).await?;
    let get = |outputs: &HashMap<String, String>, key: &str| {
        outputs
            .get(key)
            .cloned()
            .with_context(|| format!("stack output {key} missing"))
    };
    Ok(Deployed {
        queue_url: get(&example, "QueueUrl")?,
        dlq_url: get(&example, "DeadLetterQueueUrl")?,
        consumer: get(&example, "ConsumerFunctionName")?,
        state_machine: get(&breaker, "StateMachineArn")?,
    })
}

/// A rule on the breaker's bus that copies its events into a queue the demo reads: the
/// way a user would watch them (the breaker's bus is `default` unless configured).
async fn event_tap(config: &aws_config::SdkConfig, sqs: &aws_sdk_sqs::Client) -> Result<String> {
    let queue_url = sqs
        .create_queue()
        .queue_name("sqscb-demo-events")
        .send()
        .await
        .context("creating the demo's event queue")?
        .queue_url()
        .unwrap_or_default()
        .to_string();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .context("reading the demo's event queue ARN")?;
    let queue_arn = attributes
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .context("the demo's event queue has no ARN")?;
    let events = aws_sdk_eventbridge::Client::new(config);
    events
        .put_rule()
        .name("sqscb-demo-events")
        .event_pattern(r#"{"source":["sqs-circuit-breaker"]}"#)
        .send()
        .await
        .context("PutRule for the demo's event tap")?;
    events
        .put_targets()
        .rule("sqscb-demo-events")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("demo-queue")
                .arn(queue_arn)
                .build()?,
        )
        .send()
        .await
        .context("PutTargets for the demo's event tap")?;
    // Events of an earlier run on a reused emulator are not this run's.
    let _ = sqs.purge_queue().queue_url(&queue_url).send().await;
    Ok(queue_url)
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

/// What the demo follows: the operator command's live view (`sqs-circuit-breaker watch`)
/// of the breaker, the demo's own event tap, and the report it fills.
struct Watch {
    started: Instant,
    narrate: bool,
    live: LiveView,
    report: Report,
    /// The console page, fed the events the tap delivers.
    console: Console,
}

impl Watch {
    fn say(&self, line: &str) {
        if self.narrate {
            println!("  t+{:>6.1}s  {line}", self.started.elapsed().as_secs_f64());
        }
    }
}

/// Runs the scenario on `emulator` (stacks deployed or updated first) and returns its report.
pub async fn run(tools: &Tools, emulator: &Emulator, options: &Options) -> Result<Report> {
    let deployed = deploy(tools, emulator, options).await?;
    let config = aws::config(emulator).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let sfn = aws_sdk_sfn::Client::new(&config);
    let lambda = aws_sdk_lambda::Client::new(&config);
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let tap = event_tap(&config, &sqs).await?;
    // A reused stack may carry an earlier run's outage or backlog.
    consumer::set_should_error(&lambda, &deployed.consumer, false).await?;
    let before: HashSet<String> = crate::breaker::executions(&sfn, &deployed.state_machine)
        .await?
        .into_iter()
        .map(|e| e.arn)
        .collect();
    // The breaker as the operator command finds it (by stack name), acting as the
    // controller would: the live view is the command's `watch`.
    let breaker = sqs_circuit_breaker::locate::breaker(
        &config,
        stack::BREAKER_STACK,
        &Some(emulator.endpoint()),
    )
    .await?;

    let console = Console::start(
        &config,
        &emulator.endpoint(),
        stack::BREAKER_STACK,
        options.console_port,
    )
    .await?;
    let started_ms = now_ms();
    let mut watch = Watch {
        started: Instant::now(),
        narrate: options.narrate,
        live: LiveView::new(before),
        report: Report {
            started_ms,
            outage_on_ms: 0,
            healed_ms: 0,
            executions: Vec::new(),
            probes: Vec::new(),
            sent: 0,
            processed: 0,
            duplicates: 0,
            in_dlq: 0,
            lost: 0,
            alarm_states: Vec::new(),
            mapping_states: Vec::new(),
            depths: Vec::new(),
        },
        console,
    };
    watch.say(&format!(
        "console: {} (the workflow's graph, executions, histories, the breaker's panel)",
        watch.console.url()
    ));
    let run_id = format!("demo{}", started_ms / 1000);
    let sent = Arc::new(Mutex::new(Vec::new()));
    let stop_traffic = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic_task = steady_traffic(
        sqs.clone(),
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
            consumer::set_should_error(&lambda, &deployed.consumer, true).await?;
            watch.report.outage_on_ms = now_ms();
            heal_at = Some(Instant::now() + options.outage);
            watch.say("OUTAGE: SHOULD_ERROR=true on the consumer; every batch now fails");
        }
        if let Some(at) = heal_at {
            if watch.report.healed_ms == 0 && Instant::now() >= at {
                consumer::set_should_error(&lambda, &deployed.consumer, false).await?;
                watch.report.healed_ms = now_ms();
                watch.say("HEALED: SHOULD_ERROR=false; the next probe should succeed");
            }
        }

        observe(&mut watch, &breaker, &sqs, &tap).await?;
        if last_status.elapsed() >= Duration::from_secs(5) {
            last_status = Instant::now();
            let (_, depth) = watch.report.depths.last().copied().unwrap_or_default();
            let sent_so_far = sent.lock().map(|s| s.len()).unwrap_or_default();
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

        let owner_done = watch.report.healed_ms > 0
            && watch.live.seen.statuses().iter().any(|(arn, status)| {
                status != "RUNNING"
                    && watch
                        .report
                        .executions
                        .iter()
                        .any(|e| &e.arn == arn && e.visited("WaitBeforeProbe"))
            });
        if owner_done && closed_at.is_none() {
            closed_at = Some(Instant::now());
            stop_traffic.store(true, std::sync::atomic::Ordering::Relaxed);
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

    // Every message sent must have been processed (or be in the DLQ): read the consumer's
    // own log, where each processed record carries its content fingerprint.
    let sent: Vec<traffic::Sent> = sent.lock().map(|s| s.clone()).unwrap_or_default();
    let wanted: HashSet<&str> = sent.iter().map(|s| s.fingerprint.as_str()).collect();
    let logs_deadline = Instant::now() + Duration::from_secs(60);
    let (processed, duplicates) = loop {
        let counted = count_processed(&logs, &deployed.consumer, &wanted).await?;
        if counted.0 == wanted.len() || Instant::now() > logs_deadline {
            break counted;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let in_dlq = queue_depth(&sqs, &deployed.dlq_url).await?.total();
    // The console's last reading, with every execution's end, is the picture left behind.
    let console = watch.console.snapshot();
    let mut report = watch.report;
    report.sent = sent.len();
    report.processed = processed;
    report.duplicates = duplicates;
    report.in_dlq = in_dlq;
    report.lost = sent.len().saturating_sub(processed + in_dlq as usize);
    report
        .executions
        .sort_by_key(|e| e.steps.first().map(|s| s.entered_ms));
    report.probes = probes(&report.executions, report.started_ms);
    write_outputs(&report, &console, &options.out_dir)?;
    Ok(report)
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

fn last(states: &[(i64, String)]) -> &str {
    states.last().map(|(_, s)| s.as_str()).unwrap_or("?")
}

/// One tick of the live view: the operator command's `watch` reading of the breaker (the
/// mapping, the alarm, the queue, each execution's steps), recorded for the report and
/// narrated, then the breaker's events from the tap.
async fn observe(
    watch: &mut Watch,
    breaker: &sqs_circuit_breaker::locate::Breaker,
    sqs: &aws_sdk_sqs::Client,
    tap: &str,
) -> Result<()> {
    let now = now_ms();
    let (reading, changes) = watch
        .live
        .tick(&breaker.ctx, &breaker.state_machine_arn)
        .await?;
    watch.report.depths.push((
        now,
        Depth {
            visible: reading.queue.visible,
            in_flight: reading.queue.in_flight,
            delayed: reading.queue.delayed,
        },
    ));
    // The emulator's own evaluation flips the alarm's state for a moment until the alarm
    // bridge puts back CloudWatch's verdict: that flicker is not a state CloudWatch would
    // show. The live view reports every change of value, flicker included (the bridge may
    // then restore a value the view already saw), so the demo follows the alarm from each
    // reading instead.
    if let Some(alarm) = reading
        .alarm
        .as_ref()
        .filter(|a| !is_emulator_evaluation(&a.reason))
    {
        if last(&watch.report.alarm_states) != alarm.value {
            match watch.report.alarm_states.last() {
                Some((_, before)) => watch.say(&format!("alarm {before} -> {}", alarm.value)),
                None => watch.say(&format!("alarm {}", alarm.value)),
            }
            watch.report.alarm_states.push((now, alarm.value.clone()));
        }
    }
    for change in changes {
        match change {
            Change::Mapping(state) => {
                watch.say(&format!("mapping {state}"));
                watch.report.mapping_states.push((now, state));
            }
            // The alarm from the reading (above); the queue in the periodic status line; the
            // circuit through the workflow's steps.
            Change::Alarm { .. } | Change::Queue(_) | Change::Circuit { .. } => {}
            other => watch.say(&other.to_string()),
        }
    }
    for execution in reading.executions {
        match watch
            .report
            .executions
            .iter_mut()
            .find(|e| e.arn == execution.arn)
        {
            Some(record) => {
                record.status = execution.status;
                record.steps = execution.steps;
            }
            None => watch.report.executions.push(ExecutionRecord {
                arn: execution.arn,
                status: execution.status,
                steps: execution.steps,
            }),
        }
    }

    let received = sqs
        .receive_message()
        .queue_url(tap)
        .max_number_of_messages(10)
        .send()
        .await
        .context("reading the demo's event queue")?;
    for message in received.messages() {
        let event: Value = serde_json::from_str(message.body().unwrap_or("{}")).unwrap_or_default();
        let kind = event["detail-type"].as_str().unwrap_or("?").to_string();
        watch.say(&format!("event: {kind}"));
        watch.console.record_event(EventView {
            at_ms: now,
            kind,
            reason: event["detail"]["reason"]
                .as_str()
                .unwrap_or_default()
                .into(),
        });
        if let Some(handle) = message.receipt_handle() {
            let _ = sqs
                .delete_message()
                .queue_url(tap)
                .receipt_handle(handle)
                .send()
                .await;
        }
    }
    Ok(())
}

fn write_outputs(
    report: &Report,
    console: &crate::console::state::Snapshot,
    dir: &std::path::Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join("console.html"),
        crate::console::static_page(console)?,
    )?;
    let histories: Vec<Value> = report
        .executions
        .iter()
        .map(|e| {
            serde_json::json!({
                "executionArn": e.arn,
                "status": e.status,
                "states": e.steps.iter().map(|s| serde_json::json!({
                    "name": s.name,
                    "enteredMs": s.entered_ms,
                    "exitedMs": s.exited_ms,
                    "output": s.output,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    std::fs::write(
        dir.join("executions.json"),
        serde_json::to_string_pretty(&histories)?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(name: &str, at: i64, circuit: Value) -> HistoryStep {
        HistoryStep {
            name: name.into(),
            entered_ms: at,
            exited_ms: Some(at + 100),
            output: Some(json!({ "circuit": circuit })),
        }
    }

    fn execution(steps: Vec<HistoryStep>) -> ExecutionRecord {
        ExecutionRecord {
            arn: "arn:aws:states:us-east-1:0:execution:sm:0123456789abcdef".into(),
            status: "SUCCEEDED".into(),
            steps,
        }
    }

    #[test]
    fn probes_carry_the_backoff_drawn_after_them() {
        let e = execution(vec![
            step(
                "OpenCircuit",
                0,
                json!({"status": "Opened", "wait_seconds": 1}),
            ),
            step(
                "Probe",
                1_000,
                json!({"attempt": 1, "last_probe": "Failed", "next": "Backoff", "reason": "message m: consumer failed"}),
            ),
            step(
                "NextBackoff",
                1_200,
                json!({"next": "Backoff", "wait_seconds": 3, "backoff_ceiling_seconds": 4}),
            ),
            step(
                "Probe",
                5_000,
                json!({"attempt": 2, "last_probe": "Healthy", "next": "Rejitter", "reason": "message m: processed"}),
            ),
        ]);
        let probes = probes(&[e], 0);
        assert_eq!(probes.len(), 2);
        assert_eq!((probes[0].wait_s, probes[0].ceiling_s), (Some(3), Some(4)));
        assert!(probes[0].failed() && !probes[0].healthy());
        assert!(probes[1].healthy());
        assert_eq!(probes[1].wait_s, None);
        assert!((probes[1].at - 5.1).abs() < 1e-9);
    }

    #[test]
    fn the_summary_reports_loss_and_transitions() {
        let e = execution(vec![
            step("OpenCircuit", 2_000, json!({"status": "Opened"})),
            step("WaitBeforeProbe", 2_100, json!({})),
            step("CloseCircuit", 9_000, json!({})),
        ]);
        let report = Report {
            started_ms: 0,
            outage_on_ms: 1_000,
            healed_ms: 5_000,
            executions: vec![e],
            probes: Vec::new(),
            sent: 10,
            processed: 9,
            duplicates: 1,
            in_dlq: 0,
            lost: 1,
            alarm_states: vec![(0, "OK".into())],
            mapping_states: vec![(0, "Enabled".into())],
            depths: vec![(10_000, Depth::default())],
        };
        assert_eq!(report.time_to_open(), Some(Duration::from_millis(1_100)));
        assert_eq!(report.heal_to_enabled(), Some(Duration::from_millis(4_100)));
        assert_eq!(report.transitions(), 3);
        let summary = report.summary();
        assert!(
            summary.contains("lost:                          1"),
            "{summary}"
        );
        assert!(
            summary.contains("state transitions:             3"),
            "{summary}"
        );
    }
}
