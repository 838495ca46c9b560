//! [`DkmsExecutor`]: the [`Executor`] the runner's loop drives in production (the loop itself
//! knows nothing of dkms). Each job's work ([`crate::execute::work`]) is recorded in the
//! [`journal`] while it runs and stopped at `--job-timeout`; a job cut short by its time limit or
//! a signal is made whole ([`crate::execute::settle`]); depmod runs for a kernel once its jobs
//! are done.

use crate::execute::journal;
use crate::execute::settle;
use crate::execute::work::{failed, Worker};
use crate::plan::Job;
use crate::run::events::{Failure, JobResult, Settled};
use crate::run::runner::Executor;
use crate::system::depmod::{depmod, DepmodError};
use crate::system::dkms::Dkms;

/// Runs jobs with the real dkms.
#[derive(Debug, Clone)]
pub struct DkmsExecutor {
    pub dkms: Dkms,
    pub arch: String,
    /// Rebuild pairs that are built or installed already.
    pub force: bool,
    /// A job still running after this long is stopped and failed, its pair settled.
    pub job_timeout: Option<std::time::Duration>,
}

impl Executor for DkmsExecutor {
    /// Runs the job, recorded in the [`journal`] while it runs: a job stopped by a signal keeps
    /// its entry until the runner has settled it, one that a dead run left is settled by the
    /// next run.
    fn execute(&self, job: &Job, make_jobs: usize) -> JobResult {
        let trees = &self.dkms.trees;
        if let Err(e) = journal::begin(trees, job, self.worker().forced(job)) {
            return failed(
                format!("cannot record the job before it starts: {e}"),
                vec![],
                None,
                "",
            );
        }
        let timed = Worker {
            dkms: self.dkms.until(self.job_timeout),
            ..self.worker()
        };
        let result = timed.run(job, make_jobs);
        let result = match (timed.dkms.deadline, result) {
            (Some(d), JobResult::Failed(f)) if std::time::Instant::now() >= d => {
                self.timed_out(job, f)
            }
            (_, r) => r,
        };
        let stopped = crate::os::interrupt::global().signal().is_some();
        if !(stopped && matches!(result, JobResult::Failed(_))) {
            journal::end(trees, job);
        }
        result
    }

    fn jobserver(&self) -> Option<&crate::os::jobserver::Jobserver> {
        self.dkms.make.as_deref()
    }

    fn depmod(&self, kernel: &str) -> Result<(), DepmodError> {
        depmod(&self.dkms.trees, kernel)
    }

    fn settle(&self, job: &Job) -> Result<Settled, String> {
        let trees = &self.dkms.trees;
        let r = settle::settle(&self.worker(), job);
        match &r {
            Ok(Settled::Rebuild) => journal::to_rebuild(trees, job),
            Ok(_) => journal::end(trees, job),
            Err(_) => {} // left for the next run
        }
        r
    }
}

impl DkmsExecutor {
    /// The work of a job, without a time limit of its own.
    pub fn worker(&self) -> Worker {
        Worker {
            dkms: self.dkms.clone(),
            arch: self.arch.clone(),
            force: self.force,
        }
    }

    /// A job that ran past `--job-timeout`: its processes were stopped by then; its pair is
    /// settled (unless a signal came too: the runner settles it after the other jobs) and the
    /// failure says so.
    fn timed_out(&self, job: &Job, mut failure: Failure) -> JobResult {
        let secs = self.job_timeout.map_or(0, |t| t.as_secs());
        let state = if crate::os::interrupt::global().signal().is_some() {
            String::new()
        } else {
            let kept = |v: &str| {
                format!(
                    "kept {} {v} on {}",
                    job.info.module,
                    job.info.kernel.as_deref().unwrap_or_default()
                )
            };
            match settle::settle(&self.worker(), job) {
                Ok(Settled::Installed) => {
                    "; it had got as far as installing, and is installed".into()
                }
                Ok(Settled::Rebuild) => "; the previous build stays installed".into(),
                Ok(Settled::Kept { version }) => {
                    format!("; what it had left was removed; {}", kept(&version))
                }
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
}
