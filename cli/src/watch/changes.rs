//! What changed between two readings of a breaker, and how the live view tells it: pure, so
//! that every line `watch` and the demo print is tested without AWS.

use aws_sdk_sfn::types::HistoryEvent;
use controller::adapters::alarm::AlarmState;
use controller::adapters::queue::Depth;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// One state an execution went through: when it was entered and left (epoch ms), and the
/// output it passed on.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub entered_ms: i64,
    pub exited_ms: Option<i64>,
    pub output: Option<Value>,
}

/// An execution of the workflow and the states it went through.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub arn: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `ABORTED`, `TIMED_OUT`.
    pub status: String,
    pub steps: Vec<Step>,
}

/// The first characters of an execution's name: enough to tell executions apart in a log.
pub fn short(arn: &str) -> String {
    arn.rsplit(':')
        .next()
        .unwrap_or(arn)
        .chars()
        .take(8)
        .collect()
}

/// The states entered in `events` (a history, oldest first), each with when it was left and
/// its output once it was.
pub fn steps_of(events: &[HistoryEvent]) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for event in events {
        let at = event.timestamp().to_millis().unwrap_or_default();
        if let Some(entered) = event.state_entered_event_details() {
            steps.push(Step {
                name: entered.name().to_string(),
                entered_ms: at,
                exited_ms: None,
                output: None,
            });
        } else if let Some(exited) = event.state_exited_event_details() {
            if let Some(step) = steps
                .iter_mut()
                .rev()
                .find(|s| s.name == exited.name() && s.exited_ms.is_none())
            {
                step.exited_ms = Some(at);
                step.output = exited.output().and_then(|o| serde_json::from_str(o).ok());
            }
        }
    }
    steps
}

/// What the live view says when a state of the workflow finishes; None for states that only
/// route (Choice) or say nothing new.
pub fn narrate(step: &Step) -> Option<String> {
    let circuit = step.output.as_ref().and_then(|o| o.get("circuit"));
    let field = |name: &str| circuit.and_then(|c| c.get(name));
    let text = |name: &str| field(name).and_then(Value::as_str).unwrap_or_default();
    let number = |name: &str| field(name).and_then(Value::as_u64).unwrap_or_default();
    Some(match step.name.as_str() {
        "OpenCircuit" => match text("status") {
            "Opened" => format!(
                "circuit OPEN: consumer mapping disabled; first probe in {} s",
                number("wait_seconds")
            ),
            "Held" => format!("circuit HELD OPEN by hand: {}", text("reason")),
            "AlreadyOpen" => "another execution already owns the circuit: nothing to do".into(),
            "PastOutage" => format!(
                "no circuit: the alarm rests on the last outage's old errors; re-arming in {} s",
                number("wait_seconds")
            ),
            other => format!("open step: {other}"),
        },
        "Probe" => format!(
            "probe #{}: {} -> {}",
            number("attempt"),
            text("reason"),
            text("next")
        ),
        "NextBackoff" if text("next") == "Backoff" => format!(
            "next probe in {} s (drawn from a window of up to {} s)",
            number("wait_seconds"),
            number("backoff_ceiling_seconds")
        ),
        "NextBackoff" => format!("giving up: {}", text("reason")),
        "StartRejitter" => {
            "backlog rejitter ON: visible messages are re-sent with random delays".into()
        }
        "CheckBacklog" => format!("backlog check: {}", text("reason")),
        "StopRejitter" => "backlog rejitter OFF".into(),
        "StartSlowStart" | "RampUp" => match text("next") {
            "Ramp" => format!(
                "{}; next step in {} s",
                text("reason"),
                number("wait_seconds")
            ),
            _ => text("reason").to_string(),
        },
        "ReopenCircuit" => format!("circuit REOPENED: {}", text("reason")),
        "CloseCircuit" => "circuit CLOSED: consumer mapping re-enabled, alarm reset".into(),
        "ReleaseCircuit" => format!("circuit released: {}", text("reason")),
        "GiveUp" => format!("gave up: {}", text("reason")),
        "Failsafe" => "FAILSAFE: a step failed for good; consumer restored".into(),
        _ => return None,
    })
}

