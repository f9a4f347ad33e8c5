//! `cargo xtask bench`: figures, never pass/fail (machines are shared and noisy). One bench a
//! module; the cold start helpers here serve `controller` and `rejitter`.

pub mod controller;
pub mod fleet;
pub mod rejitter;
pub mod signals;
pub mod slow_start;

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Environment the Lambda service gives a runtime process. Test credentials and no instance
/// metadata: nothing a benchmarked binary does may reach AWS.
pub fn lambda_env(runtime_api: &str, function: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", function.to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function}"),
        ),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

/// The cold start of any Lambda binary: `env` gives its whole environment from the Runtime
/// API address. Nothing is inherited, so a developer's AWS settings cannot leak in.
pub fn cold_start_with(
    binary: &Path,
    env: impl Fn(&str) -> Vec<(&'static str, String)>,
) -> Result<Duration> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let api = listener.local_addr()?.to_string();
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .envs(env(&api))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let exited = Arc::new(AtomicBool::new(false));
    let watchdog = exit_watchdog(child.id(), api.clone(), Arc::clone(&exited));
    let accepted = listener.accept();
    let elapsed = started.elapsed();
    let (mut stream, _) = accepted?;
    let mut head = [0u8; 128];
    let n = stream.read(&mut head)?;
    let exited_early = exited.load(Ordering::SeqCst);
    let _ = child.kill();
    let status = child.wait()?;
    let _ = watchdog.join();
    if exited_early {
        bail!(
            "{} exited ({status}) before polling for an invocation",
            binary.display()
        );
    }
    let request = String::from_utf8_lossy(&head[..n]);
    if !request.contains("/runtime/invocation/next") {
        bail!("the first request was not a poll for the next invocation: {request:?}");
    }
    Ok(elapsed)
}

/// Unblocks the `accept` of [`cold_start_with`] when the process exits without polling (a bad
/// configuration): it sets `exited` and connects to the listener. Ends once the process is
/// killed either way.
fn exit_watchdog(pid: u32, api: String, exited: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || loop {
        // A zombie has exited and waits to be reaped; a missing entry is reaped already.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let gone = state
            .as_deref()
            .and_then(|s| s.rsplit_once(") "))
            .is_none_or(|(_, rest)| rest.starts_with('Z'));
        if gone {
            exited.store(true, Ordering::SeqCst);
            let _ = std::net::TcpStream::connect(&api);
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_that_exits_before_polling_is_an_error_not_a_hang() {
        let err = cold_start_with(Path::new("/bin/false"), controller::controller_env).unwrap_err();
        assert!(err.to_string().contains("before polling"), "{err:#}");
    }

    #[test]
    fn summary_picks_min_median_and_p90() {
        let samples = (1..=10).map(Duration::from_millis).collect();
        let ms = Duration::from_millis;
        assert_eq!(summary(samples), (ms(1), ms(6), ms(9)));
    }
}
