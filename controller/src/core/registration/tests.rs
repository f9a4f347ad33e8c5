use super::*;
use crate::core::attachment::Defaults;
use crate::core::signal::Signal;
use crate::core::Config;
use serde_json::json;

const STACK: &str =
    "arn:aws:cloudformation:eu-west-1:123456789012:stack/orders-attachment/5b6c-11ee";

fn request(kind: &str) -> Value {
    json!({
        "RequestType": kind,
        "ResponseURL": "https://cloudformation-custom-resource-response.s3.amazonaws.com/x?sig=1",
        "StackId": STACK,
        "RequestId": "req-1",
        "LogicalResourceId": "Registration",
        "ResourceType": "Custom::Attachment",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:b-controller",
            "ServiceTimeout": "300",
            "ConsumerFunctionName": "orders-consumer",
            "QueueArn": "arn:aws:sqs:eu-west-1:123456789012:orders",
            "AlarmArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:orders-failing",
            "BackoffCapSeconds": "600",
            "MaxOpenSeconds": ""
        }
    })
}

fn attachment(id: &str, function: &str, queue: &str, signal: &str) -> Attachment {
    let defaults = Defaults::from_lookup(|k| match k {
        "STATE_MACHINE_NAME" => Some("b-circuit-breaker".into()),
        "CIRCUIT_TABLE" => Some("t".into()),
        _ => None,
    });
    Config::for_attachment(
        &defaults,
        &json!({"Id": id, "ConsumerFunctionName": function,
                "QueueArn": format!("arn:aws:sqs:eu-west-1:123456789012:{queue}"),
                "AlarmName": "a", "AlarmSignal": signal}),
    )
    .expect("valid")
}

#[test]
fn a_custom_resource_request_is_recognised_and_parsed() {
    let event = request("Create");
    assert!(is_custom_resource_request(&event));
    assert!(!is_custom_resource_request(
        &json!({"step": "Probe", "circuit": {}})
    ));
    let parsed = CfnRequest::parse(&event).expect("request");
    assert_eq!(parsed.request_type, RequestType::Create);
    assert_eq!(parsed.physical_resource_id, None);
    assert_eq!(parsed.attachment_id(), Some("orders-attachment"));
    let mut other = request("Rollback");
    assert_eq!(
        CfnRequest::parse(&other),
        Err(RequestError::UnknownType("Rollback".into()))
    );
    other["RequestType"] = json!("Delete");
    other["PhysicalResourceId"] = json!("orders-attachment");
    let parsed = CfnRequest::parse(&other).expect("request");
    assert_eq!(parsed.request_type, RequestType::Delete);
    assert_eq!(
        parsed.physical_resource_id.as_deref(),
        Some("orders-attachment")
    );
}

#[test]
fn the_id_is_the_stacks_name_or_nothing() {
    let mut parsed = CfnRequest::parse(&request("Create")).expect("request");
    for bad in [
        "orders",
        "arn:aws:cloudformation:eu-west-1:123456789012:stack/",
        "arn:aws:cloudformation:eu-west-1:123456789012:changeset/orders/x",
        "arn:aws:cloudformation:eu-west-1:123456789012:stack/1orders/x",
    ] {
        parsed.stack_id = bad.into();
        assert_eq!(parsed.attachment_id(), None, "{bad}");
    }
}

#[test]
fn settings_are_the_properties_with_the_alarms_name_and_the_stacks_id() {
    let parsed = CfnRequest::parse(&request("Create")).expect("request");
    assert_eq!(
        settings("orders-attachment", &parsed.properties),
        Ok(json!({
            "Id": "orders-attachment",
            "ConsumerFunctionName": "orders-consumer",
            "QueueArn": "arn:aws:sqs:eu-west-1:123456789012:orders",
            "AlarmName": "orders-failing",
            "BackoffCapSeconds": "600",
            "MaxOpenSeconds": ""
        }))
    );
    // A property naming another id is overridden by the stack's.
    let spoofed = json!({"Id": "payments", "AlarmArn":
        "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:a"});
    assert_eq!(
        settings("orders", &spoofed).expect("settings")["Id"],
        json!("orders")
    );
    assert_eq!(settings("o", &json!({})), Err(SettingsError::NoAlarm));
    assert!(matches!(
        settings("o", &json!({"AlarmArn": "orders-failing"})),
        Err(SettingsError::InvalidAlarmArn(_))
    ));
}

