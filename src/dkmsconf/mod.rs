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

use crate::system::trees::Trees;
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
    /// BUILT_MODULE_NAME entries: the .ko files (without suffix) a build produces, one per
    /// module record as dkms 3.4.3 counts them (see [`records`]), PACKAGE_NAME where dkms
    /// defaults to it, an empty string in a hole of a sparse array.
    pub built_modules: Vec<String>,
    /// DEST_MODULE_NAME entries (same order as `built_modules`; empty string when unset).
    pub dest_names: Vec<String>,
    /// BUILT_MODULE_LOCATION entries (same order as `built_modules`; empty string when unset).
    pub built_locations: Vec<String>,
    /// DEST_MODULE_LOCATION entries (same order as `built_modules`; empty string when unset).
    pub dest_locations: Vec<String>,
    /// AUTOINSTALL as written (`autoinstall` says only whether it is set).
    pub autoinstall_value: String,
    /// PATCH entries: file names under the source's `patches/` directory.
    pub patches: Vec<String>,
    /// The PATCH entries dkms applies for this kernel (PATCH_MATCH), those that stay in
    /// `patches/`.
    pub kernel_patches: Vec<String>,
    /// MAKE entries as evaluated (`MAKE` or `MAKE[0]` is the build command).
    pub make: Vec<String>,
    /// What dkms 3.4.3 refuses in this file before it builds (`read_conf`, `read_conf_strict`,
    /// and its patch step for this kernel's patches): any one makes dkms exit 8 (5 for a patch).
    pub refusals: Vec<Refusal>,
    /// What dkms 3.4.3 warns about and builds anyway: obsolete directives, no module at all.
    pub warnings: Vec<String>,
}

/// One thing dkms 3.4.3 refuses in a dkms.conf before a build. Each says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A module record (of several) without BUILT_MODULE_NAME: dkms defaults it to PACKAGE_NAME
    /// only when there is one record. A hole in a sparse array is such a record.
    #[error(
        "module #{index} has no BUILT_MODULE_NAME (dkms names the module after PACKAGE_NAME \
         only when there is one)"
    )]
    NoBuiltName { index: usize },
    #[error("{directive}[{index}]=\"{value}\" ends in .o or .ko: give the module name alone")]
    Suffix {
        directive: &'static str,
        index: usize,
        value: String,
    },
    #[error("module #{index} has no DEST_MODULE_LOCATION")]
    NoDestLocation { index: usize },
    #[error(
        "DEST_MODULE_LOCATION[{index}]=\"{value}\" does not begin with /kernel, /updates or /extra"
    )]
    BadDestLocation { index: usize, value: String },
    /// Two records build the same file (BUILT_MODULE_LOCATION + BUILT_MODULE_NAME).
    #[error(
        "BUILT_MODULE_NAME \"{name}\" is listed {} times (modules {})",
        .indices.len(),
        list_indices(.indices)
    )]
    DuplicateBuilt { name: String, indices: Vec<usize> },
    /// Two records install under one name: one would overwrite the other.
    #[error(
        "{} modules are installed as \"{name}\" (modules {}; DEST_MODULE_NAME, or \
         BUILT_MODULE_NAME where unset): one would overwrite the other",
        .indices.len(),
        list_indices(.indices)
    )]
    DuplicateDest { name: String, indices: Vec<usize> },
    #[error("{directive}=\"{value}\" is neither yes nor no")]
    NotYesNo {
        directive: &'static str,
        value: String,
    },
    #[error("module arrays reach index {index}: more than {MAX_MODULES} modules")]
    TooManyModules { index: usize },
    #[error("PATCH \"{name}\" climbs out of patches/ with ..")]
    PatchClimbs { name: String },
    #[error("PATCH \"{name}\" is not in the source's patches/ directory")]
    PatchMissing { name: String },
}

