//! A fleet on the local stack: many example consumers next to one breaker deployment, an
//! alarm of its own for each, their attachments (`infra/attachment.yaml`) and what the
//! breaker's executions say about them. Used by `cargo xtask bench fleet` and the fleet and
//! attachment tests (`xtask/tests/support.rs`).
//!
//! The consumers come in generated stacks of several each (one `sam deploy` per stack, the
//! stacks at once): the example consumer's built code, a queue with its dead-letter queue and
//! a mapping per consumer, with the example stack's shape.

use crate::stack::{self, Deployment, Parameters};
use crate::wait::eventually;
use crate::{paths, sam};
use anyhow::{Context, Result};
use aws_sdk_cloudformation::types::{Capability, Parameter};
use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One consumer of the fleet: its function, queue, dead-letter queue and mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub function: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub dlq_url: String,
    pub mapping: String,
}

impl Consumer {
    /// The consumer of an example stack (`infra/example.yaml`), from its outputs.
    pub fn from_example_outputs(outputs: &HashMap<String, String>) -> Result<Consumer> {
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

/// How a generated consumer stack's consumers behave (the example stack's parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub visibility_timeout_s: u32,
    pub timeout_s: u32,
    pub max_receive_count: u32,
}

/// The `i`th consumer's name: its function's and its queue's.
pub fn consumer_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:02}")
}

/// A SAM template holding the consumers `names`, each as the example stack holds its one: a
/// dead-letter queue, a queue, the example consumer (code at `code`) and its mapping (batches
/// of 10, failed records reported). Outputs `<Key>N` for the N-th: `FunctionName`,
/// `QueueUrl`, `QueueArn`, `DeadLetterQueueUrl`, `MappingId`.
pub fn consumers_template(names: &[String], code: &Path, shape: Shape) -> Value {
    let mut resources = serde_json::Map::new();
    let mut outputs = serde_json::Map::new();
    for (n, name) in names.iter().enumerate() {
        resources.insert(
            format!("DeadLetterQueue{n}"),
            json!({"Type": "AWS::SQS::Queue", "Properties": {
                "QueueName": format!("{name}-dlq"), "MessageRetentionPeriod": 1_209_600}}),
        );
        resources.insert(
            format!("Queue{n}"),
            json!({"Type": "AWS::SQS::Queue", "Properties": {
                "QueueName": name,
                "VisibilityTimeout": shape.visibility_timeout_s,
                "MessageRetentionPeriod": 345_600,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": [format!("DeadLetterQueue{n}"), "Arn"]},
                    "maxReceiveCount": shape.max_receive_count}}}),
        );
        resources.insert(
            format!("Function{n}"),
            json!({"Type": "AWS::Serverless::Function", "Properties": {
                "FunctionName": name,
                "CodeUri": code.display().to_string(),
                "Handler": "bootstrap",
                "Runtime": "provided.al2023",
                "Architectures": ["x86_64"],
                "MemorySize": 128,
                "Timeout": shape.timeout_s,
                "Environment": {"Variables": {
                    "SHOULD_ERROR": "false", "FAILURE_RATE": "0", "LATENCY_MS": "0",
                    "POISON_MARKER": "", "RUST_LOG": "info"}},
                "Events": {"QueueEvents": {"Type": "SQS", "Properties": {
                    "Queue": {"Fn::GetAtt": [format!("Queue{n}"), "Arn"]},
                    "BatchSize": 10,
                    "FunctionResponseTypes": ["ReportBatchItemFailures"],
                    "Enabled": true}}}}}),
        );
        for (key, value) in [
            ("FunctionName", json!({"Ref": format!("Function{n}")})),
            ("QueueUrl", json!({"Ref": format!("Queue{n}")})),
            (
                "QueueArn",
                json!({"Fn::GetAtt": [format!("Queue{n}"), "Arn"]}),
            ),
            (
                "DeadLetterQueueUrl",
                json!({"Ref": format!("DeadLetterQueue{n}")}),
            ),
            (
                "MappingId",
                json!({"Ref": format!("Function{n}QueueEvents")}),
            ),
        ] {
            outputs.insert(format!("{key}{n}"), json!({ "Value": value }));
        }
    }
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": "sqs-circuit-breaker fleet bench: example consumers, each on its own queue",
        "Resources": resources,
        "Outputs": outputs,
    })
}

