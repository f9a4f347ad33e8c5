//! Checks of the breaker's deployable definitions: the Step Functions workflow
//! (`statemachine/circuit-breaker.asl.json`) and the SAM template (`infra/template.yaml`).
//!
//! The structural checks of the workflow and the self-tests of the IAM check are plain Rust
//! and always run. The rest needs the local toolchain (asl-validator from npm; cfn-lint,
//! PyYAML and MiniStack from the venv) and is `#[ignore]`d like the other toolchain tests.

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use xtask::{asl, paths, tools};

// ---------------------------------------------------------------------------------------
// The workflow's contract with the controller
// ---------------------------------------------------------------------------------------

/// Errors a Task retries: Lambda service hiccups and the controller's retryable errors.
const RETRYABLE: [&str; 6] = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Transient",
    "MappingNotSettled",
];

/// Errors that retrying cannot fix; a retrier naming one of them would only delay the
/// outcome (and repeat side effects).
const NOT_RETRYABLE: [&str; 4] = [
    "InvalidEvent",
    "MappingNotFound",
    "SeveralMappings",
    "NotOwner",
];

/// Every Task, the `step` it sends the controller, and where it goes on success.
const TASKS: [(&str, &str, &str); 15] = [
    ("OpenCircuit", "open", "IsCircuitOpen"),
    ("Probe", "probe", "ProbeVerdict"),
    ("NextBackoff", "backoff", "BackoffOrGiveUp"),
    ("StartRejitter", "start_rejitter", "WaitForBacklog"),
    ("CheckBacklog", "check_backlog", "BacklogSpread"),
    ("StopRejitter", "stop_rejitter", "SlowStartOrClose"),
    ("StartSlowStart", "start_slow_start", "RampVerdict"),
    ("RampUp", "ramp_up", "RampVerdict"),
    ("ReopenCircuit", "reopen", "NextBackoff"),
    ("CloseCircuit", "close", "CircuitClosed"),
    ("GiveUp", "give_up", "CircuitGaveUp"),
    ("ReleaseCircuit", "release", "CircuitClosedElsewhere"),
    ("RearmAlarm", "rearm", "CircuitRearmed"),
    ("CheckHold", "check_hold", "StillHeld"),
    ("Failsafe", "failsafe", "FailsafeRestoredConsumer"),
];

/// A Choice: its name, the variable it reads, value -> next state, and its default.
type Choice = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

/// Every Choice.
const CHOICES: [Choice; 7] = [
    (
        "IsCircuitOpen",
        "$.circuit.status",
        &[
            ("Opened", "WaitBeforeProbe"),
            ("AlreadyOpen", "AnotherExecutionOwnsCircuit"),
            ("MappingNotEnabled", "MappingDisabledByOperator"),
            ("Stale", "IgnoreStaleAlarm"),
            ("CoolingDown", "CoolDown"),
            ("Held", "HoldOpen"),
            ("PastOutage", "WaitOutAlarmWindow"),
        ],
        "UnexpectedState",
    ),
    (
        "StillHeld",
        "$.circuit.next",
        &[("Hold", "HoldOpen"), ("ClosedElsewhere", "ReleaseCircuit")],
        "UnexpectedState",
    ),
    (
        "ProbeVerdict",
        "$.circuit.next",
        &[
            ("Close", "CloseCircuit"),
            ("SlowStart", "StartSlowStart"),
            ("Rejitter", "StartRejitter"),
            ("Backoff", "NextBackoff"),
            ("GiveUp", "GiveUp"),
            ("ClosedElsewhere", "ReleaseCircuit"),
        ],
        "UnexpectedState",
    ),
    (
        "BacklogSpread",
        "$.circuit.next",
        &[
            ("WaitForBacklog", "WaitForBacklog"),
            ("Close", "StopRejitter"),
            ("ClosedElsewhere", "ReleaseCircuit"),
        ],
        "UnexpectedState",
    ),
    (
        "SlowStartOrClose",
        "$.circuit.next",
        &[("SlowStart", "StartSlowStart"), ("Close", "CloseCircuit")],
        "UnexpectedState",
    ),
    (
        "RampVerdict",
        "$.circuit.next",
        &[
            ("Ramp", "WaitRampStep"),
            ("Close", "CloseCircuit"),
            ("Reopen", "ReopenCircuit"),
            ("ClosedElsewhere", "ReleaseCircuit"),
        ],
        "UnexpectedState",
    ),
    (
        "BackoffOrGiveUp",
        "$.circuit.next",
        &[("Backoff", "WaitBeforeProbe"), ("GiveUp", "GiveUp")],
        "UnexpectedState",
    ),
];

const SUCCEEDS: [&str; 6] = [
    "AnotherExecutionOwnsCircuit",
    "MappingDisabledByOperator",
    "IgnoreStaleAlarm",
    "CircuitRearmed",
    "CircuitClosed",
    "CircuitClosedElsewhere",
];

/// Fail states and their error names.
const FAILS: [(&str, &str); 5] = [
    ("CircuitGaveUp", "CircuitGaveUp"),
    ("IgnoreInvalidEvent", "InvalidEvent"),
    ("NoSingleMapping", "NoSingleMapping"),
    ("FailsafeRestoredConsumer", "BreakerFailed"),
    ("FailsafeFailed", "FailsafeFailed"),
];

fn definition() -> Value {
    asl::deployed_definition().expect("the state machine definition loads")
}

// ---------------------------------------------------------------------------------------
// (b) Structure of the workflow
// ---------------------------------------------------------------------------------------

/// The states a state can go to next (Next, Choice rules and Default, Catch).
fn transitions(state: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |v: Option<&Value>| {
        if let Some(s) = v.and_then(Value::as_str) {
            out.push(s.to_string());
        }
    };
    push(state.get("Next"));
    push(state.get("Default"));
    for rule in array(state, "Choices") {
        push(rule.get("Next"));
    }
    for catcher in array(state, "Catch") {
        push(catcher.get("Next"));
    }
    out
}

fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn error_names(entry: &Value) -> Vec<&str> {
    array(entry, "ErrorEquals")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// Everything structurally wrong with a definition, one line each; empty when sound.
fn structure_problems(def: &Value) -> Vec<String> {
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
        if plain_targets.contains(&"Failsafe") && !sets_error {
            problems.push(format!(
                "{name} goes to Failsafe without setting $.error (go through UnexpectedState)"
            ));
        }
    }

    // Every state reachable from StartAt.
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
    for name in states.keys() {
        if !seen.contains(name) {
            problems.push(format!("{name} is unreachable from {start}"));
        }
    }
    problems
}

