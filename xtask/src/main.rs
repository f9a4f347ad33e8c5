//! `cargo xtask`: the local AWS stack, the demo, the console, the test runner and the
//! benches. This file only parses the command line and dispatches: each task is a module of
//! the library (`local`, `demo`, `console`, `bench`) or, for the test runner, `test.rs`.

mod test;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::time::Duration;
use xtask::{bench, console, demo, local};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "sqs-circuit-breaker developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// The local AWS stack (MiniStack on 127.0.0.1 with the example stack deployed).
    Local {
        #[command(subcommand)]
        action: LocalAction,
    },
    /// Sends example traffic to the example queue on a running local stack.
    Send {
        #[arg(long, default_value_t = 4566)]
        port: u16,
        #[arg(long, default_value_t = 100)]
        count: usize,
    },
    /// Simulates an outage of the example consumer (`on`) or ends it (`off`).
    Outage {
        #[arg(value_parser = ["on", "off"])]
        switch: String,
        #[arg(long, default_value_t = 4566)]
        port: u16,
    },
    /// The outage demo: local stack up, example consumer and breaker deployed, steady
    /// traffic, a simulated outage, and the breaker opening, probing, spreading the backlog
    /// and closing, narrated live and shown on the console page; ends with a summary and the
    /// console's last picture.
    Demo {
        #[arg(long, default_value_t = 4566)]
        port: u16,
        /// The console page's port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 0)]
        console_port: u16,
        /// The shortest outage, in seconds: the consumer heals once it failed this long and
        /// --failed-probes probes failed.
        #[arg(long, default_value_t = 0)]
        outage_seconds: u64,
        /// Failed probes before the consumer heals (0: after --outage-seconds alone).
        #[arg(long, default_value_t = 1)]
        failed_probes: usize,
        /// Healthy traffic before the outage, in seconds.
        #[arg(long, default_value_t = 3)]
        warmup_seconds: u64,
        /// Messages sent per second, until the outage heals.
        #[arg(long, default_value_t = 5)]
        rate: usize,
        /// Period of the breaker's alarm (one breaching period trips it).
        #[arg(long, default_value = "10", value_parser = ["10", "30", "60", "120"])]
        alarm_period: String,
        /// Backoff between probes: base and cap, in seconds.
        #[arg(long, default_value_t = 1)]
        backoff_base: u32,
        #[arg(long, default_value_t = 4)]
        backoff_cap: u32,
        /// The rejitter's delay range for the backlog, in seconds.
        #[arg(long, default_value_t = 15)]
        min_delay: u32,
        #[arg(long, default_value_t = 20)]
        max_delay: u32,
        /// The slow start after the healthy probe, in seconds (0: off).
        #[arg(long, default_value_t = 9)]
        slow_start: u32,
        /// Leaves the local stack running afterwards (stop it with `cargo xtask local down`).
        #[arg(long)]
        keep: bool,
    },
    /// The local stand-in for the Step Functions console: a live page on 127.0.0.1 with the
    /// workflow's graph, the executions and their histories, and the breaker's panel.
    /// Read-only.
    Console {
        /// The page's port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 8466)]
        port: u16,
        /// The port of the running local stack (`cargo xtask local up`).
        #[arg(long, default_value_t = 4566)]
        stack_port: u16,
    },
    /// Runs every test: formatting, lints, template lint, unit and local-stack tests.
    Test,
    /// Prints performance figures (never pass/fail: machines are shared and noisy).
    Bench {
        #[command(subcommand)]
        target: BenchTarget,
    },
}

