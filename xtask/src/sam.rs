//! `sam build` and `sam deploy` of the project's real templates against the emulator.

use crate::{emulator::Emulator, paths, run, tools::Tools};
use anyhow::{Context, Result};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

pub const REGION: &str = "us-east-1";

/// Builds and deploys take turns, across threads and processes (tests run in parallel, each
/// in its own process): they share the build folders, which a build rewrites while another
/// process's deploy may be reading them. Held from a build until its deploy is done.
pub struct Turn(#[allow(dead_code)] std::fs::File);

pub fn turn() -> Result<Turn> {
    let dir = paths::local().join("sam");
    std::fs::create_dir_all(&dir)?;
    let file = std::fs::File::create(dir.join(".lock")).context("creating the sam lock file")?;
    file.lock().context("waiting for the sam lock")?;
    Ok(Turn(file))
}

/// Builds `infra/<template>.yaml`; returns the built template's path.
///
/// The functions' `BuildMethod: makefile` runs the root Makefile: one `cargo lambda build
/// --release` for every Lambda binary of both templates, in the repository's `target/`. So the
/// first template built compiles everything, the second finds it built, and a later run only
/// recompiles what changed: cargo is the cache (not `sam build --cached`, which would hash
/// `CodeUri` (infra/) and miss changes to the Rust sources).
///
/// These local builds only run on the emulator, so they skip the release profile's fat LTO
/// and optimisation (kept for the packages users deploy: see Cargo.toml): from scratch, the
/// three binaries take 95 s instead of 363 s on two cores, which is most of a fresh clone's
/// wait for the demo and for the first local-stack test. The emulator's own latency dwarfs
/// what optimisation would save; `bench controller` asks for optimised binaries
/// ([`optimise_local_builds`]). Call it holding a [`turn`].
pub fn build(tools: &Tools, template: &str) -> Result<PathBuf> {
    let source = paths::root().join("infra").join(format!("{template}.yaml"));
    let build_dir = paths::local().join("sam").join(template);
    run::logged(
        &format!("sam build {template} (make: cargo lambda build --release)"),
        local_profile(&mut tools.command("sam"))
            .current_dir(paths::root())
            .args(["build", "--template-file"])
            .arg(&source)
            .arg("--build-dir")
            .arg(&build_dir),
        &paths::local().join(format!("logs/sam-build-{template}.log")),
    )?;
    Ok(build_dir.join("template.yaml"))
}

static OPTIMISED: AtomicBool = AtomicBool::new(false);

/// Local builds of this process keep the release profile's optimisation (not its fat LTO):
/// for benchmarks that time the Lambdas on the emulator.
pub fn optimise_local_builds() {
    OPTIMISED.store(true, Ordering::Relaxed);
}

/// The release profile of local builds: no fat LTO, no optimisation unless asked (see
/// [`build`]).
pub fn local_profile(cmd: &mut Command) -> &mut Command {
    cmd.env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16");
    if !OPTIMISED.load(Ordering::Relaxed) {
        cmd.env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "0");
    }
    cmd
}

/// Starts, in the background, the build `sam build` runs for every function (`make lambdas`,
/// with the same profile), so that it overlaps with what comes before the first local-stack
/// test: the tests' `sam build` then finds everything built. Its output goes to `log`.
pub fn start_lambda_build(tools: &Tools, log: &std::path::Path) -> Result<Child> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let out = std::fs::File::create(log)?;
    local_profile(&mut tools.command_on_path("make"))
        .current_dir(paths::root())
        .arg("lambdas")
        // Its own process group, so that a failed check can stop the whole build.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("starting make lambdas")
}

/// Deploys a built template as `stack` with `parameters` (name, value) to the emulator.
pub fn deploy(
    tools: &Tools,
    emulator: &Emulator,
    built_template: &PathBuf,
    stack: &str,
    parameters: &[(&str, String)],
) -> Result<()> {
    deploy_tagged(tools, emulator, built_template, stack, parameters, &[])
}

/// [`deploy`] with stack tags (key, value), which CloudFormation copies to the stack's
/// resources; none keeps the stack's tags as they are.
pub fn deploy_tagged(
    tools: &Tools,
    emulator: &Emulator,
    built_template: &PathBuf,
    stack: &str,
    parameters: &[(&str, String)],
    tags: &[(&str, String)],
) -> Result<()> {
    let mut cmd = tools.command("sam");
    cmd.current_dir(paths::root())
        .args(["deploy", "--template-file"])
        .arg(built_template)
        .args([
            "--stack-name",
            stack,
            "--resolve-s3",
            "--capabilities",
            "CAPABILITY_IAM",
            "CAPABILITY_AUTO_EXPAND",
            "--no-confirm-changeset",
            "--no-fail-on-empty-changeset",
            "--no-progressbar",
            "--region",
            REGION,
        ]);
    if !parameters.is_empty() {
        cmd.arg("--parameter-overrides");
        for (name, value) in parameters {
            cmd.arg(format!("{name}={value}"));
        }
    }
    if !tags.is_empty() {
        cmd.arg("--tags");
        for (key, value) in tags {
            cmd.arg(format!("{key}={value}"));
        }
    }
    for (key, value) in emulator_env(emulator) {
        cmd.env(key, value);
    }
    run::logged(
        &format!("sam deploy {stack}"),
        &mut cmd,
        &paths::local().join(format!("logs/sam-deploy-{stack}-{}.log", emulator.port)),
    )
    .with_context(|| format!("deploying stack {stack}"))
}

/// The environment that points AWS clients (sam, boto3, the Rust SDK) at the emulator with
/// dummy credentials.
pub fn emulator_env(emulator: &Emulator) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", emulator.endpoint()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", REGION.into()),
        ("AWS_DEFAULT_REGION", REGION.into()),
    ]
}
