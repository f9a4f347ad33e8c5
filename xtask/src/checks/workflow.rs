//! The structural rules of the breaker's Step Functions workflow, as pure functions over its
//! definition (loaded by [`crate::asl`]): every transition goes to a state, every state is
//! reachable, every Task retries only what retrying can fix and hands anything else to the
//! failsafe with the error in `$.error`.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Errors that retrying cannot fix; a retrier naming one of them would only delay the
/// outcome (and repeat side effects).
pub const NOT_RETRYABLE: [&str; 4] = [
    "InvalidEvent",
    "MappingNotFound",
    "SeveralMappings",
    "NotOwner",
];

/// The Task every other Task hands an unexpected error to, and where it goes when it fails.
const FAILSAFE: &str = "Failsafe";
const FAILSAFE_FAILED: &str = "FailsafeFailed";

/// The entries of `value[key]`, none when it is missing or not an array.
pub fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The error names a retrier or catcher matches (`ErrorEquals`).
pub fn error_names(entry: &Value) -> Vec<&str> {
    array(entry, "ErrorEquals")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// The states a state can go to next (Next, Choice rules and Default, Catch).
pub fn transitions(state: &Value) -> Vec<String> {
    let catches = array(state, "Catch").iter().map(|c| c.get("Next"));
    [state.get("Next"), state.get("Default")]
        .into_iter()
        .chain(array(state, "Choices").iter().map(|r| r.get("Next")))
        .chain(catches)
        .filter_map(|v| v.and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// Everything structurally wrong with a definition, one line each; empty when sound.
pub fn structure_problems(def: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(states) = def.get("States").and_then(Value::as_object) else {
        return vec!["the definition has no States object".into()];
    };
    let start = def.get("StartAt").and_then(Value::as_str).unwrap_or("");
    if !states.contains_key(start) {
        problems.push(format!("StartAt {start:?} is not a state"));
    }

    for (name, state) in states {
        let kind = state.get("Type").and_then(Value::as_str).unwrap_or("");
        for target in transitions(state) {
            if !states.contains_key(&target) {
                problems.push(format!("{name} goes to {target:?}, which is not a state"));
            }
        }
        let ends = state.get("End") == Some(&Value::Bool(true));
        if matches!(kind, "Task" | "Pass" | "Wait" | "Parallel" | "Map")
            && state.get("Next").is_none()
            && !ends
        {
            problems.push(format!("{name} ({kind}) has neither Next nor End"));
        }
        match kind {
            "Task" => problems.extend(task_problems(name, state)),
            "Choice" if state.get("Default").is_none() => {
                problems.push(format!("Choice {name} has no Default"))
            }
            _ => {}
        }
        // The failsafe reads $.error: whoever hands over to it must have set it.
        let plain_targets: Vec<&str> = ["Next", "Default"]
            .iter()
            .filter_map(|k| state.get(*k).and_then(Value::as_str))
            .chain(
                array(state, "Choices")
                    .iter()
                    .filter_map(|r| r.get("Next").and_then(Value::as_str)),
            )
            .collect();
        let sets_error = kind == "Pass" && state.get("ResultPath") == Some(&json!("$.error"));
        if plain_targets.contains(&FAILSAFE) && !sets_error {
            problems.push(format!(
                "{name} goes to Failsafe without setting $.error (go through UnexpectedState)"
            ));
        }
    }

    let seen = reachable(states, start);
    for name in states.keys() {
        if !seen.contains(name) {
            problems.push(format!("{name} is unreachable from {start}"));
        }
    }
    problems
}

/// The states reachable from `start`.
fn reachable(states: &serde_json::Map<String, Value>, start: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([start.to_string()]);
    while let Some(name) = queue.pop_front() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(state) = states.get(&name) {
            queue.extend(transitions(state));
        }
    }
    seen
}

fn task_problems(name: &str, state: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let retriers = array(state, "Retry");
    if retriers.is_empty() {
        problems.push(format!("Task {name} has no Retry"));
    }
    if name != FAILSAFE {
        for retrier in retriers {
            for error in error_names(retrier) {
                if NOT_RETRYABLE.contains(&error) || error.starts_with("States.") {
                    problems.push(format!(
                        "Task {name} retries {error}, which is not retryable"
                    ));
                }
            }
        }
    }
    let catch_all: Vec<&Value> = array(state, "Catch")
        .iter()
        .filter(|c| error_names(c).contains(&"States.ALL"))
        .collect();
    let wanted = if name == FAILSAFE {
        FAILSAFE_FAILED
    } else {
        FAILSAFE
    };
    match catch_all.as_slice() {
        [] => problems.push(format!("Task {name} has no Catch for States.ALL")),
        [catcher] => {
            if catcher.get("Next").and_then(Value::as_str) != Some(wanted) {
                problems.push(format!(
                    "Task {name} catches States.ALL, but not to {wanted}"
                ));
            }
            if name != FAILSAFE && catcher.get("ResultPath") != Some(&json!("$.error")) {
                problems.push(format!(
                    "Task {name} catches States.ALL without ResultPath $.error"
                ));
            }
            if array(state, "Catch").last() != Some(*catcher) {
                problems.push(format!("Task {name}: the States.ALL catcher must be last"));
            }
        }
        _ => problems.push(format!("Task {name} catches States.ALL twice")),
    }
    if state
        .get("TimeoutSeconds")
        .and_then(Value::as_u64)
        .is_none()
    {
        problems.push(format!("Task {name} has no TimeoutSeconds"));
    }
    problems
}

/// The (value, next) pairs of a Choice's StringEquals rules (also inside And), and the
/// variables they read.
pub fn choice_branches(state: &Value) -> (BTreeMap<String, String>, BTreeSet<String>) {
    fn comparisons(rule: &Value, out: &mut Vec<(String, String)>) {
        if let (Some(var), Some(value)) = (
            rule.get("Variable").and_then(Value::as_str),
            rule.get("StringEquals").and_then(Value::as_str),
        ) {
            out.push((var.to_string(), value.to_string()));
        }
        for inner in array(rule, "And") {
            comparisons(inner, out);
        }
    }
    let mut branches = BTreeMap::new();
    let mut variables = BTreeSet::new();
    for rule in array(state, "Choices") {
        let mut found = Vec::new();
        comparisons(rule, &mut found);
        for (var, value) in found {
            variables.insert(var);
            let next = rule.get("Next").and_then(Value::as_str).unwrap_or("");
            branches.insert(value, next.to_string());
        }
    }
    (branches, variables)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small sound workflow: a Task that may end in a Choice, with the failsafe.
    fn sound() -> Value {
        let task = |next: &str| {
            json!({"Type": "Task", "Next": next, "TimeoutSeconds": 300,
                   "Retry": [{"ErrorEquals": ["Transient"]}],
                   "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failsafe"}]})
        };
        json!({"StartAt": "Work", "States": {
            "Work": task("Verdict"),
            "Verdict": {"Type": "Choice", "Default": "UnexpectedState", "Choices": [
                {"And": [{"Variable": "$.circuit.next", "StringEquals": "Done"}], "Next": "Done"}]},
            "UnexpectedState": {"Type": "Pass", "ResultPath": "$.error", "Next": "Failsafe"},
            "Failsafe": {"Type": "Task", "End": true, "TimeoutSeconds": 300,
                         "Retry": [{"ErrorEquals": ["States.ALL"]}],
                         "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "FailsafeFailed"}]},
            "FailsafeFailed": {"Type": "Fail"},
            "Done": {"Type": "Succeed"},
        }})
    }

    fn problems_after(change: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut def = sound();
        change(&mut def);
        structure_problems(&def)
    }

    #[test]
    fn a_sound_workflow_has_no_problems() {
        assert_eq!(structure_problems(&sound()), Vec::<String>::new());
    }

    #[test]
    fn each_rule_is_enforced() {
        let cases: Vec<(&str, Vec<String>)> = vec![
            (
                "the definition has no States object",
                structure_problems(&json!({})),
            ),
            (
                "StartAt \"Nowhere\" is not a state",
                problems_after(|d| d["StartAt"] = json!("Nowhere")),
            ),
            (
                "Work (Task) has neither Next nor End",
                problems_after(|d| {
                    d["States"]["Work"]
                        .as_object_mut()
                        .map(|w| w.remove("Next"));
                }),
            ),
            (
                "Task Work retries NotOwner, which is not retryable",
                problems_after(|d| {
                    d["States"]["Work"]["Retry"][0]["ErrorEquals"] = json!(["NotOwner"])
                }),
            ),
            (
                "Task Work retries States.Timeout, which is not retryable",
                problems_after(|d| {
                    d["States"]["Work"]["Retry"][0]["ErrorEquals"] = json!(["States.Timeout"])
                }),
            ),
            (
                "Task Work catches States.ALL without ResultPath $.error",
                problems_after(|d| d["States"]["Work"]["Catch"][0]["ResultPath"] = json!("$.e")),
            ),
            (
                "Task Work: the States.ALL catcher must be last",
                problems_after(|d| {
                    let all = d["States"]["Work"]["Catch"][0].take();
                    d["States"]["Work"]["Catch"] =
                        json!([all, {"ErrorEquals": ["NotOwner"], "Next": "Done"}]);
                }),
            ),
            (
                "Task Work catches States.ALL twice",
                problems_after(|d| {
                    let all = d["States"]["Work"]["Catch"][0].take();
                    d["States"]["Work"]["Catch"] = json!([all.clone(), all]);
                }),
            ),
            (
                "Task Failsafe catches States.ALL, but not to FailsafeFailed",
                problems_after(|d| d["States"]["Failsafe"]["Catch"][0]["Next"] = json!("Done")),
            ),
            (
                "Task Work has no TimeoutSeconds",
                problems_after(|d| {
                    d["States"]["Work"]
                        .as_object_mut()
                        .map(|w| w.remove("TimeoutSeconds"));
                }),
            ),
            (
                "Verdict goes to Failsafe without setting $.error",
                problems_after(|d| d["States"]["Verdict"]["Default"] = json!("Failsafe")),
            ),
        ];
        for (expected, problems) in cases {
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "expected a problem containing {expected:?}, got {problems:?}"
            );
        }
    }

    #[test]
    fn choice_branches_reads_string_equals_also_inside_and() {
        let (branches, variables) = choice_branches(&sound()["States"]["Verdict"]);
        assert_eq!(
            branches,
            BTreeMap::from([("Done".to_string(), "Done".to_string())])
        );
        assert_eq!(variables, BTreeSet::from(["$.circuit.next".to_string()]));
    }

    #[test]
    fn transitions_include_catches_and_choices() {
        let state = json!({"Next": "A", "Default": "B", "Choices": [{"Next": "C"}],
                           "Catch": [{"Next": "D"}]});
        assert_eq!(transitions(&state), ["A", "B", "C", "D"]);
    }
}
