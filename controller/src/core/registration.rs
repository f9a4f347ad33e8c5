//! An attachment's registration, as CloudFormation asks for it: the custom resource
//! `Registration` of `infra/attachment.yaml` sends `Create`, `Update` and `Delete` requests to
//! the controller, which must always answer on the request's `ResponseURL`. What a request
//! is, the attachment's settings it carries, and the answer are decided here; the reads and
//! writes are `crate::registration`'s.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::core::attachment::{is_attachment_id, overlaps, Attachment, Overlap};

/// CloudFormation's own properties of a custom resource: not settings.
const SERVICE_PROPERTIES: &[&str] = &["ServiceToken", "ServiceTimeout"];

/// The property naming the attachment's role (`AttachmentRole`): the item's `role_arn`, not
/// a setting.
pub const ROLE_PROPERTY: &str = "RoleArn";

/// The settings naming the consumer, which one circuit belongs to.
const CONSUMER_SETTINGS: [&str; 2] = ["ConsumerFunctionName", "QueueArn"];

/// CloudFormation refuses a response body past 4,096 bytes; the reason is the only long part.
const MAX_REASON_BYTES: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

/// A custom-resource request, as CloudFormation sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct CfnRequest {
    pub request_type: RequestType,
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    /// `None` on `Create`.
    pub physical_resource_id: Option<String>,
    pub properties: Value,
}

/// Is `event` a CloudFormation custom-resource request (rather than a step request)?
pub fn is_custom_resource_request(event: &Value) -> bool {
    ["RequestType", "ResponseURL", "StackId", "RequestId"]
        .iter()
        .all(|k| event.get(*k).is_some_and(Value::is_string))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the custom-resource request has no {0}")]
    Missing(&'static str),
    #[error("the custom-resource request's RequestType {0:?} is not Create, Update or Delete")]
    UnknownType(String),
}

impl CfnRequest {
    pub fn parse(event: &Value) -> Result<CfnRequest, RequestError> {
        let text = |k: &'static str| {
            event
                .get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(RequestError::Missing(k))
        };
        let request_type = match text("RequestType")?.as_str() {
            "Create" => RequestType::Create,
            "Update" => RequestType::Update,
            "Delete" => RequestType::Delete,
            other => return Err(RequestError::UnknownType(other.to_owned())),
        };
        Ok(CfnRequest {
            request_type,
            response_url: text("ResponseURL")?,
            stack_id: text("StackId")?,
            request_id: text("RequestId")?,
            logical_resource_id: text("LogicalResourceId")?,
            physical_resource_id: text("PhysicalResourceId").ok(),
            properties: event
                .get("ResourceProperties")
                .cloned()
                .unwrap_or_else(|| Value::Object(Map::new())),
        })
    }

    /// The attachment's id: its stack's name, from the stack ARN
    /// (`arn:<partition>:cloudformation:<region>:<account>:stack/<name>/<uuid>`), so that no
    /// stack can register under another's name.
    pub fn attachment_id(&self) -> Option<&str> {
        let resource = self.stack_id.splitn(6, ':').nth(5)?;
        let name = resource.strip_prefix("stack/")?.split('/').next()?;
        is_attachment_id(name).then_some(name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("the Registration's properties are not an object")]
    NotAnObject,
    #[error(
        "AlarmArn {0:?} is not a CloudWatch alarm ARN \
         (arn:<partition>:cloudwatch:<region>:<account>:alarm:<name>)"
    )]
    InvalidAlarmArn(String),
    #[error("the Registration has no AlarmArn: infra/attachment.yaml always sends the alarm it watches (yours, or the one it creates)")]
    NoAlarm,
    #[error(
        "RoleArn {0:?} is not an IAM role ARN (arn:<partition>:iam::<account>:role/<path><name>)"
    )]
    InvalidRoleArn(String),
    #[error(
        "RoleArn {role} is in account {account} ({partition}), the attachment's stack in \
         account {stack_account} ({stack_partition}): the breaker assumes only a role of its \
         own account"
    )]
    RoleElsewhere {
        role: String,
        partition: String,
        account: String,
        stack_partition: String,
        stack_account: String,
    },
}

