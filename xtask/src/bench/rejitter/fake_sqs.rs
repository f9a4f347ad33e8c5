//! The fake SQS endpoint (`AWS_ENDPOINT_URL`): the protocol's answers served over HTTP, after a
//! simulated latency, each counted.

use anyhow::Result;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Response};
use axum::Router;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::serve::Served;
use super::sqs_protocol::{sqs_reply, FakeQueue, SqsTally};
use super::{ACCOUNT, QUEUE_NAME};

pub struct FakeSqs {
    pub server: Served,
    tally: Arc<Mutex<SqsTally>>,
}

struct Fake {
    queue: FakeQueue,
    latency: Duration,
    next_id: Mutex<u64>,
    tally: Arc<Mutex<SqsTally>>,
}

impl FakeSqs {
    /// Answers after `latency`, to stand in for the network and SQS itself; the queue's
    /// `MaximumMessageSize` is `max_message_bytes`.
    pub fn start(latency: Duration, max_message_bytes: usize) -> Result<FakeSqs> {
        let tally = Arc::new(Mutex::new(SqsTally::default()));
        let recorded = Arc::clone(&tally);
        let server = Served::start(move |addr| {
            let fake = Fake {
                queue: FakeQueue {
                    url: format!("http://{addr}/{ACCOUNT}/{QUEUE_NAME}"),
                    max_message_bytes,
                },
                latency,
                next_id: Mutex::new(0),
                tally: recorded,
            };
            // Every request is a POST to `/` naming its operation in `X-Amz-Target`; a batch
            // may carry 1 MiB of bodies, over axum's default limit.
            Router::new()
                .fallback(answer)
                .layer(DefaultBodyLimit::disable())
                .with_state(Arc::new(fake))
        })?;
        Ok(FakeSqs { server, tally })
    }

    pub fn snapshot(&self) -> SqsTally {
        self.tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

async fn answer(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> Response<Body> {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    let reply = {
        let mut next_id = fake.next_id.lock().unwrap_or_else(PoisonError::into_inner);
        sqs_reply(target, &body, &fake.queue, &mut next_id)
    };
    fake.tally
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .record(reply.call);
    if !fake.latency.is_zero() {
        tokio::time::sleep(fake.latency).await;
    }
    let mut response = Response::builder()
        .status(reply.status)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amzn-requestid", "7a62c49f-347e-4fc4-9331-6e8e7a96aa73");
    if let Some(code) = reply.query_error {
        response = response.header("x-amzn-query-error", code);
    }
    response
        .body(Body::from(reply.body))
        .unwrap_or_else(|_| Response::new(Body::from("bad response")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::rejitter::QUEUE_MAX_MESSAGE_BYTES;

    /// The real SDK client against the fake: the replies parse, refused entries come back as
    /// `Failed`, and the placeholder MD5 is accepted (the SDK does not check digests).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sdk_accepts_the_fake_sqs_replies() {
        use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
        use aws_sdk_sqs::types::{
            MessageAttributeValue, QueueAttributeName, SendMessageBatchRequestEntry,
        };

        let sqs = FakeSqs::start(Duration::ZERO, QUEUE_MAX_MESSAGE_BYTES).unwrap();
        let config = aws_sdk_sqs::Config::builder()
            .http_client(controller::sdk::http_client())
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(format!("http://{}", sqs.server.addr))
            .build();
        let client = aws_sdk_sqs::Client::from_conf(config);
        let url = client
            .get_queue_url()
            .queue_name(QUEUE_NAME)
            .queue_owner_aws_account_id(ACCOUNT)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        assert_eq!(
            url,
            format!("http://{}/{ACCOUNT}/{QUEUE_NAME}", sqs.server.addr)
        );
        let attributes = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::MaximumMessageSize)
            .attribute_names(QueueAttributeName::MessageRetentionPeriod)
            .send()
            .await
            .unwrap();
        let attributes = attributes.attributes().unwrap();
        assert_eq!(
            attributes[&QueueAttributeName::MaximumMessageSize],
            "1048576"
        );
        assert_eq!(
            attributes[&QueueAttributeName::MessageRetentionPeriod],
            "345600"
        );
        let entry = |id: &str, body: &str| {
            SendMessageBatchRequestEntry::builder()
                .id(id)
                .message_body(body)
                .delay_seconds(10)
                .message_attributes(
                    "tenant",
                    MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value("acme")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap()
        };
        let output = client
            .send_message_batch()
            .queue_url(&url)
            .entries(entry("m0", "hello"))
            .entries(entry("m1", "REFUSE-me"))
            .send()
            .await
            .unwrap();
        let ok: Vec<&str> = output.successful().iter().map(|e| e.id()).collect();
        let failed: Vec<&str> = output.failed().iter().map(|e| e.id()).collect();
        assert_eq!((ok, failed), (vec!["m0"], vec!["m1"]));
        assert!(output.failed()[0].sender_fault());

        let too_many: Vec<_> = (0..11).map(|i| entry(&format!("m{i}"), "x")).collect();
        let err = client
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(too_many))
            .send()
            .await
            .unwrap_err();
        let service = err.into_service_error();
        assert!(
            service.is_too_many_entries_in_batch_request(),
            "{service:?}"
        );

        let tally = sqs.snapshot();
        assert_eq!((tally.get_queue_url, tally.calls), (1, 1));
        assert_eq!(tally.get_queue_attributes, 1);
        assert_eq!(tally.sent.len(), 1);
        assert_eq!(
            (tally.sent[0].head.as_str(), tally.sent[0].delay),
            ("hello", 10)
        );
        assert_eq!((tally.accepted, tally.refused_entries), (1, 1));
        assert_eq!(tally.entry_bytes, [5 + 16, 9 + 16]);
        assert_eq!(
            tally.refused_calls,
            ["SendMessageBatch: TooManyEntriesInBatchRequest"]
        );
    }
}
