//! The "CloudWatch Alarm State Change" event AWS sends to EventBridge, as a pure function,
//! and what a rule target receives of it.

use super::alarm_evaluation::{
    event_time, state_timestamp, AlarmDefinition, AlarmSource, AlarmState, MetricStat,
};
use super::input_transformer::{self, Rule, Transformer};
use serde_json::{json, Map, Value};

/// One side of a transition: `state` or `previousState`.
#[derive(Debug, Clone, PartialEq)]
pub struct StateRecord {
    pub value: AlarmState,
    pub reason: String,
    pub reason_data: Option<String>,
    pub timestamp_ms: i64,
}

/// Region and account of an alarm ARN (`arn:aws:cloudwatch:REGION:ACCOUNT:alarm:NAME`).
pub fn region_and_account(alarm_arn: &str) -> Option<(&str, &str)> {
    let mut parts = alarm_arn.splitn(7, ':');
    let (_arn, _partition, service) = (parts.next()?, parts.next()?, parts.next()?);
    let (region, account, kind) = (parts.next()?, parts.next()?, parts.next()?);
    (service == "cloudwatch" && kind == "alarm").then_some((region, account))
}

fn state_json(record: &StateRecord) -> Value {
    let mut state = Map::new();
    state.insert("reason".into(), json!(record.reason));
    if let Some(data) = &record.reason_data {
        state.insert("reasonData".into(), json!(data));
    }
    state.insert(
        "timestamp".into(),
        json!(state_timestamp(record.timestamp_ms)),
    );
    state.insert("value".into(), json!(record.value.as_str()));
    Value::Object(state)
}

fn dimensions_json(dimensions: &[(String, String)]) -> Value {
    Value::Object(
        dimensions
            .iter()
            .map(|(name, value)| (name.clone(), json!(value)))
            .collect(),
    )
}

fn metric_stat_json(stat: &MetricStat) -> Value {
    json!({
        "metric": {
            "dimensions": dimensions_json(&stat.dimensions),
            "name": stat.metric_name,
            "namespace": stat.namespace,
        },
        "period": stat.period_s,
        "stat": stat.statistic,
    })
}

/// `configuration.metrics`: a single-metric alarm's metric under a random id, or a
/// metric-math alarm's queries under their own ids.
fn metrics_json(alarm: &AlarmDefinition, metric_id: &str) -> Value {
    match &alarm.source {
        AlarmSource::Metric(stat) => json!([{
            "id": metric_id,
            "metricStat": metric_stat_json(stat),
            "returnData": true,
        }]),
        AlarmSource::Math(queries) => Value::Array(
            queries
                .iter()
                .map(|q| {
                    let mut query = Map::new();
                    query.insert("id".into(), json!(q.id));
                    if let Some(expression) = &q.expression {
                        query.insert("expression".into(), json!(expression));
                    }
                    if let Some(label) = &q.label {
                        query.insert("label".into(), json!(label));
                    }
                    if let Some(stat) = &q.metric_stat {
                        query.insert("metricStat".into(), metric_stat_json(stat));
                    }
                    query.insert("returnData".into(), json!(q.return_data));
                    Value::Object(query)
                })
                .collect(),
        ),
    }
}

fn envelope(
    arn: &str,
    name: &str,
    configuration: Map<String, Value>,
    previous: &StateRecord,
    state: &StateRecord,
    event_id: &str,
) -> Value {
    let (region, account) = region_and_account(arn).unwrap_or(("us-east-1", "000000000000"));
    json!({
        "version": "0",
        "id": event_id,
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": account,
        "time": event_time(state.timestamp_ms),
        "region": region,
        "resources": [arn],
        "detail": {
            "alarmName": name,
            "configuration": configuration,
            "previousState": state_json(previous),
            "state": state_json(state),
        },
    })
}

