//! The fake SQS's answers, as pure functions of the request: the JSON protocol's
//! `GetQueueUrl`, `GetQueueAttributes` and `SendMessageBatch` for one queue, checked against
//! SQS's limits, and the tally of what was asked.

use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};

use super::{
    ACCOUNT, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, MAX_DELAY_SECONDS, PLACEHOLDER_MD5, QUEUE_NAME,
    REFUSE_PREFIX, RETENTION_SECONDS,
};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueUrlInput {
    queue_name: String,
    #[serde(rename = "QueueOwnerAWSAccountId")]
    queue_owner: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueAttributesInput {
    queue_url: String,
    #[serde(default)]
    attribute_names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageBatchInput {
    queue_url: String,
    entries: Vec<EntryInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EntryInput {
    id: String,
    message_body: String,
    delay_seconds: Option<i64>,
    #[serde(default)]
    message_attributes: BTreeMap<String, AttributeInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AttributeInput {
    data_type: String,
    string_value: Option<String>,
    /// Base64.
    binary_value: Option<String>,
}

impl EntryInput {
    /// Bytes SQS counts: body, and each attribute's name, data type and value.
    fn bytes(&self) -> usize {
        self.message_body.len()
            + self
                .message_attributes
                .iter()
                .map(|(name, a)| {
                    let value = match (&a.string_value, &a.binary_value) {
                        (Some(s), _) => s.len(),
                        (None, Some(b)) => base64_decoded_len(b),
                        (None, None) => 0,
                    };
                    name.len() + a.data_type.len() + value
                })
                .sum::<usize>()
    }
}

/// Decoded length of padded base64, without decoding.
pub fn base64_decoded_len(text: &str) -> usize {
    let padding = text.bytes().rev().take_while(|&b| b == b'=').count();
    (text.len() / 4 * 3).saturating_sub(padding)
}

/// The one queue the fake SQS serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeQueue {
    pub url: String,
    /// Its `MaximumMessageSize`: a larger entry is refused.
    pub max_message_bytes: usize,
}

/// What one request to the fake SQS was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqsCall {
    GetQueueUrl,
    GetQueueAttributes,
    SendMessageBatch {
        entry_bytes: Vec<usize>,
        accepted: usize,
        refused: usize,
        /// The entries accepted, in order.
        sent: Vec<SentEntry>,
    },
    /// Refused as a whole, as SQS would: `operation: code`.
    Refused(String),
}

/// An entry the fake SQS accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEntry {
    /// The body's first [`SENT_HEAD_CHARS`] characters ([`sent_head`]): enough to tell the
    /// benchmark's records apart.
    pub head: String,
    pub delay: i64,
    /// The rejitter's marker attribute, if the entry carries one with a string value.
    pub marker: Option<String>,
}

/// How much of a body a [`SentEntry`] keeps.
pub const SENT_HEAD_CHARS: usize = 40;

/// The head of `body` a [`SentEntry`] keeps.
pub fn sent_head(body: &str) -> String {
    body.chars().take(SENT_HEAD_CHARS).collect()
}

/// The fake's answer to one request.
#[derive(Debug)]
pub struct SqsReply {
    pub status: u16,
    pub body: String,
    /// `x-amzn-query-error` of an error: the SDK, query-compatible, matches errors on it.
    pub query_error: Option<String>,
    pub call: SqsCall,
}

/// Answers one SQS JSON-protocol request (`target` is the `X-Amz-Target` header) for the one
/// `queue`. `SendMessageBatch` is checked against SQS's limits (a violation refuses the call as
/// SQS does); an entry is refused
/// when its body starts with [`REFUSE_PREFIX`], it is over the queue's `MaximumMessageSize` or
/// its delay is out of range. `next_id` numbers the message ids.
pub fn sqs_reply(
    target: Option<&str>,
    body: &[u8],
    queue: &FakeQueue,
    next_id: &mut u64,
) -> SqsReply {
    let queue_url = queue.url.as_str();
    match target {
        Some("AmazonSQS.GetQueueUrl") => match serde_json::from_slice::<GetQueueUrlInput>(body) {
            Ok(input)
                if input.queue_name == QUEUE_NAME
                    && input.queue_owner.as_deref().is_none_or(|a| a == ACCOUNT) =>
            {
                SqsReply {
                    status: 200,
                    body: json!({ "QueueUrl": queue_url }).to_string(),
                    query_error: None,
                    call: SqsCall::GetQueueUrl,
                }
            }
            Ok(_) => sqs_error(
                "GetQueueUrl",
                "QueueDoesNotExist",
                "The specified queue does not exist.",
            ),
            Err(e) => sqs_error("GetQueueUrl", "InvalidParameterValue", &e.to_string()),
        },
        Some("AmazonSQS.GetQueueAttributes") => {
            match serde_json::from_slice::<GetQueueAttributesInput>(body) {
                Ok(input) => get_queue_attributes(input, queue),
                Err(e) => sqs_error(
                    "GetQueueAttributes",
                    "InvalidParameterValue",
                    &e.to_string(),
                ),
            }
        }
        Some("AmazonSQS.SendMessageBatch") => {
            match serde_json::from_slice::<SendMessageBatchInput>(body) {
                Ok(input) => send_message_batch(input, queue, next_id),
                Err(e) => sqs_error("SendMessageBatch", "InvalidParameterValue", &e.to_string()),
            }
        }
        other => sqs_error(
            other.unwrap_or("(no X-Amz-Target)"),
            "UnknownOperationException",
            "The fake SQS answers GetQueueUrl, GetQueueAttributes and SendMessageBatch only.",
        ),
    }
}

/// The queue's `MaximumMessageSize` and `MessageRetentionPeriod`, the only attributes the fake
/// knows: those asked for (`All`: both), as strings like SQS's.
fn get_queue_attributes(input: GetQueueAttributesInput, queue: &FakeQueue) -> SqsReply {
    if input.queue_url != queue.url {
        return sqs_error(
            "GetQueueAttributes",
            "QueueDoesNotExist",
            "The specified queue does not exist.",
        );
    }
    let known = [
        ("MaximumMessageSize", queue.max_message_bytes.to_string()),
        ("MessageRetentionPeriod", RETENTION_SECONDS.to_string()),
    ];
    let mut attributes = serde_json::Map::new();
    for name in &input.attribute_names {
        if name == "All" {
            for (known, value) in &known {
                attributes.insert((*known).to_owned(), json!(value));
            }
        } else if let Some((known, value)) = known.iter().find(|(k, _)| k == name) {
            attributes.insert((*known).to_owned(), json!(value));
        } else {
            return sqs_error(
                "GetQueueAttributes",
                "InvalidAttributeName",
                &format!("Unknown Attribute {name}."),
            );
        }
    }
    let body = if attributes.is_empty() {
        json!({})
    } else {
        json!({ "Attributes": attributes })
    };
    SqsReply {
        status: 200,
        body: body.to_string(),
        query_error: None,
        call: SqsCall::GetQueueAttributes,
    }
}

/// Why SQS would refuse a batch call with these entry ids as a whole: none, more than
/// [`MAX_BATCH_ENTRIES`], or two alike.
fn batch_shape_error<'a>(
    ids: impl ExactSizeIterator<Item = &'a str>,
) -> Option<(&'static str, &'static str)> {
    let count = ids.len();
    let distinct = ids.collect::<HashSet<_>>().len();
    if count == 0 {
        Some((
            "EmptyBatchRequest",
            "The batch request doesn't contain any entries.",
        ))
    } else if count > MAX_BATCH_ENTRIES {
        Some((
            "TooManyEntriesInBatchRequest",
            "The batch request contains more entries than permissible.",
        ))
    } else if distinct != count {
        Some((
            "BatchEntryIdsNotDistinct",
            "Two or more batch entries in the request have the same Id.",
        ))
    } else {
        None
    }
}

