//! IAM enough, and no more, by construction: every AWS operation each program can call is
//! read from its code (`support/aws_calls.rs`), and the template's roles, the operator's
//! managed policy and the documented operator policy must grant exactly those (plus the few
//! actions AWS itself performs with a role, listed below with why).
//!
//! Adding an SDK call to an adapter needs no list edited here: the test then names the
//! action, the function that calls it and the chain of calls that reaches it, and the role
//! (or policy) that lacks it.

#[path = "support/aws_calls.rs"]
mod aws_calls;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use xtask::{paths, tools};

/// Actions a role needs that no code of ours calls: AWS performs them with the role.
const LOGS: [&str; 2] = ["logs:CreateLogStream", "logs:PutLogEvents"];
/// SQS decrypts and encrypts with the caller's role, on an encrypted queue (QueueKmsKeyArn).
const QUEUE_KEY: [&str; 2] = ["kms:Decrypt", "kms:GenerateDataKey"];
/// An SQS event source mapping polls with its function's role.
const MAPPING_POLLS: [&str; 3] = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
];

/// One program: the folders whose code it is built from, and its entry point.
struct Program {
    dirs: &'static [&'static str],
    /// Files of those folders it does not contain.
    excluded: &'static str,
    entry: &'static str,
}

const CONTROLLER: Program = Program {
    dirs: &["controller/src"],
    // The operator command's code; the Lambda's entry point never reaches it.
    excluded: "controller/src/operator/",
    entry: "controller/src/main.rs",
};
const REJITTER: Program = Program {
    dirs: &["rejitter/src"],
    excluded: "-",
    entry: "rejitter/src/main.rs",
};
const OPERATOR: Program = Program {
    dirs: &["cli/src", "controller/src"],
    excluded: "-",
    entry: "cli/src/main.rs",
};

/// action -> the chain of calls that reaches it.
fn calls(program: &Program) -> Result<BTreeMap<String, String>> {
    let operations = aws_calls::sdk_operations()?;
    let functions: Vec<_> = aws_calls::functions(&operations, program.dirs)?
        .into_iter()
        .filter(|f| !f.file.starts_with(program.excluded))
        .collect();
    aws_calls::reachable(&functions, program.entry)
}

/// Both directions, in one message: what `granted` lacks, and what it grants that nobody
/// calls.
fn compare(
    who: &str,
    granted: &BTreeSet<String>,
    called: &BTreeMap<String, String>,
    implied: &[&str],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (action, chain) in called {
        if !granted.contains(action) {
            problems.push(format!("{who} lacks {action}, called by {chain}"));
        }
    }
    for action in implied {
        if !granted.contains(*action) {
            problems.push(format!("{who} lacks {action}, which AWS uses with it"));
        }
    }
    for action in granted {
        if !called.contains_key(action) && !implied.contains(&action.as_str()) {
            problems.push(format!("{who} grants {action}, which nobody calls"));
        }
    }
    problems
}

#[test]
fn the_calls_of_each_program_are_found() -> Result<()> {
    // The scanner finds what each program is known to call, through adapters and steps.
    let controller = calls(&CONTROLLER)?;
    for action in [
        "lambda:UpdateEventSourceMapping",
        "lambda:InvokeFunction",
        "sqs:ReceiveMessage",
        "dynamodb:UpdateItem",
        "states:DescribeExecution",
        "events:PutEvents",
    ] {
        ensure!(
            controller.contains_key(action),
            "the controller's calls miss {action}: {controller:#?}"
        );
    }
    ensure!(
        !controller.contains_key("states:StopExecution"),
        "the controller never stops an execution; only the operator does: {controller:#?}"
    );
    let operator = calls(&OPERATOR)?;
    for action in [
        "cloudformation:DescribeStacks",
        "lambda:GetFunctionConfiguration",
        "states:StopExecution",
        "states:ListExecutions",
        "lambda:GetEventSourceMapping",
        "dynamodb:GetItem",
        "states:DescribeExecution",
    ] {
        ensure!(
            operator.contains_key(action),
            "the operator's calls miss {action}: {operator:#?}"
        );
    }
    // It never probes: no invoke, no receive.
    for action in ["lambda:InvokeFunction", "sqs:ReceiveMessage"] {
        ensure!(
            !operator.contains_key(action),
            "the operator does not call {action}: {}",
            operator[action]
        );
    }
    let rejitter = calls(&REJITTER)?;
    ensure!(
        rejitter.contains_key("sqs:SendMessage"),
        "the rejitter re-sends (SendMessageBatch): {rejitter:#?}"
    );
    Ok(())
}

