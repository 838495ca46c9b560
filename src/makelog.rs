//! Picks the compiler's own error lines out of a dkms make.log.
//!
//! A failed build's make.log is mostly noise (`CC [M]` lines, warnings, make entering directories), and
//! its tail is make's recursive `*** Error 2` lines, which say nothing about the cause. What a user needs
//! under pacman is the FIRST errors as gcc, clang, the linker, modpost and make wrote them, with gcc's
//! own context (the `In file included from` / `In function` lead-ins and the `  |` source lines), and
//! nothing twice. The reporter shows these lines as they are, with the path of the full log.

use regex::Regex;
use std::collections::HashSet;
use std::sync::OnceLock;

/// What one line of a make.log is, for picking errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An error in its own right (compiler, linker, modpost, make).
    Error,
    /// A warning: dropped, with its context and notes.
    Warning,
    /// A note about the diagnostic before it.
    Note,
    /// A note that only repeats gcc's boilerplate.
    NoiseNote,
    /// Says where the next diagnostic happens (`In function 'f':`, `In file included from x.c:3:`).
    LeadIn,
    /// gcc's or clang's source context for the diagnostic before it (`    3 |   return x;`).
    Context,
    /// Anything else (`CC [M]` lines, make entering directories, `compilation terminated.` ...).
    Other,
}

struct Patterns {
    ansi: Regex,
    diagnostic: Regex,
    lead_in: Regex,
    context: Regex,
    linker: Regex,
    make: Regex,
    missing: Regex,
}

fn patterns() -> &'static Patterns {
    static PATTERNS: OnceLock<Patterns> = OnceLock::new();
    PATTERNS.get_or_init(|| Patterns {
        // Colour codes, should a compiler have been told to colour its output anyway.
        ansi: Regex::new(r"\x1b\[[0-9;]*[A-Za-z]").unwrap(),
        // `file:line:col: error: ...`, `file:line: warning: ...`, `cc1: error: ...`, `clang: error: ...`.
        diagnostic: Regex::new(r"^\S.*?: (fatal error|error|warning|note): ").unwrap(),
        lead_in: Regex::new(
            r"(?x)^(
                In\ file\ included\ from\ .*[:,]$
              | \s+from\ .*[:,]$
              | (\S+:\ )?In\ (\w+\ )*function\ .*[:,]$
              | \s+inlined\ from\ .*[:,]$
              | \S+:\ At\ top\ level:$
            )",
        )
        .unwrap(),
        // gcc: `    3 |   code` and `      |   ^~~`; clang without line numbers: a caret line;
        // lld: `>>> referenced by x.o`.
        context: Regex::new(r"^(\s*\d*\s\|( |$)|\s*[\^~][\^~ ]*$|>>> )").unwrap(),
        // GNU ld, gold and lld, with or without a path or target prefix.
        linker: Regex::new(r"^(\S*/)?(\S+-)?ld(\.bfd|\.gold|\.lld)?: ").unwrap(),
        // `make[1]: *** [Makefile:255: x.o] Error 1`, `Makefile:3: *** missing separator.  Stop.`
        make: Regex::new(r"^\S+: \*\*\* ").unwrap(),
        // A compiler or tool that is not there (headers made by a newer gcc than the one installed):
        // `/bin/sh: 1: gcc-13: not found`, `make[2]: gcc-13: No such file or directory`.
        missing: Regex::new(r"(: (command )?not found|: No such file or directory)$").unwrap(),
    })
}

fn classify(line: &str) -> Kind {
    let p = patterns();
    if p.make.is_match(line) {
        return if line.contains("Waiting for unfinished jobs") {
            Kind::Other
        } else {
            Kind::Error
        };
    }
    if let Some(c) = p.diagnostic.captures(line) {
        return match &c[1] {
            "warning" => Kind::Warning,
            "note" if line.contains("is reported only once") => Kind::NoiseNote,
            "note" => Kind::Note,
            _ => Kind::Error,
        };
    }
    if line.starts_with("ERROR: ")
        || p.linker.is_match(line)
        || line.contains(": undefined reference to ")
        || line.contains(": multiple definition of ")
        || line.contains("warnings being treated as errors")
        || p.missing.is_match(line)
    {
        return Kind::Error;
    }
    if p.lead_in.is_match(line) {
        return Kind::LeadIn;
    }
    if p.context.is_match(line) {
        return Kind::Context;
    }
    Kind::Other
}

