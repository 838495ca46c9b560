//! Making a pair whole after its job was stopped midway: by a signal ([`crate::os::interrupt`]) or by
//! its time limit (`--job-timeout`).
//!
//! A `dkms install` killed midway can leave anything between nothing and everything: a version
//! half-registered, a build without its install, a `.ko` half-copied, an install link without its
//! file. dkms itself would take some of these as done on the next run (a pair it lists as
//! installed is skipped). So a stopped build is checked with the same verification as a finished
//! one ([`crate::execute::verify::check_install`]): it is either installed and verified, or whatever is
//! there of it is removed (`dkms remove -k`, then dkms's files directly when dkms cannot), and
//! the next run builds it from scratch. A stopped removal is finished.
//!
//! A swap cut short (see `Worker::replace_kept` in [`crate::execute::work`]: the kept version uninstalled, the
//! new one not installed) is settled by putting the kept version back, installed and verified;
//! a `--force` rebuild cut short keeps the previous build and is left to the next run. The same
//! settling serves the start of a run, for the pairs a run that died midway left
//! ([`recover`], from [`crate::execute::journal`]).

use crate::execute::verify;
use crate::execute::work::Worker;
use crate::plan::Action;
use crate::plan::Job;
use crate::run::events::{JobResult, Settled};
use crate::system::dkms_tree;
use std::fs;
use std::time::Duration;

/// How long each dkms call of the cleanup may take.
pub const CLEANUP_LIMIT: Duration = Duration::from_secs(120);

/// Makes `job`'s pair installed-and-verified or absent (a build), or absent (a removal); what
/// this run's journal says of it (a swap under way) is taken into account.
pub fn settle(exec: &Worker, job: &Job) -> Result<Settled, String> {
    let swap = crate::execute::journal::swap_of(&exec.dkms.trees, job);
    settle_pair(exec, job, swap.as_deref(), exec.forced(job))
}

/// [`settle`], for a job whose swap had taken the kept version `swap_from` out, and which was a
/// rebuild (`forced`): the kept version is put back unless the new one is installed and
/// verified; a rebuild cut short keeps (or puts back) the previous build, and says the pair is
/// still to rebuild.
pub fn settle_pair(
    exec: &Worker,
    job: &Job,
    swap_from: Option<&str>,
    forced: bool,
) -> Result<Settled, String> {
    let exec = Worker {
        dkms: exec.dkms.until(Some(CLEANUP_LIMIT)),
        ..exec.clone()
    };
    if job.info.action != Action::Build {
        return match exec.run(job, 1) {
            JobResult::Failed(f) => Err(f.what),
            _ => Ok(Settled::Absent { removed: true }),
        };
    }
    let (m, v) = (job.info.module.as_str(), job.info.version.as_str());
    let kernel = job.info.kernel.as_deref().unwrap_or_default();
    let trees = &exec.dkms.trees;
    // A rebuild's previous build, still aside (the run died before it could put it back).
    let previous = dkms_tree::previous_build_dir(&trees.dkms, m, v, kernel, &exec.arch);
    if previous.is_dir() {
        let built = dkms_tree::pair_dir(&trees.dkms, m, v, kernel, &exec.arch);
        let _ = fs::remove_dir_all(&built);
        fs::rename(&previous, &built).map_err(|e| format!("{}: {e}", trees.display(&built)))?;
    }
    if verify::check_install(trees, m, v, kernel, &exec.arch, &job.expect).is_ok() {
        if let Some(old) = swap_from {
            // The swap had got as far as the new version: the kept one leaves this kernel.
            let _ = exec.dkms.remove(m, old, Some(kernel));
        }
        return Ok(if forced {
            Settled::Rebuild
        } else {
            Settled::Installed
        });
    }
    let mut removed = exec.remove_leftovers(m, v, kernel)?;
    if let Some(old) = swap_from {
        exec.put_back(m, old, kernel, job.headers.as_deref())
            .map_err(|e| {
                format!("the kept {m} {old} could not be installed again for {kernel}: {e}")
            })?;
        return Ok(Settled::Kept {
            version: old.to_string(),
        });
    }
    // A version `dkms add` left half-registered (no source link) and built for no kernel.
    let version_dir = dkms_tree::version_dir(&trees.dkms, m, v);
    if version_dir.is_dir()
        && fs::symlink_metadata(dkms_tree::source_link(&trees.dkms, m, v)).is_err()
    {
        let built_somewhere = fs::read_dir(&version_dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name() != "build" && e.path().is_dir());
        if !built_somewhere {
            fs::remove_dir_all(&version_dir)
                .map_err(|e| format!("{}: {e}", trees.display(&version_dir)))?;
            let _ = fs::remove_dir(dkms_tree::module_dir(&trees.dkms, m)); // only when empty
            removed = true;
        }
    }
    Ok(Settled::Absent { removed })
}

