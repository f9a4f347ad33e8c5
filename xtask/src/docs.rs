//! The README and the `docs/` pages, read so that tests can check them: each command their
//! code blocks show still parses as the program's arguments (here), and each repository path
//! they name exists ([`named_paths`]). Documentation that drifts from the code fails a test.

use crate::paths::root;
use anyhow::{Context, Result};

pub mod named_paths;

/// Every command line of `program` (e.g. `cargo xtask`) in the code blocks of README.md and
/// docs/*.md: where it is (`file:line`), and its words after the program's name. Optional
/// parts shown in brackets (`[--json]`) are included, a placeholder `N` reads as 1, and a
/// `#` comment is dropped.
pub fn commands(program: &str) -> Result<Vec<(String, Vec<String>)>> {
    let mut found = Vec::new();
    for (name, text) in pages()? {
        found.extend(
            commands_in(&text, program)
                .into_iter()
                .map(|(line, words)| (format!("{name}:{line}"), words)),
        );
    }
    Ok(found)
}

/// README.md and docs/*.md: each page's path from the repository root, and its text.
pub fn pages() -> Result<Vec<(String, String)>> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root().join("docs"))
        .context("reading docs/")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let name = file
                .strip_prefix(root())
                .unwrap_or(&file)
                .to_string_lossy()
                .replace('\\', "/");
            Ok((name, text))
        })
        .collect()
}

/// Asserts that every `program` command the docs show parses with the CLI `C` (`--help`
/// "fails" by printing help: that command works too). For each CLI's unit test.
pub fn assert_documented_commands_parse<C: clap::Parser>(program: &str) {
    let documented = commands(program).expect("the docs read");
    assert!(documented.len() >= 10, "{documented:?}");
    for (at, words) in documented {
        let args = std::iter::once(program.to_string()).chain(words);
        if let Err(e) = C::try_parse_from(args) {
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{at}: {e}");
        }
    }
}

/// [`commands`] in one markdown text: (1-based line, words after the program).
pub fn commands_in(markdown: &str, program: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let mut in_block = false;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        let Some(rest) = trimmed.strip_prefix(program) else {
            continue;
        };
        if !in_block || !(rest.is_empty() || rest.starts_with(' ')) {
            continue;
        }
        let Some(words) = shlex::split(rest) else {
            continue;
        };
        let words: Vec<String> = words
            .into_iter()
            .take_while(|w| !w.starts_with('#'))
            .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_string())
            .map(|w| if w == "N" { "1".to_string() } else { w })
            .filter(|w| !w.is_empty())
            .collect();
        found.push((index + 1, words));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README stays a landing page: at most 250 lines, opening with the two commands (the
    /// demo and the test suite), the second being exactly what CI runs.
    #[test]
    fn the_readme_is_a_landing_page_that_opens_with_the_two_commands() {
        let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md reads");
        let lines = readme.lines().count();
        assert!(
            lines <= 250,
            "README.md has {lines} lines; reference goes to docs/"
        );
        let first_block: Vec<_> = commands_in(&readme, "cargo xtask")
            .into_iter()
            .take(2)
            .collect();
        assert_eq!(
            first_block,
            [(4, vec!["demo".into()]), (5, vec!["test".into()])],
            "the README's first lines give `cargo xtask demo` and `cargo xtask test`"
        );
        let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run reads");
        let run: Vec<_> = ci
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            // The shell's options, its folder and its environment are not commands.
            .filter(|l| !["set ", "cd ", "export "].iter().any(|p| l.starts_with(p)))
            .collect();
        assert_eq!(
            run,
            ["cargo xtask test"],
            ".ci/run runs exactly the README's test command"
        );
    }

    #[test]
    fn reads_commands_in_code_blocks_only() {
        let text = "run `cargo xtask demo` inline\n\
                    ```bash\n\
                    cargo xtask local down [--port N]   # stop it\n\
                    cargo xtasks other\n\
                    ```\n\
                    cargo xtask outside\n";
        assert_eq!(
            commands_in(text, "cargo xtask"),
            [(
                3,
                vec!["local".into(), "down".into(), "--port".into(), "1".into()]
            )]
        );
        let quoted =
            "```\nsqs-circuit-breaker open --stack s --reason \"DB maintenance\" [--hold]\n```";
        assert_eq!(
            commands_in(quoted, "sqs-circuit-breaker")[0].1,
            [
                "open",
                "--stack",
                "s",
                "--reason",
                "DB maintenance",
                "--hold"
            ]
        );
    }
}
