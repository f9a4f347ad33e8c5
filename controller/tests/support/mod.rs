//! Shared fixtures for the step tests: a test configuration, a `Context` over mocked AWS
//! clients with a fixed clock and a fixed random draw, and one mock rule per AWS call the
//! controller makes, each matching only the request the controller is supposed to send.
//!
//! The mocked clients are strict: a request no rule matches panics (aws-smithy-mocks'
//! `must_match`), so an unexpected AWS call fails the test even without an explicit check.
//! Retries are disabled so that one SDK call is one rule call.

#![allow(dead_code)]

use aws_sdk_cloudwatch::types::{Datapoint, StateValue};
use aws_sdk_dynamodb::operation::update_item::UpdateItemInput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_lambda::types::{
    EventSourceMappingConfiguration, FunctionResponseType, InvocationType, ScalingConfig,
};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use controller::adapters::Clients;
use controller::circuit::{Circuit, MappingSnapshot, OpenStatus, RejitterPhase};
use controller::core::Config;
use controller::steps::Context;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:orders";
pub const QUEUE_NAME: &str = "orders";
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
pub const QUEUE_URL: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/orders";
pub const ALARM: &str = "orders-consumer-errors";
pub const FUNCTION: &str = "orders-consumer";
/// The mapping's FunctionArn carries a qualifier: probes must invoke exactly it.
pub const FUNCTION_ARN: &str =
    "arn:aws:lambda:us-east-1:123456789012:function:orders-consumer:live";
pub const HEALTH_FUNCTION: &str = "orders-health";
pub const UUID: &str = "6d9bce8e-836b-442c-8070-74e77903c815";
pub const TABLE: &str = "sqs-circuit-breaker-circuits";
pub const EVENT_BUS: &str = "breakers";
pub const NAMESPACE: &str = "BreakerTest";
pub const EXECUTION: &str =
    "arn:aws:states:us-east-1:123456789012:execution:orders-breaker:0f6c7a52-run-1";
pub const OTHER_EXECUTION: &str = "other";
pub const EVENT_SOURCE: &str = "sqs-circuit-breaker";
/// The rejitter and its own mapping on the consumer's queue.
pub const REJITTER_FUNCTION: &str = "orders-rejitter";
pub const REJITTER_FUNCTION_ARN: &str =
    "arn:aws:lambda:us-east-1:123456789012:function:orders-rejitter";
pub const REJITTER_UUID: &str = "a3c1f0d2-5b7e-4c19-9e2a-1f4d8b6c0e77";
pub const REJITTER_MAX_SECONDS: u32 = 60;

/// The fixed clock: epoch milliseconds.
pub const NOW_MS: u64 = 1_780_000_000_000;
/// The fixed random draw.
pub const RANDOM: f64 = 0.5;
pub const RETENTION_SECONDS: u32 = 345_600;
pub const MARGIN_SECONDS: u32 = 3_600;
pub const BACKOFF_BASE: u32 = 5;
pub const BACKOFF_CAP: u32 = 60;
pub const CONSUMER_TIMEOUT: i32 = 10;
pub const PROBE_VISIBILITY: u32 = 40;

pub const MESSAGE_ID: &str = "059f36b4-87a3-44ab-83d2-661975830a7d";
pub const RECEIPT: &str = "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...";
pub const BODY: &str = r#"{"order":42}"#;
pub const MD5_OF_BODY: &str = "e4e68fb7bd0e697a0ae8f1bb342846b3";
pub const TRACE_HEADER: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1";

