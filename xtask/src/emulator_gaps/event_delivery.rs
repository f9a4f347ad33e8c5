//! Delivers an event to the targets of the EventBridge rules that match it, as EventBridge
//! would: the emulator's PutEvents refuses `aws.*` sources, so the bridge tests each rule's
//! deployed pattern (TestEventPattern) and calls the targets itself.

use super::alarm_evaluation::event_time;
use super::alarm_events::target_input;
use super::input_transformer::{Rule, Transformer};
use anyhow::Result;
use aws_smithy_types::error::display::DisplayErrorContext;
use serde_json::Value;

pub struct Clients {
    pub events: aws_sdk_eventbridge::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl Clients {
    pub fn new(config: &aws_config::SdkConfig) -> Clients {
        Clients {
            events: aws_sdk_eventbridge::Client::new(config),
            sfn: aws_sdk_sfn::Client::new(config),
            lambda: aws_sdk_lambda::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
        }
    }
}

/// The queue name of an SQS queue ARN (`arn:aws:sqs:REGION:ACCOUNT:NAME`).
pub fn sqs_queue_name(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    (parts.len() == 6 && parts[2] == "sqs").then(|| parts[5])
}

async fn send_to_queue(clients: &Clients, queue: &str, body: String) -> Result<String, String> {
    let url = clients
        .sqs
        .get_queue_url()
        .queue_name(queue)
        .send()
        .await
        .map_err(|e| format!("GetQueueUrl: {}", DisplayErrorContext(e)))?
        .queue_url()
        .unwrap_or_default()
        .to_string();
    clients
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body(body)
        .send()
        .await
        .map(|_| format!("message to {queue}"))
        .map_err(|e| format!("SendMessage: {}", DisplayErrorContext(e)))
}

/// Delivers `event` to the targets of every enabled rule of the default bus whose deployed
/// pattern matches it, as EventBridge would.
pub async fn deliver(clients: &Clients, event: &Value) -> Result<()> {
    let text = event.to_string();
    let mut token = None;
    loop {
        let page = clients
            .events
            .list_rules()
            .event_bus_name("default")
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("ListRules: {}", DisplayErrorContext(e)))?;
        for rule in page.rules() {
            let (Some(name), Some(pattern)) = (rule.name(), rule.event_pattern()) else {
                continue;
            };
            if rule.state().map(|s| s.as_str()) != Some("ENABLED") {
                continue;
            }
            let matched = clients
                .events
                .test_event_pattern()
                .event_pattern(pattern)
                .event(&text)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("TestEventPattern: {}", DisplayErrorContext(e)))?
                .result();
            if matched {
                deliver_to_targets(clients, name, rule.arn().unwrap_or_default(), event).await?;
            }
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(());
        }
    }
}

async fn deliver_to_targets(
    clients: &Clients,
    rule: &str,
    rule_arn: &str,
    event: &Value,
) -> Result<()> {
    let targets = clients
        .events
        .list_targets_by_rule()
        .rule(rule)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("ListTargetsByRule {rule}: {}", DisplayErrorContext(e)))?;
    let ingestion_time = event_time(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    );
    let context = Rule {
        arn: rule_arn,
        name: rule,
        ingestion_time: &ingestion_time,
    };
    for target in targets.targets() {
        let arn = target.arn();
        let transformer = target.input_transformer().map(|t| Transformer {
            paths: t.input_paths_map(),
            template: t.input_template(),
        });
        let input = match target_input(
            event,
            target.input(),
            target.input_path(),
            transformer.as_ref().map(|t| (t, &context)),
        ) {
            Ok(input) => input,
            Err(why) => {
                eprintln!("alarm bridge: rule {rule} target {arn} skipped: {why}");
                continue;
            }
        };
        let delivered = if arn.contains(":states:") && arn.contains(":stateMachine:") {
            clients
                .sfn
                .start_execution()
                .state_machine_arn(arn)
                .input(input)
                .send()
                .await
                .map(|out| format!("execution {}", out.execution_arn()))
                .map_err(|e| format!("StartExecution: {}", DisplayErrorContext(e)))
        } else if arn.contains(":lambda:") {
            clients
                .lambda
                .invoke()
                .function_name(arn)
                .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
                .payload(aws_smithy_types::Blob::new(input))
                .send()
                .await
                .map(|_| "asynchronous invocation".to_string())
                .map_err(|e| format!("Invoke: {}", DisplayErrorContext(e)))
        } else if let Some(queue) = sqs_queue_name(arn) {
            send_to_queue(clients, queue, input).await
        } else {
            Err("only Step Functions, Lambda and SQS targets are bridged".to_string())
        };
        match delivered {
            Ok(what) => println!("alarm bridge: rule {rule} -> {what}"),
            Err(why) => eprintln!("alarm bridge: rule {rule} target {arn} not delivered: {why}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_queue_of_an_sqs_arn() {
        assert_eq!(
            sqs_queue_name("arn:aws:sqs:us-east-1:000000000000:events"),
            Some("events")
        );
        assert_eq!(
            sqs_queue_name("arn:aws:lambda:us-east-1:0:function:f"),
            None
        );
    }
}