/// The consumers a generated stack's outputs describe, in order.
pub fn consumers_of(outputs: &HashMap<String, String>, count: usize) -> Result<Vec<Consumer>> {
    let get = |key: &str, n: usize| {
        outputs
            .get(&format!("{key}{n}"))
            .cloned()
            .with_context(|| format!("the consumer stack has no {key}{n} output"))
    };
    (0..count)
        .map(|n| {
            Ok(Consumer {
                function: get("FunctionName", n)?,
                queue_url: get("QueueUrl", n)?,
                queue_arn: get("QueueArn", n)?,
                dlq_url: get("DeadLetterQueueUrl", n)?,
                mapping: get("MappingId", n)?,
            })
        })
        .collect()
}

/// Deploys `count` consumers named `<prefix>-NN` in stacks of at most `per_stack`, the stacks
/// at once. The example stack must be built (`Deployment::start` builds it).
pub fn deploy_consumers(
    d: &Deployment,
    prefix: &str,
    count: usize,
    per_stack: usize,
    shape: Shape,
) -> Result<Vec<Consumer>> {
    let built = sam::built(&d.local.tools, "example")?;
    let code = built
        .parent()
        .context("a built template has a folder")?
        .join("ConsumerFunction");
    let dir = paths::local().join("sam/fleet");
    std::fs::create_dir_all(&dir)?;
    let names: Vec<String> = (0..count).map(|i| consumer_name(prefix, i)).collect();
    let mut stacks: Vec<(String, PathBuf, usize)> = Vec::new();
    for (s, chunk) in names.chunks(per_stack.max(1)).enumerate() {
        let stack = format!("{prefix}-consumers-{s}");
        let path = dir.join(format!("{stack}.json"));
        let template = consumers_template(chunk, &code, shape);
        std::fs::write(&path, serde_json::to_string_pretty(&template)?)?;
        stacks.push((stack, path, chunk.len()));
    }
    std::thread::scope(|scope| {
        let deploys: Vec<_> = stacks
            .iter()
            .map(|(stack, path, _)| {
                scope
                    .spawn(move || sam::deploy(&d.local.tools, &d.local.emulator, path, stack, &[]))
            })
            .collect();
        deploys
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("a deploy panicked"))?)
            .collect::<Result<Vec<()>>>()
    })?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let config = crate::aws::config(&d.local.emulator).await;
        let mut all = Vec::new();
        for (stack, _, n) in &stacks {
            let outputs = crate::aws::stack_outputs(&config, stack).await?;
            all.extend(consumers_of(&outputs, *n)?);
        }
        Ok(all)
    })
}

/// The ARN of an alarm of the local stack's account and region, by name.
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

/// The attachment parameters of a consumer with the alarm `alarm_arn` on the local
/// deployment.
pub fn attachment(function: &str, queue_arn: &str, alarm_arn: &str) -> Parameters {
    vec![
        ("Breaker", stack::BREAKER_STACK.into()),
        ("ConsumerFunctionName", function.into()),
        ("QueueArn", queue_arn.into()),
        ("AlarmArn", alarm_arn.into()),
    ]
}

