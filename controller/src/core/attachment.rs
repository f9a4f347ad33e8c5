//! One consumer attached to a shared breaker deployment (see `docs/fleet.md`).
//!
//! An attachment names its consumer (function, queue, alarm) and may set that consumer's own
//! settings; every setting it leaves out is the deployment's (its environment, the same
//! variables a single-consumer stack sets). The result is a plain `Config`, built by
//! `Config::from_lookup` over the two layers, so an attachment is validated exactly as a
//! single-consumer stack is, with the same refusals and messages. Routing decides from an
//! execution's input which attachment it is for, before anything is looked up.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::core::config::{Config, ConfigError};

/// Every variable `Config::from_lookup` reads: what `Defaults` keeps of the environment.
pub const VARIABLES: &[&str] = &[
    "CONSUMER_FUNCTION_NAME",
    "QUEUE_ARN",
    "ALARM_NAME",
    "STATE_MACHINE_NAME",
    "CIRCUIT_TABLE",
    "EVENT_BUS_NAME",
    "METRICS_NAMESPACE",
    "BACKOFF_BASE_SECONDS",
    "BACKOFF_CAP_SECONDS",
    "MAX_PROBE_ATTEMPTS",
    "MAX_OPEN_SECONDS",
    "EMPTY_QUEUE_POLICY",
    "GIVE_UP_POLICY",
    "HEALTH_CHECK_FUNCTION",
    "REJITTER_FUNCTION_NAME",
    "MIN_DELAY_SECONDS",
    "MAX_DELAY_SECONDS",
    "SLOW_START_SECONDS",
    "SLOW_START_CONCURRENCY",
    "ALARM_SIGNAL",
    "ALARM_FAILURE_PERCENT",
    "ALARM_PERIOD_SECONDS",
    "ALARM_HANG_PERIODS",
    "RETENTION_MARGIN_SECONDS",
    "SETTLE_TIMEOUT_SECONDS",
    "REJITTER_MAX_SECONDS",
    "MAX_CIRCUITS_PER_HOUR",
];

/// The attachment's consumer: always its own, never inherited from the deployment (whose
/// environment may name the single-consumer stack's built-in consumer).
const IDENTITY: &[(&str, &str)] = &[
    ("ConsumerFunctionName", "CONSUMER_FUNCTION_NAME"),
    ("QueueArn", "QUEUE_ARN"),
    ("AlarmName", "ALARM_NAME"),
];

/// The per-consumer settings an attachment may set (its template's parameter names) and the
/// variable each one stands for. Deployment-wide variables (the state machine, the tables,
/// the bus, the metrics namespace, the settle timeout, the rejitter's delays, which the one
/// rejitter function reads) are not among them.
pub const SETTINGS: &[(&str, &str)] = &[
    ("AlarmSignal", "ALARM_SIGNAL"),
    ("AlarmFailurePercent", "ALARM_FAILURE_PERCENT"),
    ("AlarmPeriodSeconds", "ALARM_PERIOD_SECONDS"),
    ("AlarmHangPeriods", "ALARM_HANG_PERIODS"),
    ("BackoffBaseSeconds", "BACKOFF_BASE_SECONDS"),
    ("BackoffCapSeconds", "BACKOFF_CAP_SECONDS"),
    ("MaxProbeAttempts", "MAX_PROBE_ATTEMPTS"),
    ("MaxOpenSeconds", "MAX_OPEN_SECONDS"),
    ("EmptyQueuePolicy", "EMPTY_QUEUE_POLICY"),
    ("HealthCheckFunctionName", "HEALTH_CHECK_FUNCTION"),
    ("GiveUpPolicy", "GIVE_UP_POLICY"),
    ("RetentionMarginSeconds", "RETENTION_MARGIN_SECONDS"),
    ("MaxCircuitsPerHour", "MAX_CIRCUITS_PER_HOUR"),
    ("SlowStartSeconds", "SLOW_START_SECONDS"),
    ("SlowStartConcurrency", "SLOW_START_CONCURRENCY"),
    ("RejitterMaxSeconds", "REJITTER_MAX_SECONDS"),
];

