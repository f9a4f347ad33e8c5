//! Rejitter configuration, read from an environment-like lookup and checked at cold start, so
//! a bad deployment fails before it touches a message.

use crate::delay::DelayRange;
use controller::core::{QueueArn, QueueArnError};

/// Why the configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is required but is missing or blank")]
    Missing { name: &'static str },

    #[error("{name}={value:?} is not a whole number of seconds")]
    InvalidNumber { name: &'static str, value: String },

    #[error(transparent)]
    InvalidQueueArn(#[from] QueueArnError),

    #[error(
        "the maximum delay ({max} s, MAX_DELAY_SECONDS) is above the SQS DelaySeconds limit \
         of 900 s"
    )]
    MaxDelayTooLarge { max: u32 },

    #[error(
        "the minimum delay ({min} s, MIN_DELAY_SECONDS) is above the maximum delay \
         ({max} s, MAX_DELAY_SECONDS)"
    )]
    MinDelayAboveMax { min: u32, max: u32 },

    #[error("FIFO queues cannot delay single messages; disable the rejitter for {queue_arn}")]
    FifoQueue { queue_arn: String },
}

/// Everything the rejitter needs to know, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The ARN of the deployment's consumer's queue. An attachment's queue mapped to the
    /// rejitter is another ([`crate::queues::Queues`]): each record goes back to its own. Its
    /// URL is looked up at the first invocation ([`crate::sender::Queue`]): a URL is not
    /// derivable from the ARN portably.
    pub queue_arn: String,
    /// `queue_arn`'s parts.
    pub queue: QueueArn,
    pub delays: DelayRange,
    /// The CloudWatch namespace of the rejitter's metrics (`METRICS_NAMESPACE`).
    pub metrics_namespace: String,
}

impl Config {
    /// Builds from a lookup such as `|k| std::env::var(k).ok()`.
    ///
    /// `QUEUE_ARN` is required, must be an SQS queue ARN
    /// (`arn:<partition>:sqs:<region>:<12-digit account>:<queue name>`) and must not name a FIFO
    /// queue: SQS ignores per-message delays there, so the rejitter would re-send the backlog as
    /// one burst. `MIN_DELAY_SECONDS` (default 0) and `MAX_DELAY_SECONDS` (default 900) bound the
    /// delays. `METRICS_NAMESPACE` (default [`DEFAULT_METRICS_NAMESPACE`]) names the metrics'
    /// namespace. Values are trimmed; a blank optional value means its default.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let value = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let seconds = |name: &'static str, default: u32| match value(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<u32>()
                .map_err(|_| ConfigError::InvalidNumber { name, value: v }),
        };

        let queue_arn = value("QUEUE_ARN").ok_or(ConfigError::Missing { name: "QUEUE_ARN" })?;
        let queue = QueueArn::parse(&queue_arn)?;
        if queue.is_fifo() {
            return Err(ConfigError::FifoQueue { queue_arn });
        }
        let min = seconds("MIN_DELAY_SECONDS", 0)?;
        let max = seconds("MAX_DELAY_SECONDS", 900)?;
        let delays = DelayRange::new(min, max)?;
        let metrics_namespace =
            value("METRICS_NAMESPACE").unwrap_or_else(|| DEFAULT_METRICS_NAMESPACE.to_owned());
        Ok(Config {
            queue_arn,
            queue,
            delays,
            metrics_namespace,
        })
    }

    /// The queue's name, the ARN's last field: `GetQueueUrl`'s `QueueName` and the `QueueName`
    /// metric dimension.
    pub fn queue_name(&self) -> &str {
        &self.queue.name
    }

    /// The 12-digit account that owns the queue, the ARN's fifth field: `GetQueueUrl`'s
    /// `QueueOwnerAWSAccountId`.
    pub fn queue_account(&self) -> &str {
        &self.queue.account
    }

    /// How old a marker may be and still count as this recovery's; see
    /// [`crate::marker::recent_marker_window_seconds`].
    pub fn recent_marker_window_seconds(&self) -> u64 {
        crate::marker::recent_marker_window_seconds(self.delays.max())
    }
}

