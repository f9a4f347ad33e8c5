//! The fake SQS's answers against what SQS answers.

use super::super::{KIB, QUEUE_MAX_MESSAGE_BYTES};
use super::*;
use serde_json::Value;

const URL: &str = "http://127.0.0.1:1/123456789012/orders";

fn queue(max_message_bytes: usize) -> FakeQueue {
    FakeQueue {
        url: URL.to_owned(),
        max_message_bytes,
    }
}

fn reply_from(queue: &FakeQueue, target: &str, body: Value) -> SqsReply {
    let mut next_id = 0;
    sqs_reply(
        Some(target),
        body.to_string().as_bytes(),
        queue,
        &mut next_id,
    )
}

fn reply(target: &str, body: Value) -> SqsReply {
    reply_from(&queue(QUEUE_MAX_MESSAGE_BYTES), target, body)
}

fn entry(id: &str, body: &str) -> Value {
    json!({"Id": id, "MessageBody": body, "DelaySeconds": 5})
}

#[test]
fn get_queue_url_answers_for_the_one_queue() {
    let ok = reply(
        "AmazonSQS.GetQueueUrl",
        json!({"QueueName": "orders", "QueueOwnerAWSAccountId": "123456789012"}),
    );
    assert_eq!(ok.status, 200);
    assert_eq!(ok.call, SqsCall::GetQueueUrl);
    let body: Value = serde_json::from_str(&ok.body).unwrap();
    assert_eq!(body, json!({"QueueUrl": URL}));
    let other = reply("AmazonSQS.GetQueueUrl", json!({"QueueName": "payments"}));
    assert_eq!(other.status, 400);
    assert!(other.body.contains("com.amazonaws.sqs#QueueDoesNotExist"));
}

#[test]
fn send_message_batch_counts_sqs_bytes_and_answers_every_entry() {
    let r = reply(
        "AmazonSQS.SendMessageBatch",
        json!({"QueueUrl": URL, "Entries": [
            {"Id": "m0", "MessageBody": "hello", "DelaySeconds": 900,
             "MessageAttributes": {
                "tenant": {"DataType": "String", "StringValue": "acme"},
                "img": {"DataType": "Binary.gif", "BinaryValue": "AQID/w=="}
             },
             "MessageSystemAttributes": {"AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1"}}},
            entry("m1", "REFUSE-1"),
            {"Id": "m2", "MessageBody": "late", "DelaySeconds": 901}
        ]}),
    );
    assert_eq!(r.status, 200);
    // System attributes do not count; binary values count decoded.
    assert_eq!(
        r.call,
        SqsCall::SendMessageBatch {
            entry_bytes: vec![5 + (6 + 6 + 4) + (3 + 10 + 4), 8, 4],
            accepted: 1,
            refused: 2,
            sent: vec![SentEntry {
                head: "hello".into(),
                delay: 900,
                marker: None
            }],
        }
    );
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["Successful"].as_array().unwrap().len(), 1);
    assert_eq!(body["Successful"][0]["Id"], "m0");
    assert_eq!(body["Successful"][0]["MD5OfMessageBody"], PLACEHOLDER_MD5);
    let failed: Vec<&str> = body["Failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["Id"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["m1", "m2"]);
    assert_eq!(body["Failed"][0]["SenderFault"], true);
}

#[test]
fn a_batch_over_the_limits_is_refused_as_a_whole() {
    let eleven: Vec<Value> = (0..11).map(|i| entry(&format!("m{i}"), "x")).collect();
    let big = "x".repeat(MAX_BATCH_BYTES / 2 + 1);
    let cases = [
        (json!([]), "EmptyBatchRequest"),
        (json!(eleven), "TooManyEntriesInBatchRequest"),
        (
            json!([entry("m0", "a"), entry("m0", "b")]),
            "BatchEntryIdsNotDistinct",
        ),
        (
            json!([entry("m0", &big), entry("m1", &big)]),
            "BatchRequestTooLong",
        ),
    ];
    for (entries, code) in cases {
        let r = reply(
            "AmazonSQS.SendMessageBatch",
            json!({"QueueUrl": URL, "Entries": entries}),
        );
        assert_eq!(r.status, 400, "{code}");
        assert_eq!(
            r.query_error,
            Some(format!("AWS.SimpleQueueService.{code};Sender"))
        );
        assert!(r.body.contains(&format!("sqs#{code}")), "{}", r.body);
        assert_eq!(
            r.call,
            SqsCall::Refused(format!("SendMessageBatch: {code}"))
        );
    }
    let exactly = "x".repeat(MAX_BATCH_BYTES / 2);
    let r = reply(
        "AmazonSQS.SendMessageBatch",
        json!({"QueueUrl": URL, "Entries": [entry("m0", &exactly), entry("m1", &exactly)]}),
    );
    assert_eq!(r.status, 200, "exactly 1 MiB is allowed");
    assert!(matches!(
        r.call,
        SqsCall::SendMessageBatch { accepted: 2, .. }
    ));
    let tenth = "x".repeat(MAX_BATCH_BYTES / 10);
    let ten: Vec<Value> = (0..10).map(|i| entry(&format!("m{i}"), &tenth)).collect();
    let r = reply(
        "AmazonSQS.SendMessageBatch",
        json!({"QueueUrl": URL, "Entries": ten}),
    );
    assert!(matches!(
        r.call,
        SqsCall::SendMessageBatch { accepted: 10, .. }
    ));
}

