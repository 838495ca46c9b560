//! A run: bare (every kernel up to date), `install` and `remove`, from pacman's targets on stdin
//! or from modules named by hand: the trees made whole after a run that died, the targets, the
//! inventory, the plan, then either the plan's text (`--dry-run`) or the run itself, reported as
//! it goes, followed by the build times kept for the next run's order ([`crate::system::history`])
//! and the settling of the kept versions (see [`crate::keep`]).

use crate::commands::{
    is_root, load_trees, lock, print_lines, quietly_when_closed, read_targets, stopped, Exit,
};
use crate::execute::executor::DkmsExecutor;
use crate::keep::{after, arriving, before};
use crate::plan::inventory::{Depth, Inventory, SourceSelection};
use crate::plan::names::ModuleSpec;
use crate::plan::targets::Targets;
use crate::plan::{self, Mode, Plan, Request};
use crate::report::reporter::{Reporter, Style};
use crate::report::timings::Timings;
use crate::run::events::Event;
use crate::run::runner::{self, Limits};
use crate::system::dkms::Dkms;
use crate::system::dkms_tree::DkmsTree;
use crate::system::kernel;
use crate::system::trees::Trees;
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a run was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The system root: absolute, normalised, a directory.
    pub root: PathBuf,
    pub mode: Mode,
    /// Modules named on the command line (none: pacman's targets on stdin, or a bare run).
    pub named: Vec<ModuleSpec>,
    /// `remove --package`: the transaction's package files, absolute.
    pub packages: Vec<PathBuf>,
    /// `-k`: only these kernels (empty: all).
    pub kernels: Vec<String>,
    pub force: bool,
    pub dry_run: bool,
    /// With `--dry-run`: the plan as JSON.
    pub json: bool,
    /// Jobs at once (at least one).
    pub jobs: usize,
    /// CPUs to share among concurrent makes.
    pub cpus: usize,
    pub job_timeout: Option<Duration>,
    /// `--timings FILE`.
    pub timings: Option<PathBuf>,
}

pub fn run(cfg: &Config) -> Result<Exit> {
    let trees = load_trees(&cfg.root)?;
    if !cfg.dry_run && !is_root() {
        bail!("changing DKMS modules needs root (try --dry-run to see the plan, or `status`)");
    }
    let dkms = Dkms::new(&trees);
    if !cfg.dry_run {
        // A dkms that cannot run is a configuration error, said once before anything starts,
        // not a failure of every job.
        dkms.check().map_err(anyhow::Error::msg)?;
    }
    // Held from before the trees are read until the run ends.
    let _lock = match cfg.dry_run {
        true => None,
        false => Some(lock(&trees)?),
    };
    let mut dkms = dkms;
    if !cfg.dry_run {
        // One make jobserver for every build of the run: its wrapper is written under the lock.
        if let Err(e) = dkms.share_make(cfg.cpus) {
            eprintln!("dkms-hook: warning: {e}");
        }
    }
    let arch = kernel::host_arch();
    let exec = DkmsExecutor {
        dkms,
        arch: arch.clone(),
        force: cfg.force,
        job_timeout: cfg.job_timeout,
    };
    // What a run that died midway left (SIGKILL, a power loss) is made whole first.
    let mut recovery_failed = false;
    if !cfg.dry_run {
        let recovery = crate::execute::settle::recover(
            &DkmsExecutor {
                force: false,
                job_timeout: None,
                ..exec.clone()
            }
            .worker(),
        );
        for line in &recovery.lines {
            eprintln!("{line}");
        }
        recovery_failed = recovery.failed;
    }
    if cfg.mode != Mode::Remove && !cfg.dry_run {
        for line in after::restore_returned(&trees) {
            eprintln!("{line}");
        }
    }
    let plan = plan_run(cfg, &trees, &arch)?;
    stopped("reading the module sources")?;
    if cfg.dry_run {
        // As many at once as the run would start: never more than there are jobs.
        let at_once = cfg.jobs.min(plan.jobs.len().max(1));
        let text = match cfg.json {
            true => crate::report::json::plan(&plan, at_once),
            false => {
                let mut text = crate::report::dry_run::text(&plan, at_once);
                // What a prebuild made for a kernel not installed yet (not a job of this plan).
                let store = crate::system::prebuilt::Store::at(&trees.root);
                for line in store.ready_for_kernels_not_installed(&trees.install) {
                    text.push_str(&format!("note: {line}\n"));
                }
                text
            }
        };
        quietly_when_closed(print_lines(text.lines()))?;
        return Ok(match plan.has_failures() {
            true => Exit::Failed,
            false => Exit::Ok,
        });
    }
    let code = execute(cfg, &trees, &exec, &plan)?;
    Ok(match recovery_failed {
        true => Exit::Failed,
        false => code,
    })
}