/// The attachment's name for itself (its stack's name).
const ID: &str = "Id";
/// Turns the rejitter phase on or off for this consumer; the deployment has the function.
const REJITTER_ENABLED: &str = "RejitterEnabled";

/// The longest attachment id: CloudFormation's limit on a stack name.
const MAX_ID_LEN: usize = 128;

/// The deployment's environment: the defaults every attachment's settings go over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defaults(BTreeMap<&'static str, String>);

impl Defaults {
    /// Keep the variables `Config` reads, from a lookup such as `|k| std::env::var(k).ok()`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Defaults {
        Defaults(
            VARIABLES
                .iter()
                .filter_map(|name| get(name).map(|value| (*name, value)))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// One attached consumer, validated: its id and the configuration its circuit runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub id: String,
    pub config: Config,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    #[error("the attachment is not a JSON object of settings")]
    NotAnObject,

    #[error("the attachment has no {ID}")]
    MissingId,

    #[error(
        "attachment {ID} {0:?} is not a stack name: 1-{MAX_ID_LEN} letters, digits or '-', \
         starting with a letter (and not {BUILT_IN:?}, the deployment's own consumer)"
    )]
    InvalidId(String),

    #[error("attachment {id:?}: {key} is not a setting an attachment has; it may set {allowed}")]
    UnknownSetting {
        id: String,
        key: String,
        allowed: String,
    },

    #[error("attachment {id:?}: {key} is {value}, not {expected}")]
    InvalidValue {
        id: String,
        key: String,
        value: String,
        expected: &'static str,
    },

    #[error(
        "attachment {id:?}: ConsumerFunctionName={value:?} is not a function name \
         (1-64 letters, digits, '-' or '_'; the name, not the ARN)"
    )]
    InvalidFunctionName { id: String, value: String },

    #[error(
        "attachment {id:?} turns the rejitter on ({REJITTER_ENABLED}=true), but the breaker \
         deployment has no rejitter function"
    )]
    NoRejitter { id: String },

    /// The configuration check every breaker runs, with the attachment's settings it names.
    #[error("attachment {id:?}{}: {source}", named(keys))]
    Config {
        id: String,
        keys: Vec<&'static str>,
        source: ConfigError,
    },
}

fn named(keys: &[&str]) -> String {
    if keys.is_empty() {
        String::new()
    } else {
        format!(" ({})", keys.join(", "))
    }
}

/// The attachment keys whose variables a configuration error names (whole words only).
fn keys_named(error: &ConfigError) -> Vec<&'static str> {
    let text = error.to_string();
    let is_word = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_';
    let mentions = |var: &str| {
        text.match_indices(var).any(|(at, _)| {
            let before = at.checked_sub(1).map(|i| text.as_bytes()[i]);
            let after = text.as_bytes().get(at + var.len()).copied();
            !before.is_some_and(is_word) && !after.is_some_and(is_word)
        })
    };
    IDENTITY
        .iter()
        .chain(SETTINGS)
        .filter(|(_, var)| mentions(var))
        .map(|(key, _)| *key)
        .collect()
}

/// Lambda function names: what the single-consumer template's `ConsumerFunctionName` allows.
fn is_function_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What the operator command and the console call the deployment's own consumer; no
/// attachment may take the name, or `--consumer built-in` would mean two consumers.
pub const BUILT_IN: &str = "built-in";

/// A CloudFormation stack name (the attachment's stack names it), other than [`BUILT_IN`].
pub fn is_attachment_id(id: &str) -> bool {
    id != BUILT_IN
        && id.len() <= MAX_ID_LEN
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A setting's value as the environment would hold it: JSON strings as they are, whole
/// numbers in decimal, `null` as unset. Anything else is refused here; numbers out of range
/// or malformed strings are refused by the configuration check, with its message.
fn scalar(id: &str, key: &str, value: &Value) -> Result<Option<String>, AttachmentError> {
    let invalid = |expected| AttachmentError::InvalidValue {
        id: id.to_owned(),
        key: key.to_owned(),
        value: value.to_string(),
        expected,
    };
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) if n.is_u64() => Ok(Some(n.to_string())),
        Value::Number(_) => Err(invalid("a whole number of 0 or more")),
        _ => Err(invalid("a string or a whole number")),
    }
}

