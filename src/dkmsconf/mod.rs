//! dkms.conf, evaluated the way dkms evaluates it: sourced by bash, per kernel.
//!
//! dkms.conf is a bash script, and real ones contain logic (Debian's v4l2loopback reads the kernel's
//! .config to decide what to build), so it is never parsed with a regex. Each file is first checked
//! for syntax without running any of it (a syntax error fails that module alone, with bash's own
//! message naming the file and line), then sourced once per kernel in a subshell with the variables
//! dkms sets (`kernelver`, `arch`, `kernel_source_dir`, `dkms_tree`, `source_tree`, `install_tree`).
//! The directives come back NUL-separated on a private file descriptor that the sourced files never
//! see, so whatever a script prints or writes cannot be mistaken for them. One bash process serves a
//! whole batch of files, so planning a hundred modules for six kernels costs a few hundred subshell
//! forks, not six hundred bash start-ups. A file whose result cannot depend on the kernel (only
//! assignments, see [`once`]) is sourced once for all kernels, with sentinels in place of the
//! kernel's values that each kernel's result then replaces; such files that assign nothing but
//! directives are sourced one after another in one subshell, since none can leave anything for
//! the next (see [`once::shareable`]). Planning evaluates older versions' files with logic for
//! one kernel only ([`evaluate_first`], [`complete`]). The evaluator itself is
//! `dkmsconf.sh`, shared with [`crate::status`].

pub mod eval;
pub mod exclusive;
pub(crate) mod once;
pub mod rules;

use crate::dkmsconf::eval::{run_units, Emitter, Record, Unit, UNIT_LIMIT};
use crate::dkmsconf::rules::{to_conf, ConfError, DkmsConf, Problem, DIRECTIVES};
use crate::system::trees::Trees;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// A kernel to evaluate a dkms.conf for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub kernel: String,
    /// What dkms sets `kernel_source_dir` to: the kernel's headers.
    pub kernel_source_dir: PathBuf,
}

/// One dkms.conf evaluated for every context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluated {
    pub path: PathBuf,
    /// kernel -> directives. Empty when the file did not pass the syntax check.
    pub per_kernel: BTreeMap<String, Result<DkmsConf, ConfError>>,
    /// A failure common to every kernel (syntax error, bash not runnable).
    pub error: Option<ConfError>,
}

impl Evaluated {
    /// Name and version: from the first kernel that evaluates cleanly.
    pub fn identity(&self) -> Result<(&str, &str), ConfError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut first_err = None;
        for r in self.per_kernel.values() {
            match r {
                Ok(c) => return Ok((&c.name, &c.version)),
                Err(e) => {
                    first_err.get_or_insert_with(|| e.clone());
                }
            }
        }
        Err(first_err.unwrap_or_else(|| {
            self.error_for(Problem::Missing {
                directive: "PACKAGE_NAME",
            })
        }))
    }

    /// What this file gives for `kernel`: its directives, or why there are none (the file's own
    /// error first, then the kernel's; a kernel it was never evaluated for is an error too).
    pub fn result_for(&self, kernel: &str) -> Result<&DkmsConf, ConfError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.per_kernel.get(kernel) {
            Some(Ok(c)) => Ok(c),
            Some(Err(e)) => Err(e.clone()),
            None => Err(self.error_for(Problem::Bash {
                message: format!("it was not evaluated for kernel {kernel}"),
            })),
        }
    }

    /// Whether dkms would build this module by itself for a new kernel, as far as one can tell: a
    /// file that sets AUTOINSTALL for some kernel, or one that cannot be read at all (it might, and
    /// leaving it out without a word would let a kernel boot without it).
    pub fn autoinstall_candidate(&self) -> bool {
        let mut ok = self.per_kernel.values().flatten().peekable();
        if ok.peek().is_none() {
            return true;
        }
        ok.any(|c| c.autoinstall)
    }

    fn error_for(&self, problem: Problem) -> ConfError {
        ConfError {
            path: self.path.clone(),
            problem,
        }
    }
}

/// Whether a file whose result cannot depend on the kernel is sourced once for every kernel
/// (see [`once`]), or every file once per kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Once {
    Allowed,
    /// Only the tests compare with it.
    #[cfg_attr(not(test), allow(dead_code))]
    Never,
}

/// Evaluates every dkms.conf in `confs` for every context, in parallel batches.
pub fn evaluate(
    confs: &[PathBuf],
    contexts: &[Context],
    trees: &Trees,
    arch: &str,
) -> Vec<Evaluated> {
    let scope = Scope {
        once: contexts,
        logic: contexts,
        check: true,
    };
    evaluate_scoped(confs, scope, trees, arch, Once::Allowed).0
}

/// [`evaluate`], except that a file with logic (one that cannot be sourced once for every
/// kernel) is sourced for one kernel only: the one whose result [`Evaluated::identity`] reads
/// first. That gives every file's name and version at a sixth of the cost on six kernels;
/// [`complete`] then evaluates the other kernels for the files that are used there.
pub fn evaluate_first(
    confs: &[PathBuf],
    contexts: &[Context],
    trees: &Trees,
    arch: &str,
) -> Vec<Evaluated> {
    let first = contexts.iter().min_by(|a, b| a.kernel.cmp(&b.kernel));
    let scope = Scope {
        once: contexts,
        logic: first.map(std::slice::from_ref).unwrap_or_default(),
        check: true,
    };
    evaluate_scoped(confs, scope, trees, arch, Once::Allowed).0
}

/// Evaluates `evaluated[i]`, for each `i` in `which`, for the contexts it was not evaluated for
/// yet (see [`evaluate_first`]): afterwards it is what [`evaluate`] would have made. A file
/// that failed as a whole (its syntax) stays as it is.
pub fn complete(
    evaluated: &mut [Evaluated],
    which: &[usize],
    contexts: &[Context],
    trees: &Trees,
    arch: &str,
) {
    // Files missing the same kernels are evaluated together (after evaluate_first, all of them).
    let mut groups: BTreeMap<Vec<usize>, Vec<usize>> = BTreeMap::new();
    for &i in which {
        let Some(e) = evaluated.get(i).filter(|e| e.error.is_none()) else {
            continue;
        };
        let missing: Vec<usize> = (0..contexts.len())
            .filter(|&c| !e.per_kernel.contains_key(&contexts[c].kernel))
            .collect();
        if !missing.is_empty() {
            groups.entry(missing).or_default().push(i);
        }
    }
    for (missing, files) in groups {
        let missing: Vec<Context> = missing.iter().map(|&c| contexts[c].clone()).collect();
        let confs: Vec<PathBuf> = files.iter().map(|&i| evaluated[i].path.clone()).collect();
        let scope = Scope {
            once: &missing,
            logic: &missing,
            check: false, // checked when first evaluated
        };
        let (more, _) = evaluate_scoped(&confs, scope, trees, arch, Once::Allowed);
        for (i, m) in files.into_iter().zip(more) {
            let e = &mut evaluated[i];
            e.per_kernel.extend(m.per_kernel);
            e.error = e.error.take().or(m.error);
        }
    }
}

