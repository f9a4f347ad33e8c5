//! The alarm bridge: evaluates every deployed metric alarm (single metric or metric math) on
//! its own period, the way CloudWatch does, and delivers every alarm transition (its own,
//! SetAlarmState's, and the composite alarms' the emulator derives from their children) as
//! the "CloudWatch Alarm State Change" event to the targets of every EventBridge rule whose
//! pattern matches it. The emulator's own evaluation is switched off by the shim; it emits no
//! event.

use super::alarm_evaluation::{
    evaluate, AlarmDefinition, AlarmSource, AlarmState, Comparison, Datapoint, MetricQuery,
    MetricStat, MissingData,
};
use super::alarm_events::{
    composite_state_change_event, random_id, state_change_event, CompositeDefinition, StateRecord,
};
use super::alarm_history::{self, Cursor, Transition};
use super::event_delivery::{deliver, Clients};
use super::metric_math::{self, Inputs, Series};
use crate::emulator::Emulator;
use anyhow::Result;
use aws_sdk_cloudwatch::types::{
    AlarmType, CompositeAlarm, Dimension, HistoryItemType, MetricAlarm, ScanBy, StateValue,
    Statistic,
};
use aws_smithy_types::error::display::DisplayErrorContext;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the bridge looks at the alarms: transitions are delivered within this, and
/// evaluations happen on the first look after a period ends.
const TICK: Duration = Duration::from_millis(500);

/// How long after a period ends the bridge evaluates it: the datapoints of its last second
/// reach the emulator up to about 1.3 s later (the shim reports each second once it is over,
/// the log follower reads every 300 ms), and CloudWatch too evaluates a little after the
/// period's end.
const EVALUATION_DELAY_MS: i64 = 1500;

const STATISTICS: [&str; 5] = ["Sum", "Average", "Minimum", "Maximum", "SampleCount"];

