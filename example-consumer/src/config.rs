//! Configuration read once at init from environment variables.
//!
//! Parsing takes a lookup function instead of reading the process environment
//! so every case can be tested without mutating global state.

use std::time::Duration;

use thiserror::Error;

/// `true`/`1` fails every invocation (simulated outage).
pub const SHOULD_ERROR: &str = "SHOULD_ERROR";
/// Fraction in `0..=1` of records reported in `batchItemFailures`.
pub const FAILURE_RATE: &str = "FAILURE_RATE";
/// Milliseconds to sleep per batch.
pub const LATENCY_MS: &str = "LATENCY_MS";
/// Records whose body contains this text always fail: poison messages, for tests and demos.
pub const POISON_MARKER: &str = "POISON_MARKER";

/// A fraction of records to fail, guaranteed to be in `0.0..=1.0` (never NaN).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FailureRate(f64);

impl FailureRate {
    pub const ZERO: Self = Self(0.0);
    pub const ONE: Self = Self(1.0);

    /// `None` if `rate` is NaN or outside `0.0..=1.0`.
    pub fn new(rate: f64) -> Option<Self> {
        // `contains` is false for NaN, so NaN is rejected here too.
        (0.0..=1.0).contains(&rate).then_some(Self(rate))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub should_error: bool,
    pub failure_rate: FailureRate,
    pub latency: Duration,
    pub poison_marker: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{var}={value:?} is not a boolean: expected true, false, 1 or 0 (any case), or leave it unset")]
    InvalidBool { var: &'static str, value: String },
    #[error(
        "{FAILURE_RATE}={value:?} is not a number: expected a fraction from 0 to 1, e.g. 0.25"
    )]
    FailureRateNotANumber { value: String },
    #[error("{FAILURE_RATE}={value:?} is out of range: expected a fraction from 0 to 1 inclusive")]
    FailureRateOutOfRange { value: String },
    #[error("{LATENCY_MS}={value:?} is not a whole number of milliseconds: expected an integer from 0 to {max}", max = u64::MAX)]
    InvalidLatency { value: String },
}

impl Config {
    /// Reads the process environment. Non-UTF-8 values are kept (lossily) so
    /// they fail parsing with a message instead of silently counting as unset.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| {
            std::env::var_os(key).map(|value| value.to_string_lossy().into_owned())
        })
    }

    /// Parses configuration from `lookup(name)`. Values are trimmed; unset and
    /// empty values mean the default (no error, no failures, no latency).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |key: &str| {
            lookup(key)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        Ok(Self {
            should_error: get(SHOULD_ERROR)
                .map(|value| parse_bool(SHOULD_ERROR, value))
                .transpose()?
                .unwrap_or(false),
            failure_rate: get(FAILURE_RATE)
                .map(parse_failure_rate)
                .transpose()?
                .unwrap_or_default(),
            latency: get(LATENCY_MS)
                .map(parse_latency)
                .transpose()?
                .unwrap_or_default(),
            poison_marker: get(POISON_MARKER),
        })
    }
}

fn parse_bool(var: &'static str, value: String) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ConfigError::InvalidBool { var, value }),
    }
}

fn parse_failure_rate(value: String) -> Result<FailureRate, ConfigError> {
    match value.parse::<f64>() {
        // Rust parses "NaN"; it is not a usable rate, so report it as such.
        Ok(rate) if rate.is_nan() => Err(ConfigError::FailureRateNotANumber { value }),
        Ok(rate) => FailureRate::new(rate).ok_or(ConfigError::FailureRateOutOfRange { value }),
        Err(_) => Err(ConfigError::FailureRateNotANumber { value }),
    }
}

