//! The `AWS/SQS` metrics AWS publishes for every active queue, from the per-second reports the
//! emulator shim (`ministack_shim/sitecustomize.py`) writes to the emulator's log: the sends,
//! receives (API and event source mapping alike) and deletes of each whole second, stamped
//! with that second, and the queue's gauges sampled at its end.
//!
//! AWS publishes one datapoint a minute; here every second of an active queue gets one, so
//! that the local tests' 10-second alarm periods see what a one-minute period sees on AWS: a
//! period's `Sum` of the counts is the same total, and `Minimum`/`Maximum`/`Average` of a
//! gauge are taken over the period's per-second samples (on AWS, over its one sample).

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use serde::Deserialize;
use std::collections::HashMap;

/// What the shim prefixes its report lines with.
pub const LINE_PREFIX: &str = "ministack-shim sqs ";

/// AWS publishes a queue's metrics while it is active: for up to six hours after its last
/// message or request.
pub const ACTIVE_FOR_S: i64 = 6 * 3600;

/// One queue's second, as the shim reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QueueSecond {
    pub queue: String,
    /// Epoch second the counts belong to.
    pub second: i64,
    pub sent: u64,
    pub received: u64,
    pub deleted: u64,
    pub visible: u64,
    pub not_visible: u64,
    pub delayed: u64,
    /// Seconds since the oldest message received fewer than three times was sent.
    pub oldest_age: u64,
}

impl QueueSecond {
    fn busy(&self) -> bool {
        self.sent + self.received + self.deleted + self.visible + self.not_visible + self.delayed
            > 0
    }
}

/// Parses one emulator log line written by the shim.
pub fn parse(line: &str) -> Option<QueueSecond> {
    let json = &line[line.find(LINE_PREFIX)? + LINE_PREFIX.len()..];
    serde_json::from_str(json.trim()).ok()
}

/// Which queues are active, from the seconds seen so far.
#[derive(Debug, Default)]
pub struct Activity {
    last_busy: HashMap<String, i64>,
}

impl Activity {
    /// The datapoints AWS publishes for `report`: all seven metrics, zeros included, while
    /// the queue is active; nothing for a queue idle (empty, untouched) for [`ACTIVE_FOR_S`].
    pub fn datums(&mut self, report: &QueueSecond) -> Vec<MetricDatum> {
        if report.busy() {
            self.last_busy.insert(report.queue.clone(), report.second);
        }
        let active = self
            .last_busy
            .get(&report.queue)
            .is_some_and(|last| report.second - last < ACTIVE_FOR_S);
        if active {
            datums(report)
        } else {
            Vec::new()
        }
    }
}

/// The seven `AWS/SQS` datapoints of one queue's second.
pub fn datums(report: &QueueSecond) -> Vec<MetricDatum> {
    let datum = |name: &str, value: u64, unit: StandardUnit| {
        MetricDatum::builder()
            .metric_name(name)
            .dimensions(
                Dimension::builder()
                    .name("QueueName")
                    .value(&report.queue)
                    .build(),
            )
            .timestamp(aws_smithy_types::DateTime::from_secs(report.second))
            .unit(unit)
            .value(value as f64)
            .build()
    };
    vec![
        datum("NumberOfMessagesSent", report.sent, StandardUnit::Count),
        datum(
            "NumberOfMessagesReceived",
            report.received,
            StandardUnit::Count,
        ),
        datum(
            "NumberOfMessagesDeleted",
            report.deleted,
            StandardUnit::Count,
        ),
        datum(
            "ApproximateNumberOfMessagesVisible",
            report.visible,
            StandardUnit::Count,
        ),
        datum(
            "ApproximateNumberOfMessagesNotVisible",
            report.not_visible,
            StandardUnit::Count,
        ),
        datum(
            "ApproximateNumberOfMessagesDelayed",
            report.delayed,
            StandardUnit::Count,
        ),
        datum(
            "ApproximateAgeOfOldestMessage",
            report.oldest_age,
            StandardUnit::Seconds,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn second(queue: &str, second: i64, received: u64) -> QueueSecond {
        QueueSecond {
            queue: queue.into(),
            second,
            sent: 0,
            received,
            deleted: 0,
            visible: 0,
            not_visible: 0,
            delayed: 0,
            oldest_age: 0,
        }
    }

    fn value(datums: &[MetricDatum], name: &str) -> Option<f64> {
        datums
            .iter()
            .find(|d| d.metric_name() == Some(name))
            .and_then(|d| d.value())
    }

    #[test]
    fn reads_the_shims_lines() {
        let line = r#"2026-12-06 ministack-shim sqs {"queue":"q1","second":1796561139,"sent":3,"received":3,"deleted":2,"visible":0,"not_visible":1,"delayed":0,"oldest_age":4}"#;
        let report = parse(line).unwrap();
        assert_eq!(report.queue, "q1");
        assert_eq!(
            (
                report.sent,
                report.received,
                report.deleted,
                report.oldest_age
            ),
            (3, 3, 2, 4)
        );
        assert_eq!(parse("ESM: Lambda f processed 1 SQS messages from q"), None);
        assert_eq!(parse("ministack-shim sqs {broken"), None);
    }

    #[test]
    fn publishes_the_seven_metrics_stamped_with_the_second() {
        let mut report = second("orders", 1_796_561_139, 7);
        report.deleted = 5;
        report.oldest_age = 12;
        let datums = datums(&report);
        assert_eq!(datums.len(), 7);
        assert_eq!(value(&datums, "NumberOfMessagesReceived"), Some(7.0));
        assert_eq!(value(&datums, "NumberOfMessagesDeleted"), Some(5.0));
        assert_eq!(value(&datums, "NumberOfMessagesSent"), Some(0.0));
        assert_eq!(value(&datums, "ApproximateAgeOfOldestMessage"), Some(12.0));
        for d in &datums {
            assert_eq!(d.timestamp().map(|t| t.secs()), Some(1_796_561_139));
            assert_eq!(d.dimensions()[0].name(), Some("QueueName"));
            assert_eq!(d.dimensions()[0].value(), Some("orders"));
        }
    }

    #[test]
    fn an_active_queue_gets_zeros_an_idle_one_nothing() {
        let mut activity = Activity::default();
        assert!(
            activity.datums(&second("q", 100, 0)).is_empty(),
            "never busy"
        );
        assert_eq!(activity.datums(&second("q", 101, 2)).len(), 7);
        let zeros = activity.datums(&second("q", 102, 0));
        assert_eq!(value(&zeros, "NumberOfMessagesReceived"), Some(0.0));
        assert!(activity
            .datums(&second("q", 101 + ACTIVE_FOR_S, 0))
            .is_empty());
        assert!(activity.datums(&second("other", 102, 0)).is_empty());
    }

    proptest! {
        /// Whatever the seconds, every count reported for an active queue is published once:
        /// a period's Sum is the total the shim counted.
        #[test]
        fn published_counts_add_up_to_the_counted_ones(
            received in proptest::collection::vec(0u64..20, 1..50),
        ) {
            let mut activity = Activity::default();
            let mut published = 0.0;
            for (i, r) in received.iter().enumerate() {
                let datums = activity.datums(&second("q", 1000 + i as i64, *r));
                published += value(&datums, "NumberOfMessagesReceived").unwrap_or(0.0);
            }
            prop_assert_eq!(published, received.iter().sum::<u64>() as f64);
        }
    }
}
