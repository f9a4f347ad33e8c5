//! Controller configuration, read from an environment-like lookup and
//! validated up front so a bad deployment fails at cold start rather than in
//! the middle of an outage.

use crate::core::queue_arn::{QueueArn, QueueArnError};

use crate::core::backoff::Backoff;
use crate::core::policy::{EmptyQueuePolicy, GiveUpPolicy, Limits};
use crate::core::signal::{Signal, SignalConfig};

/// Longest probe gap that makes sense; a Step Functions `Wait` could be a
/// year, but a breaker that probes less than daily is just off.
pub const MAX_BACKOFF_CAP_SECONDS: u32 = 86_400;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is required but is missing or blank")]
    Missing { name: &'static str },

    #[error("{name}={value:?} is not a whole number of seconds (0 to 4294967295)")]
    InvalidNumber { name: &'static str, value: String },

    #[error("{name}={value:?} is not a valid policy; expected one of: {allowed}")]
    InvalidPolicy {
        name: &'static str,
        value: String,
        allowed: &'static str,
    },

    #[error("BACKOFF_BASE_SECONDS={value} must be at least 1")]
    BackoffBaseTooSmall { value: u32 },

    #[error("BACKOFF_CAP_SECONDS={cap} must be at least BACKOFF_BASE_SECONDS={base}")]
    BackoffCapBelowBase { cap: u32, base: u32 },

    #[error("BACKOFF_CAP_SECONDS={value} must be at most {max} (one day)", max = MAX_BACKOFF_CAP_SECONDS)]
    BackoffCapTooLarge { value: u32 },

    #[error(transparent)]
    InvalidQueueArn(#[from] QueueArnError),

    #[error(
        "the rejitter is on (RejitterEnabled=true) but QUEUE_ARN={queue:?} is a FIFO queue, \
         which cannot delay single messages: set RejitterEnabled to false"
    )]
    RejitterOnFifoQueue { queue: String },

    #[error("MIN_DELAY_SECONDS={min} must be at most MAX_DELAY_SECONDS={max}")]
    MinDelayAboveMax { min: u32, max: u32 },

    #[error("EMPTY_QUEUE_POLICY=health-check requires HEALTH_CHECK_FUNCTION to be set")]
    HealthCheckFunctionMissing,

    #[error("SLOW_START_SECONDS={value} must be at most {max} (one hour)", max = crate::core::slow_start::MAX_SECONDS)]
    SlowStartTooLong { value: u32 },

    #[error(
        "SLOW_START_CONCURRENCY={value} must be from {min} to {max} (what SQS mappings accept \
         as MaximumConcurrency)",
        min = crate::core::slow_start::START,
        max = crate::core::slow_start::CEILING
    )]
    SlowStartConcurrencyOutOfRange { value: u32 },

    #[error("ALARM_SIGNAL={value:?} is not a signal; expected one of: {allowed}", allowed = crate::core::signal::SIGNAL_NAMES)]
    InvalidSignal { value: String },

    #[error("ALARM_FAILURE_PERCENT={value} must be from 1 to 100")]
    FailurePercentOutOfRange { value: u32 },
}

/// Everything the controller needs to know, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub consumer_function: String,
    pub queue_arn: String,
    pub alarm_name: String,
    /// The breaker's own state machine: only its running executions may open a circuit.
    pub state_machine_name: String,
    pub circuit_table: String,
    pub event_bus: String,
    pub metrics_namespace: String,
    pub backoff: Backoff,
    pub limits: Limits,
    pub empty_queue: EmptyQueuePolicy,
    pub give_up: GiveUpPolicy,
    pub health_check_function: Option<String>,
    pub retention_margin_seconds: u32,
    pub settle_timeout_seconds: u32,
    /// The rejitter function; None skips the rejitter phase.
    pub rejitter_function: Option<String>,
    /// Longest the rejitter phase may run before the circuit closes anyway.
    pub rejitter_max_seconds: u32,
    /// At most this many circuits open per mapping in any hour (`None`: no bound).
    pub max_circuits_per_hour: Option<u32>,
    /// How long the half-open ramp of the mapping's concurrency lasts (0: no slow start).
    pub slow_start_seconds: u32,
    /// The ramp's first `MaximumConcurrency`.
    pub slow_start_concurrency: u32,
    /// What the alarm watches, read the same way during the slow start.
    pub signal: SignalConfig,
}

