//! The `dkms-hook` command line: parse, validate, build a request, then run one mode.
//!
//! The core never sees clap types: this file turns arguments into a [`Request`] and a [`RunConfig`],
//! and maps outcomes to the exit codes below.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use dkms_hook::dkms::Dkms;
use dkms_hook::inventory::{Inventory, SourceSelection};
use dkms_hook::plan::{self, Mode, Request};
use dkms_hook::report::{self, Reporter, Style};
use dkms_hook::runner::{self, RunConfig};
use dkms_hook::targets::Targets;
use dkms_hook::timings::Timings;
use dkms_hook::trees::{normalize, Trees};
use dkms_hook::{kernel, status};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Everything planned succeeded (BUILD_EXCLUSIVE skips included).
const EXIT_OK: u8 = 0;
/// At least one job failed.
const EXIT_FAILED: u8 = 1;
/// Usage or configuration error: nothing was done.
const EXIT_USAGE: u8 = 2;

/// Builds, installs and removes DKMS modules for pacman: planned, ordered by BUILD_DEPENDS, run in
/// parallel, verified, and reported.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// The system root: trees are ROOT/usr/src, ROOT/var/lib/dkms, ROOT/usr/lib/modules (or what
    /// ROOT/etc/dkms/framework.conf says)
    #[arg(long, value_name = "DIR", default_value = "/", global = true)]
    root: PathBuf,
    /// Print the ordered plan and change nothing
    #[arg(long, global = true)]
    dry_run: bool,
    /// Jobs at once [default: number of CPUs]
    #[arg(short = 'j', long, value_name = "N", global = true)]
    jobs: Option<usize>,
    /// Only these kernels (repeatable)
    #[arg(short = 'k', long = "kernel", value_name = "KVER", global = true)]
    kernels: Vec<String>,
    /// Rebuild pairs that are already installed
    #[arg(long, global = true)]
    force: bool,
    /// With `status` or `--dry-run`: print one JSON document instead of text
    #[arg(long, global = true)]
    json: bool,
    /// After a run (bare, install, remove): write an HTML timeline of its jobs to FILE
    #[arg(long, value_name = "FILE", global = true)]
    timings: Option<PathBuf>,
    /// Fail a job (and kill its processes) still running after SECS seconds; 0: no limit
    #[arg(long, value_name = "SECS", default_value_t = 1800, global = true)]
    job_timeout: u64,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Hook mode: build and install for the module sources and kernels on stdin (pacman's NeedsTargets)
    Install,
    /// Hook mode: remove the module versions and kernels on stdin (pacman's NeedsTargets)
    Remove,
    /// One line per module version x kernel, in `dkms status`'s format
    Status,
    /// Check built -dkms packages against the DKMS packaging rules (namcap-style lines; exit 1 on
    /// an error, 2 for a file that is not a package)
    Lint {
        /// Package files (.pkg.tar.zst, .pkg.tar.xz, .pkg.tar.gz)
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// List module files dkms installed (under updates/dkms, or a dkms.conf's DEST_MODULE_LOCATION)
    /// that no dkms record owns any more, and kernel directories left with nothing else
    Orphans {
        /// Delete them, then run depmod for the kernels that remain (needs root)
        #[arg(long)]
        remove: bool,
    },
    /// Hook mode, before the transaction: trial-build for the headers and module sources on stdin
    /// (pacman's NeedsTargets), from the package files pacman downloaded; exit 1 when an essential
    /// module would not build (see /etc/dkms-hook.conf)
    Preflight {
        /// Package files that bring the targets (default: found from pacman's command line, or
        /// its sync databases and cache)
        #[arg(long = "package", value_name = "FILE")]
        packages: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    if let Err(e) = dkms_hook::interrupt::install() {
        eprintln!("dkms-hook: error: cannot handle signals: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let result = run(cli);
    // Stopped by a signal: the shell's status for it, whatever the mode had come to.
    if let Some(sig) = dkms_hook::interrupt::global().signal() {
        if let Err(e) = &result {
            eprintln!("dkms-hook: error: {e:#}");
        }
        return ExitCode::from(dkms_hook::interrupt::exit_code(sig));
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
    let runs = matches!(cli.command, None | Some(Cmd::Install | Cmd::Remove));
    if cli.json && !(matches!(cli.command, Some(Cmd::Status)) || (runs && cli.dry_run)) {
        bail!("--json: only with `status` or `--dry-run` (a run reports as it goes)");
    }
    if cli.timings.is_some() && (cli.dry_run || !runs) {
        bail!("--timings: only for a run (bare, install or remove), not a dry run or a report");
    }
    if let Some(Cmd::Lint { files }) = &cli.command {
        let outcome = dkms_hook::lint::run(files, &mut std::io::stdout(), &mut std::io::stderr())?;
        return Ok(outcome.code());
    }
    let root = absolute(&cli.root)?;
    if !root.is_dir() {
        bail!("--root {}: not a directory", root.display());
    }
    let trees = Trees::load(&root)?;
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
            quietly_when_closed(print_lines([dkms_hook::json::status(&report.items)]))?;
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
        let mut text = Vec::new();
        std::io::stdin()
            .read_to_end(&mut text)
            .context("reading targets from stdin")?;
        // Its scratch directory is one fixed place that each run empties: one at a time too.
        let _lock = lock(&trees)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let opts = dkms_hook::preflight::Options {
            packages: packages
                .iter()
                .map(|p| absolute(p))
                .collect::<Result<_>>()?,
            env_preflight: std::env::var(dkms_hook::config::PREFLIGHT_ENV).ok(),
            proc_modules: PathBuf::from(dkms_hook::preflight::essential::PROC_MODULES),
            running: kernel::running_release(),
            arch: kernel::host_arch(),
            jobs: cli.jobs.unwrap_or(cpus).max(1),
            cpus,
            job_timeout,
        };
        let out = &mut std::io::stdout();
        return Ok(dkms_hook::preflight::run(&trees, &opts, &text, out));
    }
    let mode = match cli.command {
        Some(Cmd::Install) => Mode::Install,
        Some(Cmd::Remove) => Mode::Remove,
        _ => Mode::All,
    };
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
    let targets = if mode == Mode::All {
        Targets::default()
    } else {
        let mut text = Vec::new();
        std::io::stdin()
            .read_to_end(&mut text)
            .context("reading targets from stdin")?;
        let rel = |p: &Path| p.strip_prefix(&trees.root).map(Path::to_path_buf);
        Targets::parse(
            &text,
            &rel(&trees.source).unwrap_or_else(|_| PathBuf::from("usr/src")),
            &rel(&trees.install).unwrap_or_else(|_| PathBuf::from("usr/lib/modules")),
        )
    };
    let arch = kernel::host_arch();
    let selection = match mode {
        Mode::Remove => {
            SourceSelection::Only(targets.sources.iter().map(|s| trees.root.join(s)).collect())
        }
        _ => SourceSelection::All,
    };
    let inv = Inventory::load(&trees, &arch, &selection);
    for k in &cli.kernels {
        let known = inv.kernel(k).is_some() || targets.kernels.contains_key(k);
        if !known {
            bail!(
                "-k {k}: no such kernel under {}",
                trees.display(&trees.install)
            );
        }
    }
    let req = Request {
        mode,
        targets,
        kernels: cli.kernels.clone(),
        force: cli.force,
    };
    let plan = plan::plan(&req, &inv);
    stopped("reading the module sources")?;
    if cli.dry_run {
        let text = if cli.json {
            dkms_hook::json::plan(&plan, jobs)
        } else {
            report::dry_run_text(&plan, jobs)
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
    let cfg = RunConfig {
        jobs,
        cpus,
        force: cli.force,
        arch,
        dkms,
        job_timeout,
    };
    let mut timings = Timings::new();
    let summary = runner::run(&plan, &cfg, &mut |e| {
        timings.record(e);
        reporter.handle(e)
    });
    if mode != Mode::Remove {
        // The preflight's builds serve one transaction: what this run did not install goes
        // (an install run ends the transaction; the remove hook runs between the two).
        let store = dkms_hook::prebuilt::Store::at(&trees.root);
        if let Err(e) = store.clear() {
            eprintln!("dkms-hook: warning: {}: {e}", trees.display(&store.dir));
        }
    }
    let mut code = if summary.failed > 0 {
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
    let found = dkms_hook::orphans::find(&inv);
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
    let done = dkms_hook::orphans::remove(trees, &found);
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
    match dkms_hook::interrupt::global().signal() {
        Some(sig) => bail!(
            "interrupted by {} while {during}",
            dkms_hook::interrupt::name(sig)
        ),
        None => Ok(()),
    }
}

/// Takes the one-run-at-a-time lock, saying so when another run holds it.
fn lock(trees: &Trees) -> Result<dkms_hook::lock::RunLock> {
    let lock = dkms_hook::lock::acquire(trees, &mut |path, pid| {
        let who = pid.map_or("another dkms-hook run".to_string(), |p| {
            format!("another dkms-hook run (pid {p})")
        });
        eprintln!("dkms-hook: waiting for {who} to finish: it holds {path}");
    })?;
    Ok(lock)
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
