//! From the parsed command line (cli.rs's clap types) to the validated configuration of one mode
//! (ripgrep's low args -> high args): every usage error that the arguments alone show is said
//! here, before anything reads the system; the library's commands never see a clap type.

use crate::cli::{Cli, Cmd};
use anyhow::{bail, Context, Result};
use dkms_hook::commands::{lint, orphans, preflight, run, status};
use dkms_hook::plan::names::ModuleSpec;
use dkms_hook::plan::Mode;
use dkms_hook::system::trees::normalize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One mode, with its configuration.
#[derive(Debug)]
pub enum Command {
    Run(run::Config),
    Status(status::Config),
    Orphans(orphans::Config),
    Preflight(preflight::Config),
    Prebuild(preflight::Config),
    /// The preflight's own child, with its request file.
    PreflightView(PathBuf),
    Lint(lint::Config),
}

/// The mode `cli` asks for, or the usage error that stops it.
pub fn command(cli: Cli) -> Result<Command> {
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
    if matches!(cli.command, Some(Cmd::Preflight { .. } | Cmd::Prebuild)) {
        let mode = match cli.command {
            Some(Cmd::Prebuild) => "prebuild",
            _ => "preflight",
        };
        if cli.dry_run {
            bail!(
                "--dry-run: not with `{mode}`, which is itself a trial: it builds in a private view \
                 of the system and installs nothing (`dkms-hook --dry-run` shows a run's plan)"
            );
        }
        if !cli.kernels.is_empty() {
            bail!(
                "-k: not with `{mode}`: it judges the kernels the transaction brings, and every \
                 kernel that stays"
            );
        }
    }
    let root = match &cli.command {
        Some(Cmd::PreflightView { request }) => return Ok(Command::PreflightView(request.clone())),
        Some(Cmd::Lint { files }) => {
            return Ok(Command::Lint(lint::Config {
                files: files.clone(),
            }))
        }
        _ => absolute(&cli.root)?,
    };
    if !root.is_dir() {
        bail!("--root {}: not a directory", root.display());
    }
    let job_timeout = (cli.job_timeout > 0).then(|| Duration::from_secs(cli.job_timeout));
    let (mode, named, packages) = match cli.command {
        Some(Cmd::Status) => {
            return Ok(Command::Status(status::Config {
                root,
                kernels: cli.kernels,
                json: cli.json,
            }))
        }
        Some(Cmd::Orphans { remove }) => {
            return Ok(Command::Orphans(orphans::Config {
                root,
                // --dry-run lists what --remove would delete, and deletes nothing.
                remove: remove && !cli.dry_run,
                kernels: cli.kernels,
            }));
        }
        Some(Cmd::Preflight { packages }) => {
            return Ok(Command::Preflight(preflight::Config {
                root,
                packages: packages
                    .iter()
                    .map(|p| absolute(p))
                    .collect::<Result<_>>()?,
                jobs: cli.jobs,
                job_timeout,
            }))
        }
        Some(Cmd::Prebuild) => {
            return Ok(Command::Prebuild(preflight::Config {
                root,
                packages: vec![],
                jobs: cli.jobs,
                job_timeout,
            }))
        }
        Some(Cmd::PreflightView { .. } | Cmd::Lint { .. }) => unreachable!("returned above"),
        Some(Cmd::Install { modules }) => (Mode::Install, modules, Vec::new()),
        Some(Cmd::Remove { modules, packages }) => (Mode::Remove, modules, packages),
        None => (Mode::All, Vec::new(), Vec::new()),
    };
    let named: Vec<ModuleSpec> = named.iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = match cli.jobs {
        Some(0) => bail!("--jobs 0: need at least one job at once"),
        Some(n) => n,
        None => cpus,
    };
    Ok(Command::Run(run::Config {
        root,
        mode,
        named,
        packages: packages
            .iter()
            .map(|p| absolute(p))
            .collect::<Result<_>>()?,
        kernels: cli.kernels,
        force: cli.force,
        dry_run: cli.dry_run,
        json: cli.json,
        jobs,
        cpus,
        job_timeout,
        timings: cli.timings,
    }))
}

/// `p` made absolute (against the current directory) and normalised.
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
