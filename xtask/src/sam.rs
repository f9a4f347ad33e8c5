//! `sam build` and `sam deploy` of the project's real templates against the emulator.

use crate::{emulator::Emulator, paths, run, tools::Tools};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
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

/// Builds `infra/<template>.yaml` for the emulator, taking a [`turn`] for the build only;
/// returns the built template, in a folder no build rewrites (see [`build`]), which a deploy
/// can read without one.
pub fn built(tools: &Tools, template: &str) -> Result<PathBuf> {
    let _turn = turn()?;
    build(tools, template)
}

/// Builds `infra/<template>.yaml`; returns the built template's path.
///
/// The functions' `BuildMethod: makefile` runs the root Makefile: one build of every Lambda
/// binary of both templates, in the repository's `target/`. So the first template built
/// compiles everything, the second finds it built, and a later run only recompiles what
/// changed: cargo is the cache (not `sam build --cached`, which would hash `CodeUri` (infra/)
/// and miss changes to the Rust sources).
///
/// `make lambdas` runs first; the build goes to `.local/sam/<template>-<key>`, the key a hash
/// of the template, the Makefile, the toolchain's pins and the binaries cargo left (their
/// inode, size and time). A folder of that key, once built, is the build: `sam build` (seconds
/// of CPU; every local-stack test builds two templates) runs only for a new key, and no build
/// rewrites a folder a deploy may be reading.
///
/// The emulator runs the binaries on this machine, so local builds are plain debug builds for
/// the host (`LAMBDA_BUILD=host`, see the Makefile), on the dependencies `cargo xtask` and the
/// tests already compiled: seconds instead of a second compile of the AWS SDK for the Lambda
/// target. The emulator's own latency dwarfs what optimisation would save; `bench controller`
/// asks for optimised binaries ([`optimise_local_builds`]): cargo-lambda's release build,
/// without the fat LTO kept for the packages users deploy, built every time. Call it holding a
/// [`turn`].
pub fn build(tools: &Tools, template: &str) -> Result<PathBuf> {
    let source = paths::root().join("infra").join(format!("{template}.yaml"));
    if OPTIMISED.load(Ordering::Relaxed) {
        let name = format!("{template}-release");
        return build_from(&source, &name, local_profile(&mut tools.command("sam")));
    }
    run::logged(
        "make lambdas",
        local_profile(&mut tools.command_on_path("make"))
            .current_dir(paths::root())
            .arg("lambdas"),
        &paths::local().join("logs/make-lambdas.log"),
    )?;
    let key = build_key(tools, &source)?;
    let name = format!("{template}-{key}");
    let dir = paths::local().join("sam").join(&name);
    if dir.join("template.yaml").exists() {
        eprintln!("==> sam build {template}: built before ({})", dir.display());
        return Ok(dir.join("template.yaml"));
    }
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    build_into(
        &source,
        &partial,
        template,
        local_profile(&mut tools.command("sam")),
    )?;
    zip_functions(tools, &partial)?;
    std::fs::rename(&partial, &dir)
        .with_context(|| format!("moving the build to {}", dir.display()))?;
    prune_older_builds(template, &name);
    Ok(dir.join("template.yaml"))
}

/// `sam deploy` zips each function's folder at every deploy, at zlib's default level: for the
/// breaker's two debug binaries about 3 s of CPU, half of its deploy, in every test. A local
/// build zips them once, at level 1, and its template names the zips, which `sam deploy`
/// uploads as they are (a `CodeUri` that is a zip file).
fn zip_functions(tools: &Tools, build_dir: &Path) -> Result<()> {
    let template_path = build_dir.join("template.yaml");
    let mut template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("reading {}", template_path.display()))?;
    let mut folders = Vec::new();
    for entry in std::fs::read_dir(build_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let code_uri = format!("CodeUri: {name}\n");
        if entry.file_type()?.is_dir() && template.contains(&code_uri) {
            template = template.replace(&code_uri, &format!("CodeUri: {name}.zip\n"));
            folders.push(entry.path());
        }
    }
    let zipped = tools
        .command("python")
        .arg(paths::root().join("xtask/src/sam_zip.py"))
        .args(&folders)
        .status()
        .context("running python")?;
    anyhow::ensure!(
        zipped.success(),
        "zipping the functions of {} failed",
        build_dir.display()
    );
    for folder in &folders {
        std::fs::remove_dir_all(folder)?;
    }
    std::fs::write(&template_path, template)
        .with_context(|| format!("writing {}", template_path.display()))
}

