//! Every AWS operation a program of this workspace can call, read from its source.
//!
//! The SDK's operations come from the SDK crates themselves (each has one module per
//! operation under `src/operation/`). A call is a method call with no arguments named after
//! an operation (`lambda.get_event_source_mapping()`, the fluent builder's start), wherever
//! it sits: in a function, or in a macro's tokens. A program's calls are those of the
//! functions its entry point can reach: calls between functions are followed by name (a
//! path's module narrows it when it names one), so the set can only err on the side of more.

use anyhow::{bail, Context, Result};
use proc_macro2::{Delimiter, TokenStream, TokenTree};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use syn::visit::Visit;

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

/// What a receiver is called, when an operation's name is shared by several services.
const RECEIVERS: [(&str, &str); 7] = [
    ("sqs", "sqs"),
    ("lambda", "lambda"),
    ("cloudwatch", "cloudwatch"),
    ("eventbridge", "events"),
    ("dynamodb", "dynamodb"),
    ("sfn", "states"),
    ("cloudformation", "cloudformation"),
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
        .current_dir(xtask::paths::root())
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
    let root = xtask::paths::root();
    let mut files = Vec::new();
    for dir in dirs {
        collect_files(&root.join(dir), &mut files)?;
    }
    let mut all = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)?;
        let parsed = syn::parse_file(&text).with_context(|| path.display().to_string())?;
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
        collect_items(&parsed.items, &file, &module, operations, &mut all)?;
    }
    Ok(all)
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

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        let text = quote_path(a.path());
        text == "test"
            || text.ends_with("::test")
            || (text == "cfg" && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test"))
    })
}

fn quote_path(path: &syn::Path) -> String {
    path.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

fn collect_items(
    items: &[syn::Item],
    file: &str,
    module: &str,
    operations: &Operations,
    out: &mut Vec<Function>,
) -> Result<()> {
    for item in items {
        match item {
            syn::Item::Fn(f) if !is_test(&f.attrs) => {
                out.push(function(file, module, &f.sig.ident, &f.block, operations)?);
            }
            syn::Item::Impl(i) if !is_test(&i.attrs) => {
                for item in &i.items {
                    if let syn::ImplItem::Fn(f) = item {
                        if !is_test(&f.attrs) {
                            out.push(function(file, module, &f.sig.ident, &f.block, operations)?);
                        }
                    }
                }
            }
            syn::Item::Mod(m) if !is_test(&m.attrs) => {
                if let Some((_, inner)) = &m.content {
                    collect_items(inner, file, &m.ident.to_string(), operations, out)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn function(
    file: &str,
    module: &str,
    name: &syn::Ident,
    body: &syn::Block,
    operations: &Operations,
) -> Result<Function> {
    let mut visitor = Calls {
        operations,
        calls: BTreeSet::new(),
        callees: BTreeSet::new(),
        problems: Vec::new(),
    };
    visitor.visit_block(body);
    if !visitor.problems.is_empty() {
        bail!("{file}: fn {name}: {}", visitor.problems.join("; "));
    }
    Ok(Function {
        file: file.to_string(),
        module: module.to_string(),
        name: name.to_string(),
        calls: visitor.calls,
        callees: visitor.callees,
    })
}

struct Calls<'a> {
    operations: &'a Operations,
    calls: BTreeSet<String>,
    callees: BTreeSet<(Option<String>, String)>,
    problems: Vec<String>,
}

impl Calls<'_> {
    /// `method` called with no arguments on something whose last name is `receiver`.
    fn operation(&mut self, method: &str, receiver: Option<&str>) {
        let Some(services) = self.operations.get(method) else {
            return;
        };
        let chosen: Vec<_> = if services.len() == 1 {
            services.iter().collect()
        } else {
            let prefix = receiver.and_then(|r| {
                RECEIVERS
                    .iter()
                    .find(|(name, _)| r == *name)
                    .map(|(_, prefix)| *prefix)
            });
            services
                .iter()
                .filter(|(p, _)| Some(*p) == prefix)
                .collect()
        };
        match chosen[..] {
            [(prefix, op)] => {
                self.calls.insert(iam_action(prefix, op));
            }
            _ => self.problems.push(format!(
                "`.{method}()` is an operation of {services:?}: call it on a client named after \
                 its service ({RECEIVERS:?})"
            )),
        }
    }

    fn tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, tree) in trees.iter().enumerate() {
            match tree {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(ident) => {
                    let next = trees.get(i + 1);
                    let called = matches!(next, Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis);
                    if !called {
                        continue;
                    }
                    let name = ident.to_string();
                    let after_dot = matches!(trees.get(i.wrapping_sub(1)), Some(TokenTree::Punct(p)) if p.as_char() == '.');
                    let empty = matches!(next, Some(TokenTree::Group(g)) if g.stream().is_empty());
                    if after_dot && empty {
                        let receiver = match trees.get(i.wrapping_sub(2)) {
                            Some(TokenTree::Ident(r)) => Some(r.to_string()),
                            _ => None,
                        };
                        self.operation(&name, receiver.as_deref());
                    }
                    self.callees.insert((None, name));
                }
                _ => {}
            }
        }
    }
}

/// The last name of an expression: `ctx.clients.sfn` -> `sfn`, `lambda` -> `lambda`.
fn last_name(expr: &syn::Expr) -> Option<String> {
    match expr {
        syn::Expr::Field(f) => match &f.member {
            syn::Member::Named(i) => Some(i.to_string()),
            syn::Member::Unnamed(_) => None,
        },
        syn::Expr::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        syn::Expr::Reference(r) => last_name(&r.expr),
        syn::Expr::Paren(p) => last_name(&p.expr),
        _ => None,
    }
}

impl<'ast> Visit<'ast> for Calls<'_> {
    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        let method = call.method.to_string();
        if call.args.is_empty() {
            self.operation(&method, last_name(&call.receiver).as_deref());
        }
        self.callees.insert((None, method));
        syn::visit::visit_expr_method_call(self, call);
    }

    fn visit_expr_path(&mut self, path: &'ast syn::ExprPath) {
        let segments: Vec<String> = path
            .path
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        if let Some(name) = segments.last() {
            let module = segments
                .len()
                .checked_sub(2)
                .map(|i| segments[i].clone())
                .filter(|m| !["self", "Self", "crate", "super"].contains(&m.as_str()));
            self.callees.insert((module, name.clone()));
        }
        syn::visit::visit_expr_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
    }

    // Closures and nested items count as the enclosing function's.
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test(&f.attrs) {
            syn::visit::visit_item_fn(self, f);
        }
    }
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
