//! `status`: the circuit, the owning execution, the mapping, the alarm and the queues, as
//! they are now, for each consumer the deployment guards ([`fleet`]). Every read goes
//! through the controller's adapters.

use crate::error::OperatorError;
use crate::fleet::{Listed, BUILT_IN};
use aws_sdk_sfn::types::HistoryEvent;
use controller::adapters::execution::{self, HistoryRead};
use controller::adapters::queue::{self, Depth};
use controller::adapters::store::{CircuitRecord, CLOSED};
use controller::adapters::{alarm, mapping};
use controller::core::operator::Phase;
use controller::core::QueueArn;
use controller::error::StepError;
use controller::steps::Context;
use serde::Serialize;
use serde_json::Value;

/// Everything `status` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub phase: Phase,
    /// When the circuit entered its state (epoch ms), and why.
    pub since_ms: Option<u64>,
    pub reason: Option<String>,
    /// The execution or person holding the circuit.
    pub owner: Option<String>,
    pub owner_console_url: Option<String>,
    /// The owning execution's current state, while it runs.
    pub current_state: Option<String>,
    pub probes: Option<u32>,
    pub last_probe: Option<String>,
    /// When `WaitBeforeProbe` ends (epoch ms), while the owner waits in it.
    pub next_probe_ms: Option<u64>,
    pub mapping_id: Option<String>,
    /// The mapping's state, or why it could not be read.
    pub mapping_state: String,
    /// The mapping's `ScalingConfig.MaximumConcurrency` (the slow start's cap while ramping).
    pub mapping_maximum_concurrency: Option<u32>,
    pub alarm_name: String,
    pub alarm_state: Option<String>,
    /// `metric`, `metric math` or `composite`.
    #[serde(default)]
    pub alarm_kind: Option<String>,
    /// What the alarm watches (`AlarmSignal`; `custom` for an alarm of the user's own).
    #[serde(default)]
    pub alarm_signal: String,
    /// Why the alarm is in ALARM while the circuit is closed, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_note: Option<String>,
    pub queue: Depth,
    /// The dead-letter queue's depth, when the queue has a redrive policy.
    pub dead_letter_queue: Option<Depth>,
}

/// Where a running execution is: its current state, when it entered it, and that state's
/// input.
struct Position {
    state: String,
    entered_ms: Option<u64>,
    input: Value,
}

pub fn console_url(region: &str, execution: &str) -> String {
    format!(
        "https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution}"
    )
}

/// The state an execution entered last, from its history newest first.
fn position(newest_first: &[HistoryEvent]) -> Option<Position> {
    newest_first.iter().find_map(|event| {
        let entered = event.state_entered_event_details()?;
        Some(Position {
            state: entered.name().to_string(),
            entered_ms: event
                .timestamp()
                .to_millis()
                .ok()
                .map(|ms| ms.max(0) as u64),
            input: serde_json::from_str(entered.input().unwrap_or("{}")).unwrap_or(Value::Null),
        })
    })
}

/// The consumer's mapping (the one the circuit is keyed by) and its circuit item.
pub(crate) async fn circuit(
    ctx: &Context,
) -> Result<(mapping::Mapping, Option<CircuitRecord>), StepError> {
    let found = mapping::find(
        &ctx.clients.lambda,
        &ctx.config.queue_arn,
        &ctx.config.consumer_function,
    )
    .await?;
    let record = ctx.store().get(&found.uuid).await?;
    Ok((found, record))
}

/// The consumer queue's URL.
pub(crate) async fn queue_url(ctx: &Context) -> Result<String, OperatorError> {
    let queue = ctx.config.queue()?;
    Ok(queue::url(&ctx.clients.sqs, &queue.name, &queue.account).await?)
}

/// The depth of the queue at `url`, and its dead-letter queue's, when it has one.
async fn depths(ctx: &Context, url: &str) -> Result<(Depth, Option<Depth>), OperatorError> {
    let sqs = &ctx.clients.sqs;
    let (depth, dead_letter_arn) = queue::depth(sqs, url).await?;
    let Some(arn) = dead_letter_arn else {
        return Ok((depth, None));
    };
    let parts = QueueArn::parse(&arn).map_err(|source| OperatorError::DeadLetterQueue {
        arn: arn.clone(),
        source,
    })?;
    let dead_letter_url = queue::url(sqs, &parts.name, &parts.account).await?;
    Ok((depth, Some(queue::depth(sqs, &dead_letter_url).await?.0)))
}

