//! `cargo xtask test`: every check CI runs.

use anyhow::{Context, Result};
use std::process::Command;
use xtask::{paths, tools};

/// How a step's output reaches the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// As it comes.
    Live,
    /// Kept, and printed whole only if the step fails: these steps run beside the tests,
    /// whose output would otherwise be interleaved with theirs.
    OnFailure,
}

/// Every check CI runs; fails if any failed.
pub fn test() -> Result<()> {
    let root = paths::root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let step = |what: &str, output: Output, cmd: &mut Command| -> Result<()> {
        eprintln!("==> {what}");
        cmd.current_dir(&root);
        xtask::run::without_cargo_package_env(cmd);
        match output {
            Output::Live => {
                let status = cmd.status()?;
                anyhow::ensure!(status.success(), "{what} failed ({status})");
            }
            Output::OnFailure => {
                let out = cmd.output().with_context(|| format!("starting {what}"))?;
                if !out.status.success() {
                    eprintln!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    anyhow::bail!("{what} failed ({})", out.status);
                }
                eprintln!("==> {what}: passed");
            }
        }
        Ok(())
    };
    // On a first run the toolchain's install (bound by the network) runs beside the build.
    let installing = std::thread::spawn(tools::ensure);
    test_steps(&cargo, installing, step)
}

/// fmt and the tests' build; then two lanes side by side: the tests, and the other static
/// checks (clippy, cfn-lint, the CDK construct's tests, the doc tests), which lock nothing the
/// tests use for long. Both lanes run to their end; the run fails if either failed.
fn test_steps(
    cargo: &str,
    installing: std::thread::JoinHandle<Result<tools::Tools>>,
    step: impl Fn(&str, Output, &mut Command) -> Result<()> + Sync,
) -> Result<()> {
    step(
        "cargo fmt --check",
        Output::Live,
        Command::new(cargo).args(["fmt", "--all", "--check"]),
    )?;
    let nextest = nextest_available(cargo);
    if nextest {
        // The same build `cargo nextest run` makes, before the lanes share the cores.
        step(
            "cargo test --no-run (building the tests)",
            Output::Live,
            Command::new(cargo).args(["test", "--workspace", "--no-run"]),
        )?;
    }
    let tools = installing
        .join()
        .map_err(|_| anyhow::anyhow!("installing the local AWS toolchain panicked"))??;
    let (tests, checks) = std::thread::scope(|scope| {
        let checks = scope.spawn(|| static_checks(cargo, &tools, &step));
        let tests = tests(cargo, nextest, &step);
        let checks = checks
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the static checks panicked")));
        (tests, checks)
    });
    match (tests, checks) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Err(tests), Err(checks)) => Err(tests.context(format!("and {checks:#}"))),
    }
}

