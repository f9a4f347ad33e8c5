//! Running long external commands with a progress line and a log file, so a failure shows
//! the relevant output instead of a wall of text on success.

use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Takes out of `cmd`'s environment the variables cargo gives a program it runs (`cargo run`,
/// `cargo test`: `CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, ...), for a command that runs cargo.
/// Build scripts can watch them (ring's do): a build started with them sees another
/// environment than the shell's `cargo xtask` build saw, runs those scripts again and
/// recompiles all that depends on them (24 s of the demo's first run went to that).
pub fn without_cargo_package_env(cmd: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if is_package_var(&name.to_string_lossy()) {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn is_package_var(name: &str) -> bool {
    ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || matches!(
            name,
            "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "OUT_DIR"
        )
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_cargo_gives_a_program_are_taken_out_and_no_other() {
        for name in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_BIN_EXE_controller",
            "CARGO_CRATE_NAME",
            "OUT_DIR",
        ] {
            assert!(is_package_var(name), "{name}");
        }
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_INCREMENTAL",
            "PATH",
        ] {
            assert!(!is_package_var(name), "{name}");
        }
    }

    /// Under `cargo test` this process has `CARGO_PKG_NAME`; a command made for cargo has not.
    #[test]
    fn a_command_for_cargo_has_none_of_them() {
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        let mut cmd = Command::new("true");
        without_cargo_package_env(&mut cmd);
        let removed: Vec<_> = cmd
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        assert!(removed.iter().any(|n| n == "CARGO_PKG_NAME"), "{removed:?}");
        assert!(removed.iter().all(|n| is_package_var(n)), "{removed:?}");
    }
}
