//! The documentation's own honesty (issue 17): the README stays a front page that points to the
//! rest, every test a document cites by name (`module::test_name` in backticks) exists where the
//! name says, so the promises table cannot name a test that is gone, renamed or moved, the links
//! between the documents reach their files and headings, and ARCHITECTURE.md's code map has a
//! section for every folder of `src/`, in src/lib.rs's order, naming every file of it and only
//! files that are there. Nothing here needs root: plain `cargo test` runs it.

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

/// Every folder of `src/` has its section in the code map, a `### \`name/\`` heading, and the
/// sections come in src/lib.rs's order of the stages (the order imports flow); each file of a
/// folder is named in its section (its mod.rs aside), so that no file goes unmapped.
#[test]
fn the_architecture_names_every_folder_of_src() {
    let map = read("ARCHITECTURE.md");
    let sections = folder_sections(&map);
    let headed: Vec<&str> = sections.iter().map(|(f, _)| f.as_str()).collect();
    let mut folders = Vec::new();
    collect_folders(&repo_dir().join("src"), "", &mut folders);
    assert!(!folders.is_empty(), "no folder under src/");
    let unheaded: Vec<_> = folders
        .iter()
        .filter(|f| !headed.contains(&f.as_str()))
        .collect();
    assert!(
        unheaded.is_empty(),
        "ARCHITECTURE.md has no section (a heading ### `name/`) for these folders of src/: \
         {unheaded:?}"
    );
    let stages = crate::layers::declared(&read("src/lib.rs"));
    let in_order: Vec<&str> = stages
        .iter()
        .map(String::as_str)
        .filter(|s| headed.contains(s))
        .collect();
    let top: Vec<&str> = headed
        .iter()
        .copied()
        .filter(|f| stages.iter().any(|s| s == f))
        .collect();
    assert_eq!(
        top, in_order,
        "ARCHITECTURE.md's folder sections are not in src/lib.rs's order of the stages"
    );
    let mut unnamed = Vec::new();
    for (folder, text) in &sections {
        let named = named_files(text);
        let Ok(entries) = fs::read_dir(repo_dir().join("src").join(folder)) else {
            continue; // a section for no folder: the test of the named files says it
        };
        let mut files: Vec<String> = entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| (n.ends_with(".rs") || n.ends_with(".sh")) && n != "mod.rs")
            .collect();
        files.sort();
        for f in files {
            let path = format!("{folder}/{f}");
            if !named.iter().any(|n| *n == f || *n == path) {
                unnamed.push(format!("src/{path}"));
            }
        }
    }
    assert!(
        unnamed.is_empty(),
        "ARCHITECTURE.md's section of their folder does not name these files: {unnamed:?}"
    );
}

/// Every file the code map names (`name.rs`, `name.sh` in backticks) under a folder's heading
/// exists: a bare name in that folder of `src/`, a name with a slash as a path relative to
/// `src/` (or to the repository when it starts with `src/`).
#[test]
fn every_file_the_architecture_names_exists_in_its_folder() {
    let map = read("ARCHITECTURE.md");
    let sections = folder_sections(&map);
    assert!(
        sections.len() > 10,
        "only {} folder sections in ARCHITECTURE.md",
        sections.len()
    );
    let mut named = 0;
    let mut missing = Vec::new();
    for (folder, text) in &sections {
        for file in named_files(text) {
            named += 1;
            let path = named_path(folder, &file);
            if !repo_dir().join(&path).is_file() {
                missing.push(format!("### `{folder}/`: `{file}`: no {path}"));
            }
        }
    }
    assert!(named > 40, "the folder sections name only {named} files");
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// A check of the checker: the sections are cut at every heading, fenced blocks are left out,
/// and names are resolved against their own folder.
#[test]
fn the_code_map_check_reads_sections_and_names() {
    let text = "## Code map\n\n### `a/`\n\n`x.rs` (the `Y` type), `b/z.sh`, `src/lib.rs`, \
                `a b.rs`\n```\n`fenced.rs`\n```\n### `a/b/`\n\n`w.rs`\n## Testing\n`t.rs`\n";
    let sections = folder_sections(text);
    let names: Vec<(&str, Vec<String>)> = sections
        .iter()
        .map(|(f, t)| (f.as_str(), named_files(t)))
        .collect();
    assert_eq!(
        names,
        [
            (
                "a",
                vec!["x.rs".into(), "b/z.sh".into(), "src/lib.rs".into()]
            ),
            ("a/b", vec!["w.rs".into()])
        ]
    );
    assert_eq!(named_path("a", "x.rs"), "src/a/x.rs");
    assert_eq!(named_path("a", "b/z.sh"), "src/b/z.sh");
    assert_eq!(named_path("a", "src/lib.rs"), "src/lib.rs");
}

/// ARCHITECTURE.md's folder sections: each `### \`name/\`` heading and the text under it, up to
/// the next heading of any level (fenced blocks left out).
fn folder_sections(markdown: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut open = false;
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if line.starts_with('#') {
            let folder = line
                .strip_prefix("### `")
                .and_then(|l| l.trim_end().strip_suffix("/`"));
            open = folder.is_some();
            if let Some(f) = folder {
                out.push((f.to_string(), String::new()));
            }
        } else if open {
            let text = &mut out.last_mut().unwrap().1;
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

/// The file names in backticks in `text`: `name.rs`, `name.sh`, `folder/name.rs`.
fn named_files(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.ends_with(".rs") || s.ends_with(".sh"))
        .filter(|s| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        })
        .map(str::to_string)
        .collect()
}

/// Where a file named in `folder`'s section is, relative to the repository.
fn named_path(folder: &str, file: &str) -> String {
    if file.starts_with("src/") {
        file.to_string()
    } else if file.contains('/') {
        format!("src/{file}")
    } else {
        format!("src/{folder}/{file}")
    }
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
