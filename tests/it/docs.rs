//! The documentation's own honesty (issue 17): the README stays a front page that points to the
//! rest, every test a document cites by name (`module::test_name` in backticks) exists where the
//! name says, so the promises table cannot name a test that is gone, renamed or moved, the links
//! between the documents reach their files and headings, and ARCHITECTURE.md names every folder
//! of `src/`. Nothing here needs root: plain `cargo test` runs it.

use crate::common::repo_dir;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The README's budget: what it is, why, install, the two commands, the everyday commands and
/// where to read more fit in about 200 lines; the rest lives in `docs/`.
const README_MAX_LINES: usize = 220;

/// The documents that must exist, besides whatever else is in `docs/`.
const DOCS: [&str; 6] = [
    "README.md",
    "ARCHITECTURE.md",
    "bench/README.md",
    "docs/user-guide.md",
    "docs/packaging.md",
    "docs/promises.md",
];

#[test]
fn the_readme_stays_a_front_page() {
    let readme = read("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move the reference to docs/"
    );
    for doc in [
        "docs/user-guide.md",
        "docs/packaging.md",
        "docs/promises.md",
    ] {
        assert!(
            readme.contains(&format!("({doc})")),
            "README.md does not link to {doc}"
        );
    }
}

#[test]
fn every_test_a_document_cites_exists() {
    let listed = listed_tests();
    assert!(
        listed.len() > 100,
        "the test binary listed only {} tests: {listed:?}",
        listed.len()
    );
    let mut missing = Vec::new();
    for doc in documents() {
        for cited in citations(&read(&doc)) {
            if !(is_listed(&listed, &cited) || resolves_in_src(&cited)) {
                missing.push(format!("{doc}: `{cited}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "cited, but no such test (nor module) in tests/it or src/:\n{}",
        missing.join("\n")
    );
    // The table's rows name their tests (36 when it moved out of the README): a table that lost
    // them would pass the check above vacuously.
    let rows: String = read("docs/promises.md")
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect();
    let cited_by_rows: BTreeSet<String> = citations(&rows).into_iter().collect();
    assert!(
        cited_by_rows.len() >= 36,
        "the table of docs/promises.md cites only {} tests: {cited_by_rows:?}",
        cited_by_rows.len()
    );
}

/// A check of the checker: a name that is gone, a test moved to another module, a helper that
/// is not a test, and a module that does not exist are each caught; real tests of both kinds
/// (integration and unit) and a module name pass.
#[test]
fn the_citation_check_tells_a_real_test_from_a_gone_one() {
    let listed = listed_tests();
    let ok = |c: &str| is_listed(&listed, c) || resolves_in_src(c);
    assert!(ok("docs::the_readme_stays_a_front_page"));
    assert!(ok("lint::rules::tests::the_good_package_is_clean"));
    assert!(ok("lint::rules::tests"));
    assert!(ok("suite"));
    assert!(!ok("docs::no_such_test_anywhere"));
    assert!(!ok("keep::the_readme_stays_a_front_page"));
    assert!(!ok("lint::rules::tests::no_such_test_anywhere"));
    assert!(!ok("lint::rules::tests::is_headers_package"));
    assert!(!ok("lint::rules::is_headers_package"));
    assert!(!ok("no_such_module::tests::the_good_package_is_clean"));
    assert_eq!(
        citations("a `keep::x_y` b `Queue::finish` `std` ``\n```\n`stopping::z`\n```\n`a::b::c`"),
        ["keep::x_y", "a::b::c"]
    );
}

/// A link from one document to another (`[text](docs/user-guide.md#configuration)`) reaches a
/// file of the repository and, when it names one, a heading of that file (GitHub's anchors:
/// lowercase, punctuation dropped, spaces as `-`), so moving a section breaks a test, not a link.
#[test]
fn every_link_between_the_documents_resolves() {
    let mut broken = Vec::new();
    let mut links = 0;
    for doc in documents() {
        let text = read(&doc);
        for link in text.split("](").skip(1).filter_map(|s| s.split_once(')')) {
            let target = link.0;
            if target.contains("://") || target.contains(' ') {
                continue;
            }
            links += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let file = if path.is_empty() {
                repo_dir().join(&doc)
            } else {
                repo_dir().join(&doc).parent().unwrap().join(path)
            };
            if !file.exists() {
                broken.push(format!("{doc}: ({target}): no such file"));
            } else if !anchor.is_empty()
                && !fs::read_to_string(&file)
                    .map(|t| anchors(&t).contains(anchor))
                    .unwrap_or(false)
            {
                broken.push(format!("{doc}: ({target}): no such heading"));
            }
        }
    }
    assert!(links > 20, "only {links} links between the documents");
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// The anchors GitHub gives a Markdown file's headings (fenced blocks left out).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            let heading = line.trim_start_matches('#').trim().to_lowercase();
            out.insert(
                heading
                    .chars()
                    .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
                    .map(|c| if c == ' ' { '-' } else { c })
                    .collect(),
            );
        }
    }
    out
}

#[test]
fn the_architecture_names_every_folder_of_src() {
    let map = read("ARCHITECTURE.md");
    let mut folders = Vec::new();
    collect_folders(&repo_dir().join("src"), "", &mut folders);
    assert!(!folders.is_empty(), "no folder under src/");
    let unnamed: Vec<_> = folders
        .iter()
        .filter(|f| !map.contains(&format!("`{f}/`")))
        .collect();
    assert!(
        unnamed.is_empty(),
        "ARCHITECTURE.md does not name these folders of src/ (as `name/`): {unnamed:?}"
    );
}

fn read(doc: &str) -> String {
    fs::read_to_string(repo_dir().join(doc)).unwrap_or_else(|e| panic!("{doc}: {e}"))
}

/// [`DOCS`] and every other `docs/*.md`.
fn documents() -> Vec<String> {
    let mut docs: BTreeSet<String> = DOCS.iter().map(|d| d.to_string()).collect();
    for entry in fs::read_dir(repo_dir().join("docs")).expect("docs/") {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            docs.insert(format!("docs/{name}"));
        }
    }
    docs.into_iter().collect()
}

/// The inline code spans of a Markdown text (fenced blocks left out) that look like a test's
/// or a module's path: lowercase identifiers joined by `::` (`keep::an_upgrade_...`). A type
/// (`Queue::finish`) or a command (`cargo test --lib`) is not one.
fn citations(markdown: &str) -> Vec<String> {
    let mut prose = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    let is_ident = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    prose
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| span.contains("::") && span.split("::").all(is_ident))
        .map(str::to_string)
        .collect()
}

