//! The operator command on a fleet, against mocked AWS clients: `status` lists every consumer
//! (the built-in one, each attachment, one row per consumer whose read failed), its JSON
//! shape and exit status; `--consumer` selects one (or says which there are); `open` names
//! the attachment in the execution's input; `close` of an attachment's circuit acts with the
//! configuration the circuit recorded; `history` of one consumer is its executions only.

#[path = "../../controller/tests/support/mod.rs"]
mod support;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sfn::types::ExecutionStatus;
use aws_smithy_mocks::{mock, MockResponse, Rule};
use controller::adapters::attachments::{item_attributes, Attachments};
use controller::circuit::CircuitAttachment;
use controller::core::attachment::Defaults;
use controller::core::deployment::deployment;
use controller::core::operator::{OperatorOpen, Phase};
use controller::steps::{Context, Fleet};
use serde_json::{json, Value};
use sqs_circuit_breaker::fleet::{self, SelectError, BUILT_IN};
use sqs_circuit_breaker::{actions, render, status, OperatorError};
use std::collections::HashMap;
use support::*;

const ATTACHMENTS: &str = "breaker-attachments";

/// The deployment's environment; `consumer`: with the built-in consumer of the support rules.
fn env(consumer: bool) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("STATE_MACHINE_NAME", STATE_MACHINE.to_string()),
        ("CIRCUIT_TABLE", TABLE.to_string()),
        ("EVENT_BUS_NAME", EVENT_BUS.to_string()),
        ("METRICS_NAMESPACE", NAMESPACE.to_string()),
        ("BACKOFF_BASE_SECONDS", BACKOFF_BASE.to_string()),
        ("BACKOFF_CAP_SECONDS", BACKOFF_CAP.to_string()),
        ("RETENTION_MARGIN_SECONDS", MARGIN_SECONDS.to_string()),
        ("SETTLE_TIMEOUT_SECONDS", "60".to_string()),
        ("ALARM_SIGNAL", "errors".to_string()),
    ];
    if consumer {
        env.extend([
            ("CONSUMER_FUNCTION_NAME", FUNCTION.to_string()),
            ("QUEUE_ARN", QUEUE_ARN.to_string()),
            ("ALARM_NAME", ALARM.to_string()),
        ]);
    }
    env
}

/// A context on `mocks` as `locate` builds it: the deployment, and its attachments table when
/// `table`.
fn located(mocks: &Mocks, consumer: bool, table: bool) -> Context {
    let env = env(consumer);
    let lookup = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
    let found = deployment(lookup, table).expect("a valid deployment");
    let mut ctx = mocks.context(found.config);
    ctx.fleet = Fleet {
        defaults: Defaults::from_lookup(lookup),
        attachments: table.then(|| Attachments {
            dynamodb: ctx.clients.dynamodb.clone(),
            table: ATTACHMENTS.into(),
        }),
        fleet_only: found.fleet_only,
        roles: None,
        own: None,
    };
    ctx
}

fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")
}

/// An attachment of consumer `name` (function `<name>-consumer`, queue `<name>`, alarm
/// `<name>-failing`), with a role the operator does not assume.
fn attached(name: &str) -> CircuitAttachment {
    CircuitAttachment {
        id: name.into(),
        settings: json!({
            "Id": name,
            "ConsumerFunctionName": format!("{name}-consumer"),
            "QueueArn": queue_arn(name),
            "AlarmName": format!("{name}-failing"),
            "BackoffBaseSeconds": 30,
        }),
        role_arn: Some(format!(
            "arn:aws:iam::{ACCOUNT}:role/sqs-circuit-breaker/breaker/{name}"
        )),
    }
}

/// The attachments table: payments (its circuit open), shipping (its function deleted), and
/// an item nobody can use.
fn attachment_items() -> Vec<HashMap<String, AttributeValue>> {
    let mut broken = HashMap::new();
    broken.insert("id".to_string(), AttributeValue::S("zz-broken".into()));
    broken.insert("settings".to_string(), AttributeValue::S("not json".into()));
    vec![
        item_attributes(&attached("shipping")),
        broken,
        item_attributes(&attached("payments")),
    ]
}

