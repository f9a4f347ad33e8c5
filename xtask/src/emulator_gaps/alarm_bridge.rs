//! The alarm bridge: evaluates every deployed metric alarm (single metric or metric math) on
//! its own period, the way CloudWatch does, and delivers every alarm transition (its own,
//! SetAlarmState's, and the composite alarms' the emulator derives from their children) as
//! the "CloudWatch Alarm State Change" event to the targets of every EventBridge rule whose
//! pattern matches it. The emulator's own evaluation is switched off by the shim; it emits no
//! event.

use super::alarm_definitions::{composite_definition, definition, returned_series};
use super::alarm_evaluation::{
    evaluate, sqs_period_complete, AlarmDefinition, AlarmSource, AlarmState, Datapoint,
    MetricQuery, MetricStat,
};
use super::alarm_events::{
    composite_state_change_event, random_id, state_change_event, CompositeDefinition, StateRecord,
};
use super::alarm_history::{self, Cursor, Transition};
use super::event_delivery::{deliver, Clients};
use crate::breaker::now_ms;
use crate::emulator::Emulator;
use anyhow::Result;
use aws_sdk_cloudwatch::types::{
    AlarmType, CompositeAlarm, Dimension, HistoryItemType, MetricAlarm, ScanBy, StateValue,
    Statistic,
};
use aws_smithy_types::error::display::DisplayErrorContext;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the bridge looks at the alarms: transitions are delivered within this, and
/// evaluations happen on the first look after a period ends.
const TICK: Duration = Duration::from_millis(500);

/// How long after a period ends the bridge evaluates it: the datapoints of its last second
/// reach the emulator up to about 1.3 s later (the shim reports each second once it is over,
/// the log follower reads every 300 ms), and CloudWatch too evaluates a little after the
/// period's end.
const EVALUATION_DELAY_MS: i64 = 1500;

/// What the bridge carries between ticks.
struct Bridge {
    clients: Clients,
    cloudwatch: aws_sdk_cloudwatch::Client,
    evaluated_until: HashMap<String, i64>,
    unsupported: HashSet<String>,
    history: Cursor,
    states: HashMap<String, StateRecord>,
    /// The last second of `AWS/SQS` datapoints put (the metrics bridge advances it).
    sqs_reported_through: Arc<AtomicI64>,
}

/// Runs until `stop` is set.
pub async fn run(
    emulator: &Emulator,
    sqs_reported_through: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let config = crate::aws::config(emulator).await;
    let mut bridge = Bridge {
        clients: Clients::new(&config),
        cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
        evaluated_until: HashMap::new(),
        unsupported: HashSet::new(),
        // Transitions from before the bridge started were someone else's to deliver.
        history: Cursor::starting_at(now_ms()),
        states: HashMap::new(),
        sqs_reported_through,
    };
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = bridge.tick().await {
            eprintln!("alarm bridge: {e:#}");
        }
        tokio::time::sleep(TICK).await;
    }
    Ok(())
}

impl Bridge {
    async fn tick(&mut self) -> Result<()> {
        let (metric, composite) = self.alarms().await?;
        let mut definitions = HashMap::new();
        for alarm in &metric {
            let name = alarm.alarm_name().unwrap_or_default().to_string();
            match definition(alarm) {
                Ok(d) => {
                    let current = alarm
                        .state_value()
                        .and_then(|s| AlarmState::parse(s.as_str()))
                        .unwrap_or(AlarmState::InsufficientData);
                    // A failed read is retried on the next tick, not skipped for a period.
                    self.evaluate(&d, current).await?;
                    definitions.insert(name, d);
                }
                Err(why) => {
                    if self.unsupported.insert(name.clone()) {
                        eprintln!("alarm bridge: alarm {name} left alone: {why}");
                    }
                }
            }
        }
        let composites: HashMap<String, CompositeDefinition> = composite
            .iter()
            .map(|a| {
                let d = composite_definition(a);
                (d.name.clone(), d)
            })
            .collect();
        self.evaluated_until
            .retain(|name, _| definitions.contains_key(name));
        self.states
            .retain(|name, _| definitions.contains_key(name) || composites.contains_key(name));

        for transition in self.transitions().await? {
            let previous = self
                .states
                .insert(transition.alarm.clone(), transition.to.clone())
                .filter(|p| p.value == transition.from)
                .unwrap_or_else(|| StateRecord {
                    value: transition.from,
                    reason: String::new(),
                    reason_data: None,
                    timestamp_ms: transition.to.timestamp_ms,
                });
            if transition.from == transition.to.value {
                continue; // the alarm's creation
            }
            let event = if let Some(d) = definitions.get(&transition.alarm) {
                state_change_event(d, &previous, &transition.to, &random_id(), &random_id())
            } else if let Some(d) = composites.get(&transition.alarm) {
                composite_state_change_event(d, &previous, &transition.to, &random_id())
            } else {
                continue;
            };
            println!(
                "alarm bridge: {} {} -> {}",
                transition.alarm,
                previous.value.as_str(),
                transition.to.value.as_str()
            );
            if let Err(e) = deliver(&self.clients, &event).await {
                eprintln!("alarm bridge: delivering the event failed: {e:#}");
            }
        }
        Ok(())
    }

