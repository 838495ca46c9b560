//! `dkms-hook preflight`: the trial before a transaction ([`crate::preflight`]), and the
//! preflight's own child that runs it in a view of the system after the transaction
//! ([`view`]).

use crate::commands::{load_trees_saying, lock, read_targets, Exit};
use crate::system::kernel;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `preflight` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The system root: absolute, normalised, a directory.
    pub root: PathBuf,
    /// `--package`: the transaction's package files, absolute (empty: found from pacman).
    pub packages: Vec<PathBuf>,
    /// `-j`, when given.
    pub jobs: Option<usize>,
    pub job_timeout: Option<Duration>,
}

/// Never fails for its own trouble or the system's (bash that does not run, a lock it cannot
/// take): pacman (AbortOnFail) would abort the transaction for it. Such trouble is
/// one warning, and the install hook after the transaction says it again, as it builds.
pub fn run(cfg: &Config) -> Result<Exit> {
    match check(cfg) {
        Ok(exit) => Ok(exit),
        Err(e) => {
            println!(
                "warning: preflight: {} (not checked; the install hook builds after the \
                 transaction as usual)",
                format!("{e:#}").replace('\n', "; ")
            );
            Ok(Exit::Ok)
        }
    }
}

fn check(cfg: &Config) -> Result<Exit> {
    let trees = load_trees_saying(&cfg.root, |w| println!("warning: preflight: {w}"))?;
    let text = read_targets(None)?;
    trial(cfg, &trees, true, |trees, opts, out| {
        crate::preflight::run(trees, opts, &text, out)
    })
}

/// `dkms-hook prebuild`: the trial of the upgrades the sync databases offer, ahead of the
/// transaction that installs them ([`crate::preflight::prebuild`]).
pub fn prebuild(cfg: &Config) -> Result<Exit> {
    let trees = load_trees_saying(&cfg.root, |w| println!("warning: prebuild: {w}"))?;
    let pacman = crate::preflight::prebuild::pacman_program();
    // It takes the run lock itself, only to build (its downloads keep no hook waiting).
    trial(cfg, &trees, false, |trees, opts, out| {
        crate::preflight::prebuild::run(trees, opts, &pacman, out)
    })
}

/// Runs a trial (`go`), under the run lock when `locked`, with the options of `cfg`.
fn trial(
    cfg: &Config,
    trees: &crate::system::trees::Trees,
    locked: bool,
    go: impl FnOnce(
        &crate::system::trees::Trees,
        &crate::preflight::Options,
        &mut dyn std::io::Write,
    ) -> u8,
) -> Result<Exit> {
    if !crate::commands::is_root() {
        anyhow::bail!(
            "the preflight and the prebuild need root (they mount the view of the system they judge)"
        );
    }
    // Its scratch directory is one fixed place that each run empties: one at a time too.
    let _lock = match locked {
        true => Some(lock(trees)?),
        false => None,
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = crate::preflight::Options {
        packages: cfg.packages.clone(),
        env_preflight: std::env::var(crate::system::config::PREFLIGHT_ENV).ok(),
        proc_modules: PathBuf::from(crate::preflight::essential::PROC_MODULES),
        running: kernel::running_release(),
        arch: kernel::host_arch(),
        jobs: cfg.jobs.unwrap_or(cpus).max(1),
        cpus,
        job_timeout: cfg.job_timeout,
        program: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/bin/dkms-hook")),
    };
    let out = &mut std::io::stdout();
    Ok(match go(trees, &opts, out) {
        crate::preflight::EXIT_ABORT => Exit::Failed,
        _ => Exit::Ok,
    })
}

/// The preflight's child (`preflight-view REQUEST`): the view, the trial, the outcome file.
pub fn view(request: &Path) -> Exit {
    match crate::preflight::trial::run_child(request) {
        0 => Exit::Ok,
        _ => Exit::Usage,
    }
}
