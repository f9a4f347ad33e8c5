//! The alarm bridge: evaluates every deployed single-metric alarm on its own period, the way
//! CloudWatch does, and delivers each state change as the "CloudWatch Alarm State Change"
//! event to the targets of every EventBridge rule whose pattern matches it
//! (TestEventPattern), since the emulator evaluates alarms only on PutMetricData, ignores
//! dimensions, and emits no event.

use super::alarm_evaluation::{
    evaluate, is_emulator_evaluation, AlarmDefinition, AlarmState, Comparison, Datapoint,
    MissingData,
};
use super::alarm_events::{random_id, state_change_event, target_input, StateRecord};
use crate::emulator::Emulator;
use anyhow::Result;
use aws_sdk_cloudwatch::types::{Dimension, MetricAlarm, StateValue, Statistic};
use aws_smithy_types::error::display::DisplayErrorContext;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the bridge looks at the alarms: state changes made by others (SetAlarmState)
/// are delivered within this, and evaluations happen on the first look after a period ends.
const TICK: Duration = Duration::from_millis(500);

/// A deployed alarm as DescribeAlarms returns it, or why the bridge cannot evaluate it.
pub fn definition(alarm: &MetricAlarm) -> Result<AlarmDefinition, String> {
    if !alarm.metrics().is_empty() {
        return Err("metric-math alarms are not evaluated by the bridge".into());
    }
    let statistic = alarm
        .statistic()
        .map(|s| s.as_str().to_string())
        .ok_or("alarms on extended statistics (percentiles) are not evaluated by the bridge")?;
    let operator = alarm
        .comparison_operator()
        .map(|c| c.as_str())
        .unwrap_or("");
    Ok(AlarmDefinition {
        name: alarm.alarm_name().unwrap_or_default().to_string(),
        arn: alarm.alarm_arn().unwrap_or_default().to_string(),
        description: alarm.alarm_description().map(str::to_string),
        namespace: alarm
            .namespace()
            .ok_or("alarm has no namespace")?
            .to_string(),
        metric_name: alarm
            .metric_name()
            .ok_or("alarm has no metric")?
            .to_string(),
        dimensions: alarm
            .dimensions()
            .iter()
            .map(|d| {
                (
                    d.name().unwrap_or_default().to_string(),
                    d.value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        statistic,
        period_s: i64::from(
            alarm
                .period()
                .filter(|p| *p > 0)
                .ok_or("alarm has no period")?,
        ),
        evaluation_periods: alarm.evaluation_periods().unwrap_or(1).max(1) as u32,
        datapoints_to_alarm: alarm
            .datapoints_to_alarm()
            .or(alarm.evaluation_periods())
            .unwrap_or(1)
            .max(1) as u32,
        threshold: alarm.threshold().ok_or("alarm has no threshold")?,
        comparison: Comparison::parse(operator)
            .ok_or_else(|| format!("comparison {operator} is not evaluated by the bridge"))?,
        missing_data: MissingData::parse(alarm.treat_missing_data()),
    })
}

/// What the bridge knows of one alarm between ticks.
struct Tracked {
    state: StateRecord,
    evaluated_until: i64,
}

struct Clients {
    cloudwatch: aws_sdk_cloudwatch::Client,
    events: aws_sdk_eventbridge::Client,
    sfn: aws_sdk_sfn::Client,
    lambda: aws_sdk_lambda::Client,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Runs until `stop` is set.
pub async fn run(emulator: &Emulator, stop: Arc<AtomicBool>) -> Result<()> {
    let config = crate::aws::config(emulator).await;
    let clients = Clients {
        cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
        events: aws_sdk_eventbridge::Client::new(&config),
        sfn: aws_sdk_sfn::Client::new(&config),
        lambda: aws_sdk_lambda::Client::new(&config),
    };
    let mut tracked: HashMap<String, Tracked> = HashMap::new();
    let mut unsupported: HashSet<String> = HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = tick(&clients, &mut tracked, &mut unsupported).await {
            eprintln!("alarm bridge: {e:#}");
        }
        tokio::time::sleep(TICK).await;
    }
    Ok(())
}

async fn tick(
    clients: &Clients,
    tracked: &mut HashMap<String, Tracked>,
    unsupported: &mut HashSet<String>,
) -> Result<()> {
    let mut alarms = Vec::new();
    let mut pages = clients.cloudwatch.describe_alarms().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| anyhow::anyhow!("DescribeAlarms: {}", DisplayErrorContext(e)))?;
        alarms.extend(page.metric_alarms().iter().cloned());
    }
    let present: HashSet<String> = alarms
        .iter()
        .filter_map(|a| a.alarm_name().map(str::to_string))
        .collect();
    tracked.retain(|name, _| present.contains(name));

    for alarm in &alarms {
        let definition = match definition(alarm) {
            Ok(d) => d,
            Err(why) => {
                let name = alarm.alarm_name().unwrap_or_default().to_string();
                if unsupported.insert(name.clone()) {
                    eprintln!("alarm bridge: alarm {name} left alone: {why}");
                }
                continue;
            }
        };
        let observed = StateRecord {
            value: alarm
                .state_value()
                .and_then(|s| AlarmState::parse(s.as_str()))
                .unwrap_or(AlarmState::InsufficientData),
            reason: alarm.state_reason().unwrap_or_default().to_string(),
            reason_data: alarm.state_reason_data().map(str::to_string),
            timestamp_ms: alarm
                .state_updated_timestamp()
                .map(|t| t.to_millis().unwrap_or_default())
                .unwrap_or_else(now_ms),
        };
        let now = now_ms();
        let entry = tracked.entry(definition.name.clone()).or_insert(Tracked {
            state: observed.clone(),
            evaluated_until: 0,
        });

        if observed.value != entry.state.value {
            if is_emulator_evaluation(&observed.reason) {
                // The emulator's own evaluation (dimensions ignored, no M out of N) is not
                // what CloudWatch would do: put back the state the bridge last knew.
                set_state(clients, &definition.name, &entry.state).await?;
            } else {
                // Someone called SetAlarmState (the breaker resetting its alarm, an
                // operator): CloudWatch sends an event for that change too.
                let previous = std::mem::replace(&mut entry.state, observed.clone());
                deliver_change(clients, &definition, &previous, &observed).await;
            }
        }

        let period_end = definition.last_period_end(now / 1000);
        if period_end > entry.evaluated_until {
            // A failed read is retried on the next tick, not skipped for a period.
            let datapoints = datapoints(clients, &definition, period_end).await?;
            entry.evaluated_until = period_end;
            let evaluation = evaluate(&definition, &datapoints, period_end, entry.state.value, now);
            if evaluation.state != entry.state.value {
                let next = StateRecord {
                    value: evaluation.state,
                    reason: evaluation.reason,
                    reason_data: Some(evaluation.reason_data),
                    timestamp_ms: now,
                };
                set_state(clients, &definition.name, &next).await?;
                let previous = std::mem::replace(&mut entry.state, next.clone());
                deliver_change(clients, &definition, &previous, &next).await;
            }
        }
    }
    Ok(())
}

async fn set_state(clients: &Clients, alarm: &str, state: &StateRecord) -> Result<()> {
    clients
        .cloudwatch
        .set_alarm_state()
        .alarm_name(alarm)
        .state_value(StateValue::from(state.value.as_str()))
        .state_reason(&state.reason)
        .set_state_reason_data(state.reason_data.clone())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("SetAlarmState {alarm}: {}", DisplayErrorContext(e)))?;
    Ok(())
}

