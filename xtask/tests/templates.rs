//! The SAM template (`infra/template.yaml`) as a whole: cfn-lint passes on every template of
//! `infra/`, the template wires the workflow (its substitutions) and the controller (its
//! environment) as they expect, and the attachment (`infra/attachment.yaml`) carries the
//! template's alarm section unchanged and registers its alarm as the template wires its own.
//! They need the venv (cfn-lint) and are `#[ignore]`d like the other toolchain tests. The template's IAM is checked in `iam.rs`, its refusals in
//! `refusals.rs`, its company-account options in `company_account.rs`.

use anyhow::{ensure, Context, Result};
use std::collections::BTreeSet;
use xtask::checks::shared_section::{self, Section};
use xtask::checks::template::{self, Depth};
use xtask::{asl, paths, tools};

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn template_wires_the_workflow_and_the_controller() -> Result<()> {
    let template = template::raw()?;
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
        "ATTACHMENTS_TABLE",
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
        .filter(|v| *v != "RUST_LOG" && *v != "ATTACHMENTS_TABLE" && !all.contains(*v))
        .collect();
    ensure!(
        unknown.is_empty(),
        "set but not read by the controller: {unknown:?}"
    );
    // The attachments table is the deployment's, read at cold start, not the consumer's.
    let main = std::fs::read_to_string(paths::root().join("controller/src/main.rs"))?;
    ensure!(
        main.contains("env(\"ATTACHMENTS_TABLE\")"),
        "the controller no longer reads ATTACHMENTS_TABLE"
    );
    Ok(())
}

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
    ensure!(
        templates.iter().any(|t| t.ends_with("attachment.yaml")),
        "infra/attachment.yaml is missing"
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

/// The conditions of the alarm section: which alarm is created, if any.
const ALARM_CONDITIONS: &[&str] = &[
    "HasAlarmArn",
    "CreateAlarm",
    "ErrorsSignal",
    "ErrorShareSignal",
    "FailedRecordsSignal",
    "AnySignal",
    "WatchFailedRecords",
    "WatchErrorShare",
];

/// The alarm section both templates carry, and what of it may differ.
const ALARM_SECTION: Section = Section {
    parts: &[
        (
            "Parameters",
            &[
                "AlarmArn",
                "AlarmSignal",
                "AlarmFailurePercent",
                "AlarmMinimumCount",
                "AlarmHangPeriods",
                "AlarmThreshold",
                "AlarmPeriodSeconds",
                "AlarmEvaluationPeriods",
                "AlarmDatapointsToAlarm",
                // Not the section's, but the alarms read them: same type and values.
                "ConsumerFunctionName",
                "QueueArn",
            ],
        ),
        ("Conditions", ALARM_CONDITIONS),
        (
            "Resources",
            &[
                "ConsumerErrorsAlarm",
                "ConsumerErrorShareAlarm",
                "ConsumerFailedRecordsAlarm",
                "ConsumerStalledAlarm",
                "ConsumerFailingAlarm",
            ],
        ),
        ("Outputs", &["AlarmName"]),
    ],
    // The consumer's parameters are described for each template's reader (the single-consumer
    // template speaks of the rejitter and FIFO queues, which an attachment does not have).
    may_differ: &[
        "/Parameters/ConsumerFunctionName/Description",
        "/Parameters/QueueArn/Description",
        "/Parameters/QueueArn/ConstraintDescription",
    ],
};

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn the_attachment_creates_its_alarm_as_the_template_does() -> Result<()> {
    let deployment = template::raw()?;
    let attachment = template::load(&paths::root().join("infra/attachment.yaml"), Depth::Raw)?.raw;

    let differences = shared_section::differences(
        ("infra/template.yaml", &deployment),
        ("infra/attachment.yaml", &attachment),
        &ALARM_SECTION,
    );
    ensure!(
        differences.is_empty(),
        "the alarm section of the two templates differs (copy the change to the other one):\n{}",
        differences.join("\n")
    );

    // Nothing alarm-shaped is left out of the section: every Alarm* parameter and every
    // resource that exists only under an alarm condition is in it.
    let listed = |part: &str| -> BTreeSet<&str> {
        ALARM_SECTION
            .parts
            .iter()
            .filter(|(p, _)| *p == part)
            .flat_map(|(_, names)| names.iter().copied())
            .collect()
    };
    for (name, t) in [
        ("infra/template.yaml", &deployment),
        ("infra/attachment.yaml", &attachment),
    ] {
        let alarm_parameters: BTreeSet<&str> = t["Parameters"]
            .as_object()
            .context("Parameters")?
            .keys()
            .map(String::as_str)
            .filter(|p| p.starts_with("Alarm"))
            .collect();
        let parameters = listed("Parameters");
        let unlisted: Vec<_> = alarm_parameters.difference(&parameters).collect();
        ensure!(
            unlisted.is_empty(),
            "{name}: {unlisted:?} not in the alarm section"
        );
        let under = shared_section::conditioned_on(t, ALARM_CONDITIONS);
        ensure!(
            under == listed("Resources"),
            "{name}: the resources under the alarm conditions are {under:?}"
        );
    }

    // The attachment registers and routes the alarm the template's own consumer gets: the
    // rule's resource and the registration's alarm are the template's rule resource, the
    // signal and its settings the controller's environment.
    let own = &deployment["Resources"];
    let rule_alarm = &own["CircuitBreakerStateMachine"]["Properties"]["Events"]["ConsumerAlarm"]
        ["Properties"]["Pattern"]["resources"][0];
    let env = &own["ControllerFunction"]["Properties"]["Environment"]["Variables"];
    let registration = &attachment["Resources"]["Registration"]["Properties"];
    let attached_rule = &attachment["Resources"]["AlarmRule"]["Properties"]["EventPattern"];
    ensure!(rule_alarm.is_object(), "the template's rule names no alarm");
    assert_eq!(&registration["AlarmArn"], rule_alarm);
    assert_eq!(&attached_rule["resources"][0], rule_alarm);
    assert_eq!(attached_rule["resources"].as_array().map(Vec::len), Some(1));
    for (property, variable) in [
        ("AlarmSignal", "ALARM_SIGNAL"),
        ("AlarmFailurePercent", "ALARM_FAILURE_PERCENT"),
        ("AlarmPeriodSeconds", "ALARM_PERIOD_SECONDS"),
        ("AlarmHangPeriods", "ALARM_HANG_PERIODS"),
    ] {
        assert_eq!(registration[property], env[variable], "{property}");
    }
    // The attachment's role may re-arm that alarm, a created composite's children too, as
    // the deployment's controller role may its own.
    let reset = |role: &serde_json::Value| {
        role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["Sid"] == "ResetTheAlarm"))
            .map(|s| s["Resource"].clone())
    };
    let own_reset = reset(&own["ControllerRole"]).context("ControllerRole's ResetTheAlarm")?;
    assert_eq!(
        reset(&attachment["Resources"]["AttachmentRole"]),
        Some(own_reset)
    );
    Ok(())
}

