//! Making a pair whole after its job was stopped midway: by a signal ([`crate::interrupt`]) or by
//! its time limit (`--job-timeout`).
//!
//! A `dkms install` killed midway can leave anything between nothing and everything: a version
//! half-registered, a build without its install, a `.ko` half-copied, an install link without its
//! file. dkms itself would take some of these as done on the next run (a pair it lists as
//! installed is skipped). So a stopped build is checked with the same verification as a finished
//! one ([`crate::verify::check_install`]): it is either installed and verified, or whatever is
//! there of it is removed (`dkms remove -k`, then dkms's files directly when dkms cannot), and
//! the next run builds it from scratch. A stopped removal is finished.

use crate::events::{Action, Failure, JobResult, Settled};
use crate::execute::{leftovers, remove_directly, DkmsExecutor};
use crate::plan::Job;
use crate::verify;
use std::fs;
use std::time::Duration;

/// How long each dkms call of the cleanup may take.
pub const CLEANUP_LIMIT: Duration = Duration::from_secs(120);

/// Makes `job`'s pair installed-and-verified or absent (a build), or absent (a removal).
pub fn settle(exec: &DkmsExecutor, job: &Job) -> Result<Settled, String> {
    let exec = DkmsExecutor {
        dkms: exec.dkms.until(Some(CLEANUP_LIMIT)),
        ..exec.clone()
    };
    if job.info.action != Action::Build {
        return match exec.run_job(job, 1) {
            JobResult::Failed(f) => Err(f.what),
            _ => Ok(Settled::Absent { removed: true }),
        };
    }
    let (m, v) = (job.info.module.as_str(), job.info.version.as_str());
    let kernel = job.info.kernel.as_deref().unwrap_or_default();
    let trees = &exec.dkms.trees;
    if verify::check_install(trees, m, v, kernel, &exec.arch, &job.expect).is_ok() {
        return Ok(Settled::Installed);
    }
    let mut removed = false;
    if !leftovers(trees, m, v, kernel, &exec.arch).is_empty() {
        removed = true;
        let out = exec.dkms.remove(m, v, Some(kernel));
        if !out.ok() || !leftovers(trees, m, v, kernel, &exec.arch).is_empty() {
            remove_directly(trees, m, v, kernel, &exec.arch)?;
        }
    }
    // A version `dkms add` left half-registered (no source link) and built for no kernel.
    let version_dir = trees.dkms.join(m).join(v);
    if version_dir.is_dir() && fs::symlink_metadata(version_dir.join("source")).is_err() {
        let built_somewhere = fs::read_dir(&version_dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name() != "build" && e.path().is_dir());
        if !built_somewhere {
            fs::remove_dir_all(&version_dir)
                .map_err(|e| format!("{}: {e}", trees.display(&version_dir)))?;
            let _ = fs::remove_dir(trees.dkms.join(m)); // only when empty
            removed = true;
        }
    }
    Ok(Settled::Absent { removed })
}

/// A job that ran past `--job-timeout`: its processes were stopped by then; its pair is settled
/// (unless a signal came too: the runner settles it after the other jobs) and the failure says so.
pub fn timed_out(exec: &DkmsExecutor, job: &Job, mut failure: Failure) -> JobResult {
    let secs = exec.job_timeout.map_or(0, |t| t.as_secs());
    let state = if crate::interrupt::global().signal().is_some() {
        String::new()
    } else {
        match settle(exec, job) {
            Ok(Settled::Installed) => "; it had got as far as installing, and is installed".into(),
            Ok(Settled::Absent { removed: true }) => "; what it had left was removed".into(),
            Ok(Settled::Absent { removed: false }) => String::new(),
            Err(e) => format!("; what it had left could not be removed: {e}"),
        }
    };
    failure.what = format!(
        "timed out: still running after {secs} s (--job-timeout {secs}), its processes were \
         killed{state}"
    );
    JobResult::Failed(failure)
}
