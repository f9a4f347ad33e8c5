//! Every step of the controller against mocked AWS clients: the calls it makes (and does not
//! make), the requests it sends and the circuit it returns.

mod support;

use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::operation::update_event_source_mapping::UpdateEventSourceMappingError;
use aws_sdk_lambda::types::error::{ResourceInUseException, TooManyRequestsException};
use aws_smithy_mocks::{mock, Rule};
use controller::circuit::{Circuit, OpenStatus, RejitterPhase};
use controller::core::Next;
use controller::error::StepError;
use controller::steps::{self, Request};
use serde_json::{json, Value};
use support::*;

// =============================================================================================
// open

/// Every rule the open step may use, answering as in the happy path.
struct Open {
    list: Rule,
    queue_url: Rule,
    queue_attributes: Rule,
    acquire: Rule,
    get_item: Rule,
    release: Rule,
    disable: Rule,
    get_mapping: Rule,
    function_configuration: Rule,
    oldest_age: Rule,
    put_event: Rule,
    put_metric: Rule,
}

impl Open {
    fn happy() -> Open {
        Open {
            list: list_mappings(&["Enabled"]),
            queue_url: queue_url(),
            queue_attributes: queue_attributes(),
            acquire: acquire(),
            get_item: get_item(None),
            release: release_circuit(),
            disable: disable_mapping(),
            get_mapping: get_mapping(&["Disabling", "Disabled"]),
            function_configuration: function_configuration(),
            oldest_age: oldest_age(&[]),
            put_event: put_event("Circuit Opened"),
            put_metric: put_metric("CircuitOpened"),
        }
    }

    fn mocks(&self) -> Mocks {
        Mocks {
            sqs: vec![self.queue_url.clone(), self.queue_attributes.clone()],
            lambda: vec![
                self.list.clone(),
                self.disable.clone(),
                self.get_mapping.clone(),
                self.function_configuration.clone(),
            ],
            cloudwatch: vec![self.oldest_age.clone(), self.put_metric.clone()],
            eventbridge: vec![self.put_event.clone()],
            dynamodb: vec![
                self.acquire.clone(),
                self.get_item.clone(),
                self.release.clone(),
            ],
        }
    }

    async fn run(&self, event: &Value) -> Result<Circuit, StepError> {
        self.run_with(config(&[]), event).await
    }

    async fn run_with(
        &self,
        config: controller::core::Config,
        event: &Value,
    ) -> Result<Circuit, StepError> {
        let ctx = self.mocks().context(config);
        steps::open(&ctx, event, EXECUTION).await
    }

    #[track_caller]
    fn assert_calls(&self, expected: [usize; 12]) {
        let [list, queue_url, queue_attributes, acquire, get_item, release, disable, get_mapping, function_configuration, oldest_age, put_event, put_metric] =
            expected;
        support::assert_calls(&[
            ("ListEventSourceMappings", &self.list, list),
            ("GetQueueUrl", &self.queue_url, queue_url),
            (
                "GetQueueAttributes",
                &self.queue_attributes,
                queue_attributes,
            ),
            ("UpdateItem (acquire)", &self.acquire, acquire),
            ("GetItem", &self.get_item, get_item),
            ("UpdateItem (release)", &self.release, release),
            ("UpdateEventSourceMapping (disable)", &self.disable, disable),
            ("GetEventSourceMapping", &self.get_mapping, get_mapping),
            (
                "GetFunctionConfiguration",
                &self.function_configuration,
                function_configuration,
            ),
            ("GetMetricStatistics", &self.oldest_age, oldest_age),
            ("PutEvents", &self.put_event, put_event),
            ("PutMetricData", &self.put_metric, put_metric),
        ]);
    }
}

fn alarm() -> Value {
    alarm_event(ALARM, "ALARM")
}

#[tokio::test]
async fn open_disables_the_mapping_and_opens_the_circuit() {
    let (put_event, details) = put_event_where("Circuit Opened", |d| {
        d["mapping"] == UUID
            && d["queue"] == QUEUE_ARN
            && d["function"] == FUNCTION
            && d["execution"] == EXECUTION
            && d["attempt"] == 0
    });
    let open = Open {
        put_event,
        ..Open::happy()
    };

    let circuit = open.run(&alarm()).await.expect("opened");

    // list, url, attrs, acquire, get_item, release, disable, get_mapping, timeout, age, event, metric
    open.assert_calls([1, 1, 1, 1, 0, 0, 1, 2, 1, 1, 1, 1]);
    assert_eq!(circuit.status, OpenStatus::Opened);
    assert_eq!(circuit.execution, EXECUTION);
    assert_eq!(circuit.mapping, snapshot("Enabled"));
    assert_eq!(circuit.queue_url, QUEUE_URL);
    assert_eq!(circuit.queue_arn, QUEUE_ARN);
    assert_eq!(circuit.region, REGION);
    assert_eq!(circuit.opened_at_ms, NOW_MS);
    // No datapoint: the oldest message is taken to be as old as the circuit.
    assert_eq!(circuit.oldest_sent_ms, NOW_MS);
    assert_eq!(circuit.retention_seconds, RETENTION_SECONDS);
    // The consumer's 10 s timeout plus the 30 s margin.
    assert_eq!(circuit.probe_visibility_seconds, PROBE_VISIBILITY);
    assert_eq!(circuit.attempt, 0);
    assert!(
        (1..=BACKOFF_BASE).contains(&circuit.wait_seconds),
        "wait_seconds {} outside [1, {BACKOFF_BASE}]",
        circuit.wait_seconds
    );
    assert_eq!(circuit.backoff_ceiling_seconds, BACKOFF_BASE);
    assert_eq!(circuit.next, None);
    assert!(circuit.reason.contains(ALARM) && circuit.reason.contains("Threshold Crossed"));
    let details = details.lock().unwrap();
    assert!(details[0]["reason"]
        .as_str()
        .unwrap()
        .contains("Threshold Crossed"));
}

#[tokio::test]
async fn open_anchors_the_retention_guard_on_the_oldest_message_age() {
    let open = Open {
        oldest_age: oldest_age(&[90.0, 125.4, 30.0]),
        ..Open::happy()
    };
    let circuit = open.run(&alarm()).await.expect("opened");
    assert_eq!(open.oldest_age.num_calls(), 1);
    assert_eq!(circuit.oldest_sent_ms, NOW_MS - 125_000);
}

#[tokio::test]
async fn open_refuses_invalid_events_without_calling_aws() {
    let invalid = [
        alarm_event("someone-elses-alarm", "ALARM"),
        alarm_event(ALARM, "OK"),
        alarm_event(ALARM, "INSUFFICIENT_DATA"),
        json!({}),
        json!({"detail-type": "CloudWatch Alarm State Change", "detail": {"alarmName": ALARM}}),
        json!({"detail-type": "EC2 Instance State-change Notification", "detail": {}}),
        json!("ALARM"),
    ];
    for event in invalid {
        let open = Open::happy();
        let result = open.run(&event).await;
        match &result {
            Err(e @ StepError::InvalidEvent(_)) => assert_eq!(e.name(), "InvalidEvent"),
            other => panic!("{event}: expected InvalidEvent, got {other:?}"),
        }
        open.assert_calls([0; 12]);
    }
}

