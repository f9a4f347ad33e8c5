//! Running long external commands with a progress line and a log file, so a failure shows
//! the relevant output instead of a wall of text on success.

use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd`, writing its output to `log`; prints a heartbeat while it runs and the tail
/// of the log if it fails.
pub fn logged(what: &str, cmd: &mut Command, log: &Path) -> Result<()> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir)?;
    }
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let started = Instant::now();
    eprintln!("==> {what} (log: {})", log.display());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("{what}: could not start {:?}", cmd.get_program()))?;
    let mut next_beat = Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() >= next_beat {
            eprintln!("    ... {what}: {}s", started.elapsed().as_secs());
            next_beat += Duration::from_secs(20);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        let text = fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        for line in tail.iter().rev() {
            eprintln!("    | {line}");
        }
        bail!("{what} failed ({status}); full log: {}", log.display());
    }
    eprintln!("    done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}
