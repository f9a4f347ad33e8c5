//! The breaker's Step Functions workflow (`statemachine/circuit-breaker.asl.json`): its
//! structure (`xtask::checks::workflow`), its contract with the controller (which step each
//! Task sends, what it retries and catches, where each Choice goes), and asl-validator.
//!
//! The structural and contract checks are plain Rust and always run; asl-validator needs npm
//! and is `#[ignore]`d like the other toolchain tests.

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use xtask::asl;
use xtask::checks::workflow::{array, choice_branches, error_names, structure_problems};

/// Errors a Task retries: Lambda service hiccups and the controller's retryable errors.
const RETRYABLE: [&str; 6] = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Transient",
    "MappingNotSettled",
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

#[test]
fn workflow_is_structurally_sound() {
    let problems = structure_problems(&definition());
    assert!(
        problems.is_empty(),
        "problems in the workflow:\n  {}",
        problems.join("\n  ")
    );
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
