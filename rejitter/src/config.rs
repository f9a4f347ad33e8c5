//! Rejitter configuration, read from an environment-like lookup and checked at cold start, so
//! a bad deployment fails before it touches a message.

use crate::delay::DelayRange;

/// Why the configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is required but is missing or blank")]
    Missing { name: &'static str },

    #[error("{name}={value:?} is not a whole number of seconds")]
    InvalidNumber { name: &'static str, value: String },

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

    #[error("FIFO queues cannot delay single messages; disable the rejitter for {queue_url}")]
    FifoQueue { queue_url: String },
}

/// Everything the rejitter needs to know, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The queue to re-send to (the queue the backlog came from).
    pub queue_url: String,
    pub delays: DelayRange,
    /// The CloudWatch namespace of the rejitter's metrics (`METRICS_NAMESPACE`).
    pub metrics_namespace: String,
}

impl Config {
    /// Builds from a lookup such as `|k| std::env::var(k).ok()`.
    ///
    /// `QUEUE_URL` is required and must not be a FIFO queue: SQS ignores per-message delays
    /// there, so the rejitter would re-send the backlog as one burst. `MIN_DELAY_SECONDS`
    /// (default 0) and `MAX_DELAY_SECONDS` (default 900) bound the delays. `METRICS_NAMESPACE`
    /// (default [`DEFAULT_METRICS_NAMESPACE`]) names the metrics' namespace. Values are trimmed;
    /// a blank optional value means its default.
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

        let queue_url = value("QUEUE_URL").ok_or(ConfigError::Missing { name: "QUEUE_URL" })?;
        if is_fifo_url(&queue_url) {
            return Err(ConfigError::FifoQueue { queue_url });
        }
        let min = seconds("MIN_DELAY_SECONDS", 0)?;
        let max = seconds("MAX_DELAY_SECONDS", 900)?;
        let delays = DelayRange::new(min, max)?;
        let metrics_namespace =
            value("METRICS_NAMESPACE").unwrap_or_else(|| DEFAULT_METRICS_NAMESPACE.to_owned());
        Ok(Config {
            queue_url,
            delays,
            metrics_namespace,
        })
    }

    /// The queue's name, the last path segment of its URL: the `QueueName` metric dimension.
    pub fn queue_name(&self) -> &str {
        queue_name(&self.queue_url)
    }

    /// How old a marker may be and still count as this recovery's; see
    /// [`crate::marker::recent_marker_window_seconds`].
    pub fn recent_marker_window_seconds(&self) -> u64 {
        crate::marker::recent_marker_window_seconds(self.delays.max())
    }
}

/// The namespace of the rejitter's metrics unless `METRICS_NAMESPACE` says otherwise.
pub const DEFAULT_METRICS_NAMESPACE: &str = "SqsCircuitBreaker";

