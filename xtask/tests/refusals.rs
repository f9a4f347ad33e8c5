//! The template's own refusals: its `Rules` (evaluated with CloudFormation's documented rule
//! functions, and using no other), and the stack-name bound the physical names set. The
//! controller's refusals (the configuration check) are tested in `controller/src/core/config.rs`
//! and on the local stack (`company_stack.rs`).

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use xtask::{paths, tools};

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

/// The functions CloudFormation allows in a rule.
const RULE_FUNCTIONS: [&str; 11] = [
    "Fn::And",
    "Fn::Contains",
    "Fn::EachMemberEquals",
    "Fn::EachMemberIn",
    "Fn::Equals",
    "Fn::Not",
    "Fn::Or",
    "Fn::RefAll",
    "Fn::ValueOf",
    "Fn::ValueOfAll",
    "Ref",
];

/// A rule expression's value for these parameters: a string, or a verdict.
#[derive(Debug, PartialEq)]
enum V {
    S(String),
    B(bool),
}

fn eval(e: &Value, params: &BTreeMap<&str, &str>) -> Result<V> {
    match e {
        Value::String(s) => Ok(V::S(s.clone())),
        Value::Object(m) if m.len() == 1 => {
            let (f, args) = m.iter().next().context("empty")?;
            ensure!(
                RULE_FUNCTIONS.contains(&f.as_str()),
                "{f} is not a rule function"
            );
            let list = || args.as_array().context("arguments");
            Ok(match f.as_str() {
                "Ref" => V::S(
                    params
                        .get(args.as_str().context("Ref")?)
                        .with_context(|| format!("no value for {args}"))?
                        .to_string(),
                ),
                "Fn::Equals" => V::B(eval(&list()?[0], params)? == eval(&list()?[1], params)?),
                "Fn::Not" => match eval(&list()?[0], params)? {
                    V::B(b) => V::B(!b),
                    other => bail!("Fn::Not of {other:?}"),
                },
                other => bail!("{other}: not evaluated here; extend the test"),
            })
        }
        other => bail!("unexpected {other}"),
    }
}

/// The assertion descriptions of the rules that refuse these parameters.
fn refused(template: &Value, params: &BTreeMap<&str, &str>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (name, rule) in template["Rules"].as_object().context("Rules")? {
        let applies = match rule.get("RuleCondition") {
            None => true,
            Some(c) => eval(c, params)? == V::B(true),
        };
        if !applies {
            continue;
        }
        for a in rule["Assertions"].as_array().context("Assertions")? {
            if eval(&a["Assert"], params)? != V::B(true) {
                out.push(format!(
                    "{name}: {}",
                    a["AssertDescription"].as_str().unwrap_or("")
                ));
            }
        }
    }
    Ok(out)
}

#[test]
#[ignore = "needs the local toolchain (venv with cfn-lint); run with `cargo xtask test`"]
fn the_rules_refuse_a_health_check_without_a_function_and_nothing_else() -> Result<()> {
    let template = template()?;
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
    let template = template()?;
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
