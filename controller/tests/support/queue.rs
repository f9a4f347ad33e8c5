//! SQS, CloudWatch and EventBridge rules: the queue, the metrics, the alarm, the events.
use super::*;

// ---------------------------------------------------------------------------------------------
// SQS

pub fn queue_url() -> Rule {
    use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlOutput;
    mock!(aws_sdk_sqs::Client::get_queue_url)
        .match_requests(|r| {
            r.queue_name() == Some(QUEUE_NAME) && r.queue_owner_aws_account_id() == Some(ACCOUNT)
        })
        .then_output(|| GetQueueUrlOutput::builder().queue_url(QUEUE_URL).build())
}

pub fn queue_attributes() -> Rule {
    use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
    use aws_sdk_sqs::types::QueueAttributeName;
    mock!(aws_sdk_sqs::Client::get_queue_attributes)
        .match_requests(|r| {
            r.queue_url() == Some(QUEUE_URL)
                && r.attribute_names()
                    .contains(&QueueAttributeName::MessageRetentionPeriod)
                && r.attribute_names()
                    .contains(&QueueAttributeName::RedrivePolicy)
        })
        .then_output(|| {
            GetQueueAttributesOutput::builder()
                .attributes(
                    QueueAttributeName::MessageRetentionPeriod,
                    RETENTION_SECONDS.to_string(),
                )
                .attributes(
                    QueueAttributeName::RedrivePolicy,
                    format!(
                        r#"{{"deadLetterTargetArn":"{QUEUE_ARN}-dlq","maxReceiveCount":"{MAX_RECEIVE_COUNT}"}}"#
                    ),
                )
                .build()
        })
}

/// GetQueueAttributes of the backlog's counts: `visible`, nothing in flight or delayed.
pub fn visible_messages(visible: &'static str) -> Rule {
    backlog(visible, "0", "0")
}

/// GetQueueAttributes of the backlog's counts (what CheckBacklog reads, in one call).
pub fn backlog(visible: &'static str, in_flight: &'static str, delayed: &'static str) -> Rule {
    use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
    use aws_sdk_sqs::types::QueueAttributeName;
    mock!(aws_sdk_sqs::Client::get_queue_attributes)
        .match_requests(|r| {
            r.queue_url() == Some(QUEUE_URL)
                && r.attribute_names()
                    == [
                        QueueAttributeName::ApproximateNumberOfMessages,
                        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                        QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                    ]
        })
        .then_output(move || {
            GetQueueAttributesOutput::builder()
                .attributes(QueueAttributeName::ApproximateNumberOfMessages, visible)
                .attributes(
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                    in_flight,
                )
                .attributes(
                    QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                    delayed,
                )
                .build()
        })
}

/// GetQueueAttributes for the in-flight and delayed counts, each reporting `count`.
pub fn hidden_messages(count: &'static str) -> Rule {
    use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
    use aws_sdk_sqs::types::QueueAttributeName;
    mock!(aws_sdk_sqs::Client::get_queue_attributes)
        .match_requests(|r| {
            r.queue_url() == Some(QUEUE_URL)
                && r.attribute_names()
                    == [
                        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                        QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                    ]
        })
        .then_output(move || {
            GetQueueAttributesOutput::builder()
                .attributes(
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                    count,
                )
                .attributes(
                    QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                    count,
                )
                .build()
        })
}

/// The probe message: system attributes and message attributes of every kind.
pub fn probe_message(sent_ms: u64) -> aws_sdk_sqs::types::Message {
    use aws_sdk_sqs::primitives::Blob;
    use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
    let attribute = |data_type: &str, value: &str| {
        MessageAttributeValue::builder()
            .data_type(data_type)
            .string_value(value)
            .build()
            .expect("data type set")
    };
    Message::builder()
        .message_id(MESSAGE_ID)
        .receipt_handle(RECEIPT)
        .body(BODY)
        .md5_of_body(MD5_OF_BODY)
        .attributes(
            MessageSystemAttributeName::SentTimestamp,
            sent_ms.to_string(),
        )
        .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "3")
        .attributes(MessageSystemAttributeName::AwsTraceHeader, TRACE_HEADER)
        .message_attributes("customer", attribute("String", "alice"))
        .message_attributes("quantity", attribute("Number", "42"))
        .message_attributes("tag", attribute("String.custom", "urgent"))
        .message_attributes(
            "signature",
            MessageAttributeValue::builder()
                .data_type("Binary")
                .binary_value(Blob::new(vec![0u8, 1, 2, 255]))
                .build()
                .expect("data type set"),
        )
        .build()
}

