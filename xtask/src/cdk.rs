//! The CDK construct library (`cdk/`): its npm install and tests, and its example app
//! synthesized and deployed to the emulator.

use crate::{emulator::Emulator, paths, run, sam, tools::Tools};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The example app's stack (cdk/example/app.ts) as its cloud assembly names it.
pub const EXAMPLE_ARTIFACT: &str = "Example";

pub fn dir() -> PathBuf {
    paths::root().join("cdk")
}

/// Held while `cdk/node_modules` or `cdk/dist` is written or read, across threads and
/// processes: `npm ci` deletes `node_modules` first and `tsc` rewrites `dist`, and the static
/// checks' `npm test` runs beside the CDK deploy test.
pub struct Lock(#[allow(dead_code)] std::fs::File);

pub fn lock() -> Result<Lock> {
    std::fs::create_dir_all(paths::local())?;
    let file = std::fs::File::create(paths::local().join("cdk.lock"))
        .context("creating the CDK lock file")?;
    file.lock().context("waiting for the CDK lock")?;
    Ok(Lock(file))
}

/// `npm ci --prefix cdk` when `cdk/node_modules` is missing or older than the lock file;
/// call it holding the [`lock`].
pub fn install() -> Result<()> {
    if !npm_ci_needed() {
        return Ok(());
    }
    run::logged(
        "npm ci --prefix cdk",
        Command::new("npm").args(["ci", "--prefix"]).arg(dir()),
        &paths::local().join("logs/cdk-npm-ci.log"),
    )
}

/// `npm ci` when `cdk/node_modules` is missing or older than the lock file.
fn npm_ci_needed() -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let lock = modified(&dir().join("package-lock.json"));
    let installed = modified(&dir().join("node_modules/.package-lock.json"));
    match (lock, installed) {
        (Some(lock), Some(installed)) => installed < lock,
        _ => true,
    }
}

/// Installs the pinned packages if needed and compiles the library, its tests and the
/// example app (`cdk/dist`); call it holding the [`lock`].
fn build() -> Result<()> {
    install()?;
    run::logged(
        "npm run build --prefix cdk",
        Command::new("npm")
            .args(["run", "build", "--prefix"])
            .arg(dir()),
        &paths::local().join("logs/cdk-build.log"),
    )
}

/// Synthesizes the example app into `out` with this context (`stackName`, `breaker`, ...).
/// Its functions' code is the repository's build (`make lambdas`), with the local builds'
/// profile: it takes a [`sam::turn`], as it shares `target/` with `sam build`.
pub fn synth_example(tools: &Tools, out: &Path, context: &serde_json::Value) -> Result<()> {
    let _lock = lock()?;
    build()?;
    let _turn = sam::turn()?;
    let mut cmd = tools.command_on_path("node");
    sam::local_profile(&mut cmd)
        .current_dir(dir())
        .arg("dist/example/app.js")
        .env("CDK_OUTDIR", out)
        .env("CDK_CONTEXT_JSON", context.to_string());
    run::logged(
        "cdk synth (example app; make lambdas)",
        &mut cmd,
        &paths::local().join("logs/cdk-synth.log"),
    )
}

/// Deploys the synthesized `artifact` of the cloud assembly `out` as `stack` to the
/// emulator: its assets uploaded to the buckets they name, its template created as a stack.
pub fn deploy(
    tools: &Tools,
    emulator: &Emulator,
    out: &Path,
    artifact: &str,
    stack: &str,
) -> Result<()> {
    let script = paths::root().join("xtask/src/cdk_deploy.py");
    let mut cmd = tools.command("python");
    cmd.arg(&script).arg(out).arg(artifact).arg(stack);
    for (key, value) in sam::emulator_env(emulator) {
        cmd.env(key, value);
    }
    run::logged(
        &format!("deploy the CDK stack {stack}"),
        &mut cmd,
        &paths::local().join(format!("logs/cdk-deploy-{stack}-{}.log", emulator.port)),
    )
    .with_context(|| format!("deploying the CDK stack {stack}"))
}