/// Creates the attachments' stacks at once with the CloudFormation API (the attachment
/// template has no transform and no code: `sam` would only add its start-up each time) and
/// waits until each is complete; a failed one fails with its reasons. Returns each stack's
/// time from its `CreateStack` to `CREATE_COMPLETE` as seen by polling, in order.
pub async fn attach_all(
    cfn: &aws_sdk_cloudformation::Client,
    attachments: &[(String, Parameters)],
) -> Result<Vec<Duration>> {
    let body = std::fs::read_to_string(paths::root().join("infra/attachment.yaml"))?;
    let mut started = Vec::new();
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
        started.push(Instant::now());
        cfn.create_stack()
            .stack_name(stack)
            .template_body(&body)
            .set_parameters(Some(parameters))
            .capabilities(Capability::CapabilityIam)
            .send()
            .await
            .with_context(|| format!("CreateStack {stack}"))?;
    }
    // Filled in as each completes; the check below runs again until all are.
    let times = std::sync::Mutex::new(vec![None; attachments.len()]);
    eventually(
        "the attachments' stacks to be created",
        Duration::from_secs(300),
        || async {
            for (i, (stack, _)) in attachments.iter().enumerate() {
                if lock(&times)[i].is_some() {
                    continue;
                }
                let status = stack_status(cfn, stack).await?;
                if status.contains("FAILED") || status.contains("ROLLBACK") {
                    anyhow::bail!("stack {stack} {status}: {}", failures(cfn, stack).await?);
                }
                if status == "CREATE_COMPLETE" {
                    lock(&times)[i] = Some(started[i].elapsed());
                }
            }
            let times = lock(&times);
            Ok(times
                .iter()
                .all(Option::is_some)
                .then(|| times.iter().flatten().copied().collect()))
        },
    )
    .await
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn stack_status(cfn: &aws_sdk_cloudformation::Client, stack: &str) -> Result<String> {
    let out = cfn
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .context("DescribeStacks")?;
    Ok(out
        .stacks()
        .first()
        .and_then(|s| s.stack_status())
        .map(|s| s.as_str().to_string())
        .unwrap_or_default())
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

/// Every execution of the deployment's state machine with the attachment its input names
/// (`None`: the built-in consumer's), as the console tells them apart.
pub async fn executions_by_attachment(d: &Deployment) -> Result<Vec<(String, Option<String>)>> {
    let mut all = Vec::new();
    for e in crate::breaker::executions(&d.sfn, &d.breaker["StateMachineArn"]).await? {
        let out = d
            .sfn
            .describe_execution()
            .execution_arn(&e.arn)
            .send()
            .await
            .context("DescribeExecution")?;
        all.push((e.arn, crate::console::fleet::consumer_of(out.input())));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        visibility_timeout_s: 5,
        timeout_s: 3,
        max_receive_count: 5,
    };

    #[test]
    fn a_generated_stack_holds_each_consumer_with_its_own_queue_and_mapping() {
        let names = vec![consumer_name("fleet", 0), consumer_name("fleet", 1)];
        let t = consumers_template(&names, Path::new("/code"), SHAPE);
        let r = &t["Resources"];
        assert_eq!(r["Function1"]["Properties"]["FunctionName"], "fleet-01");
        assert_eq!(r["Queue1"]["Properties"]["QueueName"], "fleet-01");
        assert_eq!(
            r["Function1"]["Properties"]["Events"]["QueueEvents"]["Properties"]["Queue"],
            json!({"Fn::GetAtt": ["Queue1", "Arn"]})
        );
        assert_eq!(
            r["Queue0"]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"],
            json!({"Fn::GetAtt": ["DeadLetterQueue0", "Arn"]})
        );
        assert_eq!(r["Queue0"]["Properties"]["VisibilityTimeout"], 5);
        assert_eq!(
            t["Outputs"]["MappingId1"]["Value"],
            json!({"Ref": "Function1QueueEvents"})
        );
    }

    #[test]
    fn consumers_are_read_back_from_the_outputs_in_order() {
        let mut outputs = HashMap::new();
        for n in 0..2 {
            for key in [
                "FunctionName",
                "QueueUrl",
                "QueueArn",
                "DeadLetterQueueUrl",
                "MappingId",
            ] {
                outputs.insert(format!("{key}{n}"), format!("{key}-{n}"));
            }
        }
        let consumers = consumers_of(&outputs, 2).unwrap();
        assert_eq!(consumers[1].function, "FunctionName-1");
        assert_eq!(consumers[0].mapping, "MappingId-0");
        outputs.remove("QueueUrl1");
        let err = consumers_of(&outputs, 2).unwrap_err();
        assert!(err.to_string().contains("QueueUrl1"), "{err}");
    }
}
