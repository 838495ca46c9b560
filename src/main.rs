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
use dkms_hook::trees::{normalize, Trees};
use dkms_hook::{arriving, kept, kernel, status};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Hook mode: build and install for the module sources and kernels on stdin (pacman's NeedsTargets)
    Install,
    /// Hook mode: remove the module versions and kernels on stdin (pacman's NeedsTargets); a
    /// version that a new version of the same module replaces in the transaction stays installed
    /// until the new one is built (see `install`)
    Remove {
        /// Package files of the transaction, to tell an upgrade from a removal (default: found
        /// from pacman's command line, or its sync databases and cache)
        #[arg(long = "package", value_name = "FILE")]
        packages: Vec<PathBuf>,
    },
    /// One line per module version x kernel, in `dkms status`'s format
    Status,
    /// Check built -dkms packages against the DKMS packaging rules (namcap-style lines; exit 1 on
    /// an error, 2 for a file that is not a package)
    Lint {
        /// Package files (.pkg.tar.zst, .pkg.tar.xz, .pkg.tar.gz)
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
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
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("dkms-hook: error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn run(cli: Cli) -> Result<u8> {
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
                || report.kernels.iter().flatten().any(|line_k| line_k == k);
            if !known {
                bail!(
                    "-k {k}: no such kernel under {}, nor in the dkms tree",
                    trees.display(&trees.install)
                );
            }
        }
        let report = report.only_kernels(&cli.kernels);
        quietly_when_closed(print_lines(&report.lines))?;
        for e in &report.errors {
            eprintln!("{e}");
        }
        return Ok(EXIT_OK);
    }
    if let Some(Cmd::Preflight { packages }) = &cli.command {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading targets from stdin")?;
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
        };
        let out = &mut std::io::stdout();
        return Ok(dkms_hook::preflight::run(&trees, &opts, &text, out));
    }
    let (mode, packages) = match cli.command {
        Some(Cmd::Install) => (Mode::Install, Vec::new()),
        Some(Cmd::Remove { packages }) => (Mode::Remove, packages),
        _ => (Mode::All, Vec::new()),
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
    if mode != Mode::Remove && !cli.dry_run {
        for line in kept::restore_returned(&trees) {
            eprintln!("{line}");
        }
    }
    let mut targets = if mode == Mode::All {
        Targets::default()
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
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
        kept_notes = kept::before_removal(&inv, &mut targets, &arriving, !cli.dry_run);
    }
    let req = Request {
        mode,
        targets,
        kernels: cli.kernels.clone(),
        force: cli.force,
    };
    let mut plan = plan::plan(&req, &inv);
    plan.notes.extend(kept_notes);
    if cli.dry_run {
        let text = report::dry_run_text(&plan, jobs);
        quietly_when_closed(print_lines(text.lines()))?;
        return Ok(if plan.has_failures() {
            EXIT_FAILED
        } else {
            EXIT_OK
        });
    }
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
    };
    let summary = runner::run(&plan, &cfg, &mut |e| reporter.handle(e));
    let mut settle_failed = false;
    if mode == Mode::Remove {
        kept::remove_orphan_copies(&trees);
    } else {
        for line in kept::settle(&trees, &cfg.dkms) {
            settle_failed |= line.starts_with("error:");
            println!("{line}");
        }
    }
    Ok(if summary.failed > 0 || settle_failed {
        EXIT_FAILED
    } else {
        EXIT_OK
    })
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
