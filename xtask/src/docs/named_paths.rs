//! The repository paths the README and `docs/*.md` name, and a check that each exists, so a
//! page cannot keep pointing at a file that moved.
//!
//! A page names a path in two ways, each with its rule:
//!
//! - **A markdown link** `[text](target)` whose target has no scheme (`https:`, `mailto:`):
//!   resolved from the page's folder (`../README.md` from `docs/`); a bare `#anchor` is the
//!   page itself. The target must exist.
//! - **Code** (an inline code span, or a line of a fenced block): each word made only of path
//!   characters (ASCII letters, digits, `_ - . / #`) that contains a `/` and whose first
//!   component is a top-level folder of the repository that is not gitignored:
//!   `xtask/src/stack.rs`, `infra/template.yaml`, `docs/x.md#anchor`, `controller/`. Read
//!   from the repository root. Words are split at spaces and `= , : ; ( ) [ ] " ' |`, so
//!   `xtask/src/stack.rs:42` names `xtask/src/stack.rs`. Never checked: placeholders
//!   (`<stack>`), globs (`infra/*.yaml`), braces, `$`, `..`, absolute paths and URLs, generated
//!   folders (`.local/`, `target/`), and paths relative to something other than the root
//!   (`src/core/`, `tests/breaker.rs`).
//!
//! Either way, an `#anchor` into a `.md` file must be one of its headings, slugged as GitHub
//! slugs them (lower case; letters, digits, `-` and `_` kept; spaces to `-`; a repeated heading
//! gets `-1`, `-2`, ...).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// How a page names a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A markdown link's target, relative to the page's folder.
    Link,
    /// A word in code, relative to the repository root.
    Code,
}

/// One path a page names: its 1-based line, the path as written (anchor included), and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub line: usize,
    pub target: String,
    pub kind: Kind,
}

/// Every path `markdown` names, by the module's rules; `top` holds the repository's top-level
/// folders that code words may start with.
pub fn named_in(markdown: &str, top: &BTreeSet<String>) -> Vec<Named> {
    let mut found = Vec::new();
    let mut in_block = false;
    // An inline code span may run over a line break, but not past a paragraph's end.
    let mut in_span = false;
    for (index, line) in markdown.lines().enumerate() {
        let number = index + 1;
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            in_span = false;
            continue;
        }
        if in_block {
            found.extend(code_words(line, top).map(|w| named(number, w, Kind::Code)));
            continue;
        }
        if line.trim().is_empty() {
            in_span = false;
            continue;
        }
        for (i, segment) in line.split('`').enumerate() {
            if i > 0 {
                in_span = !in_span;
            }
            if in_span {
                found.extend(code_words(segment, top).map(|w| named(number, w, Kind::Code)));
            } else {
                found.extend(link_targets(segment).map(|t| named(number, t, Kind::Link)));
            }
        }
    }
    found
}

fn named(line: usize, target: &str, kind: Kind) -> Named {
    Named {
        line,
        target: target.to_string(),
        kind,
    }
}

/// The words of a code line that name a repository path.
fn code_words<'a>(code: &'a str, top: &'a BTreeSet<String>) -> impl Iterator<Item = &'a str> {
    code.split(|c: char| c.is_whitespace() || "=,:;()[]\"'|".contains(c))
        .map(|w| w.trim_end_matches('.'))
        .filter(move |w| {
            w.contains('/')
                && !w.contains("..")
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-./#".contains(c))
                && w.split('/').next().is_some_and(|first| top.contains(first))
        })
}

/// The targets of the markdown links in a stretch of text outside code, those with a scheme
/// left out.
fn link_targets(text: &str) -> impl Iterator<Item = &str> {
    text.split("](").skip(1).filter_map(|rest| {
        let target = rest.split(')').next()?.split_whitespace().next()?;
        let scheme = target
            .split_once(':')
            .is_some_and(|(s, _)| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic()));
        (!scheme).then_some(target)
    })
}

/// The anchors GitHub gives the headings of `markdown`.
pub fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut in_block = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        let level = line.chars().take_while(|&c| c == '#').count();
        if in_block || !(1..=6).contains(&level) || !line[level..].starts_with(' ') {
            continue;
        }
        let base = slug(line[level..].trim().trim_end_matches('#'));
        let mut anchor = base.clone();
        let mut n = 0;
        while !seen.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
    }
    seen
}

/// GitHub's slug of a heading's text.
pub fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The problem with what `page` (its path from the root) names at `named`, if any: a path
/// that does not exist or leaves the repository, or an anchor its `.md` file lacks.
/// `read` gives a `.md` file's text by its path from the root.
pub fn problem(
    page: &str,
    named: &Named,
    exists: impl Fn(&Path) -> bool,
    read: impl Fn(&Path) -> Option<String>,
) -> Option<String> {
    let (path, anchor) = match named.target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (named.target.as_str(), None),
    };
    let base = match named.kind {
        Kind::Link => Path::new(page).parent().unwrap_or(Path::new("")),
        Kind::Code => Path::new(""),
    };
    let file = if path.is_empty() {
        Some(PathBuf::from(page))
    } else {
        normalise(&base.join(path))
    };
    let at = format!("{page}:{}: `{}`", named.line, named.target);
    let Some(file) = file else {
        return Some(format!("{at} leaves the repository"));
    };
    if !exists(&file) {
        return Some(format!("{at}: {} does not exist", file.display()));
    }
    let anchor = anchor.filter(|a| !a.is_empty())?;
    if file.extension().is_none_or(|x| x != "md") {
        return None;
    }
    let text = read(&file)?;
    (!anchors(&text).contains(anchor))
        .then(|| format!("{at}: {} has no heading #{anchor}", file.display()))
}

