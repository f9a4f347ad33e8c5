//! The previous release, built and deployed: its tree extracted from git once into
//! `.local/previous-release/<commit>`, and built there on this checkout's dependencies.
//!
//! What it deploys is its commit's: the three Lambda packages, the template, the state
//! machine, the Makefile. The workspace around them is this checkout's: the root manifest and
//! lock file, and the other members (xtask, the operator command), which are not built but
//! whose manifests take part in cargo's feature resolution. So its build resolves every
//! dependency to the versions and features this checkout's builds compiled, and compiles its
//! three crates only, in seconds; on the previous release's own dependencies it compiled a
//! second AWS SDK (minutes of CPU on a fresh clone, with the target folder locked for the
//! other tests meanwhile). Two source lines change with it: the previous release took the
//! SDK's default HTTP client, which this checkout's dependency features leave out (the
//! default is rustls over aws-lc); it gets this checkout's, rustls over ring.

use super::{mark, PREVIOUS_RELEASE};
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use xtask::stack::{self, Parameters, TestStack, BREAKER_STACK};
use xtask::{paths, sam};

/// The previous release's Lambda packages: what its build compiles.
/// Named in the tree's key, so that a change to how the tree is made makes it again.
const RECIPE: &str = "its Lambda packages in this checkout's workspace, HTTP client on ring";

/// The lines that load the SDK's configuration with its default HTTP client, and what each
/// becomes (the client of `controller::sdk`).
const SDK_LOADING: [(&str, &str); 2] = [
    (
        "controller/src/main.rs",
        "aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await",
    ),
    ("rejitter/src/main.rs", "aws_config::load_from_env().await"),
];
const RING_CLIENT_LOADING: &str = "aws_config::defaults(aws_config::BehaviorVersion::latest())\
    .http_client(aws_smithy_http_client::Builder::new()\
    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(\
    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring))\
    .build_https()).load().await";

/// Builds the previous release's template and Lambdas (its Makefile, host binaries, in this
/// checkout's target folder) and deploys it as the breaker, next to the example stack.
pub fn deploy(local: &TestStack, parameters: &Parameters) -> Result<()> {
    let tree = tree()?;
    let all =
        tokio::runtime::Runtime::new()?.block_on(stack::attached(&local.emulator, parameters))?;
    // The turn is held through the deploy: the previous release's binaries pass through the
    // target folder's `debug/` and `lambda/`, which the next build of this checkout writes
    // again.
    let _turn = sam::turn()?;
    let started = Instant::now();
    let mut sam_command = local.tools.command("sam");
    sam_command
        .env("LAMBDA_BUILD", "host")
        .env("CARGO_TARGET_DIR", sam::target_dir());
    let built = sam::build_from(
        &tree.join("infra/template.yaml"),
        "previous-release",
        &mut sam_command,
    )?;
    mark(&format!(
        "the previous release built in {:.0}s",
        started.elapsed().as_secs_f64()
    ));
    sam::deploy(&local.tools, &local.emulator, &built, BREAKER_STACK, &all)
}

/// The previous release's tree on this checkout's workspace, made once for each content of
/// that workspace's manifests (a marker file holds the key of the tree it completes).
fn tree() -> Result<PathBuf> {
    let root = paths::root();
    let members = other_members(&root)?;
    let key = workspace_key(&root, &members)?;
    let tree = paths::local()
        .join("previous-release")
        .join(PREVIOUS_RELEASE);
    let complete = tree.join(".extracted");
    if std::fs::read_to_string(&complete).is_ok_and(|made| made == key) {
        return Ok(tree);
    }
    let partial = tree.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)?;
    extract(&root, &partial)?;
    in_this_workspace(&root, &partial, &members)?;
    std::fs::write(partial.join(".extracted"), key)?;
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::rename(&partial, &tree)?;
    Ok(tree)
}

fn git(root: &Path, args: &[&str]) -> Result<std::process::Output> {
    Command::new("git")
        .current_dir(root)
        .args(args)
        .output()
        .context("running git")
}

