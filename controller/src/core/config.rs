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
mod tests;
