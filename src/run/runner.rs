//! The runner: the loop that executes a plan with up to N jobs at once and tells the reporter.
//!
//! std threads and one channel: the loop starts ready jobs from the [`Queue`] while there is room,
//! waits for one to finish, records the outcome, and never leaves early while children run (a failure
//! stops only what needs the failed job, everything else goes on). A job that panics is a failed job,
//! never a hang. make's parallelism is shared by one jobserver for the whole run, when the executor
//! has one ([`Executor::jobserver`], see [`crate::os::jobserver`]): the first job running holds the
//! run's implicit token, and each further job starts only once it holds a token of the pool, given
//! back when it ends (cargo's accounting), so a long make takes the cores short jobs give back and
//! the compilations of all the jobs never outnumber the CPUs. Without one, each job gets `-j` = CPUs
//! divided by the jobs running or able to start at that moment, fixed when it starts. depmod runs once per kernel, after that kernel's last job, when any of
//! its jobs ran. What a job does is the [`Executor`]'s business: whoever runs a plan builds one
//! and passes it (`execute::executor::DkmsExecutor` in production, a fake in the tests); the loop
//! knows nothing of dkms nor of display: it only emits [`Event`]s.

use crate::os::interrupt::{self, Interrupt};
use crate::os::jobserver::Jobserver;
use crate::plan::queue::{Ended, Queue, Skipped};
use crate::plan::{Action, JobInfo};
use crate::plan::{Job, Plan};
use crate::run::events::{Event, Failure, JobResult, Settled, Tally};
use crate::system::depmod::DepmodError;
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What runs the jobs: the loop calls it from one thread per running job.
pub trait Executor: Sync {
    /// Does `job`, with `make_jobs` for make's `-j`.
    fn execute(&self, job: &Job, make_jobs: usize) -> JobResult;
    /// Updates a kernel's module index once its jobs are done.
    fn depmod(&self, kernel: &str) -> Result<(), DepmodError>;
    /// After an interruption, makes the pair of a job that was stopped midway whole: installed
    /// and verified, or absent (nothing half-copied, nothing dkms counts as installed without
    /// its file). A removal is finished.
    fn settle(&self, job: &Job) -> Result<Settled, String>;
    /// The run's make jobserver, which the executor's makes join: the loop then starts a job
    /// beyond the first running only once it holds one of its tokens. `None`: `-j` is shared
    /// instead.
    fn jobserver(&self) -> Option<&Jobserver> {
        None
    }
}

/// How many at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Jobs at once.
    pub jobs: usize,
    /// CPUs to share among concurrent makes.
    pub cpus: usize,
}

/// A job that ended (done, failed, stopped or skipped), and whether it ran: one that ran may
/// have changed its kernels' modules, even one that failed (an unverified pair it uninstalled,
/// a rebuild put back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct JobEnded {
    id: usize,
    ran: bool,
}

/// What a job's thread or a depmod's sends the loop when it ends.
enum Msg {
    Job(usize, JobResult, Duration),
    Depmod(String, Result<(), DepmodError>, Duration),
    /// A token of the jobserver, asked for by the loop.
    Token(std::io::Result<jobserver::Acquired>),
}

/// Runs `plan` with `exec`, calling `on_event` for everything that happens, from this thread only;
/// stopped by the signals of [`interrupt::global`].
pub fn run(
    plan: &Plan,
    limits: Limits,
    exec: &dyn Executor,
    on_event: &mut dyn FnMut(&Event),
) -> Tally {
    run_interruptible(plan, limits, exec, interrupt::global(), on_event)
}