fn send_message_batch(
    input: SendMessageBatchInput,
    queue: &FakeQueue,
    next_id: &mut u64,
) -> SqsReply {
    let refuse = |code, message: &str| sqs_error("SendMessageBatch", code, message);
    if input.queue_url != queue.url {
        return refuse("QueueDoesNotExist", "The specified queue does not exist.");
    }
    if let Some((code, message)) = batch_shape_error(input.entries.iter().map(|e| e.id.as_str())) {
        return refuse(code, message);
    }
    let entry_bytes: Vec<usize> = input.entries.iter().map(EntryInput::bytes).collect();
    if entry_bytes.iter().sum::<usize>() > MAX_BATCH_BYTES {
        return refuse(
            "BatchRequestTooLong",
            "The length of all the messages put together is more than the limit.",
        );
    }
    let (mut successful, mut failed, mut sent) = (Vec::new(), Vec::new(), Vec::new());
    for (entry, &bytes) in input.entries.iter().zip(&entry_bytes) {
        let delay = entry.delay_seconds.unwrap_or_default();
        let too_long = format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {} bytes.",
            queue.max_message_bytes
        );
        let problem = if entry.message_body.starts_with(REFUSE_PREFIX) {
            Some("refused on purpose by the benchmark")
        } else if bytes > queue.max_message_bytes {
            Some(too_long.as_str())
        } else if !(0..=MAX_DELAY_SECONDS).contains(&delay) {
            Some("DelaySeconds must be between 0 and 900")
        } else {
            None
        };
        match problem {
            Some(message) => failed.push(json!({
                "Id": entry.id,
                "SenderFault": true,
                "Code": "InvalidParameterValue",
                "Message": message
            })),
            None => {
                *next_id += 1;
                sent.push(SentEntry {
                    head: sent_head(&entry.message_body),
                    delay,
                    marker: entry
                        .message_attributes
                        .get(rejitter::MARKER)
                        .and_then(|a| a.string_value.clone()),
                });
                successful.push(json!({
                    "Id": entry.id,
                    "MessageId": format!("5fea7756-0ea4-451a-a703-{:012x}", *next_id),
                    "MD5OfMessageBody": PLACEHOLDER_MD5
                }));
            }
        }
    }
    let (accepted, refused) = (successful.len(), failed.len());
    SqsReply {
        status: 200,
        body: json!({ "Successful": successful, "Failed": failed }).to_string(),
        query_error: None,
        call: SqsCall::SendMessageBatch {
            entry_bytes,
            accepted,
            refused,
            sent,
        },
    }
}

