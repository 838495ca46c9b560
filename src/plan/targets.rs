//! What to act on: the NeedsTargets paths pacman sends on stdin, or the modules named on the
//! command line, sorted into module sources and kernels.
//!
//! pacman gives paths relative to its root, one per line (`usr/src/foo-1.0/dkms.conf`,
//! `usr/lib/modules/6.9.1-arch1-1/modules.order`). Anything that is not a module source or a kernel
//! path is ignored: the hooks' triggers may match more than we act on.
//!
//! The input is bytes, as pacman's paths are: a line that cannot be a path pacman would send (not
//! UTF-8, with control characters, longer than PATH_MAX, absolute, or climbing with `..`) is
//! skipped with a note naming it, escaped, and every other line is still handled. Nothing on stdin
//! can make the reader panic (see the fuzz loop in the tests).
//!
//! Module names typed on the command line become the same targets: see [`crate::plan::names`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// Linux's PATH_MAX: no path the kernel accepts is longer, in bytes, terminating NUL included.
pub const PATH_MAX: usize = 4096;

/// Splits NeedsTargets bytes into the lines that may be acted on and one note for each line
/// that may not. Empty lines (or lines of spaces) are dropped without a word.
pub fn read_lines(bytes: &[u8]) -> (Vec<&str>, Vec<String>) {
    let mut good = Vec::new();
    let mut notes = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        // Spaces around a path are dropped, as before; any other byte counts.
        let start = raw.iter().position(|&b| b != b' ').unwrap_or(raw.len());
        let end = raw
            .iter()
            .rposition(|&b| b != b' ')
            .map_or(start, |e| e + 1);
        let line = &raw[start..end];
        if line.is_empty() {
            continue;
        }
        match check_line(line) {
            Ok(s) => good.push(s),
            Err(why) => notes.push(format!(
                "target line {} skipped: \"{}\" {why}",
                i + 1,
                crate::os::text::escaped(line)
            )),
        }
    }
    (good, notes)
}

/// The line as text when it can be a path pacman sends, else why not.
fn check_line(line: &[u8]) -> Result<&str, String> {
    if line.len() >= PATH_MAX {
        return Err(format!(
            "is {} bytes long, more than a path can be (PATH_MAX is {PATH_MAX})",
            line.len()
        ));
    }
    let Ok(s) = std::str::from_utf8(line) else {
        return Err("is not valid UTF-8".to_string());
    };
    if s.chars().any(char::is_control) {
        return Err("has control characters".to_string());
    }
    if s.starts_with('/') {
        return Err("is absolute (pacman's targets are relative to its root)".to_string());
    }
    if Path::new(s).components().any(|c| c == Component::ParentDir) {
        return Err("climbs with `..`".to_string());
    }
    Ok(s)
}

/// One kernel named by the targets, with what of it the paths touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelTarget {
    /// Only paths under `build/` (the headers package) were named: on removal, the kernel itself
    /// stays and may still boot.
    pub headers_only: bool,
}

/// The targets of one hook run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// Module source directories (relative to the root), e.g. `usr/src/foo-1.0`.
    pub sources: BTreeSet<PathBuf>,
    /// Kernel releases named by `usr/lib/modules/<kver>/...` paths.
    pub kernels: BTreeMap<String, KernelTarget>,
    /// One note for each line that was skipped, naming it (see [`read_lines`]).
    pub notes: Vec<String>,
}

