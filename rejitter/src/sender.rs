//! The SQS adapter: sends one planned batch with one `SendMessageBatch` call and says which
//! messages were not re-sent.
//!
//! A message counts as re-sent only when SQS lists its entry as successful. Everything else
//! (an entry SQS lists as failed or does not mention, an entry that cannot be built, a call
//! that fails as a whole) is reported, so the handler leaves the message on the queue: at worst
//! it is delivered twice, never lost.

use std::collections::{HashMap, HashSet};

use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError;
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeNameForSends, MessageSystemAttributeValue,
    SendMessageBatchRequestEntry,
};
use aws_smithy_types::Blob;

use crate::attributes::{AttributeValue, OutAttribute};
use crate::plan::Outgoing;

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
            let (message, transient) = describe(&err);
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

/// A readable message for a failed call, and whether it is transient (throttling, a 5xx, a
/// timeout or a network failure), the same split as the controller's.
fn describe(err: &SdkError<SendMessageBatchError, HttpResponse>) -> (String, bool) {
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
            matches!(
                service.err(),
                SendMessageBatchError::RequestThrottled(_) | SendMessageBatchError::KmsThrottled(_)
            ) || matches!(
                service.err().code(),
                Some(
                    "ThrottlingException"
                        | "ServiceUnavailable"
                        | "InternalFailure"
                        | "InternalError"
                )
            ) || service.raw().status().is_server_error()
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
