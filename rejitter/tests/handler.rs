//! Handler tests against a mocked SQS client: real SQS event JSON in, the `SendMessageBatch`
//! requests and the response out.

mod support;

use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlOutput;
use aws_sdk_sqs::operation::send_message_batch::{SendMessageBatchError, SendMessageBatchOutput};
use aws_sdk_sqs::types::{MessageSystemAttributeNameForSends, QueueAttributeName};
use aws_smithy_mocks::mock;
use aws_smithy_mocks::MockResponse;
use aws_smithy_types::Blob;
use proptest::prelude::*;
use rejitter::handler::invoke;
use rejitter::{delay::random_unit, handle, Counts, HandlerError, Queues, MARKER};
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
            resent_already_rejittered: 0
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
            resent_already_rejittered: 0
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
            resent_already_rejittered: 0
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
async fn a_record_with_a_recent_marker_is_re_sent_with_the_short_delay() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let visibility = visibility_rules();
    let recent = (NOW - 100).to_string();
    // A marker from an earlier recovery does not count: that record gets a random delay.
    let old = (NOW - 100_000).to_string();
    let input = records(vec![
        record_json(0),
        with_marker(record_json(1), &recent),
        with_marker(record_json(2), &old),
        with_marker(record_json(3), "not a time"),
    ]);
    let [v0, v1] = &visibility;
    let outcome = handle(
        &queue_with(&[v0, v1, &rule]),
        &config(),
        &input,
        NOW,
        random_unit,
    )
    .await
    .expect("handled");

    assert_eq!(failure_ids(&outcome.response), [] as [&str; 0]);
    assert_eq!(rule.num_calls(), 2, "one call per group");
    assert_eq!(visibility_calls(&visibility), 0);
    assert_eq!(
        outcome.counts,
        Counts {
            rejittered: 4,
            batches: 2,
            failures: 0,
            resent_already_rejittered: 1
        }
    );
    let requests = requests(&seen);
    let bodies: Vec<Vec<&str>> = requests
        .iter()
        .map(|r| r.entries().iter().map(|e| e.message_body()).collect())
        .collect();
    assert_eq!(bodies, [vec![body(0), body(2), body(3)], vec![body(1)]]);
    for entry in requests[0].entries() {
        let delay = check_copy(entry);
        assert!((10..=20).contains(&delay), "{delay}");
    }
    assert_eq!(check_copy(&requests[1].entries()[0]), 60);
}

#[tokio::test]
async fn only_already_rejittered_records_are_re_sent() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let lookup = lookup_rule();
    let attributes = attributes_rule();
    let visibility = visibility_rules();
    let [v0, v1] = &visibility;
    let queue = queue_with(&[&lookup, &attributes, v0, v1, &rule]);
    let input = records(vec![with_marker(record_json(0), &NOW.to_string())]);
    let outcome = handle(&queue, &config(), &input, NOW, random_unit)
        .await
        .expect("handled");
    assert_eq!((lookup.num_calls(), attributes.num_calls()), (1, 1));
    assert_eq!(rule.num_calls(), 1);
    assert_eq!(visibility_calls(&visibility), 0);
    let requests = requests(&seen);
    assert_eq!(requests[0].queue_url(), Some(QUEUE_URL));
    assert_eq!(requests[0].entries().len(), 1);
    assert_eq!(check_copy(&requests[0].entries()[0]), 60);
    // Deleted by Lambda once its copy is confirmed.
    assert_eq!(failure_ids(&outcome.response), [] as [&str; 0]);
    assert_eq!(
        outcome.counts,
        Counts {
            rejittered: 1,
            batches: 1,
            failures: 0,
            resent_already_rejittered: 1
        }
    );
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
            resent_already_rejittered: 0
        }
    );
}

