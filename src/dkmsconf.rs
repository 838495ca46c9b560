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

use crate::trees::Trees;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The directives of one dkms.conf for one kernel that planning needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DkmsConf {
    pub name: String,
    pub version: String,
    pub autoinstall: bool,
    /// Module names that must be installed for the same kernel first.
    pub build_depends: Vec<String>,
    pub exclusive: Exclusive,
    /// BUILT_MODULE_NAME entries: the .ko files (without suffix) a build produces.
    pub built_modules: Vec<String>,
    /// DEST_MODULE_NAME entries (same order as `built_modules`; empty string when unset).
    pub dest_names: Vec<String>,
    /// BUILT_MODULE_LOCATION entries (same order as `built_modules`; empty string when unset).
    pub built_locations: Vec<String>,
    /// DEST_MODULE_LOCATION entries as set (where dkms installs outside Debian and Arch, which
    /// use `/updates/dkms` whatever they say).
    pub dest_locations: Vec<String>,
    /// AUTOINSTALL as written (`autoinstall` says only whether it is set).
    pub autoinstall_value: String,
    /// PATCH entries: file names under the source's `patches/` directory.
    pub patches: Vec<String>,
    /// MAKE entries as evaluated (`MAKE` or `MAKE[0]` is the build command).
    pub make: Vec<String>,
}

/// BUILD_EXCLUSIVE_* directives, unset ones as `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclusive {
    pub kernel: Option<String>,
    pub kernel_min: Option<String>,
    pub kernel_max: Option<String>,
    pub arch: Option<String>,
    /// `CONFIG_A !CONFIG_B`, split on whitespace.
    pub config: Vec<String>,
}

/// A dkms.conf that cannot be used: the file (as given to the evaluator) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", .path.display(), .problem)]
pub struct ConfError {
    pub path: PathBuf,
    pub problem: Problem,
}

/// What is wrong with a dkms.conf, without its path (for where the path is already shown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// bash's own message, `line N: syntax error ...` (or that the file cannot be read).
    #[error("{message}")]
    Syntax { message: String },
    #[error("no {directive} directive")]
    Missing { directive: &'static str },
    #[error("evaluation stopped early (does it call exit?){}", output_suffix(.output))]
    Aborted {
        /// What the file printed before it stopped.
        output: String,
    },
    #[error("cannot run bash: {message}")]
    Bash { message: String },
    #[error(
        "sourcing it did not end within {seconds} s (does it wait for something?): stopped, \
         and not sourced again for any kernel"
    )]
    TimedOut {
        /// The kernel it was sourced for when it hung.
        kernel: String,
        seconds: u64,
    },
}

fn output_suffix(o: &str) -> String {
    let o = o.trim();
    if o.is_empty() {
        String::new()
    } else {
        format!(": {o}")
    }
}

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

/// The one evaluator of dkms.conf files (see the file itself for its protocol), shared with
/// [`crate::status`].
pub(crate) const EVALUATOR: &str = include_str!("dkmsconf.sh");

/// The directives a plan (or `lint`) reads: unset before each file is sourced, so that none comes
/// from the environment, and the names the evaluator's `_dh_emit_directives` reports.
const DIRECTIVES: &str = "PACKAGE_NAME PACKAGE_VERSION AUTOINSTALL BUILD_DEPENDS \
    BUILD_EXCLUSIVE_KERNEL BUILD_EXCLUSIVE_KERNEL_MIN BUILD_EXCLUSIVE_KERNEL_MAX \
    BUILD_EXCLUSIVE_ARCH BUILD_EXCLUSIVE_CONFIG BUILT_MODULE_NAME DEST_MODULE_NAME \
    BUILT_MODULE_LOCATION DEST_MODULE_LOCATION PATCH MAKE";

/// One piece of work for the evaluator.
#[derive(Debug, Clone)]
pub(crate) enum Unit<'a> {
    /// Check `file`'s syntax without running it; later `Source` units of the same id are
    /// dropped when it fails.
    Check { id: usize, file: &'a Path },
    /// Source `files` (those that exist) for one kernel, then run the emitter.
    Source {
        id: usize,
        kernel: &'a str,
        arch: &'a str,
        kernel_source_dir: &'a Path,
        module: &'a str,
        version: &'a str,
        files: Vec<PathBuf>,
    },
}

/// What the evaluator said about one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    Check {
        id: usize,
        /// Empty when the file parses.
        message: String,
    },
    Source {
        id: usize,
        kernel: String,
        /// What the emitter wrote.
        fields: Vec<String>,
        /// The files did not end the subshell (no `exit`).
        done: bool,
        /// What the files printed.
        output: String,
    },
    /// Sourcing unit `id` for `kernel` did not end within [`UNIT_LIMIT`]: its evaluator was
    /// killed, and no other unit of `id` was run.
    TimedOut { id: usize, kernel: String },
}