#[test]
fn the_comparison_names_both_directions() {
    let granted: BTreeSet<String> = ["sqs:SendMessage", "sqs:PurgeQueue", "logs:PutLogEvents"]
        .map(String::from)
        .into();
    let called = BTreeMap::from([
        ("sqs:SendMessage".to_string(), "a -> b".to_string()),
        ("sqs:ReceiveMessage".to_string(), "a -> c".to_string()),
    ]);
    let problems = compare("role R", &granted, &called, &["logs:PutLogEvents"]);
    assert_eq!(
        problems,
        [
            "role R lacks sqs:ReceiveMessage, called by a -> c",
            "role R grants sqs:PurgeQueue, which nobody calls",
        ]
    );
}

/// The actions of the operator policy documented in docs/operator-command.md ("Permissions":
/// a table whose first column is the action).
fn documented_operator_actions() -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(paths::root().join("docs/operator-command.md"))?;
    let section = text
        .split("\n## Permissions\n")
        .nth(1)
        .context("docs/operator-command.md has no Permissions section")?;
    let section = section.split("\n## ").next().unwrap_or(section);
    Ok(section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|a| a.contains(':'))
        .map(String::from)
        .collect())
}

#[test]
fn the_documented_operator_policy_is_what_the_command_calls() -> Result<()> {
    let documented = documented_operator_actions()?;
    let problems = compare(
        "the documented operator policy (docs/operator-command.md)",
        &documented,
        &calls(&OPERATOR)?,
        &[],
    );
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

/// The template as CloudFormation reads it (short-form tags decoded), by cfn-lint's decoder.
fn template() -> Result<Value> {
    let out = tools::ensure()?
        .command("python")
        .arg("-c")
        .arg(
            "import json, sys\nfrom cfnlint.decode import decode\n\
             t, m = decode(sys.argv[1])\nif m: sys.exit(str(m))\n\
             json.dump(t, sys.stdout, default=str)",
        )
        .arg(paths::root().join("infra/template.yaml"))
        .output()
        .context("running the venv's python")?;
    if !out.status.success() {
        bail!("decoding: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Every action an Allow statement anywhere in `value` grants.
fn actions(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if map.get("Effect").and_then(Value::as_str) == Some("Allow") {
                match map.get("Action") {
                    Some(Value::String(a)) => {
                        out.insert(a.clone());
                    }
                    Some(Value::Array(list)) => {
                        out.extend(list.iter().filter_map(Value::as_str).map(String::from));
                    }
                    _ => {}
                }
            }
            map.values().for_each(|v| actions(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| actions(v, out)),
        _ => {}
    }
}

fn granted(template: &Value, resource: &str, property: &str) -> Result<BTreeSet<String>> {
    let policies = &template["Resources"][resource]["Properties"][property];
    ensure!(!policies.is_null(), "{resource} has no {property}");
    let mut out = BTreeSet::new();
    actions(policies, &mut out);
    Ok(out)
}

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn each_role_grants_what_its_program_calls_and_nothing_else() -> Result<()> {
    let template = template()?;
    let mut problems = Vec::new();
    let controller_implied: Vec<&str> = LOGS.iter().chain(&QUEUE_KEY).copied().collect();
    problems.extend(compare(
        "ControllerRole",
        &granted(&template, "ControllerRole", "Policies")?,
        &calls(&CONTROLLER)?,
        &controller_implied,
    ));
    let rejitter_implied: Vec<&str> = LOGS
        .iter()
        .chain(&QUEUE_KEY)
        .chain(&MAPPING_POLLS)
        .copied()
        .collect();
    problems.extend(compare(
        "RejitterRole",
        &granted(&template, "RejitterRole", "Policies")?,
        &calls(&REJITTER)?,
        &rejitter_implied,
    ));
    problems.extend(compare(
        "OperatorPolicy (output OperatorPolicyArn)",
        &granted(&template, "OperatorPolicy", "PolicyDocument")?,
        &calls(&OPERATOR)?,
        &[],
    ));
    // The workflow's only calls are its Tasks, each of which invokes the controller.
    let definition: Value = serde_json::from_str(&std::fs::read_to_string(
        paths::root().join("statemachine/circuit-breaker.asl.json"),
    )?)?;
    let mut tasks = BTreeMap::new();
    for (name, state) in definition["States"].as_object().context("States")? {
        if state["Type"] == "Task" {
            let resource = state["Resource"].as_str().unwrap_or_default();
            ensure!(
                resource == "${ControllerFunctionArn}"
                    || resource == "arn:aws:states:::lambda:invoke",
                "Task {name} calls {resource}: give the state machine's role its action"
            );
            tasks.insert("lambda:InvokeFunction".to_string(), format!("Task {name}"));
        }
    }
    problems.extend(compare(
        "CircuitBreakerStateMachine's role",
        &granted(&template, "CircuitBreakerStateMachine", "Policies")?,
        &tasks,
        &[],
    ));
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}