#[tokio::test]
async fn a_record_without_a_message_id_fails_the_invocation_before_any_send() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let mut values = numbered(25);
    values[20].as_object_mut().unwrap().remove("messageId");
    // Even one that would be re-sent as already rejittered cannot be listed.
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
async fn the_queue_is_looked_up_once_for_the_life_of_the_process() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let lookup = lookup_rule();
    let attributes = attributes_rule();
    // One handler state for both invocations, as in main.
    let queues = Queues::new(client_with(&[&lookup, &attributes, &rule]), &config());
    let queue = queues.home();
    let config = config();
    assert_eq!(
        queue.cached_url(),
        None,
        "no call before the first invocation"
    );
    assert_eq!(lookup.num_calls(), 0);

    let first = handle(queue, &config, &records(numbered(3)), NOW, random_unit)
        .await
        .expect("handled");
    assert_eq!(lookup.num_calls(), 1);
    assert_eq!(queue.cached_url(), Some(QUEUE_URL));
    let second = invoke(
        &queues,
        &config,
        serde_json::from_value(json!({ "Records": numbered(12) })).unwrap(),
    )
    .await
    .expect("handled");

    assert_eq!(lookup.num_calls(), 1, "the URL is cached");
    assert_eq!(attributes.num_calls(), 1, "the attributes too");
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
            resent_already_rejittered: 0
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

// ---------------------------------------------------------------------------------------------
// Already rejittered records are re-sent as fresh copies delayed RESEND_DELAY_SECONDS.

/// Checks that `entry` carries its record (found by body, in the shape of [`record_json`])
/// whole: body byte for byte, every attribute with its data type, the trace header, and a
/// marker of [`NOW`]. Returns its delay.
fn check_copy(entry: &aws_sdk_sqs::types::SendMessageBatchRequestEntry) -> i32 {
    assert!(
        (0..100).any(|i| entry.message_body().as_bytes() == body(i).as_bytes()),
        "{entry:?}"
    );
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
    let pass = NOW.to_string();
    let marker = &attrs[MARKER];
    assert_eq!(
        (marker.data_type(), marker.string_value()),
        ("String", Some(pass.as_str())),
        "a fresh marker"
    );
    let system = entry
        .message_system_attributes()
        .expect("system attributes");
    let trace = &system[&MessageSystemAttributeNameForSends::AwsTraceHeader];
    assert_eq!(trace.string_value(), Some(TRACE));
    assert_eq!(entry.message_group_id(), None);
    entry.delay_seconds().expect("a delay")
}

#[tokio::test]
async fn an_already_rejittered_record_is_re_sent_as_a_fresh_copy_delayed_a_minute() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let visibility = visibility_rules();
    // A receipt handle is not needed any more.
    let mut no_handle = with_marker(record_json(3), &(NOW - 100).to_string());
    no_handle.as_object_mut().unwrap().remove("receiptHandle");
    let input = records(vec![
        record_json(0),
        with_marker(record_json(1), &(NOW - 100).to_string()),
        // Written by a host whose clock is 30 s ahead.
        with_marker(record_json(2), &(NOW + 30).to_string()),
        no_handle,
        record_json(4),
    ]);
    let [v0, v1] = &visibility;
    let outcome = handle(
        &queue_with(&[v0, v1, &rule]),
        &config(),
        &input,
        NOW,
        // Draws for the unmarked records only: 0.0 then 0.99, so delays 10 and 20.
        {
            let mut draws = vec![0.99, 0.0];
            move || draws.pop().expect("one draw per unmarked record")
        },
    )
    .await
    .expect("handled");

    assert_eq!(rule.num_calls(), 2);
    assert_eq!(visibility_calls(&visibility), 0, "no visibility change");
    let requests = requests(&seen);
    let sent: Vec<Vec<(String, i32)>> = requests
        .iter()
        .map(|r| {
            r.entries()
                .iter()
                .map(|e| (e.message_body().to_owned(), check_copy(e)))
                .collect()
        })
        .collect();
    assert_eq!(
        sent,
        [
            vec![(body(0), 10), (body(4), 20)],
            vec![(body(1), 60), (body(2), 60), (body(3), 60)],
        ]
    );
    let ids: Vec<&str> = requests[1].entries().iter().map(|e| e.id()).collect();
    assert_eq!(ids, ["m0", "m1", "m2"]);
    // All confirmed: Lambda deletes every record, the copies are on the queue.
    assert_eq!(failure_ids(&outcome.response), [] as [&str; 0]);
    assert_eq!(
        outcome.counts,
        Counts {
            rejittered: 5,
            batches: 2,
            failures: 0,
            resent_already_rejittered: 3
        }
    );
}