/// The rejitter's mapping both templates create on their queue, and what of it may differ:
/// the deployment maps its own function, an attachment the deployment's (imported) after
/// its registration and its grant.
const REJITTER_SECTION: Section = Section {
    parts: &[
        ("Conditions", &["RejitterOn"]),
        ("Resources", &["RejitterMapping"]),
    ],
    may_differ: &[
        "/Resources/RejitterMapping/Properties/FunctionName",
        "/Resources/RejitterMapping/DependsOn",
    ],
};

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn the_attachment_maps_the_rejitter_as_the_template_does() -> Result<()> {
    let deployment = template::raw()?;
    let attachment = template::load(&paths::root().join("infra/attachment.yaml"), Depth::Raw)?.raw;
    let differences = shared_section::differences(
        ("infra/template.yaml", &deployment),
        ("infra/attachment.yaml", &attachment),
        &REJITTER_SECTION,
    );
    ensure!(
        differences.is_empty(),
        "the rejitter's mapping differs between the two templates:\n{}",
        differences.join("\n")
    );
    // Only the mapping and the grant exist with the attachment's rejitter (the grant is the
    // IAM test's, xtask/tests/iam.rs).
    let under = shared_section::conditioned_on(&attachment, &["RejitterOn"]);
    ensure!(
        under == BTreeSet::from(["RejitterGrant", "RejitterMapping"]),
        "the attachment's resources under RejitterOn: {under:?}"
    );
    let mapping = &attachment["Resources"]["RejitterMapping"];
    ensure!(
        mapping["Properties"]["FunctionName"]
            == serde_json::json!({"Fn::ImportValue": {"Fn::Sub": "${Breaker}-RejitterFunctionName"}})
            && mapping["DependsOn"] == serde_json::json!(["Registration", "RejitterGrant"]),
        "the attachment maps the deployment's rejitter, after its registration and grant: {mapping}"
    );
    // The registration is told, so that it refuses a deployment without a rejitter (or a
    // FIFO queue) before the mapping is tried.
    assert_eq!(
        attachment["Resources"]["Registration"]["Properties"]["RejitterEnabled"],
        serde_json::json!({"Ref": "RejitterEnabled"})
    );
    Ok(())
}