#[tokio::test]
async fn open_without_a_mapping_touches_nothing() {
    let open = Open {
        list: list_mappings(&[]),
        ..Open::happy()
    };
    let err = open.run(&alarm()).await.expect_err("no mapping");
    match &err {
        StepError::MappingNotFound { queue, function } => {
            assert_eq!(queue, QUEUE_ARN);
            assert_eq!(function, FUNCTION);
        }
        other => panic!("expected MappingNotFound, got {other:?}"),
    }
    assert_eq!(err.name(), "MappingNotFound");
    open.assert_calls([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn open_with_several_mappings_touches_nothing() {
    let open = Open {
        list: list_mappings(&["Enabled", "Enabled"]),
        ..Open::happy()
    };
    let err = open.run(&alarm()).await.expect_err("two mappings");
    assert!(
        matches!(err, StepError::SeveralMappings { count: 2, .. }),
        "expected SeveralMappings, got {err:?}"
    );
    assert_eq!(err.name(), "SeveralMappings");
    open.assert_calls([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn open_reads_every_page_of_mappings() {
    // The mapping is on the second page.
    let open = Open {
        list: list_mappings_page(None, Some("page-2"), &[]),
        ..Open::happy()
    };
    let second = list_mappings_page(Some("page-2"), None, &["Enabled"]);
    let mut mocks = open.mocks();
    mocks.lambda.push(second.clone());
    let circuit = steps::open(&mocks.context(config(&[])), &alarm(), EXECUTION)
        .await
        .expect("opened");
    assert_eq!(circuit.status, OpenStatus::Opened);
    assert_eq!(second.num_calls(), 1);
    open.assert_calls([1, 1, 1, 1, 0, 0, 1, 2, 1, 1, 1, 1]);

    // One mapping on each page is two mappings.
    let open = Open {
        list: list_mappings_page(None, Some("page-2"), &["Enabled"]),
        ..Open::happy()
    };
    let second = list_mappings_page(Some("page-2"), None, &["Enabled"]);
    let mut mocks = open.mocks();
    mocks.lambda.push(second.clone());
    let err = steps::open(&mocks.context(config(&[])), &alarm(), EXECUTION)
        .await
        .expect_err("two mappings");
    assert!(
        matches!(err, StepError::SeveralMappings { count: 2, .. }),
        "{err:?}"
    );
    assert_eq!(second.num_calls(), 1);
    open.assert_calls([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn open_when_another_execution_owns_the_circuit_does_nothing() {
    let open = Open {
        acquire: acquire_held(),
        get_item: get_item(Some(("OPEN", OTHER_EXECUTION, Some(snapshot("Enabled"))))),
        list: list_mappings(&["Disabled"]),
        ..Open::happy()
    };
    let circuit = open.run(&alarm()).await.expect("already open is no error");
    assert_eq!(circuit.status, OpenStatus::AlreadyOpen);
    assert!(
        circuit.reason.contains(OTHER_EXECUTION),
        "{}",
        circuit.reason
    );
    open.assert_calls([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn open_leaves_a_mapping_disabled_by_an_operator_alone() {
    let open = Open {
        list: list_mappings(&["Disabled"]),
        ..Open::happy()
    };
    let circuit = open.run(&alarm()).await.expect("not enabled is no error");
    assert_eq!(circuit.status, OpenStatus::MappingNotEnabled);
    assert_eq!(circuit.mapping.state, "Disabled");
    // The lock was taken and given back (CLOSED, trip uncounted); the mapping never touched.
    open.assert_calls([1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn open_waits_for_a_mapping_that_is_being_updated_or_enabled() {
    for state in ["Updating", "Enabling", "Creating"] {
        let open = Open {
            list: list_mappings(&[state]),
            ..Open::happy()
        };
        let err = open.run(&alarm()).await.expect_err("not settled yet");
        match &err {
            StepError::MappingNotSettled { wanted, actual, .. } => {
                assert_eq!((wanted.as_str(), actual.as_str()), ("Enabled", state));
            }
            other => panic!("expected MappingNotSettled, got {other:?}"),
        }
        // Retried by the state machine; nothing taken or touched meanwhile.
        open.assert_calls([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
}

#[tokio::test]
async fn open_retried_after_disabling_carries_on_with_its_own_snapshot() {
    // The first attempt took the circuit and disabled the mapping, then failed; the retry
    // finds the mapping Disabled and the store naming this execution with the Enabled snapshot.
    let open = Open {
        list: list_mappings(&["Disabled"]),
        acquire: acquire_held(),
        get_item: get_item(Some(("OPEN", EXECUTION, Some(snapshot("Enabled"))))),
        get_mapping: get_mapping(&["Disabled"]),
        ..Open::happy()
    };
    let circuit = open.run(&alarm()).await.expect("opened");
    assert_eq!(circuit.status, OpenStatus::Opened);
    assert_eq!(circuit.mapping, snapshot("Enabled"));
    assert_eq!(circuit.probe_visibility_seconds, PROBE_VISIBILITY);
    open.assert_calls([1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
}

#[tokio::test]
async fn open_retried_while_the_mapping_is_still_disabling_does_not_update_it_again() {
    // The first attempt disabled the mapping but gave up waiting (MappingNotSettled, which is
    // retried). Lambda refuses to update a mapping in a transitional state, so the retry must
    // only wait.
    let open = Open {
        list: list_mappings(&["Disabling"]),
        acquire: acquire_held(),
        get_item: get_item(Some(("OPEN", EXECUTION, Some(snapshot("Enabled"))))),
        disable: disable_mapping_fails(|| {
            UpdateEventSourceMappingError::ResourceInUseException(
                ResourceInUseException::builder()
                    .message("The event source mapping is currently in a transitional state")
                    .meta(
                        aws_sdk_lambda::error::ErrorMetadata::builder()
                            .code("ResourceInUseException")
                            .build(),
                    )
                    .build(),
            )
        }),
        get_mapping: get_mapping(&["Disabling", "Disabled"]),
        ..Open::happy()
    };
    let circuit = open.run(&alarm()).await.expect("opened");
    assert_eq!(circuit.status, OpenStatus::Opened);
    open.assert_calls([1, 1, 1, 1, 1, 0, 0, 2, 1, 1, 1, 1]);
}

#[tokio::test]
async fn open_fails_when_the_mapping_does_not_settle() {
    let open = Open {
        get_mapping: get_mapping(&["Disabling"]),
        ..Open::happy()
    };
    let err = open
        .run_with(config(&[("SETTLE_TIMEOUT_SECONDS", "0")]), &alarm())
        .await
        .expect_err("not settled");
    match &err {
        StepError::MappingNotSettled {
            mapping,
            wanted,
            actual,
            seconds,
        } => {
            assert_eq!(mapping, UUID);
            assert_eq!(wanted, "Disabled");
            assert_eq!(actual, "Disabling");
            assert_eq!(*seconds, 0);
        }
        other => panic!("expected MappingNotSettled, got {other:?}"),
    }
    assert_eq!(err.name(), "MappingNotSettled");
    open.assert_calls([1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0]);
}

#[tokio::test]
async fn open_reports_throttling_as_transient() {
    let open = Open {
        disable: disable_mapping_fails(|| {
            UpdateEventSourceMappingError::TooManyRequestsException(
                TooManyRequestsException::builder()
                    .message("Rate exceeded")
                    .meta(too_many_requests_meta())
                    .build(),
            )
        }),
        ..Open::happy()
    };
    let err = open.run(&alarm()).await.expect_err("throttled");
    assert_eq!(err.name(), "Transient");
    match &err {
        StepError::Transient { operation, .. } => assert_eq!(operation, "UpdateEventSourceMapping"),
        other => panic!("expected Transient, got {other:?}"),
    }
    // Retries are off: one call, then the step fails (Step Functions retries it).
    open.assert_calls([1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn open_reports_access_denied_as_an_aws_error() {
    let open = Open {
        disable: disable_mapping_fails(|| {
            UpdateEventSourceMappingError::generic(
                aws_sdk_lambda::error::ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message("no")
                    .build(),
            )
        }),
        ..Open::happy()
    };
    let err = open.run(&alarm()).await.expect_err("denied");
    assert_eq!(err.name(), "AwsError");
    match &err {
        StepError::Aws { operation, message } => {
            assert_eq!(operation, "UpdateEventSourceMapping");
            assert!(message.contains("AccessDeniedException"), "{message}");
        }
        other => panic!("expected Aws, got {other:?}"),
    }
    open.assert_calls([1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0]);
}

// =============================================================================================
// probe

struct Probe {
    health: Rule,
    receive: Rule,
    invoke: Rule,
    delete: Rule,
    release: Rule,
    record: Rule,
    put_event: Rule,
    put_metric: Rule,
}

impl Probe {
    fn mocks(&self) -> Mocks {
        Mocks {
            sqs: vec![
                self.receive.clone(),
                self.delete.clone(),
                self.release.clone(),
                // An empty receive asks how many are hidden; by default none.
                hidden_messages("0"),
            ],
            lambda: vec![self.health.clone(), self.invoke.clone()],
            cloudwatch: vec![self.put_metric.clone()],
            eventbridge: vec![self.put_event.clone()],
            dynamodb: vec![self.record.clone()],
        }
    }

    #[track_caller]
    fn assert_calls(&self, expected: [usize; 8]) {
        let [health, receive, invoke, delete, release, record, put_event, put_metric] = expected;
        support::assert_calls(&[
            ("Invoke (health check)", &self.health, health),
            ("ReceiveMessage", &self.receive, receive),
            ("Invoke (consumer)", &self.invoke, invoke),
            ("DeleteMessage", &self.delete, delete),
            ("ChangeMessageVisibility", &self.release, release),
            ("UpdateItem (record probe)", &self.record, record),
            ("PutEvents", &self.put_event, put_event),
            ("PutMetricData", &self.put_metric, put_metric),
        ]);
    }
}

/// A rule no test expects to be used (for the health-check slot when none is configured).
fn unused_health_check() -> Rule {
    invoke(HEALTH_FUNCTION, None, "{}")
}

/// How long ago the probe message was sent: before the circuit's current anchor.
const SENT_MS: u64 = NOW_MS - 7_200_000;

/// Checks the probe event against what Lambda's SQS event source would send.
fn check_probe_event(event: &Value) -> Result<(), String> {
    let records = event["Records"].as_array().ok_or("no Records array")?;
    if records.len() != 1 {
        return Err(format!("{} records", records.len()));
    }
    let r = &records[0];
    let expect = |path: &str, want: Value| {
        let got = r.pointer(path).cloned().unwrap_or(Value::Null);
        if got == want {
            Ok(())
        } else {
            Err(format!("Records[0]{path}: got {got}, want {want}"))
        }
    };
    expect("/messageId", json!(MESSAGE_ID))?;
    expect("/receiptHandle", json!(RECEIPT))?;
    expect("/body", json!(BODY))?;
    expect("/md5OfBody", json!(MD5_OF_BODY))?;
    expect("/eventSource", json!("aws:sqs"))?;
    expect("/eventSourceARN", json!(QUEUE_ARN))?;
    expect("/awsRegion", json!(REGION))?;
    expect("/attributes/SentTimestamp", json!(SENT_MS.to_string()))?;
    expect("/attributes/ApproximateReceiveCount", json!("3"))?;
    expect("/attributes/AWSTraceHeader", json!(TRACE_HEADER))?;
    expect("/messageAttributes/customer/stringValue", json!("alice"))?;
    expect("/messageAttributes/customer/dataType", json!("String"))?;
    expect("/messageAttributes/quantity/stringValue", json!("42"))?;
    expect("/messageAttributes/quantity/dataType", json!("Number"))?;
    expect("/messageAttributes/tag/stringValue", json!("urgent"))?;
    expect("/messageAttributes/tag/dataType", json!("String.custom"))?;
    // [0, 1, 2, 255] in base64.
    expect(
        "/messageAttributes/signature/binaryValue",
        json!("AAEC/w=="),
    )?;
    expect("/messageAttributes/signature/dataType", json!("Binary"))?;
    Ok(())
}

/// The consumer's Invoke: the mapping's qualified FunctionArn and the probe event.
fn invoke_consumer(function_error: Option<&'static str>, payload: &'static str) -> Rule {
    use aws_sdk_lambda::operation::invoke::InvokeOutput;
    use aws_sdk_lambda::primitives::Blob;
    use aws_sdk_lambda::types::InvocationType;
    mock!(aws_sdk_lambda::Client::invoke)
        .match_requests(|r| {
            if r.function_name() != Some(FUNCTION_ARN)
                || r.invocation_type() != Some(&InvocationType::RequestResponse)
            {
                return false;
            }
            match check_probe_event(&invoke_payload(r)) {
                Ok(()) => true,
                Err(e) => {
                    eprintln!("probe event mismatch: {e}");
                    false
                }
            }
        })
        .then_output(move || {
            InvokeOutput::builder()
                .status_code(200)
                .set_function_error(function_error.map(str::to_string))
                .payload(Blob::new(payload))
                .build()
        })
}

fn probe_with_message(
    invoke: Rule,
    invoke_fails: bool,
    verdict: &'static str,
    event: &'static str,
    metric: &'static str,
) -> Probe {
    Probe {
        health: unused_health_check(),
        receive: receive(Some(probe_message(SENT_MS))),
        invoke,
        delete: delete_message(),
        // A failed probe's message (circuit() has made 1 probe, this is the 2nd) hides for
        // the next backoff window, min(cap, base * 2^2); a step that fails gives it back.
        release: release_message(if verdict == "Failed" && !invoke_fails {
            (BACKOFF_BASE * 4) as i32
        } else {
            0
        }),
        record: record_probe(verdict),
        put_event: put_event(event),
        put_metric: put_metric(metric),
    }
}

#[tokio::test]
async fn probe_healthy_deletes_the_message_and_closes() {
    let probe = probe_with_message(
        invoke_consumer(None, r#"{"batchItemFailures":[]}"#),
        false,
        "Healthy",
        "Probe Succeeded",
        "ProbeSucceeded",
    );
    let ctx = probe.mocks().context(config(&[]));

    let circuit = steps::probe(&ctx, circuit()).await.expect("probed");

    // health, receive, invoke, delete, release, record, event, metric
    probe.assert_calls([0, 1, 1, 1, 0, 1, 1, 1]);
    assert_eq!(circuit.next, Some(Next::Close));
    assert_eq!(circuit.last_probe, "Healthy");
    assert_eq!(circuit.attempt, 2);
    assert_eq!(circuit.oldest_sent_ms, SENT_MS);
    assert!(circuit.reason.contains(MESSAGE_ID), "{}", circuit.reason);
    assert_eq!(circuit.status, OpenStatus::Opened);
    assert_eq!(circuit.mapping, snapshot("Enabled"));
}

#[tokio::test]
async fn probe_keeps_an_older_anchor_than_the_message() {
    let probe = probe_with_message(
        invoke_consumer(None, ""),
        false,
        "Healthy",
        "Probe Succeeded",
        "ProbeSucceeded",
    );
    let ctx = probe.mocks().context(config(&[]));
    let mut older = circuit();
    older.oldest_sent_ms = SENT_MS - 1;
    let circuit = steps::probe(&ctx, older).await.expect("probed");
    assert_eq!(circuit.oldest_sent_ms, SENT_MS - 1);
    assert_eq!(circuit.next, Some(Next::Close));
}

#[tokio::test]
async fn probe_with_a_function_error_releases_the_message_and_backs_off() {
    let probe = probe_with_message(
        invoke_consumer(
            Some("Unhandled"),
            r#"{"errorType":"Error","errorMessage":"database unreachable"}"#,
        ),
        false,
        "Failed",
        "Probe Failed",
        "ProbeFailed",
    );
    let ctx = probe.mocks().context(config(&[]));

    let circuit = steps::probe(&ctx, circuit()).await.expect("probed");

    probe.assert_calls([0, 1, 1, 0, 1, 1, 1, 1]);
    assert_eq!(circuit.next, Some(Next::Backoff));
    assert_eq!(circuit.last_probe, "Failed");
    assert_eq!(circuit.attempt, 2);
    assert!(circuit.reason.contains("Unhandled"), "{}", circuit.reason);
}

#[tokio::test]
async fn probe_reported_as_a_batch_item_failure_is_failed() {
    let probe = probe_with_message(
        invoke_consumer(
            None,
            r#"{"batchItemFailures":[{"itemIdentifier":"059f36b4-87a3-44ab-83d2-661975830a7d"}]}"#,
        ),
        false,
        "Failed",
        "Probe Failed",
        "ProbeFailed",
    );
    let ctx = probe.mocks().context(config(&[]));

    let circuit = steps::probe(&ctx, circuit()).await.expect("probed");

    probe.assert_calls([0, 1, 1, 0, 1, 1, 1, 1]);
    assert_eq!(circuit.next, Some(Next::Backoff));
}

#[tokio::test]
async fn probe_releases_the_message_when_invoke_fails() {
    let invoke = mock!(aws_sdk_lambda::Client::invoke)
        .match_requests(|r| r.function_name() == Some(FUNCTION_ARN))
        .then_error(|| {
            InvokeError::TooManyRequestsException(
                TooManyRequestsException::builder()
                    .message("Rate exceeded")
                    .meta(too_many_requests_meta())
                    .build(),
            )
        });
    let probe = probe_with_message(invoke, true, "Failed", "Probe Failed", "ProbeFailed");
    let ctx = probe.mocks().context(config(&[]));

    let err = steps::probe(&ctx, circuit()).await.expect_err("throttled");

    assert_eq!(err.name(), "Transient");
    assert!(
        matches!(&err, StepError::Transient { operation, .. } if operation == "Invoke"),
        "{err:?}"
    );
    // The message is given back; nothing recorded or announced.
    probe.assert_calls([0, 1, 1, 0, 1, 0, 0, 0]);
}

fn empty_queue_probe(verdict: &'static str) -> Probe {
    Probe {
        health: unused_health_check(),
        receive: receive(None),
        invoke: invoke_consumer(None, ""),
        delete: delete_message(),
        release: release_message(0),
        record: record_probe(verdict),
        put_event: put_event("Probe Succeeded"),
        put_metric: put_metric("ProbeSucceeded"),
    }
}

#[tokio::test]
async fn probe_on_an_empty_queue_follows_the_empty_queue_policy() {
    for (policy, next) in [("close", Next::Close), ("wait", Next::Backoff)] {
        let probe = empty_queue_probe("Empty");
        let ctx = probe
            .mocks()
            .context(config(&[("EMPTY_QUEUE_POLICY", policy)]));

        let circuit = steps::probe(&ctx, circuit()).await.expect("probed");

        assert_eq!(circuit.next, Some(next), "policy {policy}");
        assert_eq!(circuit.attempt, 2);
        assert_eq!(circuit.oldest_sent_ms, NOW_MS - 3_600_000);
        // Recorded, but no event: nothing was learnt about the consumer.
        probe.assert_calls([0, 1, 0, 0, 0, 1, 0, 0]);
    }
}

#[tokio::test]
async fn probe_with_only_hidden_messages_backs_off_even_when_policy_is_close() {
    let probe = empty_queue_probe("OnlyHidden");
    let hidden = hidden_messages("3");
    let mut mocks = probe.mocks();
    mocks.sqs.insert(0, hidden.clone());
    let ctx = mocks.context(config(&[("EMPTY_QUEUE_POLICY", "close")]));

    let circuit = steps::probe(&ctx, circuit()).await.expect("probed");

    assert_eq!(circuit.next, Some(Next::Backoff));
    assert_eq!(circuit.last_probe, "OnlyHidden");
    assert!(
        circuit.reason.contains("6 in flight or delayed"),
        "{}",
        circuit.reason
    );
    assert_eq!(hidden.num_calls(), 1);
    probe.assert_calls([0, 1, 0, 0, 0, 1, 0, 0]);
}

#[tokio::test]
async fn probe_with_a_failing_health_check_backs_off_without_receiving() {
    let health = mock!(aws_sdk_lambda::Client::invoke)
        .match_requests(|r| {
            r.function_name() == Some(HEALTH_FUNCTION) && invoke_payload(r) == json!({})
        })
        .then_output(|| {
            aws_sdk_lambda::operation::invoke::InvokeOutput::builder()
                .status_code(200)
                .function_error("Unhandled")
                .payload(aws_sdk_lambda::primitives::Blob::new(
                    r#"{"errorMessage":"db down"}"#,
                ))
                .build()
        });
    let probe = Probe {
        health,
        record: record_probe("HealthCheckFailed"),
        put_event: put_event("Probe Failed"),
        put_metric: put_metric("ProbeFailed"),
        ..empty_queue_probe("HealthCheckFailed")
    };
    let ctx = probe.mocks().context(config(&[
        ("HEALTH_CHECK_FUNCTION", HEALTH_FUNCTION),
        ("EMPTY_QUEUE_POLICY", "health-check"),
    ]));

    let circuit = steps::probe(&ctx, circuit()).await.expect("probed");

    assert_eq!(circuit.next, Some(Next::Backoff));
    assert!(
        circuit.reason.contains(HEALTH_FUNCTION),
        "{}",
        circuit.reason
    );
    probe.assert_calls([1, 0, 0, 0, 0, 1, 1, 1]);
}

#[tokio::test]
async fn probe_with_a_passing_health_check_and_an_empty_queue_closes() {
    let probe = Probe {
        health: invoke(HEALTH_FUNCTION, None, "null"),
        ..empty_queue_probe("HealthCheckPassed")
    };
    let ctx = probe.mocks().context(config(&[
        ("HEALTH_CHECK_FUNCTION", HEALTH_FUNCTION),
        ("EMPTY_QUEUE_POLICY", "health-check"),
    ]));

    let circuit = steps::probe(&ctx, circuit()).await.expect("probed");

    assert_eq!(circuit.next, Some(Next::Close));
    probe.assert_calls([1, 1, 0, 0, 0, 1, 1, 1]);
}

#[tokio::test]
async fn probe_past_the_retention_deadline_gives_up_without_touching_the_queue() {
    let probe = probe_with_message(
        invoke_consumer(None, ""),
        false,
        "Healthy",
        "Probe Succeeded",
        "ProbeSucceeded",
    );
    let open = circuit();
    let deadline = open.oldest_sent_ms + u64::from(RETENTION_SECONDS - MARGIN_SECONDS) * 1000;

    for now in [deadline, deadline + 1, deadline + 86_400_000] {
        let ctx = probe.mocks().context_with(config(&[]), now, RANDOM);
        let circuit = steps::probe(&ctx, open.clone()).await.expect("gave up");
        assert_eq!(circuit.next, Some(Next::GiveUp), "now {now}");
        assert_eq!(circuit.attempt, open.attempt, "no probe was made");
        assert!(circuit.reason.contains("retention"), "{}", circuit.reason);
    }
    probe.assert_calls([0; 8]);
}

#[tokio::test]
async fn probe_healthy_with_a_rejitter_spreads_the_backlog_first() {
    let probe = probe_with_message(
        invoke_consumer(None, r#"{"batchItemFailures":[]}"#),
        false,
        "Healthy",
        "Probe Succeeded",
        "ProbeSucceeded",
    );
    let ctx = probe.mocks().context(rejitter_config(&[]));

    let circuit = steps::probe(&ctx, circuit()).await.expect("probed");

    // The probe message is still deleted: only the backlog is left to the rejitter.
    probe.assert_calls([0, 1, 1, 1, 0, 1, 1, 1]);
    assert_eq!(circuit.next, Some(Next::Rejitter));
    assert_eq!(circuit.rejitter, None, "the phase starts in StartRejitter");
}

#[tokio::test]
async fn probe_on_an_empty_queue_with_a_rejitter_closes() {
    let probe = empty_queue_probe("Empty");
    let ctx = probe.mocks().context(rejitter_config(&[]));

    let circuit = steps::probe(&ctx, circuit()).await.expect("probed");

    // Nothing to spread.
    assert_eq!(circuit.next, Some(Next::Close));
    probe.assert_calls([0, 1, 0, 0, 0, 1, 0, 0]);
}

#[tokio::test]
async fn probe_failed_with_a_rejitter_still_backs_off() {
    let probe = probe_with_message(
        invoke_consumer(Some("Unhandled"), r#"{"errorMessage":"db down"}"#),
        false,
        "Failed",
        "Probe Failed",
        "ProbeFailed",
    );
    let ctx = probe.mocks().context(rejitter_config(&[]));
    let circuit = steps::probe(&ctx, circuit()).await.expect("probed");
    assert_eq!(circuit.next, Some(Next::Backoff));
    probe.assert_calls([0, 1, 1, 0, 1, 1, 1, 1]);
}

// =============================================================================================
// backoff

#[tokio::test]
async fn backoff_gives_up_when_attempts_are_exhausted() {
    let ctx = Mocks::default().context(config(&[("MAX_PROBE_ATTEMPTS", "3")]));
    let mut exhausted = circuit();
    exhausted.attempt = 3;
    let circuit = steps::backoff(&ctx, exhausted).await.expect("decided");
    assert_eq!(circuit.next, Some(Next::GiveUp));
    assert!(circuit.reason.contains("3 probes"), "{}", circuit.reason);
}

#[tokio::test]
async fn backoff_gives_up_before_the_execution_history_fills_up() {
    let ctx = Mocks::default().context(config(&[]));
    let mut long = circuit();
    long.attempt = steps::MAX_PROBES_PER_EXECUTION - 1;
    let circuit = steps::backoff(&ctx, long.clone()).await.expect("decided");
    assert_eq!(
        circuit.next,
        Some(Next::Backoff),
        "unlimited attempts keep probing"
    );
    long.attempt = steps::MAX_PROBES_PER_EXECUTION;
    let circuit = steps::backoff(&ctx, long).await.expect("decided");
    assert_eq!(circuit.next, Some(Next::GiveUp));
    assert!(circuit.reason.contains("history"), "{}", circuit.reason);
}

#[tokio::test]
async fn backoff_gives_up_when_open_too_long() {
    let ctx = Mocks::default().context(config(&[("MAX_OPEN_SECONDS", "600")]));
    // Opened exactly 600 s ago.
    let circuit = steps::backoff(&ctx, circuit()).await.expect("decided");
    assert_eq!(circuit.next, Some(Next::GiveUp));
}

#[tokio::test]
async fn backoff_waits_no_longer_than_the_cap() {
    for (attempt, random, want, ceiling) in [
        (1, 0.5, 5, 10),
        (2, 1.0, 20, 20),
        (3, 0.999, 40, 40),
        (5, 1.0, BACKOFF_CAP, BACKOFF_CAP),
        (30, 1.0, BACKOFF_CAP, BACKOFF_CAP),
        (4, 0.0, 1, BACKOFF_CAP),
    ] {
        let ctx =
            Mocks::default().context_with(config(&[("MAX_PROBE_ATTEMPTS", "100")]), NOW_MS, random);
        let mut failed = circuit();
        failed.attempt = attempt;
        let circuit = steps::backoff(&ctx, failed).await.expect("decided");
        assert_eq!(circuit.next, Some(Next::Backoff));
        assert_eq!(
            circuit.wait_seconds, want,
            "attempt {attempt}, random {random}"
        );
        assert!((1..=BACKOFF_CAP).contains(&circuit.wait_seconds));
        // The window the wait was drawn from, which the console and the demo show.
        assert_eq!(
            circuit.backoff_ceiling_seconds, ceiling,
            "attempt {attempt}"
        );
        assert_eq!(circuit.attempt, attempt, "backoff does not count probes");
    }
}

#[tokio::test]
async fn backoff_never_waits_past_the_retention_deadline() {
    let headroom_ms = u64::from(RETENTION_SECONDS - MARGIN_SECONDS) * 1000;
    for (left_ms, want) in [(7_500, 7), (500, 1), (0, 1)] {
        let mut failed = circuit();
        failed.attempt = 10;
        failed.oldest_sent_ms = NOW_MS + left_ms - headroom_ms;
        let ctx = Mocks::default().context_with(config(&[]), NOW_MS, 1.0);
        let circuit = steps::backoff(&ctx, failed).await.expect("decided");
        assert_eq!(circuit.next, Some(Next::Backoff));
        assert_eq!(circuit.wait_seconds, want, "{left_ms} ms left");
    }
}

// =============================================================================================
// rejitter

/// Every rule the rejitter steps may use.
struct Rejitter {
    list: Rule,
    enable: Rule,
    disable: Rule,
    get_mapping: Rule,
    visible: Rule,
}

impl Rejitter {
    fn new(listed: &str, states: &[&str], visible: &'static str) -> Rejitter {
        Rejitter {
            list: list_rejitter_mappings(&[listed]),
            enable: switch_rejitter(true),
            disable: switch_rejitter(false),
            get_mapping: get_rejitter_mapping(states),
            visible: visible_messages(visible),
        }
    }

    fn mocks(&self) -> Mocks {
        Mocks {
            sqs: vec![self.visible.clone()],
            lambda: vec![
                self.list.clone(),
                self.enable.clone(),
                self.disable.clone(),
                self.get_mapping.clone(),
            ],
            ..Mocks::default()
        }
    }

    #[track_caller]
    fn assert_calls(&self, expected: [usize; 5]) {
        let [list, enable, disable, get_mapping, visible] = expected;
        support::assert_calls(&[
            ("ListEventSourceMappings (rejitter)", &self.list, list),
            ("UpdateEventSourceMapping (enable)", &self.enable, enable),
            ("UpdateEventSourceMapping (disable)", &self.disable, disable),
            ("GetEventSourceMapping", &self.get_mapping, get_mapping),
            ("GetQueueAttributes", &self.visible, visible),
        ]);
    }
}

fn after_healthy_probe() -> Circuit {
    Circuit {
        attempt: 2,
        next: Some(Next::Rejitter),
        reason: "message processed".into(),
        ..circuit()
    }
}

#[tokio::test]
async fn start_rejitter_enables_the_rejitter_mapping_and_starts_the_phase() {
    let rejitter = Rejitter::new("Disabled", &["Enabling", "Enabled"], "0");
    let ctx = rejitter.mocks().context(rejitter_config(&[]));
    let healthy = after_healthy_probe();

    let circuit = steps::start_rejitter(&ctx, healthy.clone())
        .await
        .expect("started");

    // list, enable, disable, get_mapping, visible
    rejitter.assert_calls([1, 1, 0, 2, 0]);
    assert_eq!(
        circuit.rejitter,
        Some(RejitterPhase {
            mapping: REJITTER_UUID.into(),
            started_at_ms: NOW_MS,
            empty_readings: 0,
        })
    );
    assert_eq!(
        circuit,
        Circuit {
            next: None,
            rejitter: circuit.rejitter.clone(),
            ..healthy
        },
        "nothing else changes"
    );
}

#[tokio::test]
async fn start_rejitter_retried_on_a_switching_mapping_only_waits() {
    for (state, updates) in [("Enabling", 0), ("Enabled", 1)] {
        let rejitter = Rejitter::new(state, &["Enabled"], "0");
        let ctx = rejitter.mocks().context(rejitter_config(&[]));
        let circuit = steps::start_rejitter(&ctx, after_healthy_probe())
            .await
            .expect("started");
        // An Enabled mapping is asked again (idempotent); one mid-switch would refuse.
        rejitter.assert_calls([1, updates, 0, 1, 0]);
        assert_eq!(
            circuit.rejitter.map(|p| p.mapping).as_deref(),
            Some(REJITTER_UUID),
            "{state}"
        );
    }
}

#[tokio::test]
async fn start_rejitter_without_a_rejitter_function_is_a_configuration_error() {
    let rejitter = Rejitter::new("Disabled", &["Enabled"], "0");
    let ctx = rejitter.mocks().context(config(&[]));

    let err = steps::start_rejitter(&ctx, after_healthy_probe())
        .await
        .expect_err("no rejitter");

    assert!(matches!(err, StepError::Config(_)), "{err:?}");
    assert_eq!(err.name(), "ConfigError");
    rejitter.assert_calls([0; 5]);
}

#[tokio::test]
async fn start_rejitter_fails_when_the_mapping_does_not_settle() {
    let rejitter = Rejitter::new("Disabled", &["Enabling"], "0");
    let ctx = rejitter
        .mocks()
        .context(rejitter_config(&[("SETTLE_TIMEOUT_SECONDS", "0")]));
    let err = steps::start_rejitter(&ctx, after_healthy_probe())
        .await
        .expect_err("not settled");
    assert!(
        matches!(&err, StepError::MappingNotSettled { mapping, wanted, .. }
            if mapping == REJITTER_UUID && wanted == "Enabled"),
        "{err:?}"
    );
    rejitter.assert_calls([1, 1, 0, 1, 0]);
}

#[tokio::test]
async fn check_backlog_closes_on_the_second_empty_reading() {
    let rejitter = Rejitter::new("Enabled", &["Enabled"], "0");
    let ctx = rejitter.mocks().context(rejitter_config(&[]));
    let phase = rejittering(NOW_MS - 10_000, 1);

    let circuit = steps::check_backlog(&ctx, phase.clone())
        .await
        .expect("checked");

    rejitter.assert_calls([0, 0, 0, 0, 1]);
    assert_eq!(circuit.next, Some(Next::Close));
    let got = circuit.rejitter.clone().expect("still in the phase");
    assert_eq!(got.empty_readings, 2);
    assert_eq!(got.mapping, REJITTER_UUID);
    assert_eq!(got.started_at_ms, NOW_MS - 10_000);
    assert!(
        circuit.reason.contains("0 messages visible"),
        "{}",
        circuit.reason
    );
}

#[tokio::test]
async fn check_backlog_waits_while_messages_are_visible() {
    for empty_readings in [0, 1] {
        let rejitter = Rejitter::new("Enabled", &["Enabled"], "5");
        let ctx = rejitter.mocks().context(rejitter_config(&[]));

        let circuit = steps::check_backlog(&ctx, rejittering(NOW_MS - 10_000, empty_readings))
            .await
            .expect("checked");

        rejitter.assert_calls([0, 0, 0, 0, 1]);
        assert_eq!(circuit.next, Some(Next::WaitForBacklog));
        assert_eq!(circuit.rejitter.map(|p| p.empty_readings), Some(0));
        assert!(
            circuit.reason.contains("5 messages visible"),
            "{}",
            circuit.reason
        );
    }
}

#[tokio::test]
async fn check_backlog_waits_after_a_single_empty_reading() {
    let rejitter = Rejitter::new("Enabled", &["Enabled"], "0");
    let ctx = rejitter.mocks().context(rejitter_config(&[]));
    let circuit = steps::check_backlog(&ctx, rejittering(NOW_MS - 10_000, 0))
        .await
        .expect("checked");
    assert_eq!(circuit.next, Some(Next::WaitForBacklog));
    assert_eq!(circuit.rejitter.map(|p| p.empty_readings), Some(1));
}

#[tokio::test]
async fn check_backlog_closes_past_the_time_limit_even_with_a_backlog() {
    let limit_ms = u64::from(REJITTER_MAX_SECONDS) * 1000;
    for (elapsed_ms, next) in [
        (limit_ms, Next::Close),
        (limit_ms + 1, Next::Close),
        (limit_ms - 1, Next::WaitForBacklog),
    ] {
        let rejitter = Rejitter::new("Enabled", &["Enabled"], "5");
        let ctx = rejitter.mocks().context(rejitter_config(&[]));
        let circuit = steps::check_backlog(&ctx, rejittering(NOW_MS - elapsed_ms, 0))
            .await
            .expect("checked");
        assert_eq!(circuit.next, Some(next), "{elapsed_ms} ms in");
        assert_eq!(circuit.rejitter.map(|p| p.empty_readings), Some(0));
    }
}

#[tokio::test]
async fn check_backlog_without_a_rejitter_phase_is_fatal() {
    let rejitter = Rejitter::new("Enabled", &["Enabled"], "0");
    let ctx = rejitter.mocks().context(rejitter_config(&[]));
    let err = steps::check_backlog(&ctx, after_healthy_probe())
        .await
        .expect_err("no phase");
    assert!(matches!(err, StepError::Fatal(_)), "{err:?}");
    assert_eq!(err.name(), "Fatal");
    support::assert_calls(&[
        ("ListEventSourceMappings (rejitter)", &rejitter.list, 0),
        ("UpdateEventSourceMapping (enable)", &rejitter.enable, 0),
        ("UpdateEventSourceMapping (disable)", &rejitter.disable, 0),
        ("GetEventSourceMapping", &rejitter.get_mapping, 0),
    ]);
}

#[tokio::test]
async fn check_backlog_without_a_count_is_fatal() {
    let rejitter = Rejitter {
        visible: visible_messages("lots"),
        ..Rejitter::new("Enabled", &["Enabled"], "0")
    };
    let ctx = rejitter.mocks().context(rejitter_config(&[]));
    let err = steps::check_backlog(&ctx, rejittering(NOW_MS - 10_000, 1))
        .await
        .expect_err("no count");
    assert!(matches!(err, StepError::Fatal(_)), "{err:?}");
}

#[tokio::test]
async fn stop_rejitter_disables_the_phases_mapping_and_waits() {
    let rejitter = Rejitter::new("Enabled", &["Disabling", "Disabled"], "0");
    let ctx = rejitter.mocks().context(rejitter_config(&[]));
    let mut spread = rejittering(NOW_MS - 30_000, 2);
    spread.next = Some(Next::Close);

    let circuit = steps::stop_rejitter(&ctx, spread.clone())
        .await
        .expect("stopped");

    // No lookup: the phase names the mapping.
    rejitter.assert_calls([0, 0, 1, 2, 0]);
    assert_eq!(
        circuit, spread,
        "the circuit goes on to CloseCircuit as it was"
    );
}

#[tokio::test]
async fn stop_rejitter_without_a_rejitter_phase_touches_nothing() {
    let rejitter = Rejitter::new("Enabled", &["Disabled"], "0");
    let ctx = rejitter.mocks().context(rejitter_config(&[]));
    let err = steps::stop_rejitter(&ctx, after_healthy_probe())
        .await
        .expect_err("no phase");
    assert!(matches!(err, StepError::Fatal(_)), "{err:?}");
    rejitter.assert_calls([0; 5]);
}

#[tokio::test]
async fn rejitter_requests_parse_and_run() {
    let phase = serde_json::to_value(rejittering(NOW_MS - 10_000, 1)).unwrap();
    for (step, name) in [
        ("start_rejitter", "start_rejitter"),
        ("check_backlog", "check_backlog"),
        ("stop_rejitter", "stop_rejitter"),
    ] {
        let request: Request = serde_json::from_value(json!({"step": step, "circuit": phase}))
            .unwrap_or_else(|e| panic!("{step}: {e}"));
        assert_eq!(request.name(), name);
        assert_eq!(request.execution(), EXECUTION);
    }
    // A circuit from before the rejitter existed still parses.
    let mut old = serde_json::to_value(circuit()).unwrap();
    old.as_object_mut().unwrap().remove("rejitter");
    let back: Circuit = serde_json::from_value(old).expect("parses");
    assert_eq!(back.rejitter, None);

    let rejitter = Rejitter::new("Enabled", &["Enabled"], "0");
    let ctx = rejitter.mocks().context(rejitter_config(&[]));
    let value = steps::run(
        &ctx,
        Request::CheckBacklog {
            circuit: rejittering(NOW_MS - 10_000, 1),
        },
    )
    .await
    .expect("ran");
    assert_eq!(value["next"], "Close");
    assert_eq!(value["rejitter"]["mapping"], REJITTER_UUID);
    assert_eq!(value["rejitter"]["empty_readings"], 2);
}

// =============================================================================================
// close and give up

struct Close {
    restore: Rule,
    get_mapping: Rule,
    reset_alarm: Rule,
    finish: Rule,
    get_item: Rule,
    put_event: Rule,
    put_metric: Rule,
}

impl Close {
    fn new(finish_state: &'static str, event: &'static str, metric: &'static str) -> Close {
        Close {
            restore: restore_mapping(),
            get_mapping: get_mapping(&["Enabling", "Enabled"]),
            reset_alarm: reset_alarm(),
            finish: finish(finish_state),
            get_item: get_item(Some(("OPEN", EXECUTION, Some(snapshot("Enabled"))))),
            put_event: put_event(event),
            put_metric: put_metric(metric),
        }
    }

    fn mocks(&self) -> Mocks {
        Mocks {
            sqs: vec![],
            lambda: vec![self.restore.clone(), self.get_mapping.clone()],
            cloudwatch: vec![self.reset_alarm.clone(), self.put_metric.clone()],
            eventbridge: vec![self.put_event.clone()],
            dynamodb: vec![self.finish.clone(), self.get_item.clone()],
        }
    }

    #[track_caller]
    fn assert_calls(&self, expected: [usize; 7]) {
        let [restore, get_mapping, reset_alarm, finish, get_item, put_event, put_metric] = expected;
        support::assert_calls(&[
            ("UpdateEventSourceMapping (restore)", &self.restore, restore),
            ("GetEventSourceMapping", &self.get_mapping, get_mapping),
            ("SetAlarmState", &self.reset_alarm, reset_alarm),
            ("UpdateItem (finish)", &self.finish, finish),
            ("GetItem", &self.get_item, get_item),
            ("PutEvents", &self.put_event, put_event),
            ("PutMetricData", &self.put_metric, put_metric),
        ]);
    }
}

#[tokio::test]
async fn close_restores_the_mapping_and_releases_the_circuit() {
    let close = Close::new("CLOSED", "Circuit Closed", "CircuitClosed");
    let ctx = close.mocks().context(config(&[]));
    let mut healthy = circuit();
    healthy.next = Some(Next::Close);

    let circuit = steps::close(&ctx, healthy.clone()).await.expect("closed");

    close.assert_calls([1, 2, 1, 1, 1, 1, 1]);
    assert_eq!(circuit.next, None);
    assert_eq!(
        Circuit {
            next: None,
            ..healthy
        },
        circuit
    );
}

#[tokio::test]
async fn close_fails_when_another_execution_owns_the_circuit() {
    let close = Close {
        finish: finish_not_owner("CLOSED"),
        get_item: get_item(Some(("OPEN", OTHER_EXECUTION, Some(snapshot("Enabled"))))),
        ..Close::new("CLOSED", "Circuit Closed", "CircuitClosed")
    };
    let ctx = close.mocks().context(config(&[]));

    let err = steps::close(&ctx, circuit()).await.expect_err("not owner");

    match &err {
        StepError::NotOwner { mapping, owner } => {
            assert_eq!(mapping, UUID);
            assert_eq!(owner, OTHER_EXECUTION);
        }
        other => panic!("expected NotOwner, got {other:?}"),
    }
    assert_eq!(err.name(), "NotOwner");
    // Ownership is checked before the mapping is touched.
    close.assert_calls([0, 0, 0, 0, 1, 0, 0]);
}

#[tokio::test]
async fn give_up_with_restore_reenables_the_consumer() {
    let close = Close::new("CLOSED", "Circuit Gave Up", "CircuitGaveUp");
    let ctx = close
        .mocks()
        .context(config(&[("GIVE_UP_POLICY", "restore")]));

    let circuit = steps::give_up(&ctx, circuit()).await.expect("gave up");

    close.assert_calls([1, 2, 1, 1, 1, 1, 1]);
    assert!(
        circuit.reason.contains("give-up policy: restore"),
        "{}",
        circuit.reason
    );
}

#[tokio::test]
async fn give_up_with_leave_open_keeps_the_consumer_off() {
    let close = Close::new("GAVE_UP", "Circuit Gave Up", "CircuitGaveUp");
    let ctx = close
        .mocks()
        .context(config(&[("GIVE_UP_POLICY", "leave-open")]));

    let circuit = steps::give_up(&ctx, circuit()).await.expect("gave up");

    // No restore, no alarm reset: the mapping stays disabled for an operator.
    close.assert_calls([0, 0, 0, 1, 0, 1, 1]);
    assert!(
        circuit.reason.contains("give-up policy: leave-open"),
        "{}",
        circuit.reason
    );
}

// =============================================================================================
// failsafe

struct Failsafe {
    list: Rule,
    get_item: Rule,
    restore: Rule,
    get_mapping: Rule,
    finish: Rule,
    put_event: Rule,
    details: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    put_metric: Rule,
}

impl Failsafe {
    fn new(record: Option<(&str, &str, Option<controller::circuit::MappingSnapshot>)>) -> Failsafe {
        let (put_event, details) = put_event_where("Circuit Gave Up", |d| {
            d["mapping"] == UUID
                && d["queue"] == QUEUE_ARN
                && d["function"] == FUNCTION
                && d["execution"] == EXECUTION
        });
        Failsafe {
            list: list_mappings(&["Disabled"]),
            get_item: get_item(record),
            restore: restore_mapping(),
            get_mapping: get_mapping(&["Enabled"]),
            finish: finish("CLOSED"),
            put_event,
            details,
            put_metric: put_metric("CircuitGaveUp"),
        }
    }

    fn mocks(&self) -> Mocks {
        Mocks {
            sqs: vec![],
            lambda: vec![
                self.list.clone(),
                self.restore.clone(),
                self.get_mapping.clone(),
            ],
            cloudwatch: vec![self.put_metric.clone()],
            eventbridge: vec![self.put_event.clone()],
            dynamodb: vec![self.get_item.clone(), self.finish.clone()],
        }
    }

    #[track_caller]
    fn assert_calls(&self, expected: [usize; 7]) {
        let [list, get_item, restore, get_mapping, finish, put_event, put_metric] = expected;
        support::assert_calls(&[
            ("ListEventSourceMappings", &self.list, list),
            ("GetItem", &self.get_item, get_item),
            ("UpdateEventSourceMapping (restore)", &self.restore, restore),
            ("GetEventSourceMapping", &self.get_mapping, get_mapping),
            ("UpdateItem (finish)", &self.finish, finish),
            ("PutEvents", &self.put_event, put_event),
            ("PutMetricData", &self.put_metric, put_metric),
        ]);
    }
}

fn caught_error() -> Value {
    json!({"Error": "MappingNotSettled", "Cause": "mapping is Disabling, still not Disabled after 60s"})
}

#[tokio::test]
async fn failsafe_restores_the_consumer_this_execution_disabled() {
    // The stored snapshot is what gets restored, not the mapping as it is now.
    let failsafe = Failsafe::new(Some(("OPEN", EXECUTION, Some(snapshot("Enabled")))));
    let ctx = failsafe.mocks().context(config(&[]));

    let result = steps::failsafe(&ctx, EXECUTION, &caught_error())
        .await
        .expect("failsafe");

    assert_eq!(result["restored"], true);
    failsafe.assert_calls([1, 1, 1, 1, 1, 1, 1]);
    let details = failsafe.details.lock().unwrap();
    let reason = details[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("still not Disabled") && reason.contains("restored"),
        "{reason}"
    );
}

#[tokio::test]
async fn failsafe_leaves_another_executions_circuit_alone_but_alerts() {
    let failsafe = Failsafe::new(Some(("OPEN", OTHER_EXECUTION, Some(snapshot("Enabled")))));
    let ctx = failsafe.mocks().context(config(&[]));

    let result = steps::failsafe(&ctx, EXECUTION, &caught_error())
        .await
        .expect("failsafe");

    assert_eq!(result["restored"], false);
    failsafe.assert_calls([1, 1, 0, 0, 0, 1, 1]);
}

#[tokio::test]
async fn failsafe_does_not_restore_a_closed_or_given_up_circuit() {
    for state in ["CLOSED", "GAVE_UP"] {
        let failsafe = Failsafe::new(Some((state, EXECUTION, Some(snapshot("Enabled")))));
        let ctx = failsafe.mocks().context(config(&[]));
        let result = steps::failsafe(&ctx, EXECUTION, &json!({}))
            .await
            .expect("failsafe");
        assert_eq!(result["restored"], false, "{state}");
        failsafe.assert_calls([1, 1, 0, 0, 0, 1, 1]);
    }
}

#[tokio::test]
async fn failsafe_without_a_single_mapping_still_alerts() {
    let (put_event, _) = put_event_where("Circuit Gave Up", |d| {
        d["mapping"] == "" && d["execution"] == EXECUTION
    });
    let failsafe = Failsafe {
        list: list_mappings(&[]),
        put_event,
        ..Failsafe::new(None)
    };
    let ctx = failsafe.mocks().context(config(&[]));
    let result = steps::failsafe(&ctx, EXECUTION, &Value::Null)
        .await
        .expect("failsafe");
    assert_eq!(result["restored"], false);
    failsafe.assert_calls([1, 0, 0, 0, 0, 1, 1]);
}

/// Records every UpdateEventSourceMapping and GetEventSourceMapping in order, matching none:
/// put first among the Lambda rules, it sees each request before the rule that answers it.
fn lambda_spies() -> (Vec<Rule>, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let updates = log.clone();
    let gets = log.clone();
    let spies = vec![
        mock!(aws_sdk_lambda::Client::update_event_source_mapping)
            .match_requests(move |r| {
                updates.lock().unwrap().push(format!(
                    "update {} enabled={:?}",
                    r.uuid().unwrap_or_default(),
                    r.enabled()
                ));
                false
            })
            .then_output(|| unreachable!("the spy matches nothing")),
        mock!(aws_sdk_lambda::Client::get_event_source_mapping)
            .match_requests(move |r| {
                gets.lock()
                    .unwrap()
                    .push(format!("get {}", r.uuid().unwrap_or_default()));
                false
            })
            .then_output(|| unreachable!("the spy matches nothing")),
    ];
    (spies, log)
}

/// The failsafe's rules plus the rejitter's, behind the spies.
fn failsafe_with_rejitter(
    failsafe: &Failsafe,
    rejitter: &[&Rule],
) -> (Mocks, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let (spies, log) = lambda_spies();
    let mut mocks = failsafe.mocks();
    mocks.lambda = spies
        .into_iter()
        .chain(mocks.lambda)
        .chain(rejitter.iter().map(|r| (*r).clone()))
        .collect();
    (mocks, log)
}

#[tokio::test]
async fn failsafe_switches_the_rejitter_off_before_restoring_the_consumer() {
    let failsafe = Failsafe::new(Some(("OPEN", EXECUTION, Some(snapshot("Enabled")))));
    let list = list_rejitter_mappings(&["Enabled"]);
    let disable = switch_rejitter(false);
    let get = get_rejitter_mapping(&["Disabling", "Disabled"]);
    let (mocks, log) = failsafe_with_rejitter(&failsafe, &[&list, &disable, &get]);
    let ctx = mocks.context(rejitter_config(&[]));

    let result = steps::failsafe(&ctx, EXECUTION, &caught_error())
        .await
        .expect("failsafe");

    assert_eq!(result["restored"], true);
    failsafe.assert_calls([1, 1, 1, 1, 1, 1, 1]);
    support::assert_calls(&[
        ("ListEventSourceMappings (rejitter)", &list, 1),
        ("UpdateEventSourceMapping (rejitter off)", &disable, 1),
        ("GetEventSourceMapping (rejitter)", &get, 2),
    ]);
    assert_eq!(
        *log.lock().unwrap(),
        [
            format!("update {REJITTER_UUID} enabled=Some(false)"),
            format!("get {REJITTER_UUID}"),
            format!("get {REJITTER_UUID}"),
            format!("update {UUID} enabled=Some(true)"),
            format!("get {UUID}"),
        ]
    );
}

#[tokio::test]
async fn failsafe_leaves_a_rejitter_that_is_off_alone() {
    let failsafe = Failsafe::new(Some(("OPEN", EXECUTION, Some(snapshot("Enabled")))));
    let list = list_rejitter_mappings(&["Disabled"]);
    let disable = switch_rejitter(false);
    let get = get_rejitter_mapping(&["Disabled"]);
    let (mocks, log) = failsafe_with_rejitter(&failsafe, &[&list, &disable, &get]);
    let ctx = mocks.context(rejitter_config(&[]));

    let result = steps::failsafe(&ctx, EXECUTION, &caught_error())
        .await
        .expect("failsafe");

    assert_eq!(result["restored"], true);
    failsafe.assert_calls([1, 1, 1, 1, 1, 1, 1]);
    support::assert_calls(&[
        ("ListEventSourceMappings (rejitter)", &list, 1),
        ("UpdateEventSourceMapping (rejitter off)", &disable, 0),
        ("GetEventSourceMapping (rejitter)", &get, 0),
    ]);
    assert_eq!(
        *log.lock().unwrap(),
        [
            format!("update {UUID} enabled=Some(true)"),
            format!("get {UUID}"),
        ]
    );
}

#[tokio::test]
async fn failsafe_on_another_executions_circuit_does_not_touch_the_rejitter() {
    let failsafe = Failsafe::new(Some(("OPEN", OTHER_EXECUTION, Some(snapshot("Enabled")))));
    let list = list_rejitter_mappings(&["Enabled"]);
    let disable = switch_rejitter(false);
    let get = get_rejitter_mapping(&["Disabled"]);
    let (mocks, _) = failsafe_with_rejitter(&failsafe, &[&list, &disable, &get]);
    let ctx = mocks.context(rejitter_config(&[]));

    let result = steps::failsafe(&ctx, EXECUTION, &caught_error())
        .await
        .expect("failsafe");

    assert_eq!(result["restored"], false);
    failsafe.assert_calls([1, 1, 0, 0, 0, 1, 1]);
    support::assert_calls(&[
        ("ListEventSourceMappings (rejitter)", &list, 0),
        ("UpdateEventSourceMapping (rejitter off)", &disable, 0),
        ("GetEventSourceMapping (rejitter)", &get, 0),
    ]);
}

#[tokio::test]
async fn failsafe_restores_the_consumer_when_the_rejitter_has_no_single_mapping() {
    // StartRejitter failing with MappingNotFound (or SeveralMappings) for the rejitter lands
    // here: the consumer must still come back.
    for states in [&[][..], &["Enabled", "Enabled"][..]] {
        let failsafe = Failsafe::new(Some(("OPEN", EXECUTION, Some(snapshot("Enabled")))));
        let list = list_rejitter_mappings(states);
        let (mocks, _) = failsafe_with_rejitter(&failsafe, &[&list]);
        let ctx = mocks.context(rejitter_config(&[]));

        let result = steps::failsafe(&ctx, EXECUTION, &caught_error())
            .await
            .unwrap_or_else(|e| panic!("{states:?}: {e:?}"));

        assert_eq!(result["restored"], true, "{states:?}");
        failsafe.assert_calls([1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(list.num_calls(), 1);
    }
}

#[tokio::test]
async fn failsafe_waits_for_a_rejitter_already_switching_off() {
    // Lambda refuses updates to a mapping in a transitional state.
    let failsafe = Failsafe::new(Some(("OPEN", EXECUTION, Some(snapshot("Enabled")))));
    let list = list_rejitter_mappings(&["Disabling"]);
    let disable = switch_rejitter(false);
    let get = get_rejitter_mapping(&["Disabling", "Disabled"]);
    let (mocks, _) = failsafe_with_rejitter(&failsafe, &[&list, &disable, &get]);
    let ctx = mocks.context(rejitter_config(&[]));

    let result = steps::failsafe(&ctx, EXECUTION, &caught_error())
        .await
        .expect("failsafe");

    assert_eq!(result["restored"], true);
    failsafe.assert_calls([1, 1, 1, 1, 1, 1, 1]);
    support::assert_calls(&[
        ("UpdateEventSourceMapping (rejitter off)", &disable, 0),
        ("GetEventSourceMapping (rejitter)", &get, 2),
    ]);
}

// =============================================================================================
// requests

#[test]
fn requests_parse() {
    let open: Request =
        serde_json::from_value(json!({"step": "open", "event": {}, "execution": "arn"}))
            .expect("open parses");
    assert!(matches!(&open, Request::Open { execution, .. } if execution == "arn"));
    assert_eq!(open.name(), "open");
    assert_eq!(open.execution(), "arn");

    let circuit = serde_json::to_value(circuit()).unwrap();
    for (step, name) in [
        ("probe", "probe"),
        ("backoff", "backoff"),
        ("close", "close"),
        ("give_up", "give_up"),
    ] {
        let request: Request = serde_json::from_value(json!({"step": step, "circuit": circuit}))
            .unwrap_or_else(|e| panic!("{step}: {e}"));
        assert_eq!(request.name(), name);
        assert_eq!(request.execution(), EXECUTION);
    }

    let failsafe: Request = serde_json::from_value(json!({"step": "failsafe", "execution": "arn"}))
        .expect("failsafe without error parses");
    assert!(matches!(
        &failsafe,
        Request::Failsafe {
            error: Value::Null,
            ..
        }
    ));
}

#[test]
fn requests_with_unknown_steps_or_missing_fields_are_refused() {
    for bad in [
        json!({"step": "explode", "execution": "arn"}),
        json!({"step": "Open", "event": {}, "execution": "arn"}),
        json!({"event": {}, "execution": "arn"}),
        json!({"step": "open", "event": {}}),
        json!({"step": "probe"}),
        json!({"step": "probe", "circuit": {"status": "Opened"}}),
    ] {
        assert!(
            serde_json::from_value::<Request>(bad.clone()).is_err(),
            "{bad} parsed"
        );
    }
}

#[tokio::test]
async fn run_returns_the_circuit_as_json() {
    let ctx = Mocks::default().context(config(&[("MAX_PROBE_ATTEMPTS", "1")]));
    let value = steps::run(&ctx, Request::Backoff { circuit: circuit() })
        .await
        .expect("ran");
    assert_eq!(value["next"], "GiveUp");
    assert_eq!(value["status"], "Opened");
    assert_eq!(value["execution"], EXECUTION);
    let back: Circuit = serde_json::from_value(value).expect("round-trips");
    assert_eq!(back.attempt, 1);
}
