//! The runner: executes a plan with up to N jobs at once, and tells the reporter what happens.
//!
//! std threads and one channel: the loop starts ready jobs from the [`Queue`] while there is room,
//! waits for one to finish, records the outcome, and never leaves early while children run (a failure
//! stops only what needs the failed job, everything else goes on). make's parallelism is shared:
//! each dkms call gets `-j` = CPUs divided by the jobs that can run at that moment, so a lone big
//! module uses every core and twelve small ones do not oversubscribe the machine. depmod runs once per
//! kernel, after that kernel's last job. The runner knows nothing of display: it only emits [`Event`]s.

use crate::dkms::{self, Dkms};
use crate::events::{Action, Event, Failure, JobResult};
use crate::plan::{Job, Plan};
use crate::queue::Queue;
use crate::trees::Trees;
use crate::verify;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Jobs at once.
    pub jobs: usize,
    /// CPUs to share among concurrent makes.
    pub cpus: usize,
    pub force: bool,
    pub arch: String,
    pub dkms: Dkms,
}

/// The end of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunSummary {
    pub failed: usize,
    pub done: usize,
    pub skipped: usize,
}

enum Msg {
    Job(usize, JobResult, Duration),
    Depmod(String, Result<(), String>, Duration),
}

/// Runs `plan`, calling `on_event` for everything that happens, from this thread only.
pub fn run(plan: &Plan, cfg: &RunConfig, on_event: &mut dyn FnMut(&Event)) -> RunSummary {
    let start = Instant::now();
    let jobs_at_once = cfg.jobs.max(1);
    on_event(&Event::RunStarted {
        jobs: plan.jobs.len(),
        concurrency: jobs_at_once.min(plan.jobs.len().max(1)),
        skipped: plan.skipped.clone(),
        failed: plan.failed.clone(),
        notes: plan.notes.clone(),
    });
    let mut summary = RunSummary {
        failed: plan.failed.len(),
        ..Default::default()
    };
    let total = plan.jobs.len();
    let mut queue = Queue::new(&plan.jobs);
    // Jobs still to finish per kernel that needs depmod, and whether anything changed there.
    let mut pending: BTreeMap<&str, usize> = BTreeMap::new();
    for j in &plan.jobs {
        for k in &j.touches {
            if plan.depmod.contains(k) {
                *pending.entry(k.as_str()).or_default() += 1;
            }
        }
    }
    let mut changed: BTreeMap<&str, bool> = BTreeMap::new();
    let (mut started, mut finished, mut depmods) = (0, 0, 0);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<Msg>();
        loop {
            while queue.running() < jobs_at_once {
                let Some(id) = queue.take_ready() else { break };
                started += 1;
                let job = &plan.jobs[id];
                on_event(&Event::JobStarted {
                    job: job.info.clone(),
                    index: started,
                    total,
                });
                let sharing = jobs_at_once.min(queue.unfinished()).max(1);
                let make_jobs = (cfg.cpus / sharing).max(1);
                let tx = tx.clone();
                scope.spawn(move || {
                    let t = Instant::now();
                    let result = execute(job, cfg, make_jobs);
                    let _ = tx.send(Msg::Job(id, result, t.elapsed()));
                });
            }
            if queue.running() == 0 && depmods == 0 {
                break;
            }
            let Ok(msg) = rx.recv() else { break };
            let mut ended: Vec<(usize, bool)> = Vec::new();
            match msg {
                Msg::Job(id, result, elapsed) => {
                    let ok = !matches!(result, JobResult::Failed(_));
                    match &result {
                        JobResult::Done { .. } => summary.done += 1,
                        JobResult::Excluded { .. } => summary.skipped += 1,
                        JobResult::Failed(_) => summary.failed += 1,
                    }
                    finished += 1;
                    on_event(&Event::JobFinished {
                        job: plan.jobs[id].info.clone(),
                        result: result.clone(),
                        elapsed,
                        finished,
                        total,
                    });
                    ended.push((id, matches!(result, JobResult::Done { .. })));
                    for (skipped, cause) in queue.finish(id, ok) {
                        finished += 1;
                        summary.skipped += 1;
                        let c = &plan.jobs[cause].info;
                        let what = if cause == id { "failed" } else { "was skipped" };
                        on_event(&Event::JobSkipped {
                            job: plan.jobs[skipped].info.clone(),
                            reason: format!("needs {}/{}, which {what}", c.module, c.version),
                            finished,
                            total,
                        });
                        ended.push((skipped, false));
                    }
                }
                Msg::Depmod(kernel, result, elapsed) => {
                    depmods -= 1;
                    if result.is_err() {
                        summary.failed += 1;
                    }
                    on_event(&Event::Depmod {
                        kernel,
                        result,
                        elapsed,
                    });
                }
            }
            for (id, did_change) in ended {
                for k in &plan.jobs[id].touches {
                    let Some(n) = pending.get_mut(k.as_str()) else {
                        continue;
                    };
                    *changed.entry(k.as_str()).or_default() |= did_change;
                    *n -= 1;
                    if *n == 0 && changed[k.as_str()] {
                        depmods += 1;
                        let tx = tx.clone();
                        let kernel = k.clone();
                        let trees = &cfg.dkms.trees;
                        scope.spawn(move || {
                            let t = Instant::now();
                            let r = depmod(trees, &kernel);
                            let _ = tx.send(Msg::Depmod(kernel, r, t.elapsed()));
                        });
                    }
                }
            }
        }
    });
    on_event(&Event::RunFinished {
        elapsed: start.elapsed(),
    });
    summary
}

