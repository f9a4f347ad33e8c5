//! Lambda entry point: read the configuration once, then hand each batch to the handler.
//!
//! Init makes no network call: the queue's URL is looked up at the first invocation that sends
//! ([`rejitter::Queue`]) and kept for the life of the process.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use rejitter::{handler, logging, Config, Queues};

#[tokio::main]
async fn main() -> Result<(), Error> {
    logging::init();

    // Returning the error exits before the first poll, so Lambda reports an init failure;
    // the log line carries the readable message.
    let config = Config::from_lookup(|name| std::env::var(name).ok())
        .inspect_err(|error| tracing::error!(error = %error, "invalid configuration"))?;
    tracing::info!(
        queue_arn = %config.queue_arn,
        min_delay_seconds = config.delays.min(),
        max_delay_seconds = config.delays.max(),
        recent_marker_window_seconds = config.recent_marker_window_seconds(),
        metrics_namespace = %config.metrics_namespace,
        "configuration loaded"
    );

    let sqs = aws_sdk_sqs::Client::new(&controller::sdk::defaults().load().await);
    let queues = Queues::new(sqs, &config);
    let (queues, config) = (&queues, &config);
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        handler::invoke(queues, config, event.payload).await
    }))
    .await
}
