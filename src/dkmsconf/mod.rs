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
//! forks, not six hundred bash start-ups. The evaluator itself is `dkmsconf.sh`, shared with
//! [`crate::status`].

pub mod eval;
pub mod exclusive;
pub mod rules;

use crate::dkmsconf::eval::{run_units, Emitter, Record, Unit, UNIT_LIMIT};
use crate::dkmsconf::rules::{to_conf, ConfError, DkmsConf, Problem, DIRECTIVES};
use crate::system::trees::Trees;
use rayon::prelude::*;
use std::collections::BTreeMap;
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

/// Evaluates every dkms.conf in `confs` for every context, in parallel batches.
pub fn evaluate(
    confs: &[PathBuf],
    contexts: &[Context],
    trees: &Trees,
    arch: &str,
) -> Vec<Evaluated> {
    if confs.is_empty() {
        return Vec::new();
    }
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(confs.len());
    let chunk = confs.len().div_ceil(workers);
    confs
        .par_chunks(chunk)
        .flat_map_iter(|batch| evaluate_batch(batch, contexts, trees, arch))
        .collect()
}

fn evaluate_batch(
    confs: &[PathBuf],
    contexts: &[Context],
    trees: &Trees,
    arch: &str,
) -> Vec<Evaluated> {
    let mut units = Vec::new();
    for (id, file) in confs.iter().enumerate() {
        units.push(Unit::Check { id, file });
        for c in contexts {
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
            return out;
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
            Record::TimedOut { id, kernel } => {
                if let Some(e) = out.get_mut(id) {
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
                if let Some(e) = out.get_mut(id) {
                    let r = if done {
                        to_conf(&fields, &kernel)
                            .map(|mut c| {
                                c.refuse_absent_patches(&e.path);
                                c
                            })
                            .map_err(|p| e.error_for(p))
                    } else {
                        Err(e.error_for(Problem::Aborted { output }))
                    };
                    e.per_kernel.insert(kernel, r);
                }
            }
        }
    }
    out
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
    use std::fs;

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
        let r = evaluate_batch(&confs, &ctx, &Trees::defaults(d.path()), "x86_64");
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
