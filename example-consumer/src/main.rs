//! Lambda entry point: read config once, then hand each batch to the library.

use aws_lambda_events::event::sqs::SqsEvent;
use example_consumer::{handle, logging, Config};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    logging::init();

    // Returning the error exits before the first poll, so Lambda reports an
    // init failure; the log line carries the readable message.
    let config = Config::from_env()
        .inspect_err(|error| tracing::error!(error = %error, "invalid configuration"))?;
    tracing::info!(
        should_error = config.should_error,
        failure_rate = config.failure_rate.get(),
        latency_ms = u64::try_from(config.latency.as_millis()).unwrap_or(u64::MAX),
        poison_marker = config.poison_marker.as_deref().unwrap_or(""),
        "configuration loaded"
    );

    let config = &config;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        handle(config, event.payload, rand::random::<f64>).await
    }))
    .await
}