/// ReceiveMessage of at most one message with all attributes, hidden for the probe's
/// visibility timeout.
pub fn receive(message: Option<aws_sdk_sqs::types::Message>) -> Rule {
    use aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput;
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    mock!(aws_sdk_sqs::Client::receive_message)
        .match_requests(|r| {
            r.queue_url() == Some(QUEUE_URL)
                && r.max_number_of_messages() == Some(1)
                && r.visibility_timeout() == Some(PROBE_VISIBILITY as i32)
                && r.message_system_attribute_names() == [MessageSystemAttributeName::All]
                && r.message_attribute_names() == ["All".to_string()]
        })
        .then_output(move || {
            ReceiveMessageOutput::builder()
                .set_messages(message.clone().map(|m| vec![m]))
                .build()
        })
}

pub fn delete_message() -> Rule {
    use aws_sdk_sqs::operation::delete_message::DeleteMessageOutput;
    mock!(aws_sdk_sqs::Client::delete_message)
        .match_requests(|r| r.queue_url() == Some(QUEUE_URL) && r.receipt_handle() == Some(RECEIPT))
        .then_output(|| DeleteMessageOutput::builder().build())
}

/// ChangeMessageVisibility to `hide_seconds` (0: the message is given back at once).
pub fn release_message(hide_seconds: i32) -> Rule {
    use aws_sdk_sqs::operation::change_message_visibility::ChangeMessageVisibilityOutput;
    mock!(aws_sdk_sqs::Client::change_message_visibility)
        .match_requests(move |r| {
            r.queue_url() == Some(QUEUE_URL)
                && r.receipt_handle() == Some(RECEIPT)
                && r.visibility_timeout() == Some(hide_seconds)
        })
        .then_output(|| ChangeMessageVisibilityOutput::builder().build())
}

// ---------------------------------------------------------------------------------------------
// CloudWatch

/// GetMetricStatistics of the queue's ApproximateAgeOfOldestMessage, answering one Maximum
/// datapoint per value.
pub fn oldest_age(maxima: &[f64]) -> Rule {
    use aws_sdk_cloudwatch::operation::get_metric_statistics::GetMetricStatisticsOutput;
    use aws_sdk_cloudwatch::types::Statistic;
    let maxima = maxima.to_vec();
    mock!(aws_sdk_cloudwatch::Client::get_metric_statistics)
        .match_requests(|r| {
            r.namespace() == Some("AWS/SQS")
                && r.metric_name() == Some("ApproximateAgeOfOldestMessage")
                && r.dimensions().len() == 1
                && r.dimensions()[0].name() == Some("QueueName")
                && r.dimensions()[0].value() == Some(QUEUE_NAME)
                && r.statistics().contains(&Statistic::Maximum)
        })
        .then_output(move || {
            GetMetricStatisticsOutput::builder()
                .label("ApproximateAgeOfOldestMessage")
                .set_datapoints(Some(
                    maxima
                        .iter()
                        .map(|m| Datapoint::builder().maximum(*m).build())
                        .collect(),
                ))
                .build()
        })
}

/// PutMetricData of one count of `metric` for the consumer, in the breaker's namespace.
pub fn put_metric(metric: &'static str) -> Rule {
    use aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataOutput;
    mock!(aws_sdk_cloudwatch::Client::put_metric_data)
        .match_requests(move |r| {
            r.namespace() == Some(NAMESPACE)
                && r.metric_data().len() == 1
                && r.metric_data()[0].metric_name() == Some(metric)
                && r.metric_data()[0].value() == Some(1.0)
                && r.metric_data()[0].dimensions().len() == 1
                && r.metric_data()[0].dimensions()[0].name() == Some("ConsumerFunction")
                && r.metric_data()[0].dimensions()[0].value() == Some(FUNCTION)
        })
        .then_output(|| PutMetricDataOutput::builder().build())
}

