//! The SQS adapter: looks the queue up once, then sends each planned batch with one
//! `SendMessageBatch` call and says which messages were not re-sent.
//!
//! The configuration names the queue by its ARN; [`Queue`] turns that into the URL the SQS API
//! needs with one `GetQueueUrl` call, and reads the queue's `MaximumMessageSize` with one
//! `GetQueueAttributes` call, the first time an invocation needs the queue, and keeps them for
//! the life of the process ([`QueueInfo`]). Nothing is looked up at init, so the cold start
//! makes no network call.
//!
//! A message counts as re-sent only when SQS lists its entry as successful. Everything else
//! (an entry SQS lists as failed or does not mention, an entry that cannot be built, a call
//! that fails as a whole) is reported, so the handler leaves the message on the queue: at worst
//! it is delivered twice, never lost.

use std::collections::{HashMap, HashSet};

use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesError;
use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlError;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError;
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeNameForSends, MessageSystemAttributeValue,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use aws_smithy_types::Blob;
use tokio::sync::OnceCell;

use crate::attributes::{AttributeValue, OutAttribute};
use crate::config::Config;
use crate::plan::Outgoing;
use crate::size::message_limit;
use controller::core::QueueArn;

/// What the rejitter needs to know about its queue, looked up once per process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// The URL `GetQueueUrl` answered.
    pub url: String,
    /// The largest message the queue accepts: its `MaximumMessageSize`, within what SQS allows
    /// ([`message_limit`]; SQS's 1 MiB if the attribute is missing or not a number).
    pub max_message_bytes: usize,
}

/// The SQS client and the queue the rejitter re-sends to, named by its ARN.
///
/// Build it once per process and share it across invocations: the queue is looked up the first
/// time [`Queue::info`] is awaited, with one `GetQueueUrl` call (`QueueName` and
/// `QueueOwnerAWSAccountId` from the ARN) then one `GetQueueAttributes` call, and kept. A failed
/// lookup is not kept; the next call tries both again.
#[derive(Debug)]
pub struct Queue {
    client: aws_sdk_sqs::Client,
    arn: String,
    name: String,
    account: String,
    info: OnceCell<QueueInfo>,
}

impl Queue {
    /// The queue of `config` (`QUEUE_ARN`), reached through `client`. Makes no call.
    pub fn new(client: aws_sdk_sqs::Client, config: &Config) -> Queue {
        Queue {
            client,
            arn: config.queue_arn.clone(),
            name: config.queue_name().to_owned(),
            account: config.queue_account().to_owned(),
            info: OnceCell::new(),
        }
    }

    /// The queue named by `arn` (already parsed), reached through `client`. Makes no call.
    pub fn at(client: aws_sdk_sqs::Client, arn: &str, parts: &QueueArn) -> Queue {
        Queue {
            client,
            arn: arn.to_owned(),
            name: parts.name.clone(),
            account: parts.account.clone(),
            info: OnceCell::new(),
        }
    }

    /// The queue's name (the metrics' `QueueName` dimension).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }

    /// The queue's ARN.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// What was already looked up, if anything.
    pub fn cached(&self) -> Option<&QueueInfo> {
        self.info.get()
    }

    /// The queue's URL if it was already looked up.
    pub fn cached_url(&self) -> Option<&str> {
        self.cached().map(|info| info.url.as_str())
    }

    /// The queue's URL and attributes: the cached ones, or the result of one `GetQueueUrl` and
    /// one `GetQueueAttributes` call, cached on success. A failure is logged here, classified as
    /// transient or not.
    pub async fn info(&self) -> Result<&QueueInfo, QueueLookupError> {
        self.info
            // Boxed: the SDK calls' future is deep, and inlining it in every invocation's
            // future overflows the compiler's layout depth limit in main.
            .get_or_try_init(|| Box::pin(self.lookup()))
            .await
    }

    /// The queue's URL (see [`Queue::info`]).
    pub async fn url(&self) -> Result<&str, QueueLookupError> {
        Ok(self.info().await?.url.as_str())
    }

    /// One `GetQueueUrl` call and one `GetQueueAttributes` call, logged.
    async fn lookup(&self) -> Result<QueueInfo, QueueLookupError> {
        let logged = |e: &QueueLookupError| {
            tracing::error!(
                operation = e.operation,
                queue_arn = %self.arn,
                transient = e.transient,
                error = %e.message,
                "{} call failed; nothing is sent",
                e.operation
            )
        };
        let url = self.get_queue_url().await.inspect_err(logged)?;
        let info = self.get_queue_attributes(url).await.inspect_err(logged)?;
        tracing::info!(
            queue_arn = %self.arn,
            queue_url = %info.url,
            max_message_bytes = info.max_message_bytes,
            "queue URL resolved"
        );
        Ok(info)
    }

    fn failed(
        &self,
        operation: &'static str,
        message: String,
        transient: bool,
    ) -> QueueLookupError {
        QueueLookupError {
            operation,
            queue_arn: self.arn.clone(),
            message,
            transient,
        }
    }