/// Which kernels a file is sourced for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    /// A file whose result cannot depend on the kernel: sourced once, for all of these.
    pub once: &'a [Context],
    /// A file with logic: sourced for each of these...
    pub logic: &'a [Context],
    /// ... after its syntax check, unless an earlier evaluation of the same file made it.
    pub check: bool,
}

/// [`evaluate`], and how many times a file was sourced (for the tests that prove the
/// once-evaluation is used, and exact).
#[cfg(test)]
pub(crate) fn evaluate_counted(
    confs: &[PathBuf],
    contexts: &[Context],
    trees: &Trees,
    arch: &str,
    once: Once,
) -> (Vec<Evaluated>, usize) {
    let scope = Scope {
        once: contexts,
        logic: contexts,
        check: true,
    };
    evaluate_scoped(confs, scope, trees, arch, once)
}

fn evaluate_scoped(
    confs: &[PathBuf],
    scope: Scope,
    trees: &Trees,
    arch: &str,
    once: Once,
) -> (Vec<Evaluated>, usize) {
    if confs.is_empty() {
        return (Vec::new(), 0);
    }
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(confs.len());
    let chunk = confs.len().div_ceil(workers);
    let batches: Vec<(Vec<Evaluated>, usize)> = confs
        .par_chunks(chunk)
        .map(|batch| evaluate_batch(batch, scope, trees, arch, once))
        .collect();
    let sourced = batches.iter().map(|b| b.1).sum();
    (batches.into_iter().flat_map(|b| b.0).collect(), sourced)
}

fn evaluate_batch(
    confs: &[PathBuf],
    scope: Scope,
    trees: &Trees,
    arch: &str,
    once: Once,
) -> (Vec<Evaluated>, usize) {
    // Each kernel's kernel_source_dir as text, to put in place of the sentinel; a path that is
    // not UTF-8 (the records are read as text) keeps every file per kernel.
    let contexts = scope.once;
    let ksds: Option<Vec<&str>> = contexts
        .iter()
        .map(|c| c.kernel_source_dir.to_str())
        .collect();
    let mut units = Vec::new();
    // Files sourced once that can share a subshell (see `once::shareable`).
    let mut group = Vec::new();
    for (id, file) in confs.iter().enumerate() {
        let text = fs::read(file).ok();
        let read_once = once == Once::Allowed
            && contexts.len() > 1
            && ksds.is_some()
            && text.as_deref().is_some_and(once::declarative);
        if read_once {
            // A declarative file parses (its lexer accepts nothing bash would refuse): no
            // syntax check, which costs a subshell.
            let shared = text
                .as_deref()
                .is_some_and(|t| once::shareable(t, DIRECTIVES));
            let to = if shared { &mut group } else { &mut units };
            to.push(Unit::Source {
                id,
                kernel: once::KERNELVER,
                arch,
                kernel_source_dir: Path::new(once::KERNEL_SOURCE_DIR),
                module: "",
                version: "",
                files: vec![file.clone()],
            });
            continue;
        }
        if scope.check {
            units.push(Unit::Check { id, file });
        }
        for c in scope.logic {
            units.push(Unit::Source {
                id,
                kernel: &c.kernel,
                arch,
                kernel_source_dir: &c.kernel_source_dir,
                module: "",
                version: "",
                files: vec![file.clone()],
            });
        }
    }
    let sourced = units
        .iter()
        .filter(|u| matches!(u, Unit::Source { .. }))
        .count()
        + group.len();
    if !group.is_empty() {
        units.push(Unit::Group(group));
    }
    let emitter = Emitter {
        prelude: "",
        function: "_dh_emit_directives",
        unset: DIRECTIVES,
        env: Vec::new(),
    };
    let mut out: Vec<Evaluated> = confs
        .iter()
        .map(|p| Evaluated {
            path: p.clone(),
            per_kernel: BTreeMap::new(),
            error: None,
        })
        .collect();
    let records = match run_units(&emitter, trees, &units) {
        Ok(r) => r,
        Err(message) => {
            for e in &mut out {
                e.error = Some(e.error_for(Problem::Bash {
                    message: message.clone(),
                }));
            }
            return (out, sourced);
        }
    };
    for r in records {
        match r {
            Record::Check { id, message } if !message.is_empty() => {
                if let Some(e) = out.get_mut(id) {
                    let message = clean_bash_message(&message, &e.path);
                    e.error = Some(e.error_for(Problem::Syntax { message }));
                }
            }
            Record::Check { .. } => {}
            Record::Ended {
                id,
                mut kernel,
                why,
            } => {
                if let Some(e) = out.get_mut(id) {
                    if kernel == once::KERNELVER {
                        kernel = contexts
                            .first()
                            .map(|c| c.kernel.clone())
                            .unwrap_or_default();
                    }
                    e.error = Some(e.error_for(Problem::EndedShell { kernel, why }));
                }
            }
            Record::TimedOut { id, mut kernel } => {
                if let Some(e) = out.get_mut(id) {
                    if kernel == once::KERNELVER {
                        kernel = contexts
                            .first()
                            .map(|c| c.kernel.clone())
                            .unwrap_or_default();
                    }
                    e.error = Some(e.error_for(Problem::TimedOut {
                        kernel,
                        seconds: UNIT_LIMIT.as_secs(),
                    }));
                }
            }
            Record::Source {
                id,
                kernel,
                fields,
                done,
                output,
            } => {
                let Some(e) = out.get_mut(id) else { continue };
                if kernel != once::KERNELVER {
                    let r = directives(e, &kernel, &fields, done, output);
                    e.per_kernel.insert(kernel, r);
                    continue;
                }
                // Sourced once: each kernel's values where the sentinels stand.
                for (c, ksd) in contexts.iter().zip(ksds.iter().flatten()) {
                    let fields: Vec<String> = fields
                        .iter()
                        .map(|f| once::for_kernel(f, &c.kernel, ksd))
                        .collect();
                    let output = once::for_kernel(&output, &c.kernel, ksd);
                    let r = directives(e, &c.kernel, &fields, done, output);
                    e.per_kernel.insert(c.kernel.clone(), r);
                }
            }
        }
    }
    (out, sourced)
}

