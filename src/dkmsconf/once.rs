//! Which dkms.conf files can be evaluated once for every kernel.
//!
//! Sourcing a dkms.conf per kernel is most of what planning and `status` cost, yet most files
//! are a list of assignments whose values only mention the kernel by name
//! (`MAKE[0]="make -C ${kernel_source_dir} ..."`). Between two kernels, the evaluator changes
//! only `kernelver` and `kernel_source_dir` (`arch`, the trees, the module and its version are the
//! same for every kernel of a file). So a file is evaluated once, with [`KERNELVER`] and
//! [`KERNEL_SOURCE_DIR`] (sentinels that no such file can spell: they hold a control character,
//! which bash gives no meaning to and which its text may not contain) in their place, and each
//! kernel's result is that one with the sentinels replaced by the kernel's values, when that
//! replacement is exact, which [`declarative`] decides from the text alone: the file runs no
//! command and has no conditional, and it only copies and concatenates values. Its every
//! logical line is blank, a comment, or assignments `NAME=WORD`, `NAME+=WORD`, `NAME[N]=WORD`
//! (N digits) and `NAME=(WORD ...)`, where a WORD is literal text, quotes, and plain `$NAME`,
//! `${NAME}` or `${NAME[N]}` expansions (no operator such as `${v%-*}`, no `$(...)`, no
//! backquote, no arithmetic, no unquoted expansion inside `( )`, where bash would split it). Such
//! a file reads nothing but its own variables, and a value built only by concatenation holds
//! the sentinel exactly where it holds the kernel's value. Anything else (a `$kernelver` tested
//! in `if` or `case`, `uname -r`, a `grep` of `$kernel_source_dir/.config`, a `.` of another
//! file, `eval`, a name of the evaluator's own) is evaluated per kernel, as before.

/// What the evaluator sets `kernelver` to for a once-evaluation.
pub(crate) const KERNELVER: &str = "\u{1f}dkms-hook-kernelver\u{1f}";
/// What the evaluator sets `kernel_source_dir` to for a once-evaluation.
pub(crate) const KERNEL_SOURCE_DIR: &str = "\u{1f}dkms-hook-kernel-source-dir\u{1f}";

/// Replaces the sentinels in `value` with one kernel's values.
pub(crate) fn for_kernel(value: &str, kernel: &str, kernel_source_dir: &str) -> String {
    if !value.contains('\u{1f}') {
        return value.to_string();
    }
    value
        .replace(KERNELVER, kernel)
        .replace(KERNEL_SOURCE_DIR, kernel_source_dir)
}

/// Whether `text`, sourced by bash, is a pure list of assignments (see the module comment), so
/// that evaluating it once with the sentinels gives every kernel's result.
pub(crate) fn declarative(text: &[u8]) -> bool {
    Lexer::new(text).file().is_some()
}

/// Whether `text` is [`declarative`] and can moreover be sourced in a subshell that other such
/// files were sourced in before it (after `unset` of the names in `unset`, as the evaluator
/// does): it assigns no name outside `unset`, so none of its values can reach the next file,
/// and no index has more than 18 digits. Such a file cannot print, fail or stop the shell: it
/// runs no command, and its assignments are to names that nothing makes readonly, at indexes
/// that bash cannot wrap to a negative number ("bad array subscript", which ends the shell).
pub(crate) fn shareable(text: &[u8], unset: &str) -> bool {
    let mut lexer = Lexer::new(text);
    lexer.file().is_some()
        && !lexer.long_index
        && lexer.assigned.iter().all(|&(start, end)| {
            let name = &text[start..end];
            unset.split_ascii_whitespace().any(|u| u.as_bytes() == name)
        })
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
    /// Where the name of each assignment is (start, end).
    assigned: Vec<(usize, usize)>,
    /// An index of more digits than an i64 surely holds.
    long_index: bool,
}

/// `None` is "not declarative"; the lexer gives up at the first thing it does not know.
type Ok = Option<()>;

