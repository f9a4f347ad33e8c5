//! The consumer's queue: its settings, its depth, and the one message a probe borrows.

use crate::core::backlog::Sample;
use crate::error::StepError;
use aws_lambda_events::encodings::Base64Data;
use aws_lambda_events::event::sqs::{SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use serde::Serialize;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    pub url: String,
    pub retention_seconds: u32,
    /// The redrive policy's `maxReceiveCount`, when the queue has one.
    pub max_receive_count: Option<u32>,
}

/// Approximate message counts of a queue, as SQS reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
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

/// The URL of the queue `name` in `account`.
pub async fn url(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    account: &str,
) -> Result<String, StepError> {
    Ok(sqs
        .get_queue_url()
        .queue_name(name)
        .queue_owner_aws_account_id(account)
        .send()
        .await
        .map_err(|e| StepError::aws("GetQueueUrl", e))?
        .queue_url()
        .unwrap_or_default()
        .to_string())
}

/// The queue's depth now (a count SQS leaves out reads 0), and its dead-letter queue's ARN
/// when it has a redrive policy.
pub async fn depth(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
) -> Result<(Depth, Option<String>), StepError> {
    use QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .attribute_names(A::RedrivePolicy)
        .send()
        .await
        .map_err(|e| StepError::aws("GetQueueAttributes", e))?;
    let attributes = out.attributes();
    let number = |name: A| {
        attributes
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let dead_letter_arn = attributes
        .and_then(|a| a.get(&A::RedrivePolicy))
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .and_then(|p| p["deadLetterTargetArn"].as_str().map(str::to_string));
    Ok((
        Depth {
            visible: number(A::ApproximateNumberOfMessages),
            in_flight: number(A::ApproximateNumberOfMessagesNotVisible),
            delayed: number(A::ApproximateNumberOfMessagesDelayed),
        },
        dead_letter_arn,
    ))
}

pub async fn describe(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    account: &str,
) -> Result<QueueInfo, StepError> {
    let url = url(sqs, name, account).await?;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::MessageRetentionPeriod)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(|e| StepError::aws("GetQueueAttributes", e))?;
    let retention_seconds = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::MessageRetentionPeriod))
        .and_then(|v| v.parse().ok())
        // SQS's default retention, should the attribute be missing.
        .unwrap_or(345_600);
    let max_receive_count = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
        .and_then(|policy| crate::core::receives::max_receive_count(policy));
    Ok(QueueInfo {
        url,
        retention_seconds,
        max_receive_count,
    })
}

/// The queue's approximate counts now, in one call: visible, in flight, delayed.
pub async fn backlog(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    now_ms: u64,
) -> Result<Sample, StepError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .map_err(|e| StepError::aws("GetQueueAttributes", e))?;
    let count = |name: QueueAttributeName| {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StepError::Fatal(format!("{url} reported no {}", name.as_str())))
    };
    Ok(Sample {
        at_ms: now_ms,
        visible: count(QueueAttributeName::ApproximateNumberOfMessages)?,
        in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
        delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed)?,
    })
}

/// Messages in flight or delayed: not visible now, but still in the queue.
pub async fn hidden_messages(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64, StepError> {
    let names = [
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        QueueAttributeName::ApproximateNumberOfMessagesDelayed,
    ];
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .set_attribute_names(Some(names.to_vec()))
        .send()
        .await
        .map_err(|e| StepError::aws("GetQueueAttributes", e))?;
    Ok(names
        .iter()
        .filter_map(|name| out.attributes().and_then(|a| a.get(name)))
        .filter_map(|v| v.parse::<u64>().ok())
        .sum())
}

/// Receives at most one message with all its attributes, hidden for `visibility_seconds`.
pub async fn receive_one(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    visibility_seconds: u32,
) -> Result<Option<Message>, StepError> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(1)
        .visibility_timeout(visibility_seconds as i32)
        // Long polling: a short poll may miss messages on a sparse queue.
        .wait_time_seconds(2)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .map_err(|e| StepError::aws("ReceiveMessage", e))?;
    Ok(out.messages.and_then(|mut m| m.pop()))
}

pub async fn delete(sqs: &aws_sdk_sqs::Client, url: &str, receipt: &str) -> Result<(), StepError> {
    sqs.delete_message()
        .queue_url(url)
        .receipt_handle(receipt)
        .send()
        .await
        .map_err(|e| StepError::aws("DeleteMessage", e))?;
    Ok(())
}

/// Sends a fresh copy of `message` (body, message attributes and trace header as they are;
/// receive count 0); returns the copy's message id. The caller deletes the original after.
pub async fn send_copy(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    message: &Message,
) -> Result<String, StepError> {
    use aws_sdk_sqs::types::{MessageSystemAttributeNameForSends, MessageSystemAttributeValue};
    let trace = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::AwsTraceHeader));
    let mut send = sqs
        .send_message()
        .queue_url(url)
        .message_body(message.body().unwrap_or_default())
        .set_message_attributes(message.message_attributes().cloned());
    if let Some(trace) = trace {
        send = send.message_system_attributes(
            MessageSystemAttributeNameForSends::AwsTraceHeader,
            MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(trace)
                .build()
                .map_err(|e| StepError::Fatal(format!("building the trace header: {e}")))?,
        );
    }
    let out = send
        .send()
        .await
        .map_err(|e| StepError::aws("SendMessage", e))?;
    Ok(out.message_id().unwrap_or_default().to_string())
}