/// The last path segment of a queue URL (the queue name); a query, fragment or trailing slash
/// is ignored.
pub fn queue_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let path = path.trim_end_matches('/');
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether the queue URL's last path segment (the queue name) ends in `.fifo`, as every FIFO
/// queue name must. A query, fragment or trailing slash is ignored.
fn is_fifo_url(url: &str) -> bool {
    queue_name(url).ends_with(".fifo")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const URL: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/orders";

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| env.get(k).cloned())
    }

    #[test]
    fn defaults_to_the_full_sqs_range() {
        let c = from(&[("QUEUE_URL", URL)]).unwrap();
        assert_eq!(c.queue_url, URL);
        assert_eq!(c.delays, DelayRange::new(0, 900).unwrap());
        assert_eq!(c.metrics_namespace, "SqsCircuitBreaker");
        assert_eq!(c.queue_name(), "orders");
        assert_eq!(c.recent_marker_window_seconds(), 1800);
    }

    #[test]
    fn reads_and_trims_the_metrics_namespace() {
        let c = from(&[("QUEUE_URL", URL), ("METRICS_NAMESPACE", " Shop/Orders ")]).unwrap();
        assert_eq!(c.metrics_namespace, "Shop/Orders");
        let c = from(&[("QUEUE_URL", URL), ("METRICS_NAMESPACE", " ")]).unwrap();
        assert_eq!(c.metrics_namespace, DEFAULT_METRICS_NAMESPACE);
    }

    #[test]
    fn the_queue_name_is_the_last_path_segment() {
        assert_eq!(queue_name(URL), "orders");
        assert_eq!(queue_name("http://localhost:4566/000000000000/q/"), "q");
        assert_eq!(
            queue_name("https://sqs.eu-west-1.amazonaws.com/1/q?x=1#f"),
            "q"
        );
        assert_eq!(queue_name("q"), "q");
    }

    #[test]
    fn reads_and_trims_the_delays() {
        let c = from(&[
            ("QUEUE_URL", URL),
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
            ("QUEUE_URL", URL),
            ("MIN_DELAY_SECONDS", ""),
            ("MAX_DELAY_SECONDS", "  "),
        ])
        .unwrap();
        assert_eq!(c.delays, DelayRange::new(0, 900).unwrap());
    }

    #[test]
    fn queue_url_is_required() {
        let missing = Err(ConfigError::Missing { name: "QUEUE_URL" });
        assert_eq!(from(&[]), missing);
        assert_eq!(from(&[("QUEUE_URL", "  ")]), missing);
    }

    #[test]
    fn bad_numbers_are_refused_by_name() {
        for bad in ["-1", "1.5", "ten", "4294967296"] {
            assert_eq!(
                from(&[("QUEUE_URL", URL), ("MAX_DELAY_SECONDS", bad)]),
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
            from(&[("QUEUE_URL", URL), ("MAX_DELAY_SECONDS", "901")]),
            Err(ConfigError::MaxDelayTooLarge { max: 901 })
        );
        assert_eq!(
            from(&[
                ("QUEUE_URL", URL),
                ("MIN_DELAY_SECONDS", "60"),
                ("MAX_DELAY_SECONDS", "59")
            ]),
            Err(ConfigError::MinDelayAboveMax { min: 60, max: 59 })
        );
        // The default maximum applies when only the minimum is set.
        assert_eq!(
            from(&[("QUEUE_URL", URL), ("MIN_DELAY_SECONDS", "901")]),
            Err(ConfigError::MinDelayAboveMax { min: 901, max: 900 })
        );
    }

    #[test]
    fn a_fifo_queue_is_refused_with_a_clear_message() {
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/orders.fifo";
        let err = from(&[("QUEUE_URL", url)]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::FifoQueue {
                queue_url: url.to_owned()
            }
        );
        assert_eq!(
            err.to_string(),
            format!("FIFO queues cannot delay single messages; disable the rejitter for {url}")
        );
    }

    #[test]
    fn fifo_is_judged_by_the_queue_name_only() {
        assert!(is_fifo_url("http://localhost:4566/000000000000/q.fifo"));
        assert!(is_fifo_url("http://localhost:4566/000000000000/q.fifo/"));
        assert!(is_fifo_url(
            "https://sqs.eu-west-1.amazonaws.com/1/q.fifo?x=1"
        ));
        assert!(!is_fifo_url("https://sqs.eu-west-1.amazonaws.com/1/q"));
        assert!(!is_fifo_url("https://sqs.eu-west-1.amazonaws.com/1/fifo"));
        assert!(!is_fifo_url("https://q.fifo.example.com/1/q"));
        assert!(!is_fifo_url(
            "https://sqs.eu-west-1.amazonaws.com/1/q.fifo-archive"
        ));
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
                ("QUEUE_URL", URL),
                ("MIN_DELAY_SECONDS", &min.to_string()),
                ("MAX_DELAY_SECONDS", &max.to_string()),
            ])
            .unwrap();
            prop_assert_eq!((c.delays.min(), c.delays.max()), (min, max));
        }

        #[test]
        fn queue_names_ending_in_fifo_are_refused(name in "[A-Za-z0-9_-]{1,75}") {
            let standard = format!("https://sqs.us-east-1.amazonaws.com/123456789012/{name}");
            let fifo = format!("{standard}.fifo");
            prop_assert!(from(&[("QUEUE_URL", &standard)]).is_ok());
            let refused = matches!(
                from(&[("QUEUE_URL", &fifo)]),
                Err(ConfigError::FifoQueue { .. })
            );
            prop_assert!(refused);
        }
    }
}
