//! The execution-history budget.
//!
//! A Standard execution fails outright, outside every Catch, when its history reaches 25,000
//! events, and that would leave the consumer disabled. The workflow therefore carries a count
//! of the events it has written (`Circuit::history_events`), and the steps that decide whether
//! another loop runs refuse one that could cross the limit, keeping room for the longest way
//! out (closing with a failed, retried close and the failsafe).
//!
//! The counts are AWS's, per the Step Functions history event types: a Task state whose
//! resource is a Lambda function writes `TaskStateEntered`, `LambdaFunctionScheduled`,
//! `LambdaFunctionStarted`, `LambdaFunctionSucceeded` and `TaskStateExited`; every failed
//! attempt before a retry adds `LambdaFunctionScheduled`, `LambdaFunctionStarted` and
//! `LambdaFunctionFailed`; Wait, Choice, Pass and Succeed states write an entered and an
//! exited event.

/// A Standard execution's history limit.
pub const HISTORY_LIMIT: u32 = 25_000;
/// `ExecutionStarted`.
pub const EXECUTION_STARTED: u32 = 1;
/// A Task state whose first attempt succeeds.
pub const TASK: u32 = 5;
/// Each failed attempt that is retried.
pub const RETRY: u32 = 3;
/// A Wait, Choice, Pass or Succeed state.
pub const FLOW_STATE: u32 = 2;
/// The most retries any Task's Retry allows (`MaxAttempts` in the state machine; a test
/// checks the ASL against it).
pub const MAX_RETRIES: u32 = 6;
/// The failsafe's own `MaxAttempts`.
pub const FAILSAFE_MAX_RETRIES: u32 = 5;

/// Events a Task state writes when it succeeds after `retries` failed attempts.
pub const fn task(retries: u32) -> u32 {
    TASK + RETRY * retries
}

/// The most events a Task state can write: every retry spent.
pub const fn task_worst() -> u32 {
    task(MAX_RETRIES)
}

/// One probe loop at worst: WaitBeforeProbe, Probe, ProbeVerdict, NextBackoff, BackoffOrGiveUp.
pub const PROBE_LOOP_WORST: u32 =
    FLOW_STATE + task_worst() + FLOW_STATE + task_worst() + FLOW_STATE;

/// One rejitter loop at worst: WaitForBacklog, CheckBacklog, BacklogSpread.
pub const REJITTER_LOOP_WORST: u32 = FLOW_STATE + task_worst() + FLOW_STATE;

/// One slow start step at worst: WaitRampStep, RampUp, RampVerdict; or ReopenCircuit.
pub const RAMP_LOOP_WORST: u32 = FLOW_STATE + task_worst() + FLOW_STATE;

/// The longest way out of any loop: StartRejitter, StopRejitter, SlowStartOrClose,
/// StartSlowStart, RampVerdict and CloseCircuit (or GiveUp, or ReleaseCircuit, no longer)
/// each with every retry, the failsafe with every retry after a caught failure, and the end
/// states (a Pass, a Fail or Succeed, the execution's end).
pub const ENDING_RESERVE: u32 = 4 * task_worst()
    + 2 * FLOW_STATE
    + FLOW_STATE
    + task(FAILSAFE_MAX_RETRIES)
    + FLOW_STATE
    + FLOW_STATE
    + 1;

