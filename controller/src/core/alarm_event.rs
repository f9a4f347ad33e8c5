//! Is this execution's input an ALARM transition of the breaker's own alarm?
//!
//! EventBridge delivers at least once (and redelivers for up to a day), and anyone allowed to
//! start the state machine can send anything, so the input is checked before anything is
//! touched: the source, the account, the region, the alarm's ARN and name, the state, and
//! when the alarm entered it.

use serde_json::Value;

/// The facts the breaker uses from a "CloudWatch Alarm State Change" event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmTransition {
    pub alarm_name: String,
    pub reason: String,
    pub time: String,
    /// When the alarm entered ALARM (`detail.state.timestamp`, else the event's `time`), in
    /// epoch milliseconds.
    pub time_ms: u64,
    /// CloudWatch's `detail.state.reasonData` (JSON text): what the evaluation saw. Absent
    /// when the state was set by hand (SetAlarmState without it).
    pub reason_data: Option<String>,
}

/// The breaker's own alarm, as the events that open its circuit must name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnAlarm<'a> {
    pub name: &'a str,
    pub partition: &'a str,
    pub region: &'a str,
    pub account: &'a str,
}

impl OwnAlarm<'_> {
    pub fn arn(&self) -> String {
        format!(
            "arn:{}:cloudwatch:{}:{}:alarm:{}",
            self.partition, self.region, self.account, self.name
        )
    }
}

/// An ALARM this recent is taken as it is; an older one (a redelivery, a delayed start) opens
/// a circuit only if the alarm is still in that ALARM state.
pub const FRESH_FOR_MS: u64 = 10 * 60 * 1000;

/// True when an alarm that entered ALARM at `alarm_ms` needs no second look at `now_ms`.
pub fn is_fresh(alarm_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(alarm_ms) <= FRESH_FOR_MS
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
    #[error("the event's {field} is {actual:?}, not {expected:?}")]
    Foreign {
        field: &'static str,
        expected: String,
        actual: String,
    },
    #[error("the event's resources {0:?} do not name the breaker's alarm {1}")]
    OtherResource(Vec<String>, String),
    #[error("the event's time {0:?} is not a UTC timestamp")]
    BadTime(String),
}

fn text<'a>(event: &'a Value, pointer: &str, name: &'static str) -> Result<&'a str, InvalidEvent> {
    event
        .pointer(pointer)
        .and_then(Value::as_str)
        .ok_or(InvalidEvent::Missing(name))
}

