//! Handler tests against a mocked SQS client: real SQS event JSON in, the `SendMessageBatch`
//! requests and the response out.

mod support;

use aws_sdk_sqs::operation::send_message_batch::{SendMessageBatchError, SendMessageBatchOutput};
use aws_sdk_sqs::types::MessageSystemAttributeNameForSends;
use aws_smithy_mocks::MockResponse;
use aws_smithy_types::Blob;
use rejitter::handler::invoke;
use rejitter::{delay::random_unit, handle, Counts, HandlerError, MARKER};
use serde_json::json;
use support::*;

#[tokio::test]
async fn twenty_five_records_are_sent_in_three_exact_batches() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let outcome = handle(
        &queue(&rule),
        &config(),
        &records(numbered(25)),
        NOW,
        random_unit,
    )
    .await
    .expect("handled");

    assert_eq!(rule.num_calls(), 3);
    assert_eq!(
        serde_json::to_string(&outcome.response).unwrap(),
        r#"{"batchItemFailures":[]}"#
    );
    assert_eq!(
        outcome.counts,
        Counts {
            rejittered: 25,
            batches: 3,
            failures: 0,
            skipped_already_rejittered: 0
        }
    );

    let requests = requests(&seen);
    let sizes: Vec<usize> = requests.iter().map(|r| r.entries().len()).collect();
    assert_eq!(sizes, [10, 10, 5]);
    let mut i = 0;
    for request in &requests {
        assert_eq!(request.queue_url(), Some(QUEUE_URL));
        for (n, entry) in request.entries().iter().enumerate() {
            assert_eq!(entry.id(), format!("m{n}"));
            assert_eq!(entry.message_body().as_bytes(), body(i).as_bytes());
            let delay = entry.delay_seconds().expect("a delay");
            assert!((10..=20).contains(&delay), "{delay}");
            assert_eq!(entry.message_group_id(), None);

            let attrs = entry.message_attributes().expect("attributes");
            assert_eq!(attrs.len(), 4, "{attrs:?}");
            let tenant = &attrs["tenant"];
            assert_eq!(
                (tenant.data_type(), tenant.string_value()),
                ("String", Some("acme"))
            );
            let price = &attrs["price"];
            assert_eq!(
                (price.data_type(), price.string_value()),
                ("Number.float", Some("1.5"))
            );
            let blob = &attrs["blob"];
            assert_eq!(blob.data_type(), "Binary.gif");
            assert_eq!(blob.binary_value().map(Blob::as_ref), Some(&BLOB[..]));
            let marker = &attrs[MARKER];
            let pass = NOW.to_string();
            assert_eq!(
                (marker.data_type(), marker.string_value()),
                ("String", Some(pass.as_str()))
            );

            let system = entry
                .message_system_attributes()
                .expect("system attributes");
            assert_eq!(system.len(), 1);
            let trace = &system[&MessageSystemAttributeNameForSends::AwsTraceHeader];
            assert_eq!(
                (trace.data_type(), trace.string_value()),
                ("String", Some(TRACE))
            );
            i += 1;
        }
    }
    assert_eq!(i, 25);
}

#[tokio::test]
async fn a_partial_failure_lists_exactly_the_refused_record() {
    let seen = Seen::default();
    // Entry m3 of the second batch (records 10..19) is record 13.
    let rule = rule(&seen, |input| {
        let refuse: &[&str] = if starts_with(input, 10) { &["m3"] } else { &[] };
        MockResponse::Output(output(input, refuse))
    });
    let outcome = handle(
        &queue(&rule),
        &config(),
        &records(numbered(25)),
        NOW,
        random_unit,
    )
    .await
    .expect("handled");

    assert_eq!(rule.num_calls(), 3);
    assert_eq!(requests(&seen)[1].entries()[3].message_body(), body(13));
    assert_eq!(
        serde_json::to_value(&outcome.response).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "id-13"}]})
    );
    assert_eq!(
        outcome.counts,
        Counts {
            rejittered: 24,
            batches: 3,
            failures: 1,
            skipped_already_rejittered: 0
        }
    );
}

#[tokio::test]
async fn a_failed_call_lists_its_whole_batch() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| {
        if starts_with(input, 10) {
            MockResponse::Error(SendMessageBatchError::RequestThrottled(throttled()))
        } else {
            MockResponse::Output(output(input, &[]))
        }
    });
    let outcome = handle(
        &queue(&rule),
        &config(),
        &records(numbered(25)),
        NOW,
        random_unit,
    )
    .await
    .expect("handled");

    assert_eq!(rule.num_calls(), 3, "no retry of the failed call");
    let want: Vec<String> = (10..20).map(id).collect();
    assert_eq!(failure_ids(&outcome.response), want);
    assert_eq!(
        outcome.counts,
        Counts {
            rejittered: 15,
            batches: 3,
            failures: 10,
            skipped_already_rejittered: 0
        }
    );
}