impl Config {
    /// Build from a lookup such as `|k| std::env::var(k).ok()`. Values are
    /// trimmed; a blank optional value means its default.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env(get);

        let consumer_function = env.required("CONSUMER_FUNCTION_NAME")?;
        let queue_arn = env.required("QUEUE_ARN")?;
        QueueArn::parse(&queue_arn)?;
        let alarm_name = env.required("ALARM_NAME")?;
        let state_machine_name = env.required("STATE_MACHINE_NAME")?;
        let circuit_table = env.required("CIRCUIT_TABLE")?;
        let event_bus = env.or("EVENT_BUS_NAME", "default");
        let metrics_namespace = env.or("METRICS_NAMESPACE", "SqsCircuitBreaker");

        let base = env.seconds("BACKOFF_BASE_SECONDS", 5)?;
        let cap = env.seconds("BACKOFF_CAP_SECONDS", 300)?;
        if base < 1 {
            return Err(ConfigError::BackoffBaseTooSmall { value: base });
        }
        if cap < base {
            return Err(ConfigError::BackoffCapBelowBase { cap, base });
        }
        if cap > MAX_BACKOFF_CAP_SECONDS {
            return Err(ConfigError::BackoffCapTooLarge { value: cap });
        }

        let limits = Limits {
            max_attempts: unlimited_if_zero(env.seconds("MAX_PROBE_ATTEMPTS", 0)?),
            max_open_seconds: unlimited_if_zero(env.seconds("MAX_OPEN_SECONDS", 0)?),
        };

        let empty_queue = env.policy("EMPTY_QUEUE_POLICY", EmptyQueuePolicy::Close)?;
        let give_up = env.policy("GIVE_UP_POLICY", GiveUpPolicy::Restore)?;
        let health_check_function = env.optional("HEALTH_CHECK_FUNCTION");
        if empty_queue == EmptyQueuePolicy::HealthCheckOnly && health_check_function.is_none() {
            return Err(ConfigError::HealthCheckFunctionMissing);
        }

        let rejitter_function = env.optional("REJITTER_FUNCTION_NAME");
        if rejitter_function.is_some() && QueueArn::parse(&queue_arn)?.is_fifo() {
            return Err(ConfigError::RejitterOnFifoQueue { queue: queue_arn });
        }
        let min_delay = env.seconds("MIN_DELAY_SECONDS", 0)?;
        let max_delay = env.seconds("MAX_DELAY_SECONDS", 900)?;
        if min_delay > max_delay {
            return Err(ConfigError::MinDelayAboveMax {
                min: min_delay,
                max: max_delay,
            });
        }

        let slow_start_seconds = env.seconds("SLOW_START_SECONDS", 0)?;
        if slow_start_seconds > crate::core::slow_start::MAX_SECONDS {
            return Err(ConfigError::SlowStartTooLong {
                value: slow_start_seconds,
            });
        }
        let slow_start_concurrency =
            env.seconds("SLOW_START_CONCURRENCY", crate::core::slow_start::START)?;
        if !(crate::core::slow_start::START..=crate::core::slow_start::CEILING)
            .contains(&slow_start_concurrency)
        {
            return Err(ConfigError::SlowStartConcurrencyOutOfRange {
                value: slow_start_concurrency,
            });
        }

