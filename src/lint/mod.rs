//! `dkms-hook lint FILE...`: checks built -dkms packages against the ArchWiki's DKMS package
//! guidelines and against what breaks hooks, which namcap does not check.
//!
//! Each package is read with the ALPM project's pure-Rust crates ([`package`]), its
//! `usr/src/*/dkms.conf` evaluated the way dkms evaluates it (by bash, with the project's
//! [`crate::dkmsconf`] evaluator) for one fixed kernel, [`KERNEL`], whose headers do not exist;
//! then the [`rules`] decide. Output is namcap's: `PKGNAME E: message (rule-name)`.

pub mod package;
pub mod rules;

use crate::dkmsconf::{self, Context as EvalContext};
use crate::system::trees::Trees;
use rules::{ConfFacts, Context, Finding, Severity};
use std::io::Write;
use std::path::{Path, PathBuf};

pub use package::ReadError;

/// The kernel every dkms.conf is evaluated for: a plausible Arch release, not the running one,
/// so the findings are the same on every machine. Its `kernel_source_dir` points nowhere: a
/// dkms.conf that reads the kernel's `.config` sees none.
pub const KERNEL: &str = "6.12.0-arch1-1";

/// The findings for one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub pkgname: String,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn has_errors(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity() == Severity::Error)
    }

    /// namcap's lines: `PKGNAME E: message (rule-name)`.
    pub fn lines(&self) -> Vec<String> {
        self.findings
            .iter()
            .map(|f| {
                format!(
                    "{} {}: {} ({})",
                    self.pkgname,
                    f.severity().letter(),
                    f.message,
                    f.rule.name()
                )
            })
            .collect()
    }
}

/// Reads, evaluates and checks one package file.
pub fn lint(path: &Path) -> Result<Report, ReadError> {
    let read = package::read(path)?;
    let root = read.dir.path();
    let trees = Trees::defaults(root);
    let confs: Vec<PathBuf> = read.confs.iter().map(|c| root.join(c)).collect();
    let contexts = [EvalContext {
        kernel: KERNEL.to_string(),
        kernel_source_dir: trees.kernel_dir(KERNEL).join("build"),
    }];
    let evaluated = dkmsconf::evaluate(
        &confs,
        &contexts,
        &trees,
        &crate::system::kernel::host_arch(),
    );
    let conf_facts: Vec<ConfFacts> = read
        .confs
        .iter()
        .zip(&evaluated)
        .map(|(path, e)| ConfFacts {
            path: path.clone(),
            result: e.result_for(KERNEL).cloned(),
        })
        .collect();
    let cx = Context {
        kernel: KERNEL.to_string(),
        running_release: crate::system::kernel::running_release(),
    };
    Ok(Report {
        pkgname: read.facts.name.clone(),
        findings: rules::check(&read.facts, &conf_facts, &cx),
    })
}

/// How a lint run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No error in any package (warnings allowed).
    Clean,
    /// At least one package has an error.
    Errors,
    /// At least one file is not a package (this wins over [`Outcome::Errors`]).
    NotAPackage,
}

/// Lints every file: findings on `out`, files that are not packages on `err`.
pub fn run(
    files: &[PathBuf],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<Outcome> {
    let mut outcome = Outcome::Clean;
    for f in files {
        match lint(f) {
            Ok(report) => {
                for line in report.lines() {
                    writeln!(out, "{line}")?;
                }
                if report.has_errors() && outcome == Outcome::Clean {
                    outcome = Outcome::Errors;
                }
            }
            Err(e) => {
                writeln!(err, "dkms-hook: error: {e}")?;
                outcome = Outcome::NotAPackage;
            }
        }
    }
    Ok(outcome)
}
