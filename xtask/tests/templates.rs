//! Checks of the breaker's deployable definitions: the Step Functions workflow
//! (`statemachine/circuit-breaker.asl.json`) and the SAM template (`infra/template.yaml`).
//!
//! The structural checks of the workflow and the self-tests of the IAM check are plain Rust
//! and always run. The rest needs the local toolchain (asl-validator from npm; cfn-lint,
//! PyYAML and MiniStack from the venv) and is `#[ignore]`d like the other toolchain tests.

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
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
    // The controller's role and the operator policy (an operator's close gives the consumer
    // back as every end does).
    let update = by_action("lambda:UpdateEventSourceMapping");
    ensure!(update.len() == 2, "two statements grant the mapping update");
    for statement in &update {
        let arns = render(&statement["Condition"]["ArnLike"]["lambda:FunctionArn"]);
        ensure!(
            arns == [
                "arn:aws:lambda:us-east-1:123456789012:function:ConsumerFunctionName",
                "arn:aws:lambda:us-east-1:123456789012:function:ConsumerFunctionName:*",
                // The rejitter's own function (its ARN is known only at deploy time).
                "<resolved at deploy time>",
            ],
            "the mapping update is scoped to the consumer's and the rejitter's mappings: {arns:?}"
        );
    }
    let put = by_action("cloudwatch:PutMetricData");
    ensure!(
        put.len() == 2
            && put
                .iter()
                .all(|p| p["Condition"]["StringEquals"]["cloudwatch:namespace"]
                    == json!({"Ref": "MetricsNamespace"})),
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
        "MIN_DELAY_SECONDS",
        "MAX_DELAY_SECONDS",
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
