//! The trial, in the view of the system after the transaction ([`super::view`]): the child
//! process that `dkms-hook preflight` starts makes the view, then runs the usual pipeline
//! (inventory, plan, runner, reporter) on the system's own trees there, as the install hook will
//! run it after the transaction, and keeps the builds that succeed in the store
//! ([`crate::system::prebuilt`]). It reports back through a file ([`Outcome`]); the preflight decides.
//!
//! Before planning, the dkms tree of the view is made what the hooks will have made of it by the
//! time the install hook builds: the versions whose sources leave or are replaced in place (a
//! same-version rebuild) are gone from it (the remove hook removes them; a version that a new one
//! replaces is swapped out once the new one is built), and so is every build for an incoming
//! kernel (a kernel reinstalled under the same release). All of it in the view only.

use super::view::{self, Spec};
use crate::execute::executor::DkmsExecutor;
use crate::plan::inventory::{Depth, Inventory, SourceSelection};
use crate::plan::targets::Targets;
use crate::plan::{self, Mode, Request};
use crate::report::reporter::{Reporter, Style};
use crate::run::events::{Event, Failure, JobResult};
use crate::run::runner::{self, Limits};
use crate::system::dkms::Dkms;
use crate::system::dkms_tree::{DkmsTree, PairId};
use crate::system::prebuilt::{self, Store};
use crate::system::trees::Trees;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What the child is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialRequest {
    pub view: Spec,
    /// Incoming kernels that will have headers (trial-built for every AUTOINSTALL module).
    pub kernels: Vec<String>,
    /// Incoming module source directories, relative to the root (`usr/src/foo-1.1`).
    pub sources: Vec<PathBuf>,
    /// Module source directories that leave, relative to the root.
    pub sources_leaving: Vec<PathBuf>,
    /// Kernels whose headers leave and that no package brings again: in the view they have no
    /// headers, and after the transaction no directory; nothing is planned (nor said) for them.
    #[serde(default)]
    pub kernels_leaving: Vec<String>,
    pub jobs: usize,
    pub cpus: usize,
    pub arch: String,
    pub job_timeout_secs: Option<u64>,
    /// The preflight's trial (`true`): say again, instead of compiling again, what the store
    /// remembers failed with the same inputs. A prebuild's (`false`): build everything
    /// afresh, and mark the builds as its own.
    pub remembered: bool,
    /// Where the child writes its [`Outcome`].
    pub outcome: PathBuf,
    /// The run lock's descriptor, inherited: the child's own watchdog holds it
    /// ([`crate::os::watchdog`]).
    #[serde(default)]
    pub lock_fd: Option<i32>,
}

/// What the child found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The view could not be made: why. Nothing was tried.
    pub view_error: Option<String>,
    /// Incoming kernel -> how many modules built for it.
    pub ok: BTreeMap<String, usize>,
    /// Module name -> the kernels it did not build for.
    pub failed: BTreeMap<String, BTreeSet<String>>,
    /// The planner's notes, as printed (the install hook does not say them again).
    pub notes: Vec<String>,
    /// A build failed for want of room (`No space left on device`, or the view's writes'
    /// filesystem full after it): where it showed, in words. Then no failure is the module's.
    pub out_of_space: Option<String>,
    /// A stopping signal ended the trial early: its number.
    #[serde(default)]
    pub interrupted: Option<i32>,
    /// Module name -> the kernels whose trial build it did not finish (interrupted): not
    /// checked, and not in `failed`.
    #[serde(default)]
    pub unchecked: BTreeMap<String, BTreeSet<String>>,
    /// Module name -> kernel -> the line of a build that wrote where the sealed view lets
    /// nothing write (`Read-only file system`): not checked, and not in `failed`.
    #[serde(default)]
    pub sealed: BTreeMap<String, BTreeMap<String, String>>,
}

/// The child's whole work: view, trial, outcome file. Its exit status is 0 unless the outcome
/// cannot be written (then the preflight says it could not look).
pub fn run_child(request_file: &Path) -> u8 {
    let req: TrialRequest = match std::fs::read(request_file)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "dkms-hook: error: preflight view: {}: {e}",
                request_file.display()
            );
            return 2;
        }
    };
    // Its dkms groups die with it, however it dies, and the lock is free only once they are
    // gone: its own watchdog holds the lock's descriptor, which its children do not inherit.
    if let Some(fd) = req.lock_fd {
        // SAFETY: fcntl on a descriptor number; a wrong one only fails.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0 {
            crate::os::watchdog::start(fd);
        }
    }
    let code = run_trial(&req);
    crate::os::watchdog::stop();
    code
}

