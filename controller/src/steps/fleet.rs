//! One deployment, many consumers: which consumer a request is for, and the `Context` its
//! step runs with. An attachment's configuration is rebuilt from what its circuit recorded
//! (pure, no read of the attachments table), its calls on the consumer made under its role.

use super::Context;
use crate::adapters::attachments::Attachments;
use crate::adapters::Clients;
use crate::circuit::CircuitAttachment;
use crate::core::attachment::Defaults;
use crate::core::Config;
use crate::error::StepError;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// What a deployment knows of its attachments; the default is a single-consumer breaker.
#[derive(Clone, Default)]
pub struct Fleet {
    /// The deployment's environment, which every attachment's settings go over.
    pub defaults: Defaults,
    /// The attachments table (`ATTACHMENTS_TABLE`); `None`: the deployment has none.
    pub attachments: Option<Attachments>,
    /// No built-in consumer: `Context::config` holds only the deployment's settings.
    pub fleet_only: bool,
    /// Clients under an attachment's role; `None`: no role can be assumed.
    pub roles: Option<Arc<dyn Roles>>,
    /// The controller's own clients while `Context::clients` are an attachment's role's: the
    /// breaker's events and metrics are the deployment's, sent under its own role.
    pub own: Option<Clients>,
}

/// A boxed future, so that `Roles` can be a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Clients for the consumer's calls under a role; `own` are the controller's clients, whose
/// deployment-wide ones (the circuit table, the executions, the bus) stay the controller's.
pub trait Roles: Send + Sync {
    fn clients<'a>(
        &'a self,
        role_arn: &'a str,
        own: &'a Clients,
    ) -> BoxFuture<'a, Result<Clients, StepError>>;
}

/// The consumer's configuration for a circuit: the attachment's settings over the
/// deployment's defaults, or the built-in consumer's (`builtin`, `None` in a fleet-only
/// deployment).
pub fn consumer_config(
    defaults: &Defaults,
    builtin: Option<&Config>,
    attachment: Option<&CircuitAttachment>,
) -> Result<Config, StepError> {
    match attachment {
        None => builtin.cloned().ok_or_else(|| {
            StepError::Config(
                "this breaker deployment has no built-in consumer, and the circuit names no \
                 attachment"
                    .into(),
            )
        }),
        Some(attachment) => {
            let attached = Config::for_attachment(defaults, &attachment.settings)
                .map_err(|e| StepError::Config(e.to_string()))?;
            if attached.id != attachment.id {
                return Err(StepError::Config(format!(
                    "the circuit's attachment {:?} carries the settings of {:?}",
                    attachment.id, attached.id
                )));
            }
            Ok(attached.config)
        }
    }
}

/// The settings that say which consumer and alarm an attachment is: all that giving its
/// consumer back needs.
const IDENTITY: [&str; 5] = [
    "Id",
    "ConsumerFunctionName",
    "QueueArn",
    "AlarmName",
    "AlarmSignal",
];

/// Fallbacks for a circuit whose recorded settings the deployment's check now refuses (the
/// deployment changed while it was open): its identity and its rejitter choice over the
/// deployment's settings, then its identity alone with the rejitter off.
pub fn fallback_settings(settings: &serde_json::Value) -> [serde_json::Value; 2] {
    let pick = |keys: &[&str]| {
        let mut picked = serde_json::Map::new();
        for key in keys {
            if let Some(value) = settings.get(*key) {
                picked.insert((*key).to_owned(), value.clone());
            }
        }
        picked
    };
    let with_rejitter = pick(&[IDENTITY.as_slice(), &["RejitterEnabled"]].concat());
    let mut without = pick(&IDENTITY);
    without.insert("RejitterEnabled".into(), "false".into());
    [with_rejitter.into(), without.into()]
}

impl Context {
    /// The context of a circuit opened for `attachment` (`None`: the built-in consumer).
    pub async fn for_consumer(
        &self,
        attachment: Option<&CircuitAttachment>,
    ) -> Result<Context, StepError> {
        let builtin = (!self.fleet.fleet_only).then_some(&self.config);
        let Some(attachment) = attachment else {
            consumer_config(&self.fleet.defaults, builtin, None)?;
            return Ok(self.clone());
        };
        let config = consumer_config(&self.fleet.defaults, builtin, Some(attachment))?;
        let own = self.fleet.own.as_ref().unwrap_or(&self.clients);
        let (clients, fleet) = match &attachment.role_arn {
            None => (
                own.clone(),
                Fleet {
                    own: None,
                    ..self.fleet.clone()
                },
            ),
            Some(role) => {
                let roles = self.fleet.roles.as_ref().ok_or_else(|| {
                    StepError::Config(format!(
                        "attachment {:?} has the role {role}, but this controller cannot assume roles",
                        attachment.id
                    ))
                })?;
                let clients = roles.clients(role, own).await?;
                let fleet = Fleet {
                    own: Some(own.clone()),
                    ..self.fleet.clone()
                };
                (clients, fleet)
            }
        };
        Ok(Context {
            config,
            clients,
            fleet,
            ..self.clone()
        })
    }