/// The event AWS sends when a metric alarm (single metric or metric math) moves from
/// `previous` to `state`, as documented in "Alarm events and EventBridge" (CloudWatch user
/// guide). `event_id` and `metric_id` are the random ids AWS generates.
pub fn state_change_event(
    alarm: &AlarmDefinition,
    previous: &StateRecord,
    state: &StateRecord,
    event_id: &str,
    metric_id: &str,
) -> Value {
    let mut configuration = Map::new();
    if let Some(description) = &alarm.description {
        configuration.insert("description".into(), json!(description));
    }
    configuration.insert("metrics".into(), metrics_json(alarm, metric_id));
    envelope(
        &alarm.arn,
        &alarm.name,
        configuration,
        previous,
        state,
        event_id,
    )
}

/// A deployed composite alarm, as DescribeAlarms returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompositeDefinition {
    pub name: String,
    pub arn: String,
    pub description: Option<String>,
    pub rule: String,
}

/// The event AWS sends when a composite alarm changes state: its rule in the configuration,
/// the children that triggered it in the state's `reasonData` (`triggeringAlarms`).
pub fn composite_state_change_event(
    alarm: &CompositeDefinition,
    previous: &StateRecord,
    state: &StateRecord,
    event_id: &str,
) -> Value {
    let mut configuration = Map::new();
    configuration.insert("alarmRule".into(), json!(alarm.rule));
    if let Some(description) = &alarm.description {
        configuration.insert("description".into(), json!(description));
    }
    envelope(
        &alarm.arn,
        &alarm.name,
        configuration,
        previous,
        state,
        event_id,
    )
}