/// The fleet's AWS: every consumer's mapping, circuit, queue and alarm, answered by name.
fn fleet_aws() -> Mocks {
    use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
    use aws_sdk_cloudwatch::types::{MetricAlarm, StateValue};
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::scan::ScanOutput;
    use aws_sdk_lambda::operation::list_event_source_mappings::{
        ListEventSourceMappingsError, ListEventSourceMappingsOutput,
    };
    use aws_sdk_lambda::types::error::ResourceNotFoundException;
    use aws_sdk_lambda::types::EventSourceMappingConfiguration;
    use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
    use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlOutput;
    use aws_sdk_sqs::types::QueueAttributeName;

    let mappings =
        mock!(aws_sdk_lambda::Client::list_event_source_mappings).then_compute_response(|r| {
            let function = r.function_name().unwrap_or_default();
            if function == "shipping-consumer" {
                return MockResponse::Error(
                    ListEventSourceMappingsError::ResourceNotFoundException(
                        ResourceNotFoundException::builder()
                            .message(format!("Function not found: {function}"))
                            .build(),
                    ),
                );
            }
            let state = if function == "payments-consumer" {
                "Disabled"
            } else {
                "Enabled"
            };
            MockResponse::Output(
                ListEventSourceMappingsOutput::builder()
                    .event_source_mappings(
                        EventSourceMappingConfiguration::builder()
                            .uuid(format!("uuid-{function}"))
                            .function_arn(format!(
                                "arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"
                            ))
                            .event_source_arn(r.event_source_arn().unwrap_or_default())
                            .state(state)
                            .build(),
                    )
                    .build(),
            )
        });
    let get_item = mock!(aws_sdk_dynamodb::Client::get_item).then_compute_output(|r| {
        let key = |name: &str| match r.key().and_then(|k| k.get(name)) {
            Some(AttributeValue::S(s)) => s.clone(),
            _ => String::new(),
        };
        let found = match r.table_name() {
            Some(ATTACHMENTS) => attachment_items()
                .into_iter()
                .find(|i| i.get("id") == Some(&AttributeValue::S(key("id")))),
            // Only the payments consumer's circuit is open, held by an operator.
            _ if key("mapping_id") == "uuid-payments-consumer" => Some(HashMap::from([
                (
                    "mapping_id".to_string(),
                    AttributeValue::S(key("mapping_id")),
                ),
                ("state".to_string(), AttributeValue::S("OPEN".into())),
                ("owner".to_string(), AttributeValue::S("an operator".into())),
                (
                    "since_ms".to_string(),
                    AttributeValue::N((NOW_MS - 60_000).to_string()),
                ),
                (
                    "reason".to_string(),
                    AttributeValue::S("opened by hand: test".into()),
                ),
            ])),
            _ => None,
        };
        GetItemOutput::builder().set_item(found).build()
    });
    let scan = mock!(aws_sdk_dynamodb::Client::scan)
        .match_requests(|r| r.table_name() == Some(ATTACHMENTS))
        .then_output(|| {
            ScanOutput::builder()
                .set_items(Some(attachment_items()))
                .build()
        });
    let queue_url = mock!(aws_sdk_sqs::Client::get_queue_url).then_compute_output(|r| {
        GetQueueUrlOutput::builder()
            .queue_url(format!(
                "https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{}",
                r.queue_name().unwrap_or_default()
            ))
            .build()
    });
    let depth = mock!(aws_sdk_sqs::Client::get_queue_attributes).then_output(|| {
        GetQueueAttributesOutput::builder()
            .attributes(QueueAttributeName::ApproximateNumberOfMessages, "7")
            .attributes(
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                "1",
            )
            .attributes(QueueAttributeName::ApproximateNumberOfMessagesDelayed, "0")
            .build()
    });
    let alarms = mock!(aws_sdk_cloudwatch::Client::describe_alarms).then_compute_output(|r| {
        let name = r.alarm_names().first().cloned().unwrap_or_default();
        let state = if name == "payments-failing" {
            StateValue::Alarm
        } else {
            StateValue::Ok
        };
        DescribeAlarmsOutput::builder()
            .metric_alarms(
                MetricAlarm::builder()
                    .alarm_name(name)
                    .state_value(state)
                    .build(),
            )
            .build()
    });
    Mocks {
        lambda: vec![mappings],
        dynamodb: vec![get_item, scan],
        sqs: vec![queue_url, depth],
        cloudwatch: vec![alarms],
        ..Mocks::default()
    }
}

