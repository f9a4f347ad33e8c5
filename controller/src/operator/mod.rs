//! A person's hand on a deployed breaker: what the operator command (`cli/`) shows and does.
//! Built on the same adapters and core as the steps; closing goes through the same ending as
//! every other end ([`end_open_circuit`]).

use crate::adapters::mapping;
use crate::adapters::signals::{Detail, Transition};
use crate::adapters::store::{CircuitRecord, CLOSED, GAVE_UP, OPEN};
use crate::core::operator::{probes, Ending, OperatorOpen, Phase};
use crate::error::StepError;
use crate::steps::end::end_open_circuit;
use crate::steps::Context;
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent};
use serde::Serialize;
use serde_json::Value;

pub mod watch;

/// How long an operator's close holds the circuit while it ends it: an alarm meanwhile
/// stands aside, and a close that died is taken over after it.
const CLOSE_LEASE_MS: u64 = 180_000;

/// Queue depth as SQS reports it (approximate).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Depth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

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

/// Where an execution is: its status, current state and that state's input.
struct Position {
    status: ExecutionStatus,
    state: Option<String>,
    entered_ms: Option<u64>,
    input: Value,
}

pub fn console_url(region: &str, execution: &str) -> String {
    format!(
        "https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution}"
    )
}

fn millis(t: &aws_smithy_types::DateTime) -> Option<u64> {
    t.to_millis().ok().map(|ms| ms.max(0) as u64)
}

fn entered(event: &HistoryEvent) -> Option<(&str, &str)> {
    event
        .state_entered_event_details()
        .map(|d| (d.name(), d.input().unwrap_or("{}")))
}

async fn position(ctx: &Context, execution: &str) -> Result<Position, StepError> {
    let sfn = &ctx.clients.sfn;
    let described = sfn
        .describe_execution()
        .execution_arn(execution)
        .send()
        .await
        .map_err(|e| StepError::aws("DescribeExecution", e))?;
    let history = sfn
        .get_execution_history()
        .execution_arn(execution)
        .reverse_order(true)
        .max_results(50)
        .send()
        .await
        .map_err(|e| StepError::aws("GetExecutionHistory", e))?;
    let last = history
        .events()
        .iter()
        .find_map(|e| entered(e).map(|(name, input)| (name, input, millis(e.timestamp()))));
    Ok(Position {
        status: described.status().clone(),
        state: last.map(|(name, _, _)| name.to_string()),
        entered_ms: last.and_then(|(_, _, at)| at),
        input: last
            .and_then(|(_, input, _)| serde_json::from_str(input).ok())
            .unwrap_or(Value::Null),
    })
}

/// Approximate depth of the queue at `url`, and its dead-letter queue's URL, if any.
pub(crate) async fn queue_depth(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
) -> Result<(Depth, Option<String>), StepError> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .attribute_names(A::RedrivePolicy)
        .send()
        .await
        .map_err(|e| StepError::aws("GetQueueAttributes", e))?;
    let attributes = out.attributes();
    let number = |name: A| {
        attributes
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let dead_letter_arn = attributes
        .and_then(|a| a.get(&A::RedrivePolicy))
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
        .and_then(|p| p["deadLetterTargetArn"].as_str().map(str::to_string));
    let dead_letter_url = match dead_letter_arn {
        Some(arn) => {
            let parts = crate::core::QueueArn::parse(&arn)
                .map_err(|e| StepError::Fatal(format!("the redrive policy's {arn}: {e}")))?;
            Some(
                sqs.get_queue_url()
                    .queue_name(&parts.name)
                    .queue_owner_aws_account_id(&parts.account)
                    .send()
                    .await
                    .map_err(|e| StepError::aws("GetQueueUrl", e))?
                    .queue_url()
                    .unwrap_or_default()
                    .to_string(),
            )
        }
        None => None,
    };
    Ok((
        Depth {
            visible: number(A::ApproximateNumberOfMessages),
            in_flight: number(A::ApproximateNumberOfMessagesNotVisible),
            delayed: number(A::ApproximateNumberOfMessagesDelayed),
        },
        dead_letter_url,
    ))
}