/// Every test of this binary (tests/it), by its full path, as libtest lists them, ignored ones
/// included.
fn listed_tests() -> BTreeSet<String> {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(&exe)
        .args(["--list", "--format", "terse"])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
    assert!(out.status.success(), "{} --list failed", exe.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect()
}

/// A test of tests/it, or a module of it that holds tests (`suite`, `newer_dkms::dkms_3_4_3`).
fn is_listed(listed: &BTreeSet<String>, cited: &str) -> bool {
    listed.contains(cited) || listed.iter().any(|t| t.starts_with(&format!("{cited}::")))
}

/// A unit test of the library or the binary (`plan::tests::NAME`: a `#[test] fn NAME` inside
/// `mod tests` of src/plan.rs or src/plan/mod.rs), or a module of src/ (`targets::tests`). The
/// longest leading part of the path that is a file of src/ names the file; the rest must be
/// inline modules of it, then a test function or a module.
fn resolves_in_src(cited: &str) -> bool {
    let segments: Vec<&str> = cited.split("::").collect();
    let src = repo_dir().join("src");
    let Some((file, rest)) = (1..=segments.len())
        .rev()
        .find_map(|k| module_file(&src, &segments[..k]).map(|f| (f, &segments[k..])))
    else {
        return false;
    };
    let Some((last, inner)) = rest.split_last() else {
        return true;
    };
    let text = fs::read_to_string(&file).unwrap();
    inner.iter().all(|m| declares_mod(&text, m))
        && (declares_mod(&text, last) || declares_test(&text, last))
}

/// `src/a/b.rs` or `src/a/b/mod.rs` for the module path `a::b`.
fn module_file(src: &Path, path: &[&str]) -> Option<PathBuf> {
    let dir = path.iter().fold(src.to_path_buf(), |d, s| d.join(s));
    [dir.with_extension("rs"), dir.join("mod.rs")]
        .into_iter()
        .find(|f| f.is_file())
}

fn declares_mod(text: &str, name: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start();
        let l = ["pub(crate) ", "pub(super) ", "pub "]
            .iter()
            .find_map(|p| l.strip_prefix(p))
            .unwrap_or(l);
        l.strip_prefix("mod ")
            .is_some_and(|r| r.trim_end_matches([' ', '{', ';']) == name)
    })
}

/// `fn NAME(` with `#[test]` among the attributes and comments right above it.
fn declares_test(text: &str, name: &str) -> bool {
    let lines: Vec<&str> = text.lines().collect();
    lines.iter().enumerate().any(|(i, l)| {
        l.trim_start().starts_with(&format!("fn {name}("))
            && lines[..i]
                .iter()
                .rev()
                .map(|l| l.trim())
                .take_while(|l| l.starts_with("#[") || l.starts_with("//") || l.ends_with(']'))
                .any(|l| l == "#[test]")
    })
}

/// Every directory under `src/`, as a path relative to it (`preflight`, `keep`, ...).
fn collect_folders(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if entry.file_type().unwrap().is_dir() {
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            out.push(name.clone());
            collect_folders(&entry.path(), &format!("{name}/"), out);
        }
    }
}
