//! What the console page shows, as one JSON snapshot: the fleet (one row per guarded
//! consumer), the state machine's executions (each with its consumer, event history, current
//! state and passed states) and the breaker's panel for its built-in consumer (circuit,
//! consumer mapping, alarm, queue depth over time, events). [`follow`] keeps it current with
//! the operator command's live view (`sqs_circuit_breaker::watch`), reading nothing it does
//! not show and changing nothing.

use super::fleet::{self, ConsumerRow};
use anyhow::{Context, Result};
use serde::Serialize;
use sqs_circuit_breaker::locate::Breaker;
use sqs_circuit_breaker::watch::Watch;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Queue depth readings kept: 15 minutes at one a second.
const DEPTH_POINTS: usize = 900;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Snapshot {
    pub stack: String,
    pub state_machine: String,
    pub updated_ms: i64,
    /// Why the last reading failed, until one succeeds.
    pub error: Option<String>,
    /// Every consumer the breaker guards: the built-in one first, then the attachments.
    pub consumers: Vec<ConsumerRow>,
    /// Newest first, as the console lists them.
    pub executions: Vec<ExecutionView>,
    pub circuit: Option<Labelled>,
    pub mapping: Option<MappingView>,
    pub alarm: Option<Labelled>,
    pub depth: Vec<DepthPoint>,
    /// The breaker's EventBridge events, when someone feeds them (the demo's event tap).
    pub events: Vec<EventView>,
}