/// The configuration every test starts from; `extra` overrides or adds variables.
pub fn config(extra: &[(&str, &str)]) -> Config {
    let margin = MARGIN_SECONDS.to_string();
    let base_seconds = BACKOFF_BASE.to_string();
    let cap_seconds = BACKOFF_CAP.to_string();
    let base: [(&str, &str); 10] = [
        ("CONSUMER_FUNCTION_NAME", FUNCTION),
        ("QUEUE_ARN", QUEUE_ARN),
        ("ALARM_NAME", ALARM),
        ("CIRCUIT_TABLE", TABLE),
        ("EVENT_BUS_NAME", EVENT_BUS),
        ("METRICS_NAMESPACE", NAMESPACE),
        ("BACKOFF_BASE_SECONDS", &base_seconds),
        ("BACKOFF_CAP_SECONDS", &cap_seconds),
        ("RETENTION_MARGIN_SECONDS", &margin),
        ("SETTLE_TIMEOUT_SECONDS", "60"),
    ];
    Config::from_lookup(|name| {
        extra
            .iter()
            .chain(base.iter())
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
    .expect("the test configuration is valid")
}

/// The rules each mocked client answers with.
#[derive(Default)]
pub struct Mocks {
    pub sqs: Vec<Rule>,
    pub lambda: Vec<Rule>,
    pub cloudwatch: Vec<Rule>,
    pub eventbridge: Vec<Rule>,
    pub dynamodb: Vec<Rule>,
}

impl Mocks {
    pub fn clients(&self) -> Clients {
        Clients {
            sqs: mock_client!(aws_sdk_sqs, RuleMode::MatchAny, &self.sqs, |c| c
                .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())),
            lambda: mock_client!(aws_sdk_lambda, RuleMode::MatchAny, &self.lambda, |c| c
                .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())),
            cloudwatch: mock_client!(
                aws_sdk_cloudwatch,
                RuleMode::MatchAny,
                &self.cloudwatch,
                |c| c.retry_config(aws_sdk_cloudwatch::config::retry::RetryConfig::disabled())
            ),
            eventbridge: mock_client!(
                aws_sdk_eventbridge,
                RuleMode::MatchAny,
                &self.eventbridge,
                |c| c.retry_config(aws_sdk_eventbridge::config::retry::RetryConfig::disabled())
            ),
            dynamodb: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &self.dynamodb, |c| c
                .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())),
        }
    }

    /// A context at `NOW_MS` drawing `RANDOM`.
    pub fn context(&self, config: Config) -> Context {
        self.context_with(config, NOW_MS, RANDOM)
    }

    pub fn context_with(&self, config: Config, now_ms: u64, random: f64) -> Context {
        Context {
            config,
            clients: self.clients(),
            clock: Arc::new(move || now_ms),
            random: Arc::new(move || random),
            poll: Duration::ZERO,
        }
    }
}