fn execute(job: &Job, cfg: &RunConfig, make_jobs: usize) -> JobResult {
    match job.info.action {
        Action::Build => build(job, cfg, make_jobs),
        Action::RemoveFromKernel => remove_from_kernel(job, cfg),
        Action::Unregister => unregister(job, cfg),
    }
}

fn build(job: &Job, cfg: &RunConfig, make_jobs: usize) -> JobResult {
    let (m, v) = (&job.info.module, &job.info.version);
    let kernel = job.info.kernel.as_deref().unwrap_or_default();
    let trees = &cfg.dkms.trees;
    let Some(headers) = &job.headers else {
        return failed(
            format!("kernel {kernel} has no headers"),
            None,
            vec![],
            None,
            "",
        );
    };
    // Register the version first when dkms does not know it (jobs of one version never overlap).
    if fs::symlink_metadata(trees.dkms.join(m).join(v).join("source")).is_err() {
        let expected = trees.source.join(format!("{m}-{v}"));
        if let Some(src) = &job.source {
            if *src != expected {
                return failed(
                    format!(
                        "{} declares {m} {v}, but dkms only takes sources from {}: rename the directory",
                        trees.display(&src.join("dkms.conf")),
                        trees.display(&expected)
                    ),
                    None,
                    vec![],
                    None,
                    "",
                );
            }
        }
        let added = cfg.dkms.add(m, v);
        if !added.ok() && added.code != Some(dkms::exit::ALREADY) {
            let log = keep_log(trees, job, &added.output, None);
            return failed(
                format!("dkms add {}", dkms::exit_words(added.code)),
                added.code,
                vec![],
                log,
                &added.output,
            );
        }
    }
    let out = cfg
        .dkms
        .install(m, v, kernel, headers, make_jobs, cfg.force);
    match out.code {
        Some(dkms::exit::OK) => match verify::check_install(trees, m, v, kernel, &cfg.arch) {
            Ok(()) => JobResult::Done { note: None },
            Err(why) => {
                let log = keep_log(trees, job, &out.output, None);
                failed(why, None, vec![], log, "")
            }
        },
        Some(dkms::exit::EXCLUDED) => JobResult::Excluded {
            reason: "dkms: BUILD_EXCLUSIVE directive does not match this kernel".to_string(),
        },
        code => {
            let make_log =
                fs::read_to_string(trees.dkms.join(m).join(v).join("build/make.log")).ok();
            // The compiler's own errors; failing that, the end of make.log says more than dkms.
            let errors = make_log
                .as_deref()
                .map(|l| {
                    let e = crate::makelog::error_lines(l, 40);
                    if e.is_empty() {
                        crate::makelog::tail(l, 15)
                    } else {
                        e
                    }
                })
                .unwrap_or_default();
            let log = keep_log(trees, job, &out.output, make_log.as_deref());
            failed(dkms::exit_words(code), code, errors, log, &out.output)
        }
    }
}

fn remove_from_kernel(job: &Job, cfg: &RunConfig) -> JobResult {
    let (m, v) = (&job.info.module, &job.info.version);
    let kernel = job.info.kernel.as_deref().unwrap_or_default();
    let trees = &cfg.dkms.trees;
    let mut note = None;
    if !job.direct {
        let out = cfg.dkms.remove(m, v, Some(kernel));
        if out.ok() && leftovers(trees, m, v, kernel, &cfg.arch).is_empty() {
            prune_empty(&trees.kernel_dir(kernel));
            return JobResult::Done { note: None };
        }
        note = Some(format!(
            "dkms remove {}; removed its files directly",
            dkms::exit_words(out.code)
        ));
    }
    match remove_directly(trees, m, v, kernel, &cfg.arch) {
        Ok(()) => JobResult::Done {
            note: note.or_else(|| {
                Some(format!(
                    "kernel {kernel} has no headers: removed dkms's files for it directly"
                ))
            }),
        },
        Err(e) => failed(e, None, vec![], None, ""),
    }
}