#[tokio::test]
async fn status_lists_every_consumer_and_a_failed_read_is_that_rows_error() {
    let ctx = located(&fleet_aws(), true, true);
    let rows = status::fleet(&ctx).await.expect("the fleet is listed");
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [BUILT_IN, "payments", "shipping", "zz-broken"]);

    let built_in = rows[0].status.as_ref().expect("read");
    assert_eq!(
        (rows[0].function.as_str(), rows[0].queue_arn.as_str()),
        (FUNCTION, QUEUE_ARN)
    );
    assert_eq!(built_in.phase, Phase::Closed);
    assert_eq!(built_in.mapping_state, "Enabled");
    assert_eq!(built_in.alarm_name, ALARM);

    // The attachment's own consumer, circuit and alarm, read under the operator's
    // credentials (its role is the controller's to assume).
    let payments = rows[1].status.as_ref().expect("read");
    assert_eq!(rows[1].function, "payments-consumer");
    assert_eq!(rows[1].queue_arn, queue_arn("payments"));
    assert_eq!(payments.phase, Phase::Open);
    assert_eq!(payments.since_ms, Some(NOW_MS - 60_000));
    assert_eq!(
        payments.mapping_id.as_deref(),
        Some("uuid-payments-consumer")
    );
    assert_eq!(payments.mapping_state, "Disabled");
    assert_eq!(
        (
            payments.alarm_name.as_str(),
            payments.alarm_state.as_deref()
        ),
        ("payments-failing", Some("ALARM"))
    );
    assert_eq!(payments.queue.visible, 7);

    // Its function deleted: that row says why; the rows after it are read all the same.
    assert!(rows[2].status.is_none());
    let error = rows[2].error.as_deref().expect("an error");
    assert!(
        error.contains("Function not found: shipping-consumer"),
        "{error}"
    );
    assert_eq!(rows[2].function, "shipping-consumer");
    let broken = rows[3].error.as_deref().expect("an error");
    assert!(broken.contains("not a JSON object"), "{broken}");

    // Any open circuit: 3, as for a single consumer.
    assert_eq!(status::exit_code(&rows), 3);

    // JSON: an array, one object per consumer, the single-consumer fields flattened in.
    let json = serde_json::to_value(&rows).expect("serialisable");
    let array = json.as_array().expect("an array");
    assert_eq!(array.len(), 4);
    assert_eq!(array[1]["id"], "payments");
    assert_eq!(array[1]["function"], "payments-consumer");
    assert_eq!(array[1]["phase"], "OPEN");
    assert_eq!(array[1]["mapping_state"], "Disabled");
    assert_eq!(array[1]["queue"]["visible"], 7);
    assert_eq!(array[1]["error"], Value::Null);
    assert_eq!(array[2]["phase"], Value::Null);
    assert!(array[2]["error"].is_string());

    // Text: one block per consumer, headed by which it is.
    let text = render::fleet(&rows, NOW_MS);
    assert!(
        text.contains(&format!(
            "consumer     payments (function payments-consumer, queue {})\n\
             circuit      OPEN since",
            queue_arn("payments")
        )),
        "{text}"
    );
    assert!(
        text.contains("consumer     zz-broken (function unknown, queue unknown)\nerror        "),
        "{text}"
    );
    assert_eq!(text.matches("\n\nconsumer     ").count(), 3, "{text}");
}

