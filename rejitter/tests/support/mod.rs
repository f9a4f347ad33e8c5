//! Shared fixtures for the handler tests: a test configuration, SQS records in the shape the
//! event source mapping delivers, a `GetQueueUrl` mock rule answering [`QUEUE_URL`] for
//! [`QUEUE_ARN`], a `GetQueueAttributes` rule, a `SendMessageBatch` mock rule that records every
//! request, and rules counting the `ChangeMessageVisibility(Batch)` calls the rejitter must
//! never make.
//!
//! Retries are disabled so that one SDK call is one rule call.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::operation::change_message_visibility::ChangeMessageVisibilityOutput;
use aws_sdk_sqs::operation::change_message_visibility_batch::ChangeMessageVisibilityBatchOutput;
use aws_sdk_sqs::operation::get_queue_attributes::{
    GetQueueAttributesError, GetQueueAttributesOutput,
};
use aws_sdk_sqs::operation::get_queue_url::{
    GetQueueUrlError, GetQueueUrlInput, GetQueueUrlOutput,
};
use aws_sdk_sqs::operation::send_message_batch::{
    SendMessageBatchError, SendMessageBatchInput, SendMessageBatchOutput,
};
use aws_sdk_sqs::types::error::{QueueDoesNotExist, RequestThrottled};
use aws_sdk_sqs::types::{BatchResultErrorEntry, QueueAttributeName, SendMessageBatchResultEntry};
use aws_smithy_mocks::{mock, mock_client, MockResponse, Rule, RuleBuilder, RuleMode};
use aws_smithy_types::error::ErrorMetadata;
use rejitter::{Config, Queue, MARKER};
use serde_json::{json, Value};

pub const QUEUE_ARN: &str = "arn:aws:sqs:us-east-2:123456789012:orders";
/// What `GetQueueUrl` answers for [`QUEUE_ARN`]: not the AWS form, as from a local emulator,
/// so a URL built from the ARN would not match.
pub const QUEUE_URL: &str = "http://sqs.local:4566/123456789012/orders";
pub const NOW: u64 = 1_700_000_000;
pub const TRACE: &str =
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
/// Bytes of the `blob` attribute, base64 "AQID/w==".
pub const BLOB: [u8; 4] = [1, 2, 3, 255];

pub fn config() -> Config {
    let env = HashMap::from([
        ("QUEUE_ARN", QUEUE_ARN),
        ("MIN_DELAY_SECONDS", "10"),
        ("MAX_DELAY_SECONDS", "20"),
    ]);
    Config::from_lookup(|k| env.get(k).map(|v| v.to_string())).expect("valid config")
}

pub fn id(i: usize) -> String {
    format!("id-{i}")
}

/// A body with spaces, a newline, escapes and non-ASCII, to check it is sent byte for byte.
pub fn body(i: usize) -> String {
    format!("  {{\"order\": {i}, \"note\": \"ünï \\\"q\\\"\"}}\n\t")
}

/// One record in the shape the SQS event source mapping delivers.
pub fn record_json(i: usize) -> Value {
    json!({
        "messageId": id(i),
        "receiptHandle": format!("AQEB-receipt-{i}"),
        "body": body(i),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
            "AWSTraceHeader": TRACE
        },
        "messageAttributes": {
            "tenant": {"stringValue": "acme", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
            "price": {"stringValue": "1.5", "stringListValues": [], "binaryListValues": [], "dataType": "Number.float"},
            "blob": {"binaryValue": "AQID/w==", "stringListValues": [], "binaryListValues": [], "dataType": "Binary.gif"}
        },
        "md5OfBody": "098f6bcd4621d373cade4e832627b4f6",
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "us-east-2"
    })
}

pub fn records(values: Vec<Value>) -> Vec<SqsMessage> {
    let event: SqsEvent =
        serde_json::from_value(json!({ "Records": values })).expect("valid SQS event JSON");
    event.records
}

pub fn numbered(n: usize) -> Vec<Value> {
    (0..n).map(record_json).collect()
}