/// The targets, the inventory and the plan of the run (with the remove hook's keeping of an
/// upgraded module's old version, and what a preflight said already left unsaid).
fn plan_run(cfg: &Config, trees: &Trees, arch: &str) -> Result<Plan> {
    let (mode, named) = (cfg.mode, &cfg.named);
    let mut targets = if mode == Mode::All {
        Targets::default()
    } else if mode == Mode::Remove && !named.is_empty() {
        // What dkms has registered, whether or not its sources are still there.
        Targets::to_remove(named, &DkmsTree::read(&trees.dkms), trees)?
    } else if !named.is_empty() {
        Targets::default() // resolved against the module sources below
    } else {
        let text = read_targets(Some(match mode {
            Mode::Remove => "remove",
            _ => "install",
        }))?;
        let rel = |p: &Path| p.strip_prefix(&trees.root).map(Path::to_path_buf);
        Targets::parse(
            &text,
            &rel(&trees.source).unwrap_or_else(|_| PathBuf::from("usr/src")),
            &rel(&trees.install).unwrap_or_else(|_| PathBuf::from("usr/lib/modules")),
        )
    };
    let selection = match mode {
        // What leaves, and what stays installed: the modules that BUILD_DEPENDS on what
        // leaves are named (see plan's `note_dependents_left`).
        Mode::Remove => {
            let tree = DkmsTree::read(&trees.dkms);
            let installed = tree.modules.values().flat_map(|e| {
                e.installed
                    .values()
                    .filter_map(|v| e.versions.get(v)?.source.clone())
            });
            SourceSelection::Only(
                targets
                    .sources
                    .iter()
                    .map(|s| trees.root.join(s))
                    .chain(installed)
                    .collect(),
            )
        }
        _ => SourceSelection::All,
    };
    let wanted: BTreeSet<PathBuf> = targets.sources.iter().map(|s| trees.root.join(s)).collect();
    let depth = match selection {
        SourceSelection::Only(_) => Depth::Every,
        SourceSelection::All => Depth::Newest(&wanted),
    };
    let mut inv = Inventory::load(trees, arch, &selection, depth);
    if mode == Mode::Install && !named.is_empty() {
        targets = Targets::to_install(named, &inv)?;
        inv.complete(&targets.sources.iter().map(|s| trees.root.join(s)).collect());
        // Asked by hand for a kernel that cannot get them: said, not a quiet exit 0.
        for k in &cfg.kernels {
            if inv.kernel(k).is_some_and(|k| k.headers.is_none()) {
                bail!(
                    "-k {k}: no headers at {}: no module can be built for it",
                    trees.display(&trees.kernel_dir(k).join("build"))
                );
            }
        }
    }
    for k in &cfg.kernels {
        let known = inv.kernel(k).is_some() || targets.kernels.contains_key(k);
        if !known {
            bail!(
                "-k {k}: no such kernel under {}",
                trees.display(&trees.install)
            );
        }
    }
    let mut kept_notes = Vec::new();
    if mode == Mode::Remove && cfg.kernels.is_empty() && !targets.sources.is_empty() {
        let arriving = match cfg.packages.is_empty() {
            true => arriving::from_parent(),
            false => arriving::scan(&cfg.packages),
        };
        kept_notes = before::before_removal(&inv, &mut targets, &arriving, !cfg.dry_run);
    }
    let req = Request {
        mode,
        targets,
        kernels: cfg.kernels.clone(),
        force: cfg.force,
        rebuild: crate::execute::journal::rebuild_pairs(trees),
    };
    let mut plan = plan::plan(&req, &inv);
    plan.notes.extend(kept_notes);
    if mode != Mode::Remove {
        // What the preflight of this transaction said already is not said twice.
        let said = crate::system::prebuilt::Store::at(&trees.root).said_notes();
        plan.notes.retain(|n| !said.contains(n));
    }
    Ok(plan)
}

