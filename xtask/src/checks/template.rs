//! `infra/template.yaml` as JSON: decoded (short-form tags such as `!Sub` made long-form)
//! and, on request, expanded by the SAM transform, both by the venv's cfn-lint, so the
//! checks read the template as CloudFormation and SAM do.

use crate::{paths, tools};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The breaker's template.
pub fn path() -> PathBuf {
    paths::root().join("infra/template.yaml")
}

/// How far to take a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Decoded only.
    Raw,
    /// Also expanded by the SAM transform.
    Transformed,
    /// Also the CloudFormation registry's `tagging` of each type of the expanded template.
    Tagging,
}

impl Depth {
    fn arg(self) -> &'static str {
        match self {
            Depth::Raw => "raw",
            Depth::Transformed => "transformed",
            Depth::Tagging => "tagging",
        }
    }
}

/// A template as loaded; what a [`Depth`] does not reach is `Value::Null`.
#[derive(Debug, Clone)]
pub struct Template {
    /// As written, short-form tags decoded.
    pub raw: Value,
    /// As SAM expands it.
    pub transformed: Value,
    /// Resource type -> its registry `tagging` object.
    pub tagging: Value,
}

const LOAD_SCRIPT: &str = r#"
import copy, json, sys
from cfnlint.decode import decode

path, depth = sys.argv[1], sys.argv[2]
template, matches = decode(path)
if matches:
    sys.exit("could not decode %s: %s" % (path, matches))
out = {"raw": template}
if depth != "raw":
    from cfnlint.template.transforms._sam import Transform
    sam = Transform(path, copy.deepcopy(template), "us-east-1")
    matches = sam.transform_template()
    if matches:
        sys.exit("the SAM transform failed: %s" % matches)
    out["transformed"] = sam.template()
if depth == "tagging":
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER as schemas
    out["tagging"] = {
        r["Type"]: schemas.get_resource_schema("us-east-1", r["Type"]).schema.get("tagging")
        for r in out["transformed"]["Resources"].values()
    }
json.dump(out, sys.stdout, default=str)
"#;

/// Loads the template at `path` to `depth`, with the venv's python and cfn-lint, once per
/// content: the tests load the same templates many times, in as many processes, and each
/// load costs seconds of CPU (the SAM transform, cfn-lint's schemas).
pub fn load(path: &Path, depth: Depth) -> Result<Template> {
    let tools = tools::ensure()?;
    let content = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let cached = cache_file(&[
        LOAD_SCRIPT.as_bytes(),
        path.to_string_lossy().as_bytes(),
        depth.arg().as_bytes(),
        tools.stamp().as_bytes(),
        &content,
    ]);
    let json = match std::fs::read(&cached) {
        Ok(json) => json,
        Err(_) => {
            let json = run_loader(&tools, path, depth)?;
            store(&cached, &json)?;
            json
        }
    };
    let mut all: Value = serde_json::from_slice(&json).context("the loader's output")?;
    Ok(Template {
        raw: all["raw"].take(),
        transformed: all["transformed"].take(),
        tagging: all["tagging"].take(),
    })
}

fn run_loader(tools: &tools::Tools, path: &Path, depth: Depth) -> Result<Vec<u8>> {
    let out = tools
        .command("python")
        .arg("-c")
        .arg(LOAD_SCRIPT)
        .arg(path)
        .arg(depth.arg())
        .output()
        .context("running the venv's python")?;
    if !out.status.success() {
        bail!(
            "loading {} ({}) failed: {}",
            path.display(),
            depth.arg(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// Where a load of these inputs is kept: `.local/templates/<content key>.json`.
fn cache_file(inputs: &[&[u8]]) -> PathBuf {
    paths::local()
        .join("templates")
        .join(format!("{}.json", paths::content_key(inputs)))
}

/// Writes `json` to `file` whole or not at all: other test processes may read it meanwhile.
fn store(file: &Path, json: &[u8]) -> Result<()> {
    let dir = file.parent().context("a cache file has a folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let partial = file.with_extension(format!("{}.partial", std::process::id()));
    std::fs::write(&partial, json).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, file).with_context(|| format!("writing {}", file.display()))
}

/// The breaker's template, decoded only.
pub fn raw() -> Result<Value> {
    Ok(load(&path(), Depth::Raw)?.raw)
}

/// The breaker's template, decoded and as SAM expands it.
pub fn expanded() -> Result<Template> {
    load(&path(), Depth::Transformed)
}

/// The resources of `template` of type `kind` (`AWS::IAM::Role`), by logical id.
pub fn of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    template["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, r)| r["Type"] == kind)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{cache_file, of_type, paths, store};
    use serde_json::json;

    #[test]
    fn a_load_is_kept_per_input_in_the_local_folder() {
        let one = cache_file(&[b"template", b"raw"]);
        assert_eq!(
            one.parent(),
            Some(paths::local().join("templates").as_path())
        );
        assert_eq!(one.extension().and_then(|e| e.to_str()), Some("json"));
        assert_ne!(one, cache_file(&[b"template", b"transformed"]));
    }

    #[test]
    fn a_stored_load_is_whole_and_leaves_no_partial_file() {
        let dir = std::env::temp_dir().join(format!("template-cache-{}", std::process::id()));
        let file = dir.join("load.json");
        store(&file, b"{\"raw\": {}}").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"{\"raw\": {}}");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn of_type_keeps_the_resources_of_one_type() {
        let template = json!({"Resources": {
            "A": {"Type": "AWS::IAM::Role"},
            "B": {"Type": "AWS::SNS::Topic"},
            "C": {"Type": "AWS::IAM::Role"},
        }});
        let names: Vec<&String> = of_type(&template, "AWS::IAM::Role")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["A", "C"]);
        assert!(of_type(&json!({}), "AWS::IAM::Role").is_empty());
    }
}
