//! Helpers the attachment and fleet tests share: more example consumers next to the
//! deployment's, alarms of their own, attaching them (`infra/attachment.yaml`) and reading
//! what the registration wrote.

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use std::path::PathBuf;
pub use xtask::fleet::{alarm_arn, attachment, errors_alarm, failures, Consumer};
use xtask::stack::{self, Deployment, Parameters};
use xtask::{paths, sam};

/// Deploys one example stack per name, at once, with the fast timings (the example template
/// is already built: `Deployment::start` built it).
pub fn consumers(deployed: &Deployment, stacks: &[&str]) -> Result<Vec<Consumer>> {
    let built = sam::built(&deployed.local.tools, "example")?;
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
            all.push(Consumer::from_example_outputs(
                &xtask::aws::stack_outputs(&config, name).await?,
            )?);
        }
        Ok(all)
    })
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

/// [`xtask::fleet::attach_all`] on the test's deployment.
pub async fn attach_all(deployed: &Deployment, attachments: &[(String, Parameters)]) -> Result<()> {
    let config = xtask::aws::config(&deployed.local.emulator).await;
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    xtask::fleet::attach_all(&cfn, attachments).await?;
    Ok(())
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
