//! `cargo xtask local status`: what is deployed on the emulator and how the queues look.

use crate::emulator::Emulator;
use anyhow::{Context, Result};
use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sqs::types::QueueAttributeName as Q;

/// Visible, in-flight and delayed message counts of a queue (all approximate in SQS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

impl Depth {
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight + self.delayed
    }
}

pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<Depth> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "reading attributes of {queue_url}: {}",
                aws_smithy_types::error::display::DisplayErrorContext(e)
            )
        })?;
    let attrs = out.attributes();
    let count = |name: Q| -> u64 {
        attrs
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Depth {
        visible: count(Q::ApproximateNumberOfMessages),
        in_flight: count(Q::ApproximateNumberOfMessagesNotVisible),
        delayed: count(Q::ApproximateNumberOfMessagesDelayed),
    })
}

pub async fn print(emulator: &Emulator) -> Result<()> {
    let config = crate::aws::config(emulator).await;
    println!("ministack: {} (pid {})", emulator.endpoint(), emulator.pid);

    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let stacks = cfn
        .describe_stacks()
        .send()
        .await
        .context("listing stacks")?;
    println!("stacks:");
    for stack in stacks.stacks() {
        println!(
            "  {:<40} {}",
            stack.stack_name().unwrap_or("?"),
            stack.stack_status().map(|s| s.as_str()).unwrap_or("?")
        );
    }

    let lambda = aws_sdk_lambda::Client::new(&config);
    let mappings = lambda
        .list_event_source_mappings()
        .send()
        .await
        .context("listing event source mappings")?;
    println!("event source mappings:");
    for m in mappings.event_source_mappings() {
        let function = m
            .function_arn()
            .and_then(|arn| arn.rsplit(':').next())
            .unwrap_or("?");
        let queue = m
            .event_source_arn()
            .and_then(|arn| arn.rsplit(':').next())
            .unwrap_or("?");
        println!(
            "  {}  {:<10} {queue} -> {function}",
            m.uuid().unwrap_or("?"),
            m.state().unwrap_or("?"),
        );
    }

    let sqs = aws_sdk_sqs::Client::new(&config);
    let queues = sqs.list_queues().send().await.context("listing queues")?;
    println!("queues (visible / in flight / delayed):");
    for url in queues.queue_urls() {
        let depth = queue_depth(&sqs, url).await?;
        let name = url.rsplit('/').next().unwrap_or(url);
        println!(
            "  {name:<60} {} / {} / {}",
            depth.visible, depth.in_flight, depth.delayed
        );
    }
    Ok(())
}
