//! One file per mode of the command line, each taking its validated configuration (built from
//! the arguments at the edge, in the binary's args.rs) and returning how it ended: [`run`] (bare,
//! install, remove: the pipeline from targets to the report), [`status`], [`orphans`],
//! [`preflight`], [`lint`]. What they share is here: loading the trees, the run lock, reading
//! pacman's targets, writing lines to stdout.
//!
//! Invariants: a command never sees clap's types, and knows no exit code's number (main.rs maps
//! [`Exit`]); it starts nothing that changes the system before it has said every usage error it
//! can find (a kernel that does not exist, no root, a dkms that cannot run).

pub mod lint;
pub mod orphans;
pub mod preflight;
pub mod run;
pub mod status;

use crate::os::lock::{self, RunLock};
use crate::system::trees::{Trees, FRAMEWORK_LIMIT};
use anyhow::{bail, Context, Result};
use std::io::{IsTerminal, Read, Write};
use std::path::Path;

/// How a mode ended (main.rs gives each its exit status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything planned succeeded; the preflight lets the transaction go on; lint found no
    /// error.
    Ok,
    /// Something failed; the preflight aborts the transaction; lint found an error.
    Failed,
    /// Nothing was done: a usage error (lint: a file that is not a package).
    Usage,
}

/// The trees under `root`; what reading framework.conf said (a file that does not parse, that
/// exits, that hangs) is a warning on stderr, see [`load_trees_saying`].
pub fn load_trees(root: &Path) -> Result<Trees> {
    load_trees_saying(root, |w| eprintln!("dkms-hook: warning: {w}"))
}

/// The trees under `root`, each warning of their framework files handed to `say` once, the file
/// named as on the system under `root` (as every path dkms-hook shows), in bash's words too.
pub fn load_trees_saying(root: &Path, mut say: impl FnMut(&str)) -> Result<Trees> {
    let loaded = Trees::read(root, FRAMEWORK_LIMIT)?;
    for w in &loaded.warnings {
        let mut text = w.to_string();
        if root != Path::new("/") {
            text = text.replace(&format!("{}/", root.display()), "/");
        }
        say(&text);
    }
    Ok(loaded.trees)
}

/// An error when a stopping signal came (the children it reached have cut their work short).
pub fn stopped(during: &str) -> Result<()> {
    match crate::os::interrupt::global().signal() {
        Some(sig) => bail!(
            "interrupted by {} while {during}",
            crate::os::interrupt::name(sig)
        ),
        None => Ok(()),
    }
}

/// Takes the one-run-at-a-time lock of `trees`' root, saying so when another run holds it.
pub fn lock(trees: &Trees) -> Result<RunLock> {
    let path = trees.root.join(lock::LOCK_FILE);
    let lock = lock::acquire(&path, &trees.display(&path), &mut |path, pid| {
        let who = pid.map_or("another dkms-hook run".to_string(), |p| {
            format!("another dkms-hook run (pid {p})")
        });
        eprintln!("dkms-hook: waiting for {who} to finish: it holds {path}");
    })?;
    Ok(lock)
}

/// Reads pacman's NeedsTargets from stdin. Someone at a terminal is told what is awaited, so that
/// `dkms-hook install` typed without a module does not seem to hang.
/// `command` is the mode, said when it could take module names instead.
pub fn read_targets(command: Option<&str>) -> Result<Vec<u8>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let instead = command
            .map(|c| format!("; or name them: dkms-hook {c} MODULE[/VERSION]"))
            .unwrap_or_default();
        eprintln!(
            "dkms-hook: waiting for pacman's targets on stdin, one path a line (end with \
             Ctrl-D){instead}"
        );
    }
    // Bytes: pacman's paths are (see plan::targets::read_lines).
    let mut text = Vec::new();
    crate::os::interrupt::only_waiting(|| stdin.lock().read_to_end(&mut text))
        .context("reading targets from stdin")?;
    Ok(text)
}

/// Writes lines to stdout.
pub fn print_lines<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for line in lines {
        writeln!(out, "{}", line.as_ref())?;
    }
    out.flush()
}

/// A reader that stopped reading (`dkms-hook status | head -1`) ends the output, not the run
/// with an error: the rest is not wanted, and the exit status stays what the run decides.
pub fn quietly_when_closed(r: std::io::Result<()>) -> Result<()> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
