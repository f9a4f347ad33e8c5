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
mod tests;
