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
use crate::plan::inventory::{Inventory, SourceSelection};
use crate::plan::targets::Targets;
use crate::plan::{self, Mode, Request};
use crate::report::reporter::{Reporter, Style};
use crate::run::events::Event;
use crate::run::runner::{self, Limits};
use crate::system::dkms::Dkms;
use crate::system::dkms_tree::DkmsTree;
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
    pub jobs: usize,
    pub cpus: usize,
    pub arch: String,
    pub job_timeout_secs: Option<u64>,
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
    /// A stopping signal ended the trial early: its number.
    #[serde(default)]
    pub interrupted: Option<i32>,
    /// Module name -> the kernels whose trial build it did not finish (interrupted): not
    /// checked, and not in `failed`.
    #[serde(default)]
    pub unchecked: BTreeMap<String, BTreeSet<String>>,
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
        Ok(()) => trial(req),
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
    let inv = Inventory::load(&trees, arch, &SourceSelection::All);
    let plan = plan::plan(
        &Request {
            mode: Mode::Install,
            targets,
            kernels: vec![],
            force: false,
            rebuild: crate::execute::journal::rebuild_pairs(&trees),
        },
        &inv,
    );
    let mut reporter = Reporter::new(Box::new(std::io::stdout()), Style::detect(false, true))
        .trial()
        .under_root(&trees.root);
    let exec = DkmsExecutor {
        dkms: Dkms::new(&trees),
        arch: arch.clone(),
        force: false,
        job_timeout: req.job_timeout_secs.map(std::time::Duration::from_secs),
    };
    let limits = Limits {
        jobs: req.jobs,
        cpus: req.cpus,
    };
    // The pairs an interruption left undone: not checked, not failed.
    let mut undone: BTreeSet<(String, String)> = BTreeSet::new();
    runner::run(&plan, limits, &exec, &mut |e| {
        if let Event::LeftUndone { jobs } = e {
            for j in jobs {
                if let Some(k) = &j.kernel {
                    undone.insert((j.module.clone(), k.clone()));
                }
            }
        }
        reporter.handle(e)
    });
    drop(reporter);
    let interrupted = crate::os::interrupt::global().signal();
    let built = DkmsTree::read(&trees.dkms);
    if interrupted.is_none() {
        keep_builds(&plan, &built, &trees, &exec);
    }
    let mut out = Outcome {
        ok: req.kernels.iter().map(|k| (k.clone(), 0)).collect(),
        notes: plan.notes.clone(),
        interrupted,
        ..Default::default()
    };
    for job in &plan.jobs {
        let Some(k) = &job.info.kernel else { continue };
        if built.installed(&job.info.module, k, arch) == Some(job.info.version.as_str()) {
            *out.ok.entry(k.clone()).or_default() += 1;
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
    for d in &plan.failed {
        let module = d.subject.split('/').next().unwrap_or(&d.subject).to_owned();
        let k = d.kernel.clone().unwrap_or_else(|| "every kernel".into());
        out.failed.entry(module).or_default().insert(k);
    }
    out
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
/// transaction, stamped with what it was compiled from (see [`crate::system::prebuilt`]).
fn keep_builds(plan: &plan::Plan, built: &DkmsTree, trees: &Trees, cfg: &DkmsExecutor) {
    let store = Store::at(&trees.root);
    for job in &plan.jobs {
        let (Some(k), Some(source), Some(headers)) = (&job.info.kernel, &job.source, &job.headers)
        else {
            continue;
        };
        let (m, v) = (&job.info.module, &job.info.version);
        if built.installed(m, k, &cfg.arch) != Some(v.as_str()) {
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
        let dir = crate::system::dkms_tree::pair_dir(&trees.dkms, m, v, k, &cfg.arch);
        if let Err(e) = store.keep(&dir, &inputs, &prebuilt::stamp(&inputs)) {
            // Not fatal: the install hook builds it again.
            println!("warning: preflight: keeping the build of {m}/{v} for {k}: {e}");
        }
    }
}