/// A random id in the 8-4-4-4-12 hex form AWS uses for event ids.
pub fn random_id() -> String {
    let hex = format!("{:032x}", rand::random::<u128>());
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// What a rule target receives: its constant `Input`, the part `InputPath` selects, its
/// input transformer's rendering ([`input_transformer`]), or the whole event.
pub fn target_input(
    event: &Value,
    input: Option<&str>,
    input_path: Option<&str>,
    transformer: Option<(&Transformer, &Rule)>,
) -> Result<String, String> {
    if let Some((transformer, rule)) = transformer {
        return input_transformer::render(event, transformer, rule);
    }
    if let Some(input) = input {
        return Ok(input.to_string());
    }
    let Some(path) = input_path else {
        return Ok(event.to_string());
    };
    input_transformer::select(event, path)?
        .map(Value::to_string)
        .ok_or_else(|| format!("InputPath {path:?} selects nothing"))
}

#[cfg(test)]
mod tests {
    use super::super::alarm_evaluation::{Comparison, MetricQuery, MissingData};
    use super::*;

    /// The "Single Metric Alarm" example of the CloudWatch user guide ("Alarm events and
    /// EventBridge"), verbatim.
    const DOCUMENTED: &str = r#"{
        "version": "0",
        "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "123456789012",
        "time": "2019-10-02T17:04:40Z",
        "region": "us-east-1",
        "resources": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:ServerCpuTooHigh"],
        "detail": {
            "alarmName": "ServerCpuTooHigh",
            "configuration": {
                "description": "Goes into alarm when server CPU utilization is too high!",
                "metrics": [{
                    "id": "30b6c6b2-a864-43a2-4877-c09a1afc3b87",
                    "metricStat": {
                        "metric": {
                            "dimensions": {"InstanceId": "i-12345678901234567"},
                            "name": "CPUUtilization",
                            "namespace": "AWS/EC2"
                        },
                        "period": 300,
                        "stat": "Average"
                    },
                    "returnData": true
                }]
            },
            "previousState": {
                "reason": "Threshold Crossed: 1 out of the last 1 datapoints [0.0666851903306472 (01/10/19 13:46:00)] was not greater than the threshold (50.0) (minimum 1 datapoint for ALARM -> OK transition).",
                "reasonData": "{\"version\":\"1.0\",\"queryDate\":\"2019-10-01T13:56:40.985+0000\",\"startDate\":\"2019-10-01T13:46:00.000+0000\",\"statistic\":\"Average\",\"period\":300,\"recentDatapoints\":[0.0666851903306472],\"threshold\":50.0}",
                "timestamp": "2019-10-01T13:56:40.987+0000",
                "value": "OK"
            },
            "state": {
                "reason": "Threshold Crossed: 1 out of the last 1 datapoints [99.50160229693434 (02/10/19 16:59:00)] was greater than the threshold (50.0) (minimum 1 datapoint for OK -> ALARM transition).",
                "reasonData": "{\"version\":\"1.0\",\"queryDate\":\"2019-10-02T17:04:40.985+0000\",\"startDate\":\"2019-10-02T16:59:00.000+0000\",\"statistic\":\"Average\",\"period\":300,\"recentDatapoints\":[99.50160229693434],\"threshold\":50.0}",
                "timestamp": "2019-10-02T17:04:40.989+0000",
                "value": "ALARM"
            }
        }
    }"#;

    fn documented_alarm() -> AlarmDefinition {
        AlarmDefinition {
            name: "ServerCpuTooHigh".into(),
            arn: "arn:aws:cloudwatch:us-east-1:123456789012:alarm:ServerCpuTooHigh".into(),
            description: Some("Goes into alarm when server CPU utilization is too high!".into()),
            source: AlarmSource::Metric(MetricStat {
                namespace: "AWS/EC2".into(),
                metric_name: "CPUUtilization".into(),
                dimensions: vec![("InstanceId".into(), "i-12345678901234567".into())],
                statistic: "Average".into(),
                period_s: 300,
            }),
            period_s: 300,
            evaluation_periods: 1,
            datapoints_to_alarm: 1,
            threshold: 50.0,
            comparison: Comparison::GreaterThan,
            missing_data: MissingData::Missing,
        }
    }

    #[test]
    fn builds_the_documented_event() {
        let documented: Value = serde_json::from_str(DOCUMENTED).unwrap();
        let side = |key: &str| {
            let s = &documented["detail"][key];
            StateRecord {
                value: AlarmState::parse(s["value"].as_str().unwrap()).unwrap(),
                reason: s["reason"].as_str().unwrap().into(),
                reason_data: s["reasonData"].as_str().map(str::to_string),
                timestamp_ms: match key {
                    "state" => 1_570_035_880_989,
                    _ => 1_569_938_200_987,
                },
            }
        };
        let built = state_change_event(
            &documented_alarm(),
            &side("previousState"),
            &side("state"),
            "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
            "30b6c6b2-a864-43a2-4877-c09a1afc3b87",
        );
        assert_eq!(built, documented);
    }

    /// The queries of a metric-math alarm, in the shape of the user guide's "Metric Math
    /// Alarm" example: the expression and the metrics under their own ids.
    #[test]
    fn a_metric_math_alarms_event_lists_its_queries() {
        let stat = |name: &str| MetricStat {
            namespace: "AWS/SQS".into(),
            metric_name: name.into(),
            dimensions: vec![("QueueName".into(), "orders".into())],
            statistic: "Sum".into(),
            period_s: 60,
        };
        let mut alarm = documented_alarm();
        alarm.source = AlarmSource::Math(vec![
            MetricQuery {
                id: "received".into(),
                label: None,
                return_data: false,
                expression: None,
                metric_stat: Some(stat("NumberOfMessagesReceived")),
            },
            MetricQuery {
                id: "share".into(),
                label: Some("Share (%)".into()),
                return_data: true,
                expression: Some("100 * received".into()),
                metric_stat: None,
            },
        ]);
        let record = StateRecord {
            value: AlarmState::Alarm,
            reason: "Threshold Crossed".into(),
            reason_data: Some("{}".into()),
            timestamp_ms: 0,
        };
        let event = state_change_event(&alarm, &record, &record, "e", "unused");
        assert_eq!(
            event["detail"]["configuration"]["metrics"],
            serde_json::json!([
                {
                    "id": "received",
                    "metricStat": {
                        "metric": {
                            "dimensions": {"QueueName": "orders"},
                            "name": "NumberOfMessagesReceived",
                            "namespace": "AWS/SQS"
                        },
                        "period": 60,
                        "stat": "Sum"
                    },
                    "returnData": false
                },
                {"expression": "100 * received", "id": "share", "label": "Share (%)", "returnData": true}
            ])
        );
    }

    #[test]
    fn a_composite_alarms_event_carries_its_rule_and_triggering_alarms() {
        let alarm = CompositeDefinition {
            name: "s-consumer-failing".into(),
            arn: "arn:aws:cloudwatch:us-east-1:000000000000:alarm:s-consumer-failing".into(),
            description: None,
            rule: "ALARM(\"a\") OR ALARM(\"b\")".into(),
        };
        let data = r#"{"triggeringAlarms":[{"arn":"arn:aws:cloudwatch:us-east-1:000000000000:alarm:a","state":{"value":"ALARM","timestamp":"2026-12-06T12:00:00.000+0000"}}]}"#;
        let previous = StateRecord {
            value: AlarmState::Ok,
            reason: "x".into(),
            reason_data: None,
            timestamp_ms: 0,
        };
        let state = StateRecord {
            value: AlarmState::Alarm,
            reason: "arn:aws:cloudwatch:us-east-1:000000000000:alarm:a transitioned to ALARM"
                .into(),
            reason_data: Some(data.into()),
            timestamp_ms: 1_796_561_139_123,
        };
        let event = composite_state_change_event(&alarm, &previous, &state, "e");
        assert_eq!(event["resources"][0], alarm.arn.as_str());
        assert_eq!(
            event["detail"]["configuration"],
            serde_json::json!({"alarmRule": alarm.rule})
        );
        assert_eq!(event["detail"]["state"]["reasonData"], data);
        assert_eq!(event["detail"]["state"]["value"], "ALARM");
        assert_eq!(event["detail"]["previousState"]["value"], "OK");
        assert_eq!(event["time"], "2026-12-06T12:45:39Z");
    }

    #[test]
    fn a_state_without_reason_data_omits_the_field() {
        let record = StateRecord {
            value: AlarmState::Ok,
            reason: "circuit closed".into(),
            reason_data: None,
            timestamp_ms: 0,
        };
        let event = state_change_event(&documented_alarm(), &record, &record, "e", "m");
        assert!(event["detail"]["state"].get("reasonData").is_none());
        assert_eq!(
            event["detail"]["state"]["timestamp"],
            "1970-01-01T00:00:00.000+0000"
        );
    }

    #[test]
    fn event_ids_look_like_aws_ids() {
        let id = random_id();
        let groups: Vec<_> = id.split('-').map(str::len).collect();
        assert_eq!(groups, vec![8, 4, 4, 4, 12]);
        assert_ne!(random_id(), id);
    }

    #[test]
    fn reads_region_and_account_from_the_alarm_arn() {
        assert_eq!(
            region_and_account("arn:aws:cloudwatch:eu-west-1:111122223333:alarm:a:b"),
            Some(("eu-west-1", "111122223333"))
        );
        assert_eq!(region_and_account("arn:aws:sqs:eu-west-1:1:q"), None);
    }

    #[test]
    fn targets_get_the_event_its_input_or_its_input_path() {
        let event = serde_json::json!({"detail": {"alarmName": "a"}});
        assert_eq!(
            target_input(&event, None, None, None).unwrap(),
            event.to_string()
        );
        assert_eq!(
            target_input(&event, Some("{\"x\":1}"), None, None).unwrap(),
            "{\"x\":1}"
        );
        assert_eq!(
            target_input(&event, None, Some("$.detail"), None).unwrap(),
            r#"{"alarmName":"a"}"#
        );
        assert!(target_input(&event, None, Some("$.nothing"), None).is_err());
        let transformer = Transformer {
            paths: None,
            template: r#"{"a": <aws.events.rule-name>}"#,
        };
        let rule = Rule {
            arn: "arn:aws:events:us-east-1:0:rule/r",
            name: "r",
            ingestion_time: "t",
        };
        assert_eq!(
            target_input(&event, None, None, Some((&transformer, &rule))).unwrap(),
            r#"{"a": "r"}"#
        );
    }
}