pub fn with_marker(mut record: Value, marker: &str) -> Value {
    record["messageAttributes"][MARKER] = json!({
        "stringValue": marker, "stringListValues": [], "binaryListValues": [], "dataType": "String"
    });
    record
}

/// Every request the mock saw.
pub type Seen = Arc<Mutex<Vec<SendMessageBatchInput>>>;

/// An output confirming every entry of `input` except those in `refuse`.
pub fn output(input: &SendMessageBatchInput, refuse: &[&str]) -> SendMessageBatchOutput {
    let (failed, successful): (Vec<_>, Vec<_>) = input
        .entries()
        .iter()
        .partition(|e| refuse.contains(&e.id()));
    SendMessageBatchOutput::builder()
        .set_successful(Some(
            successful
                .iter()
                .map(|e| {
                    SendMessageBatchResultEntry::builder()
                        .id(e.id())
                        .message_id(format!("new-{}", e.id()))
                        .md5_of_message_body("md5")
                        .build()
                        .unwrap()
                })
                .collect(),
        ))
        .set_failed(Some(
            failed
                .iter()
                .map(|e| {
                    BatchResultErrorEntry::builder()
                        .id(e.id())
                        .code("InternalError")
                        .message("try again")
                        .sender_fault(false)
                        .build()
                        .unwrap()
                })
                .collect(),
        ))
        .build()
        .unwrap()
}

/// Whether `input` is the batch whose first entry is record `first`.
pub fn starts_with(input: &SendMessageBatchInput, first: usize) -> bool {
    input.entries().first().map(|e| e.message_body()) == Some(body(first).as_str())
}

/// A rule recording each request and answering with `respond`.
pub fn rule(
    seen: &Seen,
    respond: impl Fn(&SendMessageBatchInput) -> MockResponse<SendMessageBatchOutput, SendMessageBatchError>
        + Send
        + Sync
        + 'static,
) -> Rule {
    let seen = Arc::clone(seen);
    mock!(aws_sdk_sqs::Client::send_message_batch).then_compute_response(move |input| {
        seen.lock().unwrap().push(input.clone());
        respond(input)
    })
}

/// What SQS answers when a queue is over its request rate (code and message as parsed).
pub fn throttled() -> RequestThrottled {
    RequestThrottled::builder()
        .message("slow down")
        .meta(
            ErrorMetadata::builder()
                .code("RequestThrottled")
                .message("slow down")
                .build(),
        )
        .build()
}

/// A `GetQueueUrl` rule answering [`QUEUE_URL`].
pub fn lookup_rule() -> Rule {
    lookup().then_output(|| GetQueueUrlOutput::builder().queue_url(QUEUE_URL).build())
}

/// A `GetQueueUrl` rule that fails once with `QueueDoesNotExist`, then answers [`QUEUE_URL`]
/// once.
pub fn lookup_rule_failing_once() -> Rule {
    lookup()
        .sequence()
        .error(|| GetQueueUrlError::QueueDoesNotExist(queue_does_not_exist()))
        .output(|| GetQueueUrlOutput::builder().queue_url(QUEUE_URL).build())
        .build()
}

/// `GetQueueUrl` for the name and owner account of [`QUEUE_ARN`] only: another request matches
/// no rule, so its call fails.
fn lookup() -> RuleBuilder<GetQueueUrlInput, GetQueueUrlOutput, GetQueueUrlError> {
    mock!(aws_sdk_sqs::Client::get_queue_url).match_requests(|input| {
        input.queue_name() == Some("orders")
            && input.queue_owner_aws_account_id() == Some("123456789012")
    })
}

/// What SQS answers for a queue name it does not know (code and message as parsed).
pub fn queue_does_not_exist() -> QueueDoesNotExist {
    QueueDoesNotExist::builder()
        .message("The specified queue does not exist.")
        .meta(
            ErrorMetadata::builder()
                .code("AWS.SimpleQueueService.NonExistentQueue")
                .message("The specified queue does not exist.")
                .build(),
        )
        .build()
}

/// A `GetQueueAttributes` rule for [`QUEUE_URL`] answering a 1 MiB `MaximumMessageSize`.
pub fn attributes_rule() -> Rule {
    attributes_rule_with(Some("1048576"))
}

