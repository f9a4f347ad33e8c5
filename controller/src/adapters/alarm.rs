//! The breaker's CloudWatch alarm: a metric alarm (single metric or metric math) or a
//! composite alarm.

use crate::core::composite;
use crate::core::old_errors::{evaluated_datapoints, AlarmRule, Comparison, Evaluated};
use crate::error::StepError;
use aws_sdk_cloudwatch::types::{AlarmType, CompositeAlarm, MetricAlarm, StateValue};

/// An alarm as DescribeAlarms returns it.
#[derive(Debug, Clone)]
enum Described {
    Metric(Box<MetricAlarm>),
    Composite(Box<CompositeAlarm>),
}

/// The alarm named `alarm`, metric or composite, if there is one.
async fn describe(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    alarm: &str,
) -> Result<Option<Described>, StepError> {
    let out = cloudwatch
        .describe_alarms()
        .alarm_names(alarm)
        // Without AlarmTypes, DescribeAlarms returns metric alarms only.
        .alarm_types(AlarmType::MetricAlarm)
        .alarm_types(AlarmType::CompositeAlarm)
        .send()
        .await
        .map_err(|e| StepError::aws("DescribeAlarms", e))?;
    Ok(out
        .metric_alarms()
        .first()
        .cloned()
        .map(|a| Described::Metric(Box::new(a)))
        .or_else(|| {
            out.composite_alarms()
                .first()
                .cloned()
                .map(|a| Described::Composite(Box::new(a)))
        }))
}

/// Sets the alarm back to OK so that the next outage raises a fresh ALARM transition (an
/// alarm that stays in ALARM emits no new event). CloudWatch re-evaluates it on its next
/// period anyway. A composite's children are set OK first: a child left in ALARM would never
/// raise the composite again, and the composite returns to its actual state only when a
/// child changes.
pub async fn reset(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    alarm: &str,
    may_be_composite: bool,
    reason: &str,
) -> Result<(), StepError> {
    if !may_be_composite {
        return set_ok(cloudwatch, alarm, reason).await;
    }
    if let Some(Described::Composite(parent)) = describe(cloudwatch, alarm).await? {
        for child in composite::children(parent.alarm_rule().unwrap_or_default()) {
            // A child of a user's composite may be out of the role's reach (the template
            // grants the AlarmArn only): the composite is re-armed all the same.
            if let Err(e) = set_ok(cloudwatch, &child, reason).await {
                tracing::warn!(alarm, child = %child, error = %e, "could not re-arm a child of the composite alarm");
            }
        }
    }
    set_ok(cloudwatch, alarm, reason).await
}

async fn set_ok(
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
    /// `metric`, `metric math` or `composite`.
    pub kind: &'static str,
}

fn epoch_ms(t: Option<&aws_sdk_cloudwatch::primitives::DateTime>) -> u64 {
    t.and_then(|t| t.to_millis().ok())
        .map_or(0, |t| t.max(0) as u64)
}

fn alarm_state(
    value: Option<&StateValue>,
    reason: Option<&str>,
    since: Option<&aws_sdk_cloudwatch::primitives::DateTime>,
    kind: &'static str,
) -> AlarmState {
    AlarmState {
        value: value.map(|s| s.as_str().to_string()).unwrap_or_default(),
        reason: reason.unwrap_or_default().to_string(),
        since_ms: epoch_ms(since),
        kind,
    }
}

/// The alarm's state now; `None` if there is no such alarm.
pub async fn state(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    alarm: &str,
) -> Result<Option<AlarmState>, StepError> {
    Ok(describe(cloudwatch, alarm).await?.map(|d| match d {
        Described::Metric(a) => alarm_state(
            a.state_value(),
            a.state_reason(),
            a.state_updated_timestamp(),
            if a.metrics().is_empty() {
                "metric"
            } else {
                "metric math"
            },
        ),
        Described::Composite(a) => alarm_state(
            a.state_value(),
            a.state_reason(),
            a.state_updated_timestamp(),
            "composite",
        ),
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

/// How a metric alarm decides (single metric or metric math: the period is its metrics'
/// own); `None` for a composite, an alarm that does not exist, or one on an anomaly band
/// (no fixed threshold).
fn rule_of(a: &MetricAlarm) -> Option<AlarmRule> {
    let period = a.period().or_else(|| {
        a.metrics()
            .iter()
            .find_map(|q| q.metric_stat().and_then(|s| s.period()).or(q.period()))
    })?;
    Some(AlarmRule {
        period_seconds: period.max(1) as u32,
        evaluation_periods: a.evaluation_periods()?.max(1) as u32,
        threshold: a.threshold()?,
        comparison: a
            .comparison_operator()
            .and_then(|c| Comparison::parse(c.as_str()))?,
    })
}

/// How the alarm decides; `None` for an alarm that does not exist, a composite, or one on an
/// anomaly band (the breaker does not re-evaluate those).
pub async fn rule(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    alarm: &str,
) -> Result<Option<AlarmRule>, StepError> {
    Ok(match describe(cloudwatch, alarm).await? {
        Some(Described::Metric(a)) => rule_of(&a),
        _ => None,
    })
}

/// What a metric alarm's current state rests on: its rule, the datapoints its last
/// evaluation listed, and when it entered that state. `None` for anything else (a composite,
/// a state set by hand).
pub async fn evidence(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    alarm: &str,
) -> Result<Option<(AlarmRule, Vec<Evaluated>, u64)>, StepError> {
    let Some(Described::Metric(a)) = describe(cloudwatch, alarm).await? else {
        return Ok(None);
    };
    let (Some(rule), Some(evaluated)) = (
        rule_of(&a),
        a.state_reason_data().and_then(evaluated_datapoints),
    ) else {
        return Ok(None);
    };
    Ok(Some((
        rule,
        evaluated,
        epoch_ms(a.state_updated_timestamp()),
    )))
}
