//! IAM enough, and no more, by construction: every AWS operation each program can call is
//! read from its code (`xtask::checks::aws_calls`), and the template's roles, the operator's
//! managed policy and the documented operator policy must grant exactly those (plus the few
//! actions AWS itself performs with a role, listed below with why).
//!
//! Adding an SDK call to an adapter needs no list edited here: the test then names the
//! action, the function that calls it and the chain of calls that reaches it, and the role
//! (or policy) that lacks it.
//!
//! And nothing mutating on everything: no grant of a mutating action on `*` or on every
//! resource of a type without a condition (`xtask::checks::iam_policy`).

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use xtask::checks::aws_calls;
use xtask::checks::iam_policy::{
    allowed_actions, calls_under_role, clients_under_assumed_role, compare, iam_findings,
    mirror_differences, opaque_policies, statements, statements_with_sid,
};
use xtask::checks::intrinsics::{possible_strings, strings};
use xtask::checks::template::{self, Depth};
use xtask::{asl, paths};

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

/// aws-config's provider assumes an attachment's role with the controller's own.
const ASSUMES_ROLES: [&str; 1] = ["sts:AssumeRole"];
/// Where the controller builds the clients an attachment's role's credentials go to.
const ROLES_SOURCE: &str = "controller/src/steps/fleet.rs";
/// The breaker's events and metrics are sent with the controller's own clients
/// (`Context::signals`), also in an attachment's circuit.
const OWN_CLIENTS: [&str; 1] = ["controller/src/adapters/signals.rs"];

/// One program: the folders whose code it is built from, and its entry point.
struct Program {
    dirs: &'static [&'static str],
    entry: &'static str,
}

const CONTROLLER: Program = Program {
    dirs: &["controller/src"],
    entry: "controller/src/main.rs",
};
// Of the controller library, the rejitter uses only the queue ARN parser and the log setup,
// which call no AWS API: its role needs what its own code calls.
const REJITTER: Program = Program {
    dirs: &["rejitter/src"],
    entry: "rejitter/src/main.rs",
};
const OPERATOR: Program = Program {
    dirs: &["cli/src", "controller/src"],
    entry: "cli/src/main.rs",
};

