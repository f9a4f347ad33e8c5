//! A real browser for the console's test: Debian's `chromium`, headless, installed with
//! apt-get like the rest of the toolchain when it is missing (and we may install it).
//! Driven from the command line: `--dump-dom` for what the page shows after its scripts ran,
//! `--screenshot` for the picture.

use crate::{paths, run};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `program` is on PATH.
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn installed() -> Option<PathBuf> {
    ["chromium", "chromium-browser"].into_iter().find_map(which)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// The browser, installing Debian's `chromium` first when it is missing. Err says why there
/// is none (not root, no apt-get, the install failed): the caller decides whether that
/// skips or fails.
pub fn chromium() -> Result<PathBuf> {
    if let Some(found) = installed() {
        return Ok(found);
    }
    if which("apt-get").is_none() || !is_root() {
        bail!(
            "chromium is not installed, and it can be installed here only by root with apt-get \
             (Debian/Ubuntu: apt-get install chromium)"
        );
    }
    // A fresh machine may have no package lists yet.
    run::logged(
        "installing chromium (apt-get), for the console's browser test",
        Command::new("sh")
            .args([
                "-c",
                "apt-get update && apt-get install -y --no-install-recommends chromium",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        &paths::local().join("logs/apt-get-chromium.log"),
    )?;
    installed().context("apt-get installed chromium, yet it is not on PATH")
}

/// The browser's window, in CSS pixels: the width the graph is made to fit.
pub const WINDOW: (u32, u32) = (1600, 1000);

/// A headless run of `chromium` on `url` with `what` (`--dump-dom`, `--screenshot=...`):
/// its standard output. No network besides the page's own server: the background services
/// (component updates, sync, QUIC probes) are off, as this machine has no way out.
fn headless(chromium: &Path, url: &str, what: &[String]) -> Result<String> {
    let profile = paths::local().join(format!(
        "chromium-profile-{}-{}",
        std::process::id(),
        crate::breaker::now_ms()
    ));
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            // Lets the page's scripts run (and poll once or twice) before the DOM is read.
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--window-size={},{}", WINDOW.0, WINDOW.1))
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(what)
        .arg(url)
        .output()
        .with_context(|| format!("running {}", chromium.display()));
    let _ = std::fs::remove_dir_all(&profile);
    let out = out?;
    if !out.status.success() {
        bail!(
            "chromium on {url} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The page's DOM once its scripts ran, serialized.
pub fn dump_dom(chromium: &Path, url: &str) -> Result<String> {
    headless(chromium, url, &["--dump-dom".to_string()])
}

/// A PNG of the page at `to`.
pub fn screenshot(chromium: &Path, url: &str, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    headless(chromium, url, &[format!("--screenshot={}", to.display())])?;
    // Chromium reports success even when it could not write the file.
    let written = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    anyhow::ensure!(
        written > 0,
        "chromium wrote no screenshot at {}",
        to.display()
    );
    Ok(())
}

/// The state names of the graph's nodes carrying `class` (e.g. `current`, `passed`) in a
/// dumped DOM.
pub fn states_with_class(dom: &str, class: &str) -> Vec<String> {
    dom.split("<g ")
        .skip(1)
        .filter_map(|tag| {
            let tag = &tag[..tag.find('>')?];
            let classes = attribute(tag, "class")?;
            let words: Vec<&str> = classes.split_whitespace().collect();
            (words.contains(&"state") && words.contains(&class))
                .then(|| attribute(tag, "data-state"))
                .flatten()
        })
        .collect()
}

/// The text of the element with `id` in a dumped DOM (up to its first child tag).
pub fn text_of(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let rest = &dom[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')? + start;
    Some(rest[start..end].trim().to_string())
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = tag[at..].find('"')? + at;
    Some(tag[at..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_lit_state_and_panel_texts_from_a_dom() {
        let dom = r#"<svg><g class="state task passed" data-state="OpenCircuit"><rect/></g>
            <g class="state wait passed current running" data-state="WaitBeforeProbe"></g>
            <g class="edge passed" data-from="a" data-to="b"></g></svg>
            <dd id="mapping">Disabled</dd><span id="selected-status" class="status RUNNING">RUNNING</span>"#;
        assert_eq!(states_with_class(dom, "current"), ["WaitBeforeProbe"]);
        assert_eq!(
            states_with_class(dom, "passed"),
            ["OpenCircuit", "WaitBeforeProbe"]
        );
        assert_eq!(text_of(dom, "mapping").as_deref(), Some("Disabled"));
        assert_eq!(text_of(dom, "selected-status").as_deref(), Some("RUNNING"));
        assert_eq!(text_of(dom, "nothing"), None);
    }
}
