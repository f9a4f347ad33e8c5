//! An attachment (`infra/attachment.yaml`) on the local stack, one deployment for all: the
//! breaker deployed once with `sam`, a second consumer (a second example stack) attached to
//! it and registered; an attachment the configuration check refuses fails its stack with the
//! check's sentence and registers nothing; a second attachment of the same consumer is
//! refused; deleting the attachment removes its item.
//!
//! What the emulator really does is what is checked: CloudFormation invokes the controller
//! with the custom-resource request, the controller answers on the ResponseURL, and the stack
//! succeeds or fails with the answer's reason; the imports resolve the deployment's exports.

use crate::support::{self, attach, failures, item};
use anyhow::{ensure, Context, Result};
use std::time::Duration;
use xtask::stack::{self, Deployment, Parameters, BREAKER_STACK};

const SECOND: &str = "sqscb-example-b";

#[test]
#[ignore = "needs the local toolchain and emulator; run with `cargo xtask test`"]
fn an_attachment_registers_is_refused_with_the_checks_sentence_and_detaches() -> Result<()> {
    let (runtime, deployed) = Deployment::start(&stack::fast_example(), &stack::fast_breaker())?;
    // The second consumer: another example stack (function, queue, mapping) and an alarm of
    // its own, as a team brings them.
    let [second] = <[support::Consumer; 1]>::try_from(support::consumers(&deployed, &[SECOND])?)
        .map_err(|_| anyhow::anyhow!("one consumer"))?;
    runtime.block_on(async {
        let config = xtask::aws::config(&deployed.local.emulator).await;
        let cfn = aws_sdk_cloudformation::Client::new(&config);
        let function = second.function.clone();
        let alarm = format!("{function}-failing");
        let alarm_arn = support::errors_alarm(&deployed.cloudwatch, &function, 60).await?;
        ensure!(alarm_arn.ends_with(&alarm));
        let consumer: Parameters = vec![
            ("Breaker", BREAKER_STACK.into()),
            ("ConsumerFunctionName", function.clone()),
            ("QueueArn", second.queue_arn.clone()),
            ("AlarmArn", alarm_arn),
        ];

        // Registered, with the stack's name as its id and the alarm's name.
        let mut orders = consumer.clone();
        orders.push(("BackoffCapSeconds", "30".into()));
        attach(&deployed, "orders-b", &orders)?;
        let registered = item(&deployed, "orders-b")
            .await?
            .context("the attachment's item")?;
        ensure!(registered["Id"] == "orders-b", "{registered}");
        ensure!(
            registered["ConsumerFunctionName"] == function.as_str(),
            "{registered}"
        );
        ensure!(
            registered["QueueArn"] == second.queue_arn.as_str(),
            "{registered}"
        );
        ensure!(registered["AlarmName"] == alarm.as_str(), "{registered}");
        ensure!(registered["BackoffCapSeconds"] == "30", "{registered}");

        // Refused by the configuration check: the stack fails with its sentence.
        let mut refused = consumer.clone();
        refused.push(("BackoffBaseSeconds", "50".into()));
        refused.push(("BackoffCapSeconds", "10".into()));
        ensure!(
            attach(&deployed, "orders-refused", &refused).is_err(),
            "a cap below the base must fail the attachment's stack"
        );
        let why = failures(&cfn, "orders-refused").await?;
        ensure!(
            why.contains("BACKOFF_CAP_SECONDS=10 must be at least BACKOFF_BASE_SECONDS=50"),
            "the stack's failure names the check: {why}"
        );
        ensure!(item(&deployed, "orders-refused").await?.is_none());

        // The same consumer twice: one mapping has one circuit.
        ensure!(
            attach(&deployed, "orders-b-twice", &consumer).is_err(),
            "a second attachment of the same consumer must fail"
        );
        let why = failures(&cfn, "orders-b-twice").await?;
        ensure!(why.contains("already attached as \"orders-b\""), "{why}");
        ensure!(item(&deployed, "orders-b-twice").await?.is_none());
        ensure!(
            item(&deployed, "orders-b").await?.is_some(),
            "the first stays"
        );

        // Detached: the item goes with the stack.
        cfn.delete_stack().stack_name("orders-b").send().await?;
        xtask::wait::eventually(
            "the attachment's item to go",
            Duration::from_secs(60),
            || async { Ok(item(&deployed, "orders-b").await?.is_none().then_some(())) },
        )
        .await?;
        anyhow::Ok(())
    })
}