/// Whether a lead-in names a scope (`In function 'f':`) rather than an include chain: a scope repeats
/// for every error in the same function and is worth showing only when it changes.
fn is_scope(line: &str) -> bool {
    !line.starts_with("In file included from") && !line.trim_start().starts_with("from ")
}

/// The first errors in `log`, with their lead-ins and source context, each line once, at most `max`
/// lines. When there are more, the last of the `max` lines says how many were left out.
pub fn error_lines(log: &str, max: usize) -> Vec<String> {
    let ansi = &patterns().ansi;
    let mut picked: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    // Lead-ins wait for the diagnostic they introduce: kept before an error, dropped before a warning.
    let mut pending: Vec<String> = Vec::new();
    // Whether context and notes that follow belong to a kept error.
    let mut keeping = false;
    // The last scope lead-in shown, so that errors in one function share one `In function` line.
    let mut scope: Option<String> = None;
    // An unrecognised line right after a kept error: clang (before version 17) prints the source line
    // without a `|` gutter, so it counts as context only if a caret line follows it.
    let mut source: Option<String> = None;

    for raw in log.lines() {
        let line = ansi.replace_all(raw.trim_end(), "");
        let line = line.as_ref();
        let kind = classify(line);
        if let Some(held) = source.take() {
            if kind == Kind::Context {
                picked.push(held);
            } else {
                keeping = false;
            }
        }
        match kind {
            Kind::Error => {
                if !seen.insert(line.to_string()) {
                    // The same error again (a header included twice, make -j repeating itself).
                    pending.clear();
                    keeping = false;
                    continue;
                }
                for lead in pending.drain(..) {
                    if is_scope(&lead) {
                        if scope.as_deref() == Some(lead.as_str()) {
                            continue;
                        }
                        scope = Some(lead.clone());
                    }
                    picked.push(lead);
                }
                picked.push(line.to_string());
                keeping = true;
            }
            Kind::Warning => {
                pending.clear();
                keeping = false;
            }
            Kind::Note => {
                if keeping && seen.insert(line.to_string()) {
                    picked.push(line.to_string());
                }
            }
            Kind::NoiseNote => {}
            Kind::LeadIn => {
                keeping = false;
                pending.push(line.to_string());
            }
            Kind::Context => {
                if keeping {
                    picked.push(line.to_string());
                }
            }
            Kind::Other => {
                pending.clear();
                if keeping {
                    source = Some(line.to_string());
                }
            }
        }
    }
    cap(picked, max)
}

/// The last `max` lines of `log` that say something (not make's entering/leaving directory lines), for
/// a failed build whose log holds no line `error_lines` recognises.
pub fn tail(log: &str, max: usize) -> Vec<String> {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim_end)
        .filter(|l| {
            !l.is_empty()
                && !l.contains(": Entering directory")
                && !l.contains(": Leaving directory")
        })
        .collect();
    let start = lines.len().saturating_sub(max);
    lines[start..].iter().map(|l| l.to_string()).collect()
}

fn cap(mut lines: Vec<String>, max: usize) -> Vec<String> {
    if lines.len() <= max {
        return lines;
    }
    if max == 0 {
        return Vec::new();
    }
    let left_out = lines.len() - (max - 1);
    lines.truncate(max - 1);
    lines.push(format!("[{left_out} more error lines in the full log]"));
    lines
}

#[cfg(test)]
mod tests {
    //! The logs under tests/data are real: dkms 3.0.10 building small broken modules against Debian's
    //! linux-headers-6.1.0-55-amd64 (gcc 12), with the default dkms tree, copied unchanged:
    //! - make-gcc-errors.log: an error in a header included from main.c, an implicit declaration made
    //!   an error by -Werror, an unused variable warning, a missing return;
    //! - make-modpost-undefined.log: a call to a function no module exports;
    //! - make-fatal-error.log: an #include of a header that does not exist;
    //! - make-ld-multiple-definition.log: two objects of one module define the same variable;
    //! - make-many-errors.log: a second file with warnings built first, then 25 undeclared identifiers
    //!   among many warnings;
    //! - make-compiler-missing.log: MAKE naming a compiler that is not installed (as when headers were
    //!   made by a newer gcc than the system's).

    use super::*;

