//! A person's hand on the circuit: the execution input of an operator's `open`, and how a
//! circuit reads to the operator (`status`, `history`). Pure: the operator command and the
//! `OpenCircuit` step both use it.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Longest reason an operator may give: it travels in events, the circuit item and logs.
pub const MAX_REASON_CHARS: usize = 256;

/// How long one `HoldOpen` wait lasts: a day. A year of daily hold cycles (a Standard
/// execution runs at most a year), each with every retry spent, stays below the history's
/// 25,000-event limit (see `core::history`), so a hold needs no budget of its own.
pub const HOLD_SECONDS: u32 = 86_400;

/// The state names of a circuit held open by hand.
pub const HOLD_STATES: [&str; 3] = ["HoldOpen", "CheckHold", "StillHeld"];

/// The state names of a half-open circuit (the slow start).
pub const HALF_OPEN_STATES: [&str; 4] = ["StartSlowStart", "RampVerdict", "WaitRampStep", "RampUp"];

/// An operator's `open`: the workflow's input is `{"operator": {"reason": ..., "hold": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorOpen {
    pub reason: String,
    /// Keep the circuit open without probing until an operator closes it.
    #[serde(default)]
    pub hold: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorInputError {
    #[error("the operator's request is malformed: {0}")]
    Malformed(String),
    #[error("the operator's reason is empty; say why the circuit is opened")]
    EmptyReason,
    #[error("the operator's reason has {chars} characters; at most {MAX_REASON_CHARS} are kept")]
    ReasonTooLong { chars: usize },
}

impl OperatorOpen {
    /// A checked request: a reason of 1 to [`MAX_REASON_CHARS`] characters, trimmed.
    pub fn new(reason: &str, hold: bool) -> Result<OperatorOpen, OperatorInputError> {
        let reason = reason.trim();
        let chars = reason.chars().count();
        if chars == 0 {
            return Err(OperatorInputError::EmptyReason);
        }
        if chars > MAX_REASON_CHARS {
            return Err(OperatorInputError::ReasonTooLong { chars });
        }
        Ok(OperatorOpen {
            reason: reason.to_string(),
            hold,
        })
    }

    /// The execution input that asks the workflow to open the circuit.
    pub fn input(&self) -> Value {
        json!({ "operator": self })
    }

    /// The operator's request in an execution input, if the input is one (`None`: it is not,
    /// and must be an alarm event).
    pub fn from_input(input: &Value) -> Option<Result<OperatorOpen, OperatorInputError>> {
        let request = input.get("operator")?;
        Some(
            serde_json::from_value::<OperatorOpen>(request.clone())
                .map_err(|e| OperatorInputError::Malformed(e.to_string()))
                .and_then(|r| OperatorOpen::new(&r.reason, r.hold)),
        )
    }
}

/// The circuit as an operator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    /// No circuit is open: the consumer reads its queue.
    Closed,
    /// An execution holds the circuit open and probes.
    Open,
    /// Opened by hand with `--hold`: open without probing until someone closes it.
    HeldOpen,
    /// The breaker gave up and left the circuit open (`GiveUpPolicy` leave-open): nothing
    /// runs until an operator closes it.
    GaveUp,
    /// The consumer is healthy and its mapping enabled under the slow start's cap, which
    /// ramps up; an error reopens the circuit.
    HalfOpen,
}

impl Phase {
    /// From the circuit item's `state` (none when there is no item) and the state the owning
    /// execution is in, if it runs.
    pub fn of(item_state: Option<&str>, owner_state: Option<&str>) -> Phase {
        match item_state {
            Some("OPEN") if owner_state.is_some_and(|s| HOLD_STATES.contains(&s)) => {
                Phase::HeldOpen
            }
            Some("OPEN") if owner_state.is_some_and(|s| HALF_OPEN_STATES.contains(&s)) => {
                Phase::HalfOpen
            }
            Some("OPEN") => Phase::Open,
            Some("GAVE_UP") => Phase::GaveUp,
            _ => Phase::Closed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Closed => "CLOSED",
            Phase::Open => "OPEN",
            Phase::HeldOpen => "HELD_OPEN",
            Phase::GaveUp => "GAVE_UP",
            Phase::HalfOpen => "HALF_OPEN",
        }
    }

    /// The operator command's exit status for `status`: 0 closed, 3 open in any way.
    pub fn exit_code(self) -> i32 {
        match self {
            Phase::Closed => 0,
            _ => 3,
        }
    }
}

/// How a past execution of the workflow ended, read from the last state it entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// A probe succeeded and the circuit closed (`CircuitClosed`).
    Closed,
    /// Someone enabled the mapping or closed the circuit (`CircuitClosedElsewhere`).
    ClosedElsewhere,
    /// The breaker gave up (`CircuitGaveUp`).
    GaveUp,
    /// The failsafe gave the consumer back after a failure.
    Failsafe,
    /// Stopped, failed or timed out outside the workflow's own ends; the recovery closed it.
    Stopped,
    /// It opened no circuit (another execution owned it, a stale alarm, a disabled
    /// mapping, a cooldown, an invalid event).
    NotOpened,
    /// Still running.
    Running,
}

impl Ending {
    /// From the states the execution entered, in order, and whether it still runs.
    pub fn of(states: &[String], running: bool) -> Ending {
        if running {
            return Ending::Running;
        }
        let entered = |name: &str| states.iter().any(|s| s == name);
        match states.last().map(String::as_str) {
            Some("CircuitClosed") => Ending::Closed,
            Some("CircuitClosedElsewhere") => Ending::ClosedElsewhere,
            Some("CircuitGaveUp") => Ending::GaveUp,
            Some("FailsafeRestoredConsumer" | "FailsafeFailed") => Ending::Failsafe,
            _ if !entered("WaitBeforeProbe") && !entered("HoldOpen") => Ending::NotOpened,
            _ => Ending::Stopped,
        }
    }

