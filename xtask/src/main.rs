//! `cargo xtask`: the local AWS stack, the demo and the test runner.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;
mod test;

use xtask::{
    aws, bench, breaker, console::Console, consumer, demo, emulator::Emulator, emulator_gaps,
    paths, stack, status, traffic,
};

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
        /// How long the consumer fails, in seconds.
        #[arg(long, default_value_t = 40)]
        outage_seconds: u64,
        /// Healthy traffic before the outage, in seconds.
        #[arg(long, default_value_t = 10)]
        warmup_seconds: u64,
        /// Messages sent per second during the whole demo.
        #[arg(long, default_value_t = 5)]
        rate: usize,
        /// Period of the breaker's alarm (one breaching period trips it).
        #[arg(long, default_value = "10", value_parser = ["10", "30", "60", "120"])]
        alarm_period: String,
        /// Backoff between probes: base and cap, in seconds.
        #[arg(long, default_value_t = 2)]
        backoff_base: u32,
        #[arg(long, default_value_t = 8)]
        backoff_cap: u32,
        /// The rejitter's delay range for the backlog, in seconds.
        #[arg(long, default_value_t = 10)]
        min_delay: u32,
        #[arg(long, default_value_t = 30)]
        max_delay: u32,
        /// The slow start after the healthy probe, in seconds (0: off).
        #[arg(long, default_value_t = 20)]
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
            LocalAction::Up { port } => up(port).map(drop),
            LocalAction::Status { port } => runtime()?.block_on(status::print(&running(port)?)),
            LocalAction::Down { port } => down(port),
            LocalAction::Bridge { port } => {
                emulator_gaps::Bridges::start(&running(port)?)?.wait();
                Ok(())
            }
        },
        Task::Send { port, count } => runtime()?.block_on(send(&running(port)?, count)),
        Task::Outage { switch, port } => {
            runtime()?.block_on(outage(&running(port)?, switch == "on"))
        }
        Task::Demo {
            port,
            console_port,
            outage_seconds,
            warmup_seconds,
            rate,
            alarm_period,
            backoff_base,
            backoff_cap,
            min_delay,
            max_delay,
            slow_start,
            keep,
        } => demo(DemoFlags {
            port,
            keep,
            options: demo::Options {
                outage: Duration::from_secs(outage_seconds),
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
        Task::Console { port, stack_port } => console(port, stack_port),
        Task::Test => test::test(),
        Task::Bench {
            target: BenchTarget::Controller { runs, executions },
        } => bench_controller(runs, executions),
        Task::Bench {
            target:
                BenchTarget::Rejitter {
                    runs,
                    invocations,
                    sqs_latency_ms,
                },
        } => xtask::bench_rejitter::run(runs, invocations, sqs_latency_ms),
        Task::Bench {
            target: BenchTarget::Signals { rate, only },
        } => xtask::bench_signals::run(rate, &only),
        Task::Bench {
            target:
                BenchTarget::SlowStart {
                    messages,
                    slow_start_seconds,
                    latency_ms,
                    mapping_cap,
                },
        } => xtask::bench_slow_start::run(messages, slow_start_seconds, latency_ms, mapping_cap),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Runtime::new()?)
}

fn up(port: u16) -> Result<Emulator> {
    let (tools, emulator) = stack::emulator_on(port)?;
    bridge_process(&emulator)?;
    stack::deploy_example(&tools, &emulator, &Vec::new())?;
    runtime()?.block_on(stack::deploy_breaker(&tools, &emulator, &Vec::new()))?;
    eprintln!(
        "==> local stack up at {} (stop it with: cargo xtask local down --port {port})",
        emulator.endpoint()
    );
    Ok(emulator)
}

fn bridge_pid_file(port: u16) -> std::path::PathBuf {
    paths::local().join(format!("bridge-{port}.pid"))
}

/// Starts `cargo xtask local bridge` detached, unless one already runs for this emulator.
fn bridge_process(emulator: &Emulator) -> Result<()> {
    let pid_file = bridge_pid_file(emulator.port);
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        if std::path::Path::new(&format!("/proc/{}", pid.trim())).exists() {
            return Ok(());
        }
    }
    let log = std::fs::File::create(paths::local().join(format!("bridge-{}.log", emulator.port)))?;
    let child = Command::new(std::env::current_exe()?)
        .args(["local", "bridge", "--port", &emulator.port.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the emulator gap bridge")?;
    std::fs::write(pid_file, child.id().to_string())?;
    eprintln!("==> emulator gap bridge running (pid {})", child.id());
    Ok(())
}

fn running(port: u16) -> Result<Emulator> {
    Emulator::find(port).with_context(|| {
        format!("no local stack from this checkout runs on port {port}; start it with: cargo xtask local up --port {port}")
    })
}

fn down(port: u16) -> Result<()> {
    if let Ok(pid) = std::fs::read_to_string(bridge_pid_file(port)) {
        let _ = Command::new("kill").arg(pid.trim()).status();
        let _ = std::fs::remove_file(bridge_pid_file(port));
    }
    match Emulator::find(port) {
        Some(emulator) => {
            emulator.stop();
            println!("stopped ministack (pid {}) on port {port}", emulator.pid);
        }
        None => println!("no local stack from this checkout runs on port {port}"),
    }
    Ok(())
}

async fn send(emulator: &Emulator, count: usize) -> Result<()> {
    let config = aws::config(emulator).await;
    let outputs = aws::stack_outputs(&config, stack::EXAMPLE_STACK).await?;
    let queue = outputs
        .get("QueueUrl")
        .context("example stack has no QueueUrl output")?;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let ids = traffic::send(&sqs, queue, "example", count).await?;
    println!("sent {} messages to {queue}", ids.len());
    Ok(())
}

async fn outage(emulator: &Emulator, on: bool) -> Result<()> {
    let config = aws::config(emulator).await;
    let outputs = aws::stack_outputs(&config, stack::EXAMPLE_STACK).await?;
    let function = outputs
        .get("ConsumerFunctionName")
        .context("example stack has no ConsumerFunctionName output")?;
    consumer::set_should_error(&aws_sdk_lambda::Client::new(&config), function, on).await?;
    println!("SHOULD_ERROR={on} on {function}");
    Ok(())
}

#[derive(Debug)]
struct DemoFlags {
    port: u16,
    keep: bool,
    options: demo::Options,
}

fn demo(flags: DemoFlags) -> Result<()> {
    let port = flags.port;
    let started_here = Emulator::find(port).is_none();
    let (tools, emulator) = stack::emulator_on(port)?;
    bridge_process(&emulator)?;
    let outcome = runtime()?.block_on(demo::run(&tools, &emulator, &flags.options));
    if flags.keep || !started_here {
        println!("the local stack stays up; stop it with: cargo xtask local down --port {port}");
    } else {
        down(port)?;
    }
    let report = outcome?;
    println!("{}", report.summary());
    println!(
        "console's last picture: {}\nexecution histories: {}",
        flags.options.out_dir.join("console.html").display(),
        flags.options.out_dir.join("executions.json").display()
    );
    anyhow::ensure!(report.lost == 0, "{} messages were lost", report.lost);
    anyhow::ensure!(
        report.owner().is_some_and(|e| e.visited("CloseCircuit")),
        "the circuit did not close"
    );
    Ok(())
}

/// Serves the console until interrupted.
fn console(port: u16, stack_port: u16) -> Result<()> {
    let emulator = running(stack_port)?;
    runtime()?.block_on(async {
        let config = aws::config(&emulator).await;
        let console =
            Console::start(&config, &emulator.endpoint(), stack::BREAKER_STACK, port).await?;
        println!(
            "console of {} on {}: {} (read-only; Ctrl-C to stop)",
            stack::BREAKER_STACK,
            emulator.endpoint(),
            console.url()
        );
        std::future::pending::<()>().await;
        anyhow::Ok(())
    })
}

fn bench_controller(runs: usize, executions: usize) -> Result<()> {
    // The step latencies below time the deployed controller: build it optimised.
    xtask::sam::optimise_local_builds();
    let root = paths::root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("==> cargo build --release -p controller");
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args(["build", "--release", "--quiet", "-p", "controller"])
        .status()?;
    anyhow::ensure!(status.success(), "building the controller failed");
    let binary = root.join("target/release/controller");
    let size = std::fs::metadata(&binary)?.len();
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        samples.push(bench::cold_start(&binary)?);
    }
    let (min, median, p90) = bench::summary(samples);
    println!(
        "controller binary: {} ({:.1} MiB)",
        binary.display(),
        size as f64 / 1048576.0
    );
    println!(
        "cold start, process start to first Runtime API poll ({} runs): min {}  median {}  p90 {}  (goal <= 15 ms)",
        runs.max(1),
        bench::ms(min),
        bench::ms(median),
        bench::ms(p90)
    );
    if executions == 0 {
        return Ok(());
    }

    let local = stack::TestStack::start()?;
    stack::deploy_example(
        &local.tools,
        &local.emulator,
        &vec![
            ("VisibilityTimeoutSeconds", "5".into()),
            ("ConsumerTimeoutSeconds", "3".into()),
        ],
    )?;
    let rt = runtime()?;
    rt.block_on(async {
        stack::deploy_breaker(
            &local.tools,
            &local.emulator,
            &vec![("BackoffBaseSeconds", "1".into()), ("BackoffCapSeconds", "1".into())],
        )
        .await?;
        let config = aws::config(&local.emulator).await;
        let example = aws::stack_outputs(&config, stack::EXAMPLE_STACK).await?;
        let deployed = aws::stack_outputs(&config, stack::BREAKER_STACK).await?;
        let sfn = aws_sdk_sfn::Client::new(&config);
        let lambda = aws_sdk_lambda::Client::new(&config);
        let sqs = aws_sdk_sqs::Client::new(&config);
        let mut by_state: std::collections::BTreeMap<String, Vec<Duration>> = Default::default();
        for outage in [false, true] {
            for _ in 0..executions {
                if outage {
                    consumer::set_should_error(&lambda, &example["ConsumerFunctionName"], true).await?;
                    traffic::send(&sqs, &example["QueueUrl"], "bench", 3).await?;
                }
                // Stamped now: the breaker ignores an ALARM from before the circuit's last close.
                let event =
                    breaker::alarm_event_now(&deployed["AlarmName"], "000000000000", "us-east-1");
                let execution = breaker::start(&sfn, &deployed["StateMachineArn"], &event).await?;
                if outage {
                    // Let a few probes fail (each invokes the consumer), then heal.
                    tokio::time::sleep(Duration::from_secs(6)).await;
                    consumer::set_should_error(&lambda, &example["ConsumerFunctionName"], false).await?;
                }
                let end = breaker::finished(&sfn, &execution, Duration::from_secs(120)).await?;
                anyhow::ensure!(end == aws_sdk_sfn::types::ExecutionStatus::Succeeded, "execution ended {end:?}");
                for (state, took) in breaker::state_durations(&sfn, &execution).await? {
                    by_state.entry(state).or_default().push(took);
                }
            }
        }
        println!("step latency on the local stack ({} executions with an empty queue, {} with an outage):", executions, executions);
        // Only Task states: Choice, Pass and Wait states measure the interpreter or the backoff.
        let definition: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            paths::root().join("statemachine/circuit-breaker.asl.json"),
        )?)?;
        let is_task = |state: &str| definition["States"][state]["Type"] == "Task";
        for (state, samples) in by_state.into_iter().filter(|(s, _)| is_task(s)) {
            let n = samples.len();
            let (min, median, p90) = bench::summary(samples);
            println!("  {state:<28} n={n:<3} min {:>10}  median {:>10}  p90 {:>10}", bench::ms(min), bench::ms(median), bench::ms(p90));
        }
        anyhow::Ok(())
    })
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