/// SetAlarmState OK on the breaker's alarm.
pub fn reset_alarm() -> Rule {
    use aws_sdk_cloudwatch::operation::set_alarm_state::SetAlarmStateOutput;
    mock!(aws_sdk_cloudwatch::Client::set_alarm_state)
        .match_requests(|r| {
            r.alarm_name() == Some(ALARM)
                && r.state_value() == Some(&StateValue::Ok)
                && r.state_reason().is_some_and(|s| !s.is_empty())
        })
        .then_output(|| SetAlarmStateOutput::builder().build())
}

// ---------------------------------------------------------------------------------------------
// EventBridge

/// PutEvents of one `detail_type` event from the breaker on its bus, naming the mapping, whose
/// detail satisfies `detail`. The details seen are kept in the returned list.
pub fn put_event_where(
    detail_type: &'static str,
    detail: impl Fn(&Value) -> bool + Send + Sync + 'static,
) -> (Rule, Arc<Mutex<Vec<Value>>>) {
    use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
    use aws_sdk_eventbridge::types::PutEventsResultEntry;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    let rule = mock!(aws_sdk_eventbridge::Client::put_events)
        .match_requests(move |r| {
            let [entry] = r.entries() else { return false };
            let parsed: Value = entry
                .detail()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or(Value::Null);
            let matches = entry.source() == Some(EVENT_SOURCE)
                && entry.detail_type() == Some(detail_type)
                && entry.event_bus_name() == Some(EVENT_BUS)
                && detail(&parsed);
            if matches {
                keep.lock().unwrap().push(parsed);
            }
            matches
        })
        .then_output(|| {
            PutEventsOutput::builder()
                .failed_entry_count(0)
                .entries(PutEventsResultEntry::builder().event_id("event-1").build())
                .build()
        });
    (rule, seen)
}

/// PutEvents of one `detail_type` event about this circuit (mapping, queue, consumer,
/// execution in the detail; the mapping as the event's resource).
pub fn put_event(detail_type: &'static str) -> Rule {
    put_event_where(detail_type, |d| {
        d["mapping"] == UUID
            && d["queue"] == QUEUE_ARN
            && d["function"] == FUNCTION
            && d["execution"] == EXECUTION
    })
    .0
}

/// DescribeAlarms of the breaker's alarm: in `state` since `since_ms`.
pub fn describe_alarm(state: &'static str, since_ms: u64) -> Rule {
    use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
    use aws_sdk_cloudwatch::types::MetricAlarm;
    mock!(aws_sdk_cloudwatch::Client::describe_alarms)
        .match_requests(|r| r.alarm_names() == [ALARM.to_string()])
        .then_output(move || {
            DescribeAlarmsOutput::builder()
                .metric_alarms(
                    // The template's alarm: the consumer's Errors, Sum ≥ 1 over 60 s, 3
                    // periods.
                    MetricAlarm::builder()
                        .alarm_name(ALARM)
                        .namespace("AWS/Lambda")
                        .metric_name("Errors")
                        .dimensions(
                            aws_sdk_cloudwatch::types::Dimension::builder()
                                .name("FunctionName")
                                .value(FUNCTION)
                                .build(),
                        )
                        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
                        .period(60)
                        .evaluation_periods(3)
                        .threshold(1.0)
                        .comparison_operator(
                            aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanOrEqualToThreshold,
                        )
                        .state_value(StateValue::from(state))
                        .state_updated_timestamp(aws_smithy_types::DateTime::from_millis(
                            since_ms as i64,
                        ))
                        .build(),
                )
                .build()
        })
}

/// SendMessage of a fresh copy of `probe_message`: the same body, every message attribute as
/// it was, the trace header.
pub fn send_fresh_copy() -> Rule {
    use aws_sdk_sqs::operation::send_message::SendMessageOutput;
    use aws_sdk_sqs::types::MessageSystemAttributeNameForSends;
    mock!(aws_sdk_sqs::Client::send_message)
        .match_requests(|r| {
            let original = probe_message(0);
            r.queue_url() == Some(QUEUE_URL)
                && r.message_body() == Some(BODY)
                && r.message_attributes() == original.message_attributes()
                && r.delay_seconds().is_none()
                && r.message_system_attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeNameForSends::AwsTraceHeader))
                    .and_then(|v| v.string_value())
                    == Some(TRACE_HEADER)
        })
        .then_output(|| {
            SendMessageOutput::builder()
                .message_id("7b0c9f0e-fresh-copy")
                .build()
        })
}