/// The circuit, the owning execution, the mapping, the alarm and the queues, as they are now.
pub async fn status(ctx: &Context) -> Result<Status, OperatorError> {
    let queue = ctx.config.queue()?;
    let (mapping_id, mapping_state, mapping_maximum_concurrency, record) = match circuit(ctx).await
    {
        Ok((found, record)) => (
            Some(found.uuid),
            found.state,
            found.maximum_concurrency,
            record,
        ),
        Err(e @ (StepError::MappingNotFound { .. } | StepError::SeveralMappings { .. })) => {
            (None, e.to_string(), None, None)
        }
        Err(e) => return Err(e.into()),
    };
    // Not named `open`: the IAM test follows calls by name, and would take it for the step.
    let not_closed = record.as_ref().filter(|r| r.state != CLOSED);
    let owner = not_closed
        .map(|r| r.owner.clone())
        .filter(|o| !o.is_empty());
    let running = match owner.as_deref().filter(|o| o.starts_with("arn:")) {
        Some(owner) if execution::is_running(&ctx.clients.sfn, owner).await? => {
            let events =
                execution::history(&ctx.clients.sfn, owner, HistoryRead::newest(50)).await?;
            position(&events)
        }
        _ => None,
    };
    let current_state = running.as_ref().map(|p| p.state.clone());
    let circuit = running.as_ref().map(|p| &p.input["circuit"]);
    let next_probe_ms = running.as_ref().and_then(|p| {
        let waiting = p.state == "WaitBeforeProbe";
        let wait = p.input["circuit"]["wait_seconds"].as_u64()?;
        waiting.then_some(p.entered_ms? + wait * 1000)
    });
    let (depth, dead_letter_queue) = depths(ctx, &queue_url(ctx).await?).await?;
    let alarm = alarm::state(&ctx.clients.cloudwatch, &ctx.config.alarm_name).await?;
    let phase = Phase::of(
        record.as_ref().map(|r| r.state.as_str()),
        current_state.as_deref(),
    );
    let alarm_note = alarm
        .as_ref()
        .filter(|a| a.value == "ALARM" && phase == Phase::Closed)
        .map(|_| {
            "the alarm is in ALARM while the circuit is closed: it opens no circuit until it \
             goes from OK to ALARM again (an alarm that does not clear with the consumer, or \
             one that just fired and is about to open a circuit)"
                .to_string()
        });
    Ok(Status {
        phase,
        since_ms: record.as_ref().map(|r| r.since_ms),
        reason: record.as_ref().map(|r| r.reason.clone()),
        owner_console_url: owner
            .as_deref()
            .filter(|o| o.starts_with("arn:"))
            .map(|o| console_url(&queue.region, o)),
        owner,
        current_state,
        probes: circuit
            .and_then(|c| c["attempt"].as_u64())
            .map(|n| n as u32),
        last_probe: circuit
            .and_then(|c| c["last_probe"].as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        next_probe_ms,
        mapping_id,
        mapping_state,
        mapping_maximum_concurrency,
        alarm_name: ctx.config.alarm_name.clone(),
        alarm_kind: alarm.as_ref().map(|a| a.kind.to_string()),
        alarm_state: alarm.map(|a| a.value),
        alarm_signal: ctx.config.signal.signal.to_string(),
        alarm_note,
        queue: depth,
        dead_letter_queue,
    })
}

/// One consumer of the deployment in `status`: which, and its status or why it could not be
/// read (the other consumers are read all the same).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The attachment's id, or `built-in`.
    pub id: String,
    /// The consumer function and its queue's ARN, as configured (blank when the attachment's
    /// settings do not say).
    pub function: String,
    pub queue_arn: String,
    #[serde(flatten)]
    pub status: Option<Status>,
    pub error: Option<String>,
}

impl Row {
    fn failed(id: &str, function: String, queue_arn: String, error: impl ToString) -> Row {
        Row {
            id: id.to_string(),
            function,
            queue_arn,
            status: None,
            error: Some(error.to_string()),
        }
    }
}

/// The status of one consumer, read with its own context.
async fn row(id: &str, ctx: &Context) -> Row {
    let (function, queue_arn) = (
        ctx.config.consumer_function.clone(),
        ctx.config.queue_arn.clone(),
    );
    match status(ctx).await {
        Ok(s) => Row {
            id: id.to_string(),
            function,
            queue_arn,
            status: Some(s),
            error: None,
        },
        Err(e) => {
            tracing::warn!(consumer = %id, error = %e, "status not read");
            Row::failed(id, function, queue_arn, e)
        }
    }
}

/// Every consumer the deployment guards (the built-in one first, then the attachments by
/// id), each read on its own: one that fails is that row's error.
pub async fn fleet(ctx: &Context) -> Result<Vec<Row>, OperatorError> {
    let mut rows = Vec::new();
    for listed in crate::fleet::list(ctx).await? {
        rows.push(match listed {
            Listed::BuiltIn => row(BUILT_IN, ctx).await,
            Listed::Attachment(attachment) => {
                match crate::fleet::context(ctx, Some(&attachment)).await {
                    Ok(consumer) => row(&attachment.id, &consumer).await,
                    Err(e) => {
                        let setting = |key: &str| {
                            attachment.settings[key]
                                .as_str()
                                .unwrap_or_default()
                                .to_string()
                        };
                        Row::failed(
                            &attachment.id,
                            setting("ConsumerFunctionName"),
                            setting("QueueArn"),
                            e,
                        )
                    }
                }
            }
            Listed::Unusable { id, error } => Row::failed(&id, String::new(), String::new(), error),
        });
    }
    Ok(rows)
}

/// `status`'s exit status: 3 when any circuit is open in any way, else 1 when a consumer
/// could not be read, else 0.
pub fn exit_code(rows: &[Row]) -> i32 {
    let most_open = rows
        .iter()
        .filter_map(|r| r.status.as_ref())
        .map(|s| s.phase.exit_code())
        .max()
        .unwrap_or(0);
    match most_open {
        0 if rows.iter().any(|r| r.error.is_some()) => 1,
        code => code,
    }
}