/// Asserts how often each named rule was called.
#[track_caller]
pub fn assert_calls(expected: &[(&str, &Rule, usize)]) {
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(_, rule, n)| rule.num_calls() != *n)
        .map(|(name, rule, n)| format!("{name}: {} calls, expected {n}", rule.num_calls()))
        .collect();
    assert!(
        wrong.is_empty(),
        "unexpected AWS calls:\n  {}",
        wrong.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// Events and circuits

/// A "CloudWatch Alarm State Change" event as EventBridge delivers it.
pub fn alarm_event(alarm: &str, state: &str) -> Value {
    json!({
        "version": "0",
        "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": ACCOUNT,
        "time": "2026-05-28T18:43:48Z",
        "region": REGION,
        "resources": [format!("arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm}")],
        "detail": {
            "alarmName": alarm,
            "state": {"value": state, "reason": "Threshold Crossed: 1 datapoint [12.0] was >= 5.0", "timestamp": "2026-05-28T18:43:48.000+0000"},
            "previousState": {"value": "OK", "reason": "", "timestamp": "2026-05-28T18:40:00.000+0000"},
            "configuration": {"metrics": []}
        }
    })
}

/// The mapping as the breaker snapshots it.
pub fn snapshot(state: &str) -> MappingSnapshot {
    MappingSnapshot {
        uuid: UUID.into(),
        function_arn: FUNCTION_ARN.into(),
        event_source_arn: QUEUE_ARN.into(),
        state: state.into(),
        batch_size: Some(10),
        maximum_batching_window_in_seconds: Some(5),
        function_response_types: vec!["ReportBatchItemFailures".into()],
        maximum_concurrency: Some(20),
    }
}

/// An open circuit one probe in: opened ten minutes ago, oldest message an hour old.
pub fn circuit() -> Circuit {
    Circuit {
        status: OpenStatus::Opened,
        execution: EXECUTION.into(),
        mapping: snapshot("Enabled"),
        queue_url: QUEUE_URL.into(),
        queue_arn: QUEUE_ARN.into(),
        region: REGION.into(),
        opened_at_ms: NOW_MS - 600_000,
        oldest_sent_ms: NOW_MS - 3_600_000,
        retention_seconds: RETENTION_SECONDS,
        probe_visibility_seconds: PROBE_VISIBILITY,
        attempt: 1,
        last_probe: String::new(),
        wait_seconds: 10,
        backoff_ceiling_seconds: 0,
        next: Some(controller::core::Next::Backoff),
        reason: "alarm orders-consumer-errors: Threshold Crossed".into(),
        rejitter: None,
    }
}

/// The configuration with the rejitter phase on (`REJITTER_MAX_SECONDS` of it at most).
pub fn rejitter_config(extra: &[(&str, &str)]) -> Config {
    let max = REJITTER_MAX_SECONDS.to_string();
    let mut all: Vec<(&str, &str)> = extra.to_vec();
    all.push(("REJITTER_FUNCTION_NAME", REJITTER_FUNCTION));
    all.push(("REJITTER_MAX_SECONDS", &max));
    config(&all)
}

/// The circuit after a healthy probe, in the rejitter phase started at `started_at_ms`.
pub fn rejittering(started_at_ms: u64, empty_readings: u32) -> Circuit {
    Circuit {
        attempt: 2,
        next: Some(controller::core::Next::WaitForBacklog),
        reason: "message processed".into(),
        rejitter: Some(RejitterPhase {
            mapping: REJITTER_UUID.into(),
            started_at_ms,
            empty_readings,
        }),
        ..circuit()
    }
}

// ---------------------------------------------------------------------------------------------
// Lambda

fn mapping_config(uuid: &str, state: &str) -> EventSourceMappingConfiguration {
    EventSourceMappingConfiguration::builder()
        .uuid(uuid)
        .function_arn(FUNCTION_ARN)
        .event_source_arn(QUEUE_ARN)
        .state(state)
        .batch_size(10)
        .maximum_batching_window_in_seconds(5)
        .function_response_types(FunctionResponseType::ReportBatchItemFailures)
        .scaling_config(ScalingConfig::builder().maximum_concurrency(20).build())
        .build()
}

/// ListEventSourceMappings for the queue and the consumer, answering one mapping per state.
pub fn list_mappings(states: &[&str]) -> Rule {
    list_mappings_page(None, None, states)
}

/// One page of ListEventSourceMappings: answers the request carrying `marker` with one
/// mapping per state (the first one is `UUID`) and `next_marker`.
pub fn list_mappings_page(
    marker: Option<&'static str>,
    next_marker: Option<&'static str>,
    states: &[&str],
) -> Rule {
    use aws_sdk_lambda::operation::list_event_source_mappings::ListEventSourceMappingsOutput;
    let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
    mock!(aws_sdk_lambda::Client::list_event_source_mappings)
        .match_requests(move |r| {
            r.event_source_arn() == Some(QUEUE_ARN)
                && r.function_name() == Some(FUNCTION)
                && r.marker() == marker
        })
        .then_output(move || {
            let mappings = states
                .iter()
                .enumerate()
                .map(|(i, state)| {
                    let uuid = if i == 0 {
                        UUID.to_string()
                    } else {
                        format!("{UUID}-{i}")
                    };
                    mapping_config(&uuid, state)
                })
                .collect();
            ListEventSourceMappingsOutput::builder()
                .set_event_source_mappings(Some(mappings))
                .set_next_marker(next_marker.map(str::to_string))
                .build()
        })
}

/// GetEventSourceMapping answering the states in turn, the last one from then on.
pub fn get_mapping(states: &[&str]) -> Rule {
    use aws_sdk_lambda::operation::get_event_source_mapping::GetEventSourceMappingOutput;
    let mut sequence = mock!(aws_sdk_lambda::Client::get_event_source_mapping)
        .match_requests(|r| r.uuid() == Some(UUID))
        .sequence();
    for state in states {
        let state = state.to_string();
        sequence = sequence.output(move || {
            GetEventSourceMappingOutput::builder()
                .uuid(UUID)
                .function_arn(FUNCTION_ARN)
                .event_source_arn(QUEUE_ARN)
                .state(&state)
                .batch_size(10)
                .maximum_batching_window_in_seconds(5)
                .function_response_types(FunctionResponseType::ReportBatchItemFailures)
                .build()
        });
    }
    sequence.repeatedly().build()
}

/// UpdateEventSourceMapping that only switches the mapping off.
pub fn disable_mapping() -> Rule {
    use aws_sdk_lambda::operation::update_event_source_mapping::UpdateEventSourceMappingOutput;
    mock!(aws_sdk_lambda::Client::update_event_source_mapping)
        .match_requests(is_disable)
        .then_output(|| {
            UpdateEventSourceMappingOutput::builder()
                .uuid(UUID)
                .state("Disabling")
                .build()
        })
}

pub fn disable_mapping_fails(
    error: impl Fn() -> aws_sdk_lambda::operation::update_event_source_mapping::UpdateEventSourceMappingError
        + Send
        + Sync
        + 'static,
) -> Rule {
    mock!(aws_sdk_lambda::Client::update_event_source_mapping)
        .match_requests(is_disable)
        .then_error(error)
}

fn is_disable(
    r: &aws_sdk_lambda::operation::update_event_source_mapping::UpdateEventSourceMappingInput,
) -> bool {
    // Only Enabled changes: the rest of the mapping's configuration is left as it is.
    r.uuid() == Some(UUID)
        && r.enabled() == Some(false)
        && r.batch_size().is_none()
        && r.maximum_batching_window_in_seconds().is_none()
        && r.function_response_types().is_empty()
        && r.scaling_config().is_none()
}

/// UpdateEventSourceMapping that switches the mapping on with the snapshot's configuration.
pub fn restore_mapping() -> Rule {
    use aws_sdk_lambda::operation::update_event_source_mapping::UpdateEventSourceMappingOutput;
    mock!(aws_sdk_lambda::Client::update_event_source_mapping)
        .match_requests(|r| {
            r.uuid() == Some(UUID)
                && r.enabled() == Some(true)
                && r.batch_size() == Some(10)
                && r.maximum_batching_window_in_seconds() == Some(5)
                && r.function_response_types() == [FunctionResponseType::ReportBatchItemFailures]
                && r.scaling_config().and_then(|s| s.maximum_concurrency()) == Some(20)
        })
        .then_output(|| {
            UpdateEventSourceMappingOutput::builder()
                .uuid(UUID)
                .state("Enabling")
                .build()
        })
}

/// ListEventSourceMappings for the queue and the rejitter, answering one mapping per state
/// (the first one is `REJITTER_UUID`).
pub fn list_rejitter_mappings(states: &[&str]) -> Rule {
    use aws_sdk_lambda::operation::list_event_source_mappings::ListEventSourceMappingsOutput;
    let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
    mock!(aws_sdk_lambda::Client::list_event_source_mappings)
        .match_requests(|r| {
            r.event_source_arn() == Some(QUEUE_ARN)
                && r.function_name() == Some(REJITTER_FUNCTION)
                && r.marker().is_none()
        })
        .then_output(move || {
            let mappings = states
                .iter()
                .enumerate()
                .map(|(i, state)| {
                    let uuid = if i == 0 {
                        REJITTER_UUID.to_string()
                    } else {
                        format!("{REJITTER_UUID}-{i}")
                    };
                    EventSourceMappingConfiguration::builder()
                        .uuid(uuid)
                        .function_arn(REJITTER_FUNCTION_ARN)
                        .event_source_arn(QUEUE_ARN)
                        .state(state)
                        .batch_size(10)
                        .build()
                })
                .collect();
            ListEventSourceMappingsOutput::builder()
                .set_event_source_mappings(Some(mappings))
                .build()
        })
}

/// GetEventSourceMapping of the rejitter's mapping answering the states in turn, the last one
/// from then on.
pub fn get_rejitter_mapping(states: &[&str]) -> Rule {
    use aws_sdk_lambda::operation::get_event_source_mapping::GetEventSourceMappingOutput;
    let mut sequence = mock!(aws_sdk_lambda::Client::get_event_source_mapping)
        .match_requests(|r| r.uuid() == Some(REJITTER_UUID))
        .sequence();
    for state in states {
        let state = state.to_string();
        sequence = sequence.output(move || {
            GetEventSourceMappingOutput::builder()
                .uuid(REJITTER_UUID)
                .function_arn(REJITTER_FUNCTION_ARN)
                .event_source_arn(QUEUE_ARN)
                .state(&state)
                .batch_size(10)
                .build()
        });
    }
    sequence.repeatedly().build()
}

/// UpdateEventSourceMapping of the rejitter's mapping that sets Enabled to `enabled` and
/// nothing else.
pub fn switch_rejitter(enabled: bool) -> Rule {
    use aws_sdk_lambda::operation::update_event_source_mapping::{
        UpdateEventSourceMappingInput, UpdateEventSourceMappingOutput,
    };
    let only_enabled = UpdateEventSourceMappingInput::builder()
        .uuid(REJITTER_UUID)
        .enabled(enabled)
        .build()
        .expect("valid input");
    mock!(aws_sdk_lambda::Client::update_event_source_mapping)
        .match_requests(move |r| *r == only_enabled)
        .then_output(move || {
            UpdateEventSourceMappingOutput::builder()
                .uuid(REJITTER_UUID)
                .state(if enabled { "Enabling" } else { "Disabling" })
                .build()
        })
}

/// GetFunctionConfiguration of the mapping's function (qualifier included).
pub fn function_configuration() -> Rule {
    use aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput;
    mock!(aws_sdk_lambda::Client::get_function_configuration)
        .match_requests(|r| r.function_name() == Some(FUNCTION_ARN))
        .then_output(|| {
            GetFunctionConfigurationOutput::builder()
                .function_name(FUNCTION)
                .function_arn(FUNCTION_ARN)
                .timeout(CONSUMER_TIMEOUT)
                .build()
        })
}

/// A synchronous Invoke of `function` answered with `function_error` and `payload`.
pub fn invoke(
    function: &'static str,
    function_error: Option<&'static str>,
    payload: &'static str,
) -> Rule {
    use aws_sdk_lambda::operation::invoke::InvokeOutput;
    use aws_sdk_lambda::primitives::Blob;
    mock!(aws_sdk_lambda::Client::invoke)
        .match_requests(move |r| {
            r.function_name() == Some(function)
                && r.invocation_type() == Some(&InvocationType::RequestResponse)
        })
        .then_output(move || {
            InvokeOutput::builder()
                .status_code(200)
                .set_function_error(function_error.map(str::to_string))
                .payload(Blob::new(payload))
                .build()
        })
}

/// The payload an Invoke request carried, as JSON.
pub fn invoke_payload(r: &aws_sdk_lambda::operation::invoke::InvokeInput) -> Value {
    r.payload()
        .and_then(|p| serde_json::from_slice(p.as_ref()).ok())
        .unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------------------
// SQS

pub fn queue_url() -> Rule {
    use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlOutput;
    mock!(aws_sdk_sqs::Client::get_queue_url)
        .match_requests(|r| {
            r.queue_name() == Some(QUEUE_NAME) && r.queue_owner_aws_account_id() == Some(ACCOUNT)
        })
        .then_output(|| GetQueueUrlOutput::builder().queue_url(QUEUE_URL).build())
}

pub fn queue_attributes() -> Rule {
    use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
    use aws_sdk_sqs::types::QueueAttributeName;
    mock!(aws_sdk_sqs::Client::get_queue_attributes)
        .match_requests(|r| {
            r.queue_url() == Some(QUEUE_URL)
                && r.attribute_names()
                    .contains(&QueueAttributeName::MessageRetentionPeriod)
        })
        .then_output(|| {
            GetQueueAttributesOutput::builder()
                .attributes(
                    QueueAttributeName::MessageRetentionPeriod,
                    RETENTION_SECONDS.to_string(),
                )
                .build()
        })
}

/// GetQueueAttributes of the queue's ApproximateNumberOfMessages, answering `visible`.
pub fn visible_messages(visible: &'static str) -> Rule {
    use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
    use aws_sdk_sqs::types::QueueAttributeName;
    mock!(aws_sdk_sqs::Client::get_queue_attributes)
        .match_requests(|r| {
            r.queue_url() == Some(QUEUE_URL)
                && r.attribute_names() == [QueueAttributeName::ApproximateNumberOfMessages]
        })
        .then_output(move || {
            GetQueueAttributesOutput::builder()
                .attributes(QueueAttributeName::ApproximateNumberOfMessages, visible)
                .build()
        })
}

/// GetQueueAttributes for the in-flight and delayed counts, each reporting `count`.
pub fn hidden_messages(count: &'static str) -> Rule {
    use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
    use aws_sdk_sqs::types::QueueAttributeName;
    mock!(aws_sdk_sqs::Client::get_queue_attributes)
        .match_requests(|r| {
            r.queue_url() == Some(QUEUE_URL)
                && r.attribute_names()
                    == [
                        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                        QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                    ]
        })
        .then_output(move || {
            GetQueueAttributesOutput::builder()
                .attributes(
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                    count,
                )
                .attributes(
                    QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                    count,
                )
                .build()
        })
}

/// The probe message: system attributes and message attributes of every kind.
pub fn probe_message(sent_ms: u64) -> aws_sdk_sqs::types::Message {
    use aws_sdk_sqs::primitives::Blob;
    use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
    let attribute = |data_type: &str, value: &str| {
        MessageAttributeValue::builder()
            .data_type(data_type)
            .string_value(value)
            .build()
            .expect("data type set")
    };
    Message::builder()
        .message_id(MESSAGE_ID)
        .receipt_handle(RECEIPT)
        .body(BODY)
        .md5_of_body(MD5_OF_BODY)
        .attributes(
            MessageSystemAttributeName::SentTimestamp,
            sent_ms.to_string(),
        )
        .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "3")
        .attributes(MessageSystemAttributeName::AwsTraceHeader, TRACE_HEADER)
        .message_attributes("customer", attribute("String", "alice"))
        .message_attributes("quantity", attribute("Number", "42"))
        .message_attributes("tag", attribute("String.custom", "urgent"))
        .message_attributes(
            "signature",
            MessageAttributeValue::builder()
                .data_type("Binary")
                .binary_value(Blob::new(vec![0u8, 1, 2, 255]))
                .build()
                .expect("data type set"),
        )
        .build()
}

/// ReceiveMessage of at most one message with all attributes, hidden for the probe's
/// visibility timeout.
pub fn receive(message: Option<aws_sdk_sqs::types::Message>) -> Rule {
    use aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput;
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    mock!(aws_sdk_sqs::Client::receive_message)
        .match_requests(|r| {
            r.queue_url() == Some(QUEUE_URL)
                && r.max_number_of_messages() == Some(1)
                && r.visibility_timeout() == Some(PROBE_VISIBILITY as i32)
                && r.message_system_attribute_names() == [MessageSystemAttributeName::All]
                && r.message_attribute_names() == ["All".to_string()]
        })
        .then_output(move || {
            ReceiveMessageOutput::builder()
                .set_messages(message.clone().map(|m| vec![m]))
                .build()
        })
}

pub fn delete_message() -> Rule {
    use aws_sdk_sqs::operation::delete_message::DeleteMessageOutput;
    mock!(aws_sdk_sqs::Client::delete_message)
        .match_requests(|r| r.queue_url() == Some(QUEUE_URL) && r.receipt_handle() == Some(RECEIPT))
        .then_output(|| DeleteMessageOutput::builder().build())
}

/// ChangeMessageVisibility to `hide_seconds` (0: the message is given back at once).
pub fn release_message(hide_seconds: i32) -> Rule {
    use aws_sdk_sqs::operation::change_message_visibility::ChangeMessageVisibilityOutput;
    mock!(aws_sdk_sqs::Client::change_message_visibility)
        .match_requests(move |r| {
            r.queue_url() == Some(QUEUE_URL)
                && r.receipt_handle() == Some(RECEIPT)
                && r.visibility_timeout() == Some(hide_seconds)
        })
        .then_output(|| ChangeMessageVisibilityOutput::builder().build())
}

// ---------------------------------------------------------------------------------------------
// CloudWatch

/// GetMetricStatistics of the queue's ApproximateAgeOfOldestMessage, answering one Maximum
/// datapoint per value.
pub fn oldest_age(maxima: &[f64]) -> Rule {
    use aws_sdk_cloudwatch::operation::get_metric_statistics::GetMetricStatisticsOutput;
    use aws_sdk_cloudwatch::types::Statistic;
    let maxima = maxima.to_vec();
    mock!(aws_sdk_cloudwatch::Client::get_metric_statistics)
        .match_requests(|r| {
            r.namespace() == Some("AWS/SQS")
                && r.metric_name() == Some("ApproximateAgeOfOldestMessage")
                && r.dimensions().len() == 1
                && r.dimensions()[0].name() == Some("QueueName")
                && r.dimensions()[0].value() == Some(QUEUE_NAME)
                && r.statistics().contains(&Statistic::Maximum)
        })
        .then_output(move || {
            GetMetricStatisticsOutput::builder()
                .label("ApproximateAgeOfOldestMessage")
                .set_datapoints(Some(
                    maxima
                        .iter()
                        .map(|m| Datapoint::builder().maximum(*m).build())
                        .collect(),
                ))
                .build()
        })
}

/// PutMetricData of one count of `metric` for the consumer, in the breaker's namespace.
pub fn put_metric(metric: &'static str) -> Rule {
    use aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataOutput;
    mock!(aws_sdk_cloudwatch::Client::put_metric_data)
        .match_requests(move |r| {
            r.namespace() == Some(NAMESPACE)
                && r.metric_data().len() == 1
                && r.metric_data()[0].metric_name() == Some(metric)
                && r.metric_data()[0].value() == Some(1.0)
                && r.metric_data()[0].dimensions().len() == 1
                && r.metric_data()[0].dimensions()[0].name() == Some("ConsumerFunction")
                && r.metric_data()[0].dimensions()[0].value() == Some(FUNCTION)
        })
        .then_output(|| PutMetricDataOutput::builder().build())
}

/// SetAlarmState OK on the breaker's alarm.
pub fn reset_alarm() -> Rule {
    use aws_sdk_cloudwatch::operation::set_alarm_state::SetAlarmStateOutput;
    mock!(aws_sdk_cloudwatch::Client::set_alarm_state)
        .match_requests(|r| {
            r.alarm_name() == Some(ALARM)
                && r.state_value() == Some(&StateValue::Ok)
                && r.state_reason().is_some_and(|s| !s.is_empty())
        })
        .then_output(|| SetAlarmStateOutput::builder().build())
}

// ---------------------------------------------------------------------------------------------
// EventBridge

/// PutEvents of one `detail_type` event from the breaker on its bus, naming the mapping, whose
/// detail satisfies `detail`. The details seen are kept in the returned list.
pub fn put_event_where(
    detail_type: &'static str,
    detail: impl Fn(&Value) -> bool + Send + Sync + 'static,
) -> (Rule, Arc<Mutex<Vec<Value>>>) {
    use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
    use aws_sdk_eventbridge::types::PutEventsResultEntry;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    let rule = mock!(aws_sdk_eventbridge::Client::put_events)
        .match_requests(move |r| {
            let [entry] = r.entries() else { return false };
            let parsed: Value = entry
                .detail()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or(Value::Null);
            let matches = entry.source() == Some(EVENT_SOURCE)
                && entry.detail_type() == Some(detail_type)
                && entry.event_bus_name() == Some(EVENT_BUS)
                && detail(&parsed);
            if matches {
                keep.lock().unwrap().push(parsed);
            }
            matches
        })
        .then_output(|| {
            PutEventsOutput::builder()
                .failed_entry_count(0)
                .entries(PutEventsResultEntry::builder().event_id("event-1").build())
                .build()
        });
    (rule, seen)
}

/// PutEvents of one `detail_type` event about this circuit (mapping, queue, consumer,
/// execution in the detail; the mapping as the event's resource).
pub fn put_event(detail_type: &'static str) -> Rule {
    put_event_where(detail_type, |d| {
        d["mapping"] == UUID
            && d["queue"] == QUEUE_ARN
            && d["function"] == FUNCTION
            && d["execution"] == EXECUTION
    })
    .0
}

// ---------------------------------------------------------------------------------------------
// DynamoDB

fn value(r: &UpdateItemInput, name: &str) -> Option<String> {
    match r.expression_attribute_values()?.get(name)? {
        AttributeValue::S(s) => Some(s.clone()),
        AttributeValue::N(n) => Some(n.clone()),
        _ => None,
    }
}

fn names(r: &UpdateItemInput, name: &str) -> Option<String> {
    r.expression_attribute_names()?.get(name).cloned()
}

fn is_our_item(r: &UpdateItemInput) -> bool {
    r.table_name() == Some(TABLE)
        && r.key().and_then(|k| k.get("mapping_id")) == Some(&AttributeValue::S(UUID.into()))
}

/// The acquire: OPEN, owned by this execution, only if closed or new; the snapshot stored.
fn is_acquire(r: &UpdateItemInput) -> bool {
    let stored: Option<MappingSnapshot> =
        value(r, ":snapshot").and_then(|s| serde_json::from_str(&s).ok());
    is_our_item(r)
        && r.condition_expression() == Some("attribute_not_exists(mapping_id) OR #state = :closed")
        && value(r, ":open").as_deref() == Some("OPEN")
        && value(r, ":closed").as_deref() == Some("CLOSED")
        && value(r, ":me").as_deref() == Some(EXECUTION)
        && value(r, ":now") == Some(NOW_MS.to_string())
        && names(r, "#state").as_deref() == Some("state")
        && names(r, "#owner").as_deref() == Some("owner")
        && stored.is_some_and(|s| s.uuid == UUID)
}

/// An update made only while this execution owns the item.
fn is_owned_update(r: &UpdateItemInput) -> bool {
    is_our_item(r)
        && r.condition_expression() == Some("#owner = :me")
        && value(r, ":me").as_deref() == Some(EXECUTION)
        && names(r, "#owner").as_deref() == Some("owner")
}

pub fn acquire() -> Rule {
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(is_acquire)
        .then_output(|| UpdateItemOutput::builder().build())
}

pub fn acquire_held() -> Rule {
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(is_acquire)
        .then_error(condition_failed)
}

/// The item moved to `state` (CLOSED or GAVE_UP) by its owner.
pub fn finish(state: &'static str) -> Rule {
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| is_finish(r, state))
        .then_output(|| UpdateItemOutput::builder().build())
}