/// True when one more loop costing `loop_worst` events could leave too little room for the
/// way out.
pub fn no_room_for(used: u32, loop_worst: u32) -> bool {
    used.saturating_add(loop_worst)
        .saturating_add(ENDING_RESERVE)
        > HISTORY_LIMIT
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_worst_loops_are_what_the_state_machine_writes() {
        assert_eq!(task_worst(), 23);
        assert_eq!(PROBE_LOOP_WORST, 52);
        assert_eq!(REJITTER_LOOP_WORST, 27);
        assert_eq!(RAMP_LOOP_WORST, 27);
        assert_eq!(ENDING_RESERVE, 92 + 4 + 2 + 20 + 2 + 2 + 1);
    }

    #[test]
    fn a_fresh_execution_has_room_for_hundreds_of_worst_case_probe_loops() {
        let opened = EXECUTION_STARTED + task_worst() + FLOW_STATE;
        let loops = (HISTORY_LIMIT - opened - ENDING_RESERVE) / PROBE_LOOP_WORST;
        assert!(loops >= 470, "{loops}");
        assert!(!no_room_for(opened, PROBE_LOOP_WORST));
    }

    /// The state machine the counts are about.
    fn asl() -> serde_json::Value {
        serde_json::from_str(include_str!(
            "../../../statemachine/circuit-breaker.asl.json"
        ))
        .expect("the ASL parses")
    }

    /// The events one pass through `states` writes when no attempt fails.
    fn cost(asl: &serde_json::Value, states: &[&str]) -> u32 {
        states
            .iter()
            .map(|name| match asl["States"][name]["Type"].as_str() {
                Some("Task") => TASK,
                Some("Wait" | "Choice" | "Pass" | "Succeed") => FLOW_STATE,
                other => panic!("{name}: unexpected type {other:?}"),
            })
            .sum()
    }

    /// Follows `Next`, or the Choice rule for `value`, from `from` until `to`.
    fn path(asl: &serde_json::Value, from: &str, to: &str, value: &str) -> Vec<String> {
        let mut out = vec![from.to_string()];
        let mut at = from.to_string();
        while at != to || out.len() == 1 {
            let state = &asl["States"][&at];
            let next = state["Next"].as_str().map(str::to_string).or_else(|| {
                state["Choices"].as_array()?.iter().find_map(|rule| {
                    let rules = rule["And"]
                        .as_array()
                        .cloned()
                        .unwrap_or_else(|| vec![rule.clone()]);
                    rules
                        .iter()
                        .any(|r| r["StringEquals"] == value)
                        .then(|| rule["Next"].as_str().unwrap_or_default().to_string())
                })
            });
            at = next.unwrap_or_else(|| panic!("{at} has no way on for {value}"));
            out.push(at.clone());
            assert!(out.len() < 20, "no loop back to {to}: {out:?}");
        }
        out.pop();
        out
    }

    #[test]
    fn the_loops_counted_are_the_loops_of_the_state_machine() {
        let asl = asl();
        let probe_loop = path(&asl, "WaitBeforeProbe", "WaitBeforeProbe", "Backoff");
        assert_eq!(
            probe_loop,
            [
                "WaitBeforeProbe",
                "Probe",
                "ProbeVerdict",
                "NextBackoff",
                "BackoffOrGiveUp"
            ]
        );
        assert_eq!(
            cost(
                &asl,
                &[
                    "WaitBeforeProbe",
                    "Probe",
                    "ProbeVerdict",
                    "NextBackoff",
                    "BackoffOrGiveUp"
                ]
            ),
            2 * TASK + 3 * FLOW_STATE
        );
        assert_eq!(PROBE_LOOP_WORST, 2 * task_worst() + 3 * FLOW_STATE);
        let rejitter_loop = path(&asl, "WaitForBacklog", "WaitForBacklog", "WaitForBacklog");
        assert_eq!(
            rejitter_loop,
            ["WaitForBacklog", "CheckBacklog", "BacklogSpread"]
        );
        assert_eq!(REJITTER_LOOP_WORST, task_worst() + 2 * FLOW_STATE);
    }

    #[test]
    fn no_task_retries_more_than_the_budget_counts() {
        let asl = asl();
        for (name, state) in asl["States"].as_object().expect("States") {
            for retrier in state["Retry"].as_array().into_iter().flatten() {
                let max = retrier["MaxAttempts"].as_u64().expect("MaxAttempts") as u32;
                let allowed = if name == "Failsafe" {
                    FAILSAFE_MAX_RETRIES
                } else {
                    MAX_RETRIES
                };
                assert!(
                    max <= allowed,
                    "{name} retries {max} times, the budget counts {allowed}"
                );
            }
        }
    }

    proptest! {
        /// Whatever was used, a loop is allowed only when it and the longest way out fit.
        #[test]
        fn an_allowed_loop_and_its_way_out_always_fit(used in 0u32..30_000, worst in 1u32..200) {
            if !no_room_for(used, worst) {
                prop_assert!(used + worst + ENDING_RESERVE <= HISTORY_LIMIT);
            }
        }
    }
}
