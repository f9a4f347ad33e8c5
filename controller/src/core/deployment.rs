//! What a controller deployment's environment makes of it at cold start: a breaker with a
//! built-in consumer (the single-consumer stack, with or without attachments), a fleet-only
//! breaker (no consumer of its own, attachments only), or a refused configuration.

use crate::core::config::{Config, ConfigError};

/// The variables that name the built-in consumer.
const CONSUMER: [&str; 3] = ["CONSUMER_FUNCTION_NAME", "QUEUE_ARN", "ALARM_NAME"];

/// The controller's configuration at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The built-in consumer's configuration; for a fleet-only deployment, the deployment's
    /// own settings with blank consumer fields, which no step acts on (`fleet_only`).
    pub config: Config,
    /// No built-in consumer: only inputs naming an attachment open circuits.
    pub fleet_only: bool,
}

/// Reads the deployment from its environment. Without any of the built-in consumer's
/// variables and with an attachments table, it is fleet-only; otherwise the environment
/// must be a valid single-consumer configuration, as it always had to be. A consumer named
/// in part (a function but no queue) is a mistake, not a fleet: it is refused, and so is a
/// deployment with neither a consumer nor an attachments table, which could guard nothing.
pub fn deployment(
    get: impl Fn(&str) -> Option<String>,
    has_attachments_table: bool,
) -> Result<Deployment, ConfigError> {
    let set = |name: &str| get(name).is_some_and(|v| !v.trim().is_empty());
    let names_no_consumer = !CONSUMER.iter().any(|name| set(name));
    if !(names_no_consumer && has_attachments_table) {
        return Config::from_lookup(get).map(|config| Deployment {
            config,
            fleet_only: false,
        });
    }
    // The deployment's settings are checked as any configuration is; the consumer the check
    // requires is a stand-in, blanked afterwards, so nothing can act on it.
    let stand_in = |name: &str| match name {
        "CONSUMER_FUNCTION_NAME" | "ALARM_NAME" => Some("none".to_string()),
        "QUEUE_ARN" => Some("arn:aws:sqs:none:000000000000:none".to_string()),
        _ => get(name),
    };
    let config = Config::from_lookup(stand_in)?;
    Ok(Deployment {
        config: Config {
            consumer_function: String::new(),
            queue_arn: String::new(),
            alarm_name: String::new(),
            ..config
        },
        fleet_only: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const DEPLOYMENT: &[(&str, &str)] = &[
        ("STATE_MACHINE_NAME", "breaker"),
        ("CIRCUIT_TABLE", "breaker-circuits"),
        ("EVENT_BUS_NAME", "breakers"),
        ("BACKOFF_BASE_SECONDS", "7"),
    ];

    fn with_consumer() -> HashMap<String, String> {
        let mut e = env(DEPLOYMENT);
        e.extend(env(&[
            ("CONSUMER_FUNCTION_NAME", "orders"),
            ("QUEUE_ARN", "arn:aws:sqs:eu-west-1:123456789012:orders"),
            ("ALARM_NAME", "orders-failing"),
        ]));
        e
    }

    #[test]
    fn a_named_consumer_is_built_in_with_or_without_attachments() {
        let e = with_consumer();
        for table in [false, true] {
            let found = deployment(|k| e.get(k).cloned(), table).expect("valid");
            assert!(!found.fleet_only);
            assert_eq!(
                found.config,
                Config::from_lookup(|k| e.get(k).cloned()).expect("valid")
            );
        }
    }

    #[test]
    fn no_consumer_and_an_attachments_table_is_a_fleet_with_the_deployments_settings() {
        let mut e = env(DEPLOYMENT);
        e.insert("QUEUE_ARN".into(), "  ".into());
        let found = deployment(|k| e.get(k).cloned(), true).expect("fleet-only");
        assert!(found.fleet_only);
        assert_eq!(found.config.consumer_function, "");
        assert_eq!(found.config.queue_arn, "");
        assert_eq!(found.config.alarm_name, "");
        assert_eq!(found.config.circuit_table, "breaker-circuits");
        assert_eq!(found.config.event_bus, "breakers");
        assert_eq!(found.config.backoff.base_seconds, 7);
        // Nothing can pass for the breaker's own execution without a consumer's account.
        assert!(!found
            .config
            .is_own_execution("arn:aws:states:none:000000000000:execution:breaker:x"));
    }

    #[test]
    fn refusals_stay_refusals() {
        // No consumer and nothing to attach: the single-consumer check's refusal.
        let e = env(DEPLOYMENT);
        assert_eq!(
            deployment(|k| e.get(k).cloned(), false),
            Err(ConfigError::Missing {
                name: "CONSUMER_FUNCTION_NAME"
            })
        );
        // A consumer named in part.
        let mut e = with_consumer();
        e.remove("QUEUE_ARN");
        assert_eq!(
            deployment(|k| e.get(k).cloned(), true),
            Err(ConfigError::Missing { name: "QUEUE_ARN" })
        );
        // A fleet's own settings are checked too.
        let mut e = env(DEPLOYMENT);
        e.insert("BACKOFF_CAP_SECONDS".into(), "3".into());
        assert_eq!(
            deployment(|k| e.get(k).cloned(), true),
            Err(ConfigError::BackoffCapBelowBase { cap: 3, base: 7 })
        );
        let mut e = env(DEPLOYMENT);
        e.remove("CIRCUIT_TABLE");
        assert_eq!(
            deployment(|k| e.get(k).cloned(), true),
            Err(ConfigError::Missing {
                name: "CIRCUIT_TABLE"
            })
        );
    }
}