#[tokio::test]
async fn a_marked_record_whose_copy_is_not_confirmed_is_listed() {
    let input = || {
        records(vec![
            with_marker(record_json(0), &NOW.to_string()),
            record_json(1),
            with_marker(record_json(2), &NOW.to_string()),
        ])
    };

    // SQS refuses the copy of record 2 (entry m1 of the marked records' call).
    let seen = Seen::default();
    let rule = rule(&seen, |input| {
        let refuse: &[&str] = if starts_with(input, 0) { &["m1"] } else { &[] };
        MockResponse::Output(output(input, refuse))
    });
    let visibility = visibility_rules();
    let [v0, v1] = &visibility;
    let outcome = handle(
        &queue_with(&[v0, v1, &rule]),
        &config(),
        &input(),
        NOW,
        random_unit,
    )
    .await
    .expect("handled");
    assert_eq!(rule.num_calls(), 2);
    assert_eq!(visibility_calls(&visibility), 0);
    assert_eq!(requests(&seen)[0].entries()[1].message_body(), body(2));
    assert_eq!(failure_ids(&outcome.response), ["id-2"]);
    assert_eq!(
        outcome.counts,
        Counts {
            rejittered: 2,
            batches: 2,
            failures: 1,
            resent_already_rejittered: 1
        }
    );

    // The marked records' call fails as a whole: no retry, both listed, the other one sent.
    let seen = Seen::default();
    let rule = support::rule(&seen, |input| {
        if starts_with(input, 0) {
            MockResponse::Error(SendMessageBatchError::RequestThrottled(throttled()))
        } else {
            MockResponse::Output(output(input, &[]))
        }
    });
    let visibility = visibility_rules();
    let [v0, v1] = &visibility;
    let outcome = handle(
        &queue_with(&[v0, v1, &rule]),
        &config(),
        &input(),
        NOW,
        random_unit,
    )
    .await
    .expect("a failed send does not fail the invocation");
    assert_eq!(rule.num_calls(), 2, "no retry of the failed call");
    assert_eq!(visibility_calls(&visibility), 0);
    assert_eq!(failure_ids(&outcome.response), ["id-0", "id-2"]);
    assert_eq!(
        outcome.counts,
        Counts {
            rejittered: 1,
            batches: 2,
            failures: 2,
            resent_already_rejittered: 0
        }
    );
}

#[tokio::test]
async fn twelve_marked_records_take_two_calls() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let marker = (NOW - 10).to_string();
    let input = records(
        (0..12)
            .map(|i| with_marker(record_json(i), &marker))
            .collect(),
    );
    let outcome = handle(&queue(&rule), &config(), &input, NOW, || {
        panic!("no random draw for a fixed delay")
    })
    .await
    .expect("handled");
    assert_eq!(rule.num_calls(), 2);
    let requests = requests(&seen);
    let sizes: Vec<usize> = requests.iter().map(|r| r.entries().len()).collect();
    assert_eq!(sizes, [10, 2]);
    let bodies: Vec<&str> = requests
        .iter()
        .flat_map(|r| r.entries())
        .map(|e| e.message_body())
        .collect();
    let want: Vec<String> = (0..12).map(body).collect();
    assert_eq!(bodies, want);
    for entry in requests.iter().flat_map(|r| r.entries()) {
        assert_eq!(check_copy(entry), 60);
    }
    assert!(outcome.response.batch_item_failures.is_empty());
    assert_eq!(outcome.counts.resent_already_rejittered, 12);
}