fn parse_latency(value: String) -> Result<Duration, ConfigError> {
    value
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| ConfigError::InvalidLatency { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(env(pairs))
    }

    fn rate(r: f64) -> FailureRate {
        FailureRate::new(r).expect("valid rate in test")
    }

    #[test]
    fn all_unset_gives_defaults() {
        assert_eq!(
            parse(&[]),
            Ok(Config {
                should_error: false,
                failure_rate: FailureRate::ZERO,
                latency: Duration::ZERO,
                poison_marker: None,
            })
        );
    }

    #[test]
    fn empty_and_blank_values_mean_default() {
        for blank in ["", "  ", "\t"] {
            let config = parse(&[
                (SHOULD_ERROR, blank),
                (FAILURE_RATE, blank),
                (LATENCY_MS, blank),
            ]);
            assert_eq!(config, Ok(Config::default()), "value {blank:?}");
        }
    }

    #[test]
    fn should_error_accepts_true_false_one_zero_in_any_case() {
        let cases = [
            ("true", true),
            ("TRUE", true),
            ("True", true),
            ("tRuE", true),
            ("1", true),
            (" true ", true),
            ("false", false),
            ("FALSE", false),
            ("False", false),
            ("0", false),
            (" 0\n", false),
        ];
        for (value, expected) in cases {
            let config = parse(&[(SHOULD_ERROR, value)]).expect(value);
            assert_eq!(config.should_error, expected, "value {value:?}");
        }
    }

    #[test]
    fn should_error_rejects_other_values_naming_variable_and_value() {
        for value in [
            "yes", "no", "on", "off", "2", "-1", "t", "f", "truee", "01", "1.0",
        ] {
            let err = parse(&[(SHOULD_ERROR, value)]).expect_err(value);
            assert_eq!(
                err,
                ConfigError::InvalidBool {
                    var: SHOULD_ERROR,
                    value: value.to_owned()
                }
            );
            let message = err.to_string();
            assert!(message.contains("SHOULD_ERROR"), "{message}");
            assert!(message.contains(&format!("{value:?}")), "{message}");
        }
    }

    #[test]
    fn failure_rate_accepts_fractions_in_range() {
        let cases = [
            ("0", 0.0),
            ("0.0", 0.0),
            ("-0", 0.0),
            ("1", 1.0),
            ("1.0", 1.0),
            ("0.25", 0.25),
            (".5", 0.5),
            ("1e-1", 0.1),
            (" 0.75 ", 0.75),
        ];
        for (value, expected) in cases {
            let config = parse(&[(FAILURE_RATE, value)]).expect(value);
            assert_eq!(config.failure_rate, rate(expected), "value {value:?}");
        }
    }

    #[test]
    fn failure_rate_rejects_out_of_range() {
        for value in ["1.0001", "2", "-0.1", "-1", "inf", "-inf", "1e3"] {
            let err = parse(&[(FAILURE_RATE, value)]).expect_err(value);
            assert_eq!(
                err,
                ConfigError::FailureRateOutOfRange {
                    value: value.to_owned()
                }
            );
            let message = err.to_string();
            assert!(message.contains("FAILURE_RATE"), "{message}");
            assert!(message.contains("out of range"), "{message}");
        }
    }

    #[test]
    fn failure_rate_rejects_nan_and_garbage() {
        for value in ["NaN", "nan", "abc", "0,5", "50%", "0.5.1", "true"] {
            let err = parse(&[(FAILURE_RATE, value)]).expect_err(value);
            assert_eq!(
                err,
                ConfigError::FailureRateNotANumber {
                    value: value.to_owned()
                }
            );
            let message = err.to_string();
            assert!(message.contains("FAILURE_RATE"), "{message}");
            assert!(message.contains(&format!("{value:?}")), "{message}");
        }
    }

    #[test]
    fn latency_accepts_whole_milliseconds() {
        let cases = [
            ("0", 0),
            ("1", 1),
            ("250", 250),
            (" 1500 ", 1500),
            ("18446744073709551615", u64::MAX),
        ];
        for (value, expected) in cases {
            let config = parse(&[(LATENCY_MS, value)]).expect(value);
            assert_eq!(
                config.latency,
                Duration::from_millis(expected),
                "value {value:?}"
            );
        }
    }

    #[test]
    fn latency_rejects_non_integers() {
        for value in ["-1", "1.5", "abc", "100ms", "1e3", "18446744073709551616"] {
            let err = parse(&[(LATENCY_MS, value)]).expect_err(value);
            assert_eq!(
                err,
                ConfigError::InvalidLatency {
                    value: value.to_owned()
                }
            );
            let message = err.to_string();
            assert!(message.contains("LATENCY_MS"), "{message}");
            assert!(message.contains(&format!("{value:?}")), "{message}");
        }
    }

    #[test]
    fn reads_all_three_together() {
        assert_eq!(
            parse(&[
                (SHOULD_ERROR, "1"),
                (FAILURE_RATE, "0.3"),
                (LATENCY_MS, "42"),
                (POISON_MARKER, " poison ")
            ]),
            Ok(Config {
                should_error: true,
                failure_rate: rate(0.3),
                latency: Duration::from_millis(42),
                poison_marker: Some("poison".into()),
            })
        );
    }

    #[test]
    fn one_bad_variable_fails_even_if_others_are_valid() {
        let err = parse(&[
            (SHOULD_ERROR, "true"),
            (FAILURE_RATE, "0.5"),
            (LATENCY_MS, "soon"),
        ])
        .expect_err("LATENCY_MS is invalid");
        assert_eq!(
            err,
            ConfigError::InvalidLatency {
                value: "soon".into()
            }
        );
    }

    #[test]
    fn unrelated_variables_are_ignored() {
        assert_eq!(
            parse(&[("SHOULD_ERRORS", "maybe"), ("failure_rate", "9")]),
            Ok(Config::default())
        );
    }

    #[test]
    fn error_messages_are_exact() {
        assert_eq!(
            ConfigError::InvalidBool {
                var: SHOULD_ERROR,
                value: "yes".into()
            }
            .to_string(),
            r#"SHOULD_ERROR="yes" is not a boolean: expected true, false, 1 or 0 (any case), or leave it unset"#
        );
        assert_eq!(
            ConfigError::FailureRateOutOfRange {
                value: "1.5".into()
            }
            .to_string(),
            r#"FAILURE_RATE="1.5" is out of range: expected a fraction from 0 to 1 inclusive"#
        );
        assert_eq!(
            ConfigError::InvalidLatency { value: "x".into() }.to_string(),
            r#"LATENCY_MS="x" is not a whole number of milliseconds: expected an integer from 0 to 18446744073709551615"#
        );
    }

    #[test]
    fn failure_rate_new_bounds() {
        assert_eq!(FailureRate::new(0.0).map(FailureRate::get), Some(0.0));
        assert_eq!(FailureRate::new(1.0).map(FailureRate::get), Some(1.0));
        assert_eq!(FailureRate::new(f64::NAN), None);
        assert_eq!(FailureRate::new(-f64::MIN_POSITIVE), None);
        assert_eq!(FailureRate::new(1.0 + f64::EPSILON), None);
    }
}
