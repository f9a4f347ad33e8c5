//! The example stack on a local emulator: deployed with sam, it consumes every message; an
//! outage (SHOULD_ERROR=true) keeps messages in the queue and raises AWS/Lambda Errors;
//! healing drains the backlog.

use anyhow::Result;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use std::collections::HashSet;
use std::time::{Duration, SystemTime};
use xtask::wait::eventually;
use xtask::{aws, consumer, stack, stack::TestStack, status, traffic};

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn example_stack_consumes_everything_and_holds_messages_during_an_outage() -> Result<()> {
    let local = TestStack::start()?;
    // Fast retries, and never a DLQ move during the test's outage.
    stack::deploy_example(&local.tools, &local.emulator, &stack::fast_example())?;

    tokio::runtime::Runtime::new()?.block_on(async {
        let config = aws::config(&local.emulator).await;
        let outputs = aws::stack_outputs(&config, stack::EXAMPLE_STACK).await?;
        let queue = outputs["QueueUrl"].clone();
        let dlq = outputs["DeadLetterQueueUrl"].clone();
        let function = outputs["ConsumerFunctionName"].clone();
        let sqs = aws_sdk_sqs::Client::new(&config);
        let lambda = aws_sdk_lambda::Client::new(&config);
        let logs = xtask::logs::Logs::new(&config)?;
        let cloudwatch = aws_sdk_cloudwatch::Client::new(&config);

        // 1. Healthy: every one of 200 messages is consumed.
        let sent: HashSet<String> = traffic::send(&sqs, &queue, "healthy", 200)
            .await?
            .into_iter()
            .map(|sent| sent.message_id)
            .collect();
        assert_eq!(sent.len(), 200);
        eventually(
            "all 200 messages to be processed",
            Duration::from_secs(180),
            || async {
                let done = traffic::processed_ids(&logs, &function).await?;
                let depth = status::queue_depth(&sqs, &queue).await?;
                Ok((sent.is_subset(&done) && depth.total() == 0).then_some(()))
            },
        )
        .await?;

        // 2. Outage: messages stay in the queue and Lambda Errors datapoints appear.
        let outage_started = SystemTime::now();
        consumer::set_should_error(&lambda, &function, true).await?;
        let held: HashSet<String> = traffic::send(&sqs, &queue, "outage", 20)
            .await?
            .into_iter()
            .map(|sent| sent.message_id)
            .collect();
        let errors = eventually(
            "AWS/Lambda Errors datapoints",
            Duration::from_secs(60),
            || async {
                let stats = cloudwatch
                    .get_metric_statistics()
                    .namespace("AWS/Lambda")
                    .metric_name("Errors")
                    .dimensions(
                        Dimension::builder()
                            .name("FunctionName")
                            .value(&function)
                            .build(),
                    )
                    .start_time(outage_started.into())
                    .end_time((SystemTime::now() + Duration::from_secs(60)).into())
                    .period(60)
                    .statistics(Statistic::Sum)
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "GetMetricStatistics: {}",
                            aws_smithy_types::error::display::DisplayErrorContext(e)
                        )
                    })?;
                let sum: f64 = stats.datapoints().iter().filter_map(|d| d.sum()).sum();
                Ok((sum > 0.0).then_some(sum))
            },
        )
        .await?;
        assert!(
            errors >= 1.0,
            "expected Lambda errors during the outage, got {errors}"
        );
        // A few more failing retries (visibility timeout 5 s) must lose nothing.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let depth = status::queue_depth(&sqs, &queue).await?;
        assert_eq!(
            depth.total(),
            20,
            "the outage must keep every message queued: {depth:?}"
        );
        let done = traffic::processed_ids(&logs, &function).await?;
        assert!(
            held.is_disjoint(&done),
            "no message may be processed during the outage"
        );

        // 3. Heal: the backlog drains, every held message processed, nothing in the DLQ.
        consumer::set_should_error(&lambda, &function, false).await?;
        eventually("the backlog to drain", Duration::from_secs(120), || async {
            let done = traffic::processed_ids(&logs, &function).await?;
            let depth = status::queue_depth(&sqs, &queue).await?;
            Ok((held.is_subset(&done) && depth.total() == 0).then_some(()))
        })
        .await?;
        let dead = status::queue_depth(&sqs, &dlq).await?;
        assert_eq!(dead.total(), 0, "nothing may reach the DLQ");
        Ok(())
    })
}