#[tokio::test]
async fn a_failed_attributes_lookup_fails_the_invocation_before_any_call_and_is_not_cached() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let lookup = lookup_rule();
    let attributes = attributes_rule_failing_once();
    let visibility = visibility_rules();
    let [v0, v1] = &visibility;
    let queue = queue_with(&[&lookup, &attributes, v0, v1, &rule]);
    let mut values = numbered(3);
    values[1] = with_marker(record_json(1), &NOW.to_string());

    let error = handle(
        &queue,
        &config(),
        &records(values.clone()),
        NOW,
        random_unit,
    )
    .await
    .expect_err("without the queue's limits nothing is sent");
    assert_eq!((lookup.num_calls(), attributes.num_calls()), (1, 1));
    assert_eq!(rule.num_calls(), 0);
    assert_eq!(queue.cached_url(), None, "the failure is not cached");
    assert_eq!(
        error,
        HandlerError::QueueAttributesUnavailable {
            queue_arn: QUEUE_ARN.to_owned(),
            reason: "AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist."
                .to_owned()
        }
    );
    assert_eq!(
        error.to_string(),
        format!(
            "cannot read the attributes of the queue {QUEUE_ARN} (GetQueueAttributes failed: \
             AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist.); \
             nothing was sent and the whole batch will be retried"
        )
    );
    let diagnostic: lambda_runtime::Diagnostic = error.into();
    assert_eq!(diagnostic.error_type, "QueueAttributesUnavailable");

    // The retry looks the queue up again, both calls, then sends both groups.
    let outcome = handle(&queue, &config(), &records(values), NOW, random_unit)
        .await
        .expect("handled");
    assert_eq!((lookup.num_calls(), attributes.num_calls()), (2, 2));
    assert_eq!(rule.num_calls(), 2);
    assert_eq!(visibility_calls(&visibility), 0);
    assert_eq!(queue.cached().map(|i| i.max_message_bytes), Some(1_048_576));
    assert!(outcome.response.batch_item_failures.is_empty());
    assert_eq!(outcome.counts.resent_already_rejittered, 1);
}

// ---------------------------------------------------------------------------------------------
// Whatever the batch and whatever SQS answers, nothing is lost.

/// What happens to one record in [`nothing_is_lost`].
#[derive(Debug, Clone, Copy)]
struct Fate {
    marked: bool,
    other_queue: bool,
    no_body: bool,
    /// What SQS answers for its entry.
    answer: Answer,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    Confirm,
    Refuse,
    Unlisted,
    /// The whole call fails.
    FailCall,
}

