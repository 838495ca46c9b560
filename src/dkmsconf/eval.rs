//! The one evaluator of dkms.conf files: `dkmsconf.sh`, a bash script that sources each file
//! per kernel in a subshell with the variables dkms sets, then runs an emitter function that
//! writes what the caller wants to know, NUL-separated on a private file descriptor. Generic:
//! the caller names the emitter (the planner's raw directives here, status's in
//! [`crate::status`]) and reads the records back; one bash process serves a whole batch of units,
//! and a unit that hangs is stopped without holding the rest.

use crate::system::trees::Trees;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The one evaluator of dkms.conf files (see the file itself for its protocol), shared with
/// [`crate::status`].
pub(crate) const EVALUATOR: &str = include_str!("dkmsconf.sh");

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
    /// `Source` units of one file each, sourced one after another in one subshell: only for
    /// files that [`crate::dkmsconf::once::shareable`] accepts with the emitter's `unset`.
    Group(Vec<Unit<'a>>),
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
    /// Sourcing unit `id` for `kernel` ended the evaluator itself (a `kill $$`: `why`, its
    /// signal or exit status); no other unit of `id` was run, the others went on in a new one.
    Ended {
        id: usize,
        kernel: String,
        why: String,
    },
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
                ended,
            } => {
                out.extend(records);
                let hung = |u: &&Unit| matches!(u, Unit::Source { id: i, kernel: k, .. } if *i == id && *k == kernel);
                let at = rest.iter().position(hung).map_or(rest.len(), |p| p + 1);
                rest = rest[at..]
                    .iter()
                    .copied()
                    .filter(|u| unit_id(u) != id)
                    .collect();
                out.push(match ended {
                    None => Record::TimedOut { id, kernel },
                    Some(why) => Record::Ended { id, kernel, why },
                });
            }
        }
    }
}

fn unit_id(u: &Unit) -> usize {
    match u {
        Unit::Check { id, .. } | Unit::Source { id, .. } => *id,
        // Its files cannot hang (they run no command).
        Unit::Group(_) => usize::MAX,
    }
}

/// One unit's words on the evaluator's command line (see dkmsconf.sh).
fn unit_args(cmd: &mut Command, u: &Unit) {
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
        Unit::Group(units) => {
            cmd.arg("group").arg(units.len().to_string());
            for u in units {
                unit_args(cmd, u);
            }
        }
    }
}

/// How one evaluator process ended.
enum Batch {
    Done(Vec<Record>),
    /// Killed while it sourced unit `id` for `kernel`, after `records`; or it ended by itself
    /// there (`ended`: how), which only a sourced file can have made it do.
    Hung {
        records: Vec<Record>,
        id: usize,
        kernel: String,
        ended: Option<String>,
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
        unit_args(&mut cmd, u);
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
        if let Some(hung) = unfinished(&bytes, None) {
            return Ok(hung);
        }
        return Err(format!(
            "the evaluator gave no answer for {} s: stopped",
            UNIT_LIMIT.as_secs()
        ));
    }
    if !out.status.success() {
        // Ended in the middle of a unit: that file did it (`kill $$`); the others go on.
        let why = match (out.status.code(), out.status.signal()) {
            (_, Some(sig)) => format!("killed by {}", crate::os::interrupt::name(sig)),
            (Some(code), _) => format!("exit status {code}"),
            _ => out.status.to_string(),
        };
        if let Some(ended) = unfinished(&bytes, Some(why)) {
            return Ok(ended);
        }
        return Err(out.errors.text_up_to(1 << 16).trim().to_string());
    }
    Ok(Batch::Done(parse_records(&bytes)))
}

/// The records of a stream that ends inside a `source` unit (`@source ID KERNEL`, no
/// `@output`): the ones before it, and that unit's id and kernel.
fn unfinished(bytes: &[u8], ended: Option<String>) -> Option<Batch> {
    let p = bytes
        .windows(8)
        .rposition(|w| w == b"@source\0")
        .filter(|&p| p == 0 || bytes[p - 1] == 0)?;
    let tail = String::from_utf8_lossy(&bytes[p..]);
    let mut f = tail.split('\0').skip(1);
    let id = f.next().and_then(|i| i.parse().ok())?;
    let kernel = f.next().map(str::to_string)?;
    if tail.contains("\0@output\0") {
        return None;
    }
    Some(Batch::Hung {
        records: parse_records(&bytes[..p]),
        id,
        kernel,
        ended,
    })
}

/// Turns the evaluator's NUL-separated records into [`Record`]s.
pub(crate) fn parse_records(bytes: &[u8]) -> Vec<Record> {
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