/// [`run`], stopped by `stop`: once it holds a signal, no job starts, the running ones are
/// waited for (the signal reaches their processes through [`crate::os::process`]), the pairs of
/// those that ended midway are settled ([`Executor::settle`]), depmod runs for the kernels that
/// changed, and what was left undone is said.
pub fn run_interruptible(
    plan: &Plan,
    limits: Limits,
    exec: &dyn Executor,
    stop: &Interrupt,
    on_event: &mut dyn FnMut(&Event),
) -> Tally {
    let start = Instant::now();
    let jobs_at_once = limits.jobs.max(1);
    let mut run = State::new(plan, on_event);
    run.tell(&Event::RunStarted {
        jobs: plan.jobs.len(),
        concurrency: jobs_at_once.min(plan.jobs.len().max(1)),
        skipped: plan.skipped.clone(),
        failed: plan.failed.clone(),
        notes: plan.notes.clone(),
    });
    let pool = exec.jobserver();
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<Msg>();
        // The tokens of the jobs beyond the first, asked of the pool one at a time by a thread that
        // waits for them as make does (a wait in `read`, not a poll that makes would outrun).
        let mut helper = pool.and_then(|p| {
            let tx = tx.clone();
            p.client()
                .clone()
                .into_helper_thread(move |t| {
                    let _ = tx.send(Msg::Token(t));
                })
                .ok()
        });
        let mut tokens: Vec<jobserver::Acquired> = Vec::new();
        let mut asked = false;
        loop {
            let signal = stop.signal();
            run.announce(stop);
            let mut batch = Vec::new();
            while signal.is_none() && run.queue.running() < jobs_at_once {
                if let Some(p) = pool.filter(|_| run.queue.running() > tokens.len()) {
                    // A job beyond the first: it needs a token.
                    if run.queue.ready() == 0 {
                        break;
                    }
                    match &helper {
                        Some(h) if !asked => {
                            h.request_token();
                            asked = true;
                        }
                        Some(_) => {}
                        None => {
                            if let Ok(Some(t)) = p.client().try_acquire() {
                                tokens.push(t);
                                continue;
                            }
                        }
                    }
                    break;
                }
                let Some(id) = run.queue.take_ready() else {
                    break;
                };
                batch.push(id);
            }
            // The tokens beyond the jobs running go back to the pool.
            tokens.truncate(run.queue.running().saturating_sub(1));
            // The CPUs go to the jobs running now and those that could start beside them.
            let sharing = jobs_at_once
                .min(run.queue.running() + run.queue.ready())
                .max(1);
            let make_jobs = (limits.cpus / sharing).max(1);
            for id in batch {
                let job = &plan.jobs[id];
                run.tell(&Event::JobStarted {
                    id,
                    job: job.info.clone(),
                });
                let tx = tx.clone();
                scope.spawn(move || {
                    let t = Instant::now();
                    let result =
                        panic::catch_unwind(AssertUnwindSafe(|| exec.execute(job, make_jobs)))
                            .unwrap_or_else(|p| {
                                JobResult::Failed(Failure {
                                    what: format!(
                                        "dkms-hook bug: the job panicked: {}",
                                        panic_text(&*p)
                                    ),
                                    errors: Vec::new(),
                                    log: None,
                                    output: Vec::new(),
                                })
                            });
                    let _ = tx.send(Msg::Job(id, result, t.elapsed()));
                });
            }
            if run.queue.running() == 0 && run.depmods == 0 {
                break;
            }
            // A tick, to see a signal while jobs run.
            let msg = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => m,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            // Said before the first job it stopped.
            run.announce(stop);
            let ended = match msg {
                Msg::Job(id, result, elapsed) => run.job_ended(id, result, elapsed, stop),
                Msg::Depmod(kernel, result, elapsed) => {
                    run.depmod_ended(kernel, result, elapsed, stop);
                    Vec::new()
                }
                Msg::Token(t) => {
                    asked = false;
                    match t {
                        Ok(t) => tokens.push(t),
                        // The pool cannot be waited on: asked at each tick instead.
                        Err(_) => helper = None,
                    }
                    Vec::new()
                }
            };
            // depmod for each kernel whose last job this was.
            for kernel in run.kernels_done(&ended, stop) {
                run.depmods += 1;
                let tx = tx.clone();
                scope.spawn(move || {
                    let t = Instant::now();
                    let r = panic::catch_unwind(AssertUnwindSafe(|| exec.depmod(&kernel)))
                        .unwrap_or_else(|p| {
                            Err(DepmodError {
                                kernel: kernel.clone(),
                                said: format!("dkms-hook bug: panicked: {}", panic_text(&*p)),
                            })
                        });
                    let _ = tx.send(Msg::Depmod(kernel, r, t.elapsed()));
                });
            }
        }
    });
    if let Some(sig) = stop.signal() {
        run.tally.interrupted = Some(sig);
        stop.clean_up();
        run.after_the_signal(exec);
    }
    let tally = run.tally.clone();
    run.tell(&Event::RunFinished {
        elapsed: start.elapsed(),
        tally: tally.clone(),
    });
    tally
}