/// Which emitter the evaluator runs after sourcing, with the script that defines it.
pub(crate) struct Emitter<'a> {
    /// Shell code put before the evaluator (defines the emitter), may be empty.
    pub prelude: &'a str,
    /// The function to run after sourcing.
    pub function: &'a str,
    /// Variables unset before sourcing.
    pub unset: &'a str,
    /// Environment for the evaluator (the prelude's settings).
    pub env: Vec<(&'a str, std::ffi::OsString)>,
}

/// How long one unit (a file's syntax check, or a file sourced for one kernel) may take: a
/// dkms.conf that waits for something (a `sleep`, a `read` from a terminal, a network call) must
/// not hold a run, nor every kernel's run. Then the evaluator's process group is killed, the file
/// fails for every kernel, and the remaining units go on in a new evaluator.
pub(crate) const UNIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs the evaluator over `units`, in one bash process while no unit outlasts [`UNIT_LIMIT`]
/// (see there). `Err` when bash cannot run at all, or died (its stderr).
pub(crate) fn run_units(
    emitter: &Emitter,
    trees: &Trees,
    units: &[Unit],
) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    let mut rest: Vec<&Unit> = units.iter().collect();
    loop {
        match run_batch(emitter, trees, &rest)? {
            Batch::Done(records) => {
                out.extend(records);
                return Ok(out);
            }
            Batch::Hung {
                records,
                id,
                kernel,
            } => {
                out.extend(records);
                let hung = |u: &&Unit| matches!(u, Unit::Source { id: i, kernel: k, .. } if *i == id && *k == kernel);
                let at = rest.iter().position(hung).map_or(rest.len(), |p| p + 1);
                rest = rest[at..]
                    .iter()
                    .copied()
                    .filter(|u| unit_id(u) != id)
                    .collect();
                out.push(Record::TimedOut { id, kernel });
            }
        }
    }
}

fn unit_id(u: &Unit) -> usize {
    match u {
        Unit::Check { id, .. } | Unit::Source { id, .. } => *id,
    }
}

/// How one evaluator process ended.
enum Batch {
    Done(Vec<Record>),
    /// Killed while it sourced unit `id` for `kernel`, after `records`.
    Hung {
        records: Vec<Record>,
        id: usize,
        kernel: String,
    },
}

fn run_batch(emitter: &Emitter, trees: &Trees, units: &[&Unit]) -> Result<Batch, String> {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("{}\n{EVALUATOR}", emitter.prelude))
        .arg("dkms-hook-eval")
        .arg(emitter.function)
        .arg(emitter.unset)
        .arg(&trees.dkms)
        .arg(&trees.source)
        .arg(&trees.install);
    for (k, v) in &emitter.env {
        cmd.env(k, v);
    }
    for u in units {
        match u {
            Unit::Check { id, file } => {
                cmd.arg("check").arg(id.to_string()).arg(file);
            }
            Unit::Source {
                id,
                kernel,
                arch,
                kernel_source_dir,
                module,
                version,
                files,
            } => {
                cmd.arg("source")
                    .arg(id.to_string())
                    .arg(kernel)
                    .arg(arch)
                    .arg(kernel_source_dir)
                    .arg(module)
                    .arg(version)
                    .arg(files.len().to_string())
                    .args(files);
            }
        }
    }
    cmd.stdin(Stdio::null());
    let watch = crate::process::Watch {
        deadline: None,
        stall: Some(UNIT_LIMIT),
    };
    let out = crate::process::Running::spawn_split(cmd)
        .and_then(|r| r.wait_with(watch))
        .map_err(|e| e.to_string())?;
    if out.stopped.is_some() {
        // The stream ends with the record of the unit that hung: `@source ID KERNEL`, no @output.
        let bytes = out.output.as_bytes();
        let start = bytes
            .windows(8)
            .rposition(|w| w == b"@source\0")
            .filter(|&p| p == 0 || bytes[p - 1] == 0);
        if let Some(p) = start {
            let tail = String::from_utf8_lossy(&bytes[p..]);
            let mut f = tail.split('\0').skip(1);
            let id = f.next().and_then(|i| i.parse().ok());
            let kernel = f.next().map(str::to_string);
            if let (Some(id), Some(kernel), false) = (id, kernel, tail.contains("\0@output\0")) {
                return Ok(Batch::Hung {
                    records: parse_records(&bytes[..p]),
                    id,
                    kernel,
                });
            }
        }
        return Err(format!(
            "the evaluator gave no answer for {} s: stopped",
            UNIT_LIMIT.as_secs()
        ));
    }
    if !out.status.success() {
        return Err(out.errors.trim().to_string());
    }
    Ok(Batch::Done(parse_records(out.output.as_bytes())))
}

