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
