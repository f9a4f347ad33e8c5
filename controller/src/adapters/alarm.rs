//! The breaker's CloudWatch alarm.

use crate::error::StepError;
use aws_sdk_cloudwatch::types::StateValue;

/// Sets the alarm back to OK so that the next outage raises a fresh ALARM transition (an
/// alarm that stays in ALARM emits no new event). CloudWatch re-evaluates it on its next
/// period anyway.
pub async fn reset(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    alarm: &str,
    reason: &str,
) -> Result<(), StepError> {
    cloudwatch
        .set_alarm_state()
        .alarm_name(alarm)
        .state_value(StateValue::Ok)
        .state_reason(reason)
        .send()
        .await
        .map_err(|e| StepError::aws("SetAlarmState", e))?;
    Ok(())
}
