//! `dkms-hook orphans`: one path a line (a left-over kernel directory with a trailing `/`), or
//! with `--remove` what was removed and the kernels depmod ran for; with `-k`, only those
//! kernels ([`crate::status::orphans`]).

use crate::commands::{is_root, load_trees, lock, print_lines, quietly_when_closed, Exit};
use crate::plan::inventory::{Depth, Inventory, SourceSelection};
use crate::system::kernel;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// What `orphans` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The system root: absolute, normalised, a directory.
    pub root: PathBuf,
    /// Delete them (`--remove` without `--dry-run`).
    pub remove: bool,
    /// `-k`: only these kernels (empty: all).
    pub kernels: Vec<String>,
}

pub fn run(cfg: &Config) -> Result<Exit> {
    let trees = load_trees(&cfg.root)?;
    let (remove, kernels) = (cfg.remove, &cfg.kernels);
    if remove && !is_root() {
        bail!(
            "orphans --remove: deleting module files needs root (without --remove, it lists them)"
        );
    }
    // Held while it lists and removes: what it lists is what a run left, not what one is doing.
    let _lock = if remove { Some(lock(&trees)?) } else { None };
    let mut inv = Inventory::load(
        &trees,
        &kernel::host_arch(),
        &SourceSelection::All,
        Depth::Every,
    );
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
    let found = crate::status::orphans::find(&inv);
    let shown = |p: &Path| trees.display(p).into_owned();
    if !remove {
        let lines = found
            .files
            .iter()
            .map(|f| shown(f))
            .chain(found.kernels.iter().map(|k| format!("{}/", shown(k))));
        quietly_when_closed(print_lines(lines))?;
        return Ok(Exit::Ok);
    }
    let done = crate::status::orphans::remove(&inv, &found);
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
        Exit::Ok
    } else {
        Exit::Failed
    })
}