/// The settings an item stores (what `Config::for_attachment` takes) from the custom
/// resource's properties: CloudFormation's own properties dropped, `AlarmArn` as the
/// `AlarmName` the configuration names its alarm by, and `Id` the stack's name.
pub fn settings(id: &str, properties: &Value) -> Result<Value, SettingsError> {
    let fields = properties.as_object().ok_or(SettingsError::NotAnObject)?;
    let mut settings = Map::new();
    settings.insert("Id".into(), Value::String(id.to_owned()));
    let mut alarm = None;
    for (key, value) in fields {
        // The id is the stack's name, whatever a property says.
        if SERVICE_PROPERTIES.contains(&key.as_str()) || key == "Id" || key == ROLE_PROPERTY {
            continue;
        }
        if key == "AlarmArn" {
            alarm = Some(value.as_str().map(str::to_owned).unwrap_or_default());
            continue;
        }
        settings.insert(key.clone(), value.clone());
    }
    let arn = alarm.ok_or(SettingsError::NoAlarm)?;
    let alarm = AlarmArn::parse(&arn).ok_or(SettingsError::InvalidAlarmArn(arn))?;
    settings.insert("AlarmName".into(), Value::String(alarm.name));
    Ok(Value::Object(settings))
}

/// The role the attachment's calls on its consumer run under, from the `RoleArn` property:
/// `None` when there is none (the controller's own role), else an IAM role ARN in the
/// partition and account of the attachment's stack (`stack_id`), or a refusal.
pub fn role_arn(properties: &Value, stack_id: &str) -> Result<Option<String>, SettingsError> {
    let role = match properties.get(ROLE_PROPERTY) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(role)) => role.trim().to_owned(),
        Some(other) => return Err(SettingsError::InvalidRoleArn(other.to_string())),
    };
    let invalid = || SettingsError::InvalidRoleArn(role.clone());
    let parts: Vec<&str> = role.splitn(6, ':').collect();
    let ["arn", partition, "iam", "", account, resource] = parts.as_slice() else {
        return Err(invalid());
    };
    let name = resource.strip_prefix("role/").ok_or_else(invalid)?;
    let well_formed = partition.starts_with("aws")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && !name.ends_with('/')
        && !name.starts_with('/')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/+=,.@_-".contains(&b));
    if !well_formed {
        return Err(invalid());
    }
    let stack: Vec<&str> = stack_id.splitn(6, ':').collect();
    let (stack_partition, stack_account) = match stack.as_slice() {
        ["arn", partition, "cloudformation", _, account, _] => (*partition, *account),
        _ => ("", ""),
    };
    if (*partition, *account) != (stack_partition, stack_account) {
        return Err(SettingsError::RoleElsewhere {
            role: role.clone(),
            partition: (*partition).to_owned(),
            account: (*account).to_owned(),
            stack_partition: stack_partition.to_owned(),
            stack_account: stack_account.to_owned(),
        });
    }
    Ok(Some(role))
}

/// The consumer settings (`ConsumerFunctionName`, `QueueArn`) an update changes, from the
/// registered settings to the requested ones.
pub fn consumer_changes(registered: &Value, requested: &Value) -> Vec<&'static str> {
    let text = |settings: &Value, key: &str| {
        settings
            .get(key)
            .and_then(Value::as_str)
            .map(|s| s.trim().to_owned())
    };
    CONSUMER_SETTINGS
        .into_iter()
        .filter(|key| text(registered, key) != text(requested, key))
        .collect()
}

/// An update may not move an attachment to another consumer while its circuit is open
/// (`open`): the circuit, its mapping and its execution are the registered consumer's, and
/// only closing it gives that consumer back.
pub fn consumer_change_allowed(id: &str, changes: &[&str], open: bool) -> Result<(), String> {
    if changes.is_empty() || !open {
        return Ok(());
    }
    Err(format!(
        "attachment {id:?}: {} cannot change while its circuit is open (the open circuit is \
         the registered consumer's): close the circuit first, then deploy again",
        changes.join(" and ")
    ))
}

/// The parts of a CloudWatch alarm ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmArn {
    pub region: String,
    pub account: String,
    pub name: String,
}

impl AlarmArn {
    pub fn parse(arn: &str) -> Option<AlarmArn> {
        let parts: Vec<&str> = arn.splitn(7, ':').collect();
        match parts.as_slice() {
            ["arn", partition, "cloudwatch", region, account, "alarm", name]
                if partition.starts_with("aws")
                    && !region.is_empty()
                    && account.len() == 12
                    && account.bytes().all(|b| b.is_ascii_digit())
                    && !name.is_empty() =>
            {
                Some(AlarmArn {
                    region: (*region).to_owned(),
                    account: (*account).to_owned(),
                    name: (*name).to_owned(),
                })
            }
            _ => None,
        }
    }
}

