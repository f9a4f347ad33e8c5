//! Every AWS operation a program of this workspace can call, read from its source.
//!
//! The SDK's operations come from the SDK crates themselves (each has one module per
//! operation under `src/operation/`). A call is a method call with no arguments named after
//! an operation (`lambda.get_event_source_mapping()`, the fluent builder's start), wherever
//! it sits: in a function, or in a macro's tokens. A program's calls are those of the
//! functions its entry point can reach: calls between functions are followed by name (a
//! path's module narrows it when it names one), so the set can only err on the side of more.

mod scan;

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// The SDK crates the workspace uses, and the IAM prefix of each service.
pub const SERVICES: [(&str, &str); 7] = [
    ("aws-sdk-sqs", "sqs"),
    ("aws-sdk-lambda", "lambda"),
    ("aws-sdk-cloudwatch", "cloudwatch"),
    ("aws-sdk-eventbridge", "events"),
    ("aws-sdk-dynamodb", "dynamodb"),
    ("aws-sdk-sfn", "states"),
    ("aws-sdk-cloudformation", "cloudformation"),
];

/// The IAM action that authorizes an operation, where it is not `<prefix>:<Operation>`.
pub fn iam_action(prefix: &str, operation: &str) -> String {
    match (prefix, operation) {
        ("lambda", "Invoke") => "lambda:InvokeFunction".into(),
        // SQS authorizes each batch call with its single-message action.
        ("sqs", op) if op.ends_with("Batch") => format!("sqs:{}", op.trim_end_matches("Batch")),
        (prefix, op) => format!("{prefix}:{op}"),
    }
}

/// snake_case operation name -> (IAM prefix, PascalCase operation), for every service.
pub type Operations = BTreeMap<String, Vec<(&'static str, String)>>;

pub fn sdk_operations() -> Result<Operations> {
    let out = std::process::Command::new(env!("CARGO"))
        // The host's packages only: others may not be downloaded.
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(host_target()?)
        .current_dir(crate::paths::root())
        .output()
        .context("cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut operations = Operations::new();
    for (krate, prefix) in SERVICES {
        let manifest = metadata["packages"]
            .as_array()
            .context("packages")?
            .iter()
            .find(|p| p["name"] == krate)
            .and_then(|p| p["manifest_path"].as_str())
            .with_context(|| format!("{krate} is not a dependency"))?;
        let dir = Path::new(manifest).with_file_name("src/operation");
        let mut found = 0;
        for entry in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let path = entry?.path();
            if path.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            let Some(pascal) = text
                .lines()
                .find_map(|l| l.strip_prefix("pub struct ")?.strip_suffix(';'))
            else {
                continue;
            };
            let snake = path.file_stem().unwrap_or_default().to_string_lossy();
            operations
                .entry(snake.into_owned())
                .or_default()
                .push((prefix, pascal.to_string()));
            found += 1;
        }
        if found < 5 {
            bail!(
                "only {found} operations found for {krate} in {}",
                dir.display()
            );
        }
    }
    Ok(operations)
}

fn host_target() -> Result<String> {
    let out = std::process::Command::new("rustc").arg("-vV").output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV names no host")
}

/// One function of the sources read.
#[derive(Debug, Clone)]
pub struct Function {
    pub file: String,
    /// The module it is in (the file's stem, or its folder's name for mod.rs/lib.rs/main.rs).
    pub module: String,
    pub name: String,
    /// IAM actions of the AWS operations it calls itself.
    pub calls: BTreeSet<String>,
    /// What it calls or names: (the path's module, if any; the name).
    pub callees: BTreeSet<(Option<String>, String)>,
}

/// The functions of every `.rs` file under `dirs` (relative to the workspace root), test code
/// left out.
pub fn functions(operations: &Operations, dirs: &[&str]) -> Result<Vec<Function>> {
    let root = crate::paths::root();
    let mut files = Vec::new();
    for dir in dirs {
        collect_files(&root.join(dir), &mut files)?;
    }
    let mut all = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)?;
        let file = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let module = if ["mod", "lib", "main"].contains(&stem.as_ref()) {
            path.parent()
                .and_then(Path::file_name)
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        } else {
            stem.into_owned()
        };
        all.extend(functions_in(&file, &module, &text, operations)?);
    }
    Ok(all)
}

/// The functions of one source file (`file` as it is named in messages, `module` the module
/// it is), test code left out.
pub fn functions_in(
    file: &str,
    module: &str,
    text: &str,
    operations: &Operations,
) -> Result<Vec<Function>> {
    let parsed = syn::parse_file(text).with_context(|| file.to_string())?;
    let mut out = Vec::new();
    scan::collect_items(&parsed.items, file, module, operations, &mut out)?;
    Ok(out)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| dir.display().to_string())?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Every action the functions reachable from `entry` (a file) call, each with one chain of
/// calls that reaches it (for the failure messages).
pub fn reachable(functions: &[Function], entry: &str) -> Result<BTreeMap<String, String>> {
    let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, f) in functions.iter().enumerate() {
        by_name.entry(&f.name).or_default().push(i);
    }
    let mut parent: BTreeMap<usize, Option<usize>> = BTreeMap::new();
    let mut queue: VecDeque<usize> = VecDeque::new();
    for (i, f) in functions.iter().enumerate() {
        if f.file == entry {
            parent.insert(i, None);
            queue.push_back(i);
        }
    }
    if queue.is_empty() {
        bail!("no function in {entry}");
    }
    while let Some(i) = queue.pop_front() {
        for (module, name) in &functions[i].callees {
            let Some(candidates) = by_name.get(name.as_str()) else {
                continue;
            };
            let narrowed: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&c| module.as_deref().is_some_and(|m| functions[c].module == m))
                .collect();
            // A name without a module is the caller's file's own function when it has one.
            let local: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&c| module.is_none() && functions[c].file == functions[i].file)
                .collect();
            let next = if !narrowed.is_empty() {
                narrowed
            } else if !local.is_empty() {
                local
            } else {
                candidates.clone()
            };
            for c in next {
                if let std::collections::btree_map::Entry::Vacant(e) = parent.entry(c) {
                    e.insert(Some(i));
                    queue.push_back(c);
                }
            }
        }
    }
    let chain = |mut i: usize| {
        let mut names = vec![];
        loop {
            let f = &functions[i];
            names.push(format!("{}::{}", f.file, f.name));
            match parent[&i] {
                Some(p) => i = p,
                None => break,
            }
        }
        names.reverse();
        names.join(" -> ")
    };
    let mut actions = BTreeMap::new();
    for &i in parent.keys() {
        for call in &functions[i].calls {
            actions.entry(call.clone()).or_insert_with(|| chain(i));
        }
    }
    Ok(actions)
}

#[cfg(test)]
mod tests;