    async fn get_queue_url(&self) -> Result<String, QueueLookupError> {
        let output = self
            .client
            .get_queue_url()
            .queue_name(&self.name)
            .queue_owner_aws_account_id(&self.account)
            .send()
            .await
            .map_err(|err| {
                let (message, transient) =
                    describe(&err, |e| matches!(e, GetQueueUrlError::RequestThrottled(_)));
                self.failed(GET_QUEUE_URL, message, transient)
            })?;
        match output.queue_url() {
            Some(url) if !url.trim().is_empty() => Ok(url.to_owned()),
            _ => Err(self.failed(
                GET_QUEUE_URL,
                "the GetQueueUrl response has no QueueUrl".to_owned(),
                false,
            )),
        }
    }

    async fn get_queue_attributes(&self, url: String) -> Result<QueueInfo, QueueLookupError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::MaximumMessageSize)
            .send()
            .await
            .map_err(|err| {
                let (message, transient) = describe(&err, |e| {
                    matches!(e, GetQueueAttributesError::RequestThrottled(_))
                });
                self.failed(GET_QUEUE_ATTRIBUTES, message, transient)
            })?;
        let maximum = output
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::MaximumMessageSize))
            .map(String::as_str);
        if maximum
            .and_then(|m| m.trim().parse::<usize>().ok())
            .is_none()
        {
            tracing::warn!(
                queue_arn = %self.arn,
                maximum_message_size = maximum,
                "GetQueueAttributes gave no readable MaximumMessageSize: planning against 1 MiB"
            );
        }
        Ok(QueueInfo {
            url,
            max_message_bytes: message_limit(maximum),
        })
    }
}

const GET_QUEUE_URL: &str = "GetQueueUrl";
const GET_QUEUE_ATTRIBUTES: &str = "GetQueueAttributes";

/// Why the queue could not be looked up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} failed for {queue_arn}: {message}")]
pub struct QueueLookupError {
    /// `GetQueueUrl` or `GetQueueAttributes`.
    pub operation: &'static str,
    pub queue_arn: String,
    /// The SQS error code and message, or the SDK's description of the failure.
    pub message: String,
    /// Throttling, a 5xx, a timeout or a network failure.
    pub transient: bool,
}

impl QueueLookupError {
    /// Whether the failed call was `GetQueueUrl` (else `GetQueueAttributes`).
    pub fn is_url(&self) -> bool {
        self.operation == GET_QUEUE_URL
    }
}

/// A message that was not re-sent, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    /// The received record's id, for `batchItemFailures`.
    pub message_id: String,
    pub reason: String,
}

/// Sends `batch` to `queue_url` with one `SendMessageBatch` call; returns the messages that
/// were not re-sent, in batch order. A call that fails as a whole fails every entry (and is
/// logged once here, classified as transient or not).
pub async fn send_batch(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    batch: &[Outgoing],
) -> Vec<SendFailure> {
    let mut failures = Vec::new();
    let mut entries = Vec::with_capacity(batch.len());
    let mut sent = Vec::with_capacity(batch.len());
    for outgoing in batch {
        match entry(outgoing) {
            Ok(e) => {
                entries.push(e);
                sent.push(outgoing);
            }
            Err(e) => failures.push(SendFailure {
                message_id: outgoing.message_id.clone(),
                reason: format!("cannot build the SendMessageBatch entry: {e}"),
            }),
        }
    }
    if entries.is_empty() {
        return failures;
    }

    let output = match sqs
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
    {
        Ok(output) => output,
        Err(err) => {
            let (message, transient) = describe(&err, |e| {
                matches!(
                    e,
                    SendMessageBatchError::RequestThrottled(_)
                        | SendMessageBatchError::KmsThrottled(_)
                )
            });
            tracing::error!(
                operation = "SendMessageBatch",
                entries = sent.len(),
                transient,
                error = %message,
                "SendMessageBatch call failed; its messages stay on the queue"
            );
            failures.extend(sent.into_iter().map(|o| SendFailure {
                message_id: o.message_id.clone(),
                reason: format!("SendMessageBatch failed: {message}"),
            }));
            return failures;
        }
    };

    let successful: HashSet<&str> = output.successful().iter().map(|e| e.id()).collect();
    let failed: HashMap<&str, String> = output
        .failed()
        .iter()
        .map(|e| {
            let reason = format!(
                "SQS refused the entry: {}: {} (sender fault: {})",
                e.code(),
                e.message().unwrap_or("no message"),
                e.sender_fault()
            );
            (e.id(), reason)
        })
        .collect();
    for outgoing in sent {
        let id = outgoing.entry_id.as_str();
        let reason = match failed.get(id) {
            Some(reason) => reason.clone(),
            None if successful.contains(id) => continue,
            None => "the SendMessageBatch response does not list the entry".to_owned(),
        };
        failures.push(SendFailure {
            message_id: outgoing.message_id.clone(),
            reason,
        });
    }
    failures
}