/// Makes a message visible again at once; its receive count has already grown, so the
/// queue's redrive policy still applies to it.
pub async fn release(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    receipt: &str,
    hide_seconds: u32,
) -> Result<(), StepError> {
    sqs.change_message_visibility()
        .queue_url(url)
        .receipt_handle(receipt)
        .visibility_timeout(hide_seconds.min(crate::core::MAX_VISIBILITY_SECONDS) as i32)
        .send()
        .await
        .map_err(|e| StepError::aws("ChangeMessageVisibility", e))?;
    Ok(())
}

fn base64(bytes: &[u8]) -> Base64Data {
    // Base64Data is non-exhaustive: build it through Default.
    let mut data = Base64Data::default();
    data.extend_from_slice(bytes);
    data
}

/// The SQS record Lambda's event source mapping would build for `message`.
pub fn to_record(message: &Message, queue_arn: &str, region: &str) -> SqsMessage {
    let attributes = message
        .attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let message_attributes: HashMap<String, SqsMessageAttribute> = message
        .message_attributes()
        .map(|a| {
            a.iter()
                .map(|(name, value)| {
                    let mut attribute = SqsMessageAttribute::default();
                    attribute.string_value = value.string_value().map(str::to_string);
                    attribute.binary_value = value.binary_value().map(|b| base64(b.as_ref()));
                    attribute.string_list_values = value.string_list_values().to_vec();
                    attribute.binary_list_values = value
                        .binary_list_values()
                        .iter()
                        .map(|b| base64(b.as_ref()))
                        .collect();
                    attribute.data_type = Some(value.data_type().to_string());
                    (name.clone(), attribute)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut record = SqsMessage::default();
    record.message_id = message.message_id().map(str::to_string);
    record.receipt_handle = message.receipt_handle().map(str::to_string);
    record.body = message.body().map(str::to_string);
    record.md5_of_body = message.md5_of_body().map(str::to_string);
    record.md5_of_message_attributes = message.md5_of_message_attributes().map(str::to_string);
    record.attributes = attributes;
    record.message_attributes = message_attributes;
    record.event_source_arn = Some(queue_arn.to_string());
    record.event_source = Some("aws:sqs".to_string());
    record.aws_region = Some(region.to_string());
    record
}

/// The age of the queue's oldest message as CloudWatch last saw it (AWS/SQS
/// ApproximateAgeOfOldestMessage, the last five minutes), if it has a datapoint.
pub async fn oldest_message_age_seconds(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    queue_name: &str,
    now: std::time::SystemTime,
) -> Result<Option<u32>, StepError> {
    let datapoints = super::consumer::metric_statistics(
        cloudwatch,
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
        ("QueueName", queue_name),
        (now - std::time::Duration::from_secs(300)).into(),
        now.into(),
        aws_sdk_cloudwatch::types::Statistic::Maximum,
    )
    .await?;
    Ok(datapoints
        .iter()
        .filter_map(|d| d.maximum())
        .fold(None, |max: Option<f64>, v| {
            Some(max.map_or(v, |m| m.max(v)))
        })
        .map(|v| v.max(0.0) as u32))
}

/// The queue's `AWS/SQS` counts from the start of the minute holding `from_ms` until now:
/// messages received and deleted (Sum), and the messages in flight in the latest minute with
/// data (Maximum of `ApproximateNumberOfMessagesNotVisible`).
pub async fn counts_since(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    queue_name: &str,
    from_ms: u64,
    now_ms: u64,
) -> Result<crate::core::signal::QueueCounts, StepError> {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::Statistic;
    let minute = 60_000;
    let start = DateTime::from_millis((from_ms / minute * minute) as i64);
    // The end is exclusive: reach past the current minute.
    let end = DateTime::from_millis(((now_ms / minute + 1) * minute) as i64);
    let metric = |name, statistic| {
        super::consumer::metric_statistics(
            cloudwatch,
            ("AWS/SQS", name),
            ("QueueName", queue_name),
            start,
            end,
            statistic,
        )
    };
    let sum = |points: Vec<aws_sdk_cloudwatch::types::Datapoint>| {
        points
            .iter()
            .filter_map(|d| d.sum())
            .sum::<f64>()
            .max(0.0)
            .round() as u64
    };
    let received = sum(metric("NumberOfMessagesReceived", Statistic::Sum).await?);
    let deleted = sum(metric("NumberOfMessagesDeleted", Statistic::Sum).await?);
    let in_flight = metric("ApproximateNumberOfMessagesNotVisible", Statistic::Maximum)
        .await?
        .iter()
        .filter_map(|d| Some((d.timestamp()?.to_millis().ok()?, d.maximum()?)))
        .max_by_key(|(at, _)| *at)
        .map_or(0, |(_, v)| v.max(0.0).round() as u64);
    Ok(crate::core::signal::QueueCounts {
        received,
        deleted,
        in_flight,
    })
}
