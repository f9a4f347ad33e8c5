//! One function's AWS calls and callees, read from its syntax tree (and from the tokens of
//! the macros it uses, which syn does not parse).

use super::{iam_action, Function, Operations};
use anyhow::{bail, Result};
use proc_macro2::{Delimiter, TokenStream, TokenTree};
use std::collections::BTreeSet;
use syn::visit::Visit;

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

pub(super) fn collect_items(
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
