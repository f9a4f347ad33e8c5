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

/// The alarm's state now; `None` if there is no such alarm.
pub async fn state(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    alarm: &str,
) -> Result<Option<AlarmState>, StepError> {
    let out = cloudwatch
        .describe_alarms()
        .alarm_names(alarm)
        .send()
        .await
        .map_err(|e| StepError::aws("DescribeAlarms", e))?;
    Ok(out.metric_alarms().first().map(|a| AlarmState {
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

/// The metric a single-metric alarm watches, as GetMetricStatistics asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmMetric {
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: Vec<(String, String)>,
    pub statistic: aws_sdk_cloudwatch::types::Statistic,
}

/// How the alarm decides and what it watches; `None` for an alarm that does not exist, a
/// metric-math alarm, or one on an extended statistic or an anomaly band (the breaker does
/// not re-evaluate those).
pub async fn rule(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    alarm: &str,
) -> Result<Option<(crate::core::old_errors::AlarmRule, AlarmMetric)>, StepError> {
    use crate::core::old_errors::{AlarmRule, Comparison};
    let out = cloudwatch
        .describe_alarms()
        .alarm_names(alarm)
        .send()
        .await
        .map_err(|e| StepError::aws("DescribeAlarms", e))?;
    let Some(a) = out.metric_alarms().first() else {
        return Ok(None);
    };
    let (Some(namespace), Some(metric_name), Some(statistic), Some(period), Some(periods)) = (
        a.namespace(),
        a.metric_name(),
        a.statistic(),
        a.period(),
        a.evaluation_periods(),
    ) else {
        return Ok(None);
    };
    let (Some(threshold), Some(comparison)) = (
        a.threshold(),
        a.comparison_operator()
            .and_then(|c| Comparison::parse(c.as_str())),
    ) else {
        return Ok(None);
    };
    let rule = AlarmRule {
        period_seconds: period.max(1) as u32,
        evaluation_periods: periods.max(1) as u32,
        threshold,
        comparison,
    };
    let metric = AlarmMetric {
        namespace: namespace.to_string(),
        metric_name: metric_name.to_string(),
        dimensions: a
            .dimensions()
            .iter()
            .filter_map(|d| Some((d.name()?.to_string(), d.value()?.to_string())))
            .collect(),
        statistic: statistic.clone(),
    };
    Ok(Some((rule, metric)))
}

/// The alarm metric's datapoints from `start_ms` to `end_ms`, one per `period_seconds`.
pub async fn datapoints(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    metric: &AlarmMetric,
    period_seconds: u32,
    start_ms: u64,
    end_ms: u64,
) -> Result<Vec<f64>, StepError> {
    use aws_sdk_cloudwatch::types::{Dimension, Statistic};
    let out = cloudwatch
        .get_metric_statistics()
        .namespace(&metric.namespace)
        .metric_name(&metric.metric_name)
        .set_dimensions(Some(
            metric
                .dimensions
                .iter()
                .map(|(name, value)| Dimension::builder().name(name).value(value).build())
                .collect(),
        ))
        .statistics(metric.statistic.clone())
        .period(period_seconds as i32)
        .start_time(aws_smithy_types::DateTime::from_millis(start_ms as i64))
        .end_time(aws_smithy_types::DateTime::from_millis(end_ms as i64))
        .send()
        .await
        .map_err(|e| StepError::aws("GetMetricStatistics", e))?;
    Ok(out
        .datapoints()
        .iter()
        .filter_map(|d| match &metric.statistic {
            Statistic::Sum => d.sum(),
            Statistic::Average => d.average(),
            Statistic::Maximum => d.maximum(),
            Statistic::Minimum => d.minimum(),
            Statistic::SampleCount => d.sample_count(),
            _ => None,
        })
        .collect())
}