fn run_trial(req: &TrialRequest) -> u8 {
    let outcome = match view::enter(&req.view) {
        Err(e) => Outcome {
            view_error: Some(e),
            ..Default::default()
        },
        Ok(()) => {
            let outcome = trial(req);
            // Its writes go first: they may fill the filesystem the outcome is written to.
            view::leave(&req.view);
            outcome
        }
    };
    let text = serde_json::to_vec(&outcome).unwrap_or_default();
    match std::fs::write(&req.outcome, text) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "dkms-hook: error: preflight view: {}: {e}",
                req.outcome.display()
            );
            2
        }
    }
}

fn trial(req: &TrialRequest) -> Outcome {
    let trees = match Trees::load(&req.view.root) {
        Ok(t) => t,
        Err(e) => {
            return Outcome {
                view_error: Some(e.to_string()),
                ..Default::default()
            }
        }
    };
    let arch = &req.arch;
    clear_for_trial(&trees, req);
    let rel = |p: &Path| p.strip_prefix(&trees.root).unwrap_or(p).to_path_buf();
    let (source, install) = (rel(&trees.source), rel(&trees.install));
    let mut text = String::new();
    for k in &req.kernels {
        text.push_str(&format!("{}/{k}/build/include/\n", install.display()));
    }
    for s in &req.sources {
        text.push_str(&format!("{}/dkms.conf\n", s.display()));
    }
    let targets = Targets::parse(text.as_bytes(), &source, &install);
    let wanted: BTreeSet<PathBuf> = req.sources.iter().map(|s| trees.root.join(s)).collect();
    let mut inv = Inventory::load(&trees, arch, &SourceSelection::All, Depth::Newest(&wanted));
    if req.remembered {
        inv.load_remembered();
    }
    // The kernels that stay or arrive (none named: all of them).
    let kernels: Vec<String> = match req.kernels_leaving.is_empty() {
        true => vec![],
        false => inv
            .kernels
            .iter()
            .map(|k| k.release.clone())
            .filter(|k| !req.kernels_leaving.contains(k))
            .collect(),
    };
    let mut plan = plan::plan(
        &Request {
            mode: Mode::Install,
            targets,
            kernels,
            force: false,
            rebuild: crate::execute::journal::rebuild_pairs(&trees),
        },
        &inv,
    );
    // No depmod: the view's module index goes with the view, and the install hook runs depmod
    // on the real one after the transaction (the builds are verified without it).
    plan.depmod.clear();
    let mut reporter = Reporter::new(Box::new(std::io::stdout()), Style::detect(false, true))
        .trial()
        .under_root(&trees.root);
    let mut dkms = Dkms::new(&trees);
    // The same jobserver as the install hook's: the trial builds as the hook would. Its make
    // wrapper goes in the scratch (beside the overlays' upper directories), which the view
    // leaves writable: the root's run/ is sealed read-only there.
    let wrapper = req.view.upper.with_file_name("jobserver");
    if let Err(e) = dkms.share_make_with_wrapper_in(req.cpus, &wrapper) {
        eprintln!("dkms-hook: warning: {e}");
    }
    let exec = DkmsExecutor {
        dkms,
        arch: arch.clone(),
        force: false,
        job_timeout: req.job_timeout_secs.map(std::time::Duration::from_secs),
    };
    let limits = Limits {
        jobs: req.jobs,
        cpus: req.cpus,
    };
    // The failures, to remember with the stamps of what they failed with: only those that
    // ended before any signal (a build a signal stopped says nothing of the module), and none
    // of a trial that ran out of space. The pairs an interruption left undone: not checked,
    // not failed.
    let mut failures: BTreeMap<PairId, Failure> = BTreeMap::new();
    let mut undone: BTreeSet<(String, String)> = BTreeSet::new();
    let mut sealed: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let stop = crate::os::interrupt::global();
    let mut out_of_space = None;
    runner::run(&plan, limits, &exec, &mut |e| {
        if out_of_space.is_none() {
            out_of_space = no_space(e, &req.view.upper);
            if out_of_space.is_some() {
                reporter.trial_out_of_space();
            }
        }
        if let Some((job, line)) = refused_by_the_seal(e) {
            if let Some(k) = &job.kernel {
                reporter.trial_refused(&format!("{}/{}", job.module, job.version), k);
                sealed
                    .entry(job.module.clone())
                    .or_default()
                    .insert(k.clone(), line);
            }
        }
        if let Event::LeftUndone { jobs } = e {
            for j in jobs {
                if let Some(k) = &j.kernel {
                    undone.insert((j.module.clone(), k.clone()));
                }
            }
        }
        if let (
            Event::JobFinished {
                job,
                result: JobResult::Failed(f),
                ..
            },
            None,
        ) = (e, stop.signal())
        {
            if let Some(k) = &job.kernel {
                failures.insert(PairId::new(&job.module, &job.version, k), f.clone());
            }
        }
        reporter.handle(e)
    });
    if out_of_space.is_some() {
        failures.clear();
    }
    failures.retain(|p, _| {
        !sealed
            .get(&p.name)
            .is_some_and(|ks| ks.contains_key(&p.kernel))
    });
    drop(reporter);
    let interrupted = crate::os::interrupt::global().signal();
    let built = DkmsTree::read(&trees.dkms);
    let origin = if req.remembered {
        "preflight".to_owned()
    } else {
        format!("prebuild {}", now_utc())
    };
    // What built and installed before a signal is whole (verified): kept too, under its stamp.
    keep_builds(&plan, &built, &trees, &exec, &failures, &origin);
    let mut out = Outcome {
        ok: req.kernels.iter().map(|k| (k.clone(), 0)).collect(),
        notes: plan.notes.clone(),
        out_of_space,
        interrupted,
        ..Default::default()
    };
    for job in &plan.jobs {
        let Some(k) = &job.info.kernel else { continue };
        if built.installed(&job.info.module, k, arch) == Some(job.info.version.as_str()) {
            *out.ok.entry(k.clone()).or_default() += 1;
        } else if sealed
            .get(&job.info.module)
            .is_some_and(|ks| ks.contains_key(k))
        {
            // Said in `sealed`, not a verdict.
        } else if undone.contains(&(job.info.module.clone(), k.clone())) {
            out.unchecked
                .entry(job.info.module.clone())
                .or_default()
                .insert(k.clone());
        } else {
            out.failed
                .entry(job.info.module.clone())
                .or_default()
                .insert(k.clone());
        }
    }
    out.sealed = sealed;
    for d in &plan.failed {
        let module = d.subject.split('/').next().unwrap_or(&d.subject).to_owned();
        let k = d.kernel.clone().unwrap_or_else(|| "every kernel".into());
        out.failed.entry(module).or_default().insert(k);
    }
    out
}