fn flag(id: &str, value: &Value) -> Result<Option<bool>, AttachmentError> {
    let invalid = || AttachmentError::InvalidValue {
        id: id.to_owned(),
        key: REJITTER_ENABLED.to_owned(),
        value: value.to_string(),
        expected: "true or false",
    };
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        // CloudFormation passes every parameter as a string.
        Value::String(s) => match s.trim() {
            "" => Ok(None),
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(invalid()),
        },
        _ => Err(invalid()),
    }
}

impl Config {
    /// The configuration of one attached consumer: the attachment's settings (a JSON object
    /// keyed by the attachment template's parameter names) over the deployment's `defaults`.
    /// A setting left out, `null` or blank is the deployment's. The consumer itself
    /// (`ConsumerFunctionName`, `QueueArn`, `AlarmName`) is never inherited.
    pub fn for_attachment(
        defaults: &Defaults,
        attachment: &Value,
    ) -> Result<Attachment, AttachmentError> {
        let fields = attachment.as_object().ok_or(AttachmentError::NotAnObject)?;
        let id = match fields.get(ID) {
            None | Some(Value::Null) => return Err(AttachmentError::MissingId),
            Some(Value::String(id)) if is_attachment_id(id) => id.clone(),
            Some(Value::String(id)) => return Err(AttachmentError::InvalidId(id.clone())),
            Some(other) => return Err(AttachmentError::InvalidId(other.to_string())),
        };

        let mut overrides: BTreeMap<&'static str, String> = BTreeMap::new();
        let mut rejitter = None;
        for (key, value) in fields {
            if key == ID {
                continue;
            }
            if key == REJITTER_ENABLED {
                rejitter = flag(&id, value)?;
                continue;
            }
            let Some((_, var)) = IDENTITY.iter().chain(SETTINGS).find(|(k, _)| k == key) else {
                return Err(AttachmentError::UnknownSetting {
                    id,
                    key: key.clone(),
                    allowed: allowed(),
                });
            };
            if let Some(text) = scalar(&id, key, value)?.filter(|t| !t.trim().is_empty()) {
                overrides.insert(var, text);
            }
        }

        if let Some(name) = overrides.get("CONSUMER_FUNCTION_NAME") {
            if !is_function_name(name.trim()) {
                return Err(AttachmentError::InvalidFunctionName {
                    id,
                    value: name.clone(),
                });
            }
        }
        match rejitter {
            Some(true) => {
                let function = defaults
                    .get("REJITTER_FUNCTION_NAME")
                    .filter(|f| !f.trim().is_empty())
                    .ok_or_else(|| AttachmentError::NoRejitter { id: id.clone() })?;
                overrides.insert("REJITTER_FUNCTION_NAME", function);
            }
            // Blank is "no rejitter" to the configuration check.
            Some(false) => {
                overrides.insert("REJITTER_FUNCTION_NAME", String::new());
            }
            None => {}
        }

        let lookup = |name: &str| match overrides.get(name) {
            Some(value) => Some(value.clone()),
            None if IDENTITY.iter().any(|(_, var)| *var == name) => None,
            None => defaults.get(name),
        };
        match Config::from_lookup(lookup) {
            Ok(config) => Ok(Attachment { id, config }),
            Err(source) => Err(AttachmentError::Config {
                id,
                keys: keys_named(&source),
                source,
            }),
        }
    }
}

