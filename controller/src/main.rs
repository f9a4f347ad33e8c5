//! The controller Lambda: parses the step request and runs it.

use controller::adapters::attachments::Attachments;
use controller::adapters::signals::put_misconfigured;
use controller::core::attachment::Defaults;
use controller::core::deploy_check::{is_stack_status_change, misconfigured};
use controller::core::deployment::deployment;
use controller::core::registration::is_custom_resource_request;
use controller::core::ConfigError;
use controller::error::StepError;
use controller::registration;
use controller::steps::{self, AssumedRoles, Context, Fleet, Request};
use lambda_runtime::{service_fn, tracing, Error, LambdaEvent};
use serde_json::{json, Value};
use std::sync::Arc;

async fn handle(ctx: &Context, event: LambdaEvent<Value>) -> Result<Value, StepError> {
    if is_stack_status_change(&event.payload) {
        tracing::info!(
            status = %event.payload["detail"]["status-details"]["status"],
            "stack deployed; configuration valid"
        );
        return Ok(json!({"configuration": "valid"}));
    }
    if is_custom_resource_request(&event.payload) {
        return registration::handle(ctx, &event.payload, &responder()?).await;
    }
    let (request, retries) = Request::parse(event.payload)
        .map_err(|e| StepError::Fatal(format!("malformed step request: {e}")))?;
    let span = tracing::info_span!("step", step = request.name(), execution = %request.execution(), retries);
    let _guard = span.enter();
    // This invocation's own deadline: the probe must judge a hanging consumer before it.
    let ctx = Context {
        deadline_ms: Some(event.context.deadline),
        ..ctx.clone()
    };
    let result = steps::run(&ctx, request, retries).await;
    if let Err(e) = &result {
        tracing::error!(error_type = e.name(), error = %e, "step failed");
    }
    result
}

/// With a refused configuration the controller still answers: the deploy's event announces
/// the refusal ("Breaker Misconfigured"), and every step fails with it, touching nothing.
async fn refuse(
    eventbridge: &aws_sdk_eventbridge::Client,
    error: &ConfigError,
    event: LambdaEvent<Value>,
) -> Result<Value, StepError> {
    let env = |name: &str| std::env::var(name).ok();
    if is_stack_status_change(&event.payload) {
        let detail = misconfigured(&event.payload, env, error);
        let bus = env("EVENT_BUS_NAME").unwrap_or_else(|| "default".into());
        put_misconfigured(eventbridge, &bus, &detail).await?;
        tracing::error!(reason = %detail.reason, bus = %bus, "announced: Breaker Misconfigured");
        return Ok(json!({"configuration": "refused", "reason": detail.reason}));
    }
    if is_custom_resource_request(&event.payload) {
        let reason = format!("the breaker deployment's configuration is refused: {error}");
        return registration::refuse(&event.payload, &reason, &responder()?).await;
    }
    let e = StepError::Fatal(format!("the breaker's configuration is refused: {error}"));
    tracing::error!(error_type = e.name(), error = %e, "step refused");
    Err(e)
}

fn responder() -> Result<registration::HttpResponder, StepError> {
    registration::HttpResponder::new().map_err(StepError::Fatal)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // JSON lines; the step span puts `step` and `execution` on every line of a request.
    controller::logging::init();
    let sdk = controller::sdk::defaults().load().await;
    let env = |name: &str| std::env::var(name).ok();
    let attachments_table = env("ATTACHMENTS_TABLE").filter(|t| !t.trim().is_empty());
    // An environment naming no consumer at all is a fleet-only deployment when it has an
    // attachments table to read consumers from; anything else must be a valid single-consumer
    // configuration, as always: a half-named consumer or a bad setting is refused (and
    // announced), never silently taken for a fleet.
    match deployment(env, attachments_table.is_some()) {
        Ok(deployment) => {
            let mut ctx = Context::live(deployment.config, &sdk);
            ctx.fleet = Fleet {
                defaults: Defaults::from_lookup(env),
                attachments: attachments_table.map(|table| Attachments {
                    dynamodb: ctx.clients.dynamodb.clone(),
                    table,
                }),
                fleet_only: deployment.fleet_only,
                roles: Some(Arc::new(AssumedRoles::new(sdk.clone()))),
                own: None,
            };
            tracing::info!(
                fleet_only = ctx.fleet.fleet_only,
                attachments_table = ?ctx.fleet.attachments.as_ref().map(|a| &a.table),
                "controller ready"
            );
            lambda_runtime::run(service_fn(|event| handle(&ctx, event))).await
        }
        Err(error) => {
            tracing::error!(error = %error, "invalid configuration");
            let eventbridge = aws_sdk_eventbridge::Client::new(&sdk);
            lambda_runtime::run(service_fn(|event| refuse(&eventbridge, &error, event))).await
        }
    }
}
