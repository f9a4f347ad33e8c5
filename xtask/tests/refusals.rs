//! The template's own refusals: its `Rules` (evaluated with CloudFormation's documented rule
//! functions, and using no other: `xtask::checks::intrinsics`), and the stack-name bound the physical names set. The
//! controller's refusals (the configuration check) are tested in `controller/src/core/config.rs`
//! and on the local stack (`company_stack.rs`).

use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use xtask::checks::intrinsics::refused;
use xtask::checks::template;
use xtask::paths;

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn the_rules_refuse_a_health_check_without_a_function_and_nothing_else() -> Result<()> {
    let template = template::raw()?;
    for (policy, function, expected) in [
        ("health-check", "", 1),
        ("health-check", "my-check", 0),
        ("close", "", 0),
        ("wait", "", 0),
        ("close", "my-check", 0),
    ] {
        let params = BTreeMap::from([
            ("EmptyQueuePolicy", policy),
            ("HealthCheckFunctionName", function),
        ]);
        let got = refused(&template, &params)?;
        ensure!(
            got.len() == expected,
            "EmptyQueuePolicy={policy} HealthCheckFunctionName={function:?}: refused {got:?}"
        );
        if expected == 1 {
            ensure!(
                got[0].contains("requires HealthCheckFunctionName"),
                "{got:?}"
            );
        }
    }
    Ok(())
}

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn the_documented_stack_name_bound_is_exactly_what_the_names_allow() -> Result<()> {
    let template = template::raw()?;
    // Each physical name built from the stack name, and its service's limit.
    let limits = BTreeMap::from([
        ("FunctionName", 64),  // Lambda
        ("Name", 80),          // Step Functions
        ("AlarmName", 255),    // CloudWatch
        ("LogGroupName", 512), // CloudWatch Logs
    ]);
    let mut names = Vec::new();
    for (resource, r) in template["Resources"].as_object().context("Resources")? {
        for (property, limit) in &limits {
            if let Some(sub) = r["Properties"][*property]["Fn::Sub"].as_str() {
                if sub.contains("${AWS::StackName}") {
                    names.push((resource.clone(), sub.to_string(), *limit));
                }
            }
        }
    }
    ensure!(
        names.len() >= 5,
        "names built from the stack name: {names:?}"
    );
    let fits = |n: usize| {
        let stack = "s".repeat(n);
        names
            .iter()
            .filter(|(_, sub, limit)| sub.replace("${AWS::StackName}", &stack).len() > *limit)
            .map(|(resource, _, _)| resource.clone())
            .collect::<Vec<_>>()
    };
    ensure!(fits(53).is_empty(), "too long at 53: {:?}", fits(53));
    ensure!(
        !fits(54).is_empty(),
        "53 is not the bound: every name fits at 54"
    );
    let docs = std::fs::read_to_string(paths::root().join("docs/parameters.md"))?;
    ensure!(
        docs.contains("a stack name over 53 characters fails"),
        "docs/parameters.md states the bound"
    );
    Ok(())
}