/// The alarm's statistic per period over its evaluation range, with dimensions (which
/// GetMetricStatistics honours).
async fn datapoints(
    clients: &Clients,
    alarm: &AlarmDefinition,
    period_end: i64,
) -> Result<Vec<Datapoint>> {
    let (start, end) = alarm.evaluation_range(period_end);
    let out = clients
        .cloudwatch
        .get_metric_statistics()
        .namespace(&alarm.namespace)
        .metric_name(&alarm.metric_name)
        .set_dimensions(Some(
            alarm
                .dimensions
                .iter()
                .map(|(name, value)| Dimension::builder().name(name).value(value).build())
                .collect(),
        ))
        .start_time(aws_smithy_types::DateTime::from_secs(start))
        .end_time(aws_smithy_types::DateTime::from_secs(end))
        .period(alarm.period_s as i32)
        .statistics(Statistic::from(alarm.statistic.as_str()))
        .statistics(Statistic::SampleCount)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GetMetricStatistics: {}", DisplayErrorContext(e)))?;
    Ok(out
        .datapoints()
        .iter()
        .filter_map(|d| {
            let value = match alarm.statistic.as_str() {
                "Sum" => d.sum(),
                "Average" => d.average(),
                "Minimum" => d.minimum(),
                "Maximum" => d.maximum(),
                "SampleCount" => d.sample_count(),
                _ => None,
            }?;
            Some(Datapoint {
                period_start_s: d.timestamp()?.secs(),
                value,
                sample_count: d.sample_count().unwrap_or_default(),
            })
        })
        .collect())
}

