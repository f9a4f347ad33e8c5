//! The controller Lambda: parses the step request and runs it.

use controller::core::Config;
use controller::error::StepError;
use controller::steps::{self, Context, Request};
use lambda_runtime::{service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;

async fn handle(ctx: &Context, event: LambdaEvent<Value>) -> Result<Value, StepError> {
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

#[tokio::main]
async fn main() -> Result<(), Error> {
    // JSON lines; the step span puts `step` and `execution` on every line of a request.
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::builder()
                .with_default_directive(tracing::level_filters::LevelFilter::INFO.into())
                .from_env_lossy(),
        )
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .init();
    let config = Config::from_lookup(|name| std::env::var(name).ok()).map_err(|e| {
        tracing::error!(error = %e, "invalid configuration");
        e
    })?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let ctx = Context::live(config, &sdk);
    lambda_runtime::run(service_fn(|event| handle(&ctx, event))).await
}
