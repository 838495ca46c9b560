//! The shape of `src/`: the stage folders that `src/lib.rs` declares, in its order, are the
//! pipeline's layers, and imports flow down that list only: a module uses those declared before
//! its folder, or the files of its own folder, never a folder declared after its own. And no
//! module imports one that imports it back (file by file, inside a folder too).
//!
//! Read from the source text, as a newcomer would: every `crate::a::b` path of a file (and
//! `super::` and a `mod.rs`'s paths to its own children), outside comments and string literals,
//! test modules included, names the module it reaches (the longest prefix that is a file).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One module file: its path in the crate (`run::runner`) and what it uses.
struct Module {
    file: PathBuf,
    /// The modules it reaches, each with the line of the first use.
    uses: BTreeMap<String, usize>,
}

/// The modules `declared` in a file's text: `mod x;`, `pub mod x;`, `pub(crate) mod x;` (not
/// inline `mod x { ... }` blocks), in order.
pub(crate) fn declared(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter_map(|l| {
            let l = l
                .strip_prefix("pub(crate) ")
                .or_else(|| l.strip_prefix("pub "))
                .unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
                .then(|| name.to_string())
        })
        .collect()
}

/// Every module file under `dir` for module `path` (`""` is the crate root, lib.rs).
fn collect(src: &Path, path: &str, file: &Path, out: &mut BTreeMap<String, PathBuf>) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    out.insert(path.to_string(), file.to_path_buf());
    let dir = if path.is_empty() {
        src.to_path_buf()
    } else if file.file_name().is_some_and(|n| n == "mod.rs") {
        file.parent().unwrap().to_path_buf()
    } else {
        file.with_extension("")
    };
    for child in declared(&text) {
        let child_path = if path.is_empty() {
            child.clone()
        } else {
            format!("{path}::{child}")
        };
        let flat = dir.join(format!("{child}.rs"));
        let folder = dir.join(&child).join("mod.rs");
        let child_file = if flat.is_file() { flat } else { folder };
        collect(src, &child_path, &child_file, out);
    }
}

/// The text of `src` without its comments and the contents of its string and char literals
/// (kept as `""`), line breaks kept so that line numbers stay true.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == b'/' && next == Some(b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && next == Some(b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == b'r' && matches!(next, Some(b'"') | Some(b'#')) && !ident_before(b, i) {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c as char);
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                if b[j] == b'\n' {
                    out.push('\n');
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j + close.len();
        } else if c == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                if b[j] == b'\\' {
                    j += 1;
                }
                if b.get(j) == Some(&b'\n') {
                    out.push('\n');
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j + 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{1b}'), or a lifetime ('a): only a literal is skipped.
            let end = if next == Some(b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&x| x == b'\'')
                    .map(|p| i + 2 + p)
            } else {
                let len = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + len) == Some(&b'\'')).then_some(i + 1 + len)
            };
            match end {
                Some(e) => {
                    out.push_str("' '");
                    i = e + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let len = src[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&src[i..i + len]);
            i += len;
        }
    }
    out
}