/// The alarm must be in the queue's account and region: the workflow accepts only alarm
/// events from there, so an alarm elsewhere would never open the circuit.
pub fn alarm_beside_queue(attachment: &Attachment, alarm_arn: &str) -> Result<(), String> {
    let (Some(alarm), Ok(queue)) = (AlarmArn::parse(alarm_arn), attachment.config.queue()) else {
        return Ok(());
    };
    if alarm.region == queue.region && alarm.account == queue.account {
        return Ok(());
    }
    Err(format!(
        "attachment {:?}: AlarmArn is in account {} region {}, the queue in account {} region \
         {}: the breaker acts only on an alarm beside its queue",
        attachment.id, alarm.account, alarm.region, queue.account, queue.region
    ))
}

/// Whether an attachment may register beside the rest of the fleet (`fleet`: the others'
/// valid attachments; `builtin`: the deployment's own consumer, function and queue, if it
/// has one), and the warnings to log when it may.
pub fn admit(
    fleet: &[Attachment],
    builtin: Option<(&str, &str)>,
    attachment: &Attachment,
) -> Result<Vec<String>, String> {
    let mine = &attachment.config;
    if builtin == Some((mine.consumer_function.as_str(), mine.queue_arn.as_str())) {
        return Err(format!(
            "attachment {:?}: function {} and queue {} are the breaker deployment's own \
             consumer: one mapping has one circuit",
            attachment.id, mine.consumer_function, mine.queue_arn
        ));
    }
    let mut warnings = Vec::new();
    for overlap in overlaps(fleet, attachment) {
        match overlap {
            Overlap::SameConsumer { other } => {
                return Err(format!(
                    "attachment {:?}: function {} and queue {} are already attached as {other:?}: \
                     one mapping has one circuit; delete that attachment first",
                    attachment.id, mine.consumer_function, mine.queue_arn
                ))
            }
            Overlap::SharedQueueSignal { other } => warnings.push(format!(
                "attachment {:?} shares queue {} with {other:?} and its signal reads the \
                 queue's metrics: the other consumer's failures raise its alarm too \
                 (AlarmSignal=error-share reads only its function)",
                attachment.id, mine.queue_arn
            )),
            Overlap::SharedFunctionSignal { other } => warnings.push(format!(
                "attachment {:?} shares function {} with {other:?} and its signal reads the \
                 function's metrics: failures on the other queue raise its alarm too \
                 (AlarmSignal=failed-records reads only its queue)",
                attachment.id, mine.consumer_function
            )),
        }
    }
    Ok(warnings)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Success,
    Failed,
}

/// The answer PUT on the request's `ResponseURL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CfnResponse {
    pub status: Status,
    pub reason: String,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
}

/// The physical id a refused `Create` answers with: not the attachment's id, so that the
/// `Delete` CloudFormation sends when it rolls the refused stack back leaves alone an item
/// registered under that id (a stale one it was refused over).
pub fn refused_physical_id(request: &CfnRequest) -> String {
    format!("refused-{}", request.request_id)
}

impl CfnResponse {
    /// The answer to `request`: `Ok` succeeds (its physical id is the attachment's), `Err`
    /// fails with the reason CloudFormation shows as the stack's failure.
    pub fn to(request: &CfnRequest, id: Option<&str>, outcome: Result<String, String>) -> Self {
        let physical = match (&outcome, request.request_type) {
            // A create that did not register owns no id.
            (Err(_), RequestType::Create) => refused_physical_id(request),
            _ => id
                .map(str::to_owned)
                .or_else(|| request.physical_resource_id.clone())
                .unwrap_or_else(|| refused_physical_id(request)),
        };
        let (status, reason) = match outcome {
            Ok(reason) => (Status::Success, reason),
            Err(reason) => (Status::Failed, reason),
        };
        CfnResponse {
            status,
            reason: truncated(reason),
            physical_resource_id: physical,
            stack_id: request.stack_id.clone(),
            request_id: request.request_id.clone(),
            logical_resource_id: request.logical_resource_id.clone(),
        }
    }

    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn truncated(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES - 3;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push_str("...");
    }
    reason
}

#[cfg(test)]
mod tests {
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
        assert!(
            alarm_beside_queue(&a, "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:x").is_ok()
        );
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
}
