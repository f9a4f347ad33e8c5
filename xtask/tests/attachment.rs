//! An attachment (`infra/attachment.yaml`) on the local stack, one deployment for all: the
//! breaker deployed once with `sam`, a second consumer (a second example stack) attached to
//! it and registered; an attachment the configuration check refuses fails its stack with the
//! check's sentence and registers nothing, as does one asking for the rejitter of this
//! deployment, which has none; a second attachment of the same consumer is
//! refused; deleting the attachment removes its item; an attachment with no AlarmArn creates
//! the alarm its AlarmSignal chooses and registers it with that signal. The item records the
//! attachment's own role (on the deployment's path), and the delete's give-back runs under
//! it: the controller assumes it (its log says so). The emulator enforces no IAM here (no
//! `AUTH=true`): the roles' grants are the IAM test's (`xtask/tests/iam.rs`).
//!
//! What the emulator really does is what is checked: CloudFormation invokes the controller
//! with the custom-resource request, the controller answers on the ResponseURL, and the stack
//! succeeds or fails with the answer's reason; the imports resolve the deployment's exports.

use crate::support::{self, attach, failures, item};
use anyhow::{ensure, Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use std::time::Duration;
use xtask::stack::{self, Deployment, Parameters, BREAKER_STACK};

const SECOND: &str = "sqscb-example-b";

/// The role an attachment's item records.
async fn role_of(deployed: &Deployment, id: &str) -> Result<Option<String>> {
    let out = deployed
        .dynamodb
        .get_item()
        .table_name(&deployed.breaker["AttachmentsTableName"])
        .key("id", AttributeValue::S(id.into()))
        .consistent_read(true)
        .send()
        .await?;
    Ok(out
        .item()
        .and_then(|item| item.get("role_arn"))
        .and_then(|r| r.as_s().ok())
        .cloned())
}

/// The controller's log lines that name `needle`.
async fn controller_logs(deployed: &Deployment, needle: &str) -> Result<Vec<String>> {
    let group = format!("/aws/lambda/{BREAKER_STACK}-controller");
    Ok(deployed
        .logs
        .messages(&group, "")
        .await?
        .into_iter()
        .filter(|m| m.contains(needle))
        .collect())
}

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
        ensure!(registered["AlarmSignal"] == "custom", "{registered}");
        ensure!(registered["BackoffCapSeconds"] == "30", "{registered}");
        // Its own role, on the deployment's path, recorded beside the settings.
        let role =
            xtask::aws::stack_outputs(&config, "orders-b").await?["AttachmentRoleArn"].clone();
        ensure!(
            role.contains(&format!(":role/sqs-circuit-breaker/{BREAKER_STACK}/")),
            "the attachment's role is on the deployment's path: {role}"
        );
        ensure!(
            role_of(&deployed, "orders-b").await?.as_deref() == Some(role.as_str()),
            "the item records the attachment's role {role}"
        );

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

        // The rejitter asked of a deployment without one: refused by the registration, before
        // the mapping or the grant (which import the deployment's "none") are tried.
        let mut rejitter = consumer.clone();
        rejitter.push(("RejitterEnabled", "true".into()));
        ensure!(
            attach(&deployed, "orders-rejitter", &rejitter).is_err(),
            "the rejitter of a deployment without one must fail the attachment's stack"
        );
        let why = failures(&cfn, "orders-rejitter").await?;
        ensure!(
            why.contains("the breaker deployment has no rejitter function"),
            "the stack's failure names the missing rejitter: {why}"
        );
        ensure!(item(&deployed, "orders-rejitter").await?.is_none());

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
        // Its give-back looked for the consumer's circuit under the attachment's role.
        xtask::wait::eventually(
            "the controller to log the attachment's role",
            Duration::from_secs(30),
            || async {
                let lines = controller_logs(&deployed, &role).await?;
                Ok(lines
                    .iter()
                    .any(|l| l.contains("clients under the attachment's role"))
                    .then_some(()))
            },
        )
        .await?;

        // No AlarmArn: the attachment creates the alarm AlarmSignal chooses, from the Alarm*
        // parameters, named after its stack, and registers that alarm and its signal.
        let mut errors = consumer.clone();
        errors.retain(|(k, _)| *k != "AlarmArn");
        errors.push(("AlarmSignal", "errors".into()));
        errors.push(("AlarmThreshold", "2".into()));
        attach(&deployed, "orders-c", &errors)?;
        let created = "orders-c-consumer-errors";
        let alarms = deployed
            .cloudwatch
            .describe_alarms()
            .alarm_name_prefix("orders-c-")
            .alarm_types(aws_sdk_cloudwatch::types::AlarmType::MetricAlarm)
            .alarm_types(aws_sdk_cloudwatch::types::AlarmType::CompositeAlarm)
            .send()
            .await?;
        ensure!(alarms.composite_alarms().is_empty(), "{alarms:?}");
        let [alarm] = alarms.metric_alarms() else {
            anyhow::bail!("one created alarm expected: {alarms:?}");
        };
        ensure!(alarm.alarm_name() == Some(created), "{alarm:?}");
        ensure!(alarm.namespace() == Some("AWS/Lambda"), "{alarm:?}");
        ensure!(alarm.metric_name() == Some("Errors"), "{alarm:?}");
        ensure!(alarm.threshold() == Some(2.0), "{alarm:?}");
        ensure!(
            alarm
                .dimensions()
                .iter()
                .any(|d| d.name() == Some("FunctionName") && d.value() == Some(function.as_str())),
            "{alarm:?}"
        );
        let registered = item(&deployed, "orders-c")
            .await?
            .context("the attachment's item")?;
        ensure!(registered["AlarmName"] == created, "{registered}");
        ensure!(registered["AlarmSignal"] == "errors", "{registered}");
        anyhow::Ok(())
    })
}