#[test]
fn the_role_is_an_iam_role_of_the_stacks_account_and_not_a_setting() {
    let role = "arn:aws:iam::123456789012:role/sqs-circuit-breaker/team/orders-Role-1AB";
    let properties = json!({"RoleArn": role, "AlarmArn":
        "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:a"});
    assert_eq!(role_arn(&properties, STACK), Ok(Some(role.to_owned())));
    assert!(settings("o", &properties)
        .expect("settings")
        .get("RoleArn")
        .is_none());
    assert_eq!(role_arn(&json!({}), STACK), Ok(None));
    assert_eq!(role_arn(&json!({"RoleArn": null}), STACK), Ok(None));
    for bad in [
        json!(""),
        json!(7),
        json!("orders-role"),
        json!("arn:aws:iam::123456789012:user/orders"),
        json!("arn:aws:iam::123456789012:role/"),
        json!("arn:aws:iam::123456789012:role/path/"),
        json!("arn:aws:iam::12345:role/orders"),
        json!("arn:aws:iam:eu-west-1:123456789012:role/orders"),
        json!("arn:aws:sts::123456789012:assumed-role/orders/s"),
        json!("arn:aws:iam::123456789012:role/or ders"),
    ] {
        assert!(
            matches!(
                role_arn(&json!({"RoleArn": bad}), STACK),
                Err(SettingsError::InvalidRoleArn(_))
            ),
            "{bad}"
        );
    }
    for elsewhere in [
        "arn:aws:iam::210987654321:role/orders",
        "arn:aws-cn:iam::123456789012:role/orders",
    ] {
        let err = role_arn(&json!({"RoleArn": elsewhere}), STACK).expect_err(elsewhere);
        assert!(matches!(err, SettingsError::RoleElsewhere { .. }), "{err}");
        assert!(err.to_string().contains("of its own account"), "{err}");
    }
}

#[test]
fn moving_an_attachment_to_another_consumer_waits_for_its_circuit_to_close() {
    let registered = json!({"ConsumerFunctionName": "orders", "QueueArn": "q1",
                            "BackoffCapSeconds": "60"});
    let settings_only = json!({"ConsumerFunctionName": " orders", "QueueArn": "q1",
                               "BackoffCapSeconds": "600"});
    assert!(consumer_changes(&registered, &settings_only).is_empty());
    let moved = json!({"ConsumerFunctionName": "payments", "QueueArn": "q2"});
    let changes = consumer_changes(&registered, &moved);
    assert_eq!(changes, ["ConsumerFunctionName", "QueueArn"]);
    assert_eq!(consumer_change_allowed("orders", &changes, false), Ok(()));
    assert_eq!(consumer_change_allowed("orders", &[], true), Ok(()));
    let err = consumer_change_allowed("orders", &changes, true).expect_err("open");
    assert!(
        err.contains("ConsumerFunctionName and QueueArn cannot change")
            && err.contains("close the circuit first"),
        "{err}"
    );
}

#[test]
fn an_alarm_elsewhere_than_its_queue_is_refused() {
    let a = attachment("orders", "orders", "orders", "custom");
    assert!(alarm_beside_queue(&a, "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:x").is_ok());
    let err = alarm_beside_queue(&a, "arn:aws:cloudwatch:us-east-1:123456789012:alarm:x")
        .expect_err("other region");
    assert!(err.contains("region us-east-1"), "{err}");
}

