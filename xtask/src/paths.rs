//! Where things live in a checkout. Everything generated goes under gitignored folders.

use std::path::PathBuf;

/// The workspace root (the folder holding the top-level Cargo.toml).
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Installed tools (Python venv with the emulator, sam, cargo-lambda, zig).
pub fn tools() -> PathBuf {
    root().join(".tools")
}

/// Runtime state: emulator pid and log files, sam build folders, step logs.
pub fn local() -> PathBuf {
    root().join(".local")
}