/// A `GetQueueAttributes` rule for [`QUEUE_URL`] answering this `MaximumMessageSize`
/// (`None`: left out).
pub fn attributes_rule_with(maximum: Option<&str>) -> Rule {
    let maximum = maximum.map(str::to_owned);
    mock!(aws_sdk_sqs::Client::get_queue_attributes)
        .match_requests(|input| {
            input.queue_url() == Some(QUEUE_URL)
                && input.attribute_names() == [QueueAttributeName::MaximumMessageSize]
        })
        .then_output(move || {
            let mut output = GetQueueAttributesOutput::builder();
            if let Some(m) = &maximum {
                output = output.attributes(QueueAttributeName::MaximumMessageSize, m);
            }
            output.build()
        })
}

/// A `GetQueueAttributes` rule that fails once with `QueueDoesNotExist`, then answers like
/// [`attributes_rule`] once.
pub fn attributes_rule_failing_once() -> Rule {
    mock!(aws_sdk_sqs::Client::get_queue_attributes)
        .sequence()
        .error(|| GetQueueAttributesError::QueueDoesNotExist(queue_does_not_exist()))
        .output(|| {
            GetQueueAttributesOutput::builder()
                .attributes(QueueAttributeName::MaximumMessageSize, "1048576")
                .build()
        })
        .build()
}

/// Rules answering `ChangeMessageVisibility` and `ChangeMessageVisibilityBatch`, so that a
/// call would be counted rather than fail unseen: the rejitter must never make one.
pub fn visibility_rules() -> [Rule; 2] {
    [
        mock!(aws_sdk_sqs::Client::change_message_visibility)
            .then_output(|| ChangeMessageVisibilityOutput::builder().build()),
        mock!(aws_sdk_sqs::Client::change_message_visibility_batch).then_output(|| {
            ChangeMessageVisibilityBatchOutput::builder()
                .set_successful(Some(Vec::new()))
                .set_failed(Some(Vec::new()))
                .build()
                .unwrap()
        }),
    ]
}

/// The `ChangeMessageVisibility(Batch)` calls the [`visibility_rules`] saw.
pub fn visibility_calls(rules: &[Rule; 2]) -> usize {
    rules.iter().map(Rule::num_calls).sum()
}

/// A client answering with `rules` (any order, the first match wins), then with
/// [`lookup_rule`] and [`attributes_rule`], for the tests that do not look at those calls.
pub fn client_with(rules: &[&Rule]) -> aws_sdk_sqs::Client {
    let defaults = [lookup_rule(), attributes_rule()];
    mock_client!(
        aws_sdk_sqs,
        RuleMode::MatchAny,
        rules.iter().copied().chain(defaults.iter()),
        |c| c.retry_config(aws_smithy_types::retry::RetryConfig::disabled())
    )
}

/// The test queue ([`config`]) on a client answering with `rules` (see [`client_with`]).
pub fn queue_with(rules: &[&Rule]) -> Queue {
    Queue::new(client_with(rules), &config())
}

/// The test queue on a client answering `SendMessageBatch` with `rule` and `GetQueueUrl` with
/// [`lookup_rule`].
pub fn queue(rule: &Rule) -> Queue {
    queue_with(&[&lookup_rule(), rule])
}

/// The requests sorted by their first body, so batch order does not depend on scheduling.
pub fn requests(seen: &Seen) -> Vec<SendMessageBatchInput> {
    let mut requests = seen.lock().unwrap().clone();
    let order: HashMap<String, usize> = (0..100).map(|i| (body(i), i)).collect();
    requests.sort_by_key(|r| order.get(r.entries()[0].message_body()).copied());
    requests
}

pub fn failure_ids(response: &SqsBatchResponse) -> Vec<&str> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect()
}

/// Collects everything a log subscriber writes (see `rejitter::logging::subscriber`).
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    /// The JSON lines written so far.
    pub fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().expect("lock").clone();
        String::from_utf8(bytes)
            .expect("utf8")
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
            .collect()
    }
}