    /// Whether the execution held a circuit open at all.
    pub fn opened(self) -> bool {
        !matches!(self, Ending::NotOpened)
    }
}

/// The probes an execution made: each `Probe` state it entered.
pub fn probes(states: &[String]) -> usize {
    states.iter().filter(|s| *s == "Probe").count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_year_of_worst_case_hold_cycles_fits_in_the_history() {
        use crate::core::history::{task_worst, ENDING_RESERVE, FLOW_STATE, HISTORY_LIMIT};
        const YEAR_SECONDS: u32 = 366 * 86_400;
        let cycles = YEAR_SECONDS.div_ceil(HOLD_SECONDS);
        // HoldOpen, CheckHold, StillHeld; before them the start, OpenCircuit and its Choice.
        let hold_cycle = FLOW_STATE + task_worst() + FLOW_STATE;
        let opened = 1 + task_worst() + FLOW_STATE;
        assert!(
            opened + cycles * hold_cycle + ENDING_RESERVE < HISTORY_LIMIT,
            "{cycles} cycles of {hold_cycle} events"
        );
    }

    #[test]
    fn an_operator_request_round_trips_through_the_execution_input() {
        let open = OperatorOpen::new("  maintenance of the orders DB ", true).expect("valid");
        assert_eq!(open.reason, "maintenance of the orders DB");
        let input = open.input();
        assert_eq!(
            input,
            json!({"operator": {"reason": "maintenance of the orders DB", "hold": true}})
        );
        assert_eq!(OperatorOpen::from_input(&input), Some(Ok(open)));
    }

    #[test]
    fn an_alarm_event_is_not_an_operator_request() {
        let alarm = json!({"detail-type": "CloudWatch Alarm State Change", "detail": {}});
        assert_eq!(OperatorOpen::from_input(&alarm), None);
    }

    #[test]
    fn bad_operator_requests_are_refused_with_the_reason() {
        assert_eq!(
            OperatorOpen::from_input(&json!({"operator": {"reason": "   "}})),
            Some(Err(OperatorInputError::EmptyReason))
        );
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        assert_eq!(
            OperatorOpen::from_input(&json!({"operator": {"reason": long}})),
            Some(Err(OperatorInputError::ReasonTooLong {
                chars: MAX_REASON_CHARS + 1
            }))
        );
        assert!(matches!(
            OperatorOpen::from_input(&json!({"operator": {"hold": "yes"}})),
            Some(Err(OperatorInputError::Malformed(_)))
        ));
        // `hold` defaults to false.
        assert_eq!(
            OperatorOpen::from_input(&json!({"operator": {"reason": "r"}})),
            Some(Ok(OperatorOpen {
                reason: "r".into(),
                hold: false
            }))
        );
    }

    #[test]
    fn the_phase_comes_from_the_item_and_the_owner_s_state() {
        assert_eq!(Phase::of(None, None), Phase::Closed);
        assert_eq!(Phase::of(Some("CLOSED"), None), Phase::Closed);
        assert_eq!(
            Phase::of(Some("OPEN"), Some("WaitBeforeProbe")),
            Phase::Open
        );
        assert_eq!(Phase::of(Some("OPEN"), None), Phase::Open);
        for held in HOLD_STATES {
            assert_eq!(Phase::of(Some("OPEN"), Some(held)), Phase::HeldOpen);
        }
        assert_eq!(Phase::of(Some("GAVE_UP"), None), Phase::GaveUp);
        for ramping in HALF_OPEN_STATES {
            assert_eq!(Phase::of(Some("OPEN"), Some(ramping)), Phase::HalfOpen);
        }
        assert_eq!(Phase::Closed.exit_code(), 0);
        for open in [Phase::Open, Phase::HeldOpen, Phase::GaveUp, Phase::HalfOpen] {
            assert_ne!(open.exit_code(), 0);
        }
    }

    #[test]
    fn the_ending_is_read_from_the_last_state() {
        let closed = states(&[
            "OpenCircuit",
            "IsCircuitOpen",
            "WaitBeforeProbe",
            "Probe",
            "ProbeVerdict",
            "CloseCircuit",
            "CircuitClosed",
        ]);
        assert_eq!(Ending::of(&closed, false), Ending::Closed);
        assert_eq!(probes(&closed), 1);
        assert_eq!(Ending::of(&closed, true), Ending::Running);
        let stopped = states(&["OpenCircuit", "IsCircuitOpen", "WaitBeforeProbe"]);
        assert_eq!(Ending::of(&stopped, false), Ending::Stopped);
        let held = states(&["OpenCircuit", "IsCircuitOpen", "HoldOpen"]);
        assert_eq!(Ending::of(&held, false), Ending::Stopped);
        let other = states(&[
            "OpenCircuit",
            "IsCircuitOpen",
            "AnotherExecutionOwnsCircuit",
        ]);
        assert_eq!(Ending::of(&other, false), Ending::NotOpened);
        assert!(!Ending::NotOpened.opened());
        let gave_up = states(&["OpenCircuit", "WaitBeforeProbe", "GiveUp", "CircuitGaveUp"]);
        assert_eq!(Ending::of(&gave_up, false), Ending::GaveUp);
        let elsewhere = states(&[
            "HoldOpen",
            "CheckHold",
            "ReleaseCircuit",
            "CircuitClosedElsewhere",
        ]);
        assert_eq!(Ending::of(&elsewhere, false), Ending::ClosedElsewhere);
    }
}
