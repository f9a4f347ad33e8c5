//! CloudFormation's intrinsic functions, evaluated as far as the static checks need: every
//! literal string a value can take (for IAM resources), and the rule functions of a
//! template's `Rules` for given parameter values.

use serde_json::Value;
use std::collections::BTreeMap;

/// Stands for a value only known at deploy time (Ref, GetAtt, ...): a concrete resource.
pub const RESOLVED: &str = "<resolved at deploy time>";

/// Every literal string `value` can take, intrinsics resolved as far as possible: both
/// branches of an `Fn::If`, each combination of an `Fn::Join`'s parts, `${AWS::...}` pseudo
/// parameters as example values; what only the deploy knows is [`RESOLVED`].
pub fn possible_strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(possible_strings).collect(),
        Value::Object(map) if map.len() == 1 => {
            let Some((function, args)) = map.iter().next() else {
                return vec![RESOLVED.to_string()];
            };
            match function.as_str() {
                "Ref" if args == "AWS::NoValue" => vec![],
                "Fn::Sub" => {
                    let text = args
                        .as_str()
                        .or_else(|| args.get(0).and_then(Value::as_str))
                        .unwrap_or(RESOLVED);
                    vec![substitute_pseudo_parameters(text)]
                }
                "Fn::If" => array_items(args)
                    .iter()
                    .skip(1)
                    .flat_map(possible_strings)
                    .collect(),
                "Fn::Join" => join(args),
                _ => vec![RESOLVED.to_string()],
            }
        }
        _ => vec![RESOLVED.to_string()],
    }
}

