//! The one contract between the runner and the reporter.
//!
//! The runner knows nothing of display and the reporter nothing of processes: every event carries its
//! own data (names, elapsed times, counters, captured output), so the reporter only formats.

use crate::plan::{Decision, JobInfo};
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
        job: JobInfo,
    },
    JobFinished {
        job: JobInfo,
        result: JobResult,
        elapsed: Duration,
        /// How many jobs have finished, this one included.
        finished: usize,
        total: usize,
    },
    /// A job that never ran because something it needs failed.
    JobSkipped {
        job: JobInfo,
        reason: String,
        finished: usize,
        total: usize,
    },
    /// depmod for one kernel, after its last job.
    Depmod {
        kernel: String,
        result: Result<(), String>,
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
        job: JobInfo,
        elapsed: Duration,
    },
    /// After an interruption, an interrupted job's pair made whole: installed and verified, or
    /// absent.
    Settled {
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
    },
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
    /// [`crate::keep`]) back in its place, installed and verified.
    Kept { version: String },
    /// Not there: what was half there (`removed: true`) was removed, or nothing was.
    Absent { removed: bool },
}