impl Targets {
    /// Parses NeedsTargets bytes. `source_prefix` and `modules_prefix` are the source and install
    /// trees relative to the root (`usr/src`, `usr/lib/modules` by default).
    pub fn parse(bytes: &[u8], source_prefix: &Path, modules_prefix: &Path) -> Targets {
        let (lines, notes) = read_lines(bytes);
        let mut t = Targets {
            notes,
            ..Targets::default()
        };
        for line in lines {
            let path = Path::new(line);
            if path
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
            {
                continue; // `.` or anything odd: never act on it
            }
            if let Ok(rest) = path.strip_prefix(source_prefix) {
                let parts: Vec<_> = rest.components().collect();
                if parts.len() == 2 && parts[1].as_os_str() == "dkms.conf" {
                    t.sources.insert(source_prefix.join(parts[0].as_os_str()));
                }
                continue;
            }
            if let Ok(rest) = path.strip_prefix(modules_prefix) {
                let mut parts = rest.components();
                let Some(kver) = parts.next() else { continue };
                let Some(second) = parts.next() else { continue };
                let Some(kver) = kver.as_os_str().to_str() else {
                    continue;
                };
                let in_build = second.as_os_str() == "build";
                let entry = t
                    .kernels
                    .entry(kver.to_string())
                    .or_insert(KernelTarget { headers_only: true });
                entry.headers_only &= in_build;
            }
        }
        t
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.kernels.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Targets {
        parse_bytes(s.as_bytes())
    }

    fn parse_bytes(b: &[u8]) -> Targets {
        Targets::parse(b, Path::new("usr/src"), Path::new("usr/lib/modules"))
    }

    #[test]
    fn sorts_sources_and_kernels() {
        let t = parse(
            "usr/src/foo-bar-1.2-rc3-7/dkms.conf\n\
             usr/lib/modules/6.9.1-arch1-1/build/include/\n\
             usr/lib/modules/6.9.1-arch1-1/modules.order\n\
             usr/lib/modules/6.8.0-1/build/include/\n",
        );
        assert_eq!(
            t.sources.iter().collect::<Vec<_>>(),
            [Path::new("usr/src/foo-bar-1.2-rc3-7")]
        );
        assert!(!t.kernels["6.9.1-arch1-1"].headers_only);
        assert!(t.kernels["6.8.0-1"].headers_only);
    }

    #[test]
    fn ignores_everything_else() {
        let t = parse(
            "\n   \nusr/src/\nusr/src/foo-1/Makefile\nusr/src/../etc/dkms.conf\n\
             usr/src/a/../b/dkms.conf\netc/passwd\nusr/lib/modules/\nusr/lib/modules/6.1\n\
             usr/src/x/y/dkms.conf\n",
        );
        assert!(t.is_empty(), "{t:?}");
    }

    #[test]
    fn honours_moved_trees() {
        let t = Targets::parse(
            b"opt/src/foo-1/dkms.conf\nusr/src/bar-1/dkms.conf\n",
            Path::new("opt/src"),
            Path::new("usr/lib/modules"),
        );
        assert_eq!(t.sources.len(), 1);
    }

    /// Defect: one line that was not UTF-8 failed the whole run ("stream did not contain valid
    /// UTF-8", exit 2), and the other targets were not built either.
    #[test]
    fn hostile_lines_are_skipped_one_note_each_and_the_rest_handled() {
        let long = format!("usr/src/{}/dkms.conf", "a".repeat(PATH_MAX));
        let mut input = Vec::new();
        input.extend_from_slice(b"usr/src/good-1.0/dkms.conf\n");
        input.extend_from_slice(b"usr/src/bad-\xff\xfe-1.0/dkms.conf\n");
        input.extend_from_slice(b"usr/src/tab\t-1.0/dkms.conf\n");
        input.extend_from_slice(b"usr/src/crlf-1.0/dkms.conf\r\n");
        input.extend_from_slice(long.as_bytes());
        input.push(b'\n');
        input.extend_from_slice(b"/usr/src/abs-1.0/dkms.conf\n");
        input.extend_from_slice(b"usr/src/../../etc/dkms.conf\n");
        input.extend_from_slice(b"usr/lib/modules/6.9.1-arch1-1/modules.order\n");
        let t = parse_bytes(&input);
        assert_eq!(
            t.sources.iter().collect::<Vec<_>>(),
            [Path::new("usr/src/good-1.0")]
        );
        assert!(!t.kernels["6.9.1-arch1-1"].headers_only);
        let notes = &t.notes;
        assert_eq!(notes.len(), 6, "{notes:#?}");
        let want = [
            (r#"line 2 skipped: "usr/src/bad-\xff\xfe-1.0/dkms.conf" is not valid UTF-8"#),
            (r#"line 3 skipped: "usr/src/tab\t-1.0/dkms.conf" has control characters"#),
            (r#"line 4 skipped: "usr/src/crlf-1.0/dkms.conf\r" has control characters"#),
            ("line 5 skipped: \"usr/src/aaaa"),
            ("line 6 skipped: \"/usr/src/abs-1.0/dkms.conf\" is absolute"),
            ("line 7 skipped: \"usr/src/../../etc/dkms.conf\" climbs with `..`"),
        ];
        for (n, w) in notes.iter().zip(want) {
            assert!(n.starts_with(&format!("target {w}")), "{n}\nwant: {w}");
        }
        assert!(notes[3].contains("PATH_MAX is 4096"), "{}", notes[3]);
        assert!(notes[3].len() < 300, "a long line is cut: {}", notes[3]);
    }

    #[test]
    fn a_note_never_prints_a_raw_control_character() {
        let (_, notes) = read_lines(b"a\x1b[31mred\x07/dkms.conf\nb\"q\\\n");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(!notes[0].chars().any(char::is_control), "{:?}", notes[0]);
        assert!(notes[0].contains(r"\u{1b}[31mred\u{7}"), "{}", notes[0]);
    }

    /// A small xorshift generator: the fuzz loop below needs no crate and is the same on every run.
    use crate::test_rng::Rng;

    /// Random lines made of the fragments pacman's paths and hostile input are made of: the
    /// reader never panics, acts only on clean relative paths under the two trees, and says
    /// something for every non-blank line it does not take.
    #[test]
    fn fuzz_the_targets_reader() {
        const PIECES: &[&[u8]] = &[
            b"usr/",
            b"src/",
            b"lib/modules/",
            b"6.9.1-arch1-1/",
            b"build/",
            b"include/",
            b"foo-1.0/",
            b"dkms.conf",
            b"modules.order",
            b"/",
            b"..",
            b".",
            b"../",
            b" ",
            b"\t",
            b"\r",
            b"\0",
            b"\x1b",
            b"\x7f",
            b"\xc2\x85",
            b"\xff",
            b"\xe2\x82",
            b"\xf0\x9f\x98\x80",
            b"\n",
            b"\n\n",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..rng.below(40) {
                input.extend_from_slice(PIECES[rng.below(PIECES.len())]);
            }
            if round % 500 == 0 {
                input.extend(std::iter::repeat_n(b'x', PATH_MAX + rng.below(10)));
            }
            let (good, notes) = read_lines(&input);
            let blank = |l: &[u8]| l.iter().all(|&b| b == b' ');
            let lines = input.split(|&b| b == b'\n').filter(|l| !blank(l)).count();
            assert_eq!(good.len() + notes.len(), lines, "{input:?}");
            for n in &notes {
                assert!(!n.chars().any(char::is_control), "{n:?}");
            }
            let t = parse_bytes(&input);
            for s in &t.sources {
                let rel = s.strip_prefix("usr/src").expect("under the source tree");
                assert_eq!(rel.components().count(), 1, "{input:?} gave {s:?}");
                assert!(rel.components().all(|c| matches!(c, Component::Normal(_))));
            }
            for k in t.kernels.keys() {
                assert!(!k.is_empty() && !k.contains('/') && k != ".." && k != ".");
                assert!(!k.chars().any(char::is_control), "{k:?}");
            }
        }
    }
}