/// What the loop knows of a run while it goes: one method per message a job or a depmod sends.
struct State<'p, 'e> {
    plan: &'p Plan,
    /// Where every event goes, once counted in `tally`.
    on_event: &'e mut dyn FnMut(&Event),
    queue: Queue,
    tally: Tally,
    /// Jobs finished (done, failed or skipped), for the events' counters.
    finished: usize,
    /// Per kernel that needs depmod: its jobs still to end.
    pending: BTreeMap<&'p str, usize>,
    /// Per kernel: whether any of its jobs that ended ran (and may have changed its modules).
    changed: BTreeMap<&'p str, bool>,
    /// depmods running.
    depmods: usize,
    /// The jobs a signal stopped midway, to settle after the others.
    stopped: Vec<usize>,
    /// Per job: whether it ended (done or not, skipped included).
    ended: Vec<bool>,
    /// The kernels whose depmod succeeded.
    indexed: BTreeSet<String>,
    /// Whether the signal was said.
    announced: bool,
}

impl<'p, 'e> State<'p, 'e> {
    fn new(plan: &'p Plan, on_event: &'e mut dyn FnMut(&Event)) -> State<'p, 'e> {
        let mut pending: BTreeMap<&str, usize> = BTreeMap::new();
        for j in &plan.jobs {
            for k in &j.touches {
                if plan.depmod.contains(k) {
                    *pending.entry(k.as_str()).or_default() += 1;
                }
            }
        }
        State {
            plan,
            on_event,
            queue: Queue::new(plan.jobs.iter().map(Into::into).collect()),
            tally: Tally::default(),
            finished: 0,
            pending,
            changed: BTreeMap::new(),
            depmods: 0,
            stopped: Vec::new(),
            ended: vec![false; plan.jobs.len()],
            indexed: BTreeSet::new(),
            announced: false,
        }
    }

    /// Counts `event`, then tells it.
    fn tell(&mut self, event: &Event) {
        self.tally.record(event);
        (self.on_event)(event);
    }

    /// Tells of the signal once, when there is one.
    fn announce(&mut self, stop: &Interrupt) {
        if let (Some(sig), false) = (stop.signal(), self.announced) {
            self.announced = true;
            let running = self.queue.running();
            self.tell(&Event::Interrupted {
                signal: interrupt::name(sig),
                running,
                grace: interrupt::GRACE,
            });
        }
    }

    /// Job `id` ended: counted and told, and what needs it skipped when it failed. Returns the
    /// jobs that ended with it (it and those skipped), each with whether it ran.
    fn job_ended(
        &mut self,
        id: usize,
        result: JobResult,
        elapsed: Duration,
        stop: &Interrupt,
    ) -> Vec<JobEnded> {
        let jobs = &self.plan.jobs;
        let total = jobs.len();
        self.ended[id] = true;
        if stop.signal().is_some() && matches!(result, JobResult::Failed(_)) {
            // Stopped by the signal (or failed as it came): settled after the others.
            self.stopped.push(id);
            let _ = self.queue.finish(id, Ended::Succeeded);
            self.tell(&Event::JobInterrupted {
                id,
                job: jobs[id].info.clone(),
                elapsed,
            });
            return vec![JobEnded { id, ran: true }];
        }
        let how = match result {
            JobResult::Failed(_) => Ended::Failed,
            _ => Ended::Succeeded,
        };
        let ran = !matches!(result, JobResult::Excluded { .. });
        self.finished += 1;
        self.tell(&Event::JobFinished {
            id,
            job: jobs[id].info.clone(),
            result,
            elapsed,
            finished: self.finished,
            total,
        });
        let mut ended = vec![JobEnded { id, ran }];
        for Skipped {
            id: skipped,
            needed,
        } in self.queue.finish(id, how)
        {
            self.finished += 1;
            let c = &jobs[needed].info;
            let what = if needed == id {
                "failed"
            } else {
                "was skipped"
            };
            self.tell(&Event::JobSkipped {
                id: skipped,
                job: jobs[skipped].info.clone(),
                reason: format!("needs {}/{}, which {what}", c.module, c.version),
                finished: self.finished,
                total,
            });
            self.ended[skipped] = true;
            ended.push(JobEnded {
                id: skipped,
                ran: false,
            });
        }
        ended
    }