/// Accepts only an ALARM transition of the breaker's own alarm, sent by CloudWatch in the
/// alarm's account and region.
pub fn alarm_transition(event: &Value, alarm: &OwnAlarm) -> Result<AlarmTransition, InvalidEvent> {
    let detail_type = text(event, "/detail-type", "detail-type")?;
    if detail_type != "CloudWatch Alarm State Change" {
        return Err(InvalidEvent::NotAnAlarmChange(detail_type.to_string()));
    }
    for (field, pointer, expected) in [
        ("source", "/source", "aws.cloudwatch"),
        ("account", "/account", alarm.account),
        ("region", "/region", alarm.region),
    ] {
        let actual = text(event, pointer, field)?;
        if actual != expected {
            return Err(InvalidEvent::Foreign {
                field,
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    let arn = alarm.arn();
    let resources: Vec<String> = event
        .get("resources")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if !resources.contains(&arn) {
        return Err(InvalidEvent::OtherResource(resources, arn));
    }
    let actual = text(event, "/detail/alarmName", "detail.alarmName")?;
    if actual != alarm.name {
        return Err(InvalidEvent::OtherAlarm {
            expected: alarm.name.to_string(),
            actual: actual.to_string(),
        });
    }
    let state = text(event, "/detail/state/value", "detail.state.value")?;
    if state != "ALARM" {
        return Err(InvalidEvent::NotAlarmState(state.to_string()));
    }
    let time = text(event, "/time", "time")?.to_string();
    let time_ms = event
        .pointer("/detail/state/timestamp")
        .and_then(Value::as_str)
        .and_then(epoch_ms)
        .or_else(|| epoch_ms(&time))
        .ok_or_else(|| InvalidEvent::BadTime(time.clone()))?;
    Ok(AlarmTransition {
        alarm_name: actual.to_string(),
        reason: event
            .pointer("/detail/state/reason")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        time,
        time_ms,
        reason_data: event
            .pointer("/detail/state/reasonData")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Parses the UTC timestamps CloudWatch and EventBridge write: `2026-05-28T18:43:48Z`,
/// `2026-05-28T18:43:48.000+0000`, `...+00:00`. Other offsets are refused (AWS writes UTC).
pub fn epoch_ms(text: &str) -> Option<u64> {
    let (date, rest) = text.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let clock = rest
        .strip_suffix('Z')
        .or_else(|| rest.strip_suffix("+0000"))
        .or_else(|| rest.strip_suffix("+00:00"))?;
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut parts = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (parts.next()??, parts.next()??, parts.next()??);
    let valid = (1..=12).contains(&m)
        && (1..=31).contains(&d)
        && (0..24).contains(&h)
        && (0..60).contains(&min)
        && (0..=60).contains(&s)
        && fraction.bytes().all(|b| b.is_ascii_digit());
    if !valid {
        return None;
    }
    let millis: i64 = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
    let days = days_from_civil(y, m, d);
    let ms = ((days * 24 + h) * 60 + min) * 60_000 + s * 1000 + millis;
    u64::try_from(ms).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

    const MINE: OwnAlarm = OwnAlarm {
        name: "mine",
        partition: "aws",
        region: "us-east-1",
        account: "123456789012",
    };
    const CHANGE: &str = "CloudWatch Alarm State Change";

    #[test]
    fn accepts_an_alarm_transition_of_our_alarm() {
        let got = alarm_transition(&event(CHANGE, "mine", "ALARM"), &MINE);
        assert_eq!(
            got,
            Ok(AlarmTransition {
                alarm_name: "mine".into(),
                reason: "Threshold Crossed".into(),
                time: "2026-11-26T18:43:48Z".into(),
                time_ms: 1_795_718_628_000,
                reason_data: None,
            })
        );
    }

    #[test]
    fn refuses_other_alarms_states_and_events() {
        assert!(matches!(
            alarm_transition(&event(CHANGE, "theirs", "ALARM"), &MINE),
            Err(InvalidEvent::OtherResource(..))
        ));
        // The right ARN with another name in the detail is not ours either.
        let mut renamed = event(CHANGE, "mine", "ALARM");
        renamed["detail"]["alarmName"] = json!("theirs");
        assert!(matches!(
            alarm_transition(&renamed, &MINE),
            Err(InvalidEvent::OtherAlarm { .. })
        ));
        assert_eq!(
            alarm_transition(&event(CHANGE, "mine", "OK"), &MINE),
            Err(InvalidEvent::NotAlarmState("OK".into()))
        );
        assert!(matches!(
            alarm_transition(
                &event("EC2 Instance State-change Notification", "mine", "ALARM"),
                &MINE
            ),
            Err(InvalidEvent::NotAnAlarmChange(_))
        ));
    }

    #[test]
    fn refuses_events_from_another_source_account_or_region() {
        for (field, value) in [
            ("source", "my.app"),
            ("account", "999999999999"),
            ("region", "eu-west-1"),
        ] {
            let mut forged = event(CHANGE, "mine", "ALARM");
            forged[field] = json!(value);
            assert_eq!(
                alarm_transition(&forged, &MINE),
                Err(InvalidEvent::Foreign {
                    field,
                    expected: match field {
                        "source" => "aws.cloudwatch".to_string(),
                        "account" => MINE.account.to_string(),
                        _ => MINE.region.to_string(),
                    },
                    actual: value.to_string(),
                })
            );
        }
    }

    #[test]
    fn refuses_an_event_without_a_usable_time() {
        let mut timeless = event(CHANGE, "mine", "ALARM");
        timeless["time"] = json!("soon");
        timeless["detail"]["state"]
            .as_object_mut()
            .unwrap()
            .remove("timestamp");
        assert_eq!(
            alarm_transition(&timeless, &MINE),
            Err(InvalidEvent::BadTime("soon".into()))
        );
        // The state's own timestamp wins over the event's time.
        let mut late = event(CHANGE, "mine", "ALARM");
        late["time"] = json!("2026-11-27T00:00:00Z");
        assert_eq!(
            alarm_transition(&late, &MINE).map(|t| t.time_ms),
            Ok(1_795_718_628_000)
        );
    }

    #[test]
    fn an_alarm_is_fresh_for_ten_minutes() {
        let t = 1_795_718_628_000;
        assert!(is_fresh(t, t));
        assert!(is_fresh(t, t + FRESH_FOR_MS));
        assert!(!is_fresh(t, t + FRESH_FOR_MS + 1));
        // A clock a little behind CloudWatch's: still fresh.
        assert!(is_fresh(t, t - 5_000));
    }

    #[test]
    fn refuses_inputs_missing_fields() {
        assert_eq!(
            alarm_transition(&json!({}), &MINE),
            Err(InvalidEvent::Missing("detail-type"))
        );
        assert_eq!(
            alarm_transition(&json!({"detail-type": CHANGE}), &MINE),
            Err(InvalidEvent::Missing("source"))
        );
        assert_eq!(
            alarm_transition(&json!("text"), &MINE),
            Err(InvalidEvent::Missing("detail-type"))
        );
    }

    #[test]
    fn reads_the_timestamps_aws_writes() {
        assert_eq!(epoch_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(epoch_ms("2026-11-26T18:43:48Z"), Some(1_795_718_628_000));
        assert_eq!(
            epoch_ms("2026-11-26T18:43:48.250+0000"),
            Some(1_795_718_628_250)
        );
        assert_eq!(
            epoch_ms("2026-11-26T18:43:48.25+00:00"),
            Some(1_795_718_628_250)
        );
        assert_eq!(epoch_ms("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
        for bad in [
            "",
            "yesterday",
            "2026-11-26",
            "2026-13-01T00:00:00Z",
            "2026-11-26T18:43:48+0100",
            "2026-11-26T18:61:00Z",
        ] {
            assert_eq!(epoch_ms(bad), None, "{bad}");
        }
    }
}