/// What the start of a run did with the jobs a dead run left (see [`crate::execute::journal`]).
#[derive(Debug, Default)]
pub struct Recovery {
    /// One line per pair settled (`error:` lines for those that could not be).
    pub lines: Vec<String>,
    pub failed: bool,
}

/// Before a run plans (its lock held): settles every pair a run that died midway left, as
/// after a signal (the kept version of a swap cut short put back), removes its private build
/// trees, then runs depmod for the kernels that changed. A `--force` rebuild cut short stays pending for the planner.
pub fn recover(exec: &Worker) -> Recovery {
    let trees = &exec.dkms.trees;
    let mut r = Recovery::default();
    let mut kernels = std::collections::BTreeSet::new();
    crate::execute::journal::drop_foreign(trees);
    // Its private build trees: none is in use now.
    crate::execute::work::remove_private_trees(trees);
    for e in crate::execute::journal::left(trees) {
        let job = &e.job;
        let who = e
            .pid
            .map_or("a run".to_string(), |p| format!("a run (pid {p})"));
        let label = job.info.label();
        let result = settle_pair(exec, job, e.swap_from.as_deref(), e.force);
        let what = match &result {
            Ok(Settled::Installed) => "installed and verified".to_string(),
            Ok(Settled::Rebuild) => {
                "installed and verified as it was; its rebuild is still to do".to_string()
            }
            Ok(Settled::Kept { version }) => format!(
                "not installed; kept {} {version} on {}, put back, installed and verified",
                job.info.module,
                job.info.kernel.as_deref().unwrap_or_default()
            ),
            Ok(Settled::Absent { .. }) if job.info.action != Action::Build => "removed".into(),
            Ok(Settled::Absent { removed: true }) => {
                "not installed; what it had left half done was removed".into()
            }
            Ok(Settled::Absent { removed: false }) => "not installed".into(),
            Err(e) => {
                r.failed = true;
                r.lines.push(format!(
                    "error: {label}: {who} ended midway, and it could not be made whole: {e}"
                ));
                continue;
            }
        };
        crate::execute::journal::settled(trees, &e, matches!(result, Ok(Settled::Rebuild)));
        kernels.extend(job.touches.iter().cloned());
        r.lines.push(format!(
            "dkms-hook: note: {who} ended midway through {label}: {what}"
        ));
    }
    // A pending rebuild of a version dkms no longer has is moot.
    let tree = crate::system::dkms_tree::DkmsTree::read(&trees.dkms);
    for e in crate::execute::journal::rebuilds(trees) {
        if !tree.is_added(&e.job.info.module, &e.job.info.version) {
            crate::execute::journal::settled(trees, &e, false);
        }
    }
    for k in kernels {
        if !trees.kernel_dir(&k).is_dir() {
            continue;
        }
        if let Err(e) = crate::system::depmod::depmod(trees, &k) {
            r.failed = true;
            r.lines.push(format!("error: {e}"));
        }
    }
    r
}
