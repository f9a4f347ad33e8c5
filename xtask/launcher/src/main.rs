//! `cargo xtask` (the alias in `.cargo/config.toml`) runs this first, then hands over to
//! xtask with the same arguments. For the tasks that start the local stack, a first run
//! installs the pinned toolchain (Python, network, unpacking) while cargo compiles xtask and
//! the Lambdas the emulator runs, so it waits for the slower of the two, not for both.

use std::ffi::OsString;
use std::process::{Command, ExitCode};
use xtask_launcher::{run, tools, LAMBDAS};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if starts_the_local_stack(&args) {
        if let Err(code) = prepare() {
            return code;
        }
    }
    hand_over(args)
}

/// Whether the task (`args`, as `cargo xtask` got them) starts the local stack: the demo,
/// `local up` and the tests.
fn starts_the_local_stack(args: &[OsString]) -> bool {
    let words: Vec<&str> = args.iter().take(2).filter_map(|a| a.to_str()).collect();
    matches!(
        words.as_slice(),
        ["demo", ..] | ["test", ..] | ["local", "up"]
    )
}

/// Builds xtask and the Lambdas while the toolchain installs; both must succeed. Built here
/// beside xtask, the Lambdas use the core that xtask's last crates leave idle, and `make
/// lambdas` finds them built.
fn prepare() -> Result<(), ExitCode> {
    let installing = std::thread::spawn(tools::ensure);
    let mut build = cargo();
    build.args(["build", "--workspace", "--bin", "xtask"]);
    for lambda in LAMBDAS {
        build.args(["--bin", lambda]);
    }
    let built = build.status();
    let installed = installing.join();
    match built {
        Ok(status) if status.success() => {}
        Ok(status) => return Err(exit_code(status.code())),
        Err(e) => {
            eprintln!("error: could not run cargo: {e}");
            return Err(ExitCode::FAILURE);
        }
    }
    match installed {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            Err(ExitCode::FAILURE)
        }
        Err(_) => {
            eprintln!("error: installing the toolchain panicked");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Runs xtask with `args`, in place of this process where the platform allows.
fn hand_over(args: Vec<OsString>) -> ExitCode {
    let mut xtask = cargo();
    xtask.args(["run", "--package", "xtask", "--"]).args(args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = xtask.exec();
        eprintln!("error: could not run cargo: {e}");
        ExitCode::FAILURE
    }
    #[cfg(not(unix))]
    match xtask.status() {
        Ok(status) => exit_code(status.code()),
        Err(e) => {
            eprintln!("error: could not run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The cargo that runs this launcher, without the variables it set for this package (a
/// build that saw them would run some build scripts again).
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    run::without_cargo_package_env(&mut cmd);
    cmd
}

fn exit_code(code: Option<i32>) -> ExitCode {
    ExitCode::from(code.and_then(|c| u8::try_from(c).ok()).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::starts_the_local_stack;
    use std::ffi::OsString;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn prepares_for_the_tasks_that_start_the_local_stack_only() {
        for task in [
            &["demo"][..],
            &["demo", "--port", "4600"],
            &["test"],
            &["local", "up", "--port", "4600"],
        ] {
            assert!(starts_the_local_stack(&args(task)), "{task:?}");
        }
        for task in [
            &[][..],
            &["--help"],
            &["local", "down"],
            &["local", "status"],
            &["bench", "rejitter"],
            &["console"],
        ] {
            assert!(!starts_the_local_stack(&args(task)), "{task:?}");
        }
    }
}
