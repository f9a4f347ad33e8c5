//! The attachment's registration over mocked AWS: what a custom-resource request reads and
//! writes, and that every request is answered on its ResponseURL, refusals included. The
//! mocked clients are strict: a call no rule matches fails the test.

use crate::support::*;

use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
use aws_sdk_dynamodb::operation::scan::ScanOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_mocks::{mock, Rule};
use controller::adapters::attachments::{item_attributes, Attachments, PutMode};
use controller::adapters::Clients;
use controller::circuit::CircuitAttachment;
use controller::core::attachment::Defaults;
use controller::error::StepError;
use controller::registration::{handle, Respond};
use controller::steps::fleet::BoxFuture;
use controller::steps::{Context, Fleet, Roles};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

const ATTACHMENTS: &str = "breaker-attachments";
const STACK: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/orders-attachment/1f2e";
const URL: &str = "http://localhost:4566/_ministack/cfn-response/abc";
const ROLE: &str =
    "arn:aws:iam::123456789012:role/sqs-circuit-breaker/breaker/orders-attachment-Role-1X";

/// Hands out the controller's own (mocked) clients for any role, and records the roles asked.
#[derive(Default)]
struct TestRoles(Mutex<Vec<String>>);

impl Roles for TestRoles {
    fn clients<'a>(
        &'a self,
        role_arn: &'a str,
        own: &'a Clients,
    ) -> BoxFuture<'a, Result<Clients, StepError>> {
        self.0.lock().unwrap().push(role_arn.to_owned());
        Box::pin(async move { Ok(own.clone()) })
    }
}

/// The answers PUT, by URL.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, Value)>>);

impl Respond for Recorder {
    fn send<'a>(&'a self, url: &'a str, body: String) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let body = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            self.0.lock().unwrap().push((url.to_owned(), body));
            Ok(())
        })
    }
}

fn request(kind: &str, extra: &[(&str, &str)]) -> Value {
    let mut properties = json!({
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:breaker-controller",
        "ServiceTimeout": "300",
        "ConsumerFunctionName": FUNCTION,
        "QueueArn": QUEUE_ARN,
        "AlarmArn": format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{ALARM}"),
        "AlarmSignal": "custom",
    });
    for (k, v) in extra {
        properties[*k] = json!(v);
    }
    let mut event = json!({
        "RequestType": kind, "ResponseURL": URL, "StackId": STACK, "RequestId": "req-7",
        "LogicalResourceId": "Registration", "ResourceType": "Custom::SqsCircuitBreakerAttachment",
        "ResourceProperties": properties,
    });
    if kind != "Create" {
        event["PhysicalResourceId"] = json!("orders-attachment");
    }
    event
}

/// A fleet-only deployment whose circuit table is the support rules'.
fn context(mocks: &Mocks) -> Context {
    context_with_rejitter(mocks, None)
}

/// [`context`], with the deployment's rejitter function if any.
fn context_with_rejitter(mocks: &Mocks, rejitter: Option<&'static str>) -> Context {
    let ctx = mocks.context(config(&[]));
    let defaults = Defaults::from_lookup(|name| match name {
        "STATE_MACHINE_NAME" => Some(STATE_MACHINE.into()),
        "CIRCUIT_TABLE" => Some(TABLE.into()),
        "EVENT_BUS_NAME" => Some(EVENT_BUS.into()),
        "METRICS_NAMESPACE" => Some(NAMESPACE.into()),
        "REJITTER_FUNCTION_NAME" => rejitter.map(str::to_owned),
        _ => None,
    });
    Context {
        fleet: Fleet {
            defaults,
            attachments: Some(Attachments {
                dynamodb: ctx.clients.dynamodb.clone(),
                table: ATTACHMENTS.into(),
            }),
            fleet_only: true,
            roles: None,
            own: None,
        },
        ..ctx
    }
}

fn scan(items: Vec<CircuitAttachment>) -> Rule {
    mock!(aws_sdk_dynamodb::Client::scan)
        .match_requests(|r| r.table_name() == Some(ATTACHMENTS))
        .then_output(move || {
            ScanOutput::builder()
                .set_items(Some(items.iter().map(item_attributes).collect()))
                .build()
        })
}

