//! The docs test: what the documentation names must exist. Run by `cargo test -p xtask --bin xtask docs`
//! (and so by `cargo xtask ci`). It fails on
//!
//! * a **file or folder** named in a code span (`` `functions/aws/src/store.rs` ``) of any Markdown file or
//!   Rust comment, or a Markdown document named in prose (`see DESIGN.md`), that is not in the repository
//!   (resolved against the repository root, the document's own folder, or as the tail of a path in the
//!   repository, so `src/meter.rs` in `docs/local-cloud.md` is found);
//! * a **`cargo xtask` command line** in a code span or code block that the CLI (clap, `crate::flags`)
//!   refuses (unknown command or flag, a value of the wrong shape);
//! * a **Rust path** (`` `tally_domain::exactly_once::owned_occurrences` ``, `` `CounterStore::process` ``)
//!   named in `ARCHITECTURE.md` or `docs/` whose last segment is no identifier in the workspace's sources.
//!
//! Placeholders are not checked: spans with `<…>`, globs, `$VARS`, usage-style `[…]`/`(…|…)`, paths under
//! `target/` (build output) or starting with `/` (API paths, absolute paths), URLs.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// One finding: where, what was named, why it is wrong.
#[derive(Debug, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub named: String,
    pub problem: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: `{}`: {}",
            self.file, self.line, self.named, self.problem
        )
    }
}

/// A piece of documentation: its path (relative to the root), and its lines of prose/code with line numbers.
struct Doc {
    rel: String,
    lines: Vec<(usize, String)>,
    /// Rust paths are checked only in the architecture and design documents.
    check_paths: bool,
}

/// Every file of the repository (relative, `/`-separated), skipping build output and VCS data.
fn repo_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name == "target" || name == ".git" || name == "node_modules" {
                    continue;
                }
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

/// Markdown files whole; Rust files by their comments (`//!`, `///`, `//`).
fn docs(root: &Path, files: &[String]) -> Vec<Doc> {
    let mut out = Vec::new();
    for rel in files {
        let Ok(text) = std::fs::read_to_string(root.join(rel)) else {
            continue;
        };
        if rel.ends_with(".md") {
            let check_paths = rel == "ARCHITECTURE.md" || rel.starts_with("docs/");
            let lines = text
                .lines()
                .enumerate()
                .map(|(i, l)| (i + 1, l.to_owned()))
                .collect();
            out.push(Doc {
                rel: rel.clone(),
                lines,
                check_paths,
            });
        } else if rel.ends_with(".rs") {
            let lines = text
                .lines()
                .enumerate()
                .filter_map(|(i, l)| {
                    let t = l.trim_start();
                    let doc = t
                        .strip_prefix("//!")
                        .or_else(|| t.strip_prefix("///"))
                        .or_else(|| t.strip_prefix("//"))?;
                    Some((i + 1, doc.to_owned()))
                })
                .collect();
            out.push(Doc {
                rel: rel.clone(),
                lines,
                check_paths: false,
            });
        }
    }
    out
}

/// The inline code spans of a line (text between single backticks), and whether the line is inside a fenced
/// code block (then the whole line is code).
fn spans(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        let after = &rest[start..];
        let ticks = after.chars().take_while(|c| *c == '`').count();
        let body = &after[ticks..];
        let fence = "`".repeat(ticks);
        let Some(end) = body.find(&fence) else {
            break;
        };
        out.push(body[..end].trim().to_owned());
        rest = &body[end + ticks..];
    }
    out
}

fn is_placeholder(s: &str) -> bool {
    s.contains('<')
        || s.contains('*')
        || s.contains('$')
        || s.contains('{')
        || s.contains('…')
        || s.contains("...")
}

/// Is this span a path into the repository (rather than prose, an API path, a key layout)?
fn as_repo_path(span: &str) -> Option<String> {
    if is_placeholder(span) || span.contains("://") || span.contains(' ') || span.starts_with('/') {
        return None;
    }
    // `file.rs:120` and `file.rs#L3` name a place in a file.
    let path = span.split([':', '#']).next().unwrap_or(span);
    let path = path.strip_prefix("./").unwrap_or(path);
    if path.starts_with("target/") || path.starts_with("~") || path.is_empty() {
        return None;
    }
    let ok_chars = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    let looks_like_file = path.contains('/') && (has_known_extension(path) || path.ends_with('/'));
    let bare_doc = !path.contains('/') && path.ends_with(".md");
    (ok_chars && (looks_like_file || bare_doc)).then(|| path.to_owned())
}