/// action -> the chain of calls that reaches it.
fn calls(program: &Program) -> Result<BTreeMap<String, String>> {
    let operations = aws_calls::sdk_operations()?;
    let functions = aws_calls::functions(&operations, program.dirs)?;
    aws_calls::reachable(&functions, program.entry)
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

fn granted(template: &Value, resource: &str, property: &str) -> Result<BTreeSet<String>> {
    let policies = &template["Resources"][resource]["Properties"][property];
    ensure!(!policies.is_null(), "{resource} has no {property}");
    Ok(allowed_actions(policies))
}

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn each_role_grants_what_its_program_calls_and_nothing_else() -> Result<()> {
    let template = template::raw()?;
    let mut problems = Vec::new();
    let assumes =
        clients_under_assumed_role(&std::fs::read_to_string(paths::root().join(ROLES_SOURCE))?)
            .is_some();
    let controller_implied: Vec<&str> = LOGS
        .iter()
        .chain(&QUEUE_KEY)
        .chain(if assumes { &ASSUMES_ROLES[..] } else { &[] })
        .copied()
        .collect();
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
    let definition: Value = serde_json::from_str(&asl::definition_text()?)?;
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

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn template_grants_nothing_mutating_on_everything() -> Result<()> {
    let template = template::expanded()?;
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
    let found = statements(&template.raw);
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
        let arns = possible_strings(&statement["Condition"]["ArnLike"]["lambda:FunctionArn"]);
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
fn an_encrypted_queue_gets_exactly_its_keys_two_actions() -> Result<()> {
    let template = template::raw()?;
    let found = statements_with_sid(&template["Resources"], "UseTheQueuesKey");
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
    let text = std::fs::read_to_string(template::path())?;
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

/// What the controller calls under an attachment's role: its calls in the services whose
/// clients are built with the role's credentials, but the breaker's own events and metrics.
fn calls_on_a_consumer() -> Result<BTreeMap<String, String>> {
    let source = std::fs::read_to_string(paths::root().join(ROLES_SOURCE))?;
    let services = clients_under_assumed_role(&source)
        .with_context(|| format!("{ROLES_SOURCE} assumes no role"))?;
    let operations = aws_calls::sdk_operations()?;
    let functions = aws_calls::functions(&operations, CONTROLLER.dirs)?;
    let called = aws_calls::reachable(&functions, CONTROLLER.entry)?;
    Ok(calls_under_role(
        &called,
        &services,
        &functions,
        &OWN_CLIENTS,
    ))
}

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn an_attachments_role_grants_what_the_controller_calls_on_its_consumer_and_nothing_else(
) -> Result<()> {
    let attachment = template::load(&paths::root().join("infra/attachment.yaml"), Depth::Raw)?.raw;
    let deployment = template::raw()?;
    let mut problems = Vec::new();

    // Exactly the consumer's calls (and the queue's key, which SQS uses with the role).
    let on_consumer = calls_on_a_consumer()?;
    for action in [
        "lambda:UpdateEventSourceMapping",
        "lambda:InvokeFunction",
        "sqs:ReceiveMessage",
        "cloudwatch:SetAlarmState",
    ] {
        ensure!(
            on_consumer.contains_key(action),
            "the calls on a consumer miss {action}: {on_consumer:#?}"
        );
    }
    for action in [
        "cloudwatch:PutMetricData",
        "dynamodb:GetItem",
        "events:PutEvents",
    ] {
        ensure!(
            !on_consumer.contains_key(action),
            "{action} is the deployment's, not made under the attachment's role"
        );
    }
    problems.extend(compare(
        "AttachmentRole",
        &granted(&attachment, "AttachmentRole", "Policies")?,
        &on_consumer,
        &QUEUE_KEY,
    ));
    // Statement for statement the deployment's grants on its own consumer: same Sids,
    // actions and conditions.
    problems.extend(
        mirror_differences(
            &deployment["Resources"]["ControllerRole"]["Properties"]["Policies"],
            &attachment["Resources"]["AttachmentRole"]["Properties"]["Policies"],
        )
        .into_iter()
        .map(|p| format!("AttachmentRole: {p}")),
    );
    problems.extend(iam_findings(&attachment));
    problems.extend(opaque_policies(&attachment));
    ensure!(problems.is_empty(), "{}", problems.join("\n"));

    // Its mapping update is scoped to its consumer, as the deployment's is.
    let role = &attachment["Resources"]["AttachmentRole"]["Properties"];
    let update = statements_with_sid(&role["Policies"], "DisableAndEnableTheConsumersMapping");
    ensure!(update.len() == 1, "one mapping update: {update:?}");
    let arns = possible_strings(&update[0]["Condition"]["ArnLike"]["lambda:FunctionArn"]);
    ensure!(
        arns == [
            "arn:aws:lambda:us-east-1:123456789012:function:ConsumerFunctionName",
            "arn:aws:lambda:us-east-1:123456789012:function:ConsumerFunctionName:*",
            // The deployment's rejitter function (imported below), with RejitterEnabled=true.
            "arn:aws:lambda:us-east-1:123456789012:function:Rejitter",
        ],
        "the mapping update is scoped to the consumer's and the rejitter's mappings: {arns:?}"
    );
    let rejitter_arn = &update[0]["Condition"]["ArnLike"]["lambda:FunctionArn"][2];
    ensure!(
        rejitter_arn["Fn::If"][0] == "RejitterOn"
            && rejitter_arn["Fn::If"][1]["Fn::Sub"][1]["Rejitter"]
                == json!({"Fn::ImportValue": {"Fn::Sub": "${Breaker}-RejitterFunctionName"}}),
        "the rejitter's function, only with the attachment's rejitter: {rejitter_arn}"
    );

    // The rejitter's grant on this queue: RejitterRole's statements on the deployment's
    // queue (and key), the same text (both templates name them QueueArn and QueueKmsKeyArn),
    // on the deployment's rejitter role, only with the attachment's rejitter, after the
    // registration (which refuses a deployment without a rejitter first).
    let grant = &attachment["Resources"]["RejitterGrant"];
    // The statements as written, the key's inside its Fn::If on HasQueueKey.
    let sid = |s: &Value| {
        s["Sid"]
            .as_str()
            .or(s["Fn::If"][1]["Sid"].as_str())
            .map(str::to_owned)
    };
    let own: Vec<Value> = deployment["Resources"]["RejitterRole"]["Properties"]["Policies"][0]
        ["PolicyDocument"]["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| {
            matches!(
                sid(s).as_deref(),
                Some("RejitterTheQueue" | "UseTheQueuesKey")
            )
        })
        .cloned()
        .collect();
    let given = grant["Properties"]["PolicyDocument"]["Statement"].clone();
    ensure!(
        own.len() == 2 && json!(own) == given,
        "RejitterGrant grants what RejitterRole grants on its queue and key:\n{own:#?}\n{given:#?}"
    );
    let on_key = &grant["Properties"]["PolicyDocument"]["Statement"][1]["Fn::If"];
    ensure!(
        on_key[0] == "HasQueueKey",
        "the key only with a key: {on_key}"
    );
    ensure!(
        grant["Type"] == "AWS::IAM::Policy"
            && grant["Condition"] == "RejitterOn"
            && grant["DependsOn"] == "Registration"
            && grant["Properties"]["Roles"]
                == json!([{"Fn::ImportValue": {"Fn::Sub": "${Breaker}-RejitterRoleName"}}]),
        "RejitterGrant: {grant}"
    );
    let export = &deployment["Outputs"]["RejitterRoleName"];
    ensure!(
        export["Value"] == json!({"Fn::If": ["RejitterOn", {"Ref": "RejitterRole"}, "none"]})
            && export["Export"]["Name"] == json!({"Fn::Sub": "${AWS::StackName}-RejitterRoleName"}),
        "the deployment exports its rejitter's role: {export}"
    );
    let export = &deployment["Outputs"]["RejitterFunctionName"];
    ensure!(
        export["Value"] == json!({"Fn::If": ["RejitterOn", {"Ref": "RejitterFunction"}, "none"]}),
        "the deployment exports its rejitter function: {export}"
    );

    // On the deployment's path, trusted by its controller's role and nobody else.
    ensure!(
        role["Path"] == json!({"Fn::Sub": "/sqs-circuit-breaker/${Breaker}/"}),
        "AttachmentRole's path: {}",
        role["Path"]
    );
    let trust = statements(&role["AssumeRolePolicyDocument"]);
    ensure!(
        trust.len() == 1
            && trust[0].1["Effect"] == "Allow"
            && trust[0].1["Action"] == "sts:AssumeRole"
            && trust[0].1["Principal"]
                == json!({"AWS": {"Fn::ImportValue": {"Fn::Sub": "${Breaker}-ControllerRoleArn"}}})
            && trust[0].1.get("Condition").is_none(),
        "AttachmentRole trusts the deployment's controller role only: {trust:?}"
    );
    let export = &deployment["Outputs"]["ControllerRoleArn"];
    ensure!(
        export["Value"] == json!({"Fn::GetAtt": ["ControllerRole", "Arn"]})
            && export["Export"]["Name"]
                == json!({"Fn::Sub": "${AWS::StackName}-ControllerRoleArn"}),
        "the deployment exports its controller's role: {export}"
    );

    // The deployment's controller may assume roles on its own path only.
    let assume: Vec<Value> = statements(&deployment["Resources"]["ControllerRole"])
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| s.get("Resource").is_some())
        .filter(|s| {
            strings(s.get("Action"))
                .iter()
                .any(|a| a == "sts:AssumeRole")
        })
        .collect();
    ensure!(
        assume.len() == 1
            && possible_strings(&assume[0]["Resource"])
                == ["arn:aws:iam::123456789012:role/sqs-circuit-breaker/AWS::StackName/*"],
        "ControllerRole assumes roles on the deployment's path only: {assume:?}"
    );
    Ok(())
}
