//! `cargo xtask bench controller`: figures, not pass/fail. Cold start of the controller
//! binary (process start to its first Runtime API poll) and the latency of each workflow
//! step against the local stack.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Environment a Lambda runtime process gets, plus the controller's configuration.
fn controller_env(runtime_api: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", "controller".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/controller".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("CONSUMER_FUNCTION_NAME", "consumer".into()),
        (
            "QUEUE_ARN",
            "arn:aws:sqs:us-east-1:123456789012:orders".into(),
        ),
        ("ALARM_NAME", "orders-consumer-errors".into()),
        ("CIRCUIT_TABLE", "circuits".into()),
        ("RUST_LOG", "warn".into()),
    ]
}

/// Starts `binary` against a fake Runtime API on loopback and measures the time until its
/// first `GET .../invocation/next`.
pub fn cold_start(binary: &Path) -> Result<Duration> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let api = listener.local_addr()?.to_string();
    let started = Instant::now();
    let mut child = Command::new(binary)
        .envs(controller_env(&api))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let (mut stream, _) = listener.accept()?;
    let elapsed = started.elapsed();
    let mut head = [0u8; 128];
    let n = stream.read(&mut head)?;
    let _ = child.kill();
    let _ = child.wait();
    let request = String::from_utf8_lossy(&head[..n]);
    if !request.contains("/runtime/invocation/next") {
        bail!("the first request was not a poll for the next invocation: {request:?}");
    }
    Ok(elapsed)
}

/// Minimum, median and 90th percentile.
pub fn summary(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.0), at(0.5), at(0.9))
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