fn put_registered() -> Rule {
    put(PutMode::Register, None)
}

/// The item written by a create (`Register`) or an update, with `role`.
fn put(mode: PutMode, role: Option<&'static str>) -> Rule {
    let condition = match mode {
        PutMode::Register => "attribute_not_exists(id)",
        PutMode::Update => "attribute_exists(id)",
    };
    mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests(move |r| {
            let item = r.item().cloned().unwrap_or_default();
            let settings: Value = item
                .get("settings")
                .and_then(|s| s.as_s().ok())
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default();
            r.table_name() == Some(ATTACHMENTS)
                && r.condition_expression() == Some(condition)
                && item.get("id") == Some(&AttributeValue::S("orders-attachment".into()))
                && item
                    .get("role_arn")
                    .and_then(|r| r.as_s().ok())
                    .map(String::as_str)
                    == role
                && settings["AlarmName"] == ALARM
                && settings["Id"] == "orders-attachment"
                && settings.get("ServiceToken").is_none()
                && settings.get("RoleArn").is_none()
        })
        .then_output(|| PutItemOutput::builder().build())
}

/// The attachment as registered: the support rules' consumer, under `role`.
fn registered(role: Option<&str>) -> CircuitAttachment {
    CircuitAttachment {
        id: "orders-attachment".into(),
        settings: json!({"Id": "orders-attachment", "ConsumerFunctionName": FUNCTION,
                         "QueueArn": QUEUE_ARN, "AlarmName": ALARM, "AlarmSignal": "custom"}),
        role_arn: role.map(str::to_owned),
    }
}

fn get_registered(attachment: CircuitAttachment) -> Rule {
    mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(|r| r.table_name() == Some(ATTACHMENTS))
        .then_output(move || {
            aws_sdk_dynamodb::operation::get_item::GetItemOutput::builder()
                .set_item(Some(item_attributes(&attachment)))
                .build()
        })
}

fn with_roles(ctx: Context, roles: &Arc<TestRoles>) -> Context {
    Context {
        fleet: Fleet {
            roles: Some(roles.clone()),
            ..ctx.fleet.clone()
        },
        ..ctx
    }
}

fn answered(recorder: &Recorder) -> Value {
    let answers = recorder.0.lock().unwrap();
    assert_eq!(answers.len(), 1, "one answer: {answers:?}");
    assert_eq!(answers[0].0, URL);
    answers[0].1.clone()
}

#[tokio::test]
async fn a_create_validates_and_registers_the_stacks_attachment() {
    let mocks = Mocks {
        dynamodb: vec![scan(vec![]), put_registered()],
        ..Mocks::default()
    };
    let recorder = Recorder::default();
    handle(&context(&mocks), &request("Create", &[]), &recorder)
        .await
        .expect("answered");
    let answer = answered(&recorder);
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(answer["PhysicalResourceId"], "orders-attachment");
    assert_eq!(answer["RequestId"], "req-7");
    assert_eq!(answer["StackId"], STACK);
}

#[tokio::test]
async fn a_refused_create_writes_nothing_and_fails_with_the_checks_sentence() {
    // No rule for any write: the strict mocks fail the test if one is made.
    let mocks = Mocks::default();
    let recorder = Recorder::default();
    let event = request(
        "Create",
        &[("BackoffBaseSeconds", "50"), ("BackoffCapSeconds", "10")],
    );
    handle(&context(&mocks), &event, &recorder)
        .await
        .expect("answered");
    let answer = answered(&recorder);
    assert_eq!(answer["Status"], "FAILED");
    assert!(
        answer["Reason"]
            .as_str()
            .unwrap()
            .contains("BACKOFF_CAP_SECONDS=10 must be at least BACKOFF_BASE_SECONDS=50"),
        "{answer}"
    );
    assert_eq!(answer["PhysicalResourceId"], "refused-req-7");
}

