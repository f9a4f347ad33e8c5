//! The controller Lambda: parses the step request and runs it.

use controller::adapters::Clients;
use controller::core::Config;
use controller::error::StepError;
use controller::steps::{self, Context, Request};
use lambda_runtime::{service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

async fn handle(ctx: &Context, event: LambdaEvent<Value>) -> Result<Value, StepError> {
    let request: Request = serde_json::from_value(event.payload)
        .map_err(|e| StepError::Fatal(format!("malformed step request: {e}")))?;
    let span = tracing::info_span!("step", step = request.name(), execution = %request.execution());
    let _guard = span.enter();
    let result = steps::run(ctx, request).await;
    if let Err(e) = &result {
        tracing::error!(error_type = e.name(), error = %e, "step failed");
    }
    result
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber_with_writer(std::io::stdout);
    let config = Config::from_lookup(|name| std::env::var(name).ok()).map_err(|e| {
        tracing::error!(error = %e, "invalid configuration");
        e
    })?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let ctx = Context {
        config,
        clients: Clients::new(&sdk),
        clock: Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        }),
        random: Arc::new(rand::random::<f64>),
        poll: Duration::from_millis(500),
    };
    lambda_runtime::run(service_fn(|event| handle(&ctx, event))).await
}