async fn deliver_change(
    clients: &Clients,
    alarm: &AlarmDefinition,
    previous: &StateRecord,
    state: &StateRecord,
) {
    let event = state_change_event(alarm, previous, state, &random_id(), &random_id());
    println!(
        "alarm bridge: {} {} -> {}",
        alarm.name,
        previous.value.as_str(),
        state.value.as_str()
    );
    if let Err(e) = deliver(clients, &event).await {
        eprintln!("alarm bridge: delivering the event failed: {e:#}");
    }
}

/// Delivers `event` to the targets of every enabled rule of the default bus whose deployed
/// pattern matches it, as EventBridge would.
async fn deliver(clients: &Clients, event: &Value) -> Result<()> {
    let text = event.to_string();
    let mut token = None;
    loop {
        let page = clients
            .events
            .list_rules()
            .event_bus_name("default")
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("ListRules: {}", DisplayErrorContext(e)))?;
        for rule in page.rules() {
            let (Some(name), Some(pattern)) = (rule.name(), rule.event_pattern()) else {
                continue;
            };
            if rule.state().map(|s| s.as_str()) != Some("ENABLED") {
                continue;
            }
            let matched = clients
                .events
                .test_event_pattern()
                .event_pattern(pattern)
                .event(&text)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("TestEventPattern: {}", DisplayErrorContext(e)))?
                .result();
            if matched {
                deliver_to_targets(clients, name, event).await?;
            }
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(());
        }
    }
}

async fn deliver_to_targets(clients: &Clients, rule: &str, event: &Value) -> Result<()> {
    let targets = clients
        .events
        .list_targets_by_rule()
        .rule(rule)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("ListTargetsByRule {rule}: {}", DisplayErrorContext(e)))?;
    for target in targets.targets() {
        let arn = target.arn();
        let input = match target_input(
            event,
            target.input(),
            target.input_path(),
            target.input_transformer().is_some(),
        ) {
            Ok(input) => input,
            Err(why) => {
                eprintln!("alarm bridge: rule {rule} target {arn} skipped: {why}");
                continue;
            }
        };
        let delivered = if arn.contains(":states:") && arn.contains(":stateMachine:") {
            clients
                .sfn
                .start_execution()
                .state_machine_arn(arn)
                .input(input)
                .send()
                .await
                .map(|out| format!("execution {}", out.execution_arn()))
                .map_err(|e| format!("StartExecution: {}", DisplayErrorContext(e)))
        } else if arn.contains(":lambda:") {
            clients
                .lambda
                .invoke()
                .function_name(arn)
                .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
                .payload(aws_smithy_types::Blob::new(input))
                .send()
                .await
                .map(|_| "asynchronous invocation".to_string())
                .map_err(|e| format!("Invoke: {}", DisplayErrorContext(e)))
        } else {
            Err("only Step Functions and Lambda targets are bridged".to_string())
        };
        match delivered {
            Ok(what) => println!("alarm bridge: rule {rule} -> {what}"),
            Err(why) => eprintln!("alarm bridge: rule {rule} target {arn} not delivered: {why}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatch::types::{ComparisonOperator, MetricDataQuery};

    fn deployed() -> aws_sdk_cloudwatch::types::builders::MetricAlarmBuilder {
        MetricAlarm::builder()
            .alarm_name("stack-consumer-errors")
            .alarm_arn("arn:aws:cloudwatch:us-east-1:000000000000:alarm:stack-consumer-errors")
            .namespace("AWS/Lambda")
            .metric_name("Errors")
            .dimensions(Dimension::builder().name("FunctionName").value("c").build())
            .statistic(Statistic::Sum)
            .period(60)
            .evaluation_periods(3)
            .threshold(1.0)
            .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
            .treat_missing_data("notBreaching")
    }

    #[test]
    fn reads_the_deployed_definition() {
        let d = definition(&deployed().datapoints_to_alarm(2).build()).unwrap();
        assert_eq!(d.dimensions, vec![("FunctionName".into(), "c".into())]);
        assert_eq!(
            (d.period_s, d.evaluation_periods, d.datapoints_to_alarm),
            (60, 3, 2)
        );
        assert_eq!(d.missing_data, MissingData::NotBreaching);
        // DatapointsToAlarm defaults to EvaluationPeriods, as in CloudWatch.
        assert_eq!(
            definition(&deployed().build()).unwrap().datapoints_to_alarm,
            3
        );
    }

    #[test]
    fn refuses_what_it_cannot_evaluate() {
        let math = deployed()
            .metrics(
                MetricDataQuery::builder()
                    .id("m1")
                    .expression("m0*2")
                    .build(),
            )
            .build();
        assert!(definition(&math).unwrap_err().contains("metric-math"));
        let anomaly = deployed()
            .comparison_operator(ComparisonOperator::LessThanLowerOrGreaterThanUpperThreshold)
            .build();
        assert!(definition(&anomaly).is_err());
    }
}