#[tokio::test]
async fn entries_the_response_does_not_confirm_are_listed() {
    let seen = Seen::default();
    let rule = rule(&seen, |_| {
        MockResponse::Output(
            SendMessageBatchOutput::builder()
                .set_successful(Some(Vec::new()))
                .set_failed(Some(Vec::new()))
                .build()
                .unwrap(),
        )
    });
    let outcome = handle(
        &queue(&rule),
        &config(),
        &records(numbered(2)),
        NOW,
        random_unit,
    )
    .await
    .expect("handled");
    assert_eq!(failure_ids(&outcome.response), ["id-0", "id-1"]);
    assert_eq!(outcome.counts.rejittered, 0);
}

#[tokio::test]
async fn a_record_with_a_recent_marker_is_left_for_the_consumer() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let recent = (NOW - 100).to_string();
    // A marker from an earlier recovery does not count: that record is rejittered again.
    let old = (NOW - 100_000).to_string();
    let input = records(vec![
        record_json(0),
        with_marker(record_json(1), &recent),
        with_marker(record_json(2), &old),
        with_marker(record_json(3), "not a time"),
    ]);
    let outcome = handle(&queue(&rule), &config(), &input, NOW, random_unit)
        .await
        .expect("handled");

    assert_eq!(failure_ids(&outcome.response), ["id-1"]);
    assert_eq!(
        outcome.counts,
        Counts {
            rejittered: 3,
            batches: 1,
            failures: 0,
            skipped_already_rejittered: 1
        }
    );
    let requests = requests(&seen);
    assert_eq!(requests.len(), 1);
    let bodies: Vec<&str> = requests[0]
        .entries()
        .iter()
        .map(|e| e.message_body())
        .collect();
    assert_eq!(bodies, [body(0), body(2), body(3)]);
    let pass = NOW.to_string();
    for entry in requests[0].entries() {
        let marker = &entry.message_attributes().unwrap()[MARKER];
        assert_eq!(marker.string_value(), Some(pass.as_str()), "overwritten");
    }
}

#[tokio::test]
async fn only_already_rejittered_records_need_no_call() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let lookup = lookup_rule();
    let queue = queue_with(&[&lookup, &rule]);
    let input = records(vec![with_marker(record_json(0), &NOW.to_string())]);
    let outcome = handle(&queue, &config(), &input, NOW, random_unit)
        .await
        .expect("handled");
    assert_eq!(rule.num_calls(), 0);
    assert_eq!(lookup.num_calls(), 0, "nothing to send, no URL needed");
    assert_eq!(queue.cached_url(), None);
    assert_eq!(failure_ids(&outcome.response), ["id-0"]);
    assert_eq!(outcome.counts.batches, 0);
}

#[tokio::test]
async fn a_record_without_a_body_is_listed() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let mut no_body = record_json(1);
    no_body.as_object_mut().unwrap().remove("body");
    let mut bad_attribute = record_json(2);
    bad_attribute["messageAttributes"]["tenant"]
        .as_object_mut()
        .unwrap()
        .remove("dataType");
    let input = records(vec![record_json(0), no_body, bad_attribute]);
    let outcome = handle(&queue(&rule), &config(), &input, NOW, random_unit)
        .await
        .expect("handled");

    assert_eq!(failure_ids(&outcome.response), ["id-1", "id-2"]);
    assert_eq!(rule.num_calls(), 1);
    let requests = requests(&seen);
    assert_eq!(requests[0].entries().len(), 1);
    assert_eq!(requests[0].entries()[0].message_body(), body(0));
    assert_eq!(
        outcome.counts,
        Counts {
            rejittered: 1,
            batches: 1,
            failures: 2,
            skipped_already_rejittered: 0
        }
    );
}

#[tokio::test]
async fn a_record_without_a_message_id_fails_the_invocation_before_any_send() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let mut values = numbered(25);
    values[20].as_object_mut().unwrap().remove("messageId");
    // Even one that would be skipped as already rejittered cannot be listed.
    values[3] = with_marker(record_json(3), &NOW.to_string());
    values[3].as_object_mut().unwrap().remove("messageId");
    let lookup = lookup_rule();
    let error = handle(
        &queue_with(&[&lookup, &rule]),
        &config(),
        &records(values),
        NOW,
        random_unit,
    )
    .await
    .expect_err("cannot list a record without an id");

    assert_eq!(rule.num_calls(), 0);
    assert_eq!(lookup.num_calls(), 0);
    assert_eq!(
        error,
        HandlerError::MissingMessageId {
            indexes: vec![3, 20],
            batch_size: 25
        }
    );
    let diagnostic: lambda_runtime::Diagnostic = error.into();
    assert_eq!(diagnostic.error_type, "MissingMessageId");
}