fn has_known_extension(path: &str) -> bool {
    const EXTENSIONS: [&str; 12] = [
        ".rs", ".md", ".toml", ".yml", ".yaml", ".json", ".lua", ".html", ".py", ".sh", ".js",
        ".css",
    ];
    let last = path.rsplit('/').next().unwrap_or(path);
    EXTENSIONS.iter().any(|e| last.ends_with(e)) || last == "run"
}

/// `/work/…`, `/home/…`, `/root/…`, `/Users/…`: where one developer's files were, not the repository's.
fn is_machine_path(span: &str) -> bool {
    !is_placeholder(span)
        && ["/work/", "/home/", "/root/", "/Users/"]
            .iter()
            .any(|p| span.starts_with(p))
}

/// A path is about the repository when it starts at one of its top-level entries, climbs out of the document's
/// folder, is crate-relative (`src/…`, `tests/…`), or is a bare Markdown file name; other relative paths
/// (`state/template.json`, `logs/`) name places at run time.
fn names_the_repo(path: &str, top: &BTreeSet<String>) -> bool {
    let first = path.split('/').next().unwrap_or(path);
    top.contains(first)
        || ["..", "src", "tests", "benches"].contains(&first)
        || (!path.contains('/') && path.ends_with(".md"))
}

/// Markdown files named in prose, outside code spans (`see DESIGN.md`): a document cited by name must exist.
fn prose_doc_names(line: &str) -> Vec<String> {
    let mut prose = String::new();
    for (i, part) in line.split('`').enumerate() {
        if i % 2 == 0 {
            prose.push_str(part);
            prose.push(' ');
        }
    }
    prose
        .split(|c: char| c.is_whitespace() || "()[],;:'\"*".contains(c))
        .map(|w| w.trim_end_matches(['.', '!', '?']).to_owned())
        .filter(|w| {
            w.ends_with(".md")
                && !w.contains("://")
                && !is_placeholder(w)
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
        })
        .collect()
}

/// Does `path` (as written in `doc`) name something in the repository?
fn resolves(path: &str, doc: &str, files: &[String], dirs: &BTreeSet<String>) -> bool {
    let doc_dir = doc.rsplit_once('/').map_or("", |(d, _)| d);
    let candidates = [normalize(path), normalize(&format!("{doc_dir}/{path}"))];
    let trimmed = path.trim_end_matches('/');
    candidates.iter().flatten().any(|c| {
        let c = c.trim_end_matches('/');
        files.iter().any(|f| f == c) || dirs.contains(c)
    }) || (!path.starts_with("..")
        && (files.iter().any(|f| f.ends_with(&format!("/{trimmed}")))
            || dirs.iter().any(|d| d.ends_with(&format!("/{trimmed}")))))
}

/// `a/b/../c` → `a/c`; `None` when it climbs out of the repository.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// `cargo xtask …` command lines in a span or code line, cut at shell operators and comments.
fn xtask_commands(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("cargo xtask") {
        let mut after = &rest[at + "cargo xtask".len()..];
        // `cargo xtask-aws …` takes the same command line; `cargo xtaskfoo` is another word.
        if let Some(aws) = after.strip_prefix("-aws") {
            after = aws;
        }
        if after.starts_with(|c: char| !c.is_whitespace() && !"|;>#&)`".contains(c)) {
            rest = after;
            continue;
        }
        let end = after
            .find(['|', ';', '>', '#', '&', ')', '`'])
            .unwrap_or(after.len());
        let args: Vec<String> = after[..end]
            .split_whitespace()
            .map(|w| w.trim_matches(['"', '\'']).to_owned())
            .collect();
        out.push(args);
        rest = &after[end..];
    }
    out
}

/// Usage-style lines (`[--stage S]`, `(a|b)`, `FILE`) document a grammar, not a command line.
fn is_usage(args: &[String]) -> bool {
    args.iter().any(|a| {
        is_placeholder(a)
            || a.contains('[')
            || a.contains('(')
            || a.contains('|')
            || is_placeholder_word(a)
    })
}

