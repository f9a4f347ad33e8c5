//! A rule target's input transformer rendered as EventBridge renders it ("Amazon
//! EventBridge input transformation", EventBridge user guide), as a pure function: the
//! bridge delivers alarm events itself, so it must also shape them.
//!
//! Variables come from `InputPathsMap` (the JSON paths EventBridge allows: `$`, `.key`,
//! `[index]`) and the predefined `aws.events.*` ones. In a JSON template a placeholder
//! outside quotes becomes the value as JSON; inside quotes it becomes text, unescaped, an
//! object's or array's internal quotes removed. A template without any quote is text.

use serde_json::{Map, Value};
use std::collections::HashMap;

/// A target's `InputTransformer`.
#[derive(Debug, Clone, Copy)]
pub struct Transformer<'a> {
    pub paths: Option<&'a HashMap<String, String>>,
    pub template: &'a str,
}

/// What the predefined variables other than the event itself say.
#[derive(Debug, Clone, Copy)]
pub struct Rule<'a> {
    pub arn: &'a str,
    pub name: &'a str,
    /// `aws.events.event.ingestion-time`: when EventBridge (here, the bridge) took the
    /// event, ISO 8601.
    pub ingestion_time: &'a str,
}

/// A variable: a value, or a path that selects nothing (which EventBridge does not create).
enum Variable {
    Value(Value),
    Missing(String),
}

/// What `path` selects in `event`: `Ok(None)` when it selects nothing, `Err` for syntax
/// EventBridge has and this does not (wildcards) or does not have.
pub fn select<'e>(event: &'e Value, path: &str) -> Result<Option<&'e Value>, String> {
    let mut rest = path
        .strip_prefix('$')
        .ok_or_else(|| format!("JSON path {path:?} does not start with $"))?;
    let mut selected = event;
    while !rest.is_empty() {
        let next = if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let key = &after[..end];
            if key == "*" {
                return Err(format!("JSON path {path:?}: wildcards are not bridged"));
            }
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'))
            {
                return Err(format!("JSON path {path:?}: unsupported key {key:?}"));
            }
            rest = &after[end..];
            selected.get(key)
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after
                .find(']')
                .ok_or_else(|| format!("JSON path {path:?}: unclosed ["))?;
            let index = &after[..end];
            if index == "*" {
                return Err(format!("JSON path {path:?}: wildcards are not bridged"));
            }
            let index: usize = index
                .parse()
                .map_err(|_| format!("JSON path {path:?}: unsupported index {index:?}"))?;
            rest = &after[end + 1..];
            selected.get(index)
        } else {
            return Err(format!(
                "JSON path {path:?}: unsupported syntax at {rest:?}"
            ));
        };
        match next {
            Some(value) => selected = value,
            None => return Ok(None),
        }
    }
    Ok(Some(selected))
}

fn variables(
    event: &Value,
    transformer: &Transformer,
    rule: &Rule,
) -> Result<HashMap<String, Variable>, String> {
    let mut variables = HashMap::new();
    for (name, path) in transformer.paths.into_iter().flatten() {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
        if !valid || name.to_ascii_lowercase().starts_with("aws") {
            return Err(format!(
                "InputPathsMap key {name:?} is not a name EventBridge accepts"
            ));
        }
        let variable = match select(event, path)? {
            Some(value) => Variable::Value(value.clone()),
            None => Variable::Missing(path.clone()),
        };
        variables.insert(name.clone(), variable);
    }
    let without_detail: Map<String, Value> = event
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| *key != "detail")
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    for (name, value) in [
        ("aws.events.rule-arn", Value::from(rule.arn)),
        ("aws.events.rule-name", Value::from(rule.name)),
        (
            "aws.events.event.ingestion-time",
            Value::from(rule.ingestion_time),
        ),
        ("aws.events.event", Value::Object(without_detail)),
        ("aws.events.event.json", event.clone()),
    ] {
        variables.insert(name.to_string(), Variable::Value(value));
    }
    Ok(variables)
}

