//! `dkms-hook status`: what `dkms status` prints on stdout, and on stderr what it would say
//! there; with `-k`, only those kernels' lines; with `--json`, one document.

use crate::commands::{load_trees, print_lines, quietly_when_closed, stopped, Exit};
use anyhow::{bail, Result};
use std::path::PathBuf;

/// What `status` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The system root: absolute, normalised, a directory.
    pub root: PathBuf,
    /// `-k`: only these kernels' lines (empty: all).
    pub kernels: Vec<String>,
    pub json: bool,
}

pub fn run(cfg: &Config) -> Result<Exit> {
    let trees = load_trees(&cfg.root)?;
    let report = crate::status::report(&trees, &crate::status::Flavour::detect());
    // A kernel that is neither installed nor named by any line is a typo: refuse it, as the
    // other modes do, rather than print only the kernel-less lines and exit 0.
    for k in &cfg.kernels {
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
    let report = report.only_kernels(&cfg.kernels);
    if cfg.json {
        quietly_when_closed(print_lines([crate::status::json(&report.items)]))?;
    } else {
        quietly_when_closed(print_lines(&report.lines))?;
    }
    for e in &report.errors {
        eprintln!("{e}");
    }
    // What a prebuild made for a kernel not installed yet (not dkms's: not in its lines).
    let store = crate::system::prebuilt::Store::at(&trees.root);
    for line in store.ready_for_kernels_not_installed(&trees.install) {
        eprintln!("dkms-hook: {line}");
    }
    // What a run killed midway left for the next one (dkms's lines cannot show it).
    for line in crate::execute::journal::left_by_dead_runs(&trees) {
        eprintln!("dkms-hook: warning: {line}");
    }
    Ok(Exit::Ok)
}
