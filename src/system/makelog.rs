//! Picks the compiler's own error lines out of a dkms make.log.
//!
//! A failed build's make.log is mostly noise (`CC [M]` lines, warnings, make entering directories), and
//! its tail is make's recursive `*** Error 2` lines, which say nothing about the cause. What a user needs
//! under pacman is the FIRST errors as gcc, clang, the linker, modpost and make wrote them, with gcc's
//! own context (the `In file included from` / `In function` lead-ins and the `  |` source lines), and
//! nothing twice. The reporter shows these lines as they are, with the path of the full log.
//!
//! A make.log is read as bytes, once, in bounded memory ([`digest`]): a module that prints a
//! gigabyte of warnings costs a gigabyte of reading, not of memory; a line that is not UTF-8 (gcc
//! quoting a Latin-1 source line) is shown with U+FFFD in place of its bad bytes; a line longer
//! than [`MAX_LINE`] is cut there. The whole log is kept by copying its file, never through this.

use regex::Regex;
use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read};
use std::sync::OnceLock;

/// The longest line shown: a longer one is cut there, and says so.
pub const MAX_LINE: usize = 4096;

/// At most this many distinct error lines are remembered to show each once: past that (a log of
/// tens of thousands of different errors), the count of lines left out may count some twice.
const MAX_SEEN: usize = 1 << 16;

/// At most this many lead-ins wait for their diagnostic (a deeper include chain is cut).
const MAX_PENDING: usize = 64;

/// The lines of a log read as bytes: each without its line ending, shown lossily (invalid UTF-8
/// as U+FFFD), cut at [`MAX_LINE`] bytes. A read error ends the lines.
pub fn lines<R: Read>(log: R) -> impl Iterator<Item = String> {
    let mut reader = BufReader::with_capacity(1 << 16, log);
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    std::iter::from_fn(move || loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => &[],
        };
        if chunk.is_empty() {
            if line.is_empty() && !cut {
                return None;
            }
            return Some(finish_line(&mut line, &mut cut));
        }
        let (took, end) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..took.min(room)]);
        cut |= took > room;
        reader.consume(if end { took + 1 } else { took });
        if end {
            return Some(finish_line(&mut line, &mut cut));
        }
    })
}

fn finish_line(line: &mut Vec<u8>, cut: &mut bool) -> String {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let mut text = String::from_utf8_lossy(line).into_owned();
    if std::mem::take(cut) {
        text.push_str(" [line cut]");
    }
    line.clear();
    text
}

/// What a failure report takes from a make.log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digest {
    /// The first errors ([`error_lines`]).
    pub errors: Vec<String>,
    /// The last lines that say something ([`tail`]), for a log without a recognised error.
    pub tail: Vec<String>,
    /// The first line that says `No space left on device`.
    pub no_space: Option<String>,
}

/// Reads `log` once, as bytes, holding only what the report shows: at most `max_errors` error
/// lines, the last `max_tail` lines, one full-disk line.
pub fn digest<R: Read>(log: R, max_errors: usize, max_tail: usize) -> Digest {
    let mut errors = ErrorPicker::new(max_errors);
    let mut tail = Tail::new(max_tail);
    let mut no_space = None;
    for line in lines(log) {
        if no_space.is_none() && line.contains("No space left on device") {
            no_space = Some(line.trim_end().to_string());
        }
        errors.push(&line);
        tail.push(&line);
    }
    Digest {
        errors: errors.finish(),
        tail: tail.finish(),
        no_space,
    }
}

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
    // Plain substring tests first: most lines of a long log match none of the patterns.
    if line.contains(": *** ") && p.make.is_match(line) {
        return if line.contains("Waiting for unfinished jobs") {
            Kind::Other
        } else {
            Kind::Error
        };
    }
    let diagnostic =
        line.contains("error: ") || line.contains("warning: ") || line.contains("note: ");
    if let Some(c) = diagnostic.then(|| p.diagnostic.captures(line)).flatten() {
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
    let mut picker = ErrorPicker::new(max);
    for line in log.lines() {
        picker.push(line);
    }
    picker.finish()
}