/// The namespace of the rejitter's metrics unless `METRICS_NAMESPACE` says otherwise.
pub const DEFAULT_METRICS_NAMESPACE: &str = "SqsCircuitBreaker";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const ARN: &str = "arn:aws:sqs:us-east-1:123456789012:orders";

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| env.get(k).cloned())
    }

    #[test]
    fn defaults_to_the_full_sqs_range() {
        let c = from(&[("QUEUE_ARN", ARN)]).unwrap();
        assert_eq!(c.queue_arn, ARN);
        assert_eq!(c.delays, DelayRange::new(0, 900).unwrap());
        assert_eq!(c.metrics_namespace, "SqsCircuitBreaker");
        assert_eq!(c.queue_name(), "orders");
        assert_eq!(c.queue_account(), "123456789012");
        assert_eq!(c.recent_marker_window_seconds(), 1800);
    }

    #[test]
    fn the_queue_arn_is_trimmed_and_split() {
        let c = from(&[(
            "QUEUE_ARN",
            " arn:aws-cn:sqs:cn-north-1:000000000000:a_b-C9 \n",
        )])
        .unwrap();
        assert_eq!(c.queue_arn, "arn:aws-cn:sqs:cn-north-1:000000000000:a_b-C9");
        assert_eq!(c.queue_name(), "a_b-C9");
        assert_eq!(c.queue_account(), "000000000000");
        let longest = format!("arn:aws:sqs:eu-west-1:123456789012:{}", "q".repeat(80));
        assert_eq!(
            from(&[("QUEUE_ARN", &longest)]).unwrap().queue_name().len(),
            80
        );
    }

    #[test]
    fn reads_and_trims_the_metrics_namespace() {
        let c = from(&[("QUEUE_ARN", ARN), ("METRICS_NAMESPACE", " Shop/Orders ")]).unwrap();
        assert_eq!(c.metrics_namespace, "Shop/Orders");
        let c = from(&[("QUEUE_ARN", ARN), ("METRICS_NAMESPACE", " ")]).unwrap();
        assert_eq!(c.metrics_namespace, DEFAULT_METRICS_NAMESPACE);
    }

    #[test]
    fn reads_and_trims_the_delays() {
        let c = from(&[
            ("QUEUE_ARN", ARN),
            ("MIN_DELAY_SECONDS", " 30 "),
            ("MAX_DELAY_SECONDS", "120"),
        ])
        .unwrap();
        assert_eq!(c.delays, DelayRange::new(30, 120).unwrap());
        assert_eq!(c.recent_marker_window_seconds(), 1020);
    }

    #[test]
    fn blank_delays_mean_their_defaults() {
        let c = from(&[
            ("QUEUE_ARN", ARN),
            ("MIN_DELAY_SECONDS", ""),
            ("MAX_DELAY_SECONDS", "  "),
        ])
        .unwrap();
        assert_eq!(c.delays, DelayRange::new(0, 900).unwrap());
    }

    #[test]
    fn queue_arn_is_required() {
        let missing = Err(ConfigError::Missing { name: "QUEUE_ARN" });
        assert_eq!(from(&[]), missing);
        assert_eq!(from(&[("QUEUE_ARN", "  ")]), missing);
        // A queue URL alone is not enough: the ARN names the queue.
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/orders";
        assert_eq!(from(&[("QUEUE_URL", url)]), missing);
    }

    #[test]
    fn a_malformed_queue_arn_is_refused_by_name_and_value() {
        // Which ARNs are malformed is the parser's (controller::core::queue_arn, tested
        // there); the configuration names the variable and the value, with the parser's why.
        for (arn, needle) in [
            (
                "https://sqs.us-east-1.amazonaws.com/123456789012/orders",
                "six",
            ),
            ("arn:aws:sqs:eu-west-1:123456789012:orders/x", "queue name"),
        ] {
            match from(&[("QUEUE_ARN", arn)]) {
                Err(e @ ConfigError::InvalidQueueArn { .. }) => {
                    let text = e.to_string();
                    assert!(
                        text.starts_with(&format!("QUEUE_ARN={arn:?} is not an SQS queue ARN")),
                        "{text}"
                    );
                    assert!(text.contains(needle), "{arn:?}: {text}");
                }
                other => panic!("{arn:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_numbers_are_refused_by_name() {
        for bad in ["-1", "1.5", "ten", "4294967296"] {
            assert_eq!(
                from(&[("QUEUE_ARN", ARN), ("MAX_DELAY_SECONDS", bad)]),
                Err(ConfigError::InvalidNumber {
                    name: "MAX_DELAY_SECONDS",
                    value: bad.to_owned()
                })
            );
        }
    }

    #[test]
    fn out_of_range_delays_are_refused() {
        assert_eq!(
            from(&[("QUEUE_ARN", ARN), ("MAX_DELAY_SECONDS", "901")]),
            Err(ConfigError::MaxDelayTooLarge { max: 901 })
        );
        assert_eq!(
            from(&[
                ("QUEUE_ARN", ARN),
                ("MIN_DELAY_SECONDS", "60"),
                ("MAX_DELAY_SECONDS", "59")
            ]),
            Err(ConfigError::MinDelayAboveMax { min: 60, max: 59 })
        );
        // The default maximum applies when only the minimum is set.
        assert_eq!(
            from(&[("QUEUE_ARN", ARN), ("MIN_DELAY_SECONDS", "901")]),
            Err(ConfigError::MinDelayAboveMax { min: 901, max: 900 })
        );
    }

    #[test]
    fn a_fifo_queue_is_refused_with_a_clear_message() {
        let arn = "arn:aws-us-gov:sqs:us-gov-west-1:123456789012:orders.fifo";
        let err = from(&[("QUEUE_ARN", arn)]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::FifoQueue {
                queue_arn: arn.to_owned()
            }
        );
        assert_eq!(
            err.to_string(),
            format!("FIFO queues cannot delay single messages; disable the rejitter for {arn}")
        );
    }

    #[test]
    fn fifo_is_judged_by_the_queue_name_only() {
        for standard in [
            "arn:aws:sqs:eu-west-1:123456789012:fifo",
            "arn:aws:sqs:eu-west-1:123456789012:q-fifo",
            "arn:aws:sqs:eu-west-1:123456789012:fifo_q",
        ] {
            assert!(from(&[("QUEUE_ARN", standard)]).is_ok(), "{standard}");
        }
    }

    #[test]
    fn error_messages_name_what_to_fix() {
        let text = ConfigError::MaxDelayTooLarge { max: 901 }.to_string();
        assert!(
            text.contains("MAX_DELAY_SECONDS") && text.contains("900"),
            "{text}"
        );
        let text = ConfigError::InvalidNumber {
            name: "MIN_DELAY_SECONDS",
            value: "x".to_owned(),
        }
        .to_string();
        assert!(text.contains("MIN_DELAY_SECONDS"), "{text}");
    }

    proptest! {
        #[test]
        fn any_valid_pair_is_accepted_as_given(max in 0u32..=900, pick in any::<proptest::sample::Index>()) {
            let min = pick.index(max as usize + 1) as u32;
            let c = from(&[
                ("QUEUE_ARN", ARN),
                ("MIN_DELAY_SECONDS", &min.to_string()),
                ("MAX_DELAY_SECONDS", &max.to_string()),
            ])
            .unwrap();
            prop_assert_eq!((c.delays.min(), c.delays.max()), (min, max));
        }

        #[test]
        fn queue_names_ending_in_fifo_are_refused(name in "[A-Za-z0-9_-]{1,75}") {
            let standard = format!("arn:aws:sqs:us-east-1:123456789012:{name}");
            let fifo = format!("{standard}.fifo");
            let c = from(&[("QUEUE_ARN", &standard)]).unwrap();
            prop_assert_eq!(c.queue_name(), name.as_str());
            prop_assert_eq!(c.queue_account(), "123456789012");
            prop_assert_eq!(
                from(&[("QUEUE_ARN", &fifo)]),
                Err(ConfigError::FifoQueue { queue_arn: fifo.clone() })
            );
        }
    }
}