    /// A depmod ended: counted and told (one a signal stopped is done again after the
    /// cleanup, and said then).
    fn depmod_ended(
        &mut self,
        kernel: String,
        result: Result<(), DepmodError>,
        elapsed: Duration,
        stop: &Interrupt,
    ) {
        self.depmods -= 1;
        if result.is_ok() {
            self.indexed.insert(kernel.clone());
        } else if stop.signal().is_some() {
            return;
        }
        self.tell(&Event::Depmod {
            kernel,
            result,
            elapsed,
        });
    }

    /// The kernels whose last job is among `ended` and one of whose jobs ran: their depmod is
    /// due (none once a signal came: they get theirs after the cleanup).
    fn kernels_done(&mut self, ended: &[JobEnded], stop: &Interrupt) -> Vec<String> {
        let mut due = Vec::new();
        for &JobEnded { id, ran } in ended {
            for k in &self.plan.jobs[id].touches {
                let Some(n) = self.pending.get_mut(k.as_str()) else {
                    continue;
                };
                *self.changed.entry(k.as_str()).or_default() |= ran;
                *n -= 1;
                if *n == 0 && self.changed[k.as_str()] && stop.signal().is_none() {
                    due.push(k.clone());
                }
            }
        }
        due
    }

    /// After a signal, once no job runs: the stopped jobs' pairs settled, depmod for every
    /// kernel a job ran on whose index is not up to date yet, and what was left undone said.
    fn after_the_signal(&mut self, exec: &dyn Executor) {
        let plan = self.plan;
        let mut undone: Vec<JobInfo> = Vec::new();
        for id in std::mem::take(&mut self.stopped) {
            let job = &plan.jobs[id];
            let result = panic::catch_unwind(AssertUnwindSafe(|| exec.settle(job)))
                .unwrap_or_else(|p| Err(format!("dkms-hook bug: panicked: {}", panic_text(&*p))));
            let done = matches!(
                (&result, job.info.action),
                (Ok(Settled::Installed), Action::Build)
                    | (
                        Ok(Settled::Absent { .. }),
                        Action::RemoveFromKernel | Action::Unregister
                    )
            );
            if !done {
                undone.push(job.info.clone());
            }
            self.tell(&Event::Settled {
                id,
                job: job.info.clone(),
                result,
            });
        }
        let unindexed: Vec<&str> = self
            .changed
            .iter()
            .filter(|(k, ran)| **ran && !self.indexed.contains(**k))
            .map(|(k, _)| *k)
            .collect();
        for k in unindexed {
            let t = Instant::now();
            let result = exec.depmod(k);
            self.tell(&Event::Depmod {
                kernel: k.to_string(),
                result,
                elapsed: t.elapsed(),
            });
        }
        undone.extend(
            plan.jobs
                .iter()
                .enumerate()
                .filter(|(id, _)| !self.ended[*id])
                .map(|(_, j)| j.info.clone()),
        );
        self.tell(&Event::LeftUndone { jobs: undone });
    }
}