fn join(args: &Value) -> Vec<String> {
    let sep = args.get(0).and_then(Value::as_str).unwrap_or("");
    let mut joined = vec![String::new()];
    for (i, part) in array_items(args.get(1).unwrap_or(&Value::Null))
        .iter()
        .enumerate()
    {
        let options = possible_strings(part);
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

fn array_items(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// `${AWS::Partition}` and friends become example values; `${Anything}` else stands for a
/// concrete name.
fn substitute_pseudo_parameters(text: &str) -> String {
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

/// The strings of a string-or-list field (`Action`), literal ones only.
pub fn strings(value: Option<&Value>) -> Vec<String> {
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

/// The functions CloudFormation allows in a rule.
pub const RULE_FUNCTIONS: [&str; 11] = [
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

/// A rule expression's value: a string, or a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleValue {
    Text(String),
    Verdict(bool),
}

/// Why a rule expression could not be evaluated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("{0} is not a rule function")]
    NotARuleFunction(String),
    #[error("{0}: not evaluated here; extend the evaluator")]
    NotEvaluated(String),
    #[error("no value for parameter {0}")]
    NoValue(String),
    #[error("malformed {0}")]
    Malformed(String),
}

/// `expression`'s value for these parameter values, with CloudFormation's rule functions
/// (and no other: a template using another would be rejected by CloudFormation).
pub fn evaluate_rule(
    expression: &Value,
    params: &BTreeMap<&str, &str>,
) -> Result<RuleValue, RuleError> {
    let malformed = || RuleError::Malformed(expression.to_string());
    match expression {
        Value::String(s) => Ok(RuleValue::Text(s.clone())),
        Value::Object(m) if m.len() == 1 => {
            let (f, args) = m.iter().next().ok_or_else(malformed)?;
            if !RULE_FUNCTIONS.contains(&f.as_str()) {
                return Err(RuleError::NotARuleFunction(f.clone()));
            }
            let arg = |i: usize| {
                args.as_array()
                    .and_then(|list| list.get(i))
                    .ok_or_else(malformed)
            };
            match f.as_str() {
                "Ref" => {
                    let name = args.as_str().ok_or_else(malformed)?;
                    params
                        .get(name)
                        .map(|v| RuleValue::Text(v.to_string()))
                        .ok_or_else(|| RuleError::NoValue(name.to_string()))
                }
                "Fn::Equals" => Ok(RuleValue::Verdict(
                    evaluate_rule(arg(0)?, params)? == evaluate_rule(arg(1)?, params)?,
                )),
                "Fn::Not" => match evaluate_rule(arg(0)?, params)? {
                    RuleValue::Verdict(b) => Ok(RuleValue::Verdict(!b)),
                    RuleValue::Text(_) => Err(malformed()),
                },
                other => Err(RuleError::NotEvaluated(other.to_string())),
            }
        }
        _ => Err(malformed()),
    }
}

/// The assertion descriptions (`rule: description`) of the template's `Rules` that refuse
/// these parameter values.
pub fn refused(template: &Value, params: &BTreeMap<&str, &str>) -> Result<Vec<String>, RuleError> {
    let mut out = Vec::new();
    let rules = template["Rules"]
        .as_object()
        .ok_or_else(|| RuleError::Malformed("the template's Rules".into()))?;
    for (name, rule) in rules {
        let applies = match rule.get("RuleCondition") {
            None => true,
            Some(c) => evaluate_rule(c, params)? == RuleValue::Verdict(true),
        };
        if !applies {
            continue;
        }
        let assertions = rule["Assertions"]
            .as_array()
            .ok_or_else(|| RuleError::Malformed(format!("{name}'s Assertions")))?;
        for a in assertions {
            if evaluate_rule(&a["Assert"], params)? != RuleValue::Verdict(true) {
                out.push(format!(
                    "{name}: {}",
                    a["AssertDescription"].as_str().unwrap_or("")
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn possible_strings_resolves_what_it_can() {
        let sub = json!({"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${Name}"});
        assert_eq!(
            possible_strings(&sub),
            ["arn:aws:sqs:us-east-1:123456789012:Name"]
        );
        let sub_with_map = json!({"Fn::Sub": ["x-${A}", {"A": "ignored"}]});
        assert_eq!(possible_strings(&sub_with_map), ["x-A"]);
        let both = json!({"Fn::If": ["C", "a", {"Fn::GetAtt": ["F", "Arn"]}]});
        assert_eq!(possible_strings(&both), ["a", RESOLVED]);
        let no_value = json!(["a", {"Fn::If": ["C", "b", {"Ref": "AWS::NoValue"}]}]);
        assert_eq!(possible_strings(&no_value), ["a", "b"]);
        assert_eq!(possible_strings(&json!({"Ref": "Queue"})), [RESOLVED]);
        assert_eq!(possible_strings(&json!(7)), [RESOLVED]);
    }

    #[test]
    fn possible_strings_joins_every_combination() {
        let join = json!({"Fn::Join": [":", ["a", {"Fn::If": ["C", "b", "c"]}, "d"]]});
        assert_eq!(possible_strings(&join), ["a:b:d", "a:c:d"]);
    }

    #[test]
    fn strings_reads_a_string_or_a_list() {
        assert_eq!(strings(Some(&json!("s:A"))), ["s:A"]);
        assert_eq!(strings(Some(&json!(["s:A", 1, "s:B"]))), ["s:A", "s:B"]);
        assert!(strings(None).is_empty());
    }

    fn params<'a>(pairs: &[(&'a str, &'a str)]) -> BTreeMap<&'a str, &'a str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn evaluates_equals_not_and_ref() {
        let p = params(&[("Policy", "close")]);
        let equals = json!({"Fn::Equals": [{"Ref": "Policy"}, "close"]});
        assert_eq!(evaluate_rule(&equals, &p), Ok(RuleValue::Verdict(true)));
        let not = json!({"Fn::Not": [equals]});
        assert_eq!(evaluate_rule(&not, &p), Ok(RuleValue::Verdict(false)));
        assert_eq!(
            evaluate_rule(&json!({"Ref": "Other"}), &p),
            Err(RuleError::NoValue("Other".into()))
        );
    }

    #[test]
    fn refuses_to_evaluate_what_a_rule_may_not_use() {
        let p = params(&[]);
        assert_eq!(
            evaluate_rule(&json!({"Fn::If": ["C", "a", "b"]}), &p),
            Err(RuleError::NotARuleFunction("Fn::If".into()))
        );
        assert_eq!(
            evaluate_rule(&json!({"Fn::Or": []}), &p),
            Err(RuleError::NotEvaluated("Fn::Or".into()))
        );
        assert!(matches!(
            evaluate_rule(&json!({"Fn::Not": ["text"]}), &p),
            Err(RuleError::Malformed(_))
        ));
    }

    #[test]
    fn refused_names_the_failing_assertions_of_applying_rules() {
        let template = json!({"Rules": {
            "NeedsFunction": {
                "RuleCondition": {"Fn::Equals": [{"Ref": "Policy"}, "health-check"]},
                "Assertions": [{
                    "Assert": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Function"}, ""]}]},
                    "AssertDescription": "requires Function"
                }]
            }
        }});
        let refusals = |policy, function| {
            refused(
                &template,
                &params(&[("Policy", policy), ("Function", function)]),
            )
        };
        assert_eq!(
            refusals("health-check", ""),
            Ok(vec!["NeedsFunction: requires Function".to_string()])
        );
        assert_eq!(refusals("health-check", "f"), Ok(vec![]));
        assert_eq!(refusals("close", ""), Ok(vec![]));
    }
}
