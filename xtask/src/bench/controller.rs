//! `cargo xtask bench controller`: cold start of the controller binary (process start to its
//! first Runtime API poll) and the latency of each workflow step against the local stack.

use anyhow::Result;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{aws, bench, breaker, consumer, paths, stack, traffic};

/// [`bench::lambda_env`] plus the controller's configuration.
pub fn controller_env(runtime_api: &str) -> Vec<(&'static str, String)> {
    let mut env = bench::lambda_env(runtime_api, "controller");
    env.extend([
        ("CONSUMER_FUNCTION_NAME", "consumer".into()),
        (
            "QUEUE_ARN",
            "arn:aws:sqs:us-east-1:123456789012:orders".into(),
        ),
        ("ALARM_NAME", "orders-consumer-errors".into()),
        ("CIRCUIT_TABLE", "circuits".into()),
        ("RUST_LOG", "warn".into()),
    ]);
    env
}

/// Starts the controller `binary` against a fake Runtime API on loopback and measures the time
/// until its first `GET .../invocation/next`.
pub fn cold_start(binary: &Path) -> Result<Duration> {
    bench::cold_start_with(binary, controller_env)
}

/// Prints the cold start over `runs`, then the step latencies over `executions` per scenario
/// (0 skips the local stack).
pub fn run(runs: usize, executions: usize) -> Result<()> {
    // The step latencies below time the deployed controller: build it optimised.
    crate::sam::optimise_local_builds();
    let root = paths::root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("==> cargo build --release -p controller");
    let status = crate::run::without_cargo_package_env(&mut Command::new(&cargo))
        .current_dir(&root)
        .args(["build", "--release", "--quiet", "-p", "controller"])
        .status()?;
    anyhow::ensure!(status.success(), "building the controller failed");
    let binary = root.join("target/release/controller");
    let size = std::fs::metadata(&binary)?.len();
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        samples.push(cold_start(&binary)?);
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
    let rt = tokio::runtime::Runtime::new()?;
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