/// The text a placeholder becomes; `None` leaves `<name>` as written (not a variable).
fn substitute(
    name: &str,
    variables: &HashMap<String, Variable>,
    in_string: bool,
) -> Result<Option<String>, String> {
    let Some(variable) = variables.get(name) else {
        return Ok(None);
    };
    let value = match variable {
        Variable::Value(value) => value,
        // Documented: the variable is not created and does not appear in the output. In a
        // value position that would leave the JSON broken, and what EventBridge then
        // delivers is not documented.
        Variable::Missing(_) if in_string => return Ok(Some(String::new())),
        Variable::Missing(path) => {
            return Err(format!(
                "<{name}>: {path} selects nothing in the event, and <{name}> stands where \
                 a JSON value must"
            ))
        }
    };
    if !in_string {
        return Ok(Some(value.to_string()));
    }
    if name.starts_with("aws.events.event") && name != "aws.events.event.ingestion-time" {
        return Err(format!(
            "<{name}> can only be the value of a JSON field, not inside a string"
        ));
    }
    Ok(Some(match value {
        Value::String(text) => text.clone(),
        Value::Object(_) | Value::Array(_) => value.to_string().replace('"', ""),
        other => other.to_string(),
    }))
}

/// The input EventBridge sends the target for `event`, through `transformer`.
pub fn render(event: &Value, transformer: &Transformer, rule: &Rule) -> Result<String, String> {
    let variables = variables(event, transformer, rule)?;
    let template = transformer.template;
    // Without a quote the template is text, not JSON: every placeholder is text.
    let text_only = !template.contains('"');
    let (mut out, mut in_string, mut escaped) = (String::new(), false, false);
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if c == '<' && !escaped {
            if let Some(end) = rest.find('>') {
                let name = &rest[1..end];
                let is_name = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if is_name {
                    if let Some(text) = substitute(name, &variables, in_string || text_only)? {
                        out.push_str(&text);
                        rest = &rest[end + 1..];
                        continue;
                    }
                }
            }
        }
        if in_string && c == '\\' && !escaped {
            escaped = true;
        } else {
            if c == '"' && !escaped {
                in_string = !in_string;
            }
            escaped = false;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RULE: Rule = Rule {
        arn: "arn:aws:events:us-east-1:123456789012:rule/orders-breaker",
        name: "orders-breaker",
        ingestion_time: "2026-12-06T12:00:01Z",
    };

    fn alarm_event() -> Value {
        json!({
            "version": "0",
            "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
            "detail-type": "CloudWatch Alarm State Change",
            "source": "aws.cloudwatch",
            "account": "123456789012",
            "time": "2026-12-06T12:00:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:orders-failing"],
            "detail": {
                "alarmName": "orders-failing",
                "state": {"value": "ALARM", "reason": "Threshold \"Crossed\""},
                "previousState": {"value": "OK"},
                "configuration": {"metrics": [{"id": "m", "returnData": true}]}
            }
        })
    }

    fn render_with(paths: &[(&str, &str)], template: &str) -> Result<String, String> {
        let paths: HashMap<String, String> = paths
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let transformer = Transformer {
            paths: (!paths.is_empty()).then_some(&paths),
            template,
        };
        render(&alarm_event(), &transformer, &RULE)
    }

    /// The fleet attachment rule's transformer: no paths, the whole event as a field.
    #[test]
    fn renders_the_attachment_rules_template() {
        let template = r#"{"attachment": "orders-consumer", "event": <aws.events.event.json>}"#;
        let rendered = render_with(&[], template).unwrap();
        let parsed: Value = serde_json::from_str(&rendered).unwrap();
        assert_eq!(
            parsed,
            json!({"attachment": "orders-consumer", "event": alarm_event()})
        );
        // An empty InputPathsMap is the same as none.
        let empty = HashMap::new();
        let transformer = Transformer {
            paths: Some(&empty),
            template,
        };
        assert_eq!(
            render(&alarm_event(), &transformer, &RULE).unwrap(),
            rendered
        );
    }

    /// The user guide's string templates: a JSON string, and text without quotes.
    #[test]
    fn renders_string_templates_as_text() {
        let paths = [
            ("alarm", "$.detail.alarmName"),
            ("state", "$.detail.state.value"),
        ];
        assert_eq!(
            render_with(&paths, r#""alarm <alarm> is in <state>""#).unwrap(),
            r#""alarm orders-failing is in ALARM""#
        );
        assert_eq!(
            render_with(&paths, r#""alarm \"<alarm>\" is in <state>""#).unwrap(),
            r#""alarm \"orders-failing\" is in ALARM""#
        );
        assert_eq!(
            render_with(&paths, "<alarm> is in state <state>").unwrap(),
            "orders-failing is in state ALARM"
        );
        assert_eq!(
            render_with(&[], r#""<aws.events.rule-name> triggered""#).unwrap(),
            r#""orders-breaker triggered""#
        );
    }

    #[test]
    fn paths_into_detail_and_arrays_are_json_outside_quotes_and_text_inside() {
        let paths = [
            ("state", "$.detail.state.value"),
            ("alarm", "$.resources[0]"),
            ("metric", "$.detail.configuration.metrics[0]"),
            ("type", "$.detail-type"),
            ("returned", "$.detail.configuration.metrics[0].returnData"),
        ];
        let template = r#"{"state": <state>, "alarm": <alarm>, "metric": <metric>, "flag": [9, <returned>], "text": "<type>: <state>, <metric>, <returned>"}"#;
        let rendered: Value =
            serde_json::from_str(&render_with(&paths, template).unwrap()).expect("valid JSON");
        assert_eq!(
            rendered,
            json!({
                "state": "ALARM",
                "alarm": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:orders-failing",
                "metric": {"id": "m", "returnData": true},
                "flag": [9, true],
                "text": "CloudWatch Alarm State Change: ALARM, {id:m,returnData:true}, true"
            })
        );
    }

    /// EventBridge does not escape what it inserts into a string.
    #[test]
    fn inserts_text_unescaped() {
        let rendered =
            render_with(&[("reason", "$.detail.state.reason")], r#""<reason>""#).unwrap();
        assert_eq!(rendered, r#""Threshold "Crossed"""#);
    }

    #[test]
    fn a_missing_path_vanishes_from_text_and_is_refused_as_a_value() {
        let paths = [("gone", "$.detail.state.reasonData")];
        assert_eq!(
            render_with(&paths, r#"{"text": "data: <gone>."}"#).unwrap(),
            r#"{"text": "data: ."}"#
        );
        let err = render_with(&paths, r#"{"data": <gone>}"#).unwrap_err();
        assert!(
            err.contains("$.detail.state.reasonData selects nothing"),
            "{err}"
        );
        assert!(render_with(&[("gone", "$.resources[3]")], "{\"a\": <gone>}").is_err());
    }

    #[test]
    fn renders_the_predefined_variables() {
        let template = r#"{"arn": <aws.events.rule-arn>, "name": <aws.events.rule-name>, "at": <aws.events.event.ingestion-time>, "event": <aws.events.event>, "full": <aws.events.event.json>, "text": "<aws.events.rule-name> at <aws.events.event.ingestion-time>"}"#;
        let rendered: Value = serde_json::from_str(&render_with(&[], template).unwrap()).unwrap();
        let mut without_detail = alarm_event();
        without_detail.as_object_mut().unwrap().remove("detail");
        assert_eq!(
            rendered,
            json!({
                "arn": RULE.arn,
                "name": "orders-breaker",
                "at": "2026-12-06T12:00:01Z",
                "event": without_detail,
                "full": alarm_event(),
                "text": "orders-breaker at 2026-12-06T12:00:01Z"
            })
        );
    }

    #[test]
    fn refuses_what_it_cannot_render() {
        let in_string = render_with(&[], r#"{"e": "<aws.events.event.json>"}"#).unwrap_err();
        assert!(
            in_string.contains("only be the value of a JSON field"),
            "{in_string}"
        );
        assert!(render_with(&[("all", "$.resources[*]")], "<all>")
            .unwrap_err()
            .contains("wildcards"));
        assert!(render_with(&[("x", "detail.state")], "<x>").is_err());
        assert!(render_with(&[("x", "$.detail['state']")], "<x>").is_err());
        assert!(render_with(&[("aws.events.rule-name", "$.id")], "<x>").is_err());
    }

    /// What is not a defined variable stays as written.
    #[test]
    fn leaves_other_angle_brackets_alone() {
        assert_eq!(
            render_with(&[], r#"{"rule": "a < b", "x": "<undefined>"}"#).unwrap(),
            r#"{"rule": "a < b", "x": "<undefined>"}"#
        );
    }
}
