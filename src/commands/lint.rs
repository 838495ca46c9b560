//! `dkms-hook lint FILE...`: built -dkms packages checked against the DKMS packaging rules
//! ([`crate::lint`]).

use crate::commands::Exit;
use crate::lint::Outcome;
use anyhow::Result;
use std::path::PathBuf;

/// What `lint` was asked: the package files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub files: Vec<PathBuf>,
}

pub fn run(cfg: &Config) -> Result<Exit> {
    let outcome = crate::lint::run(&cfg.files, &mut std::io::stdout(), &mut std::io::stderr())?;
    Ok(match outcome {
        Outcome::Clean => Exit::Ok,
        Outcome::Errors => Exit::Failed,
        Outcome::NotAPackage => Exit::Usage,
    })
}