#[tokio::test]
async fn a_deployment_with_only_its_built_in_consumer_shows_it_as_before() {
    let ctx = located(&fleet_aws(), true, false);
    let rows = status::fleet(&ctx).await.expect("listed");
    assert_eq!(rows.len(), 1);
    let only = rows[0].status.as_ref().expect("read");
    // The text a single-consumer stack has always printed: no consumer header.
    assert_eq!(render::fleet(&rows, NOW_MS), render::status(only, NOW_MS));
    assert!(render::fleet(&rows, NOW_MS).starts_with("circuit      CLOSED"));
    assert_eq!(status::exit_code(&rows), 0);
}

#[test]
fn the_exit_status_is_open_before_unread_before_closed() {
    let row = |phase: Option<Phase>| status::Row {
        id: "x".into(),
        function: String::new(),
        queue_arn: String::new(),
        status: phase.map(|phase| status::Status {
            phase,
            since_ms: None,
            reason: None,
            owner: None,
            owner_console_url: None,
            current_state: None,
            probes: None,
            last_probe: None,
            next_probe_ms: None,
            mapping_id: None,
            mapping_state: "Enabled".into(),
            mapping_maximum_concurrency: None,
            alarm_name: "a".into(),
            alarm_state: None,
            alarm_kind: None,
            alarm_signal: "errors".into(),
            alarm_note: None,
            queue: Default::default(),
            dead_letter_queue: None,
        }),
        error: phase.is_none().then(|| "unreadable".to_string()),
    };
    let closed = row(Some(Phase::Closed));
    let unread = row(None);
    let held = row(Some(Phase::HeldOpen));
    assert_eq!(status::exit_code(&[closed.clone(), closed.clone()]), 0);
    assert_eq!(status::exit_code(&[closed.clone(), unread.clone()]), 1);
    assert_eq!(status::exit_code(&[unread, held, closed]), 3);
    assert_eq!(status::exit_code(&[]), 0);
}

#[tokio::test]
async fn consumer_selects_the_one_named_or_the_only_one() {
    // A fleet: a name is needed, and a wrong one is told the right ones.
    let ctx = located(&fleet_aws(), true, true);
    let Err(OperatorError::Select(several)) = fleet::consumer(&ctx, None).await else {
        panic!("several consumers need --consumer");
    };
    assert_eq!(
        several,
        SelectError::Several {
            ids: vec![
                BUILT_IN.into(),
                "payments".into(),
                "shipping".into(),
                "zz-broken".into()
            ]
        }
    );
    let payments = fleet::consumer(&ctx, Some("payments"))
        .await
        .expect("attached");
    assert_eq!(payments.attachment_id(), Some("payments"));
    assert_eq!(payments.ctx.config.consumer_function, "payments-consumer");
    assert_eq!(payments.ctx.config.alarm_name, "payments-failing");
    assert_eq!(payments.ctx.config.backoff.base_seconds, 30);
    assert_eq!(payments.execution_filter(), Some("payments"));
    let built_in = fleet::consumer(&ctx, Some(BUILT_IN))
        .await
        .expect("built in");
    assert_eq!(built_in.ctx.config.consumer_function, FUNCTION);
    assert_eq!(built_in.execution_filter(), Some(BUILT_IN));
    let Err(OperatorError::Select(unknown)) = fleet::consumer(&ctx, Some("orders")).await else {
        panic!("no such consumer");
    };
    assert!(
        unknown
            .to_string()
            .ends_with("its consumers: built-in, payments, shipping, zz-broken"),
        "{unknown}"
    );

    // The built-in consumer alone, no attachments table: as before, nothing read, every
    // execution shown.
    let ctx = located(&Mocks::default(), true, false);
    let only = fleet::consumer(&ctx, None).await.expect("the only one");
    assert_eq!(
        (only.id.as_str(), only.execution_filter()),
        (BUILT_IN, None)
    );
    assert!(matches!(
        fleet::consumer(&ctx, Some("payments")).await,
        Err(OperatorError::Select(SelectError::Unknown { .. }))
    ));
}