#[derive(Subcommand)]
enum BenchTarget {
    /// Controller cold start, and the latency of each workflow step on the local stack.
    Controller {
        /// Cold starts to measure.
        #[arg(long, default_value_t = 30)]
        runs: usize,
        /// Executions per scenario on the local stack (0 skips the stack).
        #[arg(long, default_value_t = 3)]
        executions: usize,
    },
    /// Rejitter cold start, SendMessageBatch calls per message, warm throughput and peak RSS,
    /// against a fake Runtime API and a fake SQS on loopback.
    Rejitter {
        /// Cold starts to measure.
        #[arg(long, default_value_t = 30)]
        runs: usize,
        /// Warm invocations of 10 records to time (a tenth as many of 100 records).
        #[arg(long, default_value_t = 1000)]
        invocations: usize,
        /// Simulated SQS latency for two more rows (0 skips them).
        #[arg(long, default_value_t = 10)]
        sqs_latency_ms: u64,
    },
    /// The created alarm against each way a consumer fails (raise, failed records, half of
    /// them, a hang) and two healthy ones: time to open, dead letters and circuits, each on
    /// its own local stack.
    Signals {
        /// Messages sent per second.
        #[arg(long, default_value_t = 3)]
        rate: usize,
        /// Only the shapes whose description contains this (e.g. `healthy`, `hangs`).
        #[arg(long, default_value = "")]
        only: String,
    },
    /// A backlog behind an open circuit, drained without and with the slow start: the
    /// consumer's peak in-flight batches in the first minute and the time to drain, on the
    /// local stack.
    SlowStart {
        /// Messages queued while the circuit is open.
        #[arg(long, default_value_t = 400)]
        messages: usize,
        /// The slow start's SlowStartSeconds for the second case.
        #[arg(long, default_value_t = 60)]
        slow_start_seconds: u32,
        /// How long the consumer takes per batch.
        #[arg(long, default_value_t = 2000)]
        latency_ms: u32,
        /// The consumer mapping's own MaximumConcurrency (the emulator runs an uncapped
        /// mapping at 5 batches, AWS at up to hundreds).
        #[arg(long, default_value_t = 20)]
        mapping_cap: u32,
    },
    /// One deployment guarding a fleet of attached consumers, a few failing at overlapping
    /// times: time to open and close for each, messages lost and dead-lettered per consumer,
    /// the healthy ones untouched, and one more attachment's deploy time, on the local stack.
    Fleet {
        /// Attached consumers, each on its own queue.
        #[arg(long, default_value_t = 20)]
        consumers: usize,
        /// How many of them fail, 20 s apart, for 60 s each.
        #[arg(long, default_value_t = 3)]
        failing: usize,
        /// Messages sent per second to each consumer's queue.
        #[arg(long, default_value_t = 1)]
        rate: usize,
    },
}

#[derive(Subcommand)]
enum LocalAction {
    /// Installs the toolchain if needed, starts (or reuses) the emulator, builds and deploys
    /// the example stack and the breaker attached to it (template defaults).
    Up {
        #[arg(long, default_value_t = 4566)]
        port: u16,
    },
    /// Prints the deployed stacks, event source mappings and queue depths.
    Status {
        #[arg(long, default_value_t = 4566)]
        port: u16,
    },
    /// Stops the emulator started by `up` (by its recorded pid).
    Down {
        #[arg(long, default_value_t = 4566)]
        port: u16,
    },
    /// Runs the emulator gap bridges in the foreground (`up` starts this in the background).
    #[command(hide = true)]
    Bridge {
        #[arg(long, default_value_t = 4566)]
        port: u16,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Task::Local { action } => match action {
            LocalAction::Up { port } => local::up(port).map(drop),
            LocalAction::Status { port } => local::status(port),
            LocalAction::Down { port } => local::down(port),
            LocalAction::Bridge { port } => local::bridge(port),
        },
        Task::Send { port, count } => local::send(port, count),
        Task::Outage { switch, port } => local::outage(port, switch == "on"),
        Task::Demo {
            port,
            console_port,
            outage_seconds,
            failed_probes,
            warmup_seconds,
            rate,
            alarm_period,
            backoff_base,
            backoff_cap,
            min_delay,
            max_delay,
            slow_start,
            keep,
        } => demo::command(demo::Flags {
            port,
            keep,
            options: demo::Options {
                outage: Duration::from_secs(outage_seconds),
                failed_probes,
                warmup: Duration::from_secs(warmup_seconds),
                rate,
                alarm_period_s: alarm_period.parse()?,
                backoff_base_s: backoff_base,
                backoff_cap_s: backoff_cap,
                min_delay_s: min_delay,
                max_delay_s: max_delay,
                slow_start_s: slow_start,
                console_port,
                ..demo::Options::default()
            },
        }),
        Task::Console { port, stack_port } => console::serve(port, stack_port),
        Task::Test => test::test(),
        Task::Bench {
            target: BenchTarget::Controller { runs, executions },
        } => bench::controller::run(runs, executions),
        Task::Bench {
            target:
                BenchTarget::Rejitter {
                    runs,
                    invocations,
                    sqs_latency_ms,
                },
        } => bench::rejitter::run(runs, invocations, sqs_latency_ms),
        Task::Bench {
            target: BenchTarget::Signals { rate, only },
        } => bench::signals::run(rate, &only),
        Task::Bench {
            target:
                BenchTarget::SlowStart {
                    messages,
                    slow_start_seconds,
                    latency_ms,
                    mapping_cap,
                },
        } => bench::slow_start::run(messages, slow_start_seconds, latency_ms, mapping_cap),
        Task::Bench {
            target:
                BenchTarget::Fleet {
                    consumers,
                    failing,
                    rate,
                },
        } => bench::fleet::run(consumers, failing, rate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `cargo xtask` command the README and docs/ show still parses.
    #[test]
    fn the_documented_commands_parse() {
        xtask::docs::assert_documented_commands_parse::<Cli>("cargo xtask");
    }
}