        let signal = env.or("ALARM_SIGNAL", "any");
        let signal = Signal::parse(&signal).ok_or(ConfigError::InvalidSignal { value: signal })?;
        let failure_percent = env.seconds("ALARM_FAILURE_PERCENT", 20)?;
        if !(1..=100).contains(&failure_percent) {
            return Err(ConfigError::FailurePercentOutOfRange {
                value: failure_percent,
            });
        }
        let period_seconds = env.seconds("ALARM_PERIOD_SECONDS", 60)?;
        let hang_seconds = period_seconds.saturating_mul(env.seconds("ALARM_HANG_PERIODS", 3)?);

        Ok(Config {
            consumer_function,
            queue_arn,
            alarm_name,
            state_machine_name,
            circuit_table,
            event_bus,
            metrics_namespace,
            backoff: Backoff {
                base_seconds: base,
                cap_seconds: cap,
            },
            limits,
            empty_queue,
            give_up,
            health_check_function,
            retention_margin_seconds: env.seconds("RETENTION_MARGIN_SECONDS", 3600)?,
            settle_timeout_seconds: env.seconds("SETTLE_TIMEOUT_SECONDS", 60)?,
            rejitter_function,
            rejitter_max_seconds: env.seconds("REJITTER_MAX_SECONDS", 900)?,
            max_circuits_per_hour: unlimited_if_zero(env.seconds("MAX_CIRCUITS_PER_HOUR", 6)?),
            slow_start_seconds,
            slow_start_concurrency,
            signal: SignalConfig {
                signal,
                failure_percent,
                hang_seconds,
            },
        })
    }

    /// FIFO queues are fine for the breaker itself; callers may still want to
    /// know (e.g. a probe blocks its message group while in flight).
    pub fn queue_is_fifo(&self) -> bool {
        self.queue_arn.ends_with(".fifo")
    }

    /// The validated queue ARN, split into its parts.
    pub fn queue(&self) -> Result<QueueArn, QueueArnError> {
        QueueArn::parse(&self.queue_arn)
    }

    /// Is `execution` an execution ARN of the breaker's own state machine (same partition,
    /// region and account as the queue)?
    pub fn is_own_execution(&self, execution: &str) -> bool {
        let Ok(queue) = self.queue() else {
            return false;
        };
        let prefix = format!(
            "arn:{}:states:{}:{}:execution:{}:",
            queue.partition, queue.region, queue.account, self.state_machine_name
        );
        execution
            .strip_prefix(&prefix)
            .is_some_and(|id| !id.is_empty() && !id.contains(':'))
    }
}

fn unlimited_if_zero(n: u32) -> Option<u32> {
    (n != 0).then_some(n)
}