fn fate() -> impl Strategy<Value = Fate> {
    (
        any::<bool>(),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
        prop_oneof![
            6 => Just(Answer::Confirm),
            1 => Just(Answer::Refuse),
            1 => Just(Answer::Unlisted),
            1 => Just(Answer::FailCall),
        ],
    )
        .prop_map(|(marked, other_queue, no_body, answer)| Fate {
            marked,
            other_queue,
            no_body,
            answer,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every record is either re-sent (SQS confirmed its copy) or listed in
    /// `batchItemFailures`, never both; every marked record of the queue with a body gets a
    /// send attempt delayed 60 s; no visibility is ever changed.
    #[test]
    fn nothing_is_lost(fates in prop::collection::vec(fate(), 1..=10)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let by_body: std::collections::HashMap<String, Fate> =
            fates.iter().enumerate().map(|(i, f)| (body(i), *f)).collect();
        let confirmed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = Seen::default();
        let rule = {
            let confirmed = std::sync::Arc::clone(&confirmed);
            support::rule(&seen, move |input| {
                let answer = |e: &aws_sdk_sqs::types::SendMessageBatchRequestEntry| {
                    by_body[e.message_body()].answer
                };
                if input.entries().iter().any(|e| answer(e) == Answer::FailCall) {
                    return MockResponse::Error(SendMessageBatchError::RequestThrottled(
                        throttled(),
                    ));
                }
                let refuse: Vec<&str> = input
                    .entries()
                    .iter()
                    .filter(|e| answer(e) == Answer::Refuse)
                    .map(|e| e.id())
                    .collect();
                let mut out = output(input, &refuse);
                // An unlisted entry is neither successful nor failed.
                let unlisted: Vec<&str> = input
                    .entries()
                    .iter()
                    .filter(|e| answer(e) == Answer::Unlisted)
                    .map(|e| e.id())
                    .collect();
                out.successful.retain(|s| !unlisted.contains(&s.id()));
                for s in &out.successful {
                    let entry = input.entries().iter().find(|e| e.id() == s.id()).unwrap();
                    confirmed.lock().unwrap().push(entry.message_body().to_owned());
                }
                MockResponse::Output(out)
            })
        };
        let visibility = visibility_rules();
        let [v0, v1] = &visibility;
        let input: Vec<serde_json::Value> = fates
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut r = if f.marked {
                    with_marker(record_json(i), &(NOW - 30).to_string())
                } else {
                    record_json(i)
                };
                if f.other_queue {
                    r["eventSourceARN"] = json!("arn:aws:sqs:us-east-2:123456789012:payments");
                }
                if f.no_body {
                    r.as_object_mut().unwrap().remove("body");
                }
                r
            })
            .collect();
        let outcome = runtime
            .block_on(handle(
                &queue_with(&[v0, v1, &rule]),
                &config(),
                &records(input),
                NOW,
                random_unit,
            ))
            .expect("handled");

        prop_assert_eq!(visibility_calls(&visibility), 0);
        let listed = failure_ids(&outcome.response);
        let confirmed = confirmed.lock().unwrap().clone();
        let attempts: Vec<(String, i32)> = seen
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.entries().to_vec())
            .map(|e| (e.message_body().to_owned(), e.delay_seconds().unwrap()))
            .collect();
        for (i, f) in fates.iter().enumerate() {
            let id = id(i);
            let is_listed = listed.contains(&id.as_str());
            let is_confirmed = confirmed.contains(&body(i));
            prop_assert!(is_listed != is_confirmed, "record {i} {f:?}: listed {is_listed}, confirmed {is_confirmed}");
            let tries: Vec<i32> = attempts
                .iter()
                .filter(|(b, _)| *b == body(i))
                .map(|(_, d)| *d)
                .collect();
            if f.other_queue || f.no_body {
                prop_assert!(tries.is_empty(), "record {i} {f:?} was sent");
            } else if f.marked {
                prop_assert_eq!(tries, vec![60], "record {} {:?}", i, f);
            } else {
                prop_assert_eq!(tries.len(), 1);
                prop_assert!((10..=20).contains(&tries[0]));
            }
        }
        let marked_confirmed = fates
            .iter()
            .enumerate()
            .filter(|(i, f)| f.marked && confirmed.contains(&body(*i)))
            .count();
        prop_assert_eq!(outcome.counts.resent_already_rejittered, marked_confirmed);
        prop_assert_eq!(outcome.counts.rejittered, confirmed.len());
        prop_assert_eq!(outcome.counts.failures, listed.len());
    }
}

// ---------------------------------------------------------------------------------------------
// Messages up to 1 MiB, batches up to 1 MiB.

/// Bytes SQS counts for the message attributes of a record in the shape of [`record_json`]
/// (the only binary value there is [`BLOB`], base64 in the event).
fn attribute_bytes(record: &serde_json::Value) -> usize {
    record["messageAttributes"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, a)| {
            let value = match a["stringValue"].as_str() {
                Some(s) => s.len(),
                None => {
                    assert_eq!(a["binaryValue"], "AQID/w==");
                    BLOB.len()
                }
            };
            name.len() + a["dataType"].as_str().unwrap().len() + value
        })
        .sum()
}