#[tokio::test]
async fn open_names_the_attachment_in_the_executions_input() {
    use aws_sdk_sfn::operation::start_execution::StartExecutionOutput;
    let start = mock!(aws_sdk_sfn::Client::start_execution)
        .match_requests(|r| {
            let input: Value = serde_json::from_str(r.input().unwrap_or_default()).unwrap();
            r.state_machine_arn() == Some("arn:sm")
                && input
                    == json!({
                        "attachment": "payments",
                        "event": {"operator": {"reason": "DB maintenance", "hold": true}}
                    })
        })
        .then_output(|| {
            StartExecutionOutput::builder()
                .execution_arn(EXECUTION)
                .start_date(aws_smithy_types::DateTime::from_millis(NOW_MS as i64))
                .build()
                .expect("an execution")
        });
    let mocks = Mocks {
        sfn: vec![start.clone()],
        ..Mocks::default()
    };
    let ctx = located(&mocks, false, true);
    let request = OperatorOpen::new("DB maintenance", true).expect("a reason");
    let execution = actions::open(&ctx, "arn:sm", &request, Some("payments"))
        .await
        .expect("started");
    assert_eq!(execution, EXECUTION);
    assert_eq!(start.num_calls(), 1);
}

/// The circuit item of `UUID`, open, recording `attachment` next to the snapshot.
fn get_recorded_circuit(attachment: &CircuitAttachment) -> Rule {
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    let mut stored = serde_json::to_value(snapshot("Enabled")).expect("a snapshot");
    stored["attachment"] = serde_json::to_value(attachment).expect("an attachment");
    let mut attributes = item("OPEN", EXECUTION).attributes();
    attributes.insert(
        "mapping_snapshot".into(),
        AttributeValue::S(stored.to_string()),
    );
    mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(|r| r.table_name() == Some(TABLE))
        .then_output(move || {
            GetItemOutput::builder()
                .set_item(Some(attributes.clone()))
                .build()
        })
}

#[tokio::test]
async fn close_of_an_attachments_circuit_acts_with_the_configuration_it_opened_with() {
    // The circuit opened for the support rules' consumer with its alarm; the attachment has
    // since been updated to another alarm. The close re-arms the alarm the circuit opened on.
    let settings = |alarm: &str| {
        json!({
            "Id": "orders",
            "ConsumerFunctionName": FUNCTION,
            "QueueArn": QUEUE_ARN,
            "AlarmName": alarm,
        })
    };
    let recorded = CircuitAttachment {
        id: "orders".into(),
        settings: settings(ALARM),
        role_arn: Some(format!(
            "arn:aws:iam::{ACCOUNT}:role/sqs-circuit-breaker/breaker/orders"
        )),
    };
    let now = CircuitAttachment {
        settings: settings("orders-renamed-alarm"),
        ..recorded.clone()
    };
    let (put_event, details) = put_event_where("Circuit Closed", |d| {
        d["mapping"] == UUID && d["function"] == FUNCTION && d["execution"] == EXECUTION
    });
    let ending = Ending {
        get_item: get_recorded_circuit(&recorded),
        describe: describe_execution(EXECUTION, ExecutionStatus::Failed),
        take_over: take_over_by(EXECUTION, "operator close at 1780000000000".into()),
        finish: finish_by("CLOSED", "operator close at 1780000000000".into()),
        put_event,
        details,
        put_metric: put_metric("CircuitClosed"),
        ..Ending::close()
    };
    let mut mocks = ending.mocks();
    mocks.lambda.push(list_mappings(&["Disabled"]));
    // A fleet-only deployment: the attachment's consumer is the only one.
    let base = located(&mocks, false, true);
    let ctx = fleet::context(&base, Some(&now))
        .await
        .expect("the attachment's context");
    assert_eq!(ctx.config.alarm_name, "orders-renamed-alarm");
    let report = actions::close(&ctx, "DB is back").await.expect("closed");
    assert_eq!(report.was, "OPEN");
    assert!(
        report
            .actions
            .contains(&format!("re-armed the alarm {ALARM}")),
        "{report:?}"
    );
    // `reset_alarm` answers only SetAlarmState on ALARM: the recorded configuration's.
    ending.assert_calls(&[
        ("get_item", 1),
        ("describe", 1),
        ("take_over", 1),
        ("get_mapping", 3),
        ("enable", 1),
        ("finish", 1),
        ("reset_alarm", 1),
        ("put_event", 1),
        ("put_metric", 1),
    ]);
    assert_eq!(ending.details().len(), 1);
}