/// Something that changed between two readings.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The circuit item's state, and why.
    Circuit {
        state: String,
        reason: String,
    },
    /// The consumer's mapping's state (with its `MaximumConcurrency`, if it has one).
    Mapping(String),
    /// The alarm's state (`from` is None on the first reading), with CloudWatch's reason.
    Alarm {
        from: Option<String>,
        to: String,
        reason: String,
    },
    Queue(Depth),
    Started {
        execution: String,
    },
    /// A state of `execution` finished; what it did.
    Step {
        execution: String,
        line: String,
    },
    Ended {
        execution: String,
        status: String,
        last_state: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Circuit { state, reason } => write!(f, "circuit {state}: {reason}"),
            Change::Mapping(state) => write!(f, "mapping {state}"),
            Change::Alarm {
                from: Some(from),
                to,
                ..
            } => write!(f, "alarm {from} -> {to}"),
            Change::Alarm { to, .. } => write!(f, "alarm {to}"),
            Change::Queue(d) => write!(
                f,
                "queue visible {}, in flight {}, delayed {}",
                d.visible, d.in_flight, d.delayed
            ),
            Change::Started { execution } => write!(f, "execution {} started", short(execution)),
            Change::Step { execution, line } => write!(f, "[{}] {line}", short(execution)),
            Change::Ended {
                execution,
                status,
                last_state,
            } => write!(
                f,
                "[{}] execution {status} in {last_state}",
                short(execution)
            ),
        }
    }
}

/// One reading of the breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The circuit item's state and reason, if there is an item.
    pub circuit: Option<(String, String)>,
    pub mapping: String,
    pub alarm: Option<AlarmState>,
    pub queue: Depth,
    /// The executions read this time (new ones, and those still running or just ended).
    pub executions: Vec<Execution>,
}

/// What the previous readings showed.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    circuit: Option<(String, String)>,
    mapping: Option<String>,
    alarm: Option<String>,
    queue: Option<Depth>,
    statuses: BTreeMap<String, String>,
    finished_steps: HashMap<String, usize>,
}

impl Seen {
    /// What `reading` shows that the readings before did not, in a stable order.
    pub fn changes(&mut self, reading: &Reading) -> Vec<Change> {
        let mut changes = Vec::new();
        if let Some(circuit) = &reading.circuit {
            if self.circuit.as_ref() != Some(circuit) {
                changes.push(Change::Circuit {
                    state: circuit.0.clone(),
                    reason: circuit.1.clone(),
                });
                self.circuit = Some(circuit.clone());
            }
        }
        if self.mapping.as_ref() != Some(&reading.mapping) {
            changes.push(Change::Mapping(reading.mapping.clone()));
            self.mapping = Some(reading.mapping.clone());
        }
        if let Some(alarm) = &reading.alarm {
            if self.alarm.as_ref() != Some(&alarm.value) {
                changes.push(Change::Alarm {
                    from: self.alarm.replace(alarm.value.clone()),
                    to: alarm.value.clone(),
                    reason: alarm.reason.clone(),
                });
            }
        }
        if self.queue != Some(reading.queue) {
            changes.push(Change::Queue(reading.queue));
            self.queue = Some(reading.queue);
        }
        for execution in &reading.executions {
            let known = self
                .statuses
                .insert(execution.arn.clone(), execution.status.clone());
            if known.is_none() {
                changes.push(Change::Started {
                    execution: execution.arn.clone(),
                });
            }
            let seen = self
                .finished_steps
                .entry(execution.arn.clone())
                .or_default();
            let finished: Vec<&Step> = execution
                .steps
                .iter()
                .filter(|s| s.exited_ms.is_some())
                .collect();
            for step in finished.iter().skip(*seen) {
                if let Some(line) = narrate(step) {
                    changes.push(Change::Step {
                        execution: execution.arn.clone(),
                        line,
                    });
                }
            }
            *seen = finished.len();
            if execution.status != "RUNNING" && known.as_deref() != Some(&execution.status) {
                changes.push(Change::Ended {
                    execution: execution.arn.clone(),
                    status: execution.status.clone(),
                    last_state: execution
                        .steps
                        .last()
                        .map_or("?".into(), |s| s.name.clone()),
                });
            }
        }
        changes
    }

