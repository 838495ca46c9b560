//! The one contract between the runner and the reporter.
//!
//! The runner knows nothing of display and the reporter nothing of processes: every event carries its
//! own data (names, elapsed times, counters, captured output), so the reporter only formats. The
//! outcomes are counted once, by one rule ([`Tally::record`]): the runner counts as it tells and
//! hands the [`Tally`] over in `RunFinished`; the reporter's summary line, the `--timings` page
//! and the exit status all read that one tally. Every event about a job carries the job's id (its index in the
//! plan), by which the reporter and the timings follow the jobs running.

use crate::plan::{Action, Decision, JobInfo, Plan};
use crate::system::depmod::DepmodError;
use std::path::PathBuf;
use std::time::Duration;

/// Why a job failed, with what the user needs to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// One line: what failed, in words (`make failed (dkms exit 10)`, `built for 6.1.0-55 ...`).
    pub what: String,
    /// The compiler's own error lines from make.log (the first errors, with their context).
    pub errors: Vec<String>,
    /// The whole log, kept where the next dkms run does not delete it.
    pub log: Option<PathBuf>,
    /// The tail of what dkms printed, when there is no make.log to quote.
    pub output: Vec<String>,
}

/// How one job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    /// Built and installed (and verified), or removed.
    Done {
        /// Anything worth saying about how (e.g. "dkms could not remove it; removed its files directly").
        note: Option<String>,
    },
    /// dkms itself declined the pair (exit 77, BUILD_EXCLUSIVE): a skip, not a failure.
    Excluded {
        reason: String,
    },
    Failed(Failure),
}

/// Everything the runner tells the reporter, in the order it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Before anything runs: what the plan holds.
    RunStarted {
        jobs: usize,
        concurrency: usize,
        /// Pairs the planner skipped (already installed, BUILD_EXCLUSIVE, no headers ...).
        skipped: Vec<Decision>,
        /// Modules that failed before any job (dkms.conf errors, unknown dependencies, cycles).
        failed: Vec<Decision>,
        /// Plain information (kernels without headers, nothing to do ...).
        notes: Vec<String>,
    },
    JobStarted {
        id: usize,
        job: JobInfo,
    },
    JobFinished {
        id: usize,
        job: JobInfo,
        result: JobResult,
        elapsed: Duration,
        /// How many jobs have finished, this one included.
        finished: usize,
        total: usize,
    },
    /// A job that never ran because something it needs failed.
    JobSkipped {
        id: usize,
        job: JobInfo,
        reason: String,
        finished: usize,
        total: usize,
    },
    /// depmod for one kernel, after its last job.
    Depmod {
        kernel: String,
        result: Result<(), DepmodError>,
        elapsed: Duration,
    },
    /// A stopping signal came (SIGTERM, SIGINT, SIGHUP): no job starts any more, and the
    /// running ones were told to stop (killed if still running after `grace`).
    Interrupted {
        /// The signal's name (`SIGTERM`).
        signal: String,
        running: usize,
        grace: Duration,
    },
    /// A job that was running when the signal came and ended without finishing its work.
    JobInterrupted {
        id: usize,
        job: JobInfo,
        elapsed: Duration,
    },
    /// After an interruption, an interrupted job's pair made whole: installed and verified, or
    /// absent.
    Settled {
        id: usize,
        job: JobInfo,
        result: Result<Settled, String>,
    },
    /// After an interruption: the jobs that did not do their work (never started, or settled
    /// as absent). The next run does them.
    LeftUndone {
        jobs: Vec<JobInfo>,
    },
    RunFinished {
        elapsed: Duration,
        /// How the run's jobs ended, counted.
        tally: Tally,
    },
    /// After the run of the install hook: what the settling of the kept versions did with one
    /// of them (`keep::after::settle`).
    Kept(KeptSettled),
}

/// What an interrupted job's pair was left as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Installed and verified (the job had got that far).
    Installed,
    /// Installed and verified as it was before: a `--force` rebuild cut short, its previous
    /// build kept. The next run rebuilds it.
    Rebuild,
    /// The new version not installed, and the kept version its swap had taken out (see
    /// `keep`) back in its place, installed and verified.
    Kept { version: String },
    /// Not there: what was half there (`removed: true`) was removed, or nothing was.
    Absent { removed: bool },
}

/// What the settling of the kept versions after a run did with one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptSettled {
    /// Removed from dkms's tree (and its copy deleted), because `why`.
    Removed {
        module: String,
        version: String,
        why: KeptGone,
    },
    /// dkms could not remove it: its exit status, in words.
    NotRemoved {
        module: String,
        version: String,
        dkms: String,
    },
    /// depmod failed for a kernel it was installed on.
    DepmodFailed(DepmodError),
}

/// Why a kept version went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptGone {
    /// Its module has no sources left (its package went while it was kept).
    NoSources,
    /// A newer version is installed wherever it was.
    Replaced,
}

/// A build of `plan` that compiled and succeeded, and what it took, if `event` is its end: what
/// the history of build times learns ([`crate::system::history`]). A failed, excluded or
/// interrupted job, a removal, and the install of the preflight's build (or a remembered
/// failure said again) teach nothing.
pub fn build_time<'a>(plan: &'a Plan, event: &Event) -> Option<(&'a JobInfo, Duration)> {
    let Event::JobFinished {
        id,
        result: JobResult::Done { .. },
        elapsed,
        ..
    } = event
    else {
        return None;
    };
    let job = plan.jobs.get(*id)?;
    let compiled = job.info.action == Action::Build
        && job.info.kernel.is_some()
        && job.prebuilt.is_none()
        && job.remembered.is_none();
    compiled.then_some((&job.info, *elapsed))
}