/// `N`, `FILE`, `LOADTEST.json`: an upper-case word stands for a value.
fn is_placeholder_word(a: &str) -> bool {
    let head = a.split('.').next().unwrap_or(a);
    !head.is_empty()
        && head
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && head.chars().any(|c| c.is_ascii_uppercase())
}

/// Rust paths worth checking: `a::b::c`, `Type::item`.
fn as_rust_path(span: &str) -> Option<String> {
    let span = span.trim_end_matches("()");
    if !span.contains("::") || span.contains(' ') || is_placeholder(span) {
        return None;
    }
    let segments: Vec<&str> = span.split("::").collect();
    let ident = |s: &&str| {
        !s.is_empty()
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !s.starts_with(|c: char| c.is_ascii_digit())
    };
    segments
        .iter()
        .all(ident)
        .then(|| segments.last().map(|s| (*s).to_owned()))
        .flatten()
}

/// Every identifier-like word of the workspace's Rust sources.
fn rust_words(root: &Path, files: &[String]) -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    for rel in files
        .iter()
        .filter(|f| f.ends_with(".rs") || f.ends_with(".lua"))
    {
        let Ok(text) = std::fs::read_to_string(root.join(rel)) else {
            continue;
        };
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !word.is_empty() {
                words.insert(word.to_owned());
            }
        }
        // Crate and module names are also file names.
        if let Some(stem) = rel.rsplit('/').next().and_then(|f| f.strip_suffix(".rs")) {
            words.insert(stem.to_owned());
        }
    }
    words
}

/// Checks the documentation of the repository at `root`; `parse` refuses a command line (the arguments after
/// `cargo xtask`) with why.
pub fn check(root: &Path, parse: impl Fn(Vec<OsString>) -> Result<(), String>) -> Vec<Finding> {
    let files = repo_files(root);
    let dirs: BTreeSet<String> = files
        .iter()
        .flat_map(|f| {
            let mut out = Vec::new();
            let mut at = f.as_str();
            while let Some((dir, _)) = at.rsplit_once('/') {
                out.push(dir.to_owned());
                at = dir;
            }
            out
        })
        .collect();
    let words = rust_words(root, &files);
    let top: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.split('/').next().map(str::to_owned))
        .collect();
    let mut findings = Vec::new();
    for doc in docs(root, &files) {
        let mut fenced = false;
        for (line_no, line) in &doc.lines {
            let trimmed = line.trim_start();
            if trimmed.starts_with("```") {
                fenced = !fenced;
                continue;
            }
            if !fenced {
                for word in prose_doc_names(line) {
                    if !resolves(&word, &doc.rel, &files, &dirs) {
                        findings.push(Finding {
                            file: doc.rel.clone(),
                            line: *line_no,
                            named: word,
                            problem: "no such document in the repository".to_owned(),
                        });
                    }
                }
            }
            let codes: Vec<String> = if fenced {
                vec![line.clone()]
            } else {
                spans(line)
            };
            let mut push = |named: String, problem: String| {
                findings.push(Finding {
                    file: doc.rel.clone(),
                    line: *line_no,
                    named,
                    problem,
                })
            };
            for code in &codes {
                if !fenced {
                    if is_machine_path(code) {
                        push(
                            code.clone(),
                            "a path on one machine: name the file in the repository, or say what it holds"
                                .to_owned(),
                        );
                    }
                    if let Some(path) = as_repo_path(code).filter(|p| names_the_repo(p, &top)) {
                        if !resolves(&path, &doc.rel, &files, &dirs) {
                            push(path, "no such file or folder in the repository".to_owned());
                        }
                    }
                    if doc.check_paths {
                        if let Some(last) = as_rust_path(code) {
                            if !words.contains(&last) {
                                push(
                                    code.clone(),
                                    format!(
                                        "`{last}` is not an identifier in the workspace's sources"
                                    ),
                                );
                            }
                        }
                    }
                }
                for args in xtask_commands(code) {
                    if is_usage(&args) {
                        continue;
                    }
                    let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
                    if let Err(error) = parse(argv) {
                        push(
                            format!("cargo xtask {}", args.join(" ")),
                            format!("the CLI refuses it: {error}"),
                        );
                    }
                }
            }
        }
    }
    findings
}