    fn data(name: &str) -> String {
        let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn gcc_errors_keep_lead_ins_and_context_and_drop_warnings() {
        let got = error_lines(&data("make-gcc-errors.log"), 30);
        let want = [
            "In file included from /var/lib/dkms/broken/1.0/build/main.c:3:",
            "/var/lib/dkms/broken/1.0/build/helper.h: In function ‘helper_value’:",
            "/var/lib/dkms/broken/1.0/build/helper.h:3:16: error: ‘undeclared_thing’ undeclared (first use in this function)",
            "    3 |         return undeclared_thing + 1;",
            "      |                ^~~~~~~~~~~~~~~~",
            "/var/lib/dkms/broken/1.0/build/main.c: In function ‘broken_init’:",
            "/var/lib/dkms/broken/1.0/build/main.c:9:16: error: implicit declaration of function ‘missing_function’ [-Werror=implicit-function-declaration]",
            "    9 |         return missing_function(3);",
            "      |                ^~~~~~~~~~~~~~~~",
            "/var/lib/dkms/broken/1.0/build/helper.h: In function ‘helper_value’:",
            "/var/lib/dkms/broken/1.0/build/helper.h:4:1: error: control reaches end of non-void function [-Werror=return-type]",
            "    4 | }",
            "      | ^",
            "cc1: some warnings being treated as errors",
            "make[1]: *** [/usr/src/linux-headers-6.1.0-55-common/scripts/Makefile.build:255: /var/lib/dkms/broken/1.0/build/main.o] Error 1",
            "make: *** [/usr/src/linux-headers-6.1.0-55-common/Makefile:2065: /var/lib/dkms/broken/1.0/build] Error 2",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn modpost_undefined_symbol() {
        let got = error_lines(&data("make-modpost-undefined.log"), 30);
        let want = [
            "ERROR: modpost: \"dkms_hook_not_exported\" [/var/lib/dkms/undef/1.0/build/undef.ko] undefined!",
            "make[1]: *** [/usr/src/linux-headers-6.1.0-55-common/scripts/Makefile.modpost:127: /var/lib/dkms/undef/1.0/build/Module.symvers] Error 1",
            "make: *** [/usr/src/linux-headers-6.1.0-55-common/Makefile:2017: modpost] Error 2",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn fatal_error_with_its_context_but_not_compilation_terminated() {
        let got = error_lines(&data("make-fatal-error.log"), 30);
        let want = [
            "/var/lib/dkms/fatal/1.0/build/fatal.c:2:10: fatal error: nothere.h: No such file or directory",
            "    2 | #include \"nothere.h\"",
            "      |          ^~~~~~~~~~~",
            "make[1]: *** [/usr/src/linux-headers-6.1.0-55-common/scripts/Makefile.build:255: /var/lib/dkms/fatal/1.0/build/fatal.o] Error 1",
            "make: *** [/usr/src/linux-headers-6.1.0-55-common/Makefile:2065: /var/lib/dkms/fatal/1.0/build] Error 2",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn linker_error() {
        let got = error_lines(&data("make-ld-multiple-definition.log"), 30);
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(got[0].starts_with("ld: /var/lib/dkms/multidef/1.0/build/b.o:"));
        assert!(got[0].contains("multiple definition of `shared_counter'"));
        assert!(got[1].starts_with("make[1]: *** "));
    }

    #[test]
    fn many_errors_are_capped_keeping_the_first_and_skipping_earlier_warnings() {
        let log = data("make-many-errors.log");
        let got = error_lines(&log, 30);
        assert_eq!(got.len(), 30);
        // Warnings and their notes came first in the log; none of them is shown.
        assert!(
            got.iter()
                .all(|l| !l.contains("warning:") && !l.contains("note:")),
            "{got:#?}"
        );
        assert_eq!(
            got[0],
            "/var/lib/dkms/many/1.0/build/one.c: In function ‘many_init’:"
        );
        assert_eq!(
            got[1],
            "/var/lib/dkms/many/1.0/build/one.c:11:18: error: ‘undeclared_1’ undeclared (first use in this function)"
        );
        // Errors in the same function share one lead-in.
        assert_eq!(got.iter().filter(|l| l.contains("In function")).count(), 1);
        // Error, two context lines, in the log's order.
        assert!(
            got[4].contains("one.c:12:18: error: ‘undeclared_2’"),
            "{got:#?}"
        );
        let all = error_lines(&log, usize::MAX);
        assert_eq!(all.iter().filter(|l| l.contains(": error: ")).count(), 25);
        assert_eq!(
            got[29],
            format!("[{} more error lines in the full log]", all.len() - 29)
        );
        assert_eq!(got[..29], all[..29]);
    }

    #[test]
    fn repeated_errors_are_shown_once() {
        // One header error reached from two files, as gcc prints it for each.
        let log = "\
In file included from /b/a.c:2:
/b/h.h: In function ‘f’:
/b/h.h:3:9: error: ‘x’ undeclared (first use in this function)
    3 |  return x;
      |         ^
In file included from /b/b.c:2:
/b/h.h: In function ‘f’:
/b/h.h:3:9: error: ‘x’ undeclared (first use in this function)
    3 |  return x;
      |         ^
make[2]: *** [scripts/Makefile.build:250: /b/a.o] Error 1
make[2]: *** [scripts/Makefile.build:250: /b/b.o] Error 1
";
        let got = error_lines(log, 30);
        assert_eq!(
            got,
            [
                "In file included from /b/a.c:2:",
                "/b/h.h: In function ‘f’:",
                "/b/h.h:3:9: error: ‘x’ undeclared (first use in this function)",
                "    3 |  return x;",
                "      |         ^",
                "make[2]: *** [scripts/Makefile.build:250: /b/a.o] Error 1",
                "make[2]: *** [scripts/Makefile.build:250: /b/b.o] Error 1",
            ]
        );
    }

    #[test]
    fn colour_codes_are_stripped_and_notes_after_errors_kept() {
        let log = "\x1b[01m\x1b[Kx.c:5:7:\x1b[m\x1b[K \x1b[01;31m\x1b[Kerror: \x1b[m\x1b[Kpassing argument 1 of ‘g’ from incompatible pointer type\n\
x.c:2:12: note: expected ‘int *’ but argument is of type ‘char *’\n";
        assert_eq!(
            error_lines(log, 30),
            [
                "x.c:5:7: error: passing argument 1 of ‘g’ from incompatible pointer type",
                "x.c:2:12: note: expected ‘int *’ but argument is of type ‘char *’",
            ]
        );
    }

    #[test]
    fn make_stop_lines_and_clang_and_lld() {
        let log = "\
Makefile:3: *** missing separator.  Stop.
clang: error: unknown argument: '-fconserve-stack'
ld.lld: error: undefined symbol: foo
>>> referenced by x.c
make[1]: *** Waiting for unfinished jobs....
";
        assert_eq!(
            error_lines(log, 30),
            [
                "Makefile:3: *** missing separator.  Stop.",
                "clang: error: unknown argument: '-fconserve-stack'",
                "ld.lld: error: undefined symbol: foo",
                ">>> referenced by x.c",
            ]
        );
    }

    #[test]
    fn clang_source_lines_without_a_gutter() {
        let log = "\
x.c:3:9: error: use of undeclared identifier 'x'
        return x;
               ^
1 error generated.
  CC [M]  /b/y.o
";
        assert_eq!(
            error_lines(log, 30),
            [
                "x.c:3:9: error: use of undeclared identifier 'x'",
                "        return x;",
                "               ^",
            ]
        );
    }

    #[test]
    fn a_missing_compiler() {
        assert_eq!(
            error_lines(&data("make-compiler-missing.log"), 30),
            [
                "/bin/sh: 1: x86_64-linux-gnu-gcc-13: not found",
                "make[1]: *** [/usr/src/linux-headers-6.1.0-55-common/scripts/Makefile.build:255: /var/lib/dkms/nocc/1.0/build/nocc.o] Error 127",
                "make: *** [/usr/src/linux-headers-6.1.0-55-common/Makefile:2065: /var/lib/dkms/nocc/1.0/build] Error 2",
            ]
        );
    }

    #[test]
    fn a_log_without_errors_gives_nothing_and_tail_gives_its_end() {
        let log = data("make-gcc-errors.log");
        let clean: String = log.lines().take(5).map(|l| format!("{l}\n")).collect();
        assert!(error_lines(&clean, 30).is_empty());
        let t = tail(&log, 2);
        assert_eq!(
            t,
            [
                "make[1]: *** Waiting for unfinished jobs....",
                "make: *** [/usr/src/linux-headers-6.1.0-55-common/Makefile:2065: /var/lib/dkms/broken/1.0/build] Error 2",
            ]
        );
    }

    #[test]
    fn cap_edges() {
        let log = data("make-modpost-undefined.log");
        assert!(error_lines(&log, 0).is_empty());
        assert_eq!(
            error_lines(&log, 1),
            ["[3 more error lines in the full log]"]
        );
        assert_eq!(error_lines(&log, 3).len(), 3);
        assert_eq!(
            error_lines(&log, 2)[1],
            "[2 more error lines in the full log]"
        );
    }
}
