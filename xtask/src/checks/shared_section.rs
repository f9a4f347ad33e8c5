//! A section two templates carry by copy (the alarm parameters, conditions, resources and
//! output of `infra/template.yaml` and `infra/attachment.yaml`): where the copies differ.
//! A nested template would share the text, but every deploy of an attachment would then
//! upload it to S3 and create one more stack per consumer; a checked copy keeps each one file.

use serde_json::Value;
use std::collections::BTreeSet;

/// The shared entries, by top-level key of the template, and what may differ between them.
#[derive(Debug, Clone, Copy)]
pub struct Section<'a> {
    /// (`Parameters`, `Conditions`, `Resources` or `Outputs`; the entries' names in it).
    pub parts: &'a [(&'a str, &'a [&'a str])],
    /// JSON pointers from the template's root (`/Resources/X/Properties/AlarmDescription`)
    /// whose values may differ, with everything under them.
    pub may_differ: &'a [&'a str],
}

/// Every difference of `section` between two decoded templates, each as a JSON pointer and
/// the two values; none when the copies agree.
pub fn differences(
    (a_name, a): (&str, &Value),
    (b_name, b): (&str, &Value),
    section: &Section,
) -> Vec<String> {
    let mut found = Vec::new();
    for (part, names) in section.parts {
        for name in *names {
            let pointer = format!("/{part}/{}", escape(name));
            match (a.pointer(&pointer), b.pointer(&pointer)) {
                (None, None) => found.push(format!("{pointer}: in neither template")),
                (Some(_), None) => found.push(format!("{pointer}: only in {a_name}")),
                (None, Some(_)) => found.push(format!("{pointer}: only in {b_name}")),
                (Some(x), Some(y)) => compare(&pointer, x, y, section.may_differ, &mut |at| {
                    found.push(format!(
                        "{at}: {a_name} has {}, {b_name} has {}",
                        shown(a.pointer(at)),
                        shown(b.pointer(at))
                    ))
                }),
            }
        }
    }
    found
}

/// The resources of `template` that exist only under one of `conditions` (their
/// `Condition`): with the shared conditions, the resources that belong to the section.
pub fn conditioned_on<'a>(template: &'a Value, conditions: &[&str]) -> BTreeSet<&'a str> {
    template["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, r)| {
            r["Condition"]
                .as_str()
                .is_some_and(|c| conditions.contains(&c))
        })
        .map(|(name, _)| name.as_str())
        .collect()
}

fn compare(at: &str, a: &Value, b: &Value, skip: &[&str], found: &mut impl FnMut(&str)) {
    if skipped(at, skip) {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let here = format!("{at}/{}", escape(key));
                match (x.get(key), y.get(key)) {
                    (Some(v), Some(w)) => compare(&here, v, w, skip, found),
                    _ if skipped(&here, skip) => {}
                    _ => found(&here),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                compare(&format!("{at}/{i}"), v, w, skip, found);
            }
        }
        _ if a == b => {}
        _ => found(at),
    }
}

fn skipped(at: &str, skip: &[&str]) -> bool {
    skip.iter()
        .any(|s| at == *s || at.strip_prefix(s).is_some_and(|rest| rest.starts_with('/')))
}

/// A JSON pointer's escaping of one key.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn shown(value: Option<&Value>) -> String {
    value.map_or_else(|| "nothing".to_owned(), Value::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECTION: Section = Section {
        parts: &[
            ("Parameters", &["AlarmSignal"]),
            ("Conditions", &["CreateAlarm"]),
            ("Resources", &["ConsumerErrorsAlarm"]),
        ],
        may_differ: &["/Resources/ConsumerErrorsAlarm/Properties/AlarmDescription"],
    };

    fn template(threshold: Value, description: &str) -> Value {
        json!({
            "Parameters": {
                "AlarmSignal": {"Type": "String", "Default": "any"},
                "Breaker": {"Type": "String"},
            },
            "Conditions": {"CreateAlarm": {"Fn::Equals": [{"Ref": "AlarmArn"}, ""]}},
            "Resources": {
                "ConsumerErrorsAlarm": {
                    "Type": "AWS::CloudWatch::Alarm",
                    "Condition": "CreateAlarm",
                    "Properties": {
                        "Threshold": threshold,
                        "AlarmDescription": description,
                        "Dimensions": [{"Name": "FunctionName"}],
                    },
                },
                "Other": {"Type": "AWS::SNS::Topic"},
            },
        })
    }

    fn diff(a: &Value, b: &Value) -> Vec<String> {
        differences(("a", a), ("b", b), &SECTION)
    }

    #[test]
    fn identical_copies_and_the_listed_exceptions_agree() {
        let a = template(json!({"Ref": "AlarmThreshold"}), "one");
        let mut b = template(json!({"Ref": "AlarmThreshold"}), "another");
        // What is not in the section is not compared.
        b["Parameters"]["Breaker"] = json!({"Type": "Number"});
        assert_eq!(diff(&a, &b), Vec::<String>::new());
    }

    #[test]
    fn a_changed_value_deep_in_a_resource_is_named_by_its_pointer() {
        let a = template(json!({"Ref": "AlarmThreshold"}), "d");
        let b = template(json!(2), "d");
        assert_eq!(
            diff(&a, &b),
            [
                r#"/Resources/ConsumerErrorsAlarm/Properties/Threshold: a has {"Ref":"AlarmThreshold"}, b has 2"#
            ]
        );
        let mut c = a.clone();
        c["Resources"]["ConsumerErrorsAlarm"]["Properties"]["Dimensions"][0]["Value"] = json!("x");
        assert_eq!(
            diff(&a, &c),
            [
                r#"/Resources/ConsumerErrorsAlarm/Properties/Dimensions/0/Value: a has nothing, b has "x""#
            ]
        );
        c["Conditions"]["CreateAlarm"] = json!(true);
        assert_eq!(diff(&a, &c).len(), 2);
    }

    #[test]
    fn an_entry_missing_from_either_template_is_a_difference() {
        let a = template(json!(1), "d");
        let mut b = a.clone();
        b["Parameters"]
            .as_object_mut()
            .map(|p| p.remove("AlarmSignal"));
        assert_eq!(diff(&a, &b), ["/Parameters/AlarmSignal: only in a"]);
        assert_eq!(diff(&b, &a), ["/Parameters/AlarmSignal: only in b"]);
        assert_eq!(
            diff(&json!({}), &json!({})).len(),
            3,
            "a section in neither template is no agreement"
        );
    }

    #[test]
    fn the_resources_under_a_shared_condition_are_found() {
        let a = template(json!(1), "d");
        assert_eq!(
            conditioned_on(&a, &["CreateAlarm"]),
            BTreeSet::from(["ConsumerErrorsAlarm"])
        );
        assert!(conditioned_on(&a, &["Other"]).is_empty());
        assert!(conditioned_on(&json!({}), &["CreateAlarm"]).is_empty());
    }
}
