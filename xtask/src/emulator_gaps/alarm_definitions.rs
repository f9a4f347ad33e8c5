//! Deployed alarms as DescribeAlarms returns them, read into what the bridge evaluates
//! (single-metric and metric-math alarms) or reports (composite alarms), as pure functions.

use super::alarm_evaluation::{
    AlarmDefinition, AlarmSource, Comparison, MetricQuery, MetricStat, MissingData,
};
use super::alarm_events::CompositeDefinition;
use super::metric_math::{self, Inputs, Series};
use aws_sdk_cloudwatch::types::{CompositeAlarm, Dimension, MetricAlarm};
use std::collections::BTreeMap;

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

#[cfg(test)]
mod tests {
    use super::super::alarm_evaluation::{evaluate, AlarmState, Datapoint};
    use super::*;
    use aws_sdk_cloudwatch::types::{
        ComparisonOperator, Metric, MetricDataQuery, MetricStat as SdkMetricStat, Statistic,
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