/// A job that failed because it wrote where the sealed view lets nothing write (see
/// [`super::view`]'s seal): the job, and the first line that says so.
fn refused_by_the_seal(e: &Event) -> Option<(&crate::plan::JobInfo, String)> {
    let (job, f) = failed_job(e)?;
    said(f)
        .find(|l| l.contains("Read-only file system"))
        .map(|l| (job, l.trim().to_owned()))
}

/// The job and its failure, when `e` is a job that failed.
fn failed_job(e: &Event) -> Option<(&crate::plan::JobInfo, &Failure)> {
    match e {
        Event::JobFinished {
            job,
            result: JobResult::Failed(f),
            ..
        } => Some((job, f)),
        _ => None,
    }
}

/// Every line a failure says: what failed, the compiler's errors, what dkms printed.
fn said(f: &Failure) -> impl Iterator<Item = &String> {
    std::iter::once(&f.what).chain(&f.errors).chain(&f.output)
}

/// Below this many bytes free, the filesystem of the view's writes counts as full.
const FULL_BELOW: u64 = 1 << 20;

/// Whether `e` is a job that failed for want of room: it says `No space left on device` (the
/// executor finds it in dkms's output and make.log), or `upper`, where the view's writes go, is
/// full right after it (when nothing could even be written to say so).
fn no_space(e: &Event, upper: &Path) -> Option<String> {
    let (job, f) = failed_job(e)?;
    let pair = format!(
        "{}/{} for {}",
        job.module,
        job.version,
        job.kernel.as_deref().unwrap_or("every kernel")
    );
    if said(f).any(|l| l.contains("No space left on device")) {
        return Some(format!("the build of {pair}: No space left on device"));
    }
    let free = crate::execute::work::free_bytes(upper)?;
    (free < FULL_BELOW).then(|| format!("the build of {pair} failed with its filesystem full"))
}