fn list_indices(i: &[usize]) -> String {
    let v: Vec<String> = i.iter().map(|i| format!("#{i}")).collect();
    v.join(", ")
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
    BUILT_MODULE_LOCATION DEST_MODULE_LOCATION PATCH PATCH_MATCH MAKE \
    BUILD_DEPENDS_REBUILD NO_WEAK_MODULES OBSOLETE_BY CLEAN REMAKE_INITRD MODULES_CONF \
    MODULES_CONF_OBSOLETES MODULES_CONF_ALIAS_TYPE MODULES_CONF_OBSOLETE_ONLY";

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
    let watch = crate::os::process::Watch {
        deadline: None,
        stall: Some(UNIT_LIMIT),
    };
    let out = crate::os::process::Running::spawn_split(cmd)
        .and_then(|r| r.wait_with(watch))
        .map_err(|e| e.to_string())?;
    // The record stream, whole: what the dkms.conf files and their output come to.
    let bytes = out.output.bytes().map_err(|e| e.to_string())?;
    if out.stopped.is_some() {
        // The stream ends with the record of the unit that hung: `@source ID KERNEL`, no @output.
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
        return Err(out.errors.text_up_to(1 << 16).trim().to_string());
    }
    Ok(Batch::Done(parse_records(&bytes)))
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

/// The four arrays that describe the modules of a dkms.conf, one record per index.
const MODULE_ARRAYS: [&str; 4] = [
    "BUILT_MODULE_NAME",
    "BUILT_MODULE_LOCATION",
    "DEST_MODULE_NAME",
    "DEST_MODULE_LOCATION",
];

/// More module records than any real dkms.conf has: an array index beyond this (bash takes
/// `BUILT_MODULE_NAME[4000000000]=x`) is refused rather than walked.
const MAX_MODULES: usize = 1024;

/// Obsolete directives dkms 3.4.3 warns about (`safe_source` under `read_conf_strict`), with
/// what it says instead.
const OBSOLETE: [(&str, &str); 6] = [
    ("REMAKE_INITRD", "dkms 3.x ignores it"),
    ("MODULES_CONF", "dkms 3.x ignores it"),
    ("MODULES_CONF_OBSOLETES", "dkms 3.x ignores it"),
    ("MODULES_CONF_ALIAS_TYPE", "dkms 3.x ignores it"),
    ("MODULES_CONF_OBSOLETE_ONLY", "dkms 3.x ignores it"),
    (
        "OBSOLETE_BY",
        "use BUILD_EXCLUSIVE_KERNEL_MAX instead (dkms 3.4.3 reads it as that when that is unset)",
    ),
];

/// Directives from the emitter's `NAME INDEX VALUE` triples, read for `kernel` as dkms 3.4.3's
/// `read_conf` and `read_conf_strict` read them before a build (see [`DkmsConf::refusals`]).
fn to_conf(fields: &[String], kernel: &str) -> Result<DkmsConf, Problem> {
    let mut vars: BTreeMap<&str, BTreeMap<usize, &str>> = BTreeMap::new();
    for t in fields.chunks_exact(3) {
        // bash gives numbers here; an associative array's keys are not module records.
        let Ok(idx) = t[1].parse() else { continue };
        // CR stripped: dkms 3.2+ drops one trailing CR from every value (`${VAR[i]%$CR}` in
        // safe_source), so a dkms.conf with CRLF line endings reads as its LF twin. 3.0.10 keeps
        // the CR (PACKAGE_NAME "foo\r", refused for naming no directory). Follow 3.4.3.
        let v = t[2].strip_suffix('\r').unwrap_or(&t[2]);
        vars.entry(&t[0]).or_default().insert(idx, v);
    }
    let get = |n: &str, i: usize| -> &str {
        vars.get(n)
            .and_then(|m| m.get(&i))
            .copied()
            .unwrap_or_default()
    };
    let scalar = |n: &str| -> Option<String> {
        Some(get(n, 0))
            .filter(|v| !v.is_empty())
            .map(str::to_string)
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
    let mut refusals = Vec::new();
    let mut warnings = Vec::new();

    // Sparse arrays: dkms 3.4.3 (and 3.2.2) counts the records up to the highest index used in
    // any of the four arrays, so a hole is a record of its own; 3.0.10 counted the elements of
    // the longest array and lost the records past that count. Follow 3.4.3.
    let highest = MODULE_ARRAYS
        .iter()
        .filter_map(|n| vars.get(n).and_then(|m| m.keys().next_back()).copied())
        .max();
    let count = match highest {
        Some(h) if h >= MAX_MODULES => {
            refusals.push(Refusal::TooManyModules { index: h });
            0
        }
        Some(h) => h + 1,
        None => 0,
    };
    let mut built_modules = Vec::with_capacity(count);
    let mut dest_names = Vec::with_capacity(count);
    let mut built_locations = Vec::with_capacity(count);
    let mut dest_locations = Vec::with_capacity(count);
    for i in 0..count {
        // BUILT_MODULE_NAME defaults to PACKAGE_NAME when there is one record (3.4.3); 3.0.10
        // defaulted it when DEST_MODULE_LOCATION had one element. Follow 3.4.3.
        let mut built = get("BUILT_MODULE_NAME", i).to_string();
        if built.is_empty() && count == 1 {
            built = name.clone();
        }
        let dest = get("DEST_MODULE_NAME", i);
        let dest_location = get("DEST_MODULE_LOCATION", i);
        if built.is_empty() {
            refusals.push(Refusal::NoBuiltName { index: i });
        }
        for (directive, value) in [
            ("BUILT_MODULE_NAME", built.as_str()),
            ("DEST_MODULE_NAME", dest),
        ] {
            if value.ends_with(".o") || value.ends_with(".ko") {
                refusals.push(Refusal::Suffix {
                    directive,
                    index: i,
                    value: value.to_string(),
                });
            }
        }
        if dest_location.is_empty() {
            refusals.push(Refusal::NoDestLocation { index: i });
        } else if !["/kernel", "/updates", "/extra"]
            .iter()
            .any(|p| dest_location.starts_with(p))
        {
            refusals.push(Refusal::BadDestLocation {
                index: i,
                value: dest_location.to_string(),
            });
        }
        built_modules.push(built);
        dest_names.push(dest.to_string());
        built_locations.push(get("BUILT_MODULE_LOCATION", i).to_string());
        dest_locations.push(dest_location.to_string());
    }
    if count == 0 && highest.is_none() {
        // 3.4.3 warns ("Zero modules specified") and builds, installing nothing; 3.0.10 refused
        // it ("No 'DEST_MODULE_LOCATION' directive specified"). Follow 3.4.3.
        warnings.push(
            "names no module (BUILT_MODULE_NAME, DEST_MODULE_NAME and their locations are all \
             unset): dkms 3.4.3 builds it and installs nothing"
                .to_string(),
        );
    }
    // dkms 3.4.3 takes yes or no (any case) or nothing in these, and refuses anything else;
    // 3.0.10 took any non-empty value as yes. Follow 3.4.3.
    for directive in ["AUTOINSTALL", "BUILD_DEPENDS_REBUILD", "NO_WEAK_MODULES"] {
        let value = get(directive, 0);
        if !(value.is_empty()
            || value.eq_ignore_ascii_case("yes")
            || value.eq_ignore_ascii_case("no"))
        {
            refusals.push(Refusal::NotYesNo {
                directive,
                value: value.to_string(),
            });
        }
    }
    if vars.contains_key("CLEAN")
        && !["true", "/bin/true", "/usr/bin/true"].contains(&get("CLEAN", 0))
    {
        warnings.push("CLEAN is deprecated: dkms 3.x ignores it".to_string());
    }
    for (directive, instead) in OBSOLETE {
        if vars.contains_key(directive) {
            warnings.push(format!("{directive} is deprecated: {instead}"));
        }
    }
    // The patches dkms applies for this kernel: 3.4.3 walks PATCH by its element count (so a
    // sparse PATCH loses its entries past that count) and keeps those whose PATCH_MATCH is
    // unset or matches the kernel.
    let patch_count = vars.get("PATCH").map_or(0, BTreeMap::len);
    let mut kernel_patches = Vec::new();
    for (&i, &p) in vars.get("PATCH").into_iter().flatten() {
        if i >= patch_count {
            warnings.push(format!(
                "PATCH[{i}] is past the array's {patch_count} elements: dkms never applies it"
            ));
            continue;
        }
        let pattern = get("PATCH_MATCH", i);
        let applies =
            pattern.is_empty() || regex::Regex::new(pattern).is_ok_and(|re| re.is_match(kernel));
        if p.is_empty() || !applies {
            continue;
        }
        if Path::new(p)
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            refusals.push(Refusal::PatchClimbs {
                name: p.to_string(),
            });
        } else {
            kernel_patches.push(p.to_string());
        }
    }
    let kernel_max = scalar("BUILD_EXCLUSIVE_KERNEL_MAX").or_else(|| scalar("OBSOLETE_BY"));
    let mut conf = DkmsConf {
        autoinstall_value: scalar("AUTOINSTALL").unwrap_or_default(),
        built_locations,
        dest_locations,
        patches: list("PATCH"),
        kernel_patches,
        make: list("MAKE"),
        name,
        version,
        // dkms 3.4 reads "no" (any case) as unset; 3.0.10 took any non-empty value. Follow 3.4.
        autoinstall: scalar("AUTOINSTALL").is_some_and(|v| !v.eq_ignore_ascii_case("no")),
        build_depends: words("BUILD_DEPENDS"),
        exclusive: Exclusive {
            kernel: scalar("BUILD_EXCLUSIVE_KERNEL"),
            kernel_min: scalar("BUILD_EXCLUSIVE_KERNEL_MIN"),
            kernel_max,
            arch: scalar("BUILD_EXCLUSIVE_ARCH"),
            config: words("BUILD_EXCLUSIVE_CONFIG"),
        },
        built_modules,
        dest_names,
        refusals,
        warnings,
    };
    let duplicates = conf.duplicates();
    conf.refusals.extend(duplicates);
    Ok(conf)
}

impl DkmsConf {
    /// Module records that build the same file (BUILT_MODULE_LOCATION + BUILT_MODULE_NAME) or
    /// install under the same name (DEST_MODULE_NAME, else BUILT_MODULE_NAME), as dkms 3.2+'s
    /// `read_conf_strict` finds them (3.0.10 built and installed them, one over the other).
    /// Shared with `lint`'s duplicate-module-name.
    pub fn duplicates(&self) -> Vec<Refusal> {
        let mut built: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut dest: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, name) in self.built_modules.iter().enumerate() {
            if name.is_empty() {
                continue; // refused on its own
            }
            let mut loc = self.built_locations.get(i).cloned().unwrap_or_default();
            if !loc.is_empty() && !loc.ends_with('/') {
                loc.push('/');
            }
            built.entry(format!("{loc}{name}")).or_default().push(i);
            let d = self
                .dest_names
                .get(i)
                .filter(|d| !d.is_empty())
                .unwrap_or(name);
            dest.entry(d.clone()).or_default().push(i);
        }
        let mut out: Vec<Refusal> = built
            .into_iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(name, indices)| Refusal::DuplicateBuilt { name, indices })
            .collect();
        out.extend(
            dest.into_iter()
                .filter(|(_, v)| v.len() > 1)
                .map(|(name, indices)| Refusal::DuplicateDest { name, indices }),
        );
        out
    }

    /// Refuses the patches for this kernel that are not in the source's `patches/` directory,
    /// as dkms's build does before it runs anything. `conf` is this file's path.
    fn refuse_absent_patches(&mut self, conf: &Path) {
        let dir = conf.parent().unwrap_or(Path::new("/")).join("patches");
        for p in &self.kernel_patches {
            // dkms looks for `patches/$p`: an absolute PATCH is still under patches/.
            if !dir.join(p.trim_start_matches('/')).is_file() {
                self.refusals
                    .push(Refusal::PatchMissing { name: p.clone() });
            }
        }
    }
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