#[tokio::test]
async fn history_of_one_consumer_is_the_executions_whose_input_names_it() {
    use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
    use aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryOutput;
    use aws_sdk_sfn::operation::list_executions::ListExecutionsOutput;
    use aws_sdk_sfn::types::ExecutionListItem;
    use aws_smithy_types::DateTime;
    const PAYMENTS: &str = "arn:aws:states:us-east-1:123456789012:execution:sm:payments-alarm";
    const BUILT: &str = "arn:aws:states:us-east-1:123456789012:execution:sm:operator-open";
    let input = |arn: &str| match arn {
        PAYMENTS => {
            json!({"attachment": "payments", "event": alarm_event("payments-failing", "ALARM")})
        }
        _ => json!({"operator": {"reason": "r", "hold": true}}),
    };
    let listed = |arn: &str| {
        ExecutionListItem::builder()
            .execution_arn(arn)
            .state_machine_arn("arn:sm")
            .name(arn.rsplit(':').next().unwrap_or_default())
            .status(ExecutionStatus::Running)
            .start_date(DateTime::from_millis(NOW_MS as i64))
            .build()
            .expect("an execution")
    };
    let list = mock!(aws_sdk_sfn::Client::list_executions).then_output(move || {
        ListExecutionsOutput::builder()
            .executions(listed(PAYMENTS))
            .executions(listed(BUILT))
            .build()
            .expect("a page")
    });
    let describe = mock!(aws_sdk_sfn::Client::describe_execution).then_compute_output(move |r| {
        let arn = r.execution_arn().unwrap_or_default();
        DescribeExecutionOutput::builder()
            .execution_arn(arn)
            .state_machine_arn("arn:sm")
            .status(ExecutionStatus::Running)
            .start_date(DateTime::from_millis(NOW_MS as i64))
            .input(input(arn).to_string())
            .build()
            .expect("an execution")
    });
    let events = mock!(aws_sdk_sfn::Client::get_execution_history).then_output(|| {
        GetExecutionHistoryOutput::builder()
            .set_events(Some(vec![]))
            .build()
            .expect("a history")
    });
    let mocks = Mocks {
        sfn: vec![list, describe.clone(), events],
        ..Mocks::default()
    };
    let ctx = located(&mocks, true, true);
    let of = |only: Option<&'static str>| {
        let ctx = ctx.clone();
        async move {
            sqs_circuit_breaker::history::history(&ctx, "arn:sm", 0, only)
                .await
                .expect("read")
                .into_iter()
                .map(|c| c.execution)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(of(Some("payments")).await, [PAYMENTS]);
    assert_eq!(of(Some(BUILT_IN)).await, [BUILT]);
    assert_eq!(describe.num_calls(), 4);
    // No filter (a deployment without attachments): every execution, no input read.
    assert_eq!(of(None).await, [PAYMENTS, BUILT]);
    assert_eq!(describe.num_calls(), 4);
}