pub fn finish_not_owner(state: &'static str) -> Rule {
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| is_finish(r, state))
        .then_error(condition_failed)
}

fn is_finish(r: &UpdateItemInput, state: &str) -> bool {
    is_owned_update(r)
        && r.update_expression() == Some("SET #state = :state, since_ms = :now")
        && value(r, ":state").as_deref() == Some(state)
        && value(r, ":now") == Some(NOW_MS.to_string())
        && names(r, "#state").as_deref() == Some("state")
}

/// The circuit given back without having been opened: CLOSED again, the trip not counted.
pub fn release_circuit() -> Rule {
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            is_owned_update(r)
                && r.update_expression()
                    == Some("SET #state = :closed, since_ms = :now ADD trips :minus_one")
                && value(r, ":closed").as_deref() == Some("CLOSED")
                && value(r, ":minus_one").as_deref() == Some("-1")
                && names(r, "#state").as_deref() == Some("state")
        })
        .then_output(|| UpdateItemOutput::builder().build())
}

/// The probe's verdict recorded by the owner.
pub fn record_probe(verdict: &'static str) -> Rule {
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| {
            is_owned_update(r)
                && r.update_expression() == Some("SET last_probe_ms = :now, last_probe = :verdict")
                && value(r, ":verdict").as_deref() == Some(verdict)
                && value(r, ":now") == Some(NOW_MS.to_string())
                // DynamoDB refuses names the expressions do not use.
                && names(r, "#state").is_none()
        })
        .then_output(|| UpdateItemOutput::builder().build())
}

