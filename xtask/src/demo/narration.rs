//! What the demo follows and says: one reading of the breaker a tick (the operator command's
//! live view and the demo's event tap), recorded for the report and narrated with the time.

use super::report::{ExecutionRecord, Report};
use crate::breaker::now_ms;
use crate::console::{state::EventView, Console};
use crate::status::Depth;
use anyhow::{Context, Result};
use serde_json::Value;
use sqs_circuit_breaker::watch::{Change, Watch as LiveView};
use std::time::Instant;

/// What the demo follows: the operator command's live view (`sqs-circuit-breaker watch`)
/// of the breaker, the demo's own event tap, and the report it fills.
pub struct Watch {
    pub started: Instant,
    pub narrate: bool,
    pub live: LiveView,
    pub report: Report,
    /// The console page, fed the events the tap delivers.
    pub console: Console,
}

impl Watch {
    pub fn say(&self, line: &str) {
        if self.narrate {
            println!("  t+{:>6.1}s  {line}", self.started.elapsed().as_secs_f64());
        }
    }
}

/// One tick of the live view: the operator command's `watch` reading of the breaker (the
/// mapping, the alarm, the queue, each execution's steps), recorded for the report and
/// narrated, then the breaker's events from the tap.
pub async fn observe(
    watch: &mut Watch,
    breaker: &sqs_circuit_breaker::locate::Breaker,
    sqs: &aws_sdk_sqs::Client,
    tap: &str,
) -> Result<()> {
    let now = now_ms();
    let (reading, changes) = watch
        .live
        .tick(&breaker.ctx, &breaker.state_machine_arn)
        .await?;
    watch.report.depths.push((
        now,
        Depth {
            visible: reading.queue.visible,
            in_flight: reading.queue.in_flight,
            delayed: reading.queue.delayed,
        },
    ));
    // The demo follows the alarm from each reading, not from the live view's changes.
    if let Some(alarm) = reading.alarm.as_ref() {
        if last(&watch.report.alarm_states) != alarm.value {
            match watch.report.alarm_states.last() {
                Some((_, before)) => watch.say(&format!("alarm {before} -> {}", alarm.value)),
                None => watch.say(&format!("alarm {}", alarm.value)),
            }
            watch.report.alarm_states.push((now, alarm.value.clone()));
        }
    }
    for change in changes {
        match change {
            Change::Mapping(state) => {
                watch.say(&format!("mapping {state}"));
                watch.report.mapping_states.push((now, state));
            }
            // The alarm from the reading (above); the queue in the periodic status line; the
            // circuit through the workflow's steps.
            Change::Alarm { .. } | Change::Queue(_) | Change::Circuit { .. } => {}
            other => watch.say(&other.to_string()),
        }
    }
    for execution in reading.executions {
        match watch
            .report
            .executions
            .iter_mut()
            .find(|e| e.arn == execution.arn)
        {
            Some(record) => {
                record.status = execution.status;
                record.steps = execution.steps;
            }
            None => watch.report.executions.push(ExecutionRecord {
                arn: execution.arn,
                status: execution.status,
                steps: execution.steps,
            }),
        }
    }

    let received = sqs
        .receive_message()
        .queue_url(tap)
        .max_number_of_messages(10)
        .send()
        .await
        .context("reading the demo's event queue")?;
    for message in received.messages() {
        let event: Value = serde_json::from_str(message.body().unwrap_or("{}")).unwrap_or_default();
        let kind = event["detail-type"].as_str().unwrap_or("?").to_string();
        watch.say(&format!("event: {kind}"));
        watch.console.record_event(EventView {
            at_ms: now,
            kind,
            reason: event["detail"]["reason"]
                .as_str()
                .unwrap_or_default()
                .into(),
        });
        if let Some(handle) = message.receipt_handle() {
            let _ = sqs
                .delete_message()
                .queue_url(tap)
                .receipt_handle(handle)
                .send()
                .await;
        }
    }
    Ok(())
}

pub fn last(states: &[(i64, String)]) -> &str {
    states.last().map(|(_, s)| s.as_str()).unwrap_or("?")
}
