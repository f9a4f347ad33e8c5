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
use aws_sdk_lambda::operation::update_event_source_mapping::{
    UpdateEventSourceMappingError, UpdateEventSourceMappingInput, UpdateEventSourceMappingOutput,
};
use aws_sdk_lambda::types::{
    EventSourceMappingConfiguration, FunctionResponseType, InvocationType, ScalingConfig,
};
use aws_sdk_sfn::types::ExecutionStatus;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use controller::adapters::Clients;
use controller::circuit::{Changed, Circuit, MappingSnapshot, OpenStatus, RejitterPhase};
use controller::core::backlog::Progress;
use controller::core::Config;
use controller::steps::Context;
use serde_json::{json, Value};
use std::collections::HashMap;
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
pub const STATE_MACHINE: &str = "orders-breaker";
pub const EXECUTION: &str =
    "arn:aws:states:us-east-1:123456789012:execution:orders-breaker:0f6c7a52-run-1";
pub const OTHER_EXECUTION: &str =
    "arn:aws:states:us-east-1:123456789012:execution:orders-breaker:5b1e9d07-run-0";
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
/// The queue's redrive policy.
pub const MAX_RECEIVE_COUNT: u32 = 5;
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
    // The errors signal: most tests mock the consumer's Errors; the queue's signals have
    // tests of their own.
    let base: [(&str, &str); 12] = [
        ("CONSUMER_FUNCTION_NAME", FUNCTION),
        ("QUEUE_ARN", QUEUE_ARN),
        ("ALARM_NAME", ALARM),
        ("STATE_MACHINE_NAME", STATE_MACHINE),
        ("CIRCUIT_TABLE", TABLE),
        ("EVENT_BUS_NAME", EVENT_BUS),
        ("METRICS_NAMESPACE", NAMESPACE),
        ("BACKOFF_BASE_SECONDS", &base_seconds),
        ("BACKOFF_CAP_SECONDS", &cap_seconds),
        ("RETENTION_MARGIN_SECONDS", &margin),
        ("SETTLE_TIMEOUT_SECONDS", "60"),
        ("ALARM_SIGNAL", "errors"),
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
    pub sfn: Vec<Rule>,
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
            sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, &self.sfn, |c| c
                .retry_config(aws_sdk_sfn::config::retry::RetryConfig::disabled())),
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
            deadline_ms: None,
            fleet: controller::steps::Fleet::default(),
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

/// When the alarm of `alarm_event` entered its state: ten seconds before `NOW_MS`.
pub const ALARM_AT: &str = "2026-05-28T20:26:30.000+0000";
pub const ALARM_AT_MS: u64 = NOW_MS - 10_000;

/// A "CloudWatch Alarm State Change" event as EventBridge delivers it, ten seconds old.
pub fn alarm_event(alarm: &str, state: &str) -> Value {
    json!({
        "version": "0",
        "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": ACCOUNT,
        "time": "2026-05-28T20:26:31Z",
        "region": REGION,
        "resources": [format!("arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm}")],
        "detail": {
            "alarmName": alarm,
            "state": {"value": state, "reason": "Threshold Crossed: 1 datapoint [12.0] was >= 5.0", "timestamp": ALARM_AT},
            "previousState": {"value": "OK", "reason": "", "timestamp": "2026-05-28T20:20:00.000+0000"},
            "configuration": {"metrics": []}
        }
    })
}

/// The mapping as the breaker snapshots it when it finds it in `state`: only an Enabled
/// mapping is the breaker's to switch off (and on again).
pub fn snapshot(state: &str) -> MappingSnapshot {
    MappingSnapshot {
        uuid: UUID.into(),
        function_arn: FUNCTION_ARN.into(),
        event_source_arn: QUEUE_ARN.into(),
        state: state.into(),
        changed: Some(Changed {
            enabled: state == "Enabled",
            maximum_concurrency: None,
        }),
    }
}

/// The history events of the circuit `circuit()` returns.
pub const HISTORY_EVENTS: u32 = 100;

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
        max_receive_count: Some(MAX_RECEIVE_COUNT),
        probe_visibility_seconds: PROBE_VISIBILITY,
        attempt: 1,
        last_probe: String::new(),
        wait_seconds: 10,
        backoff_ceiling_seconds: 0,
        next: Some(controller::core::Next::Backoff),
        reason: "alarm orders-consumer-errors: Threshold Crossed".into(),
        rejitter: None,
        retrip: false,
        history_events: HISTORY_EVENTS,
        slow_start: None,
        attachment: None,
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

/// The circuit after a healthy probe, in the rejitter phase started at `started_at_ms`, which
/// has been spreading the backlog.
pub fn rejittering(started_at_ms: u64, empty_readings: u32) -> Circuit {
    Circuit {
        attempt: 2,
        next: Some(controller::core::Next::WaitForBacklog),
        reason: "message processed".into(),
        rejitter: Some(RejitterPhase {
            mapping: REJITTER_UUID.into(),
            started_at_ms,
            // 383 visible at the start; 5 s in, the rejitter had spread all but 5.
            progress: Progress {
                empty_readings,
                lowest_unspread: Some(5),
                progress_at_ms: started_at_ms + 5_000,
                moved: true,
                start_visible: 383,
            },
        }),
        ..circuit()
    }
}

/// Asserts how often each rule of a harness was called: `expected` names the rules called
/// (by their names in `rules`; a name given twice counts as given last); every other rule
/// must not have been called at all.
#[track_caller]
pub fn assert_only(rules: &[(&str, &Rule)], expected: &[(&str, usize)]) {
    for (name, _) in expected {
        assert!(
            rules.iter().any(|(known, _)| known == name),
            "no rule named {name}"
        );
    }
    let wrong: Vec<String> = rules
        .iter()
        .filter_map(|(name, rule)| {
            let want = expected
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, n)| *n);
            (rule.num_calls() != want)
                .then(|| format!("{name}: {} calls, expected {want}", rule.num_calls()))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "unexpected AWS calls:\n  {}",
        wrong.join("\n  ")
    );
}

mod ending;
mod lambda;
mod queue;
mod spies;
mod store;

#[allow(unused_imports)]
pub use ending::*;
#[allow(unused_imports)]
pub use lambda::*;
#[allow(unused_imports)]
pub use queue::*;
#[allow(unused_imports)]
pub use spies::*;
#[allow(unused_imports)]
pub use store::*;