    /// The context to end a circuit with: its consumer's, or, when the settings it was opened
    /// with no longer pass the deployment's check, its consumer under the deployment's
    /// settings ([`fallback_settings`]): a changed deployment never keeps a consumer disabled.
    pub async fn for_ending(
        &self,
        attachment: Option<&CircuitAttachment>,
    ) -> Result<Context, StepError> {
        let refused = match self.for_consumer(attachment).await {
            Err(StepError::Config(reason)) => reason,
            other => return other,
        };
        let Some(attachment) = attachment else {
            return Err(StepError::Config(refused));
        };
        for settings in fallback_settings(&attachment.settings) {
            let fallback = CircuitAttachment {
                settings,
                ..attachment.clone()
            };
            if let Ok(ctx) = self.for_consumer(Some(&fallback)).await {
                tracing::warn!(
                    attachment = %attachment.id,
                    refused = %refused,
                    "the circuit's recorded settings no longer pass: ending it under the deployment's settings"
                );
                return Ok(ctx);
            }
        }
        Err(StepError::Config(refused))
    }
}

/// Roles assumed with aws-config's provider (STS `AssumeRole`, credentials refreshed before
/// they expire), one set of clients per role ARN for the life of the warm process.
pub struct AssumedRoles {
    sdk: aws_config::SdkConfig,
    cache: Mutex<HashMap<String, Clients>>,
}

impl AssumedRoles {
    pub fn new(sdk: aws_config::SdkConfig) -> AssumedRoles {
        AssumedRoles {
            sdk,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, role_arn: &str) -> Option<Clients> {
        self.cache
            .lock()
            .map(|cache| cache.get(role_arn).cloned())
            .unwrap_or(None)
    }
}

impl Roles for AssumedRoles {
    fn clients<'a>(
        &'a self,
        role_arn: &'a str,
        own: &'a Clients,
    ) -> BoxFuture<'a, Result<Clients, StepError>> {
        Box::pin(async move {
            if let Some(clients) = self.cached(role_arn) {
                return Ok(clients);
            }
            let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
                .session_name("sqs-circuit-breaker")
                .configure(&self.sdk)
                .build()
                .await;
            let sdk = self
                .sdk
                .to_builder()
                .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
                    provider,
                ))
                .build();
            // The consumer's function, mapping, queue and alarm under its role; the circuit
            // table, the executions and the bus stay the controller's.
            let clients = Clients {
                sqs: aws_sdk_sqs::Client::new(&sdk),
                lambda: aws_sdk_lambda::Client::new(&sdk),
                cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
                ..own.clone()
            };
            if let Ok(mut cache) = self.cache.lock() {
                cache.insert(role_arn.to_string(), clients.clone());
            }
            tracing::info!(role = %role_arn, "clients under the attachment's role");
            Ok(clients)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const QUEUE: &str = "arn:aws:sqs:eu-west-1:123456789012:orders";

    fn env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("STATE_MACHINE_NAME", "breaker"),
            ("CIRCUIT_TABLE", "circuits"),
            ("BACKOFF_BASE_SECONDS", "5"),
        ]
    }

    fn defaults() -> Defaults {
        let e = env();
        Defaults::from_lookup(|k| e.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
    }

    fn orders(settings: serde_json::Value) -> CircuitAttachment {
        CircuitAttachment {
            id: "orders".into(),
            settings,
            role_arn: None,
        }
    }

    #[test]
    fn an_attachments_circuit_runs_with_its_settings_over_the_defaults() {
        let attachment = orders(json!({
            "Id": "orders",
            "ConsumerFunctionName": "orders-fn",
            "QueueArn": QUEUE,
            "AlarmName": "orders-alarm",
            "BackoffBaseSeconds": 30,
        }));
        let config = consumer_config(&defaults(), None, Some(&attachment)).expect("valid");
        assert_eq!(config.consumer_function, "orders-fn");
        assert_eq!(config.backoff.base_seconds, 30);
        assert_eq!(config.circuit_table, "circuits");
    }

    #[test]
    fn the_built_in_consumer_is_the_environments_and_a_fleet_has_none() {
        let mut e = env();
        e.extend([
            ("CONSUMER_FUNCTION_NAME", "builtin-fn"),
            ("QUEUE_ARN", QUEUE),
            ("ALARM_NAME", "builtin-alarm"),
        ]);
        let builtin =
            Config::from_lookup(|k| e.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
                .expect("valid");
        assert_eq!(
            consumer_config(&defaults(), Some(&builtin), None).expect("built in"),
            builtin
        );
        assert!(matches!(
            consumer_config(&defaults(), None, None),
            Err(StepError::Config(_))
        ));
    }

    #[test]
    fn settings_that_no_longer_pass_or_name_another_attachment_are_refused() {
        // No queue: refused by the configuration check, with its reason.
        let err = consumer_config(&defaults(), None, Some(&orders(json!({"Id": "orders"}))))
            .expect_err("no consumer");
        assert!(err.to_string().contains("(ConsumerFunctionName)"), "{err}");
        let other = orders(json!({
            "Id": "payments",
            "ConsumerFunctionName": "payments-fn",
            "QueueArn": QUEUE,
            "AlarmName": "payments-alarm",
        }));
        assert!(matches!(
            consumer_config(&defaults(), None, Some(&other)),
            Err(StepError::Config(m)) if m.contains("payments")
        ));
    }
}
