//! The breaker's Step Functions definition (`statemachine/circuit-breaker.asl.json`): loading
//! it as it is deployed (with its `DefinitionSubstitutions` applied) and validating it with
//! the npm `asl-validator`, installed pinned into the gitignored `.tools/node`.

use crate::{paths, run};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// The pinned validator version; bump it deliberately.
pub const ASL_VALIDATOR_VERSION: &str = "4.0.0";

/// A syntactically valid Lambda ARN standing in for the controller in local checks.
pub const EXAMPLE_CONTROLLER_ARN: &str =
    "arn:aws:lambda:us-east-1:123456789012:function:sqscb-controller";

/// The definition file, as committed.
pub fn definition_path() -> PathBuf {
    paths::root().join("statemachine/circuit-breaker.asl.json")
}

/// The definition file's text, as committed (with `${...}` placeholders).
pub fn definition_text() -> Result<String> {
    let path = definition_path();
    fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Replaces each `${name}` with its value, as CloudFormation's `DefinitionSubstitutions` do.
pub fn substitute(definition: &str, substitutions: &[(&str, &str)]) -> String {
    substitutions
        .iter()
        .fold(definition.to_string(), |text, (name, value)| {
            text.replace(&format!("${{{name}}}"), value)
        })
}

/// The definition as deployed, with the controller's ARN stood in by
/// [`EXAMPLE_CONTROLLER_ARN`].
pub fn deployed_definition() -> Result<serde_json::Value> {
    let text = substitute(
        &definition_text()?,
        &[("ControllerFunctionArn", EXAMPLE_CONTROLLER_ARN)],
    );
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", definition_path().display()))
}

/// Where the validator is installed.
fn node_dir() -> PathBuf {
    paths::tools().join("node")
}

/// The validator's entry point, installing the pinned version first when it is missing or
/// another version is installed.
pub fn ensure_validator() -> Result<PathBuf> {
    let dir = node_dir();
    let package = dir.join("node_modules/asl-validator");
    let script = package.join("dist/bin/asl-validator.js");
    if installed_version(&package).as_deref() == Some(ASL_VALIDATOR_VERSION) && script.exists() {
        return Ok(script);
    }
    match Command::new("npm").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => bail!(
            "npm (Node.js 18 or newer) is required to install asl-validator, which checks the \
             Step Functions definition, and it was not found on PATH.\n\
             On Debian/Ubuntu: apt-get install nodejs npm"
        ),
    }
    fs::create_dir_all(&dir)?;
    run::logged(
        &format!("installing asl-validator@{ASL_VALIDATOR_VERSION} (npm)"),
        Command::new("npm")
            .arg("install")
            .arg("--prefix")
            .arg(&dir)
            .args(["--no-audit", "--no-fund", "--save-exact"])
            .arg(format!("asl-validator@{ASL_VALIDATOR_VERSION}")),
        &paths::local().join("logs/npm-install-asl-validator.log"),
    )?;
    match installed_version(&package) {
        Some(v) if v == ASL_VALIDATOR_VERSION && script.exists() => Ok(script),
        other => bail!(
            "npm install asl-validator@{ASL_VALIDATOR_VERSION} left {} (version {other:?})",
            package.display()
        ),
    }
}

fn installed_version(package: &std::path::Path) -> Option<String> {
    let manifest = fs::read_to_string(package.join("package.json")).ok()?;
    let manifest: serde_json::Value = serde_json::from_str(&manifest).ok()?;
    Some(manifest.get("version")?.as_str()?.to_string())
}

/// Validates a definition (JSON text, substitutions already applied) with asl-validator.
/// Fails with the validator's report when the definition is invalid.
pub fn validate(definition: &str) -> Result<()> {
    let script = ensure_validator()?;
    let out = Command::new("node")
        .arg(&script)
        .arg("--json-definition")
        .arg(definition)
        .output()
        .context("running asl-validator with node (is Node.js installed?)")?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => Ok(()),
        Some(1) => bail!(
            "asl-validator: the definition is invalid:\n{}",
            report.trim()
        ),
        _ => bail!(
            "asl-validator could not run ({}):\n{}",
            out.status,
            report.trim()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::substitute;

    #[test]
    fn substitutes_every_occurrence_and_only_named_placeholders() {
        let text = r#"{"a":"${X}","b":"${X}","c":"${Y}","d":"$.x"}"#;
        assert_eq!(
            substitute(text, &[("X", "arn:1")]),
            r#"{"a":"arn:1","b":"arn:1","c":"${Y}","d":"$.x"}"#
        );
    }
}