/// The consumer's mapping (the one the circuit is keyed by) and its circuit item.
async fn circuit(ctx: &Context) -> Result<(mapping::Mapping, Option<CircuitRecord>), StepError> {
    let found = mapping::find(
        &ctx.clients.lambda,
        &ctx.config.queue_arn,
        &ctx.config.consumer_function,
    )
    .await?;
    let record = ctx.store().get(&found.uuid).await?;
    Ok((found, record))
}

/// The circuit, the owning execution, the mapping, the alarm and the queues, as they are now.
pub async fn status(ctx: &Context) -> Result<Status, StepError> {
    let queue = ctx
        .config
        .queue()
        .map_err(|e| StepError::Config(e.to_string()))?;
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
        Err(e) => return Err(e),
    };
    let open = record.as_ref().filter(|r| r.state != CLOSED);
    let owner = open.map(|r| r.owner.clone()).filter(|o| !o.is_empty());
    let running = match owner.as_deref().filter(|o| o.starts_with("arn:")) {
        Some(execution) => Some(position(ctx, execution).await?),
        None => None,
    }
    .filter(|p| p.status == ExecutionStatus::Running);
    let current_state = running.as_ref().and_then(|p| p.state.clone());
    let circuit = running.as_ref().map(|p| &p.input["circuit"]);
    let next_probe_ms = running.as_ref().and_then(|p| {
        let waiting = p.state.as_deref() == Some("WaitBeforeProbe");
        let wait = p.input["circuit"]["wait_seconds"].as_u64()?;
        waiting.then_some(p.entered_ms? + wait * 1000)
    });
    let (depth, dead_letter_url) = queue_depth(&ctx.clients.sqs, &queue_url(ctx).await?).await?;
    let dead_letter_queue = match dead_letter_url {
        Some(url) => Some(queue_depth(&ctx.clients.sqs, &url).await?.0),
        None => None,
    };
    let alarm =
        crate::adapters::alarm::state(&ctx.clients.cloudwatch, &ctx.config.alarm_name).await?;
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

pub(crate) async fn queue_url(ctx: &Context) -> Result<String, StepError> {
    let queue = ctx
        .config
        .queue()
        .map_err(|e| StepError::Config(e.to_string()))?;
    Ok(
        crate::adapters::queue::describe(&ctx.clients.sqs, &queue.name, &queue.account)
            .await?
            .url,
    )
}

/// Starts the workflow with an operator's `open` (single-flight holds: the execution takes
/// the circuit like any other); returns the execution ARN.
pub async fn open(
    ctx: &Context,
    state_machine_arn: &str,
    request: &OperatorOpen,
) -> Result<String, StepError> {
    let out = ctx
        .clients
        .sfn
        .start_execution()
        .state_machine_arn(state_machine_arn)
        .name(format!("operator-open-{}", ctx.now_ms()))
        .input(request.input().to_string())
        .send()
        .await
        .map_err(|e| StepError::aws("StartExecution", e))?;
    Ok(out.execution_arn().to_string())
}

/// What an operator's close did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloseReport {
    /// The circuit's state before (`CLOSED`: nothing was done).
    pub was: String,
    /// Each thing done, in order, for the operator to read.
    pub actions: Vec<String>,
}