#[tokio::test]
async fn a_second_attachment_of_the_same_consumer_is_refused() {
    let other = CircuitAttachment {
        id: "orders-first".into(),
        settings: json!({"Id": "orders-first", "ConsumerFunctionName": FUNCTION,
                         "QueueArn": QUEUE_ARN, "AlarmName": "another"}),
        role_arn: None,
    };
    let mocks = Mocks {
        dynamodb: vec![scan(vec![other])],
        ..Mocks::default()
    };
    let recorder = Recorder::default();
    handle(&context(&mocks), &request("Create", &[]), &recorder)
        .await
        .expect("answered");
    let answer = answered(&recorder);
    assert_eq!(answer["Status"], "FAILED");
    assert!(
        answer["Reason"]
            .as_str()
            .unwrap()
            .contains("already attached as \"orders-first\""),
        "{answer}"
    );
}

#[tokio::test]
async fn a_delete_with_the_circuit_closed_removes_the_item() {
    // The consumer's mapping is looked up under the attachment's role.
    let roles = Arc::new(TestRoles::default());
    let delete = mock!(aws_sdk_dynamodb::Client::delete_item)
        .match_requests(|r| {
            r.table_name() == Some(ATTACHMENTS)
                && r.key().and_then(|k| k.get("id"))
                    == Some(&AttributeValue::S("orders-attachment".into()))
        })
        .then_output(|| DeleteItemOutput::builder().build());
    let mocks = Mocks {
        dynamodb: vec![
            get_registered(registered(Some(ROLE))),
            get_item(Some(item("CLOSED", EXECUTION))),
            delete,
        ],
        lambda: vec![list_mappings_page(None, None, &["Enabled"])],
        ..Mocks::default()
    };
    let recorder = Recorder::default();
    handle(
        &with_roles(context(&mocks), &roles),
        &request("Delete", &[]),
        &recorder,
    )
    .await
    .expect("answered");
    let answer = answered(&recorder);
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(mocks.dynamodb[2].num_calls(), 1, "the item is deleted");
    assert_eq!(*roles.0.lock().unwrap(), [ROLE]);
}

#[tokio::test]
async fn a_delete_of_a_refused_create_touches_nothing() {
    let mocks = Mocks::default();
    let recorder = Recorder::default();
    let mut event = request("Delete", &[]);
    event["PhysicalResourceId"] = json!("refused-req-1");
    handle(&context(&mocks), &event, &recorder)
        .await
        .expect("answered");
    assert_eq!(answered(&recorder)["Status"], "SUCCESS");
}

#[tokio::test]
async fn a_create_records_the_attachments_role() {
    let mocks = Mocks {
        dynamodb: vec![scan(vec![]), put(PutMode::Register, Some(ROLE))],
        ..Mocks::default()
    };
    let recorder = Recorder::default();
    handle(
        &context(&mocks),
        &request("Create", &[("RoleArn", ROLE)]),
        &recorder,
    )
    .await
    .expect("answered");
    let answer = answered(&recorder);
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(mocks.dynamodb[1].num_calls(), 1, "the item names the role");
}

#[tokio::test]
async fn a_role_of_another_account_is_refused_and_nothing_written() {
    let mocks = Mocks::default();
    let recorder = Recorder::default();
    let elsewhere = "arn:aws:iam::210987654321:role/sqs-circuit-breaker/breaker/orders";
    handle(
        &context(&mocks),
        &request("Create", &[("RoleArn", elsewhere)]),
        &recorder,
    )
    .await
    .expect("answered");
    let answer = answered(&recorder);
    assert_eq!(answer["Status"], "FAILED");
    let reason = answer["Reason"].as_str().unwrap();
    assert!(
        reason.contains("assumes only a role of its own account"),
        "{reason}"
    );
    assert_eq!(answer["PhysicalResourceId"], "refused-req-7");
}

