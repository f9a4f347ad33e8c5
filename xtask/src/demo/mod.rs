//! `cargo xtask demo`: an outage of the example consumer, end to end, on the local stack.
//!
//! Deploys the example stack and the breaker (the real templates, with sam), sends steady
//! traffic, switches the consumer's simulated outage on, and narrates what the breaker does
//! (from the workflow's history, the mapping, the alarm, the queue and the breaker's own
//! events) until the outage is healed (once the circuit opened and a probe failed), the
//! circuit closed and every message processed. The e2e test runs the same scenario with its
//! own timings and asserts on its [`Report`].

use crate::breaker::now_ms;
use crate::console::Console;
use crate::emulator::Emulator;
use crate::{aws, consumer, stack, tools::Tools};
use anyhow::{Context, Result};
use serde_json::Value;
use sqs_circuit_breaker::watch::Watch as LiveView;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod command;
mod narration;
mod report;
mod scenario;
mod setup;

pub use command::{command, Flags};
pub use report::{probes, ExecutionRecord, ProbeRecord, Report};

use narration::Watch;
use setup::{deploy, event_tap};

/// The scenario's timings and sizes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Healthy traffic before the outage starts.
    pub warmup: Duration,
    /// The shortest outage: the consumer heals once it failed this long and
    /// `failed_probes` probes failed.
    pub outage: Duration,
    /// Failed probes before the consumer heals (0: on time alone). Healing on the circuit's
    /// own progress, not on a fixed time, keeps the story whole however long the alarm takes
    /// to trip on a busy machine, and the outage no longer than the story needs.
    pub failed_probes: usize,
    /// Messages sent per second, from the start until the outage heals: afterwards the
    /// rejitter and the drain see only the outage's backlog.
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
            warmup: Duration::from_secs(3),
            outage: Duration::ZERO,
            failed_probes: 1,
            rate: 5,
            alarm_period_s: 10,
            backoff_base_s: 1,
            backoff_cap_s: 4,
            // Longer than the rejitter phase (two empty backlog checks 5 s apart, about 11 s),
            // so no message comes back to the rejitter while it still polls (it would be
            // re-sent with 60 s more); short enough that the backlog comes back during the
            // slow start and the drain ends soon after the close.
            min_delay_s: 15,
            max_delay_s: 20,
            // One second a level: 2, 4, ... 512, then the mapping's own (no cap).
            slow_start_s: 9,
            timeout: Duration::from_secs(300),
            out_dir: crate::paths::local().join("demo"),
            console_port: 0,
            narrate: true,
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
    let logs = crate::logs::Logs::new(&config)?;
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
    let mut watch = Watch {
        started: Instant::now(),
        narrate: options.narrate,
        live: LiveView::new(before),
        report: Report::new(now_ms()),
        console,
    };
    watch.say(&format!(
        "console: {} (the workflow's graph, executions, histories, the breaker's panel)",
        watch.console.url()
    ));
    let clients = scenario::Clients { sqs, lambda, logs };
    let sent = scenario::drive(&mut watch, &breaker, &clients, &deployed, &tap, options).await?;
    // The console's last reading, with every execution's end, is the picture left behind.
    let console = watch.console.snapshot();
    let report = scenario::account(watch.report, &sent, &clients, &deployed).await?;
    write_outputs(&report, &console, &options.out_dir)?;
    Ok(report)
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