fn sqs_error(operation: &str, code: &str, message: &str) -> SqsReply {
    let query_code = match code {
        "QueueDoesNotExist" => Some("AWS.SimpleQueueService.NonExistentQueue".to_owned()),
        "InvalidParameterValue" | "UnknownOperationException" => None,
        _ => Some(format!("AWS.SimpleQueueService.{code}")),
    };
    SqsReply {
        status: 400,
        body: json!({ "__type": format!("com.amazonaws.sqs#{code}"), "message": message })
            .to_string(),
        query_error: query_code.map(|c| format!("{c};Sender")),
        call: SqsCall::Refused(format!("{operation}: {code}")),
    }
}

/// Everything the fake SQS answered.
#[derive(Debug, Default, Clone)]
pub struct SqsTally {
    pub get_queue_url: usize,
    pub get_queue_attributes: usize,
    /// `SendMessageBatch` calls answered 200.
    pub calls: usize,
    /// The size of every entry received, in arrival order.
    pub entry_bytes: Vec<usize>,
    pub largest_call_bytes: usize,
    pub accepted: usize,
    pub refused_entries: usize,
    pub refused_calls: Vec<String>,
    pub delays: Vec<i64>,
    /// Every entry accepted, in arrival order.
    pub sent: Vec<SentEntry>,
}

impl SqsTally {
    pub fn record(&mut self, call: SqsCall) {
        match call {
            SqsCall::GetQueueUrl => self.get_queue_url += 1,
            SqsCall::GetQueueAttributes => self.get_queue_attributes += 1,
            SqsCall::SendMessageBatch {
                entry_bytes,
                accepted,
                refused,
                sent,
            } => {
                self.calls += 1;
                self.largest_call_bytes = self
                    .largest_call_bytes
                    .max(entry_bytes.iter().sum::<usize>());
                self.entry_bytes.extend(entry_bytes);
                self.accepted += accepted;
                self.refused_entries += refused;
                self.delays.extend(sent.iter().map(|e| e.delay));
                self.sent.extend(sent);
            }
            SqsCall::Refused(what) => self.refused_calls.push(what),
        }
    }
}

#[cfg(test)]
mod tests;