/// The outcomes of a run, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Pairs built and installed (and verified), a settled interrupted build included.
    pub built: usize,
    /// Module versions removed (from one kernel, or unregistered).
    pub removed: usize,
    /// Why each pair not built or removed (and not failed) was skipped, in the order said: the
    /// planner's skips, dkms's exclusions (BUILD_EXCLUSIVE at build time), the jobs whose
    /// dependency failed.
    pub skipped: Vec<String>,
    /// Failures: the planner's, the jobs', depmod's, a pair that could not be made whole after
    /// a signal, and after the run a kept version that could not be removed.
    pub failed: usize,
    /// depmod runs, whether they succeeded or not.
    pub depmods: usize,
    /// The stopping signal that ended the run early.
    pub interrupted: Option<i32>,
}

impl Tally {
    /// Counts what `event` says.
    pub fn record(&mut self, event: &Event) {
        match event {
            Event::RunStarted {
                skipped, failed, ..
            } => {
                self.skipped
                    .extend(skipped.iter().map(|d| d.reason.clone()));
                self.failed += failed.len();
            }
            Event::JobFinished { job, result, .. } => match result {
                JobResult::Done { .. } if job.action == Action::Build => self.built += 1,
                JobResult::Done { .. } => self.removed += 1,
                JobResult::Excluded { reason } => self.skipped.push(reason.clone()),
                JobResult::Failed(_) => self.failed += 1,
            },
            Event::JobSkipped { reason, .. } => self.skipped.push(reason.clone()),
            Event::Depmod { result, .. } => {
                self.depmods += 1;
                if result.is_err() {
                    self.failed += 1;
                }
            }
            Event::Settled { job, result, .. } => match (result, job.action) {
                (Ok(Settled::Installed), Action::Build) => self.built += 1,
                (Ok(Settled::Absent { .. }), Action::RemoveFromKernel | Action::Unregister) => {
                    self.removed += 1
                }
                (Ok(_), _) => {}
                (Err(_), _) => self.failed += 1,
            },
            Event::Kept(KeptSettled::Removed { .. }) => {}
            Event::Kept(KeptSettled::NotRemoved { .. } | KeptSettled::DepmodFailed(_)) => {
                self.failed += 1
            }
            Event::JobStarted { .. }
            | Event::Interrupted { .. }
            | Event::JobInterrupted { .. }
            | Event::LeftUndone { .. }
            | Event::RunFinished { .. } => {}
        }
    }

    /// The tally of `events`.
    pub fn of<'a>(events: impl IntoIterator<Item = &'a Event>) -> Tally {
        let mut t = Tally::default();
        for e in events {
            t.record(e);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Job;

    fn build(id: usize, module: &str) -> Job {
        Job {
            id,
            info: JobInfo {
                module: module.into(),
                version: "1".into(),
                kernel: Some("6.1.0-56-amd64".into()),
                action: Action::Build,
            },
            source: None,
            headers: None,
            direct: false,
            expect: vec![],
            needs: vec![],
            shares: vec![],
            touches: vec![],
            cost: 1,
            prebuilt: None,
            remembered: None,
        }
    }

    fn finished(plan: &Plan, id: usize, result: JobResult) -> Event {
        Event::JobFinished {
            id,
            job: plan.jobs[id].info.clone(),
            result,
            elapsed: Duration::from_secs(7),
            finished: 1,
            total: plan.jobs.len(),
        }
    }

    #[test]
    fn only_a_build_that_compiled_and_succeeded_teaches_a_time() {
        let mut prebuilt = build(1, "prebuilt");
        prebuilt.prebuilt = Some(PathBuf::from("/var/cache/dkms-hook/prebuilt/x"));
        let mut removal = build(2, "gone");
        removal.info.action = Action::RemoveFromKernel;
        let plan = Plan {
            jobs: vec![build(0, "zfs"), prebuilt, removal],
            ..Plan::default()
        };
        let done = || JobResult::Done { note: None };
        let (job, took) = build_time(&plan, &finished(&plan, 0, done())).unwrap();
        assert_eq!((job.module.as_str(), took), ("zfs", Duration::from_secs(7)));
        assert_eq!(build_time(&plan, &finished(&plan, 1, done())), None);
        assert_eq!(build_time(&plan, &finished(&plan, 2, done())), None);
        let failed = JobResult::Failed(Failure {
            what: "make failed".into(),
            errors: vec![],
            log: None,
            output: vec![],
        });
        assert_eq!(build_time(&plan, &finished(&plan, 0, failed)), None);
        let excluded = JobResult::Excluded {
            reason: "no".into(),
        };
        assert_eq!(build_time(&plan, &finished(&plan, 0, excluded)), None);
        let interrupted = Event::JobInterrupted {
            id: 0,
            job: plan.jobs[0].info.clone(),
            elapsed: Duration::from_secs(7),
        };
        assert_eq!(build_time(&plan, &interrupted), None);
    }
}
