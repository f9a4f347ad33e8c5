//! The company-account options on the template as SAM expands it: a permissions boundary on
//! every role (SAM's generated ones included), log groups owned by the stack with a
//! retention, the alert topic's alarms and rule, and a deploy that still needs two
//! parameters only.

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use xtask::{paths, tools};

const EXPAND: &str = r#"
import copy, json, sys
from cfnlint.decode import decode
from cfnlint.template.transforms._sam import Transform
t, m = decode(sys.argv[1])
if m: sys.exit(str(m))
sam = Transform(sys.argv[1], copy.deepcopy(t), "us-east-1")
m = sam.transform_template()
if m: sys.exit(str(m))
json.dump({"raw": t, "transformed": sam.template()}, sys.stdout, default=str)
"#;

fn templates() -> Result<(Value, Value)> {
    let out = tools::ensure()?
        .command("python")
        .arg("-c")
        .arg(EXPAND)
        .arg(paths::root().join("infra/template.yaml"))
        .output()
        .context("running the venv's python")?;
    if !out.status.success() {
        bail!("expanding: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut both: Value = serde_json::from_slice(&out.stdout)?;
    Ok((both["raw"].take(), both["transformed"].take()))
}

fn of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    template["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, r)| r["Type"] == kind)
        .collect()
}

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn company_account_options_reach_every_resource() -> Result<()> {
    let (raw, transformed) = templates()?;
    let boundary = json!({"Fn::If": ["HasBoundary", {"Ref": "PermissionsBoundaryArn"}, {"Ref": "AWS::NoValue"}]});
    let roles = of_type(&transformed, "AWS::IAM::Role");
    ensure!(
        roles.len() >= 4,
        "roles: {:?}",
        roles.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    for (name, role) in roles {
        ensure!(
            role["Properties"]["PermissionsBoundary"] == boundary,
            "role {name} has no PermissionsBoundary from PermissionsBoundaryArn: {}",
            role["Properties"]["PermissionsBoundary"]
        );
    }

    // Each function writes to a log group the stack owns, created before it.
    for (function, group) in [
        ("ControllerFunction", "ControllerLogGroup"),
        ("RejitterFunction", "RejitterLogGroup"),
    ] {
        let f = &transformed["Resources"][function];
        let depends = f["DependsOn"].to_string();
        ensure!(
            depends.contains(group),
            "{function} does not depend on {group}: {depends}"
        );
        let g = &raw["Resources"][group]["Properties"];
        ensure!(
            g["RetentionInDays"] == json!({"Ref": "LogRetentionDays"}),
            "{group}: {g}"
        );
        ensure!(
            raw["Resources"][function]["Properties"]["FunctionName"]["Fn::Sub"]
                .as_str()
                .zip(g["LogGroupName"]["Fn::Sub"].as_str())
                .is_some_and(|(f, g)| g == format!("/aws/lambda/{f}")),
            "{group} is not {function}'s log group"
        );
    }
    ensure!(
        !serde_json::to_string(&raw)?.contains("logs:CreateLogGroup"),
        "with log groups owned by the stack, no role may create one"
    );

    // Every health alarm goes to the alert topic, only when there is one.
    let alarms: Vec<_> = of_type(&raw, "AWS::CloudWatch::Alarm")
        .into_iter()
        // The alarms that open the circuit (docs/alarm-signals.md) are not health alarms.
        .filter(|(n, _)| !n.starts_with("Consumer"))
        .collect();
    ensure!(alarms.len() == 8, "eight health alarms: {}", alarms.len());
    for (name, alarm) in &alarms {
        ensure!(
            alarm["Properties"]["AlarmActions"] == json!([{"Ref": "AlertTopicResource"}]),
            "{name} does not alert the topic"
        );
        ensure!(
            ["HasAlertTopic", "RejitterAlerts"]
                .contains(&alarm["Condition"].as_str().unwrap_or("")),
            "{name} exists without the alert topic"
        );
        // A rule it watches by name is one SAM really generates.
        if alarm["Properties"]["Namespace"] == "AWS/Events" {
            let rule = alarm["Properties"]["Dimensions"][0]["Value"]["Ref"]
                .as_str()
                .context("RuleName")?;
            ensure!(
                transformed["Resources"][rule]["Type"] == "AWS::Events::Rule",
                "{name} watches {rule}, which is no rule of the expanded template"
            );
        }
    }
    let rule = &raw["Resources"]["AlertRule"]["Properties"];
    ensure!(
        rule["EventPattern"]["detail-type"] == json!(["Circuit Gave Up", "Breaker Misconfigured"])
            && rule["Targets"][0]["Arn"] == json!({"Ref": "AlertTopicResource"}),
        "the alert rule: {rule}"
    );

    // Still a two-parameter deploy.
    let required: Vec<&String> = raw["Parameters"]
        .as_object()
        .context("Parameters")?
        .iter()
        .filter(|(_, p)| p.get("Default").is_none())
        .map(|(n, _)| n)
        .collect();
    ensure!(
        required == ["ConsumerFunctionName", "QueueArn"],
        "parameters without a default: {required:?}"
    );
    // The deploy's configuration check reaches the controller.
    let check = &raw["Resources"]["ControllerFunction"]["Properties"]["Events"]["StackDeployed"]
        ["Properties"]["Pattern"];
    ensure!(
        check["detail"]["stack-id"] == json!([{"Ref": "AWS::StackId"}]),
        "the deploy check listens to this stack only: {check}"
    );
    Ok(())
}
