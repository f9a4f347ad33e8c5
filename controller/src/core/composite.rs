//! Composite alarms: which alarms a rule names, and which of them raised an ALARM.
//!
//! A composite alarm has no datapoints of its own. Re-arming one means re-arming its children
//! too (a child left in ALARM raises no new transition, so the composite would never fire
//! again), and judging whether its ALARM rests on an outage's old datapoints means judging
//! the children that triggered it.

/// The alarm names an `AlarmRule` refers to (`ALARM("x")`, `OK(x)`, `INSUFFICIENT_DATA("x")`),
/// in rule order, without repeats; a reference by ARN is given as the alarm's name. `TRUE`
/// and `FALSE` and the operators name nothing.
pub fn children(rule: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut rest = rule;
    while let Some(paren) = rest.find('(') {
        let function = rest[..paren]
            .rsplit(|c: char| !(c.is_ascii_alphabetic() || c == '_'))
            .next()
            .unwrap_or_default();
        rest = &rest[paren + 1..];
        if !matches!(function, "ALARM" | "OK" | "INSUFFICIENT_DATA") {
            continue;
        }
        let Some(end) = rest.find(')') else { break };
        let reference = rest[..end].trim().trim_matches('"').trim();
        rest = &rest[end + 1..];
        let name = alarm_name(reference);
        if !name.is_empty() && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// An alarm's name from its name or ARN (`arn:aws:cloudwatch:region:account:alarm:name`).
pub fn alarm_name(reference: &str) -> &str {
    match reference.strip_prefix("arn:") {
        Some(_) => reference.splitn(7, ':').nth(6).unwrap_or_default(),
        None => reference,
    }
}

/// The children that put a composite in ALARM, as its `reasonData` lists them
/// (`{"triggeringAlarms": [{"arn": ..., "state": {"value": "ALARM", "timestamp": ...}}]}`):
/// each one's name and when it entered ALARM (epoch ms). `None` when the text is not a
/// composite's reason data.
pub fn triggering_alarms(reason_data: &str) -> Option<Vec<(String, Option<u64>)>> {
    let data: serde_json::Value = serde_json::from_str(reason_data).ok()?;
    let alarms = data.get("triggeringAlarms")?.as_array()?;
    Some(
        alarms
            .iter()
            .filter_map(|a| {
                let arn = a.get("arn")?.as_str()?;
                let since = a
                    .pointer("/state/timestamp")
                    .and_then(serde_json::Value::as_str)
                    .and_then(super::epoch_ms);
                Some((alarm_name(arn).to_string(), since))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_template_s_rule_names_both_children() {
        let rule = r#"ALARM("arn:aws:cloudwatch:us-east-1:123456789012:alarm:orders-consumer-failed-records") OR ALARM("arn:aws:cloudwatch:us-east-1:123456789012:alarm:orders-consumer-stalled")"#;
        assert_eq!(
            children(rule),
            ["orders-consumer-failed-records", "orders-consumer-stalled"]
        );
    }

    #[test]
    fn every_function_counts_and_names_repeat_once() {
        let rule = "(ALARM(cpu) AND NOT OK(\"disk\")) OR INSUFFICIENT_DATA(cpu) OR TRUE";
        assert_eq!(children(rule), ["cpu", "disk"]);
        assert!(children("TRUE").is_empty());
    }

    #[test]
    fn the_documented_composite_event_lists_its_triggering_child() {
        // AWS's sample composite event's reasonData.
        let data = r#"{"triggeringAlarms": [{"arn": "arn:aws:cloudwatch:us-east-1:111122223333:alarm:CompositeDemo.FirstChild","state": {"value": "ALARM","timestamp": "2023-08-04T12:54:46.138+0000"}}]}"#;
        assert_eq!(
            triggering_alarms(data),
            Some(vec![(
                "CompositeDemo.FirstChild".to_string(),
                Some(1_691_153_686_138)
            )])
        );
        // A metric alarm's reason data is not a composite's.
        assert_eq!(triggering_alarms(r#"{"evaluatedDatapoints": []}"#), None);
    }

    proptest! {
        /// Whatever names (without quotes, parentheses or colons) a rule joins with AND/OR,
        /// by name or by ARN, they come back in order, once each.
        #[test]
        fn names_survive_any_rule(
            names in prop::collection::vec("[a-zA-Z0-9_.-]{1,20}", 1..6),
            by_arn in any::<bool>(),
        ) {
            let rule = names
                .iter()
                .map(|n| if by_arn {
                    format!("ALARM(\"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{n}\")")
                } else {
                    format!("ALARM({n})")
                })
                .collect::<Vec<_>>()
                .join(" OR ");
            let mut expected: Vec<String> = Vec::new();
            for n in &names {
                if !expected.contains(n) {
                    expected.push(n.clone());
                }
            }
            prop_assert_eq!(children(&rule), expected);
        }
    }
}