fn dimensions(dims: &[Dimension]) -> Vec<(String, String)> {
    dims.iter()
        .map(|d| {
            (
                d.name().unwrap_or_default().to_string(),
                d.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn basic_statistic(stat: Option<&str>) -> Result<String, String> {
    match stat {
        Some(s) if STATISTICS.contains(&s) => Ok(s.to_string()),
        _ => Err(
            "alarms on extended statistics (percentiles) are not evaluated by the bridge".into(),
        ),
    }
}

/// A metric-math alarm's queries, checked: basic statistics, expressions the bridge can
/// read, exactly one returned query.
fn math_queries(alarm: &MetricAlarm) -> Result<(Vec<MetricQuery>, i64), String> {
    let mut queries = Vec::new();
    for q in alarm.metrics() {
        let metric_stat = match q.metric_stat() {
            Some(stat) => {
                let metric = stat.metric().ok_or("a query's MetricStat has no metric")?;
                Some(MetricStat {
                    namespace: metric.namespace().unwrap_or_default().to_string(),
                    metric_name: metric.metric_name().unwrap_or_default().to_string(),
                    dimensions: dimensions(metric.dimensions()),
                    statistic: basic_statistic(stat.stat())?,
                    period_s: i64::from(stat.period().filter(|p| *p > 0).ok_or("no period")?),
                })
            }
            None => None,
        };
        if let Some(expression) = q.expression() {
            metric_math::parse(expression).map_err(|e| e.to_string())?;
        }
        queries.push(MetricQuery {
            id: q.id().unwrap_or_default().to_string(),
            label: q.label().map(str::to_string),
            // AWS's default: a query without ReturnData is returned.
            return_data: q.return_data().unwrap_or(true),
            expression: q.expression().map(str::to_string),
            metric_stat,
        });
    }
    if queries.iter().filter(|q| q.return_data).count() != 1 {
        return Err("a metric-math alarm returns exactly one query".into());
    }
    let period = queries
        .iter()
        .filter_map(|q| q.metric_stat.as_ref().map(|s| s.period_s))
        .min()
        .or(alarm.period().map(i64::from))
        .ok_or("alarm has no period")?;
    Ok((queries, period))
}

/// A deployed metric alarm as DescribeAlarms returns it, or why the bridge cannot evaluate it.
pub fn definition(alarm: &MetricAlarm) -> Result<AlarmDefinition, String> {
    let (source, period_s) = if alarm.metrics().is_empty() {
        let period_s = i64::from(
            alarm
                .period()
                .filter(|p| *p > 0)
                .ok_or("alarm has no period")?,
        );
        let stat = MetricStat {
            namespace: alarm
                .namespace()
                .ok_or("alarm has no namespace")?
                .to_string(),
            metric_name: alarm
                .metric_name()
                .ok_or("alarm has no metric")?
                .to_string(),
            dimensions: dimensions(alarm.dimensions()),
            statistic: basic_statistic(alarm.statistic().map(|s| s.as_str()))?,
            period_s,
        };
        (AlarmSource::Metric(stat), period_s)
    } else {
        let (queries, period_s) = math_queries(alarm)?;
        (AlarmSource::Math(queries), period_s)
    };
    let operator = alarm
        .comparison_operator()
        .map(|c| c.as_str())
        .unwrap_or("");
    Ok(AlarmDefinition {
        name: alarm.alarm_name().unwrap_or_default().to_string(),
        arn: alarm.alarm_arn().unwrap_or_default().to_string(),
        description: alarm
            .alarm_description()
            .filter(|d| !d.is_empty())
            .map(str::to_string),
        source,
        period_s,
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

pub fn composite_definition(alarm: &CompositeAlarm) -> CompositeDefinition {
    CompositeDefinition {
        name: alarm.alarm_name().unwrap_or_default().to_string(),
        arn: alarm.alarm_arn().unwrap_or_default().to_string(),
        description: alarm
            .alarm_description()
            .filter(|d| !d.is_empty())
            .map(str::to_string),
        rule: alarm.alarm_rule().unwrap_or_default().to_string(),
    }
}

/// The returned query's series of a metric-math alarm, from the fetched series of its metrics,
/// over the period starts `periods`. Expressions are evaluated in their declared order, so
/// one may use an earlier one's id.
pub fn returned_series(
    queries: &[MetricQuery],
    mut series: BTreeMap<String, Series>,
    periods: &[i64],
) -> Result<Series, metric_math::MathError> {
    let mut returned = Series::new();
    for q in queries {
        if let Some(expression) = &q.expression {
            let expr = metric_math::parse(expression)?;
            let value = metric_math::evaluate(
                &expr,
                &Inputs {
                    series: &series,
                    periods,
                },
            )?;
            series.insert(q.id.clone(), value);
        }
        if q.return_data {
            returned = series.get(&q.id).cloned().unwrap_or_default();
        }
    }
    Ok(returned)
}

/// What the bridge carries between ticks.
struct Bridge {
    clients: Clients,
    cloudwatch: aws_sdk_cloudwatch::Client,
    evaluated_until: HashMap<String, i64>,
    unsupported: HashSet<String>,
    history: Cursor,
    states: HashMap<String, StateRecord>,
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
    let mut bridge = Bridge {
        clients: Clients::new(&config),
        cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
        evaluated_until: HashMap::new(),
        unsupported: HashSet::new(),
        // Transitions from before the bridge started were someone else's to deliver.
        history: Cursor::starting_at(now_ms()),
        states: HashMap::new(),
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
                let points = self.statistic(stat, start, end).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatch::types::{
        ComparisonOperator, Metric, MetricDataQuery, MetricStat as SdkMetricStat,
    };

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

    fn sqs_query(id: &str, metric: &str, stat: &str) -> MetricDataQuery {
        MetricDataQuery::builder()
            .id(id)
            .return_data(false)
            .metric_stat(
                SdkMetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace("AWS/SQS")
                            .metric_name(metric)
                            .dimensions(Dimension::builder().name("QueueName").value("q").build())
                            .build(),
                    )
                    .period(10)
                    .stat(stat)
                    .build(),
            )
            .build()
    }

    /// The consumer-failed-records alarm of the breaker's template, as DescribeAlarms
    /// returns it.
    fn failed_records() -> aws_sdk_cloudwatch::types::builders::MetricAlarmBuilder {
        MetricAlarm::builder()
            .alarm_name("s-consumer-failed-records")
            .alarm_arn("arn:aws:cloudwatch:us-east-1:000000000000:alarm:s-consumer-failed-records")
            .metrics(sqs_query("received", "NumberOfMessagesReceived", "Sum"))
            .metrics(sqs_query("deleted", "NumberOfMessagesDeleted", "Sum"))
            .metrics(
                MetricDataQuery::builder()
                    .id("failed_share")
                    .label("Share of received records not deleted (%)")
                    .return_data(true)
                    .expression(
                        "IF(received >= 10, 100 * (received - FILL(deleted, 0)) / received, 0)",
                    )
                    .build(),
            )
            .evaluation_periods(3)
            .datapoints_to_alarm(2)
            .threshold(20.0)
            .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
            .treat_missing_data("notBreaching")
    }

    #[test]
    fn reads_the_deployed_definition() {
        let d = definition(&deployed().datapoints_to_alarm(2).build()).unwrap();
        let AlarmSource::Metric(stat) = &d.source else {
            panic!("{d:?}")
        };
        assert_eq!(stat.dimensions, vec![("FunctionName".into(), "c".into())]);
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
    fn reads_a_metric_math_alarm() {
        let d = definition(&failed_records().build()).unwrap();
        let AlarmSource::Math(queries) = &d.source else {
            panic!("{d:?}")
        };
        assert_eq!(d.period_s, 10);
        let ids: Vec<_> = queries
            .iter()
            .map(|q| (q.id.as_str(), q.return_data))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("received", false),
                ("deleted", false),
                ("failed_share", true)
            ]
        );
        assert_eq!(
            queries[1].metric_stat.as_ref().unwrap().metric_name,
            "NumberOfMessagesDeleted"
        );
    }

    #[test]
    fn evaluates_the_returned_expression_per_period() {
        let d = definition(&failed_records().build()).unwrap();
        let AlarmSource::Math(queries) = &d.source else {
            panic!("{d:?}")
        };
        let fetched = BTreeMap::from([
            (
                "received".to_string(),
                Series::from([(0, 40.0), (10, 30.0)]),
            ),
            ("deleted".to_string(), Series::from([(10, 30.0)])),
        ]);
        let share = returned_series(queries, fetched, &[0, 10, 20]).unwrap();
        assert_eq!(share, Series::from([(0, 100.0), (10, 0.0)]));
        // Two of three periods at 100 %: ALARM, as CloudWatch would.
        let points: Vec<_> = [(0, 100.0), (10, 100.0), (20, 0.0)]
            .iter()
            .map(|(t, v)| Datapoint {
                period_start_s: *t,
                value: *v,
                sample_count: 1.0,
            })
            .collect();
        let e = evaluate(&d, &points, 30, AlarmState::Ok, 0);
        assert_eq!(e.state, AlarmState::Alarm);
        let data: serde_json::Value = serde_json::from_str(&e.reason_data).unwrap();
        assert!(data.get("statistic").is_none());
        assert_eq!(data["evaluatedDatapoints"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn refuses_what_it_cannot_evaluate() {
        let anomaly = deployed()
            .comparison_operator(ComparisonOperator::LessThanLowerOrGreaterThanUpperThreshold)
            .build();
        assert!(definition(&anomaly).is_err());
        let two_returned = failed_records()
            .metrics(
                MetricDataQuery::builder()
                    .id("x")
                    .expression("received")
                    .build(),
            )
            .build();
        assert!(definition(&two_returned)
            .unwrap_err()
            .contains("exactly one"));
        let unreadable = MetricAlarm::builder()
            .metrics(
                MetricDataQuery::builder()
                    .id("e")
                    .expression("ANOMALY_DETECTION_BAND(m)")
                    .build(),
            )
            .threshold(1.0)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .build();
        assert!(definition(&unreadable).is_err());
        let percentile = failed_records()
            .metrics(sqs_query("p", "ApproximateAgeOfOldestMessage", "p90"))
            .build();
        assert!(definition(&percentile).unwrap_err().contains("percentiles"));
    }
}