fn panic_text(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    /// A build of `module/1` for `kernel`.
    fn job(id: usize, module: &str, kernel: &str, needs: &[usize]) -> Job {
        Job {
            id,
            info: JobInfo {
                module: module.into(),
                version: "1".into(),
                kernel: Some(kernel.into()),
                action: Action::Build,
            },
            source: None,
            headers: None,
            direct: false,
            expect: vec![],
            needs: needs.to_vec(),
            shares: vec![],
            touches: vec![kernel.into()],
            cost: 1,
            prebuilt: None,
            remembered: None,
        }
    }

    fn plan(jobs: Vec<Job>) -> Plan {
        Plan {
            depmod: jobs.iter().flat_map(|j| j.touches.clone()).collect(),
            jobs,
            ..Plan::default()
        }
    }

    /// Does nothing but record; a module named `fail`, `panic` or `excluded` does that.
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<String>>,
    }

    impl Executor for Fake {
        fn execute(&self, job: &Job, make_jobs: usize) -> JobResult {
            let label = job.info.label();
            self.calls
                .lock()
                .unwrap()
                .push(format!("{label} -j{make_jobs}"));
            match job.info.module.as_str() {
                "panic" => panic!("injected"),
                "excluded" => JobResult::Excluded {
                    reason: "no".into(),
                },
                "fail" => JobResult::Failed(Failure {
                    what: "make failed".into(),
                    errors: vec![],
                    log: None,
                    output: vec![],
                }),
                _ => JobResult::Done { note: None },
            }
        }

        fn depmod(&self, kernel: &str) -> Result<(), DepmodError> {
            self.calls.lock().unwrap().push(format!("depmod {kernel}"));
            Ok(())
        }

        fn settle(&self, job: &Job) -> Result<Settled, String> {
            let label = job.info.label();
            self.calls.lock().unwrap().push(format!("settle {label}"));
            Ok(Settled::Absent { removed: true })
        }
    }

    /// A fake whose module `signal` gets SIGTERM while it runs (and fails, as a killed dkms does).
    #[derive(Default)]
    struct Signalled {
        fake: Fake,
        stop: Interrupt,
    }

    impl Executor for Signalled {
        fn execute(&self, job: &Job, make_jobs: usize) -> JobResult {
            let r = self.fake.execute(job, make_jobs);
            if job.info.module != "signal" {
                return r;
            }
            self.stop.raise(libc::SIGTERM);
            JobResult::Failed(Failure {
                what: "killed".into(),
                errors: vec![],
                log: None,
                output: vec![],
            })
        }

        fn depmod(&self, kernel: &str) -> Result<(), DepmodError> {
            self.fake.depmod(kernel)
        }

        fn settle(&self, job: &Job) -> Result<Settled, String> {
            self.fake.settle(job)
        }
    }

    #[test]
    fn a_signal_starts_nothing_more_settles_the_stopped_job_and_depmods_its_kernel() {
        let jobs = vec![
            job(0, "signal", "k1", &[]),
            job(1, "later", "k1", &[0]),
            job(2, "after", "k2", &[0]),
        ];
        let exec = Signalled::default();
        let mut events = Vec::new();
        let s = run_interruptible(&plan(jobs), one_at_a_time(), &exec, &exec.stop, &mut |e| {
            events.push(e.clone())
        });
        assert_eq!(
            exec.fake.calls.into_inner().unwrap(),
            ["signal/1 for k1 -j4", "settle signal/1 for k1", "depmod k1"]
        );
        assert_eq!(s.interrupted, Some(libc::SIGTERM));
        assert_eq!((s.built + s.removed, s.failed, s.skipped.len()), (0, 0, 0));
        let kinds: Vec<String> = events
            .iter()
            .map(|e| {
                format!("{e:?}")
                    .split([' ', '{', '('])
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "RunStarted",
                "JobStarted",
                "Interrupted",
                "JobInterrupted",
                "Settled",
                "Depmod",
                "LeftUndone",
                "RunFinished"
            ]
        );
        let Some(Event::LeftUndone { jobs }) = events
            .iter()
            .find(|e| matches!(e, Event::LeftUndone { .. }))
        else {
            unreachable!()
        };
        let undone: Vec<String> = jobs.iter().map(JobInfo::label).collect();
        // The stopped job, settled as absent, first; then those never started.
        assert_eq!(
            undone,
            ["signal/1 for k1", "later/1 for k1", "after/1 for k2"]
        );
    }

    /// Runs `jobs` on a fake executor in another thread, failing the test if the run hangs.
    fn run_fake(jobs: Vec<Job>, limits: Limits) -> (Vec<String>, Vec<Event>, Tally) {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let fake = Fake::default();
            let mut events = Vec::new();
            let s = run(&plan(jobs), limits, &fake, &mut |e| events.push(e.clone()));
            let _ = tx.send((fake.calls.into_inner().unwrap(), events, s));
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the run hung")
    }

    /// The jobs' calls in order, and the depmods (which run beside the next job).
    fn split(calls: &[String]) -> (Vec<&str>, BTreeSet<&str>) {
        let jobs = calls.iter().filter(|c| !c.starts_with("depmod"));
        let depmods = calls.iter().filter(|c| c.starts_with("depmod"));
        (
            jobs.map(String::as_str).collect(),
            depmods.map(String::as_str).collect(),
        )
    }

    /// depmod of `kernel` comes after every job of that kernel.
    fn depmod_after_its_jobs(calls: &[String], kernel: &str) -> bool {
        let d = calls.iter().position(|c| *c == format!("depmod {kernel}"));
        let last = calls
            .iter()
            .rposition(|c| c.contains(&format!(" for {kernel} ")));
        matches!((d, last), (Some(d), Some(l)) if d > l)
    }

    fn one_at_a_time() -> Limits {
        Limits { jobs: 1, cpus: 4 }
    }

    #[test]
    fn a_lone_module_on_two_kernels_builds_both_at_once() {
        // Its two kernels build at once (the second in a private tree, see
        // crate::execute::work): they share the CPUs, and neither waits for the other.
        let jobs = vec![job(0, "nvidia", "k1", &[]), job(1, "nvidia", "k2", &[])];
        let limits = Limits { jobs: 16, cpus: 16 };
        let (calls, _, _) = run_fake(jobs, limits);
        let mut builds: Vec<&String> = calls.iter().filter(|c| !c.starts_with("depmod")).collect();
        builds.sort();
        assert_eq!(builds, ["nvidia/1 for k1 -j8", "nvidia/1 for k2 -j8"]);
    }

    #[test]
    fn cpus_are_shared_among_the_jobs_that_can_start() {
        // a and b start together; c needs a and cannot start yet: it takes no share.
        let jobs = vec![
            job(0, "a", "k1", &[]),
            job(1, "b", "k1", &[]),
            job(2, "c", "k1", &[0]),
        ];
        let (calls, _, _) = run_fake(jobs, Limits { jobs: 16, cpus: 16 });
        // The order in which the fake records a and b's calls, and b's against c's (c may
        // start before b's thread records its call), is the threads' business.
        let at = |prefix: &str| calls.iter().position(|c| c.starts_with(prefix));
        assert!(calls.contains(&"a/1 for k1 -j8".to_string()), "{calls:?}");
        assert!(calls.contains(&"b/1 for k1 -j8".to_string()), "{calls:?}");
        assert!(at("c/1 for k1") > at("a/1 for k1"), "{calls:?}");
        let (_, depmods) = split(&calls);
        assert_eq!(depmods, BTreeSet::from(["depmod k1"]));
        assert!(depmod_after_its_jobs(&calls, "k1"));
    }

    #[test]
    fn one_at_a_time_follows_the_queue_and_depmods_each_kernel_after_its_last_job() {
        let jobs = vec![
            job(0, "small", "k1", &[]),
            job(1, "spl", "k2", &[]),
            job(2, "zfs", "k2", &[1]),
        ];
        let (calls, _, s) = run_fake(jobs, one_at_a_time());
        let (order, depmods) = split(&calls);
        assert_eq!(
            order,
            ["spl/1 for k2 -j4", "small/1 for k1 -j4", "zfs/1 for k2 -j4"]
        );
        assert_eq!(depmods, BTreeSet::from(["depmod k1", "depmod k2"]));
        assert!(depmod_after_its_jobs(&calls, "k1") && depmod_after_its_jobs(&calls, "k2"));
        assert_eq!(
            (
                s.built + s.removed,
                s.failed,
                s.skipped.len(),
                s.interrupted
            ),
            (3, 0, 0, None)
        );
    }

    #[test]
    fn a_failure_skips_what_needs_it_and_nothing_else() {
        let jobs = vec![
            job(0, "fail", "k1", &[]),
            job(1, "user", "k1", &[0]),
            job(2, "other", "k2", &[]),
            job(3, "excluded", "k3", &[]),
        ];
        let (calls, events, s) = run_fake(jobs, one_at_a_time());
        let (order, depmods) = split(&calls);
        assert_eq!(
            order,
            [
                "fail/1 for k1 -j4",
                "other/1 for k2 -j4",
                "excluded/1 for k3 -j4"
            ]
        );
        // A failed job may have changed its kernel (k1 gets depmod); an excluded one did not.
        assert_eq!(depmods, BTreeSet::from(["depmod k1", "depmod k2"]));
        let skipped: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::JobSkipped { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(skipped, ["needs fail/1, which failed"]);
        assert_eq!(
            (
                s.built + s.removed,
                s.failed,
                s.skipped.len(),
                s.interrupted
            ),
            (1, 1, 2, None)
        );
    }

    #[test]
    fn a_job_that_panics_is_a_failed_job_not_a_hang() {
        let jobs = vec![
            job(0, "panic", "k1", &[]),
            job(1, "user", "k1", &[0]),
            job(2, "other", "k2", &[]),
        ];
        let (_, events, s) = run_fake(jobs, Limits { jobs: 2, cpus: 2 });
        assert_eq!(
            (
                s.built + s.removed,
                s.failed,
                s.skipped.len(),
                s.interrupted
            ),
            (1, 1, 1, None)
        );
        let failure = events.iter().find_map(|e| match e {
            Event::JobFinished {
                result: JobResult::Failed(f),
                ..
            } => Some(f.what.clone()),
            _ => None,
        });
        assert_eq!(
            failure.as_deref(),
            Some("dkms-hook bug: the job panicked: injected")
        );
        assert!(matches!(events.last(), Some(Event::RunFinished { .. })));
    }

    /// A fake whose jobs each hold for a while, counting how many run at once, with a real
    /// jobserver of `cpus` tokens that the loop must account for.
    struct Pooled {
        pool: Jobserver,
        now: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
    }

    impl Executor for Pooled {
        fn execute(&self, _job: &Job, _make_jobs: usize) -> JobResult {
            use std::sync::atomic::Ordering::SeqCst;
            let n = self.now.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(n, SeqCst);
            std::thread::sleep(Duration::from_millis(50));
            self.now.fetch_sub(1, SeqCst);
            JobResult::Done { note: None }
        }

        fn depmod(&self, _kernel: &str) -> Result<(), DepmodError> {
            Ok(())
        }

        fn settle(&self, _job: &Job) -> Result<Settled, String> {
            Ok(Settled::Absent { removed: true })
        }

        fn jobserver(&self) -> Option<&Jobserver> {
            Some(&self.pool)
        }
    }

    /// With a jobserver, every job beyond the first running holds one of its tokens: on 2 CPUs,
    /// 8 jobs allowed at once still run 2 at a time, and every token is back at the end.
    #[test]
    fn with_a_jobserver_jobs_beyond_the_first_each_hold_a_token() {
        for (cpus, want) in [(1, 1), (2, 2), (3, 3)] {
            let root = tempfile::tempdir().unwrap();
            let exec = Pooled {
                pool: Jobserver::new(cpus, root.path(), None).unwrap(),
                now: Default::default(),
                most: Default::default(),
            };
            let jobs = (0..8)
                .map(|i| job(i, &format!("m{i}"), "k1", &[]))
                .collect();
            let limits = Limits { jobs: 8, cpus };
            let tally = run(&plan(jobs), limits, &exec, &mut |_| {});
            assert_eq!(tally.failed, 0);
            assert_eq!(exec.most.into_inner(), want, "on {cpus} CPUs");
            assert_eq!(exec.pool.client().available().unwrap(), cpus - 1);
        }
    }
}