/// What one kernel's record of `e` says: its directives, or why there are none.
fn directives(
    e: &Evaluated,
    kernel: &str,
    fields: &[String],
    done: bool,
    output: String,
) -> Result<DkmsConf, ConfError> {
    if !done {
        return Err(e.error_for(Problem::Aborted { output }));
    }
    to_conf(fields, kernel)
        .map(|mut c| {
            c.refuse_absent_patches(&e.path);
            c
        })
        .map_err(|p| e.error_for(p))
}

/// bash says `path: line 3: syntax error ...`; keep that, drop duplicated path prefixes.
fn clean_bash_message(msg: &str, path: &Path) -> String {
    let prefix = format!("{}: ", path.display());
    msg.lines()
        .map(|l| l.strip_prefix(&prefix).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkmsconf::eval::parse_records;
    use crate::dkmsconf::rules::{Refusal, MAX_MODULES};

    fn eval(conf: &str, kernels: &[&str]) -> Evaluated {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("dkms.conf");
        fs::write(&p, conf).unwrap();
        let trees = Trees::defaults(d.path());
        let ctx: Vec<Context> = kernels
            .iter()
            .map(|k| Context {
                kernel: k.to_string(),
                kernel_source_dir: d.path().join(k),
            })
            .collect();
        for k in kernels {
            fs::create_dir_all(d.path().join(k)).unwrap();
            fs::write(
                d.path().join(k).join(".config"),
                format!("CONFIG_K=\"{k}\"\n"),
            )
            .unwrap();
        }
        evaluate(&[p], &ctx, &trees, "x86_64").remove(0)
    }

    #[test]
    fn evaluates_per_kernel_with_dkms_variables() {
        let e = eval(
            r#"
PACKAGE_NAME="foo-bar"
PACKAGE_VERSION="1.2-rc3-7"
echo "this goes to the output, not to the directives"
echo "and so does this" >&2
. "$kernel_source_dir/.config"
if [[ $CONFIG_K == 6.2* ]]; then BUILD_EXCLUSIVE_KERNEL="^never$"; fi
BUILD_DEPENDS=("zfs-utils" "spl")
BUILT_MODULE_NAME[0]="$PACKAGE_NAME"
BUILT_MODULE_NAME[1]="second"
DEST_MODULE_NAME[1]="renamed"
BUILD_EXCLUSIVE_CONFIG="CONFIG_A !CONFIG_B"
AUTOINSTALL=yes
MAKE="make KVER=$kernelver ARCH=$arch"
"#,
            &["6.1.0", "6.2.0"],
        );
        assert_eq!(e.identity().unwrap(), ("foo-bar", "1.2-rc3-7"));
        let a = e.result_for("6.1.0").unwrap();
        let b = e.result_for("6.2.0").unwrap();
        assert_eq!(a.exclusive.kernel, None);
        assert_eq!(b.exclusive.kernel.as_deref(), Some("^never$"));
        assert_eq!(a.build_depends, ["zfs-utils", "spl"]);
        assert_eq!(a.built_modules, ["foo-bar", "second"]);
        assert_eq!(a.dest_names, ["", "renamed"]);
        assert_eq!(a.exclusive.config, ["CONFIG_A", "!CONFIG_B"]);
        assert!(a.autoinstall);
    }

    #[test]
    fn autoinstall_no_is_unset_as_dkms_3_4_reads_it() {
        for (value, want) in [
            ("yes", true),
            ("YES", true),
            ("no", false),
            ("No", false),
            ("", false),
        ] {
            let e = eval(
                &format!("PACKAGE_NAME=a\nPACKAGE_VERSION=1\nAUTOINSTALL={value}\n"),
                &["6.1.0"],
            );
            assert_eq!(
                e.result_for("6.1.0").unwrap().autoinstall,
                want,
                "AUTOINSTALL={value}"
            );
        }
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let e = eval(
            "PACKAGE_NAME=x\nif true; then\n  PACKAGE_VERSION=1\n",
            &["6.1.0"],
        );
        let err = e.identity().unwrap_err().to_string();
        assert!(err.contains("dkms.conf"), "{err}");
        assert!(err.contains("line"), "{err}");
        let detail = e.identity().unwrap_err().problem.to_string();
        assert!(
            detail.starts_with("line "),
            "the path is said once: {detail}"
        );
        assert!(err.contains("syntax error"), "{err}");
        assert!(e.per_kernel.is_empty());
    }

    #[test]
    fn the_fast_syntax_check_never_rejects_what_bash_accepts() {
        // A comment on the last line without a newline, braces in strings, functions, and a
        // here-document ended by the end of the file (bash -n only warns about that one).
        let cases = [
            "PACKAGE_NAME=a\nPACKAGE_VERSION=1 # last line, no newline",
            "PACKAGE_NAME=\"}\"\nPACKAGE_VERSION='{1'\nf() { :; }\n",
            "PACKAGE_NAME=a\nPACKAGE_VERSION=1\ncat <<EOF\nnever closed\n",
        ];
        for c in cases {
            let e = eval(c, &["6.1.0"]);
            assert!(e.error.is_none(), "{c:?}: {:?}", e.error);
            assert!(e.identity().is_ok(), "{c:?}");
        }
    }

    #[test]
    fn missing_version_and_exit_are_errors() {
        let e = eval("PACKAGE_NAME=x\n", &["6.1.0"]);
        assert!(matches!(
            e.identity().unwrap_err().problem,
            Problem::Missing {
                directive: "PACKAGE_VERSION"
            }
        ));
        let e = eval(
            "PACKAGE_NAME=x\nPACKAGE_VERSION=1\necho bye; exit 3\n",
            &["6.1.0"],
        );
        let err = e.identity().unwrap_err().to_string();
        assert!(
            err.contains("stopped early") && err.contains("bye"),
            "{err}"
        );
    }

    #[test]
    fn many_files_in_batches_keep_their_own_results() {
        let d = tempfile::tempdir().unwrap();
        let mut confs = Vec::new();
        for i in 0..9 {
            let p = d.path().join(format!("m{i}.conf"));
            let body = if i == 4 {
                "PACKAGE_NAME=m4\nPACKAGE_VERSION=\"unterminated\n".to_string()
            } else {
                format!("PACKAGE_NAME=m{i}\nPACKAGE_VERSION={i}.0\n")
            };
            fs::write(&p, body).unwrap();
            confs.push(p);
        }
        let ctx = [Context {
            kernel: "6.1.0".into(),
            kernel_source_dir: d.path().into(),
        }];
        let r = evaluate(&confs, &ctx, &Trees::defaults(d.path()), "x86_64");
        assert_eq!(r.len(), 9);
        for (i, e) in r.iter().enumerate() {
            assert_eq!(e.path, confs[i]);
            if i == 4 {
                assert!(e.identity().is_err());
            } else {
                assert_eq!(
                    e.identity().unwrap(),
                    (&*format!("m{i}"), &*format!("{i}.0"))
                );
            }
        }
    }

    /// Defect: the syntax check parsed the text as a function body, so a file closing that body
    /// early (`}`) ran what followed in the evaluator's own shell, before any syntax error.
    #[test]
    fn the_syntax_check_runs_nothing() {
        let d = tempfile::tempdir().unwrap();
        let mark = d.path().join("ran");
        let conf = format!("}}\ntouch {}\n{{ :\n", mark.display());
        let e = eval(&conf, &["6.1.0"]);
        assert!(!mark.exists(), "the check ran the file's code");
        let err = e.identity().unwrap_err();
        assert!(
            matches!(err.problem, Problem::Syntax { .. }),
            "a file that does not parse is a syntax error: {err}"
        );
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(
            e.per_kernel.is_empty(),
            "a file that does not parse is never sourced"
        );
    }

    /// Defect (a new user's trial): a dkms.conf that killed the shell reading it (`kill $$`)
    /// failed every file of its batch, innocent ones too, with "cannot run bash: " and no
    /// reason. Now it fails alone, saying what it did; the others are read in a new shell.
    #[test]
    fn a_file_that_kills_the_shell_reading_it_fails_alone() {
        for kill in ["kill $$", "kill -9 $$", "kill -INT $$"] {
            let d = tempfile::tempdir().unwrap();
            let mut confs = Vec::new();
            for i in 0..4 {
                let p = d.path().join(format!("m{i}.conf"));
                let extra = if i == 1 {
                    format!("[[ $kernelver == 6.2.0 ]] && {kill}\n")
                } else {
                    String::new()
                };
                fs::write(
                    &p,
                    format!(
                        "PACKAGE_NAME=m{i}\nPACKAGE_VERSION={i}.0\n{extra}[[ -n $kernelver ]]\n"
                    ),
                )
                .unwrap();
                confs.push(p);
            }
            let ctx: Vec<Context> = ["6.1.0", "6.2.0"]
                .iter()
                .map(|k| Context {
                    kernel: k.to_string(),
                    kernel_source_dir: d.path().into(),
                })
                .collect();
            let scope = Scope {
                once: &ctx,
                logic: &ctx,
                check: true,
            };
            let trees = Trees::defaults(d.path());
            let (r, _) = evaluate_batch(&confs, scope, &trees, "x86_64", Once::Allowed);
            for (i, e) in r.iter().enumerate() {
                if i == 1 {
                    let err = e.result_for("6.1.0").unwrap_err().to_string();
                    assert!(
                        err.contains(
                            "sourcing it for 6.2.0 ended the shell that read it (killed by "
                        ),
                        "{kill}: {err}"
                    );
                    continue;
                }
                for k in ["6.1.0", "6.2.0"] {
                    let c = e
                        .result_for(k)
                        .unwrap_or_else(|e| panic!("{kill}: m{i} {k}: {e}"));
                    assert_eq!(c.name, format!("m{i}"));
                }
            }
        }
    }

    /// Defect (a new user's trial): a dkms.conf that sets IFS (`IFS=x`, `IFS=`) was "no
    /// PACKAGE_NAME directive": the emitter split its list of names on the file's IFS.
    #[test]
    fn a_file_that_sets_ifs_gives_its_directives_all_the_same() {
        for ifs in ["IFS=x", "IFS=", "IFS=_"] {
            let e = eval(
                &format!(
                    "PACKAGE_NAME=foo\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]=foo_bar\n{ifs}\n"
                ),
                &["6.1.0", "6.2.0"],
            );
            let c = e
                .result_for("6.2.0")
                .unwrap_or_else(|e| panic!("{ifs}: {e}"));
            assert_eq!((c.name.as_str(), c.version.as_str()), ("foo", "1.0"));
            assert_eq!(c.built_modules, ["foo_bar"], "{ifs}");
        }
    }

    /// Issue 18: files that only assign directives are sourced one after another in one subshell
    /// (`once::shareable`): none sees what another set, whatever it sets, appends or leaves out,
    /// and each gives what it gives in a subshell of its own, for every kernel.
    #[test]
    fn files_sourced_in_one_subshell_see_nothing_of_each_other() {
        let d = tempfile::tempdir().unwrap();
        let bodies = [
            "PACKAGE_NAME=a\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[3]=leak\nMAKE=\"make -C $kernel_source_dir\"\n\
             BUILD_DEPENDS=(x y)\nAUTOINSTALL=yes\nBUILD_EXCLUSIVE_KERNEL=\"^$kernelver\"\n",
            "PACKAGE_NAME=b\nPACKAGE_VERSION=2\nMAKE+=\" more\"\nBUILD_DEPENDS+=(z)\n\
             BUILT_MODULE_NAME[0]=\"${BUILT_MODULE_NAME[3]}b\"\nDEST_MODULE_LOCATION[0]=\"$AUTOINSTALL\"\n",
            "PACKAGE_NAME=c\nPACKAGE_VERSION=3\nHELPER=$PACKAGE_NAME\nBUILT_MODULE_NAME[0]=$HELPER\n",
            "PACKAGE_NAME=d\nPACKAGE_VERSION=4\nBUILT_MODULE_NAME[0]=\"$HELPER$MAKE\"\n",
        ];
        let mut confs = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            let p = d.path().join(format!("m{i}.conf"));
            fs::write(&p, body).unwrap();
            confs.push(p);
        }
        // Which ones may share a subshell: c assigns a name of its own.
        let texts: Vec<Vec<u8>> = confs.iter().map(|p| fs::read(p).unwrap()).collect();
        let shared: Vec<bool> = texts
            .iter()
            .map(|t| once::shareable(t, DIRECTIVES))
            .collect();
        assert_eq!(shared, [true, true, false, true]);
        let ctx: Vec<Context> = ["6.1.0", "6.2.0"]
            .iter()
            .map(|k| Context {
                kernel: k.to_string(),
                kernel_source_dir: d.path().join(k),
            })
            .collect();
        let scope = Scope {
            once: &ctx,
            logic: &ctx,
            check: true,
        };
        let trees = Trees::defaults(d.path());
        // One batch, one bash: the shared files in one subshell.
        let (together, _) = evaluate_batch(&confs, scope, &trees, "x86_64", Once::Allowed);
        let (apart, _) = evaluate_batch(&confs, scope, &trees, "x86_64", Once::Never);
        assert_eq!(together, apart);
        let b = together[1].result_for("6.2.0").unwrap();
        assert!(b.make[0].ends_with(" more") && !b.make[0].contains("make -C"));
        assert_eq!(b.build_depends, ["z"]);
        assert_eq!(b.built_modules, ["b"]);
        let dd = together[3].result_for("6.1.0").unwrap();
        assert_eq!(dd.built_modules, ["d"], "{dd:?}");
    }

    /// Defect: a dkms.conf writing to the evaluator's private descriptor corrupted the records of
    /// every file after it in the batch ("no PACKAGE_NAME" for innocent files).
    #[test]
    fn a_file_cannot_write_into_the_record_stream() {
        let d = tempfile::tempdir().unwrap();
        let mut confs = Vec::new();
        for i in 0..4 {
            let p = d.path().join(format!("m{i}.conf"));
            let body = if i == 1 {
                "PACKAGE_NAME=m1\nPACKAGE_VERSION=1\nprintf '@kernel\\0x\\0PACKAGE_NAME\\0' >&3\n\
                 printf '@source\\0000\\0=PACKAGE_NAME\\0=0\\0=evil\\0' >&3\nexec 3>&1\necho junk >&3\n"
                    .to_string()
            } else {
                format!("PACKAGE_NAME=m{i}\nPACKAGE_VERSION={i}.0\n")
            };
            fs::write(&p, body).unwrap();
            confs.push(p);
        }
        let ctx = [
            Context {
                kernel: "6.1.0".into(),
                kernel_source_dir: d.path().into(),
            },
            Context {
                kernel: "6.2.0".into(),
                kernel_source_dir: d.path().into(),
            },
        ];
        // One batch: the hostile file is followed by innocent ones in the same bash.
        let scope = Scope {
            once: &ctx,
            logic: &ctx,
            check: true,
        };
        let (r, _) = evaluate_batch(
            &confs,
            scope,
            &Trees::defaults(d.path()),
            "x86_64",
            Once::Allowed,
        );
        for (i, e) in r.iter().enumerate() {
            let want = if i == 1 {
                ("m1".to_string(), "1".to_string())
            } else {
                (format!("m{i}"), format!("{i}.0"))
            };
            for k in ["6.1.0", "6.2.0"] {
                let c = e.result_for(k).unwrap();
                assert_eq!((c.name.clone(), c.version.clone()), want, "{k}: {e:?}");
            }
        }
    }

    #[test]
    fn a_value_that_looks_like_a_record_is_only_a_value() {
        let e = eval(
            "PACKAGE_NAME=@done\nPACKAGE_VERSION=@output\nBUILD_DEPENDS=(@source @check)\n",
            &["6.1.0"],
        );
        let c = e.result_for("6.1.0").unwrap();
        assert_eq!((c.name.as_str(), c.version.as_str()), ("@done", "@output"));
        assert_eq!(c.build_depends, ["@source", "@check"]);
    }

    #[test]
    fn unreadable_or_empty_files_are_candidates_that_fail() {
        let e = eval("", &["6.1.0"]);
        assert!(e.autoinstall_candidate());
        assert!(e.result_for("6.1.0").is_err());
        let e = eval("PACKAGE_NAME=x\nPACKAGE_VERSION=1\nexit 3\n", &["6.1.0"]);
        assert!(e.autoinstall_candidate());
        let e = eval("PACKAGE_NAME=x\nPACKAGE_VERSION=1\n", &["6.1.0"]);
        assert!(!e.autoinstall_candidate(), "it evaluates and does not ask");
    }

    /// One dkms.conf with a patches/ directory beside it, evaluated for `kernel`.
    fn eval_in_dir(conf: &str, patches: &[&str], kernel: &str) -> DkmsConf {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("dkms.conf");
        fs::write(&p, conf).unwrap();
        for patch in patches {
            let f = d.path().join("patches").join(patch);
            fs::create_dir_all(f.parent().unwrap()).unwrap();
            fs::write(f, "").unwrap();
        }
        let ctx = [Context {
            kernel: kernel.into(),
            kernel_source_dir: d.path().into(),
        }];
        let e = evaluate(&[p], &ctx, &Trees::defaults(d.path()), "x86_64").remove(0);
        e.result_for(kernel).unwrap().clone()
    }

    fn one(conf: &str) -> DkmsConf {
        eval_in_dir(conf, &[], "6.1.0")
    }

    const HEAD: &str = "PACKAGE_NAME=foo\nPACKAGE_VERSION=1.0\n";

    /// Defect: a CRLF dkms.conf put `\r` into every value (PACKAGE_NAME "foo\r"), so the module
    /// was refused for living in a directory that its name does not give.
    #[test]
    fn crlf_line_endings_read_as_dkms_3_4_reads_them() {
        let c = one(
            "PACKAGE_NAME=\"foo\"\r\nPACKAGE_VERSION=1.0\r\nBUILT_MODULE_NAME[0]=\"foo\"\r\n\
             DEST_MODULE_LOCATION[0]=\"/updates/dkms\"\r\nAUTOINSTALL=\"yes\"\r\n\
             BUILD_DEPENDS=\"bar\"\r\n",
        );
        assert_eq!((c.name.as_str(), c.version.as_str()), ("foo", "1.0"));
        assert_eq!(c.built_modules, ["foo"]);
        assert_eq!(c.dest_locations, ["/updates/dkms"]);
        assert_eq!(c.build_depends, ["bar"]);
        assert!(c.autoinstall);
        assert_eq!(c.refusals, []);
    }

    #[test]
    fn duplicate_built_or_dest_names_are_refused() {
        let c = one(&format!(
            "{HEAD}BUILT_MODULE_NAME=(a b)\nDEST_MODULE_NAME=(x x)\n\
             DEST_MODULE_LOCATION=(/updates /updates)\n"
        ));
        assert_eq!(
            c.refusals,
            [Refusal::DuplicateDest {
                name: "x".into(),
                indices: vec![0, 1]
            }]
        );
        let msg = c.refusals[0].to_string();
        assert!(msg.contains("2 modules are installed as \"x\""), "{msg}");
        let c = one(&format!(
            "{HEAD}BUILT_MODULE_NAME=(a a)\nBUILT_MODULE_LOCATION=(src src/)\n\
             DEST_MODULE_NAME=(a1 a2)\nDEST_MODULE_LOCATION=(/updates /updates)\n"
        ));
        assert_eq!(
            c.refusals,
            [Refusal::DuplicateBuilt {
                name: "src/a".into(),
                indices: vec![0, 1]
            }]
        );
        // Same name in different build locations, installed under different names: fine.
        let c = one(&format!(
            "{HEAD}BUILT_MODULE_NAME=(a a)\nBUILT_MODULE_LOCATION=(x y)\n\
             DEST_MODULE_NAME=(a1 a2)\nDEST_MODULE_LOCATION=(/updates /updates)\n"
        ));
        assert_eq!(c.refusals, []);
    }

    #[test]
    fn built_module_name_defaults_to_package_name_for_one_record_only() {
        let c = one(&format!("{HEAD}DEST_MODULE_LOCATION[0]=/updates/dkms\n"));
        assert_eq!(c.built_modules, ["foo"]);
        assert_eq!(c.refusals, []);
        // Two records: dkms 3.4.3 names neither after PACKAGE_NAME.
        let c = one(&format!(
            "{HEAD}DEST_MODULE_LOCATION=(/updates /updates)\nBUILT_MODULE_NAME[1]=b\n"
        ));
        assert_eq!(c.built_modules, ["", "b"]);
        assert_eq!(c.refusals, [Refusal::NoBuiltName { index: 0 }]);
    }

    #[test]
    fn sparse_module_arrays_count_up_to_their_highest_index() {
        let c = one(&format!(
            "{HEAD}BUILT_MODULE_NAME[0]=a\nBUILT_MODULE_NAME[2]=c\n\
             DEST_MODULE_LOCATION[0]=/updates\nDEST_MODULE_LOCATION[2]=/updates\n"
        ));
        assert_eq!(c.built_modules, ["a", "", "c"]);
        assert_eq!(
            c.refusals,
            [
                Refusal::NoBuiltName { index: 1 },
                Refusal::NoDestLocation { index: 1 }
            ]
        );
        // DEST_MODULE_NAME lines up with its own record, not with the n-th set element.
        let c = one(&format!(
            "{HEAD}BUILT_MODULE_NAME=(a b)\nDEST_MODULE_NAME[1]=renamed\n\
             DEST_MODULE_LOCATION=(/updates /updates)\n"
        ));
        assert_eq!(c.dest_names, ["", "renamed"]);
        assert_eq!(c.refusals, []);
        let c = one(&format!("{HEAD}BUILT_MODULE_NAME[4000000000]=x\n"));
        assert!(matches!(c.refusals[..], [Refusal::TooManyModules { .. }]));
        assert!(c.built_modules.is_empty());
    }

    #[test]
    fn a_dkms_conf_with_no_module_is_warned_about_as_dkms_3_4_does() {
        let c = one(HEAD);
        assert_eq!(c.refusals, []);
        assert!(c.built_modules.is_empty());
        assert!(
            c.warnings[0].contains("names no module"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn what_read_conf_refuses_in_a_record() {
        let c = one(&format!(
            "{HEAD}BUILT_MODULE_NAME=(a.ko b)\nDEST_MODULE_NAME[1]=b.o\n\
             DEST_MODULE_LOCATION=(/lib/x /extra)\n"
        ));
        let got: Vec<String> = c.refusals.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "BUILT_MODULE_NAME[0]=\"a.ko\" ends in .o or .ko: give the module name alone",
                "DEST_MODULE_LOCATION[0]=\"/lib/x\" does not begin with /kernel, /updates or /extra",
                "DEST_MODULE_NAME[1]=\"b.o\" ends in .o or .ko: give the module name alone",
            ]
        );
    }

    #[test]
    fn yes_no_directives_take_only_yes_or_no() {
        for (value, refused) in [("yes", false), ("NO", false), ("", false), ("true", true)] {
            let c = one(&format!(
                "{HEAD}DEST_MODULE_LOCATION=/updates\nAUTOINSTALL=\"{value}\"\n"
            ));
            assert_eq!(!c.refusals.is_empty(), refused, "AUTOINSTALL={value}");
        }
        let c = one(&format!(
            "{HEAD}DEST_MODULE_LOCATION=/updates\nBUILD_DEPENDS_REBUILD=1\n"
        ));
        assert_eq!(
            c.refusals[0].to_string(),
            "BUILD_DEPENDS_REBUILD=\"1\" is neither yes nor no"
        );
    }

    #[test]
    fn obsolete_directives_are_warned_about_and_obsolete_by_caps_the_kernel() {
        let c = one(&format!(
            "{HEAD}DEST_MODULE_LOCATION=/updates\nCLEAN=\"make clean\"\nREMAKE_INITRD=yes\n\
             OBSOLETE_BY=6.5\nMODULES_CONF[0]=x\n"
        ));
        assert_eq!(c.refusals, []);
        let w = c.warnings.join("\n");
        for d in ["CLEAN", "REMAKE_INITRD", "OBSOLETE_BY", "MODULES_CONF"] {
            assert!(w.contains(&format!("{d} is deprecated")), "{d}: {w}");
        }
        assert_eq!(c.exclusive.kernel_max.as_deref(), Some("6.5"));
        let c = one(&format!(
            "{HEAD}DEST_MODULE_LOCATION=/updates\nCLEAN=true\n\
             OBSOLETE_BY=6.5\nBUILD_EXCLUSIVE_KERNEL_MAX=6.9\n"
        ));
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert_eq!(c.exclusive.kernel_max.as_deref(), Some("6.9"));
    }

    #[test]
    fn patches_that_climb_or_are_absent_are_refused_for_the_kernels_they_apply_to() {
        let conf = format!(
            "{HEAD}DEST_MODULE_LOCATION=/updates\n\
             PATCH[0]=ok.patch\nPATCH[1]=../../etc/evil.patch\nPATCH[2]=gone.patch\n\
             PATCH[3]=only-6.2.patch\nPATCH_MATCH[3]='^6\\.2'\nPATCH[4]=sub/dir.patch\n"
        );
        let c = eval_in_dir(&conf, &["ok.patch", "sub/dir.patch"], "6.1.0");
        assert_eq!(
            c.refusals,
            [
                Refusal::PatchClimbs {
                    name: "../../etc/evil.patch".into()
                },
                Refusal::PatchMissing {
                    name: "gone.patch".into()
                }
            ]
        );
        let c = eval_in_dir(&conf, &["ok.patch", "sub/dir.patch"], "6.2.0");
        assert!(c.refusals.contains(&Refusal::PatchMissing {
            name: "only-6.2.patch".into()
        }));
        // A sparse PATCH: dkms walks it by its element count and never applies PATCH[5].
        let c = eval_in_dir(
            &format!("{HEAD}DEST_MODULE_LOCATION=/updates\nPATCH[0]=a.patch\nPATCH[5]=b.patch\n"),
            &["a.patch"],
            "6.1.0",
        );
        assert_eq!(c.refusals, []);
        assert!(c.warnings[0].contains("PATCH[5]"), "{:?}", c.warnings);
    }

    /// Three kernels whose headers differ (their .config), as the once-tests evaluate for.
    struct Kernels {
        dir: tempfile::TempDir,
        contexts: Vec<Context>,
    }

    fn kernels() -> Kernels {
        let dir = tempfile::tempdir().unwrap();
        let mut contexts = Vec::new();
        for (k, config) in [
            ("6.1.0-55-amd64", "CONFIG_I2C=y\nCONFIG_VIDEO_DEV=m\n"),
            ("6.2.0-1-amd64", "CONFIG_I2C=y\n"),
            (
                "6.10.3-arch1-1",
                "CONFIG_BACKLIGHT_CLASS_DEVICE=y\nCONFIG_I2C=y\n",
            ),
        ] {
            let ksd = dir.path().join("modules").join(k).join("build");
            fs::create_dir_all(&ksd).unwrap();
            fs::write(ksd.join(".config"), config).unwrap();
            contexts.push(Context {
                kernel: k.into(),
                kernel_source_dir: ksd,
            });
        }
        Kernels { dir, contexts }
    }

    /// `confs` evaluated with the once-evaluation allowed and without it: both results, and how
    /// many times files were sourced each way.
    fn both_ways(
        k: &Kernels,
        confs: &[PathBuf],
    ) -> ((Vec<Evaluated>, usize), (Vec<Evaluated>, usize)) {
        let trees = Trees::defaults(k.dir.path());
        (
            evaluate_counted(confs, &k.contexts, &trees, "x86_64", Once::Allowed),
            evaluate_counted(confs, &k.contexts, &trees, "x86_64", Once::Never),
        )
    }

    fn write_confs(k: &Kernels, texts: &[&str]) -> Vec<PathBuf> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let d = k.dir.path().join(format!("src/m{i}-1.0"));
                fs::create_dir_all(&d).unwrap();
                fs::write(d.join("dkms.conf"), t).unwrap();
                d.join("dkms.conf")
            })
            .collect()
    }

    /// Declarative files: the kernel's values only copied and concatenated into directives.
    const ONCE_CONFS: &[&str] = &[
        "PACKAGE_NAME=\"once\"\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]=once\n\
         DEST_MODULE_LOCATION[0]=/updates\nAUTOINSTALL=yes\n\
         MAKE[0]=\"make -C ${kernel_source_dir} M=${dkms_tree}/${PACKAGE_NAME}/build KVER=$kernelver\"\n",
        // The kernel in BUILD_EXCLUSIVE_KERNEL, a MAKE_MATCH and a PATCH_MATCH, through a copy.
        "PACKAGE_NAME=k\nPACKAGE_VERSION=2\nK=$kernelver\nBUILD_EXCLUSIVE_KERNEL=\"^${K}$\"\n\
         BUILT_MODULE_NAME=(\"k_$K\" 'two')\nDEST_MODULE_LOCATION=(/updates \"/updates/$arch\")\n\
         MAKE_MATCH[0]=\"^$kernelver\"\nPATCH[0]=\"p-${kernelver}.patch\"\nPATCH_MATCH[0]=\"^6\\.2\"\n\
         BUILD_EXCLUSIVE_CONFIG=\"CONFIG_I2C\"; OBSOLETE_BY=$kernelver\n",
        // Indexed arrays, one with the kernel in an element, CRLF line ends.
        "PACKAGE_NAME=\"crlf\"\r\nPACKAGE_VERSION=\"1\"\r\nBUILT_MODULE_NAME[1]=\"${BUILT_MODULE_NAME[0]}x\"\r\n\
         BUILT_MODULE_NAME[0]=a\r\nDEST_MODULE_LOCATION[0]=\"/kernel/${kernel_source_dir}\"\r\n",
    ];

    /// Files whose result may depend on the kernel in a way no replacement gives.
    const PER_KERNEL_CONFS: &[&str] = &[
        // $kernelver tested.
        "PACKAGE_NAME=t\nPACKAGE_VERSION=1\nif [[ $kernelver == 6.2* ]]; then BUILD_EXCLUSIVE_KERNEL=\"^never$\"; fi\n",
        // uname -r, and a command substitution.
        "PACKAGE_NAME=u\nPACKAGE_VERSION=1\nMAKE[0]=\"make KVER=$(uname -r)\"\nBUILT_MODULE_NAME[0]=\"$(echo $kernelver | tr . _)\"\n",
        // BUILD_EXCLUSIVE_KERNEL from a transformed kernel.
        "PACKAGE_NAME=x\nPACKAGE_VERSION=1\nBUILD_EXCLUSIVE_KERNEL=\"^${kernelver%%-*}$\"\n",
        // The kernel's .config, sourced through ${kernel_source_dir}.
        "PACKAGE_NAME=c\nPACKAGE_VERSION=1\n. \"${kernel_source_dir}/.config\"\nAUTOINSTALL=${CONFIG_VIDEO_DEV:+yes}\n",
        // An array indexed by something computed from the kernel.
        "PACKAGE_NAME=a\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[${#kernelver}]=m\n",
        // case on the kernel.
        "PACKAGE_NAME=s\nPACKAGE_VERSION=1\ncase $kernelver in 6.10*) BUILD_DEPENDS=(late);; *) BUILD_DEPENDS=(early);; esac\n",
        // The kernel reached without its name in the text.
        "PACKAGE_NAME=e\nPACKAGE_VERSION=1\nv=kernel; v+=ver\nBUILD_EXCLUSIVE_KERNEL=${!v}\n",
    ];

    #[test]
    fn a_file_that_cannot_depend_on_the_kernel_is_sourced_once_for_every_kernel() {
        let k = kernels();
        let confs = write_confs(&k, ONCE_CONFS);
        let ((once, n_once), (per, n_per)) = both_ways(&k, &confs);
        assert_eq!(n_per, confs.len() * k.contexts.len());
        assert_eq!(n_once, confs.len(), "each file sourced once");
        assert_eq!(once, per);
        // Not vacuous: the kernels' results differ, each with its own kernel.
        let e = &once[1];
        let a = e.result_for("6.1.0-55-amd64").unwrap();
        let b = e.result_for("6.10.3-arch1-1").unwrap();
        assert_eq!(a.exclusive.kernel.as_deref(), Some("^6.1.0-55-amd64$"));
        assert_eq!(b.built_modules[0], "k_6.10.3-arch1-1");
        assert_eq!(b.exclusive.kernel_max.as_deref(), Some("6.10.3-arch1-1"));
    }

    #[test]
    fn a_file_that_may_depend_on_the_kernel_is_still_sourced_per_kernel() {
        let k = kernels();
        let confs = write_confs(&k, PER_KERNEL_CONFS);
        let ((once, n_once), (per, n_per)) = both_ways(&k, &confs);
        assert_eq!(n_once, confs.len() * k.contexts.len());
        assert_eq!(n_once, n_per);
        assert_eq!(once, per);
        let r = |i: usize, kernel: &str| once[i].result_for(kernel).unwrap().clone();
        assert_eq!(
            r(0, "6.2.0-1-amd64").exclusive.kernel.as_deref(),
            Some("^never$")
        );
        assert_eq!(r(0, "6.1.0-55-amd64").exclusive.kernel, None);
        assert_eq!(
            r(2, "6.10.3-arch1-1").exclusive.kernel.as_deref(),
            Some("^6.10.3$")
        );
        assert!(r(3, "6.1.0-55-amd64").autoinstall);
        assert!(!r(3, "6.2.0-1-amd64").autoinstall);
        assert_eq!(r(5, "6.10.3-arch1-1").build_depends, ["late"]);
        assert_eq!(
            r(6, "6.2.0-1-amd64").exclusive.kernel.as_deref(),
            Some("6.2.0-1-amd64")
        );
    }

    fn confs_under(dir: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e} (run tests/setup.sh)", dir.display()))
            .flatten()
            .map(|e| e.path().join("dkms.conf"))
            .filter(|p| p.is_file())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn once_evaluation_gives_what_per_kernel_evaluation_gives_on_real_files_and_fixtures() {
        let k = kernels();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
        let real = confs_under(&root.join(".cache/sources/usr/src"));
        let fixtures = confs_under(&root.join("fixtures"));
        assert!(
            real.len() >= 9 && fixtures.len() >= 10,
            "{real:?} {fixtures:?}"
        );
        for conf in real.iter().chain(&fixtures) {
            let ((once, n_once), (per, _)) = both_ways(&k, std::slice::from_ref(conf));
            assert_eq!(once, per, "{}", conf.display());
            let text = fs::read(conf).unwrap();
            let want = if once::declarative(&text) {
                1
            } else {
                k.contexts.len()
            };
            assert_eq!(n_once, want, "{}", conf.display());
        }
        // Which real Debian files are read once: those without logic.
        let read_once: Vec<String> = real
            .iter()
            .filter(|c| both_ways(&k, std::slice::from_ref(c)).0 .1 == 1)
            .map(|c| {
                c.parent()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(
            read_once,
            [
                "acpi-call-1.2.2",
                "dm-writeboost-2.2.17",
                "gost-crypto-0.3.4",
                "openrazer-driver-3.5.1",
                "tp_smapi-0.43",
                "vpoll-0.1"
            ]
        );
    }

    /// Random files made of declarative pieces and of pieces that test, transform or run
    /// something: whatever way each is evaluated, the result is the per-kernel one.
    #[test]
    fn fuzz_once_evaluation_against_per_kernel_evaluation() {
        const PIECES: &[&str] = &[
            "PACKAGE_NAME=f\n",
            "PACKAGE_VERSION=\"$kernelver\"\n",
            "PACKAGE_VERSION=1\n",
            "BUILT_MODULE_NAME[0]=\"m$kernelver\"\n",
            "BUILT_MODULE_NAME[1]=${BUILT_MODULE_NAME[0]}\n",
            "DEST_MODULE_LOCATION[0]=/updates\n",
            "DEST_MODULE_LOCATION[1]=\"/extra${kernel_source_dir}\"\n",
            "K=$kernelver\n",
            "K+=\"-$K\"\n",
            "BUILD_EXCLUSIVE_KERNEL=\"^$K\"\n",
            "BUILD_EXCLUSIVE_KERNEL_MIN=$kernelver\n",
            "BUILD_EXCLUSIVE_CONFIG='CONFIG_I2C !CONFIG_X'\n",
            "MAKE[0]=\"make -C $kernel_source_dir KVER=${kernelver}\"; CLEAN=x\n",
            "BUILD_DEPENDS=(\"$K\" b)\n",
            "AUTOINSTALL=yes # a comment\n",
            "PATCH[0]=a.patch\nPATCH_MATCH[0]=\"$kernelver\"\n",
            "kernelver=6.2.0\n",
            "if [[ $kernelver == 6.1* ]]; then AUTOINSTALL=no; fi\n",
            "K=${kernelver//./_}\n",
            "case $kernel_source_dir in *6.2*) PACKAGE_VERSION=2;; esac\n",
            "[ -f \"$kernel_source_dir/.config\" ] && . \"$kernel_source_dir/.config\"\n",
            "AUTOINSTALL=${CONFIG_VIDEO_DEV:+yes}\n",
            "BUILD_DEPENDS=($K)\n",
            "BUILT_MODULE_NAME[${#K}]=z\n",
            "echo \"$kernelver\"\n",
            "B=\"unterminated\n",
            "C=(a b\n",
        ];
        let k = kernels();
        let mut rng = crate::test_rng::Rng(0x9e37_79b9_7f4a_7c15);
        let texts: Vec<String> = (0..200)
            .map(|_| (0..1 + rng.below(8)).map(|_| rng.pick(PIECES)).collect())
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let confs = write_confs(&k, &refs);
        let ((once, n_once), (per, n_per)) = both_ways(&k, &confs);
        for (i, (a, b)) in once.iter().zip(&per).enumerate() {
            assert_eq!(a, b, "{:?}", texts[i]);
        }
        assert!(n_once < n_per, "some files were read once");
    }

    /// A small xorshift generator: the same inputs on every run, no crate.
    use crate::test_rng::Rng;

    /// The parser of what dkmsconf.sh writes on its record descriptor, and the reading of the
    /// directives after it, never panic on any byte stream: fields of the protocol, values that
    /// look like them, invalid UTF-8, huge and negative indices, CRs.
    #[test]
    fn fuzz_the_record_parser_and_the_directive_reader() {
        const PIECES: &[&[u8]] = &[
            b"@check\0",
            b"@source\0",
            b"@done\0",
            b"@output\0",
            b"0\0",
            b"18446744073709551616\0",
            b"-1\0",
            b"6.1.0\0",
            b"=PACKAGE_NAME\0",
            b"=PACKAGE_VERSION\0",
            b"=BUILT_MODULE_NAME\0",
            b"=DEST_MODULE_NAME\0",
            b"=DEST_MODULE_LOCATION\0",
            b"=PATCH\0",
            b"=PATCH_MATCH\0",
            b"=OBSOLETE_BY\0",
            b"=0\0",
            b"=1\0",
            b"=1023\0",
            b"=1024\0",
            b"=99999999999999999999\0",
            b"=x\0",
            b"=\0",
            b"=a.ko\0",
            b"=/updates\0",
            b"=../p\0",
            b"=[\0",
            b"=\r\0",
            b"\xff\xfe",
            b"=\xe2\x82\0",
            b"\0",
            b"=",
        ];
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..5_000 {
            let mut input = Vec::new();
            for _ in 0..(rng.next() % 60) {
                input.extend_from_slice(rng.pick(PIECES));
            }
            for r in parse_records(&input) {
                if let Record::Source { fields, kernel, .. } = r {
                    if let Ok(c) = to_conf(&fields, &kernel) {
                        assert!(c.built_modules.len() <= MAX_MODULES);
                        assert_eq!(c.built_modules.len(), c.dest_locations.len());
                        let _ = c.refusals.iter().map(ToString::to_string).count();
                    }
                }
            }
        }
    }
}