/// Keeps what this run's builds took for the next runs' order (see [`crate::system::history`]);
/// a history that cannot be written is a warning: the run happened.
fn learn(trees: &Trees, learned: &[(crate::plan::JobInfo, Duration)]) {
    if learned.is_empty() {
        return;
    }
    // Read again: the plan does not carry the inventory's copy (the run lock is held).
    let mut history = crate::system::history::History::load(trees);
    for (job, took) in learned {
        if let Some(k) = &job.kernel {
            history.learn(&job.module, k, *took);
        }
    }
    if let Err(e) = history.save(trees) {
        eprintln!("dkms-hook: warning: {e}");
    }
}

/// Runs `plan`, reported as it goes, then settles the kept versions (or, after a removal,
/// deletes the kept copies nothing points at) and empties the preflight's store.
fn execute(cfg: &Config, trees: &Trees, exec: &DkmsExecutor, plan: &Plan) -> Result<Exit> {
    // Opened before anything runs: a FILE that cannot be written is said before any change.
    let timings_file = match &cfg.timings {
        Some(p) => Some((
            std::fs::File::create(p).with_context(|| format!("--timings {}", p.display()))?,
            p,
        )),
        None => None,
    };
    let stdout = std::io::stdout();
    let style = Style::detect(
        stdout.is_terminal(),
        std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
    );
    let mut reporter = Reporter::new(Box::new(stdout), style).under_root(&trees.root);
    if cfg.mode == Mode::Remove {
        reporter = reporter.removing();
    }
    // Builds side by side must not each make a signing key: the one dkms would make, first.
    let headers: Vec<&Path> = plan
        .jobs
        .iter()
        .filter_map(|j| j.headers.as_deref())
        .collect();
    if !headers.is_empty() {
        match crate::system::signing::ensure_key(trees, &exec.dkms, &headers) {
            Ok(crate::system::signing::Key::Made(key)) => {
                println!(
                    "  made the module signing key {key}, as dkms would on its first signed build"
                )
            }
            Ok(crate::system::signing::Key::Unchanged) => {}
            Err(e) => eprintln!("dkms-hook: warning: {e}"),
        }
    }
    let limits = Limits {
        jobs: cfg.jobs,
        cpus: cfg.cpus,
    };
    let mut timings = Timings::new();
    let mut learned = Vec::new();
    let mut tally = runner::run(plan, limits, exec, &mut |e| {
        if let Some((job, took)) = crate::run::events::build_time(plan, e) {
            learned.push((job.clone(), took));
        }
        timings.record(e);
        reporter.handle(e)
    });
    learn(trees, &learned);
    if cfg.mode == Mode::Remove {
        after::remove_orphan_copies(trees);
    } else {
        // Said after the summary, and counted with the run's outcomes.
        for kept in after::settle(trees, &exec.dkms) {
            let event = Event::Kept(kept);
            tally.record(&event);
            reporter.handle(&event);
        }
        // What the preflight's (or a prebuild's) builds did for the kernels now installed is
        // done: those go; the builds for a kernel not installed yet stay.
        crate::system::prebuilt::Store::at(&trees.root).after_install(&trees.install);
    }
    let mut code = match tally.failed > 0 {
        true => Exit::Failed,
        false => Exit::Ok,
    };
    if let Some((mut file, path)) = timings_file {
        if let Err(e) = file.write_all(timings.html().as_bytes()) {
            // The run happened: its exit status stands, but not as a success.
            eprintln!("dkms-hook: error: --timings {}: {e}", path.display());
            code = Exit::Failed;
        }
    }
    Ok(code)
}
