//! Where things live in a checkout. Everything generated goes under gitignored folders.

use std::path::{Path, PathBuf};

/// The workspace root (the folder holding the top-level Cargo.toml): two levels above this
/// package, `xtask/launcher`.
pub fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Installed tools (Python venv with the emulator, sam, cargo-lambda, zig).
pub fn tools() -> PathBuf {
    root().join(".tools")
}

/// Runtime state: emulator pid and log files, sam build folders, step logs.
pub fn local() -> PathBuf {
    root().join(".local")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(super::root().join("Cargo.toml"))
            .expect("the root's Cargo.toml");
        assert!(manifest.contains("[workspace]"), "{manifest}");
    }
}