/// Closes the circuit now: stops the owning execution, then ends the circuit as every end
/// does (rejitter off, consumer enabled, circuit CLOSED, alarm re-armed) and announces it.
/// Closing a closed circuit changes nothing.
pub async fn close(ctx: &Context, reason: &str) -> Result<CloseReport, StepError> {
    let (found, record) = circuit(ctx).await?;
    let Some(mut record) = record.filter(|r| r.state == OPEN || r.state == GAVE_UP) else {
        return Ok(CloseReport {
            was: CLOSED.into(),
            actions: vec![format!(
                "the circuit of mapping {} is already closed; nothing changed",
                found.uuid
            )],
        });
    };
    let was = record.state.clone();
    let mut actions = Vec::new();
    let reason = format!("closed by an operator: {reason}");
    let previous = record.owner.clone();
    if previous.starts_with("arn:")
        && crate::adapters::execution::is_running(&ctx.clients.sfn, &previous).await?
    {
        ctx.clients
            .sfn
            .stop_execution()
            .execution_arn(&previous)
            .cause(&reason)
            .send()
            .await
            .map_err(|e| StepError::aws("StopExecution", e))?;
        actions.push(format!("stopped execution {previous}"));
    }
    // Take the circuit before acting on the mapping: the recovery of the stopped execution
    // (or an alarm) may reach for it at the same moment, and only one may act.
    let me = format!("operator close at {}", ctx.now_ms());
    let lease = ctx.now_ms() + CLOSE_LEASE_MS;
    let store = ctx.store();
    if !store
        .take_over(&found.uuid, &me, &previous, &reason, lease)
        .await?
    {
        let now = store.get(&found.uuid).await?.unwrap_or_default();
        actions.push(format!(
            "the circuit changed hands meanwhile: it is {} ({}), owned by {}",
            now.state, now.reason, now.owner
        ));
        return Ok(CloseReport { was, actions });
    }
    record.owner = me.clone();
    let snapshot = end_open_circuit(ctx, &me, &record, &reason).await?;
    actions.push("switched the rejitter off (if it was on)".into());
    if snapshot.changes().enabled {
        actions.push(format!("enabled the consumer's mapping {}", snapshot.uuid));
    }
    actions.push("marked the circuit CLOSED".into());
    actions.push(format!("re-armed the alarm {}", ctx.config.alarm_name));
    let detail = Detail {
        mapping: snapshot.uuid.clone(),
        queue: snapshot.event_source_arn.clone(),
        function: ctx.config.consumer_function.clone(),
        execution: previous,
        attempt: 0,
        reason: reason.clone(),
    };
    ctx.signals().emit(Transition::CircuitClosed, &detail).await;
    actions.push("emitted Circuit Closed".into());
    tracing::info!(mapping = %snapshot.uuid, reason = %reason, "circuit closed by an operator");
    Ok(CloseReport { was, actions })
}

/// One past (or current) circuit: one execution of the workflow that opened it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PastCircuit {
    pub execution: String,
    pub opened_ms: u64,
    pub ended_ms: Option<u64>,
    pub probes: usize,
    pub ending: Ending,
}

/// The circuits opened since `since_ms`, newest first.
pub async fn history(
    ctx: &Context,
    state_machine_arn: &str,
    since_ms: u64,
) -> Result<Vec<PastCircuit>, StepError> {
    let sfn = &ctx.clients.sfn;
    let mut past = Vec::new();
    let mut pages = sfn
        .list_executions()
        .state_machine_arn(state_machine_arn)
        .into_paginator()
        .send();
    'pages: while let Some(page) = pages.next().await {
        let page = page.map_err(|e| StepError::aws("ListExecutions", e))?;
        for execution in page.executions() {
            let started = millis(execution.start_date()).unwrap_or(0);
            // Newest first: the rest started earlier still.
            if started < since_ms {
                break 'pages;
            }
            let states = visited_states(sfn, execution.execution_arn()).await?;
            let running = *execution.status() == ExecutionStatus::Running;
            let ending = Ending::of(&states, running);
            if ending.opened() {
                past.push(PastCircuit {
                    execution: execution.execution_arn().to_string(),
                    opened_ms: started,
                    ended_ms: execution.stop_date().and_then(millis),
                    probes: probes(&states),
                    ending,
                });
            }
        }
    }
    Ok(past)
}

async fn visited_states(
    sfn: &aws_sdk_sfn::Client,
    execution: &str,
) -> Result<Vec<String>, StepError> {
    let mut states = Vec::new();
    let mut pages = sfn
        .get_execution_history()
        .execution_arn(execution)
        .include_execution_data(false)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| StepError::aws("GetExecutionHistory", e))?;
        states.extend(
            page.events()
                .iter()
                .filter_map(entered)
                .map(|(name, _)| name.to_string()),
        );
    }
    Ok(states)
}