fn allowed() -> String {
    [ID, REJITTER_ENABLED]
        .into_iter()
        .chain(IDENTITY.iter().chain(SETTINGS).map(|(key, _)| *key))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which consumer an execution is for, decided from its input alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// The single-consumer stack's own rule or operator: the consumer in the environment.
    BuiltIn,
    /// An attachment's rule (or an operator naming it): its registered settings.
    Attachment(&'a str),
}

/// An execution's input, routed: the consumer it is for, and what `OpenCircuit` checks as
/// today (the alarm event, or `{"operator": …}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed<'a> {
    pub target: Target<'a>,
    pub event: &'a Value,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("the input's attachment {0} is not an attachment id (a stack name)")]
    InvalidAttachment(String),
    #[error("the input names attachment {0:?} but carries no event")]
    MissingEvent(String),
    #[error(
        "the input names an attachment and also has {0:?}; it may have only attachment and event"
    )]
    UnexpectedField(String),
}

/// An attachment's rule starts the workflow with `{"attachment": "<id>", "event": <the alarm
/// event>}` (an operator with `"event": {"operator": …}`). Any other input is the
/// single-consumer path, checked by `OpenCircuit` as it always was.
pub fn route(input: &Value) -> Result<Routed<'_>, RouteError> {
    let Some(attachment) = input.get("attachment") else {
        return Ok(Routed {
            target: Target::BuiltIn,
            event: input,
        });
    };
    let id = attachment
        .as_str()
        .filter(|id| is_attachment_id(id))
        .ok_or_else(|| RouteError::InvalidAttachment(attachment.to_string()))?;
    if let Some(extra) = input
        .as_object()
        .and_then(|fields| fields.keys().find(|k| *k != "attachment" && *k != "event"))
    {
        return Err(RouteError::UnexpectedField(extra.clone()));
    }
    let event = input
        .get("event")
        .filter(|e| !e.is_null())
        .ok_or_else(|| RouteError::MissingEvent(id.to_owned()))?;
    Ok(Routed {
        target: Target::Attachment(id),
        event,
    })
}

/// The attachments an alarm event guards: those whose alarm it names, in their account and
/// region (several, when attachments share one alarm: each is its own circuit). For the
/// operator and the console, which show each alarm next to its consumers.
pub fn attachments_for_alarm<'a>(
    attachments: &'a [Attachment],
    event: &Value,
) -> Vec<&'a Attachment> {
    let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
    let (Some(name), Some(account), Some(region)) =
        (text("/detail/alarmName"), text("/account"), text("/region"))
    else {
        return Vec::new();
    };
    attachments
        .iter()
        .filter(|a| {
            a.config.alarm_name == name
                && a.config
                    .queue()
                    .is_ok_and(|q| q.account == account && q.region == region)
        })
        .collect()
}

/// Why an attachment's circuit is not independent of another attachment's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap<'a> {
    /// The same function and queue: the same mapping, so the same circuit. Its registration
    /// is refused.
    SameConsumer { other: &'a str },
    /// The same queue, and this attachment's signal reads the queue's `AWS/SQS` metrics: the
    /// other consumer failing raises this one's alarm too.
    SharedQueueSignal { other: &'a str },
    /// The same function, and this attachment's signal reads the function's `AWS/Lambda`
    /// metrics: the function failing on the other queue raises this one's alarm too.
    SharedFunctionSignal { other: &'a str },
}

/// What `attachment` shares with the rest of the fleet (itself, by id, left out): a refusal
/// for the same consumer, a warning for a signal another consumer's failures also raise.
pub fn overlaps<'a>(fleet: &'a [Attachment], attachment: &Attachment) -> Vec<Overlap<'a>> {
    use crate::core::signal::Signal;
    let mine = &attachment.config;
    let reads_queue = matches!(mine.signal.signal, Signal::Any | Signal::FailedRecords);
    let reads_function = matches!(
        mine.signal.signal,
        Signal::Any | Signal::ErrorShare | Signal::Errors
    );
    fleet
        .iter()
        .filter(|other| other.id != attachment.id)
        .filter_map(|other| {
            let same_queue = other.config.queue_arn == mine.queue_arn;
            let same_function = other.config.consumer_function == mine.consumer_function;
            let other = other.id.as_str();
            match (same_queue, same_function) {
                (true, true) => Some(Overlap::SameConsumer { other }),
                (true, false) if reads_queue => Some(Overlap::SharedQueueSignal { other }),
                (false, true) if reads_function => Some(Overlap::SharedFunctionSignal { other }),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