/// Makes the view's dkms tree what the hooks will have made of it when the install hook builds
/// (see the module's comment).
fn clear_for_trial(trees: &Trees, req: &TrialRequest) {
    let tree = DkmsTree::read(&trees.dkms);
    let replaced: BTreeSet<PathBuf> = req
        .sources
        .iter()
        .chain(&req.sources_leaving)
        .map(|s| trees.root.join(s))
        .collect();
    for (m, entry) in &tree.modules {
        for (v, ve) in &entry.versions {
            let goes = ve.source.as_ref().is_some_and(|s| replaced.contains(s));
            if !goes {
                continue;
            }
            let kernels: BTreeSet<(String, String)> = ve
                .built
                .keys()
                .cloned()
                .chain(
                    entry
                        .installed
                        .iter()
                        .filter(|(_, iv)| *iv == v)
                        .map(|(ka, _)| ka.clone()),
                )
                .collect();
            for (k, a) in kernels {
                let _ = crate::system::dkms_tree::remove_directly(trees, m, v, &k, &a);
            }
            let _ =
                std::fs::remove_dir_all(crate::system::dkms_tree::version_dir(&trees.dkms, m, v));
        }
    }
    for k in &req.kernels {
        for mv in tree.pairs_for_kernel(k) {
            let _ = crate::system::dkms_tree::remove_directly(
                trees,
                &mv.name,
                &mv.version,
                k,
                &req.arch,
            );
        }
    }
}

/// Keeps each trial build that installed in the view for the install hook after the
/// transaction, stamped with what it was compiled from (see [`crate::system::prebuilt`]), and
/// remembers each one that failed, with its failure and log.
fn keep_builds(
    plan: &plan::Plan,
    built: &DkmsTree,
    trees: &Trees,
    cfg: &DkmsExecutor,
    failures: &BTreeMap<PairId, Failure>,
    origin: &str,
) {
    let store = Store::at(&trees.root);
    let mut cache = prebuilt::StampCache::default();
    for job in &plan.jobs {
        let (Some(k), Some(source), Some(headers)) = (&job.info.kernel, &job.source, &job.headers)
        else {
            continue;
        };
        let (m, v) = (&job.info.module, &job.info.version);
        let failure = failures.get(&PairId::new(m, v, k));
        if built.installed(m, k, &cfg.arch) != Some(v.as_str()) && failure.is_none() {
            continue;
        }
        let inputs = prebuilt::Inputs {
            module: m,
            version: v,
            kernel: k,
            arch: &cfg.arch,
            source,
            headers,
            dkms: &cfg.dkms.program,
            trees,
        };
        if let Some(f) = failure {
            if job.remembered.is_some() {
                continue; // remembered already, with the same stamp
            }
            let remembered = prebuilt::Failure {
                what: f.what.clone(),
                errors: f.errors.clone(),
                output: f.output.clone(),
                log: None,
                when: now_utc(),
            };
            if let Err(e) = store.remember_failure(
                &inputs,
                &prebuilt::stamp_with(&mut cache, &inputs),
                remembered,
                f.log.as_deref(),
            ) {
                println!(
                    "warning: preflight: remembering the failure of {m}/{v} for {k} in {}: {e}",
                    trees.display(&store.dir)
                );
            }
            continue;
        }
        let dir = crate::system::dkms_tree::pair_dir(&trees.dkms, m, v, k, &cfg.arch);
        // A build taken from the store keeps who made it.
        let origin = match &job.prebuilt {
            Some(from) => prebuilt::origin_of(from),
            None => origin.to_owned(),
        };
        if let Err(e) = store.keep(
            &dir,
            &inputs,
            &prebuilt::stamp_with(&mut cache, &inputs),
            &origin,
        ) {
            // Not fatal: the install hook builds it again.
            println!(
                "warning: preflight: keeping the build of {m}/{v} for {k} in {}: {e} (the \
                 install hook compiles it again)",
                trees.display(&store.dir)
            );
        }
    }
}

/// Now, as `YYYY-MM-DD HH:MM` UTC (civil from days: Howard Hinnant's algorithm).
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60
    )
}
