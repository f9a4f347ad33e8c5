//! The evaluation against CloudWatch's documented behaviour and its own reason texts.

use super::*;
use proptest::prelude::*;

fn alarm(n: u32, m: u32, missing: MissingData) -> AlarmDefinition {
    AlarmDefinition {
        name: "orders-consumer-errors".into(),
        arn: "arn:aws:cloudwatch:us-east-1:123456789012:alarm:orders-consumer-errors".into(),
        description: None,
        source: AlarmSource::Metric(MetricStat {
            namespace: "AWS/Lambda".into(),
            metric_name: "Errors".into(),
            dimensions: vec![("FunctionName".into(), "orders".into())],
            statistic: "Sum".into(),
            period_s: 60,
        }),
        period_s: 60,
        evaluation_periods: n,
        datapoints_to_alarm: m,
        threshold: 1.0,
        comparison: Comparison::GreaterThanOrEqual,
        missing_data: missing,
    }
}

fn point(period_start_s: i64, value: f64) -> Datapoint {
    Datapoint {
        period_start_s,
        value,
        sample_count: 1.0,
    }
}

const END: i64 = 1_700_000_040; // a minute boundary

#[test]
fn m_out_of_n_breaching_periods_alarm() {
    let a = alarm(3, 2, MissingData::NotBreaching);
    let two = [point(END - 60, 3.0), point(END - 180, 1.0)];
    assert_eq!(
        evaluate(&a, &two, END, AlarmState::Ok, 0).state,
        AlarmState::Alarm
    );
    let one = [point(END - 60, 3.0), point(END - 120, 0.0)];
    assert_eq!(
        evaluate(&a, &one, END, AlarmState::Ok, 0).state,
        AlarmState::Ok
    );
}

#[test]
fn datapoints_outside_the_last_n_periods_do_not_count() {
    let a = alarm(1, 1, MissingData::NotBreaching);
    // The period still in progress, and one before the range.
    let points = [point(END, 5.0), point(END - 120, 5.0)];
    assert_eq!(
        evaluate(&a, &points, END, AlarmState::Alarm, 0).state,
        AlarmState::Ok
    );
}

#[test]
fn missing_data_follows_the_alarms_treatment() {
    let cases = [
        (MissingData::NotBreaching, AlarmState::Ok),
        (MissingData::Breaching, AlarmState::Alarm),
        (MissingData::Missing, AlarmState::InsufficientData),
        (MissingData::Ignore, AlarmState::Alarm), // keeps the current state
    ];
    for (missing, expected) in cases {
        let a = alarm(3, 2, missing);
        assert_eq!(
            evaluate(&a, &[], END, AlarmState::Alarm, 0).state,
            expected,
            "{missing:?}"
        );
    }
    // Breaching missing periods count towards M.
    let a = alarm(3, 2, MissingData::Breaching);
    assert_eq!(
        evaluate(&a, &[point(END - 60, 0.0)], END, AlarmState::Ok, 0).state,
        AlarmState::Alarm
    );
}

#[test]
fn the_reason_reads_like_cloudwatchs() {
    let a = alarm(1, 1, MissingData::NotBreaching);
    let e = evaluate(
        &a,
        &[point(1_570_035_540, 99.5)],
        1_570_035_600,
        AlarmState::Ok,
        0,
    );
    assert_eq!(
        e.reason,
        "Threshold Crossed: 1 out of the last 1 datapoints [99.5 (02/10/19 16:59:00)] was greater than or equal to the threshold (1.0) (minimum 1 datapoint for OK -> ALARM transition)."
    );
    let e = evaluate(
        &a,
        &[point(1_570_035_540, 0.0)],
        1_570_035_600,
        AlarmState::Alarm,
        0,
    );
    assert!(e.reason.contains("1 out of the last 1 datapoints [0.0 (02/10/19 16:59:00)] was not greater than or equal to the threshold (1.0)"), "{}", e.reason);
    assert!(e.reason.ends_with("for ALARM -> OK transition)."));
    let e = evaluate(&a, &[], 1_570_035_600, AlarmState::Alarm, 0);
    assert_eq!(e.reason, "Threshold Crossed: no datapoints were received for 1 period and 1 missing datapoint were treated as [NonBreaching].");
}