#[tokio::test]
async fn the_queue_url_is_looked_up_once_for_the_life_of_the_process() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let lookup = lookup_rule();
    // One handler state for both invocations, as in main.
    let queue = queue_with(&[&lookup, &rule]);
    let config = config();
    assert_eq!(
        queue.cached_url(),
        None,
        "no call before the first invocation"
    );
    assert_eq!(lookup.num_calls(), 0);

    let first = handle(&queue, &config, &records(numbered(3)), NOW, random_unit)
        .await
        .expect("handled");
    assert_eq!(lookup.num_calls(), 1);
    assert_eq!(queue.cached_url(), Some(QUEUE_URL));
    let second = invoke(
        &queue,
        &config,
        serde_json::from_value(json!({ "Records": numbered(12) })).unwrap(),
    )
    .await
    .expect("handled");

    assert_eq!(lookup.num_calls(), 1, "the URL is cached");
    assert_eq!(rule.num_calls(), 3);
    assert!(first.response.batch_item_failures.is_empty());
    assert!(second.batch_item_failures.is_empty());
    // The URL SQS answered, not one built from the ARN.
    for request in seen.lock().unwrap().iter() {
        assert_eq!(request.queue_url(), Some(QUEUE_URL));
    }
}

#[tokio::test]
async fn a_failed_lookup_fails_the_invocation_before_any_send_and_is_not_cached() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let lookup = lookup_rule_failing_once();
    let queue = queue_with(&[&lookup, &rule]);
    let config = config();

    let error = handle(&queue, &config, &records(numbered(12)), NOW, random_unit)
        .await
        .expect_err("no URL, nothing can be sent");
    assert_eq!(lookup.num_calls(), 1);
    assert_eq!(rule.num_calls(), 0, "no SendMessageBatch call");
    assert_eq!(queue.cached_url(), None, "the failure is not cached");
    assert_eq!(
        error,
        HandlerError::QueueUrlUnavailable {
            queue_arn: QUEUE_ARN.to_owned(),
            reason: "AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist."
                .to_owned()
        }
    );
    assert_eq!(
        error.to_string(),
        format!(
            "cannot look up the URL of the queue {QUEUE_ARN} (GetQueueUrl failed: \
             AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist.); \
             nothing was sent and the whole batch will be retried"
        )
    );
    let diagnostic: lambda_runtime::Diagnostic = error.into();
    assert_eq!(diagnostic.error_type, "QueueUrlUnavailable");

    // The mapping retries the batch; this time the lookup succeeds.
    let outcome = handle(&queue, &config, &records(numbered(12)), NOW, random_unit)
        .await
        .expect("handled");
    assert_eq!(lookup.num_calls(), 2);
    assert_eq!(rule.num_calls(), 2);
    assert_eq!(queue.cached_url(), Some(QUEUE_URL));
    assert!(outcome.response.batch_item_failures.is_empty());
}

#[tokio::test]
async fn a_record_from_another_queue_is_listed_and_not_re_sent() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let mut other = record_json(1);
    other["eventSourceARN"] = json!("arn:aws:sqs:us-east-2:123456789012:payments");
    let mut other_account = record_json(2);
    other_account["eventSourceARN"] = json!("arn:aws:sqs:us-east-2:210987654321:orders");
    let mut unknown = record_json(3);
    unknown.as_object_mut().unwrap().remove("eventSourceARN");
    // From another queue and already rejittered: still counted as from another queue.
    let mut marked = with_marker(record_json(4), &NOW.to_string());
    marked["eventSourceARN"] = json!("arn:aws:sqs:us-east-2:123456789012:payments");
    let input = records(vec![
        record_json(0),
        other,
        other_account,
        unknown,
        marked,
        record_json(5),
    ]);
    let outcome = handle(&queue(&rule), &config(), &input, NOW, random_unit)
        .await
        .expect("handled");

    assert_eq!(
        failure_ids(&outcome.response),
        ["id-1", "id-2", "id-3", "id-4"]
    );
    assert_eq!(
        outcome.counts,
        Counts {
            rejittered: 2,
            batches: 1,
            failures: 4,
            skipped_already_rejittered: 0
        }
    );
    let requests = requests(&seen);
    assert_eq!(requests.len(), 1);
    let bodies: Vec<&str> = requests[0]
        .entries()
        .iter()
        .map(|e| e.message_body())
        .collect();
    assert_eq!(bodies, [body(0), body(5)]);
}

#[tokio::test]
async fn only_records_from_another_queue_need_no_call() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let lookup = lookup_rule();
    let mut other = record_json(0);
    other["eventSourceARN"] = json!("arn:aws:sqs:eu-west-1:123456789012:orders");
    let outcome = handle(
        &queue_with(&[&lookup, &rule]),
        &config(),
        &records(vec![other]),
        NOW,
        random_unit,
    )
    .await
    .expect("handled");
    assert_eq!((lookup.num_calls(), rule.num_calls()), (0, 0));
    assert_eq!(failure_ids(&outcome.response), ["id-0"]);
    assert_eq!(outcome.counts.failures, 1);
}