fn task_problems(name: &str, state: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let retriers = array(state, "Retry");
    if retriers.is_empty() {
        problems.push(format!("Task {name} has no Retry"));
    }
    if name != "Failsafe" {
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
    let wanted = if name == "Failsafe" {
        "FailsafeFailed"
    } else {
        "Failsafe"
    };
    match catch_all.as_slice() {
        [] => problems.push(format!("Task {name} has no Catch for States.ALL")),
        [catcher] => {
            if catcher.get("Next").and_then(Value::as_str) != Some(wanted) {
                problems.push(format!(
                    "Task {name} catches States.ALL, but not to {wanted}"
                ));
            }
            if name != "Failsafe" && catcher.get("ResultPath") != Some(&json!("$.error")) {
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

#[test]
fn workflow_is_structurally_sound() {
    let problems = structure_problems(&definition());
    assert!(
        problems.is_empty(),
        "problems in the workflow:\n  {}",
        problems.join("\n  ")
    );
}

/// The (value, next) pairs of a Choice's StringEquals rules (also inside And), and the
/// variables they read.
fn choice_branches(state: &Value) -> (BTreeMap<String, String>, BTreeSet<String>) {
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

#[test]
fn workflow_follows_the_controller_contract() {
    let def = definition();
    let states = def["States"].as_object().expect("States");
    let state = |name: &str| {
        states
            .get(name)
            .unwrap_or_else(|| panic!("the workflow has no state {name}"))
    };
    assert_eq!(def["StartAt"], "OpenCircuit");
    assert!(
        def.get("TimeoutSeconds").is_none(),
        "no machine-wide timeout: the controller has its own limits"
    );

    let retried: BTreeSet<&str> = RETRYABLE.into_iter().collect();
    for (name, step, next) in TASKS {
        let task = state(name);
        assert_eq!(task["Type"], "Task", "{name}");
        assert_eq!(task["Resource"], asl::EXAMPLE_CONTROLLER_ARN, "{name}");
        assert_eq!(task["Parameters"]["step"], step, "{name}");
        assert_eq!(task["Next"], next, "{name}");
        // The probe waits for a hanging consumer up to the controller's own 900 s.
        let timeout = if name == "Probe" { 960 } else { 300 };
        assert_eq!(task["TimeoutSeconds"], timeout, "{name}");
        let result_path = if name == "Failsafe" {
            "$.failsafe"
        } else {
            "$.circuit"
        };
        assert_eq!(task["ResultPath"], result_path, "{name}");
        if name != "Failsafe" {
            let names: BTreeSet<&str> = array(task, "Retry").iter().flat_map(error_names).collect();
            assert_eq!(
                names, retried,
                "{name} retries exactly the retryable errors"
            );
            for retrier in array(task, "Retry") {
                assert_eq!(retrier["IntervalSeconds"], 2, "{name}");
                assert_eq!(retrier["MaxAttempts"], 6, "{name}");
                assert_eq!(retrier["BackoffRate"], 2, "{name}");
                assert_eq!(retrier["MaxDelaySeconds"], 60, "{name}");
                assert_eq!(retrier["JitterStrategy"], "FULL", "{name}");
            }
        }
    }
    // Each step also learns how many of its attempts failed before (the history budget).
    let circuit_payload =
        json!({"step": "", "circuit.$": "$.circuit", "retries.$": "$$.State.RetryCount"});
    for name in [
        "Probe",
        "NextBackoff",
        "StartRejitter",
        "CheckBacklog",
        "StopRejitter",
        "CloseCircuit",
        "GiveUp",
        "ReleaseCircuit",
        "RearmAlarm",
        "CheckHold",
    ] {
        let mut payload = state(name)["Parameters"].clone();
        payload["step"] = json!("");
        assert_eq!(payload, circuit_payload, "{name} sends the circuit");
    }
    assert_eq!(
        state("OpenCircuit")["Parameters"],
        json!({"step": "open", "event.$": "$", "execution.$": "$$.Execution.Id", "retries.$": "$$.State.RetryCount"})
    );
    assert_eq!(
        state("Failsafe")["Parameters"],
        json!({"step": "failsafe", "execution.$": "$$.Execution.Id", "error.$": "$.error"})
    );

    // OpenCircuit: non-retryable errors end the execution without touching anything.
    let catches: Vec<(Vec<&str>, &str)> = array(state("OpenCircuit"), "Catch")
        .iter()
        .map(|c| (error_names(c), c["Next"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        catches,
        vec![
            (vec!["InvalidEvent"], "IgnoreInvalidEvent"),
            (
                vec!["MappingNotFound", "SeveralMappings"],
                "NoSingleMapping"
            ),
            (vec!["States.ALL"], "Failsafe"),
        ]
    );
    // The failsafe is retried on anything, then gives up loudly.
    let failsafe_retry = array(state("Failsafe"), "Retry");
    assert_eq!(failsafe_retry.len(), 1);
    assert_eq!(error_names(&failsafe_retry[0]), vec!["States.ALL"]);
    assert_eq!(failsafe_retry[0]["MaxAttempts"], 5);

    for (name, variable, expected, default) in CHOICES {
        let choice = state(name);
        assert_eq!(choice["Type"], "Choice", "{name}");
        assert_eq!(choice["Default"], default, "{name}");
        let (branches, variables) = choice_branches(choice);
        let expected: BTreeMap<String, String> = expected
            .iter()
            .map(|(v, n)| (v.to_string(), n.to_string()))
            .collect();
        assert_eq!(branches, expected, "{name}'s branches");
        assert_eq!(variables, BTreeSet::from([variable.to_string()]), "{name}");
    }

    let wait = state("WaitBeforeProbe");
    assert_eq!(wait["Type"], "Wait");
    assert_eq!(wait["SecondsPath"], "$.circuit.wait_seconds");
    assert_eq!(wait["Next"], "Probe");
    let wait = state("WaitForBacklog");
    assert_eq!(wait["Type"], "Wait");
    assert_eq!(wait["Next"], "CheckBacklog");
    let wait = state("CoolDown");
    assert_eq!(wait["Type"], "Wait");
    assert_eq!(wait["SecondsPath"], "$.circuit.wait_seconds");
    assert_eq!(wait["Next"], "RearmAlarm");
    let wait = state("WaitOutAlarmWindow");
    assert_eq!(wait["Type"], "Wait");
    assert_eq!(wait["SecondsPath"], "$.circuit.wait_seconds");
    assert_eq!(wait["Next"], "RearmAlarm");
    let wait = state("HoldOpen");
    assert_eq!(wait["Type"], "Wait");
    assert_eq!(wait["SecondsPath"], "$.circuit.wait_seconds");
    assert_eq!(wait["Next"], "CheckHold");
    let wait = state("WaitRampStep");
    assert_eq!(wait["Type"], "Wait");
    assert_eq!(wait["SecondsPath"], "$.circuit.wait_seconds");
    assert_eq!(wait["Next"], "RampUp");

    // A step that finds the circuit in someone else's hands (NotOwner) ends quietly: the
    // failsafe would act on a circuit that is not this execution's.
    for (name, _, _) in TASKS {
        if matches!(name, "OpenCircuit" | "Failsafe" | "RearmAlarm") {
            continue;
        }
        let first = &array(state(name), "Catch")[0];
        assert_eq!(error_names(first), vec!["NotOwner"], "{name}");
        assert_eq!(first["Next"], "CircuitClosedElsewhere", "{name}");
    }

    let unexpected = state("UnexpectedState");
    assert_eq!(unexpected["Type"], "Pass");
    assert_eq!(unexpected["ResultPath"], "$.error");
    assert_eq!(unexpected["Result"]["Error"], "UnexpectedState");
    assert_eq!(unexpected["Next"], "Failsafe");

    for name in SUCCEEDS {
        assert_eq!(state(name)["Type"], "Succeed", "{name}");
    }
    for (name, error) in FAILS {
        assert_eq!(state(name)["Type"], "Fail", "{name}");
        assert_eq!(state(name)["Error"], error, "{name}");
        assert!(
            state(name)["Cause"].as_str().is_some(),
            "{name} has a Cause"
        );
    }

    let named: BTreeSet<&str> = TASKS
        .iter()
        .map(|t| t.0)
        .chain(CHOICES.iter().map(|c| c.0))
        .chain(SUCCEEDS)
        .chain(FAILS.iter().map(|f| f.0))
        .chain([
            "WaitBeforeProbe",
            "WaitForBacklog",
            "CoolDown",
            "HoldOpen",
            "WaitOutAlarmWindow",
            "WaitRampStep",
            "UnexpectedState",
        ])
        .collect();
    let actual: BTreeSet<&str> = states.keys().map(String::as_str).collect();
    assert_eq!(
        actual, named,
        "the workflow has exactly the contract's states"
    );
}

/// Applies `change` to a copy of the definition and returns its structural problems.
fn problems_after(change: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut def = definition();
    change(&mut def);
    structure_problems(&def)
}

#[test]
fn structure_check_catches_broken_workflows() {
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "Task Probe has no Catch for States.ALL",
            problems_after(|d| {
                d["States"]["Probe"]
                    .as_object_mut()
                    .unwrap()
                    .remove("Catch");
            }),
        ),
        (
            "Task CloseCircuit has no Retry",
            problems_after(|d| {
                d["States"]["CloseCircuit"]
                    .as_object_mut()
                    .unwrap()
                    .remove("Retry");
            }),
        ),
        (
            "Task GiveUp retries InvalidEvent",
            problems_after(|d| {
                d["States"]["GiveUp"]["Retry"][0]["ErrorEquals"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("InvalidEvent"));
            }),
        ),
        (
            "Task NextBackoff catches States.ALL, but not to Failsafe",
            problems_after(|d| {
                d["States"]["NextBackoff"]["Catch"][1]["Next"] = json!("CircuitClosed");
            }),
        ),
        (
            "Choice ProbeVerdict has no Default",
            problems_after(|d| {
                d["States"]["ProbeVerdict"]
                    .as_object_mut()
                    .unwrap()
                    .remove("Default");
            }),
        ),
        (
            "BackoffOrGiveUp goes to Failsafe without setting $.error",
            problems_after(|d| {
                d["States"]["BackoffOrGiveUp"]["Default"] = json!("Failsafe");
            }),
        ),
        (
            "WaitBeforeProbe goes to \"Prob\", which is not a state",
            problems_after(|d| {
                d["States"]["WaitBeforeProbe"]["Next"] = json!("Prob");
            }),
        ),
        (
            "Orphan is unreachable from OpenCircuit",
            problems_after(|d| {
                d["States"]["Orphan"] = json!({"Type": "Succeed"});
            }),
        ),
        (
            "UnexpectedState is unreachable",
            problems_after(|d| {
                for choice in [
                    "IsCircuitOpen",
                    "ProbeVerdict",
                    "BackoffOrGiveUp",
                    "BacklogSpread",
                    "StillHeld",
                    "SlowStartOrClose",
                    "RampVerdict",
                ] {
                    d["States"][choice]["Default"] = json!("CircuitClosed");
                    for rule in d["States"][choice]["Choices"].as_array_mut().unwrap() {
                        if rule["Next"] == "UnexpectedState" {
                            rule["Next"] = json!("CircuitClosed");
                        }
                    }
                }
            }),
        ),
    ];
    for (expected, problems) in cases {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "expected a problem containing {expected:?}, got {problems:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// (a) asl-validator
// ---------------------------------------------------------------------------------------

#[test]
#[ignore = "needs the local toolchain (npm); run with `cargo xtask test`"]
fn workflow_passes_asl_validator() -> Result<()> {
    let definition = asl::substitute(
        &asl::definition_text()?,
        &[("ControllerFunctionArn", asl::EXAMPLE_CONTROLLER_ARN)],
    );
    ensure!(
        !definition.contains("${"),
        "the definition uses a substitution this test does not know"
    );
    asl::validate(&definition)?;

    // The validator does reject a broken definition (so the check above can fail).
    let mut broken: Value = serde_json::from_str(&definition)?;
    broken["States"]["WaitBeforeProbe"]["SecondsPath"] = json!("circuit.wait_seconds");
    broken["States"]["Probe"]["Type"] = json!("Tusk");
    let err = asl::validate(&broken.to_string()).expect_err("a broken definition is rejected");
    ensure!(
        err.to_string().contains("invalid"),
        "unexpected validator failure: {err:#}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// (c) IAM: nothing that changes things may apply to everything
// ---------------------------------------------------------------------------------------

/// Actions that only read; everything else counts as mutating.
const READ_ONLY: [&str; 7] = [
    "lambda:ListEventSourceMappings",
    "lambda:GetEventSourceMapping",
    "lambda:GetFunctionConfiguration",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "cloudwatch:GetMetricStatistics",
    "dynamodb:GetItem",
];

/// Managed policies SAM attaches on its own (CloudWatch Logs for the function's logs).
const ACCEPTED_MANAGED_POLICIES: [&str; 1] =
    ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"];

/// Stands for a value only known at deploy time (Ref, GetAtt, ...): a concrete resource.
const RESOLVED: &str = "<resolved at deploy time>";

/// The literal strings a resource value can take, intrinsics resolved as far as possible.
fn render(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(render).collect(),
        Value::Object(map) if map.len() == 1 => {
            let (function, args) = map.iter().next().expect("one entry");
            match function.as_str() {
                "Ref" if args == "AWS::NoValue" => vec![],
                "Fn::Sub" => {
                    let text = args
                        .as_str()
                        .or_else(|| args.get(0).and_then(Value::as_str))
                        .unwrap_or(RESOLVED);
                    vec![render_sub(text)]
                }
                "Fn::If" => array_items(args).iter().skip(1).flat_map(render).collect(),
                "Fn::Join" => {
                    let sep = args.get(0).and_then(Value::as_str).unwrap_or("");
                    let mut joined = vec![String::new()];
                    for (i, part) in array_items(args.get(1).unwrap_or(&Value::Null))
                        .iter()
                        .enumerate()
                    {
                        let options = render(part);
                        joined = joined
                            .iter()
                            .flat_map(|head| {
                                options.iter().map(move |o| {
                                    if i == 0 {
                                        o.clone()
                                    } else {
                                        format!("{head}{sep}{o}")
                                    }
                                })
                            })
                            .collect();
                    }
                    joined
                }
                _ => vec![RESOLVED.to_string()],
            }
        }
        _ => vec![RESOLVED.to_string()],
    }
}

fn array_items(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// `${AWS::Partition}` and friends become example values; `${Anything}` else stands for a
/// concrete name.
fn render_sub(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 2..start + len];
        out.push_str(match name {
            "AWS::Partition" => "aws",
            "AWS::Region" => "us-east-1",
            "AWS::AccountId" => "123456789012",
            other => other,
        });
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

/// Why `resource` is too broad for a mutating action, if it is.
fn too_broad(resource: &str, has_condition: bool) -> Option<&'static str> {
    if !resource.contains('*') {
        return None;
    }
    if resource == "*" {
        return Some("Resource \"*\"");
    }
    if !resource.starts_with("arn:") {
        return Some("a wildcard resource");
    }
    let parts: Vec<&str> = resource.splitn(6, ':').collect();
    let [_, partition, service, region, account, rest] = parts[..] else {
        return Some("a wildcard ARN for a whole service");
    };
    if [partition, service, region, account]
        .iter()
        .any(|p| p.contains('*'))
    {
        return Some("a wildcard partition, service, region or account");
    }
    let segments: Vec<&str> = rest.split([':', '/']).collect();
    if segments.iter().any(|s| s.contains('*') && *s != "*") {
        return Some("a partial-name wildcard");
    }
    match segments.iter().position(|s| *s == "*") {
        Some(0) => Some("every resource of the service"),
        Some(1) if !has_condition => Some("every resource of a type, without a condition"),
        _ => None,
    }
}

/// Every policy statement in a template (function and state machine policies, roles,
/// resource policies), with where it is.
fn statements(value: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            if let Some(list) = map.get("Statement") {
                let items = match list {
                    Value::Array(items) => items.clone(),
                    other => vec![other.clone()],
                };
                for (i, statement) in items.into_iter().enumerate() {
                    let sid = statement
                        .get("Sid")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or(i.to_string());
                    out.push((format!("{path}.Statement[{sid}]"), statement));
                }
            }
            for (key, inner) in map {
                if key != "Statement" {
                    statements(inner, &format!("{path}.{key}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                statements(inner, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => vec![],
    }
}

/// Every grant in `template` of a mutating action on too broad a resource.
fn iam_findings(template: &Value) -> Vec<String> {
    let mut found = Vec::new();
    statements(template, "", &mut found);
    let mut findings = Vec::new();
    for (at, statement) in found {
        if statement.get("Effect").and_then(Value::as_str) != Some("Allow") {
            continue;
        }
        if statement.get("Resource").is_none() && statement.get("NotResource").is_none() {
            continue; // a trust policy: it grants assuming the role, to a principal
        }
        for not in ["NotAction", "NotResource"] {
            if statement.get(not).is_some() {
                findings.push(format!("{at}: {not} grants too much"));
            }
        }
        let condition = statement.get("Condition").and_then(Value::as_object);
        let has_condition = condition.is_some_and(|c| !c.is_empty());
        let namespace_condition = condition
            .and_then(|c| c.get("StringEquals"))
            .and_then(Value::as_object)
            .is_some_and(|c| {
                c.keys()
                    .any(|k| k.eq_ignore_ascii_case("cloudwatch:namespace"))
            });
        let resources = render(statement.get("Resource").unwrap_or(&Value::Null));
        for action in strings(statement.get("Action")) {
            if action.contains('*') {
                findings.push(format!("{at}: wildcard action {action}"));
                continue;
            }
            if READ_ONLY.iter().any(|r| r.eq_ignore_ascii_case(&action)) {
                continue;
            }
            let put_metrics = action.eq_ignore_ascii_case("cloudwatch:PutMetricData");
            for resource in &resources {
                if put_metrics && resource == "*" {
                    if !namespace_condition {
                        findings.push(format!(
                            "{at}: {action} on \"*\" without a StringEquals cloudwatch:namespace condition"
                        ));
                    }
                    continue;
                }
                if let Some(why) = too_broad(resource, has_condition) {
                    findings.push(format!("{at}: {action} on {resource}: {why}"));
                }
            }
        }
    }
    findings
}

/// Policies a SAM resource lists that are not inline documents (SAM policy templates and
/// managed policies grant what this check cannot see), and managed policies anywhere.
fn opaque_policies(template: &Value) -> Vec<String> {
    let mut findings = Vec::new();
    let resources = template
        .get("Resources")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (name, resource) in &resources {
        let properties = &resource["Properties"];
        match properties.get("Policies") {
            Some(Value::Array(policies)) => {
                for policy in policies {
                    let inline =
                        policy.get("Statement").is_some() || policy.get("PolicyDocument").is_some();
                    if !inline {
                        findings.push(format!("{name}: policy {policy} is not inline"));
                    }
                }
            }
            Some(Value::String(policy)) => {
                findings.push(format!("{name}: policy {policy} is not inline"))
            }
            _ => {}
        }
        let managed_arns = properties.get("ManagedPolicyArns").map(render);
        for managed in managed_arns.unwrap_or_default() {
            if !ACCEPTED_MANAGED_POLICIES.contains(&managed.as_str()) {
                findings.push(format!("{name}: managed policy {managed}"));
            }
        }
    }
    findings
}

#[test]
fn iam_check_catches_broad_grants() {
    let template = |statement: Value| {
        json!({"Resources": {"R": {"Properties": {
        "Policies": [{"Statement": [statement]}]}}}})
    };
    let broad = [
        json!({"Effect": "Allow", "Action": "sqs:DeleteMessage", "Resource": "*"}),
        json!({"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem"],
               "Resource": ["arn:aws:dynamodb:us-east-1:123456789012:table/t", "*"]}),
        json!({"Effect": "Allow", "Action": "sqs:DeleteMessage", "Resource": "arn:aws:sqs:*"}),
        json!({"Effect": "Allow", "Action": "sqs:DeleteMessage",
               "Resource": {"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:*"}}),
        json!({"Effect": "Allow", "Action": "lambda:InvokeFunction",
               "Resource": {"Fn::Sub": "arn:${AWS::Partition}:lambda:*:${AWS::AccountId}:function:f"}}),
        json!({"Effect": "Allow", "Action": "lambda:InvokeFunction",
               "Resource": {"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${Name}*"}}),
        json!({"Effect": "Allow", "Action": "lambda:UpdateEventSourceMapping",
               "Resource": {"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:event-source-mapping:*"}}),
        json!({"Effect": "Allow", "Action": "events:PutEvents",
               "Resource": {"Fn::If": ["C", {"Fn::GetAtt": ["Bus", "Arn"]}, "*"]}}),
        json!({"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"}),
        json!({"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
               "Condition": {"StringLike": {"cloudwatch:namespace": "*"}}}),
        json!({"Effect": "Allow", "Action": "sqs:*", "Resource": {"Ref": "QueueArn"}}),
        json!({"Effect": "Allow", "NotAction": "iam:*", "Resource": {"Ref": "QueueArn"}}),
    ];
    for statement in broad {
        let findings = iam_findings(&template(statement.clone()));
        assert!(!findings.is_empty(), "not flagged: {statement}");
    }
    let fine = [
        json!({"Effect": "Allow", "Action": "lambda:ListEventSourceMappings", "Resource": "*"}),
        json!({"Effect": "Allow", "Action": "sqs:DeleteMessage", "Resource": {"Ref": "QueueArn"}}),
        json!({"Effect": "Allow", "Action": "lambda:InvokeFunction",
               "Resource": [{"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${Name}:*"},
                            {"Fn::If": ["C", {"Fn::GetAtt": ["F", "Arn"]}, {"Ref": "AWS::NoValue"}]}]}),
        json!({"Effect": "Allow", "Action": "lambda:UpdateEventSourceMapping",
               "Resource": {"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:event-source-mapping:*"},
               "Condition": {"ArnLike": {"lambda:FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:f"}}}),
        json!({"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
               "Condition": {"StringEquals": {"cloudwatch:namespace": {"Ref": "Ns"}}}}),
        json!({"Effect": "Deny", "Action": "*", "Resource": "*"}),
        json!({"Effect": "Allow", "Action": "sts:AssumeRole",
               "Principal": {"Service": "lambda.amazonaws.com"}}),
    ];
    for statement in fine {
        let findings = iam_findings(&template(statement.clone()));
        assert!(findings.is_empty(), "flagged {statement}: {findings:?}");
    }
    let with_template_policy = json!({"Resources": {"F": {"Properties": {
        "Policies": [{"SQSPollerPolicy": {"QueueName": "q"}}, "AmazonSQSFullAccess"]}}}});
    assert_eq!(opaque_policies(&with_template_policy).len(), 2);
}

/// The template as JSON, short-form tags decoded (`raw`), and after the SAM transform
/// (`transformed`), both by the venv's cfn-lint.
struct DecodedTemplate {
    raw: Value,
    transformed: Value,
}

const DECODE_SCRIPT: &str = r#"
import copy, json, sys
from cfnlint.decode import decode
from cfnlint.template.transforms._sam import Transform

path = sys.argv[1]
template, matches = decode(path)
if matches:
    sys.exit("could not decode %s: %s" % (path, matches))
sam = Transform(path, copy.deepcopy(template), "us-east-1")
matches = sam.transform_template()
if matches:
    sys.exit("the SAM transform failed: %s" % matches)
json.dump({"raw": template, "transformed": sam.template()}, sys.stdout, default=str)
"#;

fn decoded_template() -> Result<DecodedTemplate> {
    let path = paths::root().join("infra/template.yaml");
    let out = tools::ensure()?
        .command("python")
        .arg("-c")
        .arg(DECODE_SCRIPT)
        .arg(&path)
        .output()
        .context("running the venv's python")?;
    if !out.status.success() {
        bail!(
            "decoding {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut both: Value = serde_json::from_slice(&out.stdout).context("decoder output")?;
    Ok(DecodedTemplate {
        raw: both["raw"].take(),
        transformed: both["transformed"].take(),
    })
}

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn template_grants_nothing_mutating_on_everything() -> Result<()> {
    let template = decoded_template()?;
    let mut findings = iam_findings(&template.raw);
    findings.extend(opaque_policies(&template.raw));
    // What SAM generates from it (roles, the EventBridge rule's role) must hold too.
    findings.extend(iam_findings(&template.transformed));
    findings.extend(opaque_policies(&template.transformed));
    ensure!(
        findings.is_empty(),
        "too broad grants in infra/template.yaml:\n  {}",
        findings.join("\n  ")
    );

    // The scoping that makes the two wildcard-resource grants acceptable is present.
    let mut found = Vec::new();
    statements(&template.raw, "", &mut found);
    let by_action = |action: &str| -> Vec<Value> {
        found
            .iter()
            .filter(|(_, s)| strings(s.get("Action")).iter().any(|a| a == action))
            .map(|(_, s)| s.clone())
            .collect()
    };
    let update = by_action("lambda:UpdateEventSourceMapping");
    ensure!(update.len() == 1, "one statement grants the mapping update");
    let arns = render(&update[0]["Condition"]["ArnLike"]["lambda:FunctionArn"]);
    ensure!(
        arns == [
            "arn:aws:lambda:us-east-1:123456789012:function:ConsumerFunctionName",
            "arn:aws:lambda:us-east-1:123456789012:function:ConsumerFunctionName:*",
            // The rejitter's own function (its ARN is known only at deploy time).
            "<resolved at deploy time>",
        ],
        "the mapping update is scoped to the consumer's and the rejitter's mappings: {arns:?}"
    );
    let put = by_action("cloudwatch:PutMetricData");
    ensure!(
        put.len() == 1
            && put[0]["Condition"]["StringEquals"]["cloudwatch:namespace"]
                == json!({"Ref": "MetricsNamespace"}),
        "PutMetricData is scoped to MetricsNamespace: {put:?}"
    );
    Ok(())
}

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn template_wires_the_workflow_and_the_controller() -> Result<()> {
    let template = decoded_template()?.raw;
    let resources = &template["Resources"];

    // The state machine gets every substitution its definition uses.
    let machine = &resources["CircuitBreakerStateMachine"]["Properties"];
    assert_eq!(
        machine["DefinitionUri"],
        "../statemachine/circuit-breaker.asl.json"
    );
    assert_eq!(machine["Type"], "STANDARD");
    let substitutions: BTreeSet<String> = machine["DefinitionSubstitutions"]
        .as_object()
        .context("DefinitionSubstitutions")?
        .keys()
        .cloned()
        .collect();
    let text = asl::definition_text()?;
    let used: BTreeSet<String> = text
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string()))
        .collect();
    assert_eq!(
        used, substitutions,
        "definition placeholders vs substitutions"
    );

    // The controller gets exactly the contract's environment...
    let env: BTreeSet<String> = resources["ControllerFunction"]["Properties"]["Environment"]
        ["Variables"]
        .as_object()
        .context("controller environment")?
        .keys()
        .cloned()
        .collect();
    let expected: BTreeSet<String> = [
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
        "RETENTION_MARGIN_SECONDS",
        "SETTLE_TIMEOUT_SECONDS",
        "REJITTER_FUNCTION_NAME",
        "REJITTER_MAX_SECONDS",
        "MAX_CIRCUITS_PER_HOUR",
        "SLOW_START_SECONDS",
        "SLOW_START_CONCURRENCY",
        "ALARM_SIGNAL",
        "ALARM_FAILURE_PERCENT",
        "ALARM_PERIOD_SECONDS",
        "ALARM_HANG_PERIODS",
        "RUST_LOG",
    ]
    .map(String::from)
    .into();
    assert_eq!(env, expected);

    // ...and every variable it sets is one the controller's configuration reads, and every
    // variable the configuration requires is set.
    let config_path = paths::root().join("controller/src/core/config.rs");
    let config = std::fs::read_to_string(&config_path)?;
    let read = |methods: &[&str]| -> BTreeSet<String> {
        methods
            .iter()
            .flat_map(|m| {
                let needle = format!("env.{m}(\"");
                config
                    .match_indices(&needle)
                    .filter_map(|(i, _)| {
                        let rest = &config[i + needle.len()..];
                        rest.split_once('"').map(|(name, _)| name.to_string())
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let required = read(&["required"]);
    let all = read(&["required", "optional", "or", "seconds", "policy"]);
    ensure!(
        required.len() >= 4,
        "found no env.required(\"...\") reads in {}; update this test to how the \
         configuration reads its variables",
        config_path.display()
    );
    let missing: Vec<_> = required.difference(&env).collect();
    ensure!(missing.is_empty(), "required but not set: {missing:?}");
    let unknown: Vec<_> = env
        .iter()
        .filter(|v| *v != "RUST_LOG" && !all.contains(*v))
        .collect();
    ensure!(
        unknown.is_empty(),
        "set but not read by the controller: {unknown:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// (d) cfn-lint
// ---------------------------------------------------------------------------------------

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn templates_pass_cfn_lint() -> Result<()> {
    let mut templates: Vec<_> = std::fs::read_dir(paths::root().join("infra"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    templates.sort();
    ensure!(
        templates.iter().any(|t| t.ends_with("template.yaml")),
        "infra/template.yaml is missing"
    );
    let out = tools::ensure()?
        .command("cfn-lint")
        .args(&templates)
        .output()
        .context("running cfn-lint")?;
    ensure!(
        out.status.success(),
        "cfn-lint {templates:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// (e) Deploy-time refusals: RejitterEnabled with a FIFO queue, MinDelaySeconds above
//     MaxDelaySeconds
// ---------------------------------------------------------------------------------------
//
// The template refuses both through conditions that bring in a `Refuse*` resource whose
// Fn::FindInMap cannot resolve (see its Mappings). MiniStack does not evaluate Fn::Split or
// Fn::Join in conditions (it takes both checks for false), so no local stack can show a
// refusal: these tests evaluate the template the way CloudFormation documents its functions.

/// A value of the template language: a string, a list of strings, or a condition's verdict.
#[derive(Debug, Clone, PartialEq)]
enum Cfn {
    Str(String),
    /// Shared: a memoized list is handed out without copying.
    List(Rc<Vec<String>>),
    Bool(bool),
}

/// Evaluates conditions and parameter-only values of a template for given parameter values,
/// with the documented semantics of Ref, Condition, Fn::Equals, Fn::And, Fn::Or, Fn::Not,
/// Fn::Join, Fn::Split, Fn::Select and Fn::FindInMap, and where the documentation allows
/// them (a literal delimiter; Ref or Fn::FindInMap as an index or a mapping key). Anything
/// else is an error, so a check rewritten with other functions fails these tests instead of
/// being misjudged. Errors read as CloudFormation words them ("Template error: ...").
struct Evaluator<'t> {
    template: &'t Value,
    params: HashMap<String, String>,
    /// The parameters each node reads, through conditions too, by node address.
    reads: HashMap<usize, Rc<Vec<String>>>,
    /// Large results of Fn::Join, Fn::Split and Fn::FindInMap, by node address and the
    /// values of the parameters the node reads.
    memo: HashMap<(usize, Vec<String>), Cfn>,
    /// Nodes whose results came out small: not worth a memo lookup.
    small: BTreeSet<usize>,
}

type Evaluated = std::result::Result<Cfn, String>;

impl<'t> Evaluator<'t> {
    /// Every parameter at its default; `set` the others.
    fn new(template: &'t Value) -> Evaluator<'t> {
        let params = template["Parameters"]
            .as_object()
            .map(|all| {
                all.iter()
                    .filter_map(|(name, p)| {
                        let default = match p.get("Default")? {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        Some((name.clone(), default))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Evaluator {
            template,
            params,
            reads: HashMap::new(),
            memo: HashMap::new(),
            small: BTreeSet::new(),
        }
    }

    fn set(&mut self, name: &str, value: impl Into<String>) {
        self.params.insert(name.to_string(), value.into());
    }

    fn condition(&mut self, name: &str) -> std::result::Result<bool, String> {
        match self.eval(&self.template["Conditions"][name])? {
            Cfn::Bool(b) => Ok(b),
            other => Err(format!("condition {name} is not true or false: {other:?}")),
        }
    }

    /// The parameters `node` reads.
    fn reads(&mut self, node: &'t Value) -> Rc<Vec<String>> {
        let key = node as *const Value as usize;
        if let Some(found) = self.reads.get(&key) {
            return found.clone();
        }
        let mut out = BTreeSet::new();
        match node {
            Value::Array(items) => {
                for item in items {
                    out.extend(self.reads(item).iter().cloned());
                }
            }
            Value::Object(map) => {
                for (function, args) in map {
                    match (function.as_str(), args) {
                        ("Ref", Value::String(name)) => {
                            out.insert(name.clone());
                        }
                        ("Condition", Value::String(name)) => out.extend(
                            self.reads(&self.template["Conditions"][name.as_str()])
                                .iter()
                                .cloned(),
                        ),
                        _ => out.extend(self.reads(args).iter().cloned()),
                    }
                }
            }
            _ => {}
        }
        let out = Rc::new(out.into_iter().collect::<Vec<String>>());
        self.reads.insert(key, Rc::clone(&out));
        out
    }

    fn eval(&mut self, node: &'t Value) -> Evaluated {
        let (function, args) = match node {
            Value::String(s) => return Ok(Cfn::Str(s.clone())),
            Value::Number(n) => return Ok(Cfn::Str(n.to_string())),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(self.string(item)?);
                }
                return Ok(Cfn::List(Rc::new(out)));
            }
            Value::Object(map) if map.len() == 1 => map.iter().next().expect("one entry"),
            other => return Err(format!("not a value of the template language: {other}")),
        };
        let args_list = args.as_array().map(Vec::as_slice).unwrap_or(&[]);
        let address = node as *const Value as usize;
        let memoized = matches!(
            function.as_str(),
            "Fn::Join" | "Fn::Split" | "Fn::FindInMap"
        ) && !self.small.contains(&address);
        let key = if memoized {
            let values = self
                .reads(node)
                .iter()
                .map(|p| self.params.get(p).cloned().unwrap_or_default())
                .collect();
            let key = (address, values);
            if let Some(hit) = self.memo.get(&key) {
                return Ok(hit.clone());
            }
            Some(key)
        } else {
            None
        };
        let value = match (function.as_str(), args_list) {
            ("Ref", _) => {
                let name = args.as_str().unwrap_or_default();
                match self.params.get(name) {
                    Some(v) => Cfn::Str(v.clone()),
                    None => return Err(format!("Ref to {name}, which has no value here")),
                }
            }
            ("Condition", _) => {
                let name = args.as_str().unwrap_or_default();
                Cfn::Bool(self.condition(name)?)
            }
            ("Fn::Equals", [a, b]) => Cfn::Bool(self.string(a)? == self.string(b)?),
            ("Fn::And" | "Fn::Or", conditions) if (2..=10).contains(&conditions.len()) => {
                let mut verdicts = Vec::new();
                for c in conditions {
                    verdicts.push(self.boolean(c)?);
                }
                Cfn::Bool(if function == "Fn::And" {
                    verdicts.iter().all(|v| *v)
                } else {
                    verdicts.iter().any(|v| *v)
                })
            }
            ("Fn::Not", [c]) => Cfn::Bool(!self.boolean(c)?),
            ("Fn::Join", [Value::String(delimiter), list]) => {
                Cfn::Str(self.list(list)?.join(delimiter))
            }
            ("Fn::Split", [Value::String(delimiter), source]) if !delimiter.is_empty() => {
                // Consecutive delimiters give empty strings, a trailing one a trailing empty
                // string ("a||c|" is ["a", "", "c", ""]): as str::split.
                Cfn::List(Rc::new(
                    self.string(source)?
                        .split(delimiter.as_str())
                        .map(String::from)
                        .collect(),
                ))
            }
            ("Fn::Select", [index, list]) => {
                self.literal_ref_or_findinmap(index, "a Fn::Select index")?;
                let index = self.string(index)?;
                let list = self.list(list)?;
                match index.parse::<usize>().ok().and_then(|i| list.get(i)) {
                    Some(item) => Cfn::Str(item.clone()),
                    None => {
                        return Err(format!(
                            "Template error: Fn::Select cannot select nonexistent value at \
                             index {index}"
                        ))
                    }
                }
            }
            ("Fn::FindInMap", [map, top, second]) => {
                let mut keys = Vec::new();
                for key in [map, top, second] {
                    self.literal_ref_or_findinmap(key, "a Fn::FindInMap argument")?;
                    keys.push(self.string(key)?);
                }
                match &self.template["Mappings"][&keys[0]][&keys[1]][&keys[2]] {
                    Value::String(s) => Cfn::Str(s.clone()),
                    Value::Array(items) => Cfn::List(Rc::new(
                        items
                            .iter()
                            .map(|i| i.as_str().unwrap_or_default().to_string())
                            .collect(),
                    )),
                    _ => {
                        return Err(format!(
                            "Template error: Unable to get mapping for {}::{}::{}",
                            keys[0], keys[1], keys[2]
                        ))
                    }
                }
            }
            _ => return Err(format!("not evaluated here: {function} {args}")),
        };
        if let Some(key) = key {
            let large = match &value {
                Cfn::Str(s) => s.len() > 64,
                Cfn::List(items) => items.len() > 8,
                Cfn::Bool(_) => false,
            };
            if large {
                self.memo.insert(key, value.clone());
            } else {
                self.small.insert(address);
            }
        }
        Ok(value)
    }

    fn string(&mut self, node: &'t Value) -> std::result::Result<String, String> {
        match self.eval(node)? {
            Cfn::Str(s) => Ok(s),
            other => Err(format!("expected a string, got {other:?} from {node}")),
        }
    }

    fn list(&mut self, node: &'t Value) -> std::result::Result<Rc<Vec<String>>, String> {
        match self.eval(node)? {
            Cfn::List(items) => Ok(items),
            other => Err(format!("expected a list, got {other:?} from {node}")),
        }
    }

    fn boolean(&mut self, node: &'t Value) -> std::result::Result<bool, String> {
        match self.eval(node)? {
            Cfn::Bool(b) => Ok(b),
            other => Err(format!("expected a condition, got {other:?} from {node}")),
        }
    }

    /// CloudFormation accepts only a literal, Ref or Fn::FindInMap as a Fn::Select index or
    /// a Fn::FindInMap argument.
    fn literal_ref_or_findinmap(
        &self,
        node: &Value,
        what: &str,
    ) -> std::result::Result<(), String> {
        match node {
            Value::String(_) | Value::Number(_) => Ok(()),
            Value::Object(map) if map.contains_key("Ref") || map.contains_key("Fn::FindInMap") => {
                Ok(())
            }
            other => Err(format!(
                "CloudFormation refuses {other} as {what}: only a literal, Ref or Fn::FindInMap"
            )),
        }
    }

    /// The errors the `Refuse*` resources would fail the change set with: one for each
    /// whose condition holds. A `Refuse*` resource that would resolve is an error.
    fn refusals(&mut self) -> std::result::Result<Vec<String>, String> {
        let mut out = Vec::new();
        let resources = self.template["Resources"]
            .as_object()
            .ok_or("the template has no Resources")?;
        for (name, resource) in resources {
            if !name.starts_with("Refuse") {
                continue;
            }
            let condition = resource["Condition"].as_str().unwrap_or_default();
            if !self.condition(condition)? {
                continue;
            }
            match self.eval(&resource["Properties"]["Value"]) {
                Err(message) => out.push(message),
                Ok(value) => return Err(format!("{name} would be created, with {value:?}")),
            }
        }
        Ok(out)
    }
}

/// QueueIsFifo is exact because this pattern admits ".fifo" only at the end of the name.
const QUEUE_ARN_PATTERN: &str =
    r"^arn:aws[a-z-]*:sqs:[a-z0-9-]+:[0-9]{12}:[a-zA-Z0-9_-]{1,80}(\.fifo)?$";

/// A small deterministic generator (xorshift64*): the same queue ARNs on every run.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

/// Queue ARNs that QUEUE_ARN_PATTERN admits: hand-picked near misses, then generated ones
/// across partitions, name lengths and "fifo" look-alikes.
fn queue_arns() -> Vec<String> {
    let stem_80 = "q".repeat(80);
    let mut arns: Vec<String> = [
        "orders",
        "orders.fifo",
        "fifo",
        "my-fifo",
        "my_fifo",
        "fifo-orders",
        "FIFO",
        "Orders-FIFO",
        "x.fifo",
        "a",
        stem_80.as_str(),
        &format!("{stem_80}.fifo"),
    ]
    .iter()
    .map(|name| format!("arn:aws:sqs:us-east-1:123456789012:{name}"))
    .collect();
    arns.push("arn:aws-us-gov:sqs:us-gov-west-1:123456789012:orders.fifo".into());
    arns.push("arn:aws-cn:sqs:cn-north-1:123456789012:orders".into());

    const NAME_CHARS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    let mut rng = Xorshift(0x5eed_f1f0_cafe_0001);
    for _ in 0..2000 {
        let partition = rng.pick(&["aws", "aws-cn", "aws-us-gov", "aws-iso-b"]);
        let region = rng.pick(&["us-east-1", "cn-north-1", "us-gov-west-1", "eu-west-3"]);
        let account: String = (0..12)
            .map(|_| char::from(b'0' + rng.below(10) as u8))
            .collect();
        let mut stem: String = (0..1 + rng.below(70))
            .map(|_| char::from(NAME_CHARS.as_bytes()[rng.below(NAME_CHARS.len())]))
            .collect();
        stem.push_str(rng.pick(&["", "", "fifo", "-fifo", "_fifo", "FIFO"]));
        let suffix = rng.pick(&["", ".fifo"]);
        arns.push(format!(
            "arn:{partition}:sqs:{region}:{account}:{stem}{suffix}"
        ));
    }
    arns
}

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn rejitter_with_a_fifo_queue_is_refused_at_deploy_time() -> Result<()> {
    let template = decoded_template()?.raw;
    ensure!(
        template["Parameters"]["QueueArn"]["AllowedPattern"] == QUEUE_ARN_PATTERN,
        "QueueArn's AllowedPattern changed: check that QueueIsFifo is still exact, then \
         update QUEUE_ARN_PATTERN"
    );
    let mut ev = Evaluator::new(&template);
    let mut refused = 0;
    for arn in queue_arns() {
        for rejitter in ["true", "false"] {
            ev.set("QueueArn", arn.as_str());
            ev.set("RejitterEnabled", rejitter);
            let got = ev.refusals().map_err(anyhow::Error::msg)?;
            // The rejitter's own rule (rejitter/src/config.rs): the queue name ends in .fifo.
            let fifo = arn
                .rsplit(':')
                .next()
                .unwrap_or_default()
                .ends_with(".fifo");
            let expected: Vec<String> = if rejitter == "true" && fifo {
                refused += 1;
                vec![format!(
                    "Template error: Unable to get mapping for \
                     RejitterEnabledNeedsAStandardQueue::{arn}::SetRejitterEnabledToFalse"
                )]
            } else {
                vec![]
            };
            ensure!(
                got == expected,
                "QueueArn={arn} RejitterEnabled={rejitter}: refused with {got:?}, expected \
                 {expected:?}"
            );
        }
    }
    ensure!(refused > 500, "too few FIFO cases: {refused}");
    Ok(())
}

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn min_delay_above_max_delay_is_refused_at_deploy_time() -> Result<()> {
    let template = decoded_template()?.raw;

    // The table the check reads: word n spells n + 1 in binary, a = 1 ... j = 512.
    let words: Vec<String> = template["Mappings"]["SecondsInBinaryLetters"]["OneTo901"]["Letters"]
        .as_str()
        .context("Mappings.SecondsInBinaryLetters.OneTo901.Letters")?
        .split(' ')
        .map(String::from)
        .collect();
    let spelled = |n: usize| -> String {
        (0..10)
            .rev()
            .filter(|bit| n >> bit & 1 == 1)
            .map(|bit| char::from(b'a' + bit as u8))
            .collect()
    };
    ensure!(words.len() == 901, "{} words, not 901", words.len());
    for (n, word) in words.iter().enumerate() {
        ensure!(
            *word == spelled(n + 1),
            "word {n} is {word:?}, not {:?} ({} in binary letters)",
            spelled(n + 1),
            n + 1
        );
    }

    // Every pair of whole numbers the parameters admit.
    let mut ev = Evaluator::new(&template);
    ev.set("QueueArn", "arn:aws:sqs:us-east-1:123456789012:orders");
    for max in 0..=900 {
        ev.set("MaxDelaySeconds", max.to_string());
        for min in 0..=900 {
            ev.set("MinDelaySeconds", min.to_string());
            let above = ev
                .condition("MinDelayAboveMax")
                .map_err(anyhow::Error::msg)?;
            ensure!(
                above == (min > max),
                "MinDelaySeconds={min} MaxDelaySeconds={max}: MinDelayAboveMax is {above}"
            );
        }
    }

    // What the deploy is refused with, with and without the rejitter.
    for (min, max) in [
        (1, 0),
        (600, 300),
        (900, 899),
        (900, 0),
        (0, 0),
        (0, 900),
        (450, 450),
    ] {
        for rejitter in ["true", "false"] {
            ev.set("RejitterEnabled", rejitter);
            ev.set("MinDelaySeconds", min.to_string());
            ev.set("MaxDelaySeconds", max.to_string());
            let got = ev.refusals().map_err(anyhow::Error::msg)?;
            let expected: Vec<String> = if min > max {
                vec![format!(
                    "Template error: Unable to get mapping for \
                     MinDelaySecondsMustNotExceedMaxDelaySeconds::{min}::{max}"
                )]
            } else {
                vec![]
            };
            ensure!(
                got == expected,
                "MinDelaySeconds={min} MaxDelaySeconds={max} RejitterEnabled={rejitter}: \
                 refused with {got:?}, expected {expected:?}"
            );
        }
    }
    Ok(())
}

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn refusals_can_only_fail_a_deploy() -> Result<()> {
    let template = decoded_template()?.raw;
    let resources = template["Resources"].as_object().context("Resources")?;
    let refusals: Vec<(&String, &Value)> = resources
        .iter()
        .filter(|(name, _)| name.starts_with("Refuse"))
        .collect();
    ensure!(
        refusals.len() == 2,
        "expected two Refuse* resources, found {}",
        refusals.len()
    );
    for (name, resource) in refusals {
        // Never created: behind a condition, its value a Fn::FindInMap keyed by a parameter
        // (with literal keys only, CloudFormation checks the lookup whatever the condition).
        ensure!(resource["Condition"].is_string(), "{name} has no Condition");
        ensure!(
            resource.get("DependsOn").is_none(),
            "{name} must depend on nothing"
        );
        let lookup = resource["Properties"]["Value"]["Fn::FindInMap"]
            .as_array()
            .with_context(|| format!("{name}'s Value is not a Fn::FindInMap"))?;
        ensure!(
            lookup[1..].iter().any(|k| k.get("Ref").is_some()),
            "{name}: a Fn::FindInMap with literal keys only is checked before conditions"
        );
        // The mapping cannot hold what it is looked up with: its keys are letters only,
        // never an ARN (colons) or a number.
        let map = lookup[0].as_str().context("mapping name")?;
        let mapping = template["Mappings"][map]
            .as_object()
            .with_context(|| format!("no mapping {map}"))?;
        for (key, attributes) in mapping {
            ensure!(
                key.chars().all(|c| c.is_ascii_alphabetic()),
                "mapping {map}: key {key:?} is not letters only"
            );
            for attribute in attributes.as_object().into_iter().flatten().map(|a| a.0) {
                ensure!(
                    attribute.chars().all(|c| c.is_ascii_alphabetic()),
                    "mapping {map}: attribute {attribute:?} is not letters only"
                );
            }
        }
        // Nothing refers to it.
        ensure!(
            !refers_to(&template, name),
            "{name} is referred to: it must stay out of every other resource's way"
        );
    }
    Ok(())
}

/// Whether anything in `value` refers to the resource `name` (Ref, Fn::GetAtt, DependsOn,
/// Fn::Sub).
fn refers_to(value: &Value, name: &str) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|v| refers_to(v, name)),
        Value::Object(map) => map.iter().any(|(key, v)| match (key.as_str(), v) {
            ("Ref", Value::String(target)) => target == name,
            ("Fn::GetAtt", Value::Array(parts)) => parts.first() == Some(&json!(name)),
            ("Fn::GetAtt", Value::String(target)) => target.split('.').next() == Some(name),
            ("DependsOn", Value::String(target)) => target == name,
            ("DependsOn", Value::Array(targets)) => targets.contains(&json!(name)),
            ("Fn::Sub", _) => {
                let text = v.as_str().or_else(|| v.get(0).and_then(Value::as_str));
                text.is_some_and(|t| {
                    t.contains(&format!("${{{name}}}")) || t.contains(&format!("${{{name}."))
                }) || refers_to(v, name)
            }
            _ => refers_to(v, name),
        }),
        _ => false,
    }
}

/// Runs MiniStack's own template checks and condition evaluator (the code its
/// CreateChangeSet runs) on the template: valid and refused parameter values, as JSON.
const MINISTACK_CONDITIONS_SCRIPT: &str = r#"
import json, sys
from cfnlint.decode import decode
from ministack.services.cloudformation import engine

template, matches = decode(sys.argv[1])
if matches:
    sys.exit("could not decode: %s" % matches)
template = json.loads(json.dumps(template, default=str))
engine._validate_template_limits(template)
engine._validate_template_statics(template)
out = {}
for case, values in json.loads(sys.argv[2]).items():
    params = {name: {"Value": value} for name, value in values.items()}
    conditions = engine._evaluate_conditions(template, params)
    out[case] = {name: conditions[name] for name in ("RejitterOnFifoQueue", "MinDelayAboveMax")}
json.dump(out, sys.stdout)
"#;

/// MiniStack cannot show a refusal, but must not break a valid deploy: its checks pass the
/// template and its evaluator, which does not evaluate Fn::Split or Fn::Join in conditions,
/// takes both checks for false (valid or not; see the report printed).
#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint and ministack); run with `cargo xtask test`"]
fn ministack_deploys_valid_stacks_with_the_refusals_in_place() -> Result<()> {
    let path = paths::root().join("infra/template.yaml");
    let base = json!({
        "AlarmArn": "", "HealthCheckFunctionName": "", "RejitterEnabled": "true",
        "QueueArn": "arn:aws:sqs:us-east-1:000000000000:orders",
        "MinDelaySeconds": "0", "MaxDelaySeconds": "900",
    });
    let with = |changes: Value| {
        let mut v = base.clone();
        for (k, x) in changes.as_object().expect("object") {
            v[k] = x.clone();
        }
        v
    };
    let cases = json!({
        "valid": base.clone(),
        "valid-close": with(json!({"MinDelaySeconds": "2", "MaxDelaySeconds": "10"})),
        "fifo": with(json!({"QueueArn": "arn:aws:sqs:us-east-1:000000000000:orders.fifo"})),
        "min-above-max": with(json!({"MinDelaySeconds": "600", "MaxDelaySeconds": "300"})),
    });
    let out = tools::ensure()?
        .command("python")
        .arg("-c")
        .arg(MINISTACK_CONDITIONS_SCRIPT)
        .arg(&path)
        .arg(cases.to_string())
        .output()
        .context("running the venv's python")?;
    ensure!(
        out.status.success(),
        "MiniStack's checks failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Value = serde_json::from_slice(&out.stdout).context("script output")?;
    eprintln!("MiniStack's verdicts (true refuses): {verdicts}");
    for case in ["valid", "valid-close"] {
        ensure!(
            verdicts[case] == json!({"RejitterOnFifoQueue": false, "MinDelayAboveMax": false}),
            "MiniStack would refuse the valid case {case}: {}",
            verdicts[case]
        );
    }
    Ok(())
}

/// Every object anywhere in `value` whose `Sid` is `sid`.
fn statements_with_sid<'a>(value: &'a Value, sid: &str, out: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            if map.get("Sid").and_then(Value::as_str) == Some(sid) {
                out.push(value);
            }
            map.values().for_each(|v| statements_with_sid(v, sid, out));
        }
        Value::Array(items) => items.iter().for_each(|v| statements_with_sid(v, sid, out)),
        _ => {}
    }
}

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn an_encrypted_queue_gets_exactly_its_keys_two_actions() -> Result<()> {
    let template = decoded_template()?.raw;
    let mut found = Vec::new();
    statements_with_sid(&template["Resources"], "UseTheQueuesKey", &mut found);
    // The controller (probe receive, fresh copies) and the rejitter (receive, re-send).
    ensure!(found.len() == 2, "two grants on the queue's key: {found:?}");
    for statement in found {
        ensure!(
            statement["Action"] == json!(["kms:Decrypt", "kms:GenerateDataKey"])
                && statement["Resource"] == json!({"Ref": "QueueKmsKeyArn"}),
            "exactly kms:Decrypt and kms:GenerateDataKey on QueueKmsKeyArn: {statement}"
        );
    }
    // Only with a key: each grant sits in an Fn::If on HasQueueKey.
    let text = std::fs::read_to_string(paths::root().join("infra/template.yaml"))?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let conditional = lines
        .windows(2)
        .filter(|w| w[0] == "- HasQueueKey" && w[1] == "- Sid: UseTheQueuesKey")
        .count();
    ensure!(
        conditional == 2,
        "each key grant is conditional on HasQueueKey"
    );
    Ok(())
}