#[test]
fn reason_data_is_the_documented_json() {
    let a = alarm(1, 1, MissingData::NotBreaching);
    let e = evaluate(
        &a,
        &[point(1_570_035_540, 99.5)],
        1_570_035_600,
        AlarmState::Ok,
        1_570_035_880_985,
    );
    let data: serde_json::Value = serde_json::from_str(&e.reason_data).unwrap();
    assert_eq!(data["version"], "1.0");
    assert_eq!(data["queryDate"], "2019-10-02T17:04:40.985+0000");
    assert_eq!(data["startDate"], "2019-10-02T16:59:00.000+0000");
    assert_eq!(data["statistic"], "Sum");
    assert_eq!(data["period"], 60);
    assert_eq!(data["recentDatapoints"], serde_json::json!([99.5]));
    assert_eq!(data["threshold"], 1.0);
    assert_eq!(
        data["evaluatedDatapoints"][0]["timestamp"],
        "2019-10-02T16:59:00.000+0000"
    );
}

#[test]
fn timestamps_use_cloudwatchs_formats() {
    assert_eq!(event_time(1_570_035_880_989), "2019-10-02T17:04:40Z");
    assert_eq!(
        state_timestamp(1_570_035_880_989),
        "2019-10-02T17:04:40.989+0000"
    );
    assert_eq!(event_time(0), "1970-01-01T00:00:00Z");
    assert_eq!(event_time(951_782_400_000), "2000-02-29T00:00:00Z");
    assert_eq!(reason_time(1_798_761_599), "31/12/26 23:59:59");
}

proptest! {
    /// More breaching datapoints never make an alarm less alarmed.
    #[test]
    fn evaluation_is_monotonic_in_breaching_values(
        values in proptest::collection::vec(0.0f64..3.0, 0..6),
        n in 1u32..6,
        m in 1u32..6,
        bump in 0usize..6,
    ) {
        let a = alarm(n, m.min(n), MissingData::NotBreaching);
        let points: Vec<_> = values.iter().enumerate()
            .map(|(i, v)| point(END - 60 * (i as i64 + 1), *v)).collect();
        let before = evaluate(&a, &points, END, AlarmState::Ok, 0).state;
        let mut raised = points.clone();
        if let Some(p) = raised.get_mut(bump) { p.value = 5.0; }
        let after = evaluate(&a, &raised, END, AlarmState::Ok, 0).state;
        prop_assert!(!(before == AlarmState::Alarm && after == AlarmState::Ok));
    }

    #[test]
    fn civil_dates_round_trip_through_day_counts(days in -100_000i64..200_000) {
        let (y, m, d) = civil(days);
        prop_assert!((1..=12).contains(&m) && (1..=31).contains(&d));
        // The next day is either the next day of the month or the first of a month.
        let (y2, m2, d2) = civil(days + 1);
        prop_assert!((y2, m2, d2) > (y, m, d));
        prop_assert!(d2 == d + 1 || d2 == 1);
    }
}

#[test]
fn an_alarm_reads_the_namespaces_of_its_metrics() {
    let single = alarm(1, 1, MissingData::NotBreaching);
    assert!(single.reads("AWS/Lambda") && !single.reads("AWS/SQS"));
    let queue = |id: &str| MetricQuery {
        id: id.into(),
        label: None,
        return_data: false,
        expression: None,
        metric_stat: Some(MetricStat {
            namespace: "AWS/SQS".into(),
            metric_name: "NumberOfMessagesReceived".into(),
            dimensions: vec![("QueueName".into(), "orders".into())],
            statistic: "Sum".into(),
            period_s: 60,
        }),
    };
    let share = MetricQuery {
        id: "share".into(),
        label: None,
        return_data: true,
        expression: Some("received * 2".into()),
        metric_stat: None,
    };
    let math = AlarmDefinition {
        source: AlarmSource::Math(vec![queue("received"), share]),
        ..single
    };
    assert!(math.reads("AWS/SQS") && !math.reads("AWS/Lambda"));
}

#[test]
fn a_period_waits_for_its_last_second_of_queue_reports_for_a_while() {
    let end_ms = END * 1000;
    assert!(sqs_period_complete(END, END - 1, end_ms + 1_500));
    assert!(sqs_period_complete(END, END + 3, end_ms + 1_500));
    assert!(!sqs_period_complete(END, END - 2, end_ms + 1_500));
    assert!(!sqs_period_complete(
        END,
        0,
        end_ms + SQS_REPORT_WAIT_MS - 1
    ));
    assert!(sqs_period_complete(END, 0, end_ms + SQS_REPORT_WAIT_MS));
}