    /// Every execution seen, and its last status.
    pub fn statuses(&self) -> &BTreeMap<String, String> {
        &self.statuses
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(name: &str, exited: bool, circuit: Value) -> Step {
        Step {
            name: name.into(),
            entered_ms: 1,
            exited_ms: exited.then_some(2),
            output: Some(json!({ "circuit": circuit })),
        }
    }

    fn reading(mapping: &str, alarm: &str, executions: Vec<Execution>) -> Reading {
        Reading {
            circuit: Some(("OPEN".into(), "alarm a: threshold crossed".into())),
            mapping: mapping.into(),
            alarm: Some(AlarmState {
                value: alarm.into(),
                reason: "Threshold Crossed".into(),
                since_ms: 0,
                kind: "metric",
            }),
            queue: Depth {
                visible: 3,
                in_flight: 0,
                delayed: 0,
            },
            executions,
        }
    }

    const ARN: &str = "arn:aws:states:us-east-1:123456789012:execution:sm:4f2a9c1e-77";

    fn execution(status: &str, steps: Vec<Step>) -> Execution {
        Execution {
            arn: ARN.into(),
            status: status.into(),
            steps,
        }
    }

    #[test]
    fn the_first_reading_tells_everything_then_only_what_changed() {
        let mut seen = Seen::default();
        let opened = step(
            "OpenCircuit",
            true,
            json!({"status": "Opened", "wait_seconds": 2}),
        );
        let first = seen.changes(&reading(
            "Disabled",
            "ALARM",
            vec![execution("RUNNING", vec![opened.clone()])],
        ));
        let lines: Vec<String> = first.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "circuit OPEN: alarm a: threshold crossed",
                "mapping Disabled",
                "alarm ALARM",
                "queue visible 3, in flight 0, delayed 0",
                "execution 4f2a9c1e started",
                "[4f2a9c1e] circuit OPEN: consumer mapping disabled; first probe in 2 s",
            ]
        );
        // The same reading again: nothing new.
        let again = reading(
            "Disabled",
            "ALARM",
            vec![execution("RUNNING", vec![opened.clone()])],
        );
        assert_eq!(seen.changes(&again), []);
        // A probe finished (a Choice says nothing), the alarm reset, the execution ended.
        let probe = step(
            "Probe",
            true,
            json!({"attempt": 1, "reason": "message m: healthy", "next": "Close"}),
        );
        let choice = step("ProbeVerdict", true, json!({}));
        let later = reading(
            "Enabled",
            "OK",
            vec![execution("SUCCEEDED", vec![opened, probe, choice])],
        );
        let lines: Vec<String> = seen
            .changes(&later)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "mapping Enabled",
                "alarm ALARM -> OK",
                "[4f2a9c1e] probe #1: message m: healthy -> Close",
                "[4f2a9c1e] execution SUCCEEDED in ProbeVerdict",
            ]
        );
        assert_eq!(seen.statuses()[ARN], "SUCCEEDED");
    }

    #[test]
    fn a_state_still_running_is_told_once_it_finishes() {
        let mut seen = Seen::default();
        let waiting = step("Probe", false, json!({}));
        seen.changes(&reading(
            "Disabled",
            "ALARM",
            vec![execution("RUNNING", vec![waiting])],
        ));
        let done = step(
            "Probe",
            true,
            json!({"attempt": 1, "reason": "r", "next": "Backoff"}),
        );
        let changes = seen.changes(&reading(
            "Disabled",
            "ALARM",
            vec![execution("RUNNING", vec![done])],
        ));
        assert_eq!(
            changes,
            [Change::Step {
                execution: ARN.into(),
                line: "probe #1: r -> Backoff".into()
            }]
        );
    }

    #[test]
    fn narration_covers_the_states_that_act() {
        let held = step(
            "OpenCircuit",
            true,
            json!({"status": "Held", "reason": "opened by hand: DB maintenance"}),
        );
        assert_eq!(
            narrate(&held).as_deref(),
            Some("circuit HELD OPEN by hand: opened by hand: DB maintenance")
        );
        let backoff = step(
            "NextBackoff",
            true,
            json!({"next": "Backoff", "wait_seconds": 3, "backoff_ceiling_seconds": 4}),
        );
        assert_eq!(
            narrate(&backoff).as_deref(),
            Some("next probe in 3 s (drawn from a window of up to 4 s)")
        );
        let ramp = step(
            "RampUp",
            true,
            json!({"next": "Ramp", "wait_seconds": 5, "reason": "HALF-OPEN: MaximumConcurrency raised to 4"}),
        );
        assert_eq!(
            narrate(&ramp).as_deref(),
            Some("HALF-OPEN: MaximumConcurrency raised to 4; next step in 5 s")
        );
        let reopened = step(
            "ReopenCircuit",
            true,
            json!({"next": "Backoff", "reason": "the consumer raised 3 errors during the slow start"}),
        );
        assert_eq!(
            narrate(&reopened).as_deref(),
            Some("circuit REOPENED: the consumer raised 3 errors during the slow start")
        );
        for routing in [
            "ProbeVerdict",
            "WaitBeforeProbe",
            "HoldOpen",
            "RampVerdict",
            "WaitRampStep",
        ] {
            assert_eq!(narrate(&step(routing, true, json!({}))), None, "{routing}");
        }
    }
}
