//! `cargo xtask test`: every check CI runs.

use anyhow::Result;
use std::process::Command;
use xtask::{paths, tools};

/// Every check CI runs, in order of cost, stopping at the first failure.
pub fn test() -> Result<()> {
    let root = paths::root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let step = |what: &str, cmd: &mut Command| -> Result<()> {
        eprintln!("==> {what}");
        let status = cmd.current_dir(&root).status()?;
        anyhow::ensure!(status.success(), "{what} failed ({status})");
        Ok(())
    };
    // On a first run the toolchain's install (pip, bound by the network) runs beside fmt and
    // clippy (bound by the cores); cfn-lint is the first step that needs it.
    let installing = std::thread::spawn(tools::ensure);
    test_steps(&cargo, installing, step)
}

/// Every check and test of `cargo xtask test`, in order.
fn test_steps(
    cargo: &str,
    installing: std::thread::JoinHandle<Result<tools::Tools>>,
    step: impl Fn(&str, &mut Command) -> Result<()>,
) -> Result<()> {
    let root = paths::root();
    step(
        "cargo fmt --check",
        Command::new(cargo).args(["fmt", "--all", "--check"]),
    )?;
    step(
        "cargo clippy",
        Command::new(cargo).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    let tools = installing
        .join()
        .map_err(|_| anyhow::anyhow!("installing the local AWS toolchain panicked"))??;
    let templates: Vec<_> = std::fs::read_dir(root.join("infra"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    step(
        "cfn-lint infra/*.yaml",
        tools.command("cfn-lint").args(&templates),
    )?;
    // The CDK construct's unit tests (node's test runner; bundling skipped, so seconds).
    if xtask::cdk::npm_ci_needed() {
        step(
            "npm ci --prefix cdk",
            Command::new("npm")
                .args(["ci", "--prefix"])
                .arg(xtask::cdk::dir()),
        )?;
    }
    step(
        "npm test --prefix cdk (the CDK construct)",
        Command::new("npm")
            .args(["test", "--prefix"])
            .arg(xtask::cdk::dir()),
    )?;
    // Local-stack tests are #[ignore]d so that a plain `cargo test` stays offline and fast.
    // They spend most of their time waiting (backoffs, delays, visibility timeouts), each on
    // its own emulator: cargo-nextest runs them side by side, a process each.
    if nextest_available(cargo) {
        // Doc tests first (nextest does not run them), so the run closes on nextest's summary.
        step(
            "cargo test --doc",
            Command::new(cargo).args(["test", "--workspace", "--doc"]),
        )?;
        step(
            "cargo nextest (unit, property and local-stack tests, 6 at a time)",
            Command::new(cargo).args([
                "nextest",
                "run",
                "--workspace",
                "--run-ignored",
                "all",
                // The local-stack tests mostly wait (on backoffs, visibility timeouts, alarm
                // periods): with 4 threads the 2 cores were loaded about 1 in 2. The longest
                // start first (see .config/nextest.toml).
                "--test-threads",
                "6",
                "--no-fail-fast",
            ]),
        )
    } else {
        step(
            "cargo test (unit, property and local-stack tests; one binary at a time, as \
             cargo-nextest is not installed)",
            Command::new(cargo).args(["test", "--workspace", "--", "--include-ignored"]),
        )
    }
}

fn nextest_available(cargo: &str) -> bool {
    Command::new(cargo)
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|out| out.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{mpsc, Mutex};
    use std::time::Duration;

    /// The toolchain's install runs beside fmt and clippy: here it can only finish once clippy
    /// has run, and cfn-lint, the first step that needs it, still waits for it.
    #[test]
    fn the_toolchain_installs_beside_fmt_and_clippy() {
        let (clippy_ran, wait_for_clippy) = mpsc::channel::<()>();
        let installing = std::thread::spawn(move || {
            wait_for_clippy
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| anyhow::anyhow!("clippy did not run while the toolchain installed"))?;
            Ok(tools::Tools {
                bin: "/nonexistent/venv/bin".into(),
            })
        });
        let clippy_ran = Mutex::new(Some(clippy_ran));
        let steps = Mutex::new(Vec::new());
        test_steps("cargo", installing, |what, _| {
            steps.lock().unwrap().push(what.to_string());
            if what == "cargo clippy" {
                if let Some(tx) = clippy_ran.lock().unwrap().take() {
                    tx.send(()).unwrap();
                }
            }
            Ok(())
        })
        .unwrap();
        let steps = steps.into_inner().unwrap();
        assert_eq!(
            steps[..3],
            ["cargo fmt --check", "cargo clippy", "cfn-lint infra/*.yaml"]
        );
    }
}