/// Lookup wrapper that treats blank values as unset.
struct Env<F>(F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing { name })
    }

    fn or(&self, name: &str, default: &str) -> String {
        self.optional(name).unwrap_or_else(|| default.to_owned())
    }

    fn seconds(&self, name: &'static str, default: u32) -> Result<u32, ConfigError> {
        match self.optional(name) {
            None => Ok(default),
            Some(value) => value
                .parse()
                .map_err(|_| ConfigError::InvalidNumber { name, value }),
        }
    }

    fn policy<P>(&self, name: &'static str, default: P) -> Result<P, ConfigError>
    where
        P: std::str::FromStr<Err = crate::core::policy::UnknownPolicy>,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(value) => value
                .parse()
                .map_err(
                    |e: crate::core::policy::UnknownPolicy| ConfigError::InvalidPolicy {
                        name,
                        value,
                        allowed: e.allowed,
                    },
                ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ARN: &str = "arn:aws:sqs:eu-west-1:123456789012:orders";

    fn required() -> HashMap<&'static str, String> {
        HashMap::from([
            ("CONSUMER_FUNCTION_NAME", "consumer".to_owned()),
            ("QUEUE_ARN", ARN.to_owned()),
            ("ALARM_NAME", "consumer-errors".to_owned()),
            ("STATE_MACHINE_NAME", "consumer-breaker".to_owned()),
            ("CIRCUIT_TABLE", "circuits".to_owned()),
        ])
    }

    fn load(vars: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| vars.get(k).cloned())
    }

    fn load_with(extra: &[(&'static str, &str)]) -> Result<Config, ConfigError> {
        let mut vars = required();
        for (k, v) in extra {
            vars.insert(k, (*v).to_owned());
        }
        load(&vars)
    }

    #[test]
    fn the_rejitter_on_a_fifo_queue_is_refused() {
        let fifo = "arn:aws:sqs:eu-west-1:123456789012:orders.fifo";
        assert_eq!(
            load_with(&[("QUEUE_ARN", fifo), ("REJITTER_FUNCTION_NAME", "rejitter")]),
            Err(ConfigError::RejitterOnFifoQueue {
                queue: fifo.to_owned()
            })
        );
        // Without the rejitter, or on a standard queue whose name merely says fifo: fine.
        assert!(load_with(&[("QUEUE_ARN", fifo)]).is_ok());
        let look_alike = "arn:aws:sqs:eu-west-1:123456789012:orders-fifo";
        assert!(load_with(&[("QUEUE_ARN", look_alike), ("REJITTER_FUNCTION_NAME", "r")]).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn min_delay_above_max_is_refused_and_nothing_else(min in 0u32..=900, max in 0u32..=900) {
            let (min_s, max_s) = (min.to_string(), max.to_string());
            let loaded = load_with(&[("MIN_DELAY_SECONDS", &min_s), ("MAX_DELAY_SECONDS", &max_s)]);
            if min > max {
                proptest::prop_assert_eq!(loaded, Err(ConfigError::MinDelayAboveMax { min, max }));
            } else {
                proptest::prop_assert!(loaded.is_ok());
            }
        }

        #[test]
        fn backoff_cap_below_base_is_refused_and_nothing_else(base in 1u32..=86_400, cap in 1u32..=86_400) {
            let (base_s, cap_s) = (base.to_string(), cap.to_string());
            let loaded = load_with(&[("BACKOFF_BASE_SECONDS", &base_s), ("BACKOFF_CAP_SECONDS", &cap_s)]);
            if cap < base {
                proptest::prop_assert_eq!(loaded, Err(ConfigError::BackoffCapBelowBase { cap, base }));
            } else {
                proptest::prop_assert!(loaded.is_ok());
            }
        }
    }

    #[test]
    fn defaults() {
        let c = load(&required()).expect("valid");
        assert_eq!(
            c,
            Config {
                consumer_function: "consumer".into(),
                queue_arn: ARN.into(),
                alarm_name: "consumer-errors".into(),
                state_machine_name: "consumer-breaker".into(),
                circuit_table: "circuits".into(),
                event_bus: "default".into(),
                metrics_namespace: "SqsCircuitBreaker".into(),
                backoff: Backoff {
                    base_seconds: 5,
                    cap_seconds: 300
                },
                limits: Limits {
                    max_attempts: None,
                    max_open_seconds: None
                },
                empty_queue: EmptyQueuePolicy::Close,
                give_up: GiveUpPolicy::Restore,
                health_check_function: None,
                retention_margin_seconds: 3600,
                settle_timeout_seconds: 60,
                rejitter_function: None,
                rejitter_max_seconds: 900,
                max_circuits_per_hour: Some(6),
                slow_start_seconds: 0,
                slow_start_concurrency: 2,
                signal: SignalConfig::default(),
            }
        );
        assert!(!c.queue_is_fifo());
    }

    #[test]
    fn the_signal_and_its_settings() {
        let c = load_with(&[
            ("ALARM_SIGNAL", "failed-records"),
            ("ALARM_FAILURE_PERCENT", "35"),
            ("ALARM_PERIOD_SECONDS", "10"),
            ("ALARM_HANG_PERIODS", "4"),
        ])
        .expect("valid");
        assert_eq!(
            c.signal,
            SignalConfig {
                signal: Signal::FailedRecords,
                failure_percent: 35,
                hang_seconds: 40
            }
        );
        assert_eq!(
            load_with(&[("ALARM_SIGNAL", "dlq")]),
            Err(ConfigError::InvalidSignal {
                value: "dlq".into()
            })
        );
        assert!(ConfigError::InvalidSignal {
            value: "dlq".into()
        }
        .to_string()
        .contains("any, failed-records, error-share, errors, custom"));
        assert_eq!(
            load_with(&[("ALARM_FAILURE_PERCENT", "0")]),
            Err(ConfigError::FailurePercentOutOfRange { value: 0 })
        );
    }

    #[test]
    fn a_slow_start_longer_than_an_hour_is_refused() {
        assert_eq!(
            load_with(&[("SLOW_START_SECONDS", "3601")]),
            Err(ConfigError::SlowStartTooLong { value: 3601 })
        );
        assert_eq!(
            load_with(&[("SLOW_START_SECONDS", "120")]).map(|c| c.slow_start_seconds),
            Ok(120)
        );
        for bad in ["0", "1", "1001"] {
            assert!(matches!(
                load_with(&[("SLOW_START_CONCURRENCY", bad)]),
                Err(ConfigError::SlowStartConcurrencyOutOfRange { .. })
            ));
        }
        assert_eq!(
            load_with(&[("SLOW_START_CONCURRENCY", "5")]).map(|c| c.slow_start_concurrency),
            Ok(5)
        );
    }

    #[test]
    fn blank_optional_values_mean_default() {
        let c = load_with(&[
            ("EVENT_BUS_NAME", "  "),
            ("BACKOFF_BASE_SECONDS", ""),
            ("HEALTH_CHECK_FUNCTION", " "),
            ("GIVE_UP_POLICY", ""),
        ])
        .expect("valid");
        assert_eq!(c.event_bus, "default");
        assert_eq!(c.backoff.base_seconds, 5);
        assert_eq!(c.health_check_function, None);
        assert_eq!(c.give_up, GiveUpPolicy::Restore);
    }

    #[test]
    fn everything_set() {
        let c = load_with(&[
            ("EVENT_BUS_NAME", "breakers"),
            ("METRICS_NAMESPACE", "Ns"),
            ("BACKOFF_BASE_SECONDS", " 2 "),
            ("BACKOFF_CAP_SECONDS", "86400"),
            ("MAX_PROBE_ATTEMPTS", "10"),
            ("MAX_OPEN_SECONDS", "7200"),
            ("EMPTY_QUEUE_POLICY", "health-check"),
            ("GIVE_UP_POLICY", "leave-open"),
            ("HEALTH_CHECK_FUNCTION", "health"),
            ("RETENTION_MARGIN_SECONDS", "0"),
            ("SETTLE_TIMEOUT_SECONDS", "120"),
        ])
        .expect("valid");
        assert_eq!(c.event_bus, "breakers");
        assert_eq!(c.metrics_namespace, "Ns");
        assert_eq!(
            c.backoff,
            Backoff {
                base_seconds: 2,
                cap_seconds: 86_400
            }
        );
        assert_eq!(
            c.limits,
            Limits {
                max_attempts: Some(10),
                max_open_seconds: Some(7200)
            }
        );
        assert_eq!(c.empty_queue, EmptyQueuePolicy::HealthCheckOnly);
        assert_eq!(c.give_up, GiveUpPolicy::LeaveOpen);
        assert_eq!(c.health_check_function.as_deref(), Some("health"));
        assert_eq!(c.retention_margin_seconds, 0);
        assert_eq!(c.settle_timeout_seconds, 120);
    }

    #[test]
    fn missing_or_blank_required_names_the_variable() {
        for name in [
            "CONSUMER_FUNCTION_NAME",
            "QUEUE_ARN",
            "ALARM_NAME",
            "CIRCUIT_TABLE",
        ] {
            let mut vars = required();
            vars.remove(name);
            let err = load(&vars).expect_err("missing");
            assert_eq!(err, ConfigError::Missing { name });
            assert!(err.to_string().contains(name));

            vars.insert(name, " \t".into());
            assert_eq!(load(&vars), Err(ConfigError::Missing { name }));
        }
    }

    #[test]
    fn bad_numbers_name_variable_and_value() {
        for name in [
            "BACKOFF_BASE_SECONDS",
            "BACKOFF_CAP_SECONDS",
            "MAX_PROBE_ATTEMPTS",
            "MAX_OPEN_SECONDS",
            "RETENTION_MARGIN_SECONDS",
            "SETTLE_TIMEOUT_SECONDS",
        ] {
            for value in ["-1", "five", "1.5", "4294967296"] {
                let err = load_with(&[(name, value)]).expect_err("invalid");
                assert_eq!(
                    err,
                    ConfigError::InvalidNumber {
                        name,
                        value: value.into()
                    }
                );
                let msg = err.to_string();
                assert!(msg.contains(name) && msg.contains(value), "{msg}");
            }
        }
    }

    #[test]
    fn backoff_validation() {
        assert_eq!(
            load_with(&[("BACKOFF_BASE_SECONDS", "0")]),
            Err(ConfigError::BackoffBaseTooSmall { value: 0 })
        );
        assert_eq!(
            load_with(&[("BACKOFF_BASE_SECONDS", "10"), ("BACKOFF_CAP_SECONDS", "9")]),
            Err(ConfigError::BackoffCapBelowBase { cap: 9, base: 10 })
        );
        assert_eq!(
            load_with(&[("BACKOFF_CAP_SECONDS", "86401")]),
            Err(ConfigError::BackoffCapTooLarge { value: 86_401 })
        );
        let equal = load_with(&[("BACKOFF_BASE_SECONDS", "7"), ("BACKOFF_CAP_SECONDS", "7")]);
        assert!(equal.is_ok());
        let msg = ConfigError::BackoffCapTooLarge { value: 86_401 }.to_string();
        assert_eq!(
            msg,
            "BACKOFF_CAP_SECONDS=86401 must be at most 86400 (one day)"
        );
    }

    #[test]
    fn bad_policies_name_variable_value_and_allowed() {
        let err = load_with(&[("EMPTY_QUEUE_POLICY", "skip")]).expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "EMPTY_QUEUE_POLICY=\"skip\" is not a valid policy; expected one of: close, wait, health-check"
        );
        let err = load_with(&[("GIVE_UP_POLICY", "Restore")]).expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "GIVE_UP_POLICY=\"Restore\" is not a valid policy; expected one of: leave-open, restore"
        );
    }

    #[test]
    fn health_check_policy_needs_a_function() {
        assert_eq!(
            load_with(&[("EMPTY_QUEUE_POLICY", "health-check")]),
            Err(ConfigError::HealthCheckFunctionMissing)
        );
        let c = load_with(&[
            ("EMPTY_QUEUE_POLICY", "wait"),
            ("HEALTH_CHECK_FUNCTION", "h"),
        ])
        .expect("valid");
        assert_eq!(c.empty_queue, EmptyQueuePolicy::Wait);
    }

    #[test]
    fn fifo_queue_is_accepted() {
        let c = load_with(&[(
            "QUEUE_ARN",
            "arn:aws-us-gov:sqs:us-gov-west-1:123456789012:orders.fifo",
        )])
        .expect("valid");
        assert!(c.queue_is_fifo());
        let q = c.queue().expect("parses");
        assert_eq!(q.partition, "aws-us-gov");
        assert!(q.is_fifo());
    }

    #[test]
    fn config_rejects_bad_queue_arn() {
        let err = load_with(&[("QUEUE_ARN", "arn:aws:sqs:eu-west-1:123:orders")]).expect_err("bad");
        assert!(
            matches!(err, ConfigError::InvalidQueueArn { .. }),
            "{err:?}"
        );
    }
}
