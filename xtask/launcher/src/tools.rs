//! Installs the pinned local toolchain (xtask/requirements.txt) into a gitignored venv.

use crate::{paths, run};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The installed toolchain: a venv whose `bin` holds ministack, sam, cargo-lambda, zig
/// (through `python-zig`) and cfn-lint.
#[derive(Debug, Clone)]
pub struct Tools {
    pub bin: PathBuf,
}

impl Tools {
    /// A command for one of the venv's programs, with the venv first on PATH so that
    /// sam finds cargo-lambda and cargo-lambda finds zig.
    pub fn command(&self, program: &str) -> Command {
        self.with_env(Command::new(self.bin.join(program)))
    }

    /// A command for a program found on PATH (make), with the venv first on PATH.
    pub fn command_on_path(&self, program: &str) -> Command {
        self.with_env(Command::new(program))
    }

    /// What was installed: the pins, as `ensure` recorded them.
    pub fn stamp(&self) -> String {
        let venv = self.bin.parent().unwrap_or(&self.bin);
        fs::read_to_string(venv.join(STAMP)).unwrap_or_default()
    }

    fn with_env(&self, mut cmd: Command) -> Command {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![self.bin.clone()];
        dirs.extend(std::env::split_paths(&path));
        if let Ok(joined) = std::env::join_paths(dirs) {
            cmd.env("PATH", joined);
        }
        cmd.env("SAM_CLI_TELEMETRY", "0");
        // sam runs `make lambdas`, which runs cargo.
        run::without_cargo_package_env(&mut cmd);
        cmd.env("VIRTUAL_ENV", self.bin.parent().unwrap_or(&self.bin));
        cmd
    }
}

/// The installer of the toolchain, pinned like it. pip took 50 s of CPU on 2 cores to install
/// the toolchain (resolving, unpacking and byte-compiling one file at a time); uv, 5 s.
const UV: &str = "uv==0.13.9";

/// The venv's record of the pins it was installed with.
const STAMP: &str = "installed-requirements.txt";

/// Returns the toolchain, installing it first when missing or when the pins changed.
pub fn ensure() -> Result<Tools> {
    let venv = paths::tools().join("venv");
    let bin = venv.join("bin");
    let requirements = paths::root().join("xtask/requirements.txt");
    let wanted = fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let wanted = format!("{UV}\n{wanted}");
    let stamp = venv.join(STAMP);
    if fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(Tools { bin });
    }

    let python = find_python()?;
    if !bin.join("python").exists() {
        fs::create_dir_all(paths::tools())?;
        // Without pip: uv installs the toolchain, and a venv's pip took 4 s to set up.
        let out = Command::new(&python)
            .args(["-m", "venv", "--without-pip"])
            .arg(&venv)
            .output()
            .with_context(|| format!("running {python} -m venv"))?;
        if !out.status.success() {
            bail!(
                "could not create a Python venv with {python}: {}\n\
                 On Debian/Ubuntu install it with: apt-get install python3-venv",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let uv = install_uv(&python, &bin)?;
    // The venv's files are hard links into the cache when both sit on one file system.
    let cache = paths::tools().join("uv-cache");
    run::logged(
        "installing the local AWS toolchain (ministack, sam, cargo-lambda, zig, cfn-lint)",
        Command::new(uv)
            .args(["pip", "install", "--native-tls", "--python"])
            .arg(bin.join("python"))
            .arg("--cache-dir")
            .arg(&cache)
            .arg("-r")
            .arg(&requirements),
        &paths::local().join("logs/uv-install.log"),
    )?;
    fs::write(&stamp, wanted)?;
    Ok(Tools { bin })
}

/// Installs uv, returning its path: into `.tools/uv` with the pip of the Python that made the
/// venv, or, where that Python has none, into the venv with the venv's own pip.
fn install_uv(python: &str, venv_bin: &Path) -> Result<PathBuf> {
    let log = paths::local().join("logs/pip-install.log");
    let what = format!("installing the installer ({UV})");
    let pip = ["-m", "pip", "install", "--disable-pip-version-check"];
    let has_pip = Command::new(python)
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if has_pip {
        let target = paths::tools().join("uv");
        let _ = fs::remove_dir_all(&target);
        run::logged(
            &what,
            Command::new(python)
                .args(pip)
                .args(["--no-warn-script-location", "--target"])
                .arg(&target)
                .arg(UV),
            &log,
        )?;
        return Ok(target.join("bin").join("uv"));
    }
    let venv_python = venv_bin.join("python");
    run::logged(
        "adding pip to the venv (ensurepip)",
        Command::new(&venv_python).args(["-m", "ensurepip"]),
        &paths::local().join("logs/ensurepip.log"),
    )?;
    run::logged(&what, Command::new(&venv_python).args(pip).arg(UV), &log)?;
    Ok(venv_bin.join("uv"))
}

fn find_python() -> Result<String> {
    for candidate in ["python3", "python"] {
        let ok = Command::new(candidate)
            .args([
                "-c",
                "import sys, venv; sys.exit(0 if sys.version_info >= (3, 10) else 1)",
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Ok(candidate.to_string());
        }
    }
    bail!(
        "Python 3.10 or newer with the venv module is required to install the local AWS \
         toolchain (the pinned ministack and sam need it), and none was found on PATH\n\
         (tried python3, python).\n\
         On Debian/Ubuntu: apt-get install python3 python3-venv python3-pip"
    )
}