#[test]
fn an_entry_over_the_queue_limit_is_refused_alone() {
    let small = queue(256 * KIB);
    let over = "x".repeat(256 * KIB + 1);
    let at = "x".repeat(256 * KIB);
    let r = reply_from(
        &small,
        "AmazonSQS.SendMessageBatch",
        json!({"QueueUrl": URL, "Entries": [entry("m0", &over), entry("m1", &at)]}),
    );
    assert_eq!(r.status, 200);
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["Successful"][0]["Id"], "m1");
    assert_eq!(body["Failed"][0]["Id"], "m0");
    assert_eq!(body["Failed"][0]["Code"], "InvalidParameterValue");
    assert!(body["Failed"][0]["Message"]
        .as_str()
        .unwrap()
        .contains("262144"));
    // The same entry fits a 1 MiB queue.
    let r = reply(
        "AmazonSQS.SendMessageBatch",
        json!({"QueueUrl": URL, "Entries": [entry("m0", &over)]}),
    );
    assert!(matches!(
        r.call,
        SqsCall::SendMessageBatch { accepted: 1, .. }
    ));
}

#[test]
fn get_queue_attributes_answers_the_size_limit_and_retention() {
    let attributes = |queue: &FakeQueue, names: Value| {
        let r = reply_from(
            queue,
            "AmazonSQS.GetQueueAttributes",
            json!({"QueueUrl": URL, "AttributeNames": names}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.call, SqsCall::GetQueueAttributes);
        serde_json::from_str::<Value>(&r.body).unwrap()
    };
    let both = json!(["MaximumMessageSize", "MessageRetentionPeriod"]);
    assert_eq!(
        attributes(&queue(QUEUE_MAX_MESSAGE_BYTES), both.clone()),
        json!({"Attributes": {"MaximumMessageSize": "1048576", "MessageRetentionPeriod": "345600"}})
    );
    assert_eq!(
        attributes(&queue(256 * KIB), json!(["All"]))["Attributes"]["MaximumMessageSize"],
        "262144"
    );
    assert_eq!(
        attributes(&queue(256 * KIB), json!(["MessageRetentionPeriod"])),
        json!({"Attributes": {"MessageRetentionPeriod": "345600"}})
    );
    let r = reply(
        "AmazonSQS.GetQueueAttributes",
        json!({"QueueUrl": URL, "AttributeNames": ["Nope"]}),
    );
    assert!(r.body.contains("InvalidAttributeName"), "{}", r.body);
    let r = reply(
        "AmazonSQS.GetQueueAttributes",
        json!({"QueueUrl": "http://elsewhere/1/q", "AttributeNames": both}),
    );
    assert!(r.body.contains("QueueDoesNotExist"), "{}", r.body);
}

#[test]
fn other_operations_and_queues_are_refused() {
    let r = reply("AmazonSQS.SendMessage", json!({}));
    assert_eq!(r.status, 400);
    assert!(r.body.contains("UnknownOperationException"));
    // The rejitter never changes a message's visibility: such a call is refused, counted.
    let r = reply(
        "AmazonSQS.ChangeMessageVisibilityBatch",
        json!({"QueueUrl": URL, "Entries": [{"Id": "h0", "ReceiptHandle": "AQEB-1", "VisibilityTimeout": 60}]}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.call,
        SqsCall::Refused(
            "AmazonSQS.ChangeMessageVisibilityBatch: UnknownOperationException".into()
        )
    );
    let r = reply(
        "AmazonSQS.SendMessageBatch",
        json!({"QueueUrl": "http://elsewhere/1/q", "Entries": [entry("m0", "x")]}),
    );
    assert!(r.body.contains("QueueDoesNotExist"));
}

#[test]
fn base64_lengths() {
    assert_eq!(base64_decoded_len(""), 0);
    assert_eq!(base64_decoded_len("Zg=="), 1);
    assert_eq!(base64_decoded_len("Zm8="), 2);
    assert_eq!(base64_decoded_len("Zm9v"), 3);
    assert_eq!(base64_decoded_len("AQID/w=="), 4);
}