/// The Lambda binaries `make lambdas` builds for the emulator.
const LAMBDA_BINARIES: [&str; 3] = ["controller", "rejitter", "example-consumer"];

/// The hash [`build`] names a build by, 16 hex digits.
fn build_key(tools: &Tools, source: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let mut inputs = vec![
        std::fs::read(source).with_context(|| format!("reading {}", source.display()))?,
        std::fs::read(paths::root().join("Makefile")).context("reading the Makefile")?,
        tools.stamp().into_bytes(),
    ];
    for binary in LAMBDA_BINARIES {
        let path = target_dir().join("debug").join(binary);
        let meta =
            std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        inputs.push(
            format!(
                "{} {} {} {}",
                meta.ino(),
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec()
            )
            .into_bytes(),
        );
    }
    let inputs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let mut key = paths::content_key(&inputs);
    key.truncate(16);
    Ok(key)
}

/// Removes the builds of `template` other than `current` that are over ten minutes old: those
/// of binaries since rebuilt (a deploy still reading one is minutes old at most).
fn prune_older_builds(template: &str, current: &str) {
    let Ok(entries) = std::fs::read_dir(paths::local().join("sam")) else {
        return;
    };
    let prefix = format!("{template}-");
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|at| at.elapsed().is_ok_and(|age| age.as_secs() > 600));
        let key = name.strip_prefix(&prefix).unwrap_or_default();
        let is_build = key.len() == 16 && key.chars().all(|c| c.is_ascii_hexdigit());
        if is_build && name != current && stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Builds the template at `source` (of this checkout or another tree of the project) into
/// `.local/sam/<name>` with `sam`, a command already set up for it; returns the built
/// template's path. Its Makefile runs in `source`'s tree.
pub fn build_from(source: &Path, name: &str, sam: &mut Command) -> Result<PathBuf> {
    let build_dir = paths::local().join("sam").join(name);
    build_into(source, &build_dir, name, sam)?;
    Ok(build_dir.join("template.yaml"))
}

fn build_into(source: &Path, build_dir: &Path, name: &str, sam: &mut Command) -> Result<()> {
    run::logged(
        &format!("sam build {name} (make lambdas)"),
        sam.current_dir(paths::root())
            .args(["build", "--template-file"])
            .arg(source)
            .arg("--build-dir")
            .arg(build_dir),
        &paths::local().join(format!("logs/sam-build-{name}.log")),
    )
}

/// The target folder `make lambdas` builds in: `CARGO_TARGET_DIR` when set (relative to the
/// checkout), else the checkout's `target/`. Another tree's build pointed at it reuses the
/// compiled dependencies.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => paths::root().join(dir),
        None => paths::root().join("target"),
    }
}

static OPTIMISED: AtomicBool = AtomicBool::new(false);

/// Local builds of this process are cargo-lambda's optimised release builds (without fat
/// LTO): for benchmarks that time the Lambdas on the emulator.
pub fn optimise_local_builds() {
    OPTIMISED.store(true, Ordering::Relaxed);
}

/// How `make lambdas` builds for the emulator: debug binaries for the host, or when asked
/// ([`optimise_local_builds`]) the release profile without its fat LTO.
pub fn local_profile(cmd: &mut Command) -> &mut Command {
    if OPTIMISED.load(Ordering::Relaxed) {
        cmd.env("CARGO_PROFILE_RELEASE_LTO", "false")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
    } else {
        cmd.env("LAMBDA_BUILD", "host")
    }
}

/// Starts the host build `sam build` will ask for (`make lambdas`) in the background, so that
/// it overlaps with what comes before the first `sam build`, which then waits for it on
/// cargo's lock and finds everything built. Its output goes to a log; a failure shows again,
/// in full, when `sam build` runs the same build.
pub fn start_lambda_build() {
    if OPTIMISED.load(Ordering::Relaxed) {
        // cargo-lambda's build needs the tools this overlaps with.
        return;
    }
    let started = (|| -> Result<()> {
        let log = paths::local().join("logs/lambda-build.log");
        std::fs::create_dir_all(paths::local().join("logs"))?;
        let out = std::fs::File::create(&log)?;
        local_profile(run::without_cargo_package_env(&mut Command::new("make")))
            .current_dir(paths::root())
            .arg("lambdas")
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Ok(())
    })();
    if let Err(e) = started {
        eprintln!("(the Lambdas' background build did not start: {e:#})");
    }
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
    // sam reads the stack's events every 5 s until the stack is done; the emulator is done in
    // a second or two.
    cmd.env("SAM_CLI_POLL_DELAY", "0.5");
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
