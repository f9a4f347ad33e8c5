//! The IAM analyser: the policy statements of a template, the grants of a mutating action on
//! too broad a resource, policies it cannot see into, and how a set of granted actions
//! compares with the actions a program calls.

use super::aws_calls::{Function, SERVICES};
use super::intrinsics::{possible_strings, strings};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Actions that only read; everything else counts as mutating.
pub const READ_ONLY: [&str; 7] = [
    "lambda:ListEventSourceMappings",
    "lambda:GetEventSourceMapping",
    "lambda:GetFunctionConfiguration",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "cloudwatch:GetMetricStatistics",
    "dynamodb:GetItem",
];

/// Managed policies SAM attaches on its own (CloudWatch Logs for the function's logs).
pub const ACCEPTED_MANAGED_POLICIES: [&str; 1] =
    ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"];

/// Why `resource` is too broad for a mutating action, if it is.
pub fn too_broad(resource: &str, has_condition: bool) -> Option<&'static str> {
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

/// Every policy statement anywhere in `value` (function and state machine policies, roles,
/// resource policies), with where it is (`.Resources.R.Properties.Policies[0].Statement[Sid]`).
pub fn statements(value: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    collect_statements(value, "", &mut out);
    out
}

fn collect_statements(value: &Value, path: &str, out: &mut Vec<(String, Value)>) {
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
                    collect_statements(inner, &format!("{path}.{key}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                collect_statements(inner, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Every object anywhere in `value` whose `Sid` is `sid`.
pub fn statements_with_sid<'a>(value: &'a Value, sid: &str) -> Vec<&'a Value> {
    fn walk<'a>(value: &'a Value, sid: &str, out: &mut Vec<&'a Value>) {
        match value {
            Value::Object(map) => {
                if map.get("Sid").and_then(Value::as_str) == Some(sid) {
                    out.push(value);
                }
                map.values().for_each(|v| walk(v, sid, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, sid, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, sid, &mut out);
    out
}

/// Every grant in `template` of a mutating action on too broad a resource, one line each.
pub fn iam_findings(template: &Value) -> Vec<String> {
    let mut findings = Vec::new();
    for (at, statement) in statements(template) {
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
        let resources = possible_strings(statement.get("Resource").unwrap_or(&Value::Null));
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
pub fn opaque_policies(template: &Value) -> Vec<String> {
    let mut findings = Vec::new();
    let Some(resources) = template.get("Resources").and_then(Value::as_object) else {
        return findings;
    };
    for (name, resource) in resources {
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
        let managed_arns = properties.get("ManagedPolicyArns").map(possible_strings);
        for managed in managed_arns.unwrap_or_default() {
            if !ACCEPTED_MANAGED_POLICIES.contains(&managed.as_str()) {
                findings.push(format!("{name}: managed policy {managed}"));
            }
        }
    }
    findings
}

/// Every action an Allow statement anywhere in `value` grants.
pub fn allowed_actions(value: &Value) -> BTreeSet<String> {
    fn walk(value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                if map.get("Effect").and_then(Value::as_str) == Some("Allow") {
                    out.extend(strings(map.get("Action")));
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(value, &mut out);
    out
}

/// Both directions, one line each: what `granted` lacks of what is `called` (action -> the
/// chain of calls that reaches it) or `implied` (actions AWS performs with the role), and
/// what it grants that nobody calls.
pub fn compare(
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

/// What a program does under a role it assumes with aws-config's `AssumeRoleProvider`
/// (which calls `sts:AssumeRole` with the program's own role): the IAM prefixes of the SDK
/// clients built with the assumed credentials (`aws_sdk_<service>::Client::new`), read from
/// `source`, the code that builds them. `None`: `source` assumes no role.
pub fn clients_under_assumed_role(source: &str) -> Option<BTreeSet<&'static str>> {
    let start = source.find("AssumeRoleProvider::builder")?;
    // The clients built after the provider, up to the end of that item.
    let rest = &source[start..];
    let end = rest.find("\n}\n").unwrap_or(rest.len());
    let body = &rest[..end];
    Some(
        SERVICES
            .iter()
            .filter(|(krate, _)| {
                body.contains(&format!("{}::Client::new(", krate.replace('-', "_")))
            })
            .map(|(_, prefix)| *prefix)
            .collect(),
    )
}

/// The calls a program makes under an assumed role: those of `called` (action -> the chain
/// of calls that reaches it) in `services` (IAM prefixes, `clients_under_assumed_role`),
/// except the actions that only functions of `own_files` call: those use the program's own
/// clients of the same service.
pub fn calls_under_role(
    called: &BTreeMap<String, String>,
    services: &BTreeSet<&str>,
    functions: &[Function],
    own_files: &[&str],
) -> BTreeMap<String, String> {
    called
        .iter()
        .filter(|(action, _)| {
            action
                .split_once(':')
                .is_some_and(|(prefix, _)| services.contains(prefix))
        })
        .filter(|(action, _)| {
            functions
                .iter()
                .filter(|f| f.calls.contains(*action))
                .any(|f| !own_files.contains(&f.file.as_str()))
        })
        .map(|(action, chain)| (action.clone(), chain.clone()))
        .collect()
}

/// Why a role's statements are not a subset of another role's, mirrored: each statement of
/// `copy` must have a `Sid` that `original` has, with the same actions, effect and condition
/// operators and keys (the values, the resources, name the role's own consumer), one line
/// each.
pub fn mirror_differences(original: &Value, copy: &Value) -> Vec<String> {
    // Every statement, also one inside a condition's Fn::If.
    fn walk<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
        match value {
            Value::Object(map) if map.contains_key("Effect") => out.push(value),
            Value::Object(map) => map.values().for_each(|v| walk(v, out)),
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let all = |policies: &'_ Value| {
        let mut out = Vec::new();
        walk(policies, &mut out);
        out.into_iter().cloned().collect::<Vec<Value>>()
    };
    let by_sid = |policies: &Value| -> BTreeMap<String, Value> {
        all(policies)
            .into_iter()
            .filter_map(|s| Some((s.get("Sid")?.as_str()?.to_owned(), s)))
            .collect()
    };
    let shape = |statement: &Value| {
        let conditions: BTreeSet<(String, String)> = statement
            .get("Condition")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .flat_map(|(operator, keys)| {
                keys.as_object()
                    .into_iter()
                    .flatten()
                    .map(move |(key, _)| (operator.clone(), key.clone()))
            })
            .collect();
        let actions: BTreeSet<String> = strings(statement.get("Action")).into_iter().collect();
        (statement.get("Effect").cloned(), actions, conditions)
    };
    let originals = by_sid(original);
    let mut problems = Vec::new();
    for statement in all(copy) {
        let Some(sid) = statement.get("Sid").and_then(Value::as_str) else {
            problems.push(format!("a statement without a Sid: {statement}"));
            continue;
        };
        match originals.get(sid) {
            None => problems.push(format!("Sid {sid} is not one of the original's")),
            Some(o) if shape(o) != shape(&statement) => problems.push(format!(
                "Sid {sid} differs from the original's in its effect, actions or \
                 conditions: {statement} vs {o}"
            )),
            Some(_) => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests;
