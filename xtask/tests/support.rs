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

/// Creates the attachments' stacks at once with the CloudFormation API (the attachment
/// template has no transform and no code to upload: `sam` would only add its start-up, ten
/// times over) and waits until each is complete; a failed one fails with its reasons.
pub async fn attach_all(deployed: &Deployment, attachments: &[(String, Parameters)]) -> Result<()> {
    use aws_sdk_cloudformation::types::{Capability, Parameter};
    let config = xtask::aws::config(&deployed.local.emulator).await;
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let body = std::fs::read_to_string(paths::root().join("infra/attachment.yaml"))?;
    for (stack, parameters) in attachments {
        let parameters = parameters
            .iter()
            .map(|(key, value)| {
                Parameter::builder()
                    .parameter_key(*key)
                    .parameter_value(value)
                    .build()
            })
            .collect();
        cfn.create_stack()
            .stack_name(stack)
            .template_body(&body)
            .set_parameters(Some(parameters))
            .capabilities(Capability::CapabilityIam)
            .send()
            .await
            .with_context(|| format!("CreateStack {stack}"))?;
    }
    for (stack, _) in attachments {
        xtask::wait::eventually(
            &format!("stack {stack} to be created"),
            std::time::Duration::from_secs(180),
            || async {
                let out = cfn.describe_stacks().stack_name(stack).send().await?;
                let status = out
                    .stacks()
                    .first()
                    .and_then(|s| s.stack_status())
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                if status.contains("FAILED") || status.contains("ROLLBACK") {
                    anyhow::bail!("stack {stack} {status}: {}", failures(&cfn, stack).await?);
                }
                Ok((status == "CREATE_COMPLETE").then_some(()))
            },
        )
        .await?;
    }
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

/// A queue `name` that receives the breaker's `detail_type` events from the default bus (a
/// rule of the same name); its URL.
pub async fn event_tap(
    sqs: &aws_sdk_sqs::Client,
    events: &aws_sdk_eventbridge::Client,
    name: &str,
    detail_type: &str,
) -> Result<String> {
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .context("CreateQueue for the event tap")?
        .queue_url()
        .unwrap_or_default()
        .to_string();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .context("GetQueueAttributes of the event tap")?
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .context("the event tap has no ARN")?;
    let pattern = serde_json::json!({
        "source": ["sqs-circuit-breaker"],
        "detail-type": [detail_type],
    });
    events
        .put_rule()
        .name(name)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .context("PutRule for the event tap")?;
    events
        .put_targets()
        .rule(name)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("tap")
                .arn(arn)
                .build()?,
        )
        .send()
        .await
        .context("PutTargets for the event tap")?;
    Ok(url)
}