/// Turns the evaluator's NUL-separated records into [`Record`]s.
fn parse_records(bytes: &[u8]) -> Vec<Record> {
    let text = String::from_utf8_lossy(bytes);
    let mut fields = text.split('\0').peekable();
    let mut out = Vec::new();
    let next = |f: &mut std::iter::Peekable<std::str::Split<'_, char>>| {
        f.next().unwrap_or_default().to_string()
    };
    while let Some(tag) = fields.next() {
        match tag {
            "@check" => {
                let id = next(&mut fields).parse().unwrap_or(usize::MAX);
                let message = next(&mut fields);
                out.push(Record::Check { id, message });
            }
            "@source" => {
                let id = next(&mut fields).parse().unwrap_or(usize::MAX);
                let kernel = next(&mut fields);
                let mut emitted = Vec::new();
                while let Some(f) = fields.next_if(|f| f.starts_with('=')) {
                    emitted.push(f[1..].to_string());
                }
                let done = fields.next_if_eq(&"@done").is_some();
                let output = match fields.next_if_eq(&"@output") {
                    Some(_) => next(&mut fields),
                    None => String::new(),
                };
                out.push(Record::Source {
                    id,
                    kernel,
                    fields: emitted,
                    done,
                    output,
                });
            }
            _ => {}
        }
    }
    out
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
                        to_conf(&fields).map_err(|p| e.error_for(p))
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

/// Directives from the emitter's `NAME INDEX VALUE` triples.
fn to_conf(fields: &[String]) -> Result<DkmsConf, Problem> {
    let mut vars: BTreeMap<&str, BTreeMap<usize, &str>> = BTreeMap::new();
    for t in fields.chunks_exact(3) {
        let idx = t[1].parse().unwrap_or(0);
        vars.entry(&t[0]).or_default().insert(idx, &t[2]);
    }
    let scalar = |n: &str| -> Option<String> {
        vars.get(n)
            .and_then(|m| m.get(&0))
            .filter(|v| !v.is_empty())
            .map(|v| v.to_string())
    };
    let list = |n: &str| -> Vec<String> {
        vars.get(n)
            .map(|m| m.values().map(|v| v.to_string()).collect())
            .unwrap_or_default()
    };
    let missing = |directive| Problem::Missing { directive };
    let name = scalar("PACKAGE_NAME").ok_or_else(|| missing("PACKAGE_NAME"))?;
    let version = scalar("PACKAGE_VERSION").ok_or_else(|| missing("PACKAGE_VERSION"))?;
    let words = |n: &str| -> Vec<String> {
        list(n)
            .iter()
            .flat_map(|v| v.split_whitespace())
            .map(str::to_string)
            .collect()
    };
    let built = list("BUILT_MODULE_NAME");
    let dest_map = vars.get("DEST_MODULE_NAME");
    let dest_names = (0..built.len())
        .map(|i| {
            dest_map
                .and_then(|m| m.get(&i))
                .map(|v| v.to_string())
                .unwrap_or_default()
        })
        .collect();
    let built_locations = (0..built.len())
        .map(|i| {
            vars.get("BUILT_MODULE_LOCATION")
                .and_then(|m| m.get(&i))
                .map(|v| v.to_string())
                .unwrap_or_default()
        })
        .collect();
    Ok(DkmsConf {
        autoinstall_value: scalar("AUTOINSTALL").unwrap_or_default(),
        built_locations,
        dest_locations: list("DEST_MODULE_LOCATION"),
        patches: list("PATCH"),
        make: list("MAKE"),
        name,
        version,
        // dkms 3.4 reads "no" (any case) as unset; 3.0.10 took any non-empty value. Follow 3.4.
        autoinstall: scalar("AUTOINSTALL").is_some_and(|v| !v.eq_ignore_ascii_case("no")),
        build_depends: words("BUILD_DEPENDS"),
        exclusive: Exclusive {
            kernel: scalar("BUILD_EXCLUSIVE_KERNEL"),
            kernel_min: scalar("BUILD_EXCLUSIVE_KERNEL_MIN"),
            kernel_max: scalar("BUILD_EXCLUSIVE_KERNEL_MAX"),
            arch: scalar("BUILD_EXCLUSIVE_ARCH"),
            config: words("BUILD_EXCLUSIVE_CONFIG"),
        },
        built_modules: built,
        dest_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