/// Where the repository is.
pub fn root() -> PathBuf {
    crate::workspace_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's verdict: refused when the command or a flag is unknown or a value has the wrong shape.
    /// Others (a missing value, flags that go together) are about a whole invocation, and prose names single
    /// flags: `cargo xtask plan --check` is a fine name for the flag.
    fn parse(args: Vec<OsString>) -> Result<(), String> {
        match crate::flags::parse(args) {
            Err(refused) if refused.is_unknown() => Err(refused.to_string()),
            _ => Ok(()),
        }
    }

    #[test]
    fn docs_name_only_what_exists() {
        let findings = check(&root(), parse);
        let report: Vec<String> = findings.iter().map(ToString::to_string).collect();
        assert!(
            findings.is_empty(),
            "{} stale reference(s) in the docs — fix the doc (or the code):\n{}",
            findings.len(),
            report.join("\n")
        );
    }

    /// A repository in a temporary folder with one doc that names things that are and are not there.
    #[test]
    fn the_checker_finds_missing_files_refused_commands_and_vanished_identifiers() {
        let root = std::env::temp_dir().join(format!("tally-docs-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("docs")).expect("mkdir");
        std::fs::create_dir_all(root.join("crate/src")).expect("mkdir");
        std::fs::write(root.join("crate/src/lib.rs"), "pub fn present() {}\n").expect("write");
        std::fs::write(
            root.join("docs/guide.md"),
            "See `crate/src/lib.rs`, `src/lib.rs:1`, `crate/`, `../README.md`, `crate/src/gone.rs`.\n\
             Run `cargo xtask plan --stage main --events-per-sec 100` or `cargo xtask plan --no-such-flag`.\n\
             Usage: `cargo xtask plan [--stage S]` and `cargo xtask deploy --stage <name>`.\n\
             ```sh\ncargo xtask frobnicate --now # a comment\n```\n\
             Design notes in DESIGN.md, see `/work/notes/x.md`. The rule is `krate::present`, not `krate::absent`; the API is `/v1/campaigns`, \
             output goes to `target/lambda/x.zip`.\n",
        )
        .expect("write");
        std::fs::write(root.join("README.md"), "`docs/guide.md`\n").expect("write");
        let findings = check(&root, parse);
        let named: Vec<(&str, usize)> = findings
            .iter()
            .map(|f| (f.named.as_str(), f.line))
            .collect();
        assert_eq!(
            named,
            vec![
                ("crate/src/gone.rs", 1),
                ("cargo xtask plan --no-such-flag", 2),
                ("cargo xtask frobnicate --now", 5),
                ("DESIGN.md", 7),
                ("/work/notes/x.md", 7),
                ("krate::absent", 7),
            ],
            "{findings:#?}"
        );
        assert!(
            findings[1].problem.contains("the CLI refuses it"),
            "{findings:#?}"
        );
        std::fs::remove_dir_all(&root).expect("cleanup");
    }

    #[test]
    fn spans_and_commands_are_cut_where_the_shell_would() {
        assert_eq!(spans("a `x` b ``y `z` w`` c"), vec!["x", "y `z` w"]);
        assert_eq!(
            xtask_commands(
                "cargo xtask loadtest --json > lt.json && cargo xtask-aws plan --check lt.json; cargo xtasks"
            ),
            vec![
                vec!["loadtest".to_owned(), "--json".to_owned()],
                vec![
                    "plan".to_owned(),
                    "--check".to_owned(),
                    "lt.json".to_owned()
                ],
            ]
        );
        assert!(is_usage(&[
            "plan".into(),
            "--check".into(),
            "LOADTEST.json".into()
        ]));
        assert!(!is_usage(&["plan".into(), "--stage".into(), "main".into()]));
        assert_eq!(
            as_repo_path("infra/localcloud/src/meter.rs:42"),
            Some("infra/localcloud/src/meter.rs".into())
        );
        assert_eq!(as_repo_path("/v1/campaigns/{id}"), None);
        assert_eq!(as_repo_path("cm#<campaign>"), None);
        assert_eq!(
            as_rust_path("tally_domain::hll::Hll::merge()"),
            Some("merge".into())
        );
        assert_eq!(as_rust_path("SET dedup:{x} NX"), None);
    }
}
