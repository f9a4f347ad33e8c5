//! The company-account options and the refusals on the local stack, one stack for all: the
//! breaker deployed with none of the new parameters, then updated with every one of them
//! (and a configuration the controller refuses).
//!
//! What the emulator really does is what is checked: it keeps log groups' retention, runs
//! the controller on CloudFormation's documented deploy event (the emulator emits none
//! itself), delivers the breaker's events to the alert topic through the alert rule, and
//! fires an alarm's SNS action on a state change, and copies stack tags to the resources
//! that take them (as CloudFormation does). It does not enforce the permissions
//! boundary (accepted, not checked), and publishes no `AWS/States` or `AWS/Events` metrics,
//! so the health alarms are driven with SetAlarmState.

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use xtask::stack::{self, Deployment, BREAKER_STACK};

/// SNS on the emulator, through the venv's boto3 (the workspace has no SNS client): an SQS
/// queue subscribed to a topic, then what it received.
const SNS: &str = r#"
import boto3, json, sys
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1",
          aws_access_key_id="test", aws_secret_access_key="test")
sqs, sns = boto3.client("sqs", **kw), boto3.client("sns", **kw)
if sys.argv[2] == "subscribe":
    url = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=sys.argv[3], Protocol="sqs", Endpoint=arn,
                  Attributes={"RawMessageDelivery": "true"})
    print(url)
else:
    got = sqs.receive_message(QueueUrl=sys.argv[3], MaxNumberOfMessages=10, WaitTimeSeconds=2)
    print(json.dumps([m["Body"] for m in got.get("Messages", [])]))
"#;

fn sns(deployed: &Deployment, args: &[&str]) -> Result<String> {
    let out = deployed
        .local
        .tools
        .command("python")
        .arg("-c")
        .arg(SNS)
        .arg(deployed.local.emulator.endpoint())
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("boto3: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Waits up to 30 s for an alert whose text contains `needle`.
fn alert(deployed: &Deployment, inbox: &str, needle: &str) -> Result<String> {
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < Duration::from_secs(30) {
        let bodies: Vec<String> = serde_json::from_str(&sns(deployed, &["receive", inbox])?)?;
        if let Some(found) = bodies.iter().find(|b| b.contains(needle)) {
            return Ok(found.clone());
        }
        seen.extend(bodies);
    }
    bail!("no alert with {needle:?} on the topic within 30 s; received: {seen:?}")
}

/// CloudFormation's documented "Stack Status Change" event for the breaker's stack.
fn deployed_event(stack_id: &str, status: &str) -> Value {
    json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "CloudFormation Stack Status Change",
        "source": "aws.cloudformation",
        "account": "000000000000",
        "time": xtask::breaker::utc_time(std::time::SystemTime::now()),
        "region": "us-east-1",
        "resources": [stack_id],
        "detail": {
            "stack-id": stack_id,
            "status-details": {"status": status, "status-reason": ""},
        }
    })
}

async fn invoke(deployed: &Deployment, event: &Value) -> Result<Value> {
    let out = deployed
        .lambda
        .invoke()
        .function_name(&deployed.breaker["ControllerFunctionName"])
        .payload(aws_smithy_types::Blob::new(event.to_string()))
        .send()
        .await?;
    let payload: Value =
        serde_json::from_slice(out.payload().map(|p| p.as_ref()).unwrap_or(b"null"))?;
    ensure!(
        out.function_error().is_none(),
        "the controller failed: {payload}"
    );
    Ok(payload)
}

async fn retention(deployed: &Deployment, group: &str) -> Result<Option<i64>> {
    let found = deployed
        .logs
        .call(
            "DescribeLogGroups",
            &serde_json::json!({ "logGroupNamePrefix": group }),
        )
        .await?;
    let group = found["logGroups"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["logGroupName"] == group)
        .with_context(|| format!("no log group {group}"))?;
    Ok(group["retentionInDays"].as_i64())
}

