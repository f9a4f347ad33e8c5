//! Reading back what the example consumer processed: its JSON log lines, each processed record
//! with its message id, content fingerprint and the SQS attributes it logs.

use crate::logs::{Logs, LogsError};
use anyhow::{bail, Result};
use std::collections::HashSet;

/// One record the consumer logged as processed, with the SQS attributes it logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    pub message_id: String,
    pub fingerprint: String,
    /// `ApproximateReceiveCount` as the record carried it.
    pub receive_count: Option<u32>,
    pub message_group_id: Option<String>,
    pub sequence_number: Option<String>,
    pub deduplication_id: Option<String>,
}

/// Every record the consumer logged as processed, in log order (timestamp, then ingestion),
/// repeats included.
pub async fn processed_records(logs: &Logs, function_name: &str) -> Result<Vec<Processed>> {
    Ok(processed_lines(logs, function_name)
        .await?
        .iter()
        .filter_map(|line| processed_record(line))
        .collect())
}

/// The record of a consumer JSON log line whose outcome is `processed`.
pub fn processed_record(line: &str) -> Option<Processed> {
    let field = |name: &str| processed_field(line, name);
    Some(Processed {
        message_id: field("message_id")?,
        fingerprint: field("fingerprint")?,
        receive_count: field("receive_count").and_then(|n| n.parse().ok()),
        message_group_id: field("message_group_id"),
        sequence_number: field("sequence_number"),
        deduplication_id: field("deduplication_id"),
    })
}

/// The message ids the consumer logged as processed, read from its CloudWatch Logs group.
pub async fn processed_ids(logs: &Logs, function_name: &str) -> Result<HashSet<String>> {
    Ok(processed_log(logs, function_name)
        .await?
        .into_iter()
        .collect())
}

/// Every "processed" line's message id, repeats included (a repeat is a duplicate delivery).
pub async fn processed_log(logs: &Logs, function_name: &str) -> Result<Vec<String>> {
    Ok(processed_lines(logs, function_name)
        .await?
        .iter()
        .filter_map(|line| processed_message_id(line))
        .collect())
}

/// Every "processed" line's fingerprint, repeats included, so a test can compare them with
/// what was sent as multisets: each message processed exactly once, body and attributes intact.
pub async fn processed_fingerprints(logs: &Logs, function_name: &str) -> Result<Vec<String>> {
    Ok(processed_lines(logs, function_name)
        .await?
        .iter()
        .filter_map(|line| processed_field(line, "fingerprint"))
        .collect())
}

/// The consumer's log lines that mention `processed`, oldest first.
async fn processed_lines(logs: &Logs, function_name: &str) -> Result<Vec<String>> {
    let group = format!("/aws/lambda/{function_name}");
    match logs.messages(&group, "processed").await {
        Ok(lines) => Ok(lines),
        // No invocation yet means no log group yet.
        Err(LogsError::GroupNotFound(_)) => Ok(Vec::new()),
        Err(e) => bail!("reading log group {group}: {e}"),
    }
}

/// The `message_id` of a consumer JSON log line whose outcome is `processed`.
pub fn processed_message_id(line: &str) -> Option<String> {
    processed_field(line, "message_id")
}

/// Field `name` of a consumer JSON log line whose outcome is `processed`.
pub fn processed_field(line: &str, name: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    let fields = value.get("fields").unwrap_or(&value);
    let field = |name: &str| {
        fields
            .get(name)
            .or_else(|| value.get(name))
            .and_then(|v| v.as_str())
    };
    (field("outcome")? == "processed").then(|| field(name).map(str::to_string))?
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn reads_fingerprints_of_processed_lines_only() {
        // The consumer's line shape (pinned by example-consumer's handler tests).
        let processed = r#"{"level":"INFO","message":"record processed","message_id":"m-1","outcome":"processed","fingerprint":"ab12","batch_size":3}"#;
        assert_eq!(
            processed_field(processed, "fingerprint").as_deref(),
            Some("ab12")
        );
        let failed =
            r#"{"level":"WARN","message_id":"m-1","outcome":"failed","fingerprint":"ab12"}"#;
        assert_eq!(processed_field(failed, "fingerprint"), None);
    }

    #[test]
    fn reads_receive_count_and_fifo_fields_of_processed_records() {
        let fifo = r#"{"level":"INFO","message_id":"m-1","outcome":"processed","fingerprint":"ab12","receive_count":"2","message_group_id":"g1","sequence_number":"18849496460467696128","deduplication_id":"g1-0","batch_size":1}"#;
        assert_eq!(
            processed_record(fifo),
            Some(Processed {
                message_id: "m-1".into(),
                fingerprint: "ab12".into(),
                receive_count: Some(2),
                message_group_id: Some("g1".into()),
                sequence_number: Some("18849496460467696128".into()),
                deduplication_id: Some("g1-0".into()),
            })
        );
        let standard = r#"{"message_id":"m-2","outcome":"processed","fingerprint":"cd34","receive_count":"1"}"#;
        let record = processed_record(standard).expect("a processed record");
        assert_eq!(
            (record.receive_count, record.message_group_id),
            (Some(1), None)
        );
        let failed = r#"{"message_id":"m-3","outcome":"failed","fingerprint":"ef56"}"#;
        assert_eq!(processed_record(failed), None);
    }
}
