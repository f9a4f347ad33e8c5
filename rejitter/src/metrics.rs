//! The rejitter's CloudWatch metrics, as one Embedded Metric Format (EMF) log line per
//! invocation.
//!
//! Lambda ships stdout to CloudWatch Logs, which turns an EMF line into metrics: no API call,
//! no IAM permission, no added latency. Metrics (all `Count`, dimension `QueueName`):
//! `MessagesRejittered` (re-sent with a delay, including the copies of records already
//! rejittered during this recovery), `RejitterBatches` (`SendMessageBatch` calls) and
//! `RejitterFailures` (records left on the queue because they could not be re-sent).

/// What one invocation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages SQS confirmed as re-sent, already rejittered ones included.
    pub rejittered: usize,
    /// `SendMessageBatch` calls made.
    pub batches: usize,
    /// Records not re-sent because they came from another queue, were refused by the plan or by
    /// SQS, or the invocation failed as a whole.
    pub failures: usize,
    /// Of [`Counts::rejittered`], the records this recovery had already rejittered, re-sent
    /// with the fixed [`crate::marker::RESEND_DELAY_SECONDS`]. Logged, not a metric.
    pub resent_already_rejittered: usize,
}

/// The EMF line (no trailing newline) for one invocation's `counts` on `queue_name`, stamped
/// `timestamp_ms` (epoch milliseconds).
///
/// Written out by hand so the key order is fixed (the `_aws` directive first) whatever map
/// serde_json is built with; the names go through serde_json for escaping.
pub fn emf_line(namespace: &str, queue_name: &str, timestamp_ms: u64, counts: &Counts) -> String {
    let text = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        concat!(
            r#"{{"_aws":{{"Timestamp":{timestamp},"CloudWatchMetrics":[{{"Namespace":{namespace},"#,
            r#""Dimensions":[["QueueName"]],"Metrics":["#,
            r#"{{"Name":"MessagesRejittered","Unit":"Count"}},"#,
            r#"{{"Name":"RejitterBatches","Unit":"Count"}},"#,
            r#"{{"Name":"RejitterFailures","Unit":"Count"}}]}}]}},"#,
            r#""QueueName":{queue_name},"MessagesRejittered":{rejittered},"#,
            r#""RejitterBatches":{batches},"RejitterFailures":{failures}}}"#
        ),
        timestamp = timestamp_ms,
        namespace = text(namespace),
        queue_name = text(queue_name),
        rejittered = counts.rejittered,
        batches = counts.batches,
        failures = counts.failures,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn the_emf_line_has_the_exact_shape() {
        let counts = Counts {
            rejittered: 24,
            batches: 3,
            failures: 1,
            resent_already_rejittered: 5,
        };
        let line = emf_line("SqsCircuitBreaker", "orders", 1_700_000_000_123, &counts);
        assert_eq!(
            line,
            concat!(
                r#"{"_aws":{"Timestamp":1700000000123,"CloudWatchMetrics":[{"#,
                r#""Namespace":"SqsCircuitBreaker","Dimensions":[["QueueName"]],"Metrics":["#,
                r#"{"Name":"MessagesRejittered","Unit":"Count"},"#,
                r#"{"Name":"RejitterBatches","Unit":"Count"},"#,
                r#"{"Name":"RejitterFailures","Unit":"Count"}]}]},"#,
                r#""QueueName":"orders","MessagesRejittered":24,"RejitterBatches":3,"#,
                r#""RejitterFailures":1}"#
            )
        );
        assert!(!line.contains('\n'), "one line");
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            parsed,
            json!({
                "_aws": {
                    "Timestamp": 1_700_000_000_123u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "SqsCircuitBreaker",
                        "Dimensions": [["QueueName"]],
                        "Metrics": [
                            {"Name": "MessagesRejittered", "Unit": "Count"},
                            {"Name": "RejitterBatches", "Unit": "Count"},
                            {"Name": "RejitterFailures", "Unit": "Count"}
                        ]
                    }]
                },
                "QueueName": "orders",
                "MessagesRejittered": 24,
                "RejitterBatches": 3,
                "RejitterFailures": 1
            })
        );
    }

    #[test]
    fn every_declared_metric_and_dimension_has_a_value() {
        let line = emf_line("Ns", "q", 0, &Counts::default());
        let v: Value = serde_json::from_str(&line).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        for dimension in directive["Dimensions"][0].as_array().unwrap() {
            assert!(v[dimension.as_str().unwrap()].is_string(), "{dimension}");
        }
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert_eq!(v[name], 0, "{name}");
        }
        assert_eq!(directive["Namespace"], "Ns");
    }

    #[test]
    fn names_are_escaped_as_json() {
        let line = emf_line("a\"b\n", "q\\1", 5, &Counts::default());
        assert!(!line.contains('\n'), "one line");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "a\"b\n");
        assert_eq!(v["QueueName"], "q\\1");
    }
}