    async fn alarms(&self) -> Result<(Vec<MetricAlarm>, Vec<CompositeAlarm>)> {
        let (mut metric, mut composite) = (Vec::new(), Vec::new());
        let mut pages = self
            .cloudwatch
            .describe_alarms()
            .alarm_types(AlarmType::MetricAlarm)
            .alarm_types(AlarmType::CompositeAlarm)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| anyhow::anyhow!("DescribeAlarms: {}", DisplayErrorContext(e)))?;
            metric.extend(page.metric_alarms().iter().cloned());
            composite.extend(page.composite_alarms().iter().cloned());
        }
        Ok((metric, composite))
    }

    /// Evaluates `alarm` once per period; a changed state is set (and recorded in the
    /// history, from where its event is delivered).
    async fn evaluate(&mut self, alarm: &AlarmDefinition, current: AlarmState) -> Result<()> {
        let now = now_ms();
        let period_end = alarm.last_period_end((now - EVALUATION_DELAY_MS) / 1000);
        if period_end <= self.evaluated_until.get(&alarm.name).copied().unwrap_or(0) {
            return Ok(());
        }
        let reported_through = self.sqs_reported_through.load(Ordering::Relaxed);
        if alarm.reads("AWS/SQS") && !sqs_period_complete(period_end, reported_through, now) {
            return Ok(()); // the next tick looks again
        }
        let datapoints = match &alarm.source {
            AlarmSource::Metric(stat) => self.datapoints(alarm, stat, period_end).await?,
            AlarmSource::Math(queries) => self.math_datapoints(alarm, queries, period_end).await?,
        };
        self.evaluated_until.insert(alarm.name.clone(), period_end);
        let evaluation = evaluate(alarm, &datapoints, period_end, current, now);
        if evaluation.state != current {
            self.cloudwatch
                .set_alarm_state()
                .alarm_name(&alarm.name)
                .state_value(StateValue::from(evaluation.state.as_str()))
                .state_reason(&evaluation.reason)
                .state_reason_data(&evaluation.reason_data)
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!("SetAlarmState {}: {}", alarm.name, DisplayErrorContext(e))
                })?;
        }
        Ok(())
    }

    /// One metric's statistic per period over `[start, end)`, with dimensions (which
    /// GetMetricStatistics honours).
    async fn statistic(&self, stat: &MetricStat, start: i64, end: i64) -> Result<Vec<Datapoint>> {
        let out = self
            .cloudwatch
            .get_metric_statistics()
            .namespace(&stat.namespace)
            .metric_name(&stat.metric_name)
            .set_dimensions(Some(
                stat.dimensions
                    .iter()
                    .map(|(name, value)| Dimension::builder().name(name).value(value).build())
                    .collect(),
            ))
            .start_time(aws_smithy_types::DateTime::from_secs(start))
            .end_time(aws_smithy_types::DateTime::from_secs(end))
            .period(stat.period_s as i32)
            .statistics(Statistic::from(stat.statistic.as_str()))
            .statistics(Statistic::SampleCount)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("GetMetricStatistics: {}", DisplayErrorContext(e)))?;
        Ok(out
            .datapoints()
            .iter()
            .filter_map(|d| {
                let value = match stat.statistic.as_str() {
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

    async fn datapoints(
        &self,
        alarm: &AlarmDefinition,
        stat: &MetricStat,
        period_end: i64,
    ) -> Result<Vec<Datapoint>> {
        let (start, end) = alarm.evaluation_range(period_end);
        self.statistic(stat, start, end).await
    }

    /// The returned expression's value per period, over the alarm's evaluation range.
    async fn math_datapoints(
        &self,
        alarm: &AlarmDefinition,
        queries: &[MetricQuery],
        period_end: i64,
    ) -> Result<Vec<Datapoint>> {
        let (start, end) = alarm.evaluation_range(period_end);
        let periods: Vec<i64> = (start..end).step_by(alarm.period_s as usize).collect();
        let mut series = BTreeMap::new();
        for q in queries {
            if let Some(stat) = &q.metric_stat {
                // One period more before the range, as CloudWatch reads it: DIFF's first
                // value needs the one before.
                let points = self.statistic(stat, start - alarm.period_s, end).await?;
                series.insert(
                    q.id.clone(),
                    points
                        .into_iter()
                        .map(|d| (d.period_start_s, d.value))
                        .collect(),
                );
            }
        }
        let returned = returned_series(queries, series, &periods)?;
        Ok(returned
            .into_iter()
            .filter(|(period_start_s, _)| *period_start_s >= start)
            .map(|(period_start_s, value)| Datapoint {
                period_start_s,
                value,
                sample_count: 1.0,
            })
            .collect())
    }

    /// The transitions recorded since the last look, oldest first.
    async fn transitions(&mut self) -> Result<Vec<Transition>> {
        let mut items = Vec::new();
        let mut pages = self
            .cloudwatch
            .describe_alarm_history()
            .alarm_types(AlarmType::MetricAlarm)
            .alarm_types(AlarmType::CompositeAlarm)
            .history_item_type(HistoryItemType::StateUpdate)
            .scan_by(ScanBy::TimestampAscending)
            // From a second before: items can share the cursor's millisecond.
            .start_date(aws_smithy_types::DateTime::from_millis(
                self.history.at_ms - 1000,
            ))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|e| anyhow::anyhow!("DescribeAlarmHistory: {}", DisplayErrorContext(e)))?;
            for item in page.alarm_history_items() {
                let at = item
                    .timestamp()
                    .and_then(|t| t.to_millis().ok())
                    .unwrap_or_default();
                items.push((at, item.clone()));
            }
        }
        Ok(self
            .history
            .advance(items)
            .into_iter()
            .filter_map(|item| {
                alarm_history::parse(
                    item.alarm_name()?,
                    item.timestamp()?.to_millis().ok()?,
                    item.history_data()?,
                )
            })
            .collect())
    }
}