fn ident_before(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths a path written at `b[i..]` reaches, each under `base`: `a::b::{c, d::e}` gives
/// `a::b::c` and `a::b::d::e` (and `a::b` for `self`; a glob gives its prefix). Returns the
/// paths and where the path ends.
fn parse_path(b: &[u8], mut i: usize, base: &str, out: &mut Vec<String>) -> usize {
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut path = base.to_string();
    loop {
        i = skip_ws(i);
        match b.get(i) {
            Some(b'{') => {
                i += 1;
                loop {
                    i = skip_ws(i);
                    match b.get(i) {
                        Some(b'}') => return i + 1,
                        Some(b',') => i += 1,
                        None => return i,
                        _ => {
                            let before = i;
                            i = parse_path(b, i, &path, out);
                            if i == before {
                                i += 1;
                            }
                        }
                    }
                }
            }
            Some(b'*') => {
                out.push(path);
                return i + 1;
            }
            Some(c) if is_ident(*c as char) => {
                let start = i;
                while i < b.len() && is_ident(b[i] as char) {
                    i += 1;
                }
                let word = std::str::from_utf8(&b[start..i]).unwrap();
                if word != "self" {
                    path = if path.is_empty() {
                        word.to_string()
                    } else {
                        format!("{path}::{word}")
                    };
                }
                let j = skip_ws(i);
                if b[j..].starts_with(b"::") {
                    i = j + 2;
                    continue;
                }
                out.push(path);
                return i;
            }
            _ => {
                if !path.is_empty() && path != base {
                    out.push(path);
                }
                return i;
            }
        }
    }
}

/// What `module` (in `file`) uses, by the paths in its code.
fn uses_of(module: &str, file: &Path, children: &[String]) -> BTreeMap<String, usize> {
    let text = code_only(&std::fs::read_to_string(file).unwrap());
    let b = text.as_bytes();
    let is_mod_rs = file
        .file_name()
        .is_some_and(|n| n == "mod.rs" || n == "lib.rs");
    // What a `super::` at the file's top level names.
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let line_at = |i: usize| b[..i].iter().filter(|&&c| c == b'\n').count() + 1;
    let mut out: BTreeMap<String, usize> = BTreeMap::new();
    // Inline `mod name {` blocks open at these brace depths: a `super::` inside one names the
    // file's own module (its tests' `use super::*`).
    let mut depth = 0usize;
    let mut inline: Vec<usize> = Vec::new();
    let mut mod_block_next = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'{' {
            depth += 1;
            if mod_block_next {
                inline.push(depth);
                mod_block_next = false;
            }
            i += 1;
            continue;
        }
        if c == b'}' {
            if inline.last() == Some(&depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
            i += 1;
            continue;
        }
        if c == b';' {
            mod_block_next = false;
        }
        let starts =
            is_ident(c as char) && !(i > 0 && (is_ident(b[i - 1] as char) || b[i - 1] == b':'));
        if !starts {
            i += 1;
            continue;
        }
        let word_end = (i..b.len())
            .find(|&j| !is_ident(b[j] as char))
            .unwrap_or(b.len());
        let word = &text[i..word_end];
        let after = &b[word_end..];
        if word == "mod" {
            mod_block_next = true;
            i = word_end;
            continue;
        }
        if !after.starts_with(b"::") {
            i = word_end;
            continue;
        }
        let base = match word {
            "crate" => String::new(),
            "super" | "self" if !inline.is_empty() => {
                i = word_end;
                continue; // the file's own items, from its tests
            }
            "super" => parent.to_string(),
            "self" => module.to_string(),
            // A mod.rs's path to one of its children: `view::enter`, `use rules::Rule`.
            w if is_mod_rs && children.iter().any(|c| c == w) => module.to_string(),
            _ => {
                i = word_end;
                continue;
            }
        };
        let start = if base == module && word != "self" {
            i
        } else {
            word_end + 2
        };
        let mut paths = Vec::new();
        let end = parse_path(b, start, &base, &mut paths);
        let line = line_at(i);
        for p in paths {
            out.entry(p).or_insert(line);
        }
        i = end.max(word_end);
    }
    out
}

/// The module a path reaches: its longest prefix that is a module file.
fn module_of<'a>(path: &str, modules: &'a BTreeMap<String, Module>) -> Option<&'a str> {
    let mut p = path;
    loop {
        if let Some((k, _)) = modules.get_key_value(p) {
            return Some(k.as_str());
        }
        p = p.rsplit_once("::")?.0;
    }
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// The crate's modules and the modules each one uses.
fn crate_graph() -> (Vec<String>, BTreeMap<String, Module>) {
    let src = crate::common::repo_dir().join("src");
    let mut files = BTreeMap::new();
    collect(&src, "", &src.join("lib.rs"), &mut files);
    let stages = declared(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut modules: BTreeMap<String, Module> = files
        .iter()
        .map(|(m, f)| {
            (
                m.clone(),
                Module {
                    file: f.clone(),
                    uses: BTreeMap::new(),
                },
            )
        })
        .collect();
    let paths: Vec<(String, PathBuf)> = files.into_iter().collect();
    for (m, f) in &paths {
        let children: Vec<String> = declared(&std::fs::read_to_string(f).unwrap());
        let raw = uses_of(m, f, &children);
        let mut resolved = BTreeMap::new();
        for (path, line) in raw {
            // Items of lib.rs itself (the tests' seeded generator): the root, below every stage.
            let Some(target) = module_of(&path, &modules).filter(|t| !t.is_empty()) else {
                continue;
            };
            if target != m {
                resolved.entry(target.to_string()).or_insert(line);
            }
        }
        modules.get_mut(m).unwrap().uses = resolved;
    }
    (stages, modules)
}

fn shown(modules: &BTreeMap<String, Module>, m: &str) -> String {
    let root = crate::common::repo_dir();
    let f = &modules[m].file;
    format!("{m} ({})", f.strip_prefix(&root).unwrap_or(f).display())
}

/// Imports flow down src/lib.rs's list of stage folders: none reaches a folder declared after
/// its own.
#[test]
fn imports_flow_down_the_stages_of_lib_rs() {
    let (stages, modules) = crate_graph();
    let rank = |m: &str| stages.iter().position(|s| s == top(m));
    let mut upward = Vec::new();
    for (m, module) in &modules {
        let Some(from) = rank(m) else { continue };
        for (to, line) in &module.uses {
            let Some(target) = rank(to) else { continue };
            if target > from {
                upward.push(format!(
                    "{} line {line} uses {}: `{}` comes after `{}` in src/lib.rs",
                    shown(&modules, m),
                    shown(&modules, to),
                    top(to),
                    top(m)
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that climb the stages:\n{}",
        upward.join("\n")
    );
}

/// No module imports one that imports it back, directly or through others.
#[test]
fn no_module_imports_one_that_imports_it_back() {
    let (_, modules) = crate_graph();
    let names: Vec<&String> = modules.keys().collect();
    let index_of: BTreeMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let edges: Vec<Vec<usize>> = names
        .iter()
        .map(|n| {
            modules[*n]
                .uses
                .keys()
                .filter_map(|t| index_of.get(t.as_str()).copied())
                .collect()
        })
        .collect();
    // Each module's component: the modules it reaches that reach it back.
    let reach = |from: usize| {
        let mut seen = BTreeSet::from([from]);
        let mut stack = vec![from];
        while let Some(x) = stack.pop() {
            for &y in &edges[x] {
                if seen.insert(y) {
                    stack.push(y);
                }
            }
        }
        seen
    };
    let reached: Vec<BTreeSet<usize>> = (0..names.len()).map(reach).collect();
    let mut said = BTreeSet::new();
    let mut cycles = Vec::new();
    for a in 0..names.len() {
        let component: BTreeSet<usize> = reached[a]
            .iter()
            .copied()
            .filter(|&b| reached[b].contains(&a))
            .collect();
        if component.len() < 2 || !said.insert(component.clone()) {
            continue;
        }
        let members: Vec<&str> = component.iter().map(|&i| names[i].as_str()).collect();
        let mut lines = vec![format!("{{{}}}:", members.join(", "))];
        for &x in &component {
            for &y in edges[x].iter().filter(|y| component.contains(y)) {
                lines.push(format!(
                    "    {} line {} uses {}",
                    shown(&modules, names[x]),
                    modules[names[x]].uses[names[y]],
                    names[y]
                ));
            }
        }
        cycles.push(lines.join("\n"));
    }
    assert!(
        cycles.is_empty(),
        "modules that import each other, through the lines below:\n  {}",
        cycles.join("\n  ")
    );
}

/// The reader of the source text finds what it must (a guard against a test that cannot fail).
#[test]
fn the_reader_of_imports_sees_every_kind_of_path() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.rs");
    std::fs::write(
        &f,
        "//! [`crate::in_a_comment`]\nuse crate::a::{b, c::{self, d}};\nuse super::e;\n\
         fn f() { let s = \"crate::in_a_string\"; crate::g::h(); view::enter(); }\n\
         mod tests {\n    use super::*;\n    use super::i;\n    use crate::\n        j;\n}\n",
    )
    .unwrap();
    let found: Vec<String> = uses_of("p::x", &f, &["view".to_string()])
        .into_keys()
        .collect();
    assert_eq!(found, ["a::b", "a::c", "a::c::d", "g::h", "j", "p::e"]);
}