/// What `infra/attachment.yaml` sends for an alarm it creates: the created alarm's ARN,
/// the real signal and the signal's settings, so the circuit re-arms that alarm (the
/// composite's children too) and the slow start judges by its thresholds.
#[test]
fn a_created_alarm_registers_its_name_signal_and_settings() {
    let defaults = Defaults::from_lookup(|k| match k {
        "STATE_MACHINE_NAME" => Some("b-circuit-breaker".into()),
        "CIRCUIT_TABLE" => Some("t".into()),
        "ALARM_SIGNAL" => Some("errors".into()),
        _ => None,
    });
    let created = |signal: &str, alarm: &str| {
        let properties = json!({
            "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:b-controller",
            "ConsumerFunctionName": "orders-consumer",
            "QueueArn": "arn:aws:sqs:eu-west-1:123456789012:orders",
            "AlarmArn": format!("arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{alarm}"),
            "AlarmSignal": signal,
            "AlarmFailurePercent": "30",
            "AlarmPeriodSeconds": "60",
            "AlarmHangPeriods": "4"
        });
        let settings = settings("orders-attachment", &properties).expect("settings");
        Config::for_attachment(&defaults, &settings)
            .expect("valid")
            .config
    };
    let any = created("any", "orders-attachment-consumer-failing");
    assert_eq!(any.alarm_name, "orders-attachment-consumer-failing");
    assert_eq!(any.signal.signal, Signal::Any);
    assert!(any.signal.signal.may_be_composite());
    assert_eq!(any.signal.failure_percent, 30);
    assert_eq!(any.signal.hang_seconds, 240);
    let errors = created("errors", "orders-attachment-consumer-errors");
    assert_eq!(errors.alarm_name, "orders-attachment-consumer-errors");
    assert_eq!(errors.signal.signal, Signal::Errors);
    // An existing alarm is custom whatever the deployment's own signal.
    assert_eq!(
        created("custom", "orders-failing").signal.signal,
        Signal::Custom
    );
}

#[test]
fn the_same_consumer_twice_is_refused_and_shared_signals_warned() {
    let orders = attachment("orders", "orders", "orders", "any");
    let fleet = vec![orders.clone()];
    let twin = attachment("orders-again", "orders", "orders", "any");
    let err = admit(&fleet, None, &twin).expect_err("same mapping");
    assert!(err.contains("already attached as \"orders\""), "{err}");
    // Its own earlier registration (an update) is not another's.
    assert_eq!(admit(&fleet, None, &orders), Ok(vec![]));
    let beside = attachment("audit", "audit", "orders", "failed-records");
    let warnings = admit(&fleet, None, &beside).expect("admitted");
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("shares queue"), "{warnings:?}");
    let builtin = Some(("orders", "arn:aws:sqs:eu-west-1:123456789012:orders"));
    assert!(admit(&[], builtin, &orders)
        .expect_err("built-in")
        .contains("own consumer"));
}

#[test]
fn the_response_body_is_cloudformations_shape() {
    let parsed = CfnRequest::parse(&request("Create")).expect("request");
    let ok = CfnResponse::to(&parsed, parsed.attachment_id(), Ok("registered".into()));
    let body: Value = serde_json::from_str(&ok.body()).expect("json");
    assert_eq!(
        body,
        json!({
            "Status": "SUCCESS",
            "Reason": "registered",
            "PhysicalResourceId": "orders-attachment",
            "StackId": STACK,
            "RequestId": "req-1",
            "LogicalResourceId": "Registration"
        })
    );
    // A refused create names no attachment: its rollback's Delete touches nothing.
    let refused = CfnResponse::to(&parsed, parsed.attachment_id(), Err("no".into()));
    assert_eq!(refused.status, Status::Failed);
    assert_eq!(refused.physical_resource_id, "refused-req-1");
    // A failed update or delete keeps its id.
    let mut delete = parsed.clone();
    delete.request_type = RequestType::Delete;
    delete.physical_resource_id = Some("orders-attachment".into());
    let failed = CfnResponse::to(&delete, delete.attachment_id(), Err("no".into()));
    assert_eq!(failed.physical_resource_id, "orders-attachment");
    // A long reason is cut to fit CloudFormation's 4 KB body.
    let long = CfnResponse::to(&parsed, None, Err("é".repeat(5000)));
    assert!(long.body().len() < 4096);
    assert!(long.reason.ends_with("..."));
}