/// `path` with `.` and `..` resolved, or `None` if it climbs above the root.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::root;

    fn top() -> BTreeSet<String> {
        ["xtask", "docs", "infra", "controller"]
            .map(String::from)
            .into()
    }

    fn targets(markdown: &str) -> Vec<(usize, String, Kind)> {
        named_in(markdown, &top())
            .into_iter()
            .map(|n| (n.line, n.target, n.kind))
            .collect()
    }

    #[test]
    fn names_links_and_code_words_by_the_rules() {
        let text = "See [how](docs/how-it-works.md#how-it-works), [up](../README.md) and\n\
                    [the site](https://example.com/x/y) or [mail](mailto:a@b.c).\n\
                    The file `xtask/src/stack.rs:42` and `cargo xtask demo`, a glob `infra/*.yaml`,\n\
                    `<stack>-consumer`, `src/core/`, `.local/demo/console.html`, `/tmp/x/y`,\n\
                    `http://127.0.0.1:4566/` and `controller/`.\n\
                    ```bash\n\
                    sam build -t infra/template.yaml --build-dir .aws-sam/breaker\n\
                    npm install /path/to/sqs-circuit-breaker/cdk   # see docs/cdk.md.\n\
                    ```\n\
                    [`cargo xtask console`](#the-console), a span `over a\n\
                    line break xtask/src/lib.rs` and [a link](x.md).\n";
        let expected = [
            (1, "docs/how-it-works.md#how-it-works", Kind::Link),
            (1, "../README.md", Kind::Link),
            (3, "xtask/src/stack.rs", Kind::Code),
            (5, "controller/", Kind::Code),
            (7, "infra/template.yaml", Kind::Code),
            (8, "docs/cdk.md", Kind::Code),
            (10, "#the-console", Kind::Link),
            (11, "xtask/src/lib.rs", Kind::Code),
            (11, "x.md", Kind::Link),
        ]
        .map(|(line, target, kind)| (line, target.to_string(), kind));
        assert_eq!(targets(text), expected);
    }

    #[test]
    fn anchors_are_githubs_slugs() {
        let text = "# The page\n\
                    ## `cargo xtask demo`: an outage, start to finish\n\
                    ```\n# not a heading\n```\n\
                    ### Template parameters, outputs, resources\n\
                    ## Notes\n## Notes ##\n#hashtag\n";
        assert_eq!(
            anchors(text),
            [
                "the-page",
                "cargo-xtask-demo-an-outage-start-to-finish",
                "template-parameters-outputs-resources",
                "notes",
                "notes-1",
            ]
            .map(String::from)
            .into()
        );
    }

    #[test]
    fn a_problem_names_the_page_the_line_and_the_path() {
        let files = ["README.md", "docs/a.md", "xtask/src/stack.rs"];
        let exists = |p: &Path| files.iter().any(|f| Path::new(f) == p);
        let read = |p: &Path| (p == Path::new("README.md")).then(|| "# Try it\n".to_string());
        let check = |page: &str, target: &str, kind| {
            let named = Named {
                line: 7,
                target: target.into(),
                kind,
            };
            problem(page, &named, exists, read)
        };
        assert_eq!(check("docs/a.md", "../README.md#try-it", Kind::Link), None);
        assert_eq!(check("docs/a.md", "xtask/src/stack.rs", Kind::Code), None);
        assert_eq!(check("README.md", "#try-it", Kind::Link), None);
        assert_eq!(
            check("docs/a.md", "xtask/src/gone.rs", Kind::Code).as_deref(),
            Some("docs/a.md:7: `xtask/src/gone.rs`: xtask/src/gone.rs does not exist")
        );
        assert_eq!(
            check("docs/a.md", "../README.md#deploy", Kind::Link).as_deref(),
            Some("docs/a.md:7: `../README.md#deploy`: README.md has no heading #deploy")
        );
        assert_eq!(
            check("docs/a.md", "b.md", Kind::Link).as_deref(),
            Some("docs/a.md:7: `b.md`: docs/b.md does not exist")
        );
        assert!(check("README.md", "../x.md", Kind::Link).is_some());
    }

    /// The top-level folders of the repository that git keeps (gitignored ones left out).
    fn repository_folders() -> BTreeSet<String> {
        let ignored: BTreeSet<String> = std::fs::read_to_string(root().join(".gitignore"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().trim_matches('/').to_string())
            .collect();
        std::fs::read_dir(root())
            .expect("the repository root reads")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name != ".git" && !ignored.contains(name))
            .collect()
    }

    /// Every path README.md and docs/*.md name exists, and every anchor into a page is one of
    /// its headings.
    #[test]
    fn the_docs_name_only_files_that_exist() {
        let top = repository_folders();
        assert!(top.contains("xtask") && top.contains("docs"), "{top:?}");
        let mut problems = Vec::new();
        let mut checked = 0;
        for (page, text) in crate::docs::pages().expect("the docs read") {
            for named in named_in(&text, &top) {
                checked += 1;
                problems.extend(problem(
                    &page,
                    &named,
                    |p| root().join(p).exists(),
                    |p| std::fs::read_to_string(root().join(p)).ok(),
                ));
            }
        }
        assert!(
            checked >= 50,
            "only {checked} paths found: is the reading broken?"
        );
        assert!(
            problems.is_empty(),
            "paths the docs name that do not exist:\n{}",
            problems.join("\n")
        );
    }
}