/// Bytes SQS counts for an entry of a `SendMessageBatch` request.
fn entry_bytes(entry: &aws_sdk_sqs::types::SendMessageBatchRequestEntry) -> usize {
    entry.message_body().len()
        + entry
            .message_attributes()
            .map(|attrs| {
                attrs
                    .iter()
                    .map(|(name, a)| {
                        name.len()
                            + a.data_type().len()
                            + a.string_value().map_or(0, str::len)
                            + a.binary_value().map_or(0, |b| b.as_ref().len())
                    })
                    .sum()
            })
            .unwrap_or(0)
}

/// Record `i` with a body of non-ASCII and ASCII text making the message exactly `total` bytes
/// with the attributes it has.
fn sized(mut record: serde_json::Value, total: usize) -> serde_json::Value {
    let room = total - attribute_bytes(&record);
    record["body"] = json!("€".repeat(room / 3) + &"x".repeat(room % 3));
    record
}

/// Record `i` with ten attributes of its own, including a Binary and a Number with a custom
/// type, so there is no slot for the marker.
fn ten_attributes(i: usize) -> serde_json::Value {
    let mut record = record_json(i);
    let attrs = record["messageAttributes"].as_object_mut().unwrap();
    for n in 0..7 {
        attrs.insert(
            format!("extra-{n}"),
            json!({"stringValue": format!("välue {n}"), "stringListValues": [],
                   "binaryListValues": [], "dataType": "String.custom"}),
        );
    }
    assert_eq!(attrs.len(), 10);
    record
}

#[tokio::test]
async fn a_one_mib_message_with_ten_attributes_is_sent_alone_and_whole() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let full = sized(ten_attributes(1), 1_048_576);
    let input = records(vec![record_json(0), full.clone(), record_json(2)]);
    let outcome = handle(&queue(&rule), &config(), &input, NOW, random_unit)
        .await
        .expect("handled");

    assert_eq!(
        rule.num_calls(),
        3,
        "one call each: the full one fills a call"
    );
    assert!(
        outcome.response.batch_item_failures.is_empty(),
        "not dropped"
    );
    assert_eq!(outcome.counts.rejittered, 3);
    let requests = seen.lock().unwrap().clone();
    let alone: Vec<_> = requests
        .iter()
        .filter(|r| r.entries()[0].message_body() == full["body"].as_str().unwrap())
        .collect();
    assert_eq!(alone.len(), 1);
    let entries = alone[0].entries();
    assert_eq!(entries.len(), 1, "alone in its call");
    assert_eq!(
        entry_bytes(&entries[0]),
        1_048_576,
        "not split, nothing added"
    );
    let attrs = entries[0].message_attributes().unwrap();
    assert_eq!(attrs.len(), 10);
    assert!(!attrs.contains_key(MARKER));
    assert_eq!(attrs["extra-3"].data_type(), "String.custom");
    assert_eq!(attrs["extra-3"].string_value(), Some("välue 3"));
    assert_eq!(
        attrs["blob"].binary_value().map(Blob::as_ref),
        Some(&BLOB[..])
    );
}

#[tokio::test]
async fn calls_are_packed_up_to_one_mib() {
    // A quarter MiB each, the marker (name, type, 10 digits) included: four fill a call.
    let marker = MARKER.len() + "String".len() + NOW.to_string().len();
    let quarter = |i| sized(record_json(i), 262_144 - marker);
    for maximum in ["1048576", "262144"] {
        let seen = Seen::default();
        let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
        let attributes = attributes_rule_with(Some(maximum));
        let input = records((0..5).map(quarter).collect());
        let outcome = handle(
            &queue_with(&[&lookup_rule(), &attributes, &rule]),
            &config(),
            &input,
            NOW,
            random_unit,
        )
        .await
        .expect("handled");
        assert!(outcome.response.batch_item_failures.is_empty());
        let requests = seen.lock().unwrap().clone();
        let mut calls: Vec<(usize, usize)> = requests
            .iter()
            .map(|r| (r.entries().len(), r.entries().iter().map(entry_bytes).sum()))
            .collect();
        calls.sort_unstable();
        // Whatever the queue's message limit, a call carries up to 1 MiB.
        assert_eq!(
            calls,
            [(1, 262_144), (4, 1_048_576)],
            "MaximumMessageSize {maximum}"
        );
        for r in &requests {
            for e in r.entries() {
                assert!(e.message_attributes().unwrap().contains_key(MARKER));
            }
        }
    }
}

