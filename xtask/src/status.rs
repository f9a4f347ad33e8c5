//! `cargo xtask local status`: what is deployed on the emulator and how the queues look.

use crate::emulator::Emulator;
use anyhow::{Context, Result};

/// Visible, in-flight and delayed message counts of a queue (all approximate in SQS).
pub use controller::adapters::queue::Depth;

pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<Depth> {
    let (depth, _) = controller::adapters::queue::depth(sqs, queue_url)
        .await
        .with_context(|| format!("reading attributes of {queue_url}"))?;
    Ok(depth)
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