/// The previous release's files, from this clone's history.
fn extract(root: &Path, into: &Path) -> Result<()> {
    let found = git(
        root,
        &["cat-file", "-e", &format!("{PREVIOUS_RELEASE}^{{commit}}")],
    )?;
    if !found.status.success() {
        bail!(
            "the previous release, commit {PREVIOUS_RELEASE}, is not in this clone's history \
             (a shallow clone?): the upgrade test deploys it. Fetch the history \
             (`git fetch --unshallow`, or check out with full depth) and run it again."
        );
    }
    let archive = into.with_extension("tar");
    let out = git(
        root,
        &[
            "archive",
            "--output",
            archive.to_str().context("a non-UTF-8 path")?,
            PREVIOUS_RELEASE,
        ],
    )?;
    ensure!(
        out.status.success(),
        "git archive {PREVIOUS_RELEASE}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let untar = Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(into)
        .status()
        .context("running tar")?;
    ensure!(untar.success(), "extracting the previous release failed");
    std::fs::remove_file(&archive)?;
    Ok(())
}

/// This checkout's workspace members other than the Lambda packages (their folders, relative
/// to the root), from `cargo metadata`.
fn other_members(root: &Path) -> Result<Vec<PathBuf>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = xtask::run::without_cargo_package_env(&mut Command::new(cargo))
        .current_dir(root)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .context("running cargo metadata")?;
    ensure!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut members = Vec::new();
    for package in metadata["packages"].as_array().context("no packages")? {
        let name = package["name"]
            .as_str()
            .context("a package without a name")?;
        if xtask::LAMBDAS.contains(&name) {
            continue;
        }
        let manifest = Path::new(package["manifest_path"].as_str().context("no manifest")?);
        let folder = manifest
            .parent()
            .and_then(|dir| dir.strip_prefix(root).ok())
            .with_context(|| format!("{name}'s manifest is outside the workspace"))?;
        members.push(folder.to_path_buf());
    }
    Ok(members)
}

/// The workspace files the tree takes from this checkout, relative to the root.
fn workspace_files(members: &[PathBuf]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["Cargo.toml", "Cargo.lock", ".cargo/config.toml"]
        .iter()
        .map(PathBuf::from)
        .collect();
    files.extend(members.iter().map(|member| member.join("Cargo.toml")));
    files
}

fn workspace_key(root: &Path, members: &[PathBuf]) -> Result<String> {
    let mut inputs = vec![
        PREVIOUS_RELEASE.as_bytes().to_vec(),
        RECIPE.as_bytes().to_vec(),
    ];
    for file in workspace_files(members) {
        inputs.push(file.to_string_lossy().as_bytes().to_vec());
        inputs.push(
            std::fs::read(root.join(&file))
                .with_context(|| format!("reading {}", file.display()))?,
        );
    }
    let inputs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    Ok(paths::content_key(&inputs))
}

/// Puts the previous release's Lambda packages into this checkout's workspace: its root
/// files and its other members (whole, so that their manifests' targets exist), the SDK
/// loaded with this checkout's HTTP client, and its Makefile building as this checkout's
/// does.
fn in_this_workspace(root: &Path, tree: &Path, members: &[PathBuf]) -> Result<()> {
    for member in members {
        let _ = std::fs::remove_dir_all(tree.join(member));
        let parent = tree.join(member).parent().map(Path::to_path_buf);
        let parent = parent.context("a member at the root")?;
        std::fs::create_dir_all(&parent)?;
        let copied = Command::new("cp")
            .arg("-R")
            .arg(root.join(member))
            .arg(&parent)
            .status()
            .context("running cp")?;
        ensure!(copied.success(), "copying {} failed", member.display());
    }
    for file in workspace_files(&[]) {
        if let Some(parent) = tree.join(&file).parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(root.join(&file), tree.join(&file))
            .with_context(|| format!("copying {}", file.display()))?;
    }
    for (file, loading) in SDK_LOADING {
        replace_once(&tree.join(file), loading, RING_CLIENT_LOADING)?;
        let manifest = Path::new(file)
            .ancestors()
            .nth(2)
            .context("a source outside a package")?
            .join("Cargo.toml");
        replace_once(
            &tree.join(manifest),
            "aws-config.workspace = true\n",
            "aws-config.workspace = true\naws-smithy-http-client.workspace = true\n",
        )?;
    }
    // Its Makefile built every binary of its workspace; here the other members are this
    // checkout's, on this checkout's sources, so only the Lambdas' binaries build, with the
    // whole workspace's features, as this checkout's Makefile builds them.
    let binaries: Vec<String> = xtask::LAMBDAS
        .iter()
        .map(|p| format!("--bin {p}"))
        .collect();
    replace_once(
        &tree.join("Makefile"),
        "$(CARGO) build --workspace --bins",
        &format!("$(CARGO) build --workspace {}", binaries.join(" ")),
    )
}

/// Replaces the one occurrence of `old` in `file`; fails if there is not exactly one.
fn replace_once(file: &Path, old: &str, new: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    ensure!(
        text.matches(old).count() == 1,
        "{} has not exactly one `{old}` to replace",
        file.display()
    );
    std::fs::write(file, text.replacen(old, new, 1))
        .with_context(|| format!("writing {}", file.display()))
}
