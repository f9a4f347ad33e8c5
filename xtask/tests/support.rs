//! Helpers the attachment and fleet tests share: more example consumers next to the
//! deployment's, alarms of their own, attaching them (`infra/attachment.yaml`) and reading
//! what the registration wrote.

use anyhow::{Context, Result};
use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use xtask::stack::{self, Deployment, Parameters};
use xtask::{paths, sam};

/// One more example consumer (an example stack: function, queue, dead-letter queue, mapping).
#[derive(Debug, Clone)]
pub struct Consumer {
    pub function: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub dlq_url: String,
    pub mapping: String,
}

impl Consumer {
    fn from_outputs(outputs: &HashMap<String, String>) -> Result<Consumer> {
        let get = |key: &str| {
            outputs
                .get(key)
                .cloned()
                .with_context(|| format!("the example stack has no {key} output"))
        };
        Ok(Consumer {
            function: get("ConsumerFunctionName")?,
            queue_url: get("QueueUrl")?,
            queue_arn: get("QueueArn")?,
            dlq_url: get("DeadLetterQueueUrl")?,
            mapping: get("EventSourceMappingId")?,
        })
    }
}

/// Deploys one example stack per name, at once, with the fast timings (the example template
/// is already built: `Deployment::start` built it).
pub fn consumers(deployed: &Deployment, stacks: &[&str]) -> Result<Vec<Consumer>> {
    let built: PathBuf = paths::local().join("sam/example/template.yaml");
    std::thread::scope(|scope| {
        let deploys: Vec<_> = stacks
            .iter()
            .map(|name| {
                let built = &built;
                scope.spawn(move || {
                    sam::deploy(
                        &deployed.local.tools,
                        &deployed.local.emulator,
                        built,
                        name,
                        &stack::fast_example(),
                    )
                })
            })
            .collect();
        deploys
            .into_iter()
            .map(|d| d.join().map_err(|_| anyhow::anyhow!("a deploy panicked"))?)
            .collect::<Result<Vec<()>>>()
    })?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let config = xtask::aws::config(&deployed.local.emulator).await;
        let mut all = Vec::new();
        for name in stacks {
            all.push(Consumer::from_outputs(
                &xtask::aws::stack_outputs(&config, name).await?,
            )?);
        }
        Ok(all)
    })
}

/// The ARN of an alarm of this account and region, by name.
pub fn alarm_arn(name: &str) -> String {
    format!(
        "arn:aws:cloudwatch:{}:000000000000:alarm:{name}",
        sam::REGION
    )
}

/// Creates `<function>-failing`, an alarm on the function's `Errors` (a per-function signal):
/// ALARM when a period of `period_s` seconds holds an error. Returns its ARN.
pub async fn errors_alarm(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    function: &str,
    period_s: i32,
) -> Result<String> {
    let name = format!("{function}-failing");
    cloudwatch
        .put_metric_alarm()
        .alarm_name(&name)
        .namespace("AWS/Lambda")
        .metric_name("Errors")
        .dimensions(
            Dimension::builder()
                .name("FunctionName")
                .value(function)
                .build(),
        )
        .statistic(Statistic::Sum)
        .period(period_s)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
        .treat_missing_data("notBreaching")
        .send()
        .await
        .context("PutMetricAlarm")?;
    Ok(alarm_arn(&name))
}

/// Deploys `infra/attachment.yaml` as `stack` (the attachment's id).
pub fn attach(deployed: &Deployment, stack: &str, parameters: &Parameters) -> Result<()> {
    let template: PathBuf = paths::root().join("infra/attachment.yaml");
    sam::deploy(
        &deployed.local.tools,
        &deployed.local.emulator,
        &template,
        stack,
        parameters,
    )
}

/// [`attach`] of several attachments at once; every deploy must succeed.
pub fn attach_all(deployed: &Deployment, attachments: &[(String, Parameters)]) -> Result<()> {
    std::thread::scope(|scope| {
        let deploys: Vec<_> = attachments
            .iter()
            .map(|(stack, parameters)| scope.spawn(move || attach(deployed, stack, parameters)))
            .collect();
        deploys
            .into_iter()
            .map(|d| d.join().map_err(|_| anyhow::anyhow!("a deploy panicked"))?)
            .collect::<Result<Vec<()>>>()
    })?;
    Ok(())
}

/// The attachment parameters of `consumer` with the alarm `alarm_arn` on this deployment.
pub fn attachment(function: &str, queue_arn: &str, alarm_arn: &str) -> Parameters {
    vec![
        ("Breaker", stack::BREAKER_STACK.into()),
        ("ConsumerFunctionName", function.into()),
        ("QueueArn", queue_arn.into()),
        ("AlarmArn", alarm_arn.into()),
    ]
}

/// The settings the registration wrote for attachment `id`, if any.
pub async fn item(deployed: &Deployment, id: &str) -> Result<Option<Value>> {
    let out = deployed
        .dynamodb
        .get_item()
        .table_name(&deployed.breaker["AttachmentsTableName"])
        .key("id", AttributeValue::S(id.into()))
        .consistent_read(true)
        .send()
        .await?;
    out.item()
        .map(|item| {
            let settings = item
                .get("settings")
                .and_then(|s| s.as_s().ok())
                .context("an item without settings")?;
            Ok(serde_json::from_str(settings)?)
        })
        .transpose()
}

/// The reasons CloudFormation recorded for the stack's failed resources.
pub async fn failures(cfn: &aws_sdk_cloudformation::Client, stack: &str) -> Result<String> {
    let events = cfn.describe_stack_events().stack_name(stack).send().await?;
    Ok(events
        .stack_events()
        .iter()
        .filter(|e| {
            e.resource_status()
                .is_some_and(|s| s.as_str().ends_with("FAILED"))
        })
        .filter_map(|e| e.resource_status_reason())
        .collect::<Vec<_>>()
        .join("\n"))
}
