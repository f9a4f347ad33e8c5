//! The JSON log setup of the three Lambdas (controller, rejitter, example consumer): one JSON
//! object per line, event fields at the top level, the current span's fields (the runtime's
//! `requestId`, the controller's `step` and `execution`) on each line.

use tracing::level_filters::LevelFilter;
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Level filter from `RUST_LOG`, defaulting to `info`. Invalid directives are skipped rather
/// than failing init over a logging typo.
pub fn env_filter() -> EnvFilter {
    EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy()
}

/// Builds the subscriber; generic over the writer so tests can capture lines.
pub fn subscriber<W>(filter: EnvFilter, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        // CloudWatch timestamps every line already.
        .without_time()
        .with_target(false)
        .flatten_event(true)
        // Keeps the runtime's `requestId` span on each line, without nesting.
        .with_current_span(true)
        .with_span_list(false)
        .finish()
}

/// Installs the stdout JSON subscriber as the global default.
pub fn init() {
    subscriber(env_filter(), std::io::stdout).init();
}