#[tokio::test]
async fn the_queue_maximum_message_size_is_planned_against() {
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let attributes = attributes_rule_with(Some("262144"));
    // Fits the 256 KiB queue only without the marker; the next one does not fit at all.
    let near = sized(record_json(1), 262_144 - 5);
    let over = sized(record_json(3), 262_145);
    let input = records(vec![
        record_json(0),
        near.clone(),
        record_json(2),
        over.clone(),
    ]);
    let outcome = handle(
        &queue_with(&[&lookup_rule(), &attributes, &rule]),
        &config(),
        &input,
        NOW,
        random_unit,
    )
    .await
    .expect("handled");

    let requests = seen.lock().unwrap().clone();
    let shapes: Vec<Vec<usize>> = requests
        .iter()
        .map(|r| r.entries().iter().map(entry_bytes).collect())
        .collect();
    assert_eq!(
        shapes.iter().map(Vec::len).sum::<usize>(),
        4,
        "every record planned: {shapes:?}"
    );
    // The near one is sent without a marker; the one over the queue's limit goes alone (SQS
    // refuses it there, not its neighbours).
    let near_entry = requests
        .iter()
        .flat_map(|r| r.entries())
        .find(|e| e.message_body() == near["body"].as_str().unwrap())
        .unwrap();
    assert!(!near_entry
        .message_attributes()
        .unwrap()
        .contains_key(MARKER));
    assert_eq!(entry_bytes(near_entry), 262_144 - 5);
    let over_call = requests
        .iter()
        .find(|r| {
            r.entries()
                .iter()
                .any(|e| e.message_body() == over["body"].as_str().unwrap())
        })
        .unwrap();
    assert_eq!(over_call.entries().len(), 1);
    assert_eq!(requests.len(), 2, "the three that fit share one call");
    assert!(outcome.response.batch_item_failures.is_empty());
}

/// An attachment's queue mapped to the rejitter: its records go back to it, looked up by its
/// own name, and never to the deployment's queue.
#[tokio::test]
async fn an_attached_queues_records_go_back_to_that_queue() {
    const OTHER_ARN: &str = "arn:aws:sqs:us-east-2:123456789012:payments";
    const OTHER_URL: &str = "http://sqs.local:4566/123456789012/payments";
    let seen = Seen::default();
    let rule = rule(&seen, |input| MockResponse::Output(output(input, &[])));
    let lookup = mock!(aws_sdk_sqs::Client::get_queue_url)
        .match_requests(|input| {
            input.queue_name() == Some("payments")
                && input.queue_owner_aws_account_id() == Some("123456789012")
        })
        .then_output(|| GetQueueUrlOutput::builder().queue_url(OTHER_URL).build());
    let attributes = mock!(aws_sdk_sqs::Client::get_queue_attributes)
        .match_requests(|input| input.queue_url() == Some(OTHER_URL))
        .then_output(|| {
            GetQueueAttributesOutput::builder()
                .attributes(QueueAttributeName::MaximumMessageSize, "1048576")
                .build()
        });
    let queues = Queues::new(client_with(&[&lookup, &attributes, &rule]), &config());
    let values: Vec<_> = numbered(3)
        .into_iter()
        .map(|mut r| {
            r["eventSourceARN"] = json!(OTHER_ARN);
            r
        })
        .collect();
    let response = invoke(
        &queues,
        &config(),
        serde_json::from_value(json!({ "Records": values })).unwrap(),
    )
    .await
    .expect("handled");
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(lookup.num_calls(), 1);
    assert_eq!(
        queues.home().cached_url(),
        None,
        "the deployment's queue is not used"
    );
    let sent = seen.lock().unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].queue_url(), Some(OTHER_URL));
    assert_eq!(sent[0].entries().len(), 3);
}