/// The tags of the controller function, the circuit table, the state machine and the
/// controller's log group, each as a map.
async fn tags_of(
    deployed: &Deployment,
    outputs: &std::collections::HashMap<String, String>,
    log_group: &str,
) -> Result<Vec<(&'static str, BTreeMap<String, String>)>> {
    let output = |key: &str| outputs.get(key).with_context(|| format!("output {key}"));
    let function = deployed
        .lambda
        .get_function()
        .function_name(output("ControllerFunctionName")?)
        .send()
        .await?;
    let table = deployed
        .dynamodb
        .describe_table()
        .table_name(output("CircuitTableName")?)
        .send()
        .await?;
    let table_arn = table
        .table()
        .and_then(|t| t.table_arn())
        .context("the table's ARN")?;
    let table_tags = deployed
        .dynamodb
        .list_tags_of_resource()
        .resource_arn(table_arn)
        .send()
        .await?;
    let machine = deployed
        .sfn
        .list_tags_for_resource()
        .resource_arn(output("StateMachineArn")?)
        .send()
        .await?;
    // ListTagsForResource needs the group's ARN; the name is at hand.
    let group = deployed
        .logs
        .call(
            "ListTagsLogGroup",
            &serde_json::json!({ "logGroupName": log_group }),
        )
        .await?;
    let pairs = |tags: Vec<(Option<&str>, Option<&str>)>| -> BTreeMap<String, String> {
        tags.into_iter()
            .filter_map(|(k, v)| Some((k?.to_string(), v?.to_string())))
            .collect()
    };
    Ok(vec![
        (
            "the controller function",
            function
                .tags()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        ),
        (
            "the circuit table",
            pairs(
                table_tags
                    .tags()
                    .iter()
                    .map(|t| (Some(t.key()), Some(t.value())))
                    .collect(),
            ),
        ),
        (
            "the state machine",
            pairs(
                machine
                    .tags()
                    .iter()
                    .map(|t| (t.key(), t.value()))
                    .collect(),
            ),
        ),
        (
            "the controller's log group",
            group["tags"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect(),
        ),
    ])
}

#[test]
#[ignore = "needs the local stack; run with `cargo xtask test`"]
fn company_options_and_refusals_on_the_local_stack() -> Result<()> {
    // None of the new parameters: the defaults.
    let (runtime, deployed) = Deployment::start(&stack::fast_example(), &stack::fast_breaker())?;
    let config = runtime.block_on(xtask::aws::config(&deployed.local.emulator));
    let stack_id = runtime.block_on(async {
        let cfn = aws_sdk_cloudformation::Client::new(&config);
        let described = cfn
            .describe_stacks()
            .stack_name(BREAKER_STACK)
            .send()
            .await?;
        described
            .stacks()
            .first()
            .and_then(|s| s.stack_id())
            .map(str::to_string)
            .context("the breaker's stack id")
    })?;
    ensure!(
        deployed.breaker.contains_key("OperatorPolicyArn")
            && !deployed.breaker.contains_key("AlertTopicArn"),
        "outputs: {:?}",
        deployed.breaker
    );
    let controller_logs = format!("/aws/lambda/{BREAKER_STACK}-controller");
    ensure!(runtime.block_on(retention(&deployed, &controller_logs))? == Some(30));
    let answer = runtime.block_on(invoke(
        &deployed,
        &deployed_event(&stack_id, "CREATE_COMPLETE"),
    ))?;
    ensure!(answer == json!({"configuration": "valid"}), "{answer}");

    // Every new parameter, and a configuration the controller refuses.
    let mut every = stack::fast_breaker();
    every.extend([
        ("AlertTopic", "true".to_string()),
        (
            "PermissionsBoundaryArn",
            "arn:aws:iam::000000000000:policy/company-boundary".to_string(),
        ),
        ("LogRetentionDays", "7".to_string()),
        ("RejitterEnabled", "true".to_string()),
        ("MinDelaySeconds", "600".to_string()),
        ("MaxDelaySeconds", "300".to_string()),
    ]);
    // Stack tags given on the update reach the resources that already exist.
    let tags = [
        ("team", "payments".to_string()),
        ("cost-center", "42".to_string()),
    ];
    runtime.block_on(stack::deploy_breaker_tagged(
        &deployed.local.tools,
        &deployed.local.emulator,
        &every,
        &tags,
    ))?;
    let outputs = runtime.block_on(xtask::aws::stack_outputs(&config, BREAKER_STACK))?;
    let topic = outputs
        .get("AlertTopicArn")
        .context("AlertTopicArn output")?;
    ensure!(runtime.block_on(retention(&deployed, &controller_logs))? == Some(7));
    for (resource, found) in runtime.block_on(tags_of(&deployed, &outputs, &controller_logs))? {
        for (key, value) in &tags {
            ensure!(
                found.get(*key) == Some(value),
                "{resource} is missing the stack tag {key}={value}: {found:?}"
            );
        }
    }
    ensure!(
        runtime.block_on(retention(
            &deployed,
            &format!("/aws/lambda/{BREAKER_STACK}-rejitter")
        ))? == Some(7)
    );
    let inbox = sns(&deployed, &["subscribe", topic])?;

    // The refusal: announced on the deploy's event, to the bus and the alert topic...
    let answer = runtime.block_on(invoke(
        &deployed,
        &deployed_event(&stack_id, "UPDATE_COMPLETE"),
    ))?;
    let reason = "MIN_DELAY_SECONDS=600 must be at most MAX_DELAY_SECONDS=300";
    ensure!(
        answer["configuration"] == "refused"
            && answer["reason"]
                .as_str()
                .is_some_and(|r| r.contains(reason)),
        "{answer}"
    );
    let announced = alert(&deployed, &inbox, "Breaker Misconfigured")?;
    ensure!(announced.contains(reason), "{announced}");
    // ...and by `sqs-circuit-breaker status`.
    let endpoint = Some(deployed.local.emulator.endpoint());
    match runtime.block_on(sqs_circuit_breaker::locate::breaker(
        &config,
        BREAKER_STACK,
        &endpoint,
    )) {
        Err(e) => ensure!(e.to_string().contains(reason), "status says: {e}"),
        Ok(_) => bail!("status accepted a refused configuration"),
    }

    // A health alarm's action reaches the topic.
    let aborted = format!("{BREAKER_STACK}-executions-aborted");
    runtime.block_on(xtask::breaker::set_alarm_state(
        &deployed.cloudwatch,
        &aborted,
        "ALARM",
        "an execution was stopped",
    ))?;
    alert(&deployed, &inbox, &aborted)?;
    Ok(())
}
