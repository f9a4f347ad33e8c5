//! Is this execution's input an ALARM transition of the breaker's own alarm?
//!
//! EventBridge delivers at least once and anyone allowed to start the state machine can send
//! anything, so the input is checked before anything is touched.

use serde_json::Value;

/// The facts the breaker uses from a "CloudWatch Alarm State Change" event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmTransition {
    pub alarm_name: String,
    pub reason: String,
    pub time: String,
}

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEvent {
    #[error("the input has no {0}")]
    Missing(&'static str),
    #[error("the input is a {0:?} event, not a \"CloudWatch Alarm State Change\"")]
    NotAnAlarmChange(String),
    #[error("the alarm {actual:?} is not the breaker's alarm {expected:?}")]
    OtherAlarm { expected: String, actual: String },
    #[error("the alarm moved to {0}, not ALARM")]
    NotAlarmState(String),
}

fn text<'a>(event: &'a Value, pointer: &str, name: &'static str) -> Result<&'a str, InvalidEvent> {
    event
        .pointer(pointer)
        .and_then(Value::as_str)
        .ok_or(InvalidEvent::Missing(name))
}

/// Accepts only an ALARM transition of `alarm_name`.
pub fn alarm_transition(event: &Value, alarm_name: &str) -> Result<AlarmTransition, InvalidEvent> {
    let detail_type = text(event, "/detail-type", "detail-type")?;
    if detail_type != "CloudWatch Alarm State Change" {
        return Err(InvalidEvent::NotAnAlarmChange(detail_type.to_string()));
    }
    let actual = text(event, "/detail/alarmName", "detail.alarmName")?;
    if actual != alarm_name {
        return Err(InvalidEvent::OtherAlarm {
            expected: alarm_name.to_string(),
            actual: actual.to_string(),
        });
    }
    let state = text(event, "/detail/state/value", "detail.state.value")?;
    if state != "ALARM" {
        return Err(InvalidEvent::NotAlarmState(state.to_string()));
    }
    Ok(AlarmTransition {
        alarm_name: actual.to_string(),
        reason: event
            .pointer("/detail/state/reason")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        time: event
            .get("time")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(detail_type: &str, alarm: &str, state: &str) -> Value {
        // The documented shape of the event CloudWatch sends to EventBridge.
        json!({
            "version": "0",
            "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
            "detail-type": detail_type,
            "source": "aws.cloudwatch",
            "account": "123456789012",
            "time": "2026-11-26T18:43:48Z",
            "region": "us-east-1",
            "resources": [format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{alarm}")],
            "detail": {
                "alarmName": alarm,
                "state": {"value": state, "reason": "Threshold Crossed", "timestamp": "2026-11-26T18:43:48.000+0000"},
                "previousState": {"value": "OK", "reason": "", "timestamp": "2026-11-26T18:40:00.000+0000"},
                "configuration": {"metrics": []}
            }
        })
    }

    #[test]
    fn accepts_an_alarm_transition_of_our_alarm() {
        let got = alarm_transition(
            &event("CloudWatch Alarm State Change", "mine", "ALARM"),
            "mine",
        );
        assert_eq!(
            got,
            Ok(AlarmTransition {
                alarm_name: "mine".into(),
                reason: "Threshold Crossed".into(),
                time: "2026-11-26T18:43:48Z".into()
            })
        );
    }

    #[test]
    fn refuses_other_alarms_states_and_events() {
        let change = "CloudWatch Alarm State Change";
        assert!(matches!(
            alarm_transition(&event(change, "theirs", "ALARM"), "mine"),
            Err(InvalidEvent::OtherAlarm { .. })
        ));
        assert_eq!(
            alarm_transition(&event(change, "mine", "OK"), "mine"),
            Err(InvalidEvent::NotAlarmState("OK".into()))
        );
        assert!(matches!(
            alarm_transition(
                &event("EC2 Instance State-change Notification", "mine", "ALARM"),
                "mine"
            ),
            Err(InvalidEvent::NotAnAlarmChange(_))
        ));
    }

    #[test]
    fn refuses_inputs_missing_fields() {
        assert_eq!(
            alarm_transition(&json!({}), "mine"),
            Err(InvalidEvent::Missing("detail-type"))
        );
        assert_eq!(
            alarm_transition(
                &json!({"detail-type": "CloudWatch Alarm State Change"}),
                "mine"
            ),
            Err(InvalidEvent::Missing("detail.alarmName"))
        );
        assert_eq!(
            alarm_transition(&json!("text"), "mine"),
            Err(InvalidEvent::Missing("detail-type"))
        );
    }
}
