//! The demo's stacks, deployed with its parameters, and its tap on the breaker's events.

use super::Options;
use crate::emulator::Emulator;
use crate::{aws, stack, tools::Tools};
use anyhow::{Context, Result};
use std::collections::HashMap;

/// The deployed stacks' outputs the scenario uses.
pub struct Deployed {
    pub queue_url: String,
    pub dlq_url: String,
    pub consumer: String,
    pub state_machine: String,
}

pub async fn deploy(tools: &Tools, emulator: &Emulator, options: &Options) -> Result<Deployed> {
    let example = vec![
        // Failed batches come back quickly, so the queue shows the outage, and before the
        // rejitter's phase ends, so it spreads them with the rest of the backlog. The
        // emulator hands probe after probe the same few messages: the receive limit leaves
        // room for a minute of probes besides the consumer's retries.
        ("VisibilityTimeoutSeconds", "6".to_string()),
        ("ConsumerTimeoutSeconds", "5".to_string()),
        ("MaxReceiveCount", "20".to_string()),
        // A batch takes a second, as real work does: the queue shows batches in flight, and
        // the slow start's cap on them.
        ("LatencyMs", "1000".to_string()),
    ];
    let breaker = vec![
        ("AlarmPeriodSeconds", options.alarm_period_s.to_string()),
        ("AlarmEvaluationPeriods", "1".to_string()),
        ("AlarmDatapointsToAlarm", "1".to_string()),
        // A 10 s period holds a handful of the consumer's invocations, not the ten the
        // error share needs by default: with 3 the first period of the outage trips it.
        ("AlarmMinimumCount", "3".to_string()),
        ("BackoffBaseSeconds", options.backoff_base_s.to_string()),
        ("BackoffCapSeconds", options.backoff_cap_s.to_string()),
        ("RejitterEnabled", "true".to_string()),
        ("MinDelaySeconds", options.min_delay_s.to_string()),
        ("MaxDelaySeconds", options.max_delay_s.to_string()),
        ("SlowStartSeconds", options.slow_start_s.to_string()),
    ];
    stack::deploy_example_and_breaker(tools, emulator, &example, &breaker).await?;
    let config = aws::config(emulator).await;
    let example = aws::stack_outputs(&config, stack::EXAMPLE_STACK).await?;
    let breaker = aws::stack_outputs(&config, stack::BREAKER_STACK).await?;
    let get = |outputs: &HashMap<String, String>, key: &str| {
        outputs
            .get(key)
            .cloned()
            .with_context(|| format!("stack output {key} missing"))
    };
    Ok(Deployed {
        queue_url: get(&example, "QueueUrl")?,
        dlq_url: get(&example, "DeadLetterQueueUrl")?,
        consumer: get(&example, "ConsumerFunctionName")?,
        state_machine: get(&breaker, "StateMachineArn")?,
    })
}

/// A rule on the breaker's bus that copies its events into a queue the demo reads: the
/// way a user would watch them (the breaker's bus is `default` unless configured).
pub async fn event_tap(
    config: &aws_config::SdkConfig,
    sqs: &aws_sdk_sqs::Client,
) -> Result<String> {
    let queue_url = sqs
        .create_queue()
        .queue_name("sqscb-demo-events")
        .send()
        .await
        .context("creating the demo's event queue")?
        .queue_url()
        .unwrap_or_default()
        .to_string();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .context("reading the demo's event queue ARN")?;
    let queue_arn = attributes
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .context("the demo's event queue has no ARN")?;
    let events = aws_sdk_eventbridge::Client::new(config);
    events
        .put_rule()
        .name("sqscb-demo-events")
        .event_pattern(r#"{"source":["sqs-circuit-breaker"]}"#)
        .send()
        .await
        .context("PutRule for the demo's event tap")?;
    events
        .put_targets()
        .rule("sqscb-demo-events")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("demo-queue")
                .arn(queue_arn)
                .build()?,
        )
        .send()
        .await
        .context("PutTargets for the demo's event tap")?;
    // Events of an earlier run on a reused emulator are not this run's.
    let _ = sqs.purge_queue().queue_url(&queue_url).send().await;
    Ok(queue_url)
}