/// The `SendMessageBatch` entry for `outgoing`: body as is, its delay, every attribute with its
/// data type unchanged, and `AWSTraceHeader` as a message system attribute.
pub fn entry(outgoing: &Outgoing) -> Result<SendMessageBatchRequestEntry, BuildError> {
    let mut builder = SendMessageBatchRequestEntry::builder()
        .id(&outgoing.entry_id)
        .message_body(&outgoing.body)
        // A planned delay is at most 900; should one not fit, SQS refuses the entry.
        .delay_seconds(i32::try_from(outgoing.delay_seconds).unwrap_or(i32::MAX));
    for (name, attribute) in &outgoing.attributes {
        builder = builder.message_attributes(name, message_attribute(attribute)?);
    }
    if let Some(header) = &outgoing.trace_header {
        builder = builder.message_system_attributes(
            MessageSystemAttributeNameForSends::AwsTraceHeader,
            MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(header)
                .build()?,
        );
    }
    builder.build()
}

/// String and Number types carry a `StringValue`, Binary types a `BinaryValue`; the data type,
/// custom suffix included, is kept as is.
pub fn message_attribute(attribute: &OutAttribute) -> Result<MessageAttributeValue, BuildError> {
    let builder = MessageAttributeValue::builder().data_type(&attribute.data_type);
    match &attribute.value {
        AttributeValue::String(s) => builder.string_value(s),
        AttributeValue::Binary(b) => builder.binary_value(Blob::new(b.clone())),
    }
    .build()
}

/// A readable message for a failed call, and whether it is transient (throttling as told by
/// `throttled` or by the error code, a 5xx, a timeout or a network failure), the same split as
/// the controller's.
fn describe<E>(err: &SdkError<E, HttpResponse>, throttled: impl Fn(&E) -> bool) -> (String, bool)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = match err.as_service_error() {
        Some(service) if service.code().is_some() => format!(
            "{}: {}",
            service.code().unwrap_or_default(),
            service.message().unwrap_or("no message")
        ),
        _ => aws_smithy_types::error::display::DisplayErrorContext(err).to_string(),
    };
    let transient = match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            throttled(service.err())
                || matches!(
                    service.err().code(),
                    Some(
                        "ThrottlingException"
                            | "ServiceUnavailable"
                            | "InternalFailure"
                            | "InternalError"
                    )
                )
                || service.raw().status().is_server_error()
        }
        _ => false,
    };
    (message, transient)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn outgoing(attributes: BTreeMap<String, OutAttribute>, trace: Option<&str>) -> Outgoing {
        Outgoing {
            message_id: "id-1".to_owned(),
            entry_id: "m4".to_owned(),
            body: " {\"a\": \"ü\"}\n".to_owned(),
            attributes,
            trace_header: trace.map(str::to_owned),
            delay_seconds: 321,
        }
    }

    fn attr(data_type: &str, value: AttributeValue) -> OutAttribute {
        OutAttribute {
            data_type: data_type.to_owned(),
            value,
        }
    }

    #[test]
    fn attributes_keep_their_data_type_and_value() {
        let s = message_attribute(&attr("String.json", AttributeValue::String("x".to_owned())))
            .unwrap();
        assert_eq!(
            (s.data_type(), s.string_value(), s.binary_value()),
            ("String.json", Some("x"), None)
        );
        let n = message_attribute(&attr(
            "Number.float",
            AttributeValue::String("1.5".to_owned()),
        ))
        .unwrap();
        assert_eq!(
            (n.data_type(), n.string_value()),
            ("Number.float", Some("1.5"))
        );
        let b =
            message_attribute(&attr("Binary.gif", AttributeValue::Binary(vec![0, 255]))).unwrap();
        assert_eq!(b.data_type(), "Binary.gif");
        assert_eq!(b.binary_value().map(Blob::as_ref), Some(&[0u8, 255][..]));
        assert_eq!(b.string_value(), None);
    }

    #[test]
    fn an_entry_carries_everything_planned() {
        let attributes = BTreeMap::from([
            (
                "n".to_owned(),
                attr("Number", AttributeValue::String("7".to_owned())),
            ),
            (
                "b".to_owned(),
                attr("Binary", AttributeValue::Binary(vec![1, 2])),
            ),
        ]);
        let e = entry(&outgoing(attributes, Some("Root=1-abc;Sampled=1"))).unwrap();
        assert_eq!(e.id(), "m4");
        assert_eq!(e.message_body(), " {\"a\": \"ü\"}\n");
        assert_eq!(e.delay_seconds(), Some(321));
        let attrs = e.message_attributes().unwrap();
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs["n"].string_value(), Some("7"));
        assert_eq!(
            attrs["b"].binary_value().map(Blob::as_ref),
            Some(&[1u8, 2][..])
        );
        let system = e.message_system_attributes().unwrap();
        let trace = &system[&MessageSystemAttributeNameForSends::AwsTraceHeader];
        assert_eq!(trace.data_type(), "String");
        assert_eq!(trace.string_value(), Some("Root=1-abc;Sampled=1"));
        assert_eq!(e.message_group_id(), None);
        assert_eq!(e.message_deduplication_id(), None);
    }

    #[test]
    fn no_trace_header_no_system_attributes() {
        let e = entry(&outgoing(BTreeMap::new(), None)).unwrap();
        assert!(e.message_system_attributes().is_none());
        assert!(e.message_attributes().is_none());
    }
}