/// Picks error lines from a log fed one line at a time (see [`error_lines`]), holding at most
/// `max` of them.
struct ErrorPicker {
    max: usize,
    /// The first `max` lines picked.
    picked: Vec<String>,
    /// How many lines were picked, those past `max` included.
    count: usize,
    /// Hashes of the errors and notes picked, to show each once.
    seen: HashSet<u64>,
    /// Lead-ins wait for the diagnostic they introduce: kept before an error, dropped before a
    /// warning.
    pending: Vec<String>,
    /// Whether context and notes that follow belong to a kept error.
    keeping: bool,
    /// The last scope lead-in shown, so that errors in one function share one `In function` line.
    scope: Option<String>,
    /// An unrecognised line right after a kept error: clang (before version 17) prints the source
    /// line without a `|` gutter, so it counts as context only if a caret line follows it.
    source: Option<String>,
}

impl ErrorPicker {
    fn new(max: usize) -> ErrorPicker {
        ErrorPicker {
            max,
            picked: Vec::new(),
            count: 0,
            seen: HashSet::new(),
            pending: Vec::new(),
            keeping: false,
            scope: None,
            source: None,
        }
    }

    fn pick(&mut self, line: String) {
        if self.picked.len() < self.max {
            self.picked.push(line);
        }
        self.count += 1;
    }

    /// Whether `line` is new (and now remembered); past [`MAX_SEEN`] lines, every line is new.
    fn first_time(&mut self, line: &str) -> bool {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        line.hash(&mut h);
        let h = h.finish();
        if self.seen.contains(&h) {
            return false;
        }
        if self.seen.len() < MAX_SEEN {
            self.seen.insert(h);
        }
        true
    }

    fn push(&mut self, raw: &str) {
        let raw = raw.trim_end();
        let line = if raw.contains('\x1b') {
            patterns().ansi.replace_all(raw, "")
        } else {
            raw.into()
        };
        let line = line.as_ref();
        let kind = classify(line);
        if let Some(held) = self.source.take() {
            if kind == Kind::Context {
                self.pick(held);
            } else {
                self.keeping = false;
            }
        }
        match kind {
            Kind::Error => {
                if !self.first_time(line) {
                    // The same error again (a header included twice, make -j repeating itself).
                    self.pending.clear();
                    self.keeping = false;
                    return;
                }
                for lead in std::mem::take(&mut self.pending) {
                    if is_scope(&lead) {
                        if self.scope.as_deref() == Some(lead.as_str()) {
                            continue;
                        }
                        self.scope = Some(lead.clone());
                    }
                    self.pick(lead);
                }
                self.pick(line.to_string());
                self.keeping = true;
            }
            Kind::Warning => {
                self.pending.clear();
                self.keeping = false;
            }
            Kind::Note => {
                if self.keeping && self.first_time(line) {
                    self.pick(line.to_string());
                }
            }
            Kind::NoiseNote => {}
            Kind::LeadIn => {
                self.keeping = false;
                if self.pending.len() < MAX_PENDING {
                    self.pending.push(line.to_string());
                }
            }
            Kind::Context => {
                if self.keeping {
                    self.pick(line.to_string());
                }
            }
            Kind::Other => {
                self.pending.clear();
                if self.keeping {
                    self.source = Some(line.to_string());
                }
            }
        }
    }

    /// The lines picked, at most `max`; when more were picked, the last says how many more.
    fn finish(mut self) -> Vec<String> {
        if self.count <= self.max {
            return self.picked;
        }
        if self.max == 0 {
            return Vec::new();
        }
        let left_out = self.count - (self.max - 1);
        self.picked.truncate(self.max - 1);
        self.picked
            .push(format!("[{left_out} more error lines in the full log]"));
        self.picked
    }
}

/// The last `max` lines of `log` that say something (not make's entering/leaving directory lines), for
/// a failed build whose log holds no line `error_lines` recognises.
pub fn tail(log: &str, max: usize) -> Vec<String> {
    let mut t = Tail::new(max);
    for line in log.lines() {
        t.push(line);
    }
    t.finish()
}