/// clippy, cfn-lint, the CDK construct's tests and the doc tests, one after the other.
fn static_checks(
    cargo: &str,
    tools: &tools::Tools,
    step: &impl Fn(&str, Output, &mut Command) -> Result<()>,
) -> Result<()> {
    // The local-stack tests wait on the emulator's timings more than they compute: clippy
    // takes the cores they leave idle, at the lowest priority so that it never delays them.
    // In a target folder of its own: cargo locks a target folder for a whole command, which in
    // the tests' folder would hold up their `make lambdas` for minutes.
    let clippy_target = xtask::sam::target_dir().join("clippy");
    step(
        "cargo clippy",
        Output::OnFailure,
        Command::new("nice")
            .args(["-n", "19", cargo, "clippy", "--workspace", "--all-targets"])
            .arg("--target-dir")
            .arg(&clippy_target)
            .args(["--", "-D", "warnings"]),
    )?;
    let templates: Vec<_> = std::fs::read_dir(paths::root().join("infra"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    step(
        "cfn-lint infra/*.yaml",
        Output::OnFailure,
        tools.command("cfn-lint").args(&templates),
    )?;
    // The CDK construct's unit tests (node's test runner; bundling skipped, so seconds),
    // holding the lock the CDK deploy test takes around its build and synth.
    let cdk = xtask::cdk::lock()?;
    xtask::cdk::install()?;
    step(
        "npm test --prefix cdk (the CDK construct)",
        Output::OnFailure,
        Command::new("npm")
            .args(["test", "--prefix"])
            .arg(xtask::cdk::dir()),
    )?;
    drop(cdk);
    // cargo-nextest does not run doc tests.
    step(
        "cargo test --doc",
        Output::OnFailure,
        Command::new(cargo).args(["test", "--workspace", "--doc"]),
    )
}

/// Every unit, property and local-stack test. Local-stack tests are #[ignore]d so that a
/// plain `cargo test` stays offline and fast; each runs on its own emulator, and
/// cargo-nextest runs them side by side, a process each.
fn tests(
    cargo: &str,
    nextest: bool,
    step: &impl Fn(&str, Output, &mut Command) -> Result<()>,
) -> Result<()> {
    if nextest {
        step(
            "cargo nextest (unit, property and local-stack tests, 6 at a time)",
            Output::Live,
            Command::new(cargo).args([
                "nextest",
                "run",
                "--workspace",
                "--run-ignored",
                "all",
                // With 8, the 2 cores were more than busy (load 2.5 to 2.8) and the run took
                // longer than with 6. The longest start first (see .config/nextest.toml).
                "--test-threads",
                "6",
                "--no-fail-fast",
            ]),
        )
    } else {
        step(
            "cargo test (unit, property and local-stack tests; one binary at a time, as \
             cargo-nextest is not installed)",
            Output::Live,
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

    fn installed() -> Result<tools::Tools> {
        Ok(tools::Tools {
            bin: "/nonexistent/venv/bin".into(),
        })
    }

    fn is_tests(what: &str) -> bool {
        what.starts_with("cargo nextest") || what.starts_with("cargo test (")
    }

    /// fmt runs first; then the tests and the other checks side by side: here the tests can
    /// only end once the CDK construct's tests have run.
    #[test]
    fn the_other_checks_run_beside_the_tests_after_fmt() {
        let (checks_ran, wait_for_checks) = mpsc::channel::<()>();
        let checks_ran = Mutex::new(Some(checks_ran));
        let wait_for_checks = Mutex::new(wait_for_checks);
        let steps = Mutex::new(Vec::new());
        test_steps("cargo", std::thread::spawn(installed), |what, output, _| {
            steps.lock().unwrap().push((what.to_string(), output));
            if what.starts_with("npm test") {
                if let Some(tx) = checks_ran.lock().unwrap().take() {
                    tx.send(()).unwrap();
                }
            }
            if is_tests(what) {
                wait_for_checks
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(10))
                    .map_err(|_| anyhow::anyhow!("the checks did not run beside the tests"))?;
            }
            Ok(())
        })
        .unwrap();
        let steps = steps.into_inner().unwrap();
        let names: Vec<&str> = steps.iter().map(|(what, _)| what.as_str()).collect();
        assert_eq!(names[0], "cargo fmt --check");
        let at = |name: &str| names.iter().position(|what| what.starts_with(name));
        assert!(at("cargo clippy") > at("cargo test --no-run"));
        for check in ["cargo clippy", "cfn-lint", "npm test", "cargo test --doc"] {
            let (_, output) = &steps[at(check).unwrap_or_else(|| panic!("{check} not run"))];
            assert_eq!(*output, Output::OnFailure, "{check}");
        }
    }

    /// A failed check beside the tests fails the run, and the tests still run to their end.
    #[test]
    fn a_failed_check_fails_the_run_after_the_tests() {
        let tests_ran = Mutex::new(false);
        let result = test_steps("cargo", std::thread::spawn(installed), |what, _, _| {
            if what.starts_with("cfn-lint") {
                anyhow::bail!("cfn-lint infra/*.yaml failed (exit status: 2)");
            }
            if is_tests(what) {
                *tests_ran.lock().unwrap() = true;
            }
            Ok(())
        });
        let error = format!("{:#}", result.unwrap_err());
        assert!(error.contains("cfn-lint"), "{error}");
        assert!(*tests_ran.lock().unwrap());
    }

    /// A failed clippy fails the run, and the tests still run to their end.
    #[test]
    fn a_failed_clippy_fails_the_run_after_the_tests() {
        let tests_ran = Mutex::new(false);
        let result = test_steps("cargo", std::thread::spawn(installed), |what, _, _| {
            if what == "cargo clippy" {
                anyhow::bail!("cargo clippy failed (exit status: 101)");
            }
            if is_tests(what) {
                *tests_ran.lock().unwrap() = true;
            }
            Ok(())
        });
        let error = format!("{:#}", result.unwrap_err());
        assert!(error.contains("clippy"), "{error}");
        assert!(*tests_ran.lock().unwrap());
    }
}