#[tokio::test]
async fn moving_an_attachment_with_its_circuit_open_is_refused_until_it_closes() {
    // The registered consumer's circuit is found under the registered role; no write rule:
    // a write fails the test.
    let roles = Arc::new(TestRoles::default());
    let mocks = Mocks {
        dynamodb: vec![
            scan(vec![]),
            get_registered(registered(Some(ROLE))),
            get_item(Some(item("OPEN", EXECUTION))),
        ],
        lambda: vec![list_mappings_page(None, None, &["Disabled"])],
        ..Mocks::default()
    };
    let recorder = Recorder::default();
    let moved = request(
        "Update",
        &[
            ("ConsumerFunctionName", "payments-consumer"),
            ("RoleArn", ROLE),
        ],
    );
    handle(&with_roles(context(&mocks), &roles), &moved, &recorder)
        .await
        .expect("answered");
    let answer = answered(&recorder);
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    let reason = answer["Reason"].as_str().unwrap();
    assert!(
        reason.contains("ConsumerFunctionName cannot change while its circuit is open")
            && reason.contains("close the circuit first"),
        "{reason}"
    );
    assert_eq!(answer["PhysicalResourceId"], "orders-attachment");
    assert_eq!(*roles.0.lock().unwrap(), [ROLE]);

    // Closed: the same update is written, with the role.
    let mocks = Mocks {
        dynamodb: vec![
            scan(vec![]),
            get_registered(registered(Some(ROLE))),
            get_item(Some(item("CLOSED", EXECUTION))),
            put(PutMode::Update, Some(ROLE)),
        ],
        lambda: vec![list_mappings_page(None, None, &["Enabled"])],
        ..Mocks::default()
    };
    let recorder = Recorder::default();
    handle(&with_roles(context(&mocks), &roles), &moved, &recorder)
        .await
        .expect("answered");
    let answer = answered(&recorder);
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(mocks.dynamodb[3].num_calls(), 1, "the update is written");
}

#[tokio::test]
async fn an_update_of_settings_only_does_not_look_for_the_circuit() {
    // No mapping or circuit rule: looking for them fails the test.
    let mocks = Mocks {
        dynamodb: vec![
            scan(vec![]),
            get_registered(registered(None)),
            put(PutMode::Update, None),
        ],
        ..Mocks::default()
    };
    let recorder = Recorder::default();
    handle(
        &context(&mocks),
        &request("Update", &[("BackoffCapSeconds", "900")]),
        &recorder,
    )
    .await
    .expect("answered");
    let answer = answered(&recorder);
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(mocks.dynamodb[2].num_calls(), 1);
}

#[tokio::test]
async fn the_rejitter_is_registered_when_the_deployment_has_one() {
    let put = mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests(|r| {
            let settings: Value = r
                .item()
                .and_then(|i| i.get("settings"))
                .and_then(|s| s.as_s().ok())
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default();
            settings["RejitterEnabled"] == "true"
        })
        .then_output(|| PutItemOutput::builder().build());
    let mocks = Mocks {
        dynamodb: vec![scan(vec![]), put],
        ..Mocks::default()
    };
    let recorder = Recorder::default();
    let ctx = context_with_rejitter(&mocks, Some("breaker-rejitter"));
    handle(
        &ctx,
        &request("Create", &[("RejitterEnabled", "true")]),
        &recorder,
    )
    .await
    .expect("answered");
    let answer = answered(&recorder);
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(answer["PhysicalResourceId"], "orders-attachment");
}

#[tokio::test]
async fn the_rejitter_of_a_deployment_without_one_or_on_a_fifo_queue_is_refused() {
    // No rule for any write: the strict mocks fail the test if one is made.
    for (rejitter, extra, sentence) in [
        (
            None,
            vec![("RejitterEnabled", "true")],
            "turns the rejitter on (RejitterEnabled=true), but the breaker deployment has no \
             rejitter function",
        ),
        (
            Some("breaker-rejitter"),
            vec![
                ("RejitterEnabled", "true"),
                ("QueueArn", "arn:aws:sqs:us-east-1:123456789012:orders.fifo"),
            ],
            "is a FIFO queue, which cannot delay single messages",
        ),
    ] {
        let mocks = Mocks::default();
        let recorder = Recorder::default();
        let ctx = context_with_rejitter(&mocks, rejitter);
        handle(&ctx, &request("Create", &extra), &recorder)
            .await
            .expect("answered");
        let answer = answered(&recorder);
        assert_eq!(answer["Status"], "FAILED", "{answer}");
        assert!(
            answer["Reason"]
                .as_str()
                .unwrap_or_default()
                .contains(sentence),
            "{answer}"
        );
        assert_eq!(answer["PhysicalResourceId"], "refused-req-7");
    }
}