/// A state and why it is so.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Labelled {
    pub state: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MappingView {
    pub state: String,
    /// `ScalingConfig.MaximumConcurrency`, when the mapping has one.
    pub maximum_concurrency: Option<i32>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct DepthPoint {
    pub at_ms: i64,
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventView {
    pub at_ms: i64,
    pub kind: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExecutionView {
    pub arn: String,
    pub name: String,
    pub status: String,
    /// The consumer it is for, as the operator command reads it: the attachment its input
    /// names, or `built-in`; none when no controller would route its input.
    pub consumer: Option<String>,
    pub start_ms: Option<i64>,
    pub stop_ms: Option<i64>,
    /// The state it is in (running), or ended in.
    pub current: Option<String>,
    /// Every state it entered, once each, in order.
    pub passed: Vec<String>,
    pub history: Vec<HistoryEvent>,
}

/// One event of an execution's history, as the console's event view lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HistoryEvent {
    pub id: i64,
    pub at_ms: i64,
    /// `ExecutionStarted`, `TaskStateEntered`, `TaskStateExited`, `ChoiceStateEntered`, ...
    pub kind: String,
    pub state: Option<String>,
    pub input: Option<String>,
    pub output: Option<String>,
    /// An error and its cause (failed tasks, failed executions).
    pub error: Option<String>,
}

impl ExecutionView {
    /// An execution as its history tells it.
    pub fn from_history(arn: &str, status: &str, history: Vec<HistoryEvent>) -> ExecutionView {
        let mut passed: Vec<String> = Vec::new();
        let mut current = None;
        for event in &history {
            if event.kind.ends_with("StateEntered") {
                if let Some(state) = &event.state {
                    if !passed.contains(state) {
                        passed.push(state.clone());
                    }
                    current = Some(state.clone());
                }
            }
        }
        let ended = |e: &&HistoryEvent| {
            matches!(
                e.kind.as_str(),
                "ExecutionSucceeded" | "ExecutionFailed" | "ExecutionAborted" | "ExecutionTimedOut"
            )
        };
        let input = history
            .iter()
            .find(|e| e.kind == "ExecutionStarted")
            .and_then(|e| e.input.as_deref());
        ExecutionView {
            arn: arn.to_string(),
            name: arn.rsplit(':').next().unwrap_or(arn).to_string(),
            status: status.to_string(),
            consumer: fleet::consumer_of(input),
            start_ms: history.first().map(|e| e.at_ms),
            stop_ms: history.iter().find(ended).map(|e| e.at_ms),
            current,
            passed,
            history,
        }
    }
}

impl Snapshot {
    /// Puts in (or replaces) an execution, keeping the list newest first.
    pub fn upsert(&mut self, execution: ExecutionView) {
        self.executions.retain(|e| e.arn != execution.arn);
        self.executions.push(execution);
        self.executions
            .sort_by_key(|e| std::cmp::Reverse(e.start_ms.unwrap_or(i64::MAX)));
    }

    /// Adds a queue depth reading, dropping the oldest past [`DEPTH_POINTS`].
    pub fn push_depth(&mut self, point: DepthPoint) {
        self.depth.push(point);
        let extra = self.depth.len().saturating_sub(DEPTH_POINTS);
        self.depth.drain(..extra);
    }
}

/// The snapshot, shared between the reader and the web server.
pub type Shared = Arc<Mutex<Snapshot>>;

/// An execution's whole event history, oldest first.
pub async fn history(sfn: &aws_sdk_sfn::Client, execution: &str) -> Result<Vec<HistoryEvent>> {
    let mut all = Vec::new();
    let read = controller::adapters::execution::HistoryRead::ALL;
    for event in &controller::adapters::execution::history(sfn, execution, read).await? {
        let entered = event.state_entered_event_details();
        let exited = event.state_exited_event_details();
        let started = event.execution_started_event_details();
        let succeeded = event.execution_succeeded_event_details();
        let error = event
            .task_failed_event_details()
            .map(|d| (d.error(), d.cause()))
            .or(event
                .execution_failed_event_details()
                .map(|d| (d.error(), d.cause())))
            .or(event
                .execution_aborted_event_details()
                .map(|d| (d.error(), d.cause())))
            .map(|(error, cause)| {
                format!("{}: {}", error.unwrap_or("?"), cause.unwrap_or_default())
            });
        all.push(HistoryEvent {
            id: event.id(),
            at_ms: event.timestamp().to_millis().unwrap_or_default(),
            kind: event.r#type().as_str().to_string(),
            state: entered
                .map(|d| d.name().to_string())
                .or(exited.map(|d| d.name().to_string())),
            input: entered
                .and_then(|d| d.input())
                .or(started.and_then(|d| d.input()))
                .map(str::to_string),
            output: exited
                .and_then(|d| d.output())
                .or(succeeded.and_then(|d| d.output()))
                .map(str::to_string),
            error,
        });
    }
    Ok(all)
}

/// The consumer mapping's `ScalingConfig.MaximumConcurrency`, if set.
async fn maximum_concurrency(lambda: &aws_sdk_lambda::Client, uuid: &str) -> Result<Option<i32>> {
    let mapping = lambda
        .get_event_source_mapping()
        .uuid(uuid)
        .send()
        .await
        .context("GetEventSourceMapping")?;
    Ok(mapping
        .scaling_config()
        .and_then(|s| s.maximum_concurrency()))
}

/// One reading into `shared`: the live view's tick, then the history of each execution it
/// found new, running or just ended. `uuid` keeps the consumer mapping's, once found.
async fn read_once(
    breaker: &Breaker,
    watch: &mut Watch,
    uuid: &mut Option<String>,
    shared: &Shared,
) -> Result<()> {
    let ctx = &breaker.ctx;
    let (reading, _) = watch.tick(ctx, &breaker.state_machine_arn).await?;
    let mut executions = Vec::new();
    for execution in &reading.executions {
        let events = history(&ctx.clients.sfn, &execution.arn).await?;
        executions.push(ExecutionView::from_history(
            &execution.arn,
            &execution.status,
            events,
        ));
    }
    let consumers = sqs_circuit_breaker::status::fleet(ctx)
        .await
        .context("reading the fleet")?
        .iter()
        .map(fleet::row)
        .collect();
    if uuid.is_none() {
        *uuid = controller::adapters::mapping::find(
            &ctx.clients.lambda,
            &ctx.config.queue_arn,
            &ctx.config.consumer_function,
        )
        .await
        .ok()
        .map(|m| m.uuid);
    }
    let concurrency = match uuid.as_deref() {
        // A mapping deleted since reads as none, as the live view shows it.
        Some(uuid) => maximum_concurrency(&ctx.clients.lambda, uuid)
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let mut snapshot = shared
        .lock()
        .map_err(|_| anyhow::anyhow!("the console's snapshot lock is poisoned"))?;
    let now = crate::breaker::now_ms();
    snapshot.updated_ms = now;
    snapshot.error = None;
    snapshot.consumers = consumers;
    for execution in executions {
        snapshot.upsert(execution);
    }
    snapshot.circuit = reading
        .circuit
        .map(|(state, reason)| Labelled { state, reason });
    snapshot.mapping = Some(MappingView {
        state: reading.mapping,
        maximum_concurrency: concurrency,
    });
    if let Some(alarm) = reading.alarm {
        snapshot.alarm = Some(Labelled {
            state: alarm.value,
            reason: alarm.reason,
        });
    }
    snapshot.push_depth(DepthPoint {
        at_ms: now,
        visible: reading.queue.visible,
        in_flight: reading.queue.in_flight,
        delayed: reading.queue.delayed,
    });
    Ok(())
}

/// Reads the breaker into `shared` every `every`, for ever (the caller aborts the task). A
/// failed reading is shown on the page and tried again.
pub async fn follow(breaker: Breaker, shared: Shared, every: Duration) {
    let mut watch = Watch::new(Default::default());
    let mut uuid = None;
    loop {
        if let Err(e) = read_once(&breaker, &mut watch, &mut uuid, &shared).await {
            if let Ok(mut snapshot) = shared.lock() {
                snapshot.error = Some(format!("{e:#}"));
            }
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, kind: &str, state: Option<&str>) -> HistoryEvent {
        HistoryEvent {
            id,
            at_ms: id * 1000,
            kind: kind.into(),
            state: state.map(str::to_string),
            input: None,
            output: None,
            error: None,
        }
    }

    #[test]
    fn an_execution_is_where_its_history_last_entered() {
        let history = vec![
            event(1, "ExecutionStarted", None),
            event(2, "TaskStateEntered", Some("OpenCircuit")),
            event(3, "TaskStateExited", Some("OpenCircuit")),
            event(4, "WaitStateEntered", Some("WaitBeforeProbe")),
            event(5, "WaitStateExited", Some("WaitBeforeProbe")),
            event(6, "TaskStateEntered", Some("Probe")),
            event(7, "TaskStateExited", Some("Probe")),
            event(8, "WaitStateEntered", Some("WaitBeforeProbe")),
        ];
        let arn = "arn:aws:states:us-east-1:0:execution:sm:abc";
        let running = ExecutionView::from_history(arn, "RUNNING", history.clone());
        assert_eq!(running.name, "abc");
        assert_eq!(running.current.as_deref(), Some("WaitBeforeProbe"));
        assert_eq!(running.passed, ["OpenCircuit", "WaitBeforeProbe", "Probe"]);
        assert_eq!((running.start_ms, running.stop_ms), (Some(1000), None));
        let mut ended = history;
        ended.push(event(9, "ExecutionSucceeded", None));
        let ended = ExecutionView::from_history(arn, "SUCCEEDED", ended);
        assert_eq!(ended.stop_ms, Some(9000));
    }

    #[test]
    fn an_execution_is_for_the_consumer_its_started_input_names() {
        let started = |input: &str| {
            let mut e = event(1, "ExecutionStarted", None);
            e.input = Some(input.into());
            vec![e, event(2, "TaskStateEntered", Some("OpenCircuit"))]
        };
        let arn = "arn:aws:states:us-east-1:0:execution:sm:abc";
        let of = |input: &str| ExecutionView::from_history(arn, "RUNNING", started(input));
        let attached = of(r#"{"attachment": "orders", "event": {"source": "aws.cloudwatch"}}"#);
        assert_eq!(attached.consumer.as_deref(), Some("orders"));
        let alarm = of(r#"{"source": "aws.cloudwatch"}"#);
        assert_eq!(alarm.consumer.as_deref(), Some("built-in"));
        let no_input = ExecutionView::from_history(arn, "RUNNING", vec![]);
        assert_eq!(no_input.consumer.as_deref(), Some("built-in"));
    }

    #[test]
    fn executions_stay_newest_first_and_depth_is_bounded() {
        let mut snapshot = Snapshot::default();
        let view = |arn: &str, at: i64| {
            ExecutionView::from_history(arn, "RUNNING", vec![event(at, "ExecutionStarted", None)])
        };
        snapshot.upsert(view("a", 1));
        snapshot.upsert(view("b", 2));
        snapshot.upsert(view("a", 1));
        let order: Vec<&str> = snapshot.executions.iter().map(|e| e.arn.as_str()).collect();
        assert_eq!(order, ["b", "a"]);
        for at in 0..(DEPTH_POINTS as i64 + 5) {
            snapshot.push_depth(DepthPoint {
                at_ms: at,
                visible: 0,
                in_flight: 0,
                delayed: 0,
            });
        }
        assert_eq!(snapshot.depth.len(), DEPTH_POINTS);
        assert_eq!(snapshot.depth[0].at_ms, 5);
    }
}
