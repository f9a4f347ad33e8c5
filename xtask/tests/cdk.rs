//! The CDK construct (`cdk/`) on a local emulator: the example app (queue, DLQ, the example
//! consumer and `new SqsCircuitBreaker(...)`) synthesized with the repository's real build,
//! deployed from its cloud assembly, then an outage: the created alarm (the default signal,
//! a composite over metric math, which the emulator gap bridges evaluate) trips, the circuit
//! opens, probes fail, the consumer heals, the circuit closes, and every message is processed.

use anyhow::{ensure, Result};
use aws_sdk_sfn::types::ExecutionStatus;
use std::time::Duration;
use xtask::stack::TestStack;
use xtask::wait::eventually;
use xtask::{aws, breaker, cdk, consumer, status, traffic};

const STACK: &str = "sqscb-cdk";

#[test]
#[ignore = "needs the local stack (MiniStack + cargo-lambda); `cargo xtask test` runs it"]
fn the_constructs_breaker_opens_and_closes_an_outage_without_loss() -> Result<()> {
    let local = TestStack::start()?;
    let out = xtask::paths::local().join(format!("cdk-{}", local.emulator.port));
    let _ = std::fs::remove_dir_all(&out);
    // The local-stack tests' fast timings (xtask::stack), as construct props.
    let context = serde_json::json!({
        "stackName": STACK,
        "visibilityTimeoutSeconds": "5",
        "consumerTimeoutSeconds": "3",
        "maxReceiveCount": "1000",
        "breaker": {
            "backoffBaseSeconds": 1,
            "backoffCapSeconds": 2,
            "settleTimeoutSeconds": 20,
            "alarmPeriodSeconds": 10,
            "alarmEvaluationPeriods": 1,
            "alarmDatapointsToAlarm": 1,
        },
    });
    cdk::synth_example(&local.tools, &out, &context)?;
    cdk::deploy(
        &local.tools,
        &local.emulator,
        &out,
        cdk::EXAMPLE_ARTIFACT,
        STACK,
    )?;

    tokio::runtime::Runtime::new()?.block_on(async {
        let config = aws::config(&local.emulator).await;
        let outputs = aws::stack_outputs(&config, STACK).await?;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let lambda = aws_sdk_lambda::Client::new(&config);
        let sfn = aws_sdk_sfn::Client::new(&config);
        let logs = xtask::logs::Logs::new(&config)?;
        let cloudwatch = aws_sdk_cloudwatch::Client::new(&config);
        let (queue, function, mapping) = (
            &outputs["QueueUrl"],
            &outputs["ConsumerFunctionName"],
            &outputs["EventSourceMappingId"],
        );
        // The construct gives the stack the outputs the operator command reads.
        let machine = &outputs["StateMachineArn"];
        let alarm = &outputs["AlarmName"];
        ensure!(
            alarm == &format!("{STACK}-OrdersBreaker-consumer-failing"),
            "{alarm}"
        );

        let mut sent = traffic::send(&sqs, queue, "before", 10).await?;
        consumer::set_should_error(&lambda, function, true).await?;
        sent.extend(traffic::send(&sqs, queue, "outage", 20).await?);

        // The records the consumer fails trip the created alarm (the default signal, any: a
        // composite over metric math), which starts the workflow.
        let execution = eventually(
            "the alarm to start an execution",
            Duration::from_secs(120),
            || async {
                let all = breaker::executions(&sfn, machine).await?;
                Ok(all.first().map(|e| e.arn.clone()))
            },
        )
        .await?;
        eventually(
            "the consumer's mapping to be Disabled",
            Duration::from_secs(60),
            || async {
                Ok((breaker::mapping_state(&lambda, mapping).await? == "Disabled").then_some(()))
            },
        )
        .await?;
        eventually("a failed probe", Duration::from_secs(60), || async {
            let states = breaker::visited_states(&sfn, &execution).await?;
            Ok(states.iter().any(|s| s == "NextBackoff").then_some(()))
        })
        .await?;

        consumer::set_should_error(&lambda, function, false).await?;
        let end = breaker::finished(&sfn, &execution, Duration::from_secs(120)).await?;
        let states = breaker::visited_states(&sfn, &execution).await?;
        ensure!(
            end == ExecutionStatus::Succeeded
                && states.last().map(String::as_str) == Some("CircuitClosed"),
            "the circuit must close once a probe succeeds: {end:?}, {states:?}"
        );
        ensure!(breaker::mapping_state(&lambda, mapping).await? == "Enabled");

        // Nothing lost: every message sent is processed, none is in the DLQ.
        let mut expected: Vec<String> = sent.iter().map(|s| s.fingerprint.clone()).collect();
        expected.sort();
        eventually(
            "every message to be processed",
            Duration::from_secs(120),
            || async {
                let mut done = traffic::processed_fingerprints(&logs, function).await?;
                done.sort();
                done.dedup();
                Ok((done == expected).then_some(()))
            },
        )
        .await?;
        // Re-armed: the close reset the alarm (a period that still counts the outage's errors
        // may trip it once more; the breaker's history guard takes that).
        eventually("the alarm to be OK", Duration::from_secs(60), || async {
            Ok((breaker::alarm(&cloudwatch, alarm).await?.value == "OK").then_some(()))
        })
        .await?;
        let dead = status::queue_depth(&sqs, &outputs["DeadLetterQueueUrl"]).await?;
        ensure!(dead.total() == 0, "nothing may reach the DLQ: {dead:?}");
        Ok(())
    })
}