impl<'a> Lexer<'a> {
    fn new(s: &'a [u8]) -> Self {
        Lexer {
            s,
            i: 0,
            assigned: Vec::new(),
            long_index: false,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn at(&self, off: usize) -> Option<u8> {
        self.s.get(self.i + off).copied()
    }

    fn file(&mut self) -> Ok {
        // No byte that could form a sentinel, nor control characters bash might treat apart.
        if self
            .s
            .iter()
            .any(|&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f)
        {
            return None;
        }
        // A `;` ends a command: it needs one before it.
        let mut after_command = false;
        loop {
            self.blanks();
            match self.peek() {
                None => return Some(()),
                Some(b'\n') => {
                    self.i += 1;
                    after_command = false;
                }
                Some(b';') if after_command => {
                    self.i += 1;
                    after_command = false;
                }
                Some(b'#') => self.comment(),
                Some(_) => {
                    self.assignment()?;
                    after_command = true;
                }
            }
        }
    }

    /// Spaces and tabs, and backslash-newline continuations between words.
    fn blanks(&mut self) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t') => self.i += 1,
                Some(b'\\') if self.at(1) == Some(b'\n') => self.i += 2,
                _ => return,
            }
        }
    }

    fn comment(&mut self) {
        while let Some(b) = self.peek() {
            if b == b'\n' {
                return;
            }
            self.i += 1;
        }
    }

    /// `NAME`: a shell identifier, none of the evaluator's own (`_dh_*`).
    fn name(&mut self) -> Ok {
        let start = self.i;
        match self.peek() {
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => self.i += 1,
            _ => return None,
        }
        while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_') {
            self.i += 1;
        }
        if self.s[start..self.i].starts_with(b"_dh_") {
            return None;
        }
        Some(())
    }

    /// `[N]`, N digits only (bash would evaluate anything else as arithmetic).
    fn index(&mut self) -> Ok {
        if self.peek() != Some(b'[') {
            return Some(());
        }
        self.i += 1;
        let start = self.i;
        while matches!(self.peek(), Some(b) if b.is_ascii_digit()) {
            self.i += 1;
        }
        if self.i == start || self.peek() != Some(b']') {
            return None;
        }
        self.long_index |= self.i - start > 18;
        self.i += 1;
        Some(())
    }

    /// One assignment and its value; then a blank, the end of the command, or a comment.
    fn assignment(&mut self) -> Ok {
        let start = self.i;
        self.name()?;
        self.assigned.push((start, self.i));
        self.index()?;
        if self.peek() == Some(b'+') {
            self.i += 1;
        }
        if self.peek() != Some(b'=') {
            return None;
        }
        self.i += 1;
        if self.peek() == Some(b'(') {
            self.i += 1;
            self.list()?;
        } else {
            self.word(false)?;
        }
        match self.peek() {
            None | Some(b' ' | b'\t' | b'\n' | b';') => Some(()),
            Some(b'\\') if self.at(1) == Some(b'\n') => Some(()),
            _ => None,
        }
    }

    /// The words of `NAME=( ... )` up to its `)`: quoted expansions only, since bash splits and
    /// globs unquoted ones there.
    fn list(&mut self) -> Ok {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n') => self.i += 1,
                Some(b'\\') if self.at(1) == Some(b'\n') => self.i += 2,
                Some(b'#') => self.comment(),
                Some(b')') => {
                    self.i += 1;
                    return Some(());
                }
                Some(_) => self.word(true)?,
                None => return None,
            }
        }
    }

    /// One word, up to an unquoted blank, newline, `;` or (in a list) `)`.
    fn word(&mut self, in_list: bool) -> Ok {
        loop {
            match self.peek() {
                None | Some(b' ' | b'\t' | b'\n' | b';') => return Some(()),
                Some(b')') if in_list => return Some(()),
                Some(b'\\') => match self.at(1) {
                    Some(b'\n') => return Some(()),
                    Some(_) => self.i += 2,
                    None => return None,
                },
                Some(b'\'') => {
                    self.i += 1;
                    loop {
                        match self.peek() {
                            None => return None,
                            Some(b'\'') => break,
                            Some(_) => self.i += 1,
                        }
                    }
                    self.i += 1;
                }
                Some(b'"') => {
                    self.i += 1;
                    self.double_quoted()?;
                }
                Some(b'$') if !in_list => self.expansion()?,
                // Outside quotes: what could start a command, a redirection, a subshell, an
                // expansion of another kind, a glob or a brace expansion in a list.
                Some(b'$' | b'`' | b'(' | b')' | b'<' | b'>' | b'|' | b'&' | b'{' | b'}') => {
                    return None
                }
                Some(b'*' | b'?' | b'[' | b'~' | b'!' | b'=') if in_list => return None,
                Some(b'~') => return None,
                Some(_) => self.i += 1,
            }
        }
    }

    /// Inside `"..."`, after the opening quote, up to and past the closing one.
    fn double_quoted(&mut self) -> Ok {
        loop {
            match self.peek() {
                None | Some(b'`') => return None,
                Some(b'"') => {
                    self.i += 1;
                    return Some(());
                }
                Some(b'\\') => {
                    self.at(1)?;
                    self.i += 2;
                }
                // `"...$"`: a `$` that ends the quotes is itself.
                Some(b'$') if self.at(1) == Some(b'"') => self.i += 1,
                Some(b'$') => self.expansion()?,
                Some(_) => self.i += 1,
            }
        }
    }

    /// `$NAME`, `${NAME}` or `${NAME[N]}`, nothing else.
    fn expansion(&mut self) -> Ok {
        self.i += 1;
        if self.peek() == Some(b'{') {
            self.i += 1;
            self.name()?;
            self.index()?;
            if self.peek() != Some(b'}') {
                return None;
            }
            self.i += 1;
            return Some(());
        }
        self.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_that_assign_the_unset_names_at_short_indexes_share_a_subshell() {
        let unset = "PACKAGE_NAME MAKE BUILT_MODULE_NAME";
        for text in [
            "PACKAGE_NAME=foo\nMAKE[0]=\"make -C ${kernel_source_dir} $HOME\"\n",
            "BUILT_MODULE_NAME[999999999999999999]=x\n",
            "",
        ] {
            assert!(shareable(text.as_bytes(), unset), "{text:?}");
        }
        for text in [
            "PACKAGE_NAME=foo\nHELPER=x\n",
            "IFS=x\n",
            "kernelver=6.1\n",
            // 2^64 - 1: bash wraps it to -1, "bad array subscript", and its shell ends.
            "BUILT_MODULE_NAME[18446744073709551615]=x\n",
            "MAKE=${BUILT_MODULE_NAME[18446744073709551615]}\n",
            "PACKAGE_NAME=$(uname -r)\n",
        ] {
            assert!(!shareable(text.as_bytes(), unset), "{text:?}");
        }
    }

    #[test]
    fn assignments_with_plain_expansions_are_declarative() {
        for text in [
            "",
            "# only a comment\n",
            "PACKAGE_NAME=\"foo\"\nPACKAGE_VERSION=1.0 # trailing\n",
            "MAKE[0]=\"make -C ${kernel_source_dir} M=${dkms_tree}/${PACKAGE_NAME}/build\"\n",
            "MAKE=\"KERNELDIR=/lib/modules/${kernelver}/build make\"\n",
            "BUILT_MODULE_NAME[1]=\"${BUILT_MODULE_NAME[0]}\"; A=1 B='x y'\n",
            "BUILD_DEPENDS=(\"a\" 'b' c \"$kernelver\")\nX+=more\n",
            "PACKAGE_NAME=\"foo\"\r\nPACKAGE_VERSION=1.0\r\n",
            "MAKE=\"make \\\n  KVER=$kernelver\"\n",
            "A=x\\ y\n",
            "A=\"^${K}$\"\n",
        ] {
            assert!(declarative(text.as_bytes()), "{text:?}");
        }
    }

    #[test]
    fn anything_that_runs_tests_or_transforms_is_not() {
        for text in [
            "if [[ $kernelver == 6.2* ]]; then A=1; fi\n",
            "case $kernelver in 6.*) A=1;; esac\n",
            "A=$(uname -r)\n",
            "A=`uname -r`\n",
            "uname -r\n",
            "A=${kernelver%%-*}\n",
            "A=${#kernelver}\n",
            "A=$((1+2))\n",
            "A[$i]=x\n",
            "A[i]=x\n",
            "A=(${kernelver})\n",
            "A=($kernelver)\n",
            "A=(*)\n",
            ". $kernel_source_dir/.config\n",
            "eval A=x\n",
            "A=1 echo\n",
            "A=1 && B=2\n",
            "A=1 | cat\n",
            "A=x >file\n",
            "A=~/x\n",
            "_dh_emit=x\n",
            "A=$_dh_ctx\n",
            "A=${!B}\n",
            "A=$1\n",
            "A=$@\n",
            "A=$'x'\n",
            "A=\"unterminated\n",
            "A='unterminated\n",
            "A=\"x\u{1}\"\n",
            "A=\"x\u{1f}\"\n",
            "; A=1\n",
            "\r\n",
            "declare -n A=kernelver\n",
            "A=(a\n",
            "A=x;;\n",
            "A=x{a,b}\n",
        ] {
            assert!(!declarative(text.as_bytes()), "{text:?}");
        }
    }

    #[test]
    fn sentinels_are_replaced_by_one_kernels_values() {
        let v = format!("make -C {KERNEL_SOURCE_DIR} KVER={KERNELVER} {KERNELVER}");
        assert_eq!(
            for_kernel(&v, "6.1.0-1", "/k/build"),
            "make -C /k/build KVER=6.1.0-1 6.1.0-1"
        );
        assert_eq!(for_kernel("plain", "k", "d"), "plain");
    }
}
