//! The `dkms-hook` command line: parse, validate, build a request, then run one mode.
//!
//! The core never sees clap types: this file turns arguments (defined in cli.rs, which build.rs
//! shares for the completions and the man page) into a [`Request`] and a [`RunConfig`], and maps
//! outcomes to cli.rs's exit codes. Modules named on the command line become the same targets
//! pacman's paths on stdin would have been.

use anyhow::{bail, Context, Result};
use clap::FromArgMatches;
use cli::{Cli, Cmd, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use dkms_hook::execute::executor::DkmsExecutor;
use dkms_hook::keep::{self as kept, arriving};
use dkms_hook::plan::inventory::{Inventory, SourceSelection};
use dkms_hook::plan::names::ModuleSpec;
use dkms_hook::plan::targets::Targets;
use dkms_hook::plan::{self, Mode, Request};
use dkms_hook::report::reporter::{Reporter, Style};
use dkms_hook::report::timings::Timings;
use dkms_hook::run::runner::{self, Limits};
use dkms_hook::status;
use dkms_hook::system::dkms::Dkms;
use dkms_hook::system::dkms_tree::DkmsTree;
use dkms_hook::system::kernel;
use dkms_hook::system::trees::{display_under, normalize, Trees, TreesError};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

mod cli;

fn main() -> ExitCode {
    let cli = match cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    if let Err(e) = dkms_hook::os::interrupt::install() {
        eprintln!("dkms-hook: error: cannot handle signals: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let result = run(cli);
    // Stopped by a signal: the shell's status for it, whatever the mode had come to.
    if let Some(sig) = dkms_hook::os::interrupt::global().signal() {
        if let Err(e) = &result {
            eprintln!("dkms-hook: error: {e:#}");
        }
        return ExitCode::from(dkms_hook::os::interrupt::exit_code(sig));
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("dkms-hook: error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn run(cli: Cli) -> Result<u8> {
    let runs = matches!(
        cli.command,
        None | Some(Cmd::Install { .. } | Cmd::Remove { .. })
    );
    if cli.json && !(matches!(cli.command, Some(Cmd::Status)) || (runs && cli.dry_run)) {
        bail!(
            "--json: only with `status`, or with `--dry-run` of a run (bare, install, remove): \
             a run reports as it goes"
        );
    }
    if cli.timings.is_some() && (cli.dry_run || !runs) {
        bail!("--timings: only for a run (bare, install or remove), not a dry run or a report");
    }
    if let Some(Cmd::PreflightView { request }) = &cli.command {
        return Ok(dkms_hook::preflight::trial::run_child(request));
    }
    if let Some(Cmd::Lint { files }) = &cli.command {
        let outcome = dkms_hook::lint::run(files, &mut std::io::stdout(), &mut std::io::stderr())?;
        return Ok(outcome.code());
    }
    let root = absolute(&cli.root)?;
    if !root.is_dir() {
        bail!("--root {}: not a directory", root.display());
    }
    let trees = Trees::load(&root).map_err(|e| on_the_system(&root, e))?;
    if let Some(Cmd::Status) = cli.command {
        // What dkms status prints on stdout, and on stderr what it would say there; with -k,
        // only those kernels' lines.
        let report = status::report(&trees, &status::Flavour::detect());
        // A kernel that is neither installed nor named by any line is a typo: refuse it, as
        // the other modes do, rather than print only the kernel-less lines and exit 0.
        for k in &cli.kernels {
            let known = trees.install.join(k).is_dir()
                || report.items.iter().any(|i| i.kernel.as_ref() == Some(k));
            if !known {
                bail!(
                    "-k {k}: no such kernel under {}, nor in the dkms tree",
                    trees.display(&trees.install)
                );
            }
        }
        stopped("reading the dkms tree")?;
        let report = report.only_kernels(&cli.kernels);
        if cli.json {
            quietly_when_closed(print_lines([dkms_hook::status::json(&report.items)]))?;
        } else {
            quietly_when_closed(print_lines(&report.lines))?;
        }
        for e in &report.errors {
            eprintln!("{e}");
        }
        return Ok(EXIT_OK);
    }
    if let Some(Cmd::Orphans { remove }) = cli.command {
        // --dry-run lists what --remove would delete, and deletes nothing.
        return orphans(&trees, remove && !cli.dry_run, &cli.kernels);
    }
    let job_timeout = (cli.job_timeout > 0).then(|| Duration::from_secs(cli.job_timeout));
    if let Some(Cmd::Preflight { packages }) = &cli.command {
        let text = read_targets(None)?;
        // Its scratch directory is one fixed place that each run empties: one at a time too.
        let _lock = lock(&trees)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let opts = dkms_hook::preflight::Options {
            packages: packages
                .iter()
                .map(|p| absolute(p))
                .collect::<Result<_>>()?,
            env_preflight: std::env::var(dkms_hook::system::config::PREFLIGHT_ENV).ok(),
            proc_modules: PathBuf::from(dkms_hook::preflight::essential::PROC_MODULES),
            running: kernel::running_release(),
            arch: kernel::host_arch(),
            jobs: cli.jobs.unwrap_or(cpus).max(1),
            cpus,
            job_timeout,
            program: std::env::current_exe()
                .unwrap_or_else(|_| PathBuf::from("/usr/bin/dkms-hook")),
        };
        let out = &mut std::io::stdout();
        return Ok(dkms_hook::preflight::run(&trees, &opts, &text, out));
    }
    let (mode, named, packages) = match &cli.command {
        Some(Cmd::Install { modules }) => (Mode::Install, modules.as_slice(), &[][..]),
        Some(Cmd::Remove { modules, packages }) => {
            (Mode::Remove, modules.as_slice(), packages.as_slice())
        }
        _ => (Mode::All, &[][..], &[][..]),
    };
    let named: Vec<ModuleSpec> = named.iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let jobs = match cli.jobs {
        Some(0) => bail!("--jobs 0: need at least one job at once"),
        Some(n) => n,
        None => cpus,
    };
    if !cli.dry_run && unsafe { libc::geteuid() } != 0 {
        bail!("changing DKMS modules needs root (try --dry-run to see the plan, or `status`)");
    }
    let dkms = Dkms::new(&trees);
    if !cli.dry_run {
        // A dkms that cannot run is a configuration error, said once before anything starts,
        // not a failure of every job.
        dkms.check().map_err(anyhow::Error::msg)?;
    }
    // Held from before the trees are read until the run ends.
    let _lock = if cli.dry_run {
        None
    } else {
        Some(lock(&trees)?)
    };
    // What a run that died midway left (SIGKILL, a power loss) is made whole first.
    let mut recovery_failed = false;
    if !cli.dry_run {
        let exec = dkms_hook::execute::executor::DkmsExecutor {
            dkms: dkms.clone(),
            arch: kernel::host_arch(),
            force: false,
            job_timeout: None,
        };
        let recovery = dkms_hook::execute::settle::recover(&exec.worker());
        for line in &recovery.lines {
            eprintln!("{line}");
        }
        recovery_failed = recovery.failed;
    }
    if mode != Mode::Remove && !cli.dry_run {
        for line in kept::after::restore_returned(&trees) {
            eprintln!("{line}");
        }
    }
    let mut targets = if mode == Mode::All {
        Targets::default()
    } else if mode == Mode::Remove && !named.is_empty() {
        // What dkms has registered, whether or not its sources are still there.
        Targets::to_remove(&named, &DkmsTree::read(&trees.dkms), &trees)?
    } else if !named.is_empty() {
        Targets::default() // resolved against the module sources below
    } else {
        let text = read_targets(Some(if mode == Mode::Remove {
            "remove"
        } else {
            "install"
        }))?;
        let rel = |p: &Path| p.strip_prefix(&trees.root).map(Path::to_path_buf);
        Targets::parse(
            &text,
            &rel(&trees.source).unwrap_or_else(|_| PathBuf::from("usr/src")),
            &rel(&trees.install).unwrap_or_else(|_| PathBuf::from("usr/lib/modules")),
        )
    };
    let arch = kernel::host_arch();
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
    let inv = Inventory::load(&trees, &arch, &selection);
    if mode == Mode::Install && !named.is_empty() {
        targets = Targets::to_install(&named, &inv)?;
        // Asked by hand for a kernel that cannot get them: said, not a quiet exit 0.
        for k in &cli.kernels {
            if inv.kernel(k).is_some_and(|k| k.headers.is_none()) {
                bail!(
                    "-k {k}: no headers at {}: no module can be built for it",
                    trees.display(&trees.kernel_dir(k).join("build"))
                );
            }
        }
    }
    for k in &cli.kernels {
        let known = inv.kernel(k).is_some() || targets.kernels.contains_key(k);
        if !known {
            bail!(
                "-k {k}: no such kernel under {}",
                trees.display(&trees.install)
            );
        }
    }
    let mut kept_notes = Vec::new();
    if mode == Mode::Remove && cli.kernels.is_empty() && !targets.sources.is_empty() {
        let arriving = if packages.is_empty() {
            arriving::from_parent()
        } else {
            let files: Vec<PathBuf> = packages
                .iter()
                .map(|p| absolute(p))
                .collect::<Result<_>>()?;
            arriving::scan(&files)
        };
        kept_notes = kept::before::before_removal(&inv, &mut targets, &arriving, !cli.dry_run);
    }
    let req = Request {
        mode,
        targets,
        kernels: cli.kernels.clone(),
        force: cli.force,
        rebuild: dkms_hook::execute::journal::rebuild_pairs(&trees),
    };
    let mut plan = plan::plan(&req, &inv);
    plan.notes.extend(kept_notes);
    if mode != Mode::Remove {
        // What the preflight of this transaction said already is not said twice.
        let said = dkms_hook::system::prebuilt::Store::at(&trees.root).said_notes();
        plan.notes.retain(|n| !said.contains(n));
    }
    stopped("reading the module sources")?;
    if cli.dry_run {
        let text = if cli.json {
            dkms_hook::report::json::plan(&plan, jobs)
        } else {
            dkms_hook::report::dry_run::text(&plan, jobs)
        };
        quietly_when_closed(print_lines(text.lines()))?;
        return Ok(if plan.has_failures() {
            EXIT_FAILED
        } else {
            EXIT_OK
        });
    }
    // Opened before anything runs: a FILE that cannot be written is said before any change.
    let timings_file = match &cli.timings {
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
    if mode == Mode::Remove {
        reporter = reporter.removing();
    }
    let cfg = DkmsExecutor {
        dkms,
        arch,
        force: cli.force,
        job_timeout,
    };
    let limits = Limits { jobs, cpus };
    // Builds side by side must not each make a signing key: the one dkms would make, first.
    let headers: Vec<&Path> = plan
        .jobs
        .iter()
        .filter_map(|j| j.headers.as_deref())
        .collect();
    if !headers.is_empty() {
        match dkms_hook::system::signing::ensure_key(&trees, &cfg.dkms, &headers) {
            Ok(dkms_hook::system::signing::Key::Made(key)) => {
                println!(
                    "  made the module signing key {key}, as dkms would on its first signed build"
                )
            }
            Ok(dkms_hook::system::signing::Key::Unchanged) => {}
            Err(e) => eprintln!("dkms-hook: warning: {e}"),
        }
    }
    let mut timings = Timings::new();
    let summary = runner::run(&plan, limits, &cfg, &mut |e| {
        timings.record(e);
        reporter.handle(e)
    });
    let mut settle_failed = false;
    if mode == Mode::Remove {
        kept::after::remove_orphan_copies(&trees);
    } else {
        let lines = kept::after::settle(&trees, &cfg.dkms);
        settle_failed = lines.iter().any(|l| l.starts_with("error:"));
        // After the summary too, a reader gone away (`dkms-hook | head -1`) ends the output.
        if let Err(e) = quietly_when_closed(print_lines(&lines)) {
            eprintln!("dkms-hook: error: {e:#}");
        }
        // The preflight's builds serve one transaction: what this run did not install goes
        // (an install run ends the transaction; the remove hook runs between the two).
        let store = dkms_hook::system::prebuilt::Store::at(&trees.root);
        if let Err(e) = store.clear() {
            eprintln!("dkms-hook: warning: {}: {e}", trees.display(&store.dir));
        }
    }
    let mut code = if summary.failed > 0 || settle_failed || recovery_failed {
        EXIT_FAILED
    } else {
        EXIT_OK
    };
    if let Some((mut file, path)) = timings_file {
        if let Err(e) = file.write_all(timings.html().as_bytes()) {
            // The run happened: its exit status stands, but not as a success.
            eprintln!("dkms-hook: error: --timings {}: {e}", path.display());
            code = EXIT_FAILED;
        }
    }
    Ok(code)
}

/// `orphans`: one path a line (a left-over kernel directory with a trailing `/`), or with
/// `--remove` what was removed and the kernels depmod ran for; with `-k`, only those kernels.
fn orphans(trees: &Trees, remove: bool, kernels: &[String]) -> Result<u8> {
    if remove && unsafe { libc::geteuid() } != 0 {
        bail!(
            "orphans --remove: deleting module files needs root (without --remove, it lists them)"
        );
    }
    // Held while it lists and removes: what it lists is what a run left, not what one is doing.
    let _lock = if remove { Some(lock(trees)?) } else { None };
    let mut inv = Inventory::load(trees, &kernel::host_arch(), &SourceSelection::All);
    for k in kernels {
        if inv.kernel(k).is_none() {
            bail!(
                "-k {k}: no such kernel under {}",
                trees.display(&trees.install)
            );
        }
    }
    if !kernels.is_empty() {
        inv.kernels.retain(|k| kernels.contains(&k.release));
    }
    let found = dkms_hook::status::orphans::find(&inv);
    let shown = |p: &Path| trees.display(p).into_owned();
    if !remove {
        let lines = found
            .files
            .iter()
            .map(|f| shown(f))
            .chain(found.kernels.iter().map(|k| format!("{}/", shown(k))));
        quietly_when_closed(print_lines(lines))?;
        return Ok(EXIT_OK);
    }
    let done = dkms_hook::status::orphans::remove(&inv, &found);
    for k in &done.kept {
        eprintln!(
            "dkms-hook: note: {} is no longer an orphan (dkms owns it again): kept",
            shown(k)
        );
    }
    let lines = done
        .removed
        .iter()
        .map(|p| format!("removed {}", shown(p)))
        .chain(done.depmod.iter().map(|k| format!("depmod {k}")));
    quietly_when_closed(print_lines(lines))?;
    for e in &done.errors {
        eprintln!("dkms-hook: error: {e}");
    }
    Ok(if done.errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

/// An error when a stopping signal came (the children it reached have cut their work short).
fn stopped(during: &str) -> Result<()> {
    match dkms_hook::os::interrupt::global().signal() {
        Some(sig) => bail!(
            "interrupted by {} while {during}",
            dkms_hook::os::interrupt::name(sig)
        ),
        None => Ok(()),
    }
}

/// Takes the one-run-at-a-time lock, saying so when another run holds it.
fn lock(trees: &Trees) -> Result<dkms_hook::os::lock::RunLock> {
    let path = trees.root.join(dkms_hook::os::lock::LOCK_FILE);
    let lock = dkms_hook::os::lock::acquire(&path, &trees.display(&path), &mut |path, pid| {
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
fn read_targets(command: Option<&str>) -> Result<Vec<u8>> {
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
    // Bytes: pacman's paths are (see targets::read_lines).
    let mut text = Vec::new();
    stdin
        .lock()
        .read_to_end(&mut text)
        .context("reading targets from stdin")?;
    Ok(text)
}

/// Writes lines to stdout.
fn print_lines<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for line in lines {
        writeln!(out, "{}", line.as_ref())?;
    }
    out.flush()
}

/// A reader that stopped reading (`dkms-hook status | head -1`) ends the output, not the run
/// with an error: the rest is not wanted, and the exit status stays what the run decides.
fn quietly_when_closed(r: std::io::Result<()>) -> Result<()> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

/// A framework.conf that does not evaluate, named as on the system under `root` (as every path
/// dkms-hook shows), in bash's words too.
fn on_the_system(root: &Path, e: TreesError) -> anyhow::Error {
    match e {
        TreesError::Framework { path, message } if root != Path::new("/") => {
            let message = message.replace(&format!("{}/", root.display()), "/");
            TreesError::Framework {
                path: PathBuf::from(display_under(root, &path).into_owned()),
                message,
            }
            .into()
        }
        e => e.into(),
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .context("current directory")?
            .join(p)
    };
    Ok(normalize(&p))
}
