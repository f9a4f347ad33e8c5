//! AWS's own documented shapes, not the emulator bridge's: the "CloudWatch Alarm State
//! Change" events of CloudWatch's "Alarm events and EventBridge" page (single metric,
//! composite, anomaly detection; `fixtures/aws/cloudwatch-alarm-*.json`) and the SQS record
//! Lambda documents (`fixtures/aws/example-sqs-event.json`, as aws-lambda-rust-runtime ships
//! it), which the probe's record must equal field for field.

use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName as A};
use controller::core::{alarm_transition, OwnAlarm};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/aws/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn own(name: &str) -> OwnAlarm<'_> {
    OwnAlarm {
        name,
        partition: "aws",
        region: "us-east-1",
        account: "123456789012",
    }
}

#[test]
fn a_single_metric_alarm_event_is_read_as_documented() {
    let event = fixture("cloudwatch-alarm-single-metric.json");
    let t = alarm_transition(&event, &own("ServerCpuTooHigh")).expect("documented event");
    assert_eq!(t.alarm_name, "ServerCpuTooHigh");
    assert!(t
        .reason
        .starts_with("Threshold Crossed: 1 out of the last 1 datapoints"));
    // When it entered ALARM: detail.state.timestamp, not the event's time.
    assert_eq!(t.time_ms, 1_570_035_880_989);
    let data: Value = serde_json::from_str(t.reason_data.as_deref().expect("reasonData")).unwrap();
    assert_eq!(data["evaluatedDatapoints"][0]["value"], 99.50160229693434);
    // Another alarm's event opens nothing.
    assert!(alarm_transition(&event, &own("SomethingElse")).is_err());
}

#[test]
fn a_composite_alarm_event_parses_as_a_transition() {
    // What the code does today: the transition is read (name, reason, time); its reasonData
    // names the triggering children instead of datapoints.
    let event = fixture("cloudwatch-alarm-composite.json");
    let t = alarm_transition(&event, &own("ServiceAggregatedAlarm")).expect("composite event");
    assert_eq!(t.alarm_name, "ServiceAggregatedAlarm");
    assert!(t.reason.contains("transitioned to ALARM"));
    let data: Value = serde_json::from_str(t.reason_data.as_deref().expect("reasonData")).unwrap();
    assert!(data["triggeringAlarms"].is_array());
    assert!(data.get("evaluatedDatapoints").is_none());
}

#[test]
fn an_anomaly_detection_alarm_event_parses_as_a_transition() {
    let event = fixture("cloudwatch-alarm-anomaly-detection.json");
    let t = alarm_transition(&event, &own("EC2 CPU Utilization Anomaly")).expect("anomaly event");
    assert!(t.reason.starts_with("Thresholds Crossed"));
    let data: Value = serde_json::from_str(t.reason_data.as_deref().expect("reasonData")).unwrap();
    // A band, not a threshold: nothing here says which datapoints breached a fixed line.
    assert!(data.get("threshold").is_none() && data["recentUpperThresholds"].is_array());
}

#[test]
fn the_probe_builds_the_record_aws_documents_field_for_field() {
    let sample = fixture("example-sqs-event.json")["Records"][0].clone();
    let s = |pointer: &str| {
        sample
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap()
            .to_string()
    };
    let message = Message::builder()
        .message_id(s("/messageId"))
        .receipt_handle(s("/receiptHandle"))
        .body(s("/body"))
        .md5_of_body(s("/md5OfBody"))
        .md5_of_message_attributes(s("/md5OfMessageAttributes"))
        .attributes(
            A::ApproximateReceiveCount,
            s("/attributes/ApproximateReceiveCount"),
        )
        .attributes(A::SentTimestamp, s("/attributes/SentTimestamp"))
        .attributes(A::SenderId, s("/attributes/SenderId"))
        .attributes(
            A::ApproximateFirstReceiveTimestamp,
            s("/attributes/ApproximateFirstReceiveTimestamp"),
        )
        .message_attributes(
            "Attribute3",
            MessageAttributeValue::builder()
                .data_type("Binary")
                .binary_value(Blob::new("1100"))
                .string_list_values("abc")
                .string_list_values("123")
                .binary_list_values(Blob::new("0"))
                .binary_list_values(Blob::new("1"))
                .binary_list_values(Blob::new("0"))
                .build()
                .unwrap(),
        )
        .message_attributes(
            "Attribute2",
            MessageAttributeValue::builder()
                .data_type("Number")
                .string_value("123")
                .binary_list_values(Blob::new("1"))
                .binary_list_values(Blob::new("0"))
                .build()
                .unwrap(),
        )
        .message_attributes(
            "Attribute1",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value("AttributeValue1")
                .build()
                .unwrap(),
        )
        .build();
    let record =
        controller::adapters::queue::to_record(&message, &s("/eventSourceARN"), &s("/awsRegion"));
    let built = serde_json::to_value(&record).unwrap();
    // Every documented field, with its documented value; nothing else.
    let mut expected = sample.clone();
    let mut got = built.clone();
    // Lambda's sample omits empty optional values that the record type writes as null.
    for value in [&mut expected, &mut got] {
        strip_nulls(value);
    }
    assert_eq!(got, expected, "built {built:#}");
}

fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}