/// GetItem (consistent) of the circuit's item; `None` is no item.
pub fn get_item(record: Option<(&str, &str, Option<MappingSnapshot>)>) -> Rule {
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    let item = record.map(|(state, owner, stored)| {
        let mut item = std::collections::HashMap::from([
            ("mapping_id".to_string(), AttributeValue::S(UUID.into())),
            ("state".to_string(), AttributeValue::S(state.into())),
            ("owner".to_string(), AttributeValue::S(owner.into())),
            (
                "since_ms".to_string(),
                AttributeValue::N((NOW_MS - 60_000).to_string()),
            ),
            ("trips".to_string(), AttributeValue::N("3".into())),
        ]);
        if let Some(stored) = stored {
            item.insert(
                "mapping_snapshot".into(),
                AttributeValue::S(serde_json::to_string(&stored).unwrap()),
            );
        }
        item
    });
    mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(|r| {
            r.table_name() == Some(TABLE)
                && r.key().and_then(|k| k.get("mapping_id"))
                    == Some(&AttributeValue::S(UUID.into()))
                && r.consistent_read() == Some(true)
        })
        .then_output(move || GetItemOutput::builder().set_item(item.clone()).build())
}

/// ConditionalCheckFailedException, with the error code the SDK's deserializer would set.
pub fn condition_failed() -> aws_sdk_dynamodb::operation::update_item::UpdateItemError {
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
        ConditionalCheckFailedException::builder()
            .message("The conditional request failed")
            .meta(
                ErrorMetadata::builder()
                    .code("ConditionalCheckFailedException")
                    .message("The conditional request failed")
                    .build(),
            )
            .build(),
    )
}

/// Lambda's TooManyRequestsException metadata (what the SDK's deserializer would set).
pub fn too_many_requests_meta() -> aws_sdk_lambda::error::ErrorMetadata {
    aws_sdk_lambda::error::ErrorMetadata::builder()
        .code("TooManyRequestsException")
        .message("Rate exceeded")
        .build()
}
