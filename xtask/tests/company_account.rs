//! The company-account options on the template as SAM expands it: a permissions boundary on
//! every role (SAM's generated ones included), log groups owned by the stack with a
//! retention, the alert topic's alarms and rule, a deploy that still needs two parameters
//! only, and stack tags that reach every resource that takes tags.

use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use xtask::checks::template::{self, of_type, Depth};

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn company_account_options_reach_every_resource() -> Result<()> {
    let template::Template {
        raw, transformed, ..
    } = template::expanded()?;
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

/// The resource types of the template that take no tags, and why.
const UNTAGGABLE: &[(&str, &str)] = &[
    (
        "AWS::IAM::ManagedPolicy",
        "IAM tags policies through its own API only: CloudFormation's type has no Tags",
    ),
    (
        "AWS::Lambda::Permission",
        "a statement of the function's resource policy, not a resource of its own",
    ),
    (
        "AWS::SNS::TopicPolicy",
        "the topic's policy attribute, not a resource of its own",
    ),
];

/// Stack tags (`sam deploy --tags`) are the documented way to tag the breaker: CloudFormation
/// copies them to every resource whose registry type is taggable through a tag property, SAM's
/// generated roles and rules included. A new resource type must be one of those or be listed
/// in [`UNTAGGABLE`].
#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn stack_tags_reach_every_resource_that_takes_tags() -> Result<()> {
    let all = template::load(&template::path(), Depth::Tagging)?;
    let tagging = all.tagging.as_object().context("tagging")?;
    let mut tagged = Vec::new();
    for (kind, tags) in tagging {
        let untaggable = UNTAGGABLE.iter().find(|(k, _)| k == kind);
        let taggable = tags["taggable"] == true && tags["tagProperty"].is_string();
        match (taggable, untaggable) {
            (true, None) => tagged.push(kind.as_str()),
            (true, Some(_)) => bail!("{kind} takes tags now: drop it from UNTAGGABLE"),
            (false, Some(_)) => {}
            (false, None) => bail!(
                "{kind} takes no stack tags ({tags}): tag it explicitly or list it in UNTAGGABLE"
            ),
        }
    }
    for (kind, _) in UNTAGGABLE {
        ensure!(
            tagging.contains_key(*kind),
            "{kind} is no resource type of the template: drop it from UNTAGGABLE"
        );
    }
    // What docs/parameters.md names as tagged.
    for kind in [
        "AWS::IAM::Role",
        "AWS::Lambda::Function",
        "AWS::Lambda::EventSourceMapping",
        "AWS::DynamoDB::Table",
        "AWS::StepFunctions::StateMachine",
        "AWS::Events::Rule",
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::CompositeAlarm",
        "AWS::SNS::Topic",
        "AWS::Logs::LogGroup",
    ] {
        ensure!(tagged.contains(&kind), "{kind} is not tagged: {tagged:?}");
    }
    // A template tag of the same key would win over the stack's: none may be set, except
    // SAM's own markers.
    for (name, resource) in all.transformed["Resources"]
        .as_object()
        .context("Resources")?
    {
        for tag in resource["Properties"]["Tags"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let key = tag["Key"].as_str().unwrap_or_default();
            ensure!(
                key.ends_with(":createdBy"),
                "{name} sets its own tag {key}, which would override a stack tag of that key"
            );
        }
    }
    Ok(())
}
