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

/// An alarm's state as CloudWatch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmState {
    pub value: String,
    pub reason: String,
    /// When it entered this state, epoch ms.
    pub since_ms: u64,
}

/// The metric alarm named `alarm`, if there is one.
async fn describe(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    alarm: &str,
) -> Result<Option<aws_sdk_cloudwatch::types::MetricAlarm>, StepError> {
    let out = cloudwatch
        .describe_alarms()
        .alarm_names(alarm)
        .send()
        .await
        .map_err(|e| StepError::aws("DescribeAlarms", e))?;
    Ok(out.metric_alarms().first().cloned())
}

/// The alarm's state now; `None` if there is no such alarm.
pub async fn state(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    alarm: &str,
) -> Result<Option<AlarmState>, StepError> {
    Ok(describe(cloudwatch, alarm).await?.map(|a| AlarmState {
        value: a
            .state_value()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        reason: a.state_reason().unwrap_or_default().to_string(),
        since_ms: a
            .state_updated_timestamp()
            .and_then(|t| t.to_millis().ok())
            .map_or(0, |t| t.max(0) as u64),
    }))
}

/// The alarm's state now and when it entered it (epoch ms); `None` if there is no such alarm.
pub async fn current(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    alarm: &str,
) -> Result<Option<(String, u64)>, StepError> {
    Ok(state(cloudwatch, alarm)
        .await?
        .map(|s| (s.value, s.since_ms)))
}

/// How the alarm decides; `None` for an alarm that does not exist, a metric-math alarm, or
/// one on an anomaly band (the breaker does not re-evaluate those).
pub async fn rule(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    alarm: &str,
) -> Result<Option<crate::core::old_errors::AlarmRule>, StepError> {
    use crate::core::old_errors::{AlarmRule, Comparison};
    let Some(a) = describe(cloudwatch, alarm).await? else {
        return Ok(None);
    };
    let (Some(period), Some(periods), Some(threshold), Some(comparison)) = (
        a.period(),
        a.evaluation_periods(),
        a.threshold(),
        a.comparison_operator()
            .and_then(|c| Comparison::parse(c.as_str())),
    ) else {
        return Ok(None);
    };
    Ok(Some(AlarmRule {
        period_seconds: period.max(1) as u32,
        evaluation_periods: periods.max(1) as u32,
        threshold,
        comparison,
    }))
}
