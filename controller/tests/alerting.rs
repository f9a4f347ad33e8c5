//! Alerting never steers the circuit: an event or a metric that cannot be sent (a deleted
//! bus, a bus policy, throttling past the SDK's retries) is logged with what was lost, and the
//! step carries on exactly as if it had been sent.

use crate::support;

use aws_smithy_mocks::mock;
use controller::circuit::Circuit;
use controller::steps;
use support::*;

/// PutEvents refused outright (the bus was deleted).
fn put_events_refused() -> aws_smithy_mocks::Rule {
    use aws_sdk_eventbridge::error::ErrorMetadata;
    use aws_sdk_eventbridge::operation::put_events::PutEventsError;
    mock!(aws_sdk_eventbridge::Client::put_events).then_error(|| {
        PutEventsError::generic(
            ErrorMetadata::builder()
                .code("ResourceNotFoundException")
                .message("Event bus breakers does not exist.")
                .build(),
        )
    })
}

/// PutEvents answered, but with its one entry failed (throttled).
fn put_events_entry_failed() -> aws_smithy_mocks::Rule {
    use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
    use aws_sdk_eventbridge::types::PutEventsResultEntry;
    mock!(aws_sdk_eventbridge::Client::put_events).then_output(|| {
        PutEventsOutput::builder()
            .failed_entry_count(1)
            .entries(
                PutEventsResultEntry::builder()
                    .error_code("ThrottlingException")
                    .error_message("Rate exceeded")
                    .build(),
            )
            .build()
    })
}

/// PutMetricData refused (throttled past the SDK's retries).
fn put_metric_refused() -> aws_smithy_mocks::Rule {
    use aws_sdk_cloudwatch::error::ErrorMetadata;
    use aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataError;
    mock!(aws_sdk_cloudwatch::Client::put_metric_data).then_error(|| {
        PutMetricDataError::generic(
            ErrorMetadata::builder()
                .code("Throttling")
                .message("Rate exceeded")
                .build(),
        )
    })
}

#[tokio::test]
async fn close_closes_although_neither_event_nor_metric_can_be_sent() {
    for put_event in [put_events_refused(), put_events_entry_failed()] {
        let ending = Ending {
            put_event,
            put_metric: put_metric_refused(),
            ..Ending::close()
        };
        let circuit = steps::close(&ending.context(config(&[])), healthy())
            .await
            .expect("alerting failures do not fail the close");
        assert_eq!(
            circuit,
            Circuit {
                next: None,
                ..healthy()
            }
        );
        // Everything that matters happened: Enabled given back, circuit CLOSED, alarm reset;
        // the event and the metric were each tried once.
        ending.assert_calls(&ended(3, 1));
    }
}

#[tokio::test]
async fn the_failsafe_carries_on_when_its_alert_cannot_be_sent() {
    let ending = Ending {
        put_event: put_events_refused(),
        put_metric: put_metric_refused(),
        ..Ending::gave_up()
    };
    let result = steps::failsafe(
        &ending.context(config(&[])),
        EXECUTION,
        &serde_json::json!({"Error": "AwsError", "Cause": "AccessDenied"}),
    )
    .await
    .expect("the failsafe does not fail on its alert");
    assert_eq!(result["restored"], true);
}
