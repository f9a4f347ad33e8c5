//! Example traffic for the example queue, and reading back what the consumer processed.

use anyhow::{bail, Result};
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use aws_smithy_types::error::display::DisplayErrorContext;
use std::collections::HashSet;

/// Sends `count` messages (ids `{prefix}-{n}`, with String, Number and Binary attributes) in
/// batches of ten; returns the SQS message ids.
pub async fn send(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    prefix: &str,
    count: usize,
) -> Result<Vec<String>> {
    let mut ids = Vec::with_capacity(count);
    let numbers: Vec<usize> = (0..count).collect();
    for chunk in numbers.chunks(10) {
        let mut request = sqs.send_message_batch().queue_url(queue_url);
        for n in chunk {
            let entry = SendMessageBatchRequestEntry::builder()
                .id(format!("e{n}"))
                .message_body(format!(r#"{{"id":"{prefix}-{n}","n":{n}}}"#))
                .message_attributes("source", string_attr("String", "xtask"))
                .message_attributes("sequence", string_attr("Number", &n.to_string()))
                .message_attributes(
                    "checksum",
                    MessageAttributeValue::builder()
                        .data_type("Binary")
                        .binary_value(aws_smithy_types::Blob::new((*n as u32).to_be_bytes()))
                        .build()?,
                )
                .build()?;
            request = request.entries(entry);
        }
        let out = request
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("SendMessageBatch: {}", DisplayErrorContext(e)))?;
        if let Some(failed) = out.failed().first() {
            bail!(
                "SendMessageBatch refused entry {}: {}",
                failed.id(),
                failed.message().unwrap_or("no reason given")
            );
        }
        ids.extend(out.successful().iter().map(|s| s.message_id().to_string()));
    }
    Ok(ids)
}

fn string_attr(data_type: &str, value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(value)
        .build()
        .expect("data type is set")
}

/// The message ids the consumer logged as processed, read from its CloudWatch Logs group.
pub async fn processed_ids(
    logs: &aws_sdk_cloudwatchlogs::Client,
    function_name: &str,
) -> Result<HashSet<String>> {
    Ok(processed_log(logs, function_name)
        .await?
        .into_iter()
        .collect())
}

/// Every "processed" line's message id, repeats included (a repeat is a duplicate delivery).
pub async fn processed_log(
    logs: &aws_sdk_cloudwatchlogs::Client,
    function_name: &str,
) -> Result<Vec<String>> {
    let group = format!("/aws/lambda/{function_name}");
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = match logs
            .filter_log_events()
            .log_group_name(&group)
            .set_next_token(token.clone())
            .send()
            .await
        {
            Ok(out) => out,
            // No invocation yet means no log group yet.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Ok(ids)
            }
            Err(e) => bail!("reading log group {group}: {}", DisplayErrorContext(e)),
        };
        for event in out.events() {
            if let Some(id) = event.message().and_then(processed_message_id) {
                ids.push(id);
            }
        }
        match out.next_token() {
            Some(next) if Some(next) != token.as_deref() && !out.events().is_empty() => {
                token = Some(next.to_string())
            }
            _ => return Ok(ids),
        }
    }
}

/// The `message_id` of a consumer JSON log line whose outcome is `processed`.
pub fn processed_message_id(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    let fields = value.get("fields").unwrap_or(&value);
    let field = |name: &str| {
        fields
            .get(name)
            .or_else(|| value.get(name))
            .and_then(|v| v.as_str())
    };
    (field("outcome")? == "processed").then(|| field("message_id").map(str::to_string))?
}

#[cfg(test)]
mod tests {
    use super::processed_message_id;

    #[test]
    fn reads_processed_ids_from_consumer_log_lines() {
        let nested = r#"{"level":"INFO","fields":{"message":"record","message_id":"m-1","outcome":"processed"}}"#;
        assert_eq!(processed_message_id(nested).as_deref(), Some("m-1"));
        let flat = r#"{"level":"INFO","message_id":"m-2","outcome":"processed"}"#;
        assert_eq!(processed_message_id(flat).as_deref(), Some("m-2"));
    }

    #[test]
    fn ignores_failures_and_other_lines() {
        let failed = r#"{"fields":{"message_id":"m-1","outcome":"failed"}}"#;
        assert_eq!(processed_message_id(failed), None);
        assert_eq!(processed_message_id("START RequestId: abc"), None);
        assert_eq!(
            processed_message_id(r#"{"fields":{"outcome":"processed"}}"#),
            None
        );
    }
}