fn unregister(job: &Job, cfg: &RunConfig) -> JobResult {
    let (m, v) = (&job.info.module, &job.info.version);
    let trees = &cfg.dkms.trees;
    let out = cfg.dkms.remove(m, v, None);
    let version_dir = trees.dkms.join(m).join(v);
    if out.ok() && fs::symlink_metadata(&version_dir).is_err() {
        return JobResult::Done { note: None };
    }
    // dkms could not finish (e.g. a kernel's headers are gone): finish its work directly.
    let kernels: Vec<String> = fs::read_dir(&version_dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir() && e.file_type().is_ok_and(|t| !t.is_symlink()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "build" && n != "source")
                .collect()
        })
        .unwrap_or_default();
    for k in &kernels {
        if let Err(e) = remove_directly(trees, m, v, k, &cfg.arch) {
            return failed(e, out.code, vec![], None, &out.output);
        }
    }
    if let Err(e) = fs::remove_dir_all(&version_dir).or_else(ignore_missing) {
        return failed(
            format!("{}: {e}", trees.display(&version_dir)),
            out.code,
            vec![],
            None,
            &out.output,
        );
    }
    let _ = fs::remove_dir(trees.dkms.join(m)); // only when empty
    JobResult::Done {
        note: Some(format!(
            "dkms remove {}; removed its files directly",
            dkms::exit_words(out.code)
        )),
    }
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// What dkms left of `m/v` for `kernel`: the install link, the build directory, installed files.
fn leftovers(trees: &Trees, m: &str, v: &str, kernel: &str, arch: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let link = trees.dkms.join(m).join(format!("kernel-{kernel}-{arch}"));
    if fs::read_link(&link).is_ok_and(|t| t.starts_with(v)) {
        out.push(link);
    }
    let dir = trees.dkms.join(m).join(v).join(kernel);
    for ko in verify::ko_files(&dir.join(arch).join("module")) {
        let name = ko.file_name().unwrap_or_default().to_owned();
        out.extend(
            verify::installed_kos(&trees.kernel_dir(kernel))
                .into_iter()
                .filter(|p| p.file_name() == Some(&name)),
        );
    }
    if dir.exists() {
        out.push(dir);
    }
    out
}

/// Removes dkms's artefacts of `m/v` for `kernel` without dkms: installed modules, the build
/// results, the install link; then the empty directories dkms made under the kernel.
fn remove_directly(
    trees: &Trees,
    m: &str,
    v: &str,
    kernel: &str,
    arch: &str,
) -> Result<(), String> {
    for p in leftovers(trees, m, v, kernel, arch) {
        let r = match fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => fs::remove_dir_all(&p),
            Ok(_) => fs::remove_file(&p),
            Err(_) => Ok(()),
        };
        r.map_err(|e| format!("{}: {e}", trees.display(&p)))?;
    }
    prune_empty(&trees.kernel_dir(kernel));
    Ok(())
}

/// Removes the empty directories dkms creates under a kernel (`updates/dkms`, `updates`, `extra`).
fn prune_empty(kernel_dir: &Path) {
    for d in ["updates/dkms", "updates", "extra"] {
        let _ = fs::remove_dir(kernel_dir.join(d));
    }
}

/// Copies what dkms printed and the make.log where the next run will not delete them.
fn keep_log(trees: &Trees, job: &Job, output: &str, make_log: Option<&str>) -> Option<PathBuf> {
    let dir = trees.log_dir();
    fs::create_dir_all(&dir).ok()?;
    let kernel = job.info.kernel.as_deref().unwrap_or("all");
    let path = dir.join(format!(
        "{}-{}_{}.log",
        job.info.module, job.info.version, kernel
    ));
    let mut text = format!("==> dkms output ({})\n{output}", job.info.label());
    if let Some(l) = make_log {
        text.push_str("\n==> make.log\n");
        text.push_str(l);
    }
    fs::write(&path, text).ok()?;
    Some(path)
}

fn failed(
    what: String,
    code: Option<i32>,
    errors: Vec<String>,
    log: Option<PathBuf>,
    output: &str,
) -> JobResult {
    JobResult::Failed(Failure {
        what,
        exit_code: code,
        output: if errors.is_empty() {
            dkms::tail(output, 15)
        } else {
            Vec::new()
        },
        errors,
        log,
    })
}

/// `depmod -a -b BASE KERNEL`, once a kernel's jobs are done.
fn depmod(trees: &Trees, kernel: &str) -> Result<(), String> {
    let mut c = Command::new("depmod");
    c.arg("-a");
    match trees.depmod_base() {
        Some(base) if base != Path::new("/") => {
            c.arg("-b").arg(base);
        }
        Some(_) => {}
        None => {
            return Err(format!(
                "depmod {kernel}: the install tree {} does not end in lib/modules",
                trees.display(&trees.install)
            ))
        }
    }
    c.arg(kernel);
    let out = dkms::run(c);
    if out.ok() {
        Ok(())
    } else {
        Err(format!("depmod {kernel}: {}", out.output.trim()))
    }
}