/// The last lines of a log fed one at a time (see [`tail`]).
struct Tail {
    max: usize,
    lines: VecDeque<String>,
}

impl Tail {
    fn new(max: usize) -> Tail {
        Tail {
            max,
            lines: VecDeque::new(),
        }
    }

    fn push(&mut self, line: &str) {
        let l = line.trim_end();
        if self.max == 0
            || l.is_empty()
            || l.contains(": Entering directory")
            || l.contains(": Leaving directory")
        {
            return;
        }
        if self.lines.len() == self.max {
            self.lines.pop_front();
        }
        self.lines.push_back(l.to_string());
    }

    fn finish(self) -> Vec<String> {
        self.lines.into()
    }
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

    /// Bytes in, lines out: bad UTF-8 shown as U+FFFD, CRLF endings taken off, a last line
    /// without its newline kept, an overlong line cut (across the reader's buffer) and marked.
    #[test]
    fn lines_are_read_as_bytes_shown_lossily_and_cut_when_overlong() {
        let mut log = b"caf\xe9 au lait\r\nplain\n".to_vec();
        log.extend(std::iter::repeat_n(b'x', 100_000));
        log.extend(b"\nlast");
        let got: Vec<String> = lines(&log[..]).collect();
        assert_eq!(got.len(), 4, "{:?}", &got[..2]);
        assert_eq!(got[0], "caf\u{fffd} au lait");
        assert_eq!(got[1], "plain");
        assert_eq!(got[2], format!("{} [line cut]", "x".repeat(MAX_LINE)));
        assert_eq!(got[3], "last");
        assert_eq!(lines(&b""[..]).count(), 0);
        assert_eq!(lines(&b"\n"[..]).collect::<Vec<_>>(), [""]);
    }

    /// A make.log that is not UTF-8 still gives its errors, tail and full-disk line; a Latin-1
    /// source line keeps its place as the error's context.
    #[test]
    fn a_digest_of_a_latin1_log() {
        let log: Vec<u8> = [
            &b"  CC [M]  /b/x.o"[..],
            b"/b/x.c: In function 'f':",
            b"/b/x.c:7:16: error: 'y' undeclared (first use in this function)",
            b"    7 |         return y; /* d\xe9j\xe0 vu */",
            b"      |                ^",
            b"/b/x.c:9:1: fatal error: closing dependency file: No space left on device",
            b"make: *** [Makefile:1: all] Error 2",
        ]
        .iter()
        .flat_map(|l| l.iter().chain(b"\n"))
        .copied()
        .collect();
        let d = digest(&log[..], 40, 2);
        assert_eq!(
            d.errors,
            [
                "/b/x.c: In function 'f':",
                "/b/x.c:7:16: error: 'y' undeclared (first use in this function)",
                "    7 |         return y; /* d\u{fffd}j\u{fffd} vu */",
                "      |                ^",
                "/b/x.c:9:1: fatal error: closing dependency file: No space left on device",
                "make: *** [Makefile:1: all] Error 2",
            ]
        );
        assert_eq!(d.tail.len(), 2);
        assert_eq!(d.tail[1], "make: *** [Makefile:1: all] Error 2");
        assert_eq!(
            d.no_space.as_deref(),
            Some("/b/x.c:9:1: fatal error: closing dependency file: No space left on device")
        );
    }

    /// Past its cap the picker only counts: 100 000 distinct errors give 40 lines, the last
    /// saying how many more there are, as when every line was held.
    #[test]
    fn many_errors_are_counted_not_held() {
        let log: String = (0..100_000)
            .map(|i| format!("/b/x.c:{i}:1: error: 'u{i}' undeclared\n"))
            .collect();
        let got = digest(log.as_bytes(), 40, 15).errors;
        assert_eq!(got.len(), 40);
        assert_eq!(got[0], "/b/x.c:0:1: error: 'u0' undeclared");
        assert_eq!(got[39], "[99961 more error lines in the full log]");
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
