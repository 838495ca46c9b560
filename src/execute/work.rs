//! The work of one job on the real system: a build registers the version when dkms does not
//! know it, installs it (with `--force`: rebuilds from the sources as they are now, then
//! installs, keeping the previous build installed when the rebuild fails; with the preflight's
//! build of the same inputs: installs that; with a kept version on the kernel: builds first and
//! swaps only when it built; while another kernel of the version builds in dkms's shared build
//! directory: builds in a private dkms tree meanwhile, then places that build and installs it in
//! the version's turn), and verifies the result; a pair that fails verification is
//! uninstalled, so it stays a failure on every run until it builds right. A removal asks dkms and
//! finishes directly what dkms cannot (a kernel without headers).
//!
//! A failed job's log is kept by copying what dkms printed and its make.log, byte for byte,
//! file to file; the failure block takes from them only the lines it shows, read in bounded
//! memory ([`crate::system::makelog::digest`]), whatever their size or encoding.

use crate::execute::journal;
use crate::execute::verify;
use crate::os::process::Output;
use crate::plan::{Action, Job};
use crate::run::events::{Failure, JobResult};
use crate::system::dkms::{self, Dkms, Printed};
use crate::system::dkms_tree::{self, leftovers, prune_empty, remove_directly};
use crate::system::kept;
use crate::system::trees::Trees;
use std::fs;
use std::path::{Path, PathBuf};

/// Does jobs' work with the real dkms (its calls carry `dkms.deadline`).
#[derive(Debug, Clone)]
pub struct Worker {
    pub dkms: Dkms,
    pub arch: String,
    /// Rebuild pairs that are built or installed already.
    pub force: bool,
}

/// What became of the preflight's build of a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Prebuilt {
    /// There is none.
    None,
    /// Put where dkms keeps builds: dkms installs it without compiling.
    Placed,
    /// It could not be put there (why): dkms builds the pair.
    NotUsed(String),
}

/// A pair's build, before its install.
enum Ready {
    /// `dkms install` builds it.
    ToBuild,
    /// Built already and placed where dkms keeps builds: by the preflight or a prebuild (`by`
    /// says so once installed), or in a private tree (`by` is `None`); `output` is what that
    /// build printed here, if anything.
    Built { by: Option<String>, output: Output },
}

/// The turn of a module version in a dkms tree: held by the job that builds in its shared
/// build directory, and by each job that places and installs a private build of it (dkms's
/// tree for that version, its `original_module` moves). One process runs at a time
/// ([`crate::os::lock`]), so a lock of this process is enough.
fn version_turn(dkms: &Path, m: &str, v: &str) -> std::sync::Arc<std::sync::Mutex<()>> {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex, OnceLock};
    type Turns = Mutex<BTreeMap<PathBuf, Arc<Mutex<()>>>>;
    static TURNS: OnceLock<Turns> = OnceLock::new();
    TURNS
        .get_or_init(Turns::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(dkms_tree::version_dir(dkms, m, v))
        .or_default()
        .clone()
}

/// A private dkms tree for one pair's build, under [`Trees::private_dir`]: a link to each
/// entry of dkms's tree but the module's own directory, and the version's `source` link as
/// `dkms add` makes it. Removed when dropped (a run killed first leaves it to the next run's
/// [`remove_private_trees`]).
struct PrivateTree {
    path: PathBuf,
}

impl PrivateTree {
    fn make(trees: &Trees, m: &str, v: &str, kernel: &str) -> Result<PrivateTree, String> {
        let path = trees.private_dir().join(format!("{m}-{v}-{kernel}"));
        let tree = PrivateTree { path };
        let make = || -> std::io::Result<()> {
            fs::remove_dir_all(&tree.path).or_else(ignore_missing)?;
            fs::create_dir_all(&tree.path)?;
            for e in fs::read_dir(&trees.dkms)? {
                let e = e?;
                if e.file_name() != *m {
                    std::os::unix::fs::symlink(e.path(), tree.path.join(e.file_name()))?;
                }
            }
            let link = dkms_tree::source_link(&tree.path, m, v);
            if let Some(dir) = link.parent() {
                fs::create_dir_all(dir)?;
            }
            std::os::unix::fs::symlink(trees.source.join(format!("{m}-{v}")), &link)
        };
        make().map_err(|e| format!("{}: {e}", trees.display(&tree.path)))?;
        Ok(tree)
    }
}

impl Drop for PrivateTree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
        if let Some(dir) = self.path.parent() {
            let _ = fs::remove_dir(dir); // only when empty
        }
    }
}

/// Removes the private trees a run left (killed before it could): at the start of a run, its
/// lock held, none is in use.
pub fn remove_private_trees(trees: &Trees) {
    let _ = fs::remove_dir_all(trees.private_dir());
}

/// One build job's names.
struct Pair<'a> {
    m: &'a str,
    v: &'a str,
    kernel: &'a str,
    headers: &'a Path,
    make_jobs: usize,
}

impl Worker {
    fn trees(&self) -> &Trees {
        &self.dkms.trees
    }

    /// Whether `job` rebuilds its pair: `--force`, or a rebuild a stopped run left pending.
    pub fn forced(&self, job: &Job) -> bool {
        let i = &job.info;
        i.action == Action::Build
            && (self.force
                || i.kernel.as_deref().is_some_and(|k| {
                    journal::rebuild_pending(self.trees(), &i.module, &i.version, k)
                }))
    }

    /// Whether this job's work is to stop: its time is up, or a stopping signal came. Whatever
    /// it still has to put back is then put back by its settling ([`crate::execute::settle`]),
    /// whose dkms calls are neither refused nor out of time.
    fn stopped(&self) -> bool {
        self.dkms
            .deadline
            .is_some_and(|d| std::time::Instant::now() >= d)
            || crate::os::interrupt::global().signal().is_some()
    }

    /// Removes what is there of `m/v` for `kernel` (`dkms remove -k`, then directly what dkms
    /// left); returns whether there was anything.
    pub fn remove_leftovers(&self, m: &str, v: &str, kernel: &str) -> Result<bool, String> {
        let trees = self.trees();
        if leftovers(trees, m, v, kernel, &self.arch).is_empty() {
            return Ok(false);
        }
        let out = self.dkms.remove(m, v, Some(kernel));
        if !out.ok() || !leftovers(trees, m, v, kernel, &self.arch).is_empty() {
            remove_directly(trees, m, v, kernel, &self.arch)?;
        }
        Ok(true)
    }

    /// Puts the kept `m/old` back on `kernel` (it was uninstalled for a swap that did not end
    /// with the new version installed): installed from its build, then verified.
    pub fn put_back(
        &self,
        m: &str,
        old: &str,
        kernel: &str,
        headers: Option<&Path>,
    ) -> Result<(), String> {
        let trees = self.trees();
        if verify::check_install(trees, m, old, kernel, &self.arch, &[]).is_ok() {
            return Ok(());
        }
        let headers = headers
            .map(Path::to_path_buf)
            .unwrap_or_else(|| trees.kernel_dir(kernel).join("build"));
        let out = self.dkms.install(m, old, kernel, &headers, 1);
        if !out.ok() {
            return Err(format!("dkms install: {}", dkms::exit_words(out.code)));
        }
        verify::check_install(trees, m, old, kernel, &self.arch, &[])
    }

    /// The job's work, without a time limit of its own (the dkms calls carry `dkms.deadline`).
    pub fn run(&self, job: &Job, make_jobs: usize) -> JobResult {
        match job.info.action {
            Action::Build => self.build(job, make_jobs),
            Action::RemoveFromKernel => self.remove_from_kernel(job),
            Action::Unregister => self.unregister(job),
        }
    }

    fn build(&self, job: &Job, make_jobs: usize) -> JobResult {
        let kernel = job.info.kernel.as_deref().unwrap_or_default();
        let Some(headers) = &job.headers else {
            return failed(format!("kernel {kernel} has no headers"), vec![], None, "");
        };
        // Failed before with the same sources, headers, compiler and key: said again, not
        // compiled again (the preflight of a transaction that a prebuild saw coming).
        if let Some(f) = &job.remembered {
            return JobResult::Failed(Failure {
                what: format!(
                    "{} (remembered: it failed so at {} UTC, built from what is the same now)",
                    f.what, f.when
                ),
                errors: f.errors.clone(),
                log: f.log.clone(),
                output: f.output.clone(),
            });
        }
        let pair = Pair {
            m: &job.info.module,
            v: &job.info.version,
            kernel,
            headers,
            make_jobs,
        };
        if let Err(r) = self.source_named_right(job) {
            return r;
        }
        // Builds of one version for several kernels run at once (the queue lets them): the
        // first builds in dkms's tree, holding its version's turn throughout; one that finds
        // the turn taken builds in a private tree meanwhile, and waits for its turn only to
        // place and install its build (a forced rebuild or a preflight's build waits first).
        let turn = version_turn(&self.trees().dkms, pair.m, pair.v);
        let _turn = match turn.try_lock() {
            Ok(held) => held,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock)
                if !self.forced(job) && job.prebuilt.is_none() =>
            {
                return self.build_privately(job, &pair, &turn);
            }
            Err(std::sync::TryLockError::WouldBlock) => self.wait_for_turn(&turn),
        };
        if let Err(r) = self.register(job) {
            return r;
        }
        if self.forced(job) {
            return self.rebuild(job, &pair);
        }
        // Who made it (the preflight, a prebuild), read before it moves: said once installed.
        let made_by = job
            .prebuilt
            .as_deref()
            .map(|d| crate::system::prebuilt::made_by(&crate::system::prebuilt::origin_of(d)));
        let prebuilt = match &job.prebuilt {
            Some(from) => self.place_prebuilt(&pair, from),
            None => Prebuilt::None,
        };
        let placed = prebuilt == Prebuilt::Placed;
        let before = match &prebuilt {
            Prebuilt::NotUsed(why) => Printed::from(&*format!(
                "==> dkms-hook: the preflight's build not used: {why}\n"
            )),
            Prebuilt::None | Prebuilt::Placed => Printed::default(),
        };
        let ready = match made_by.filter(|_| placed) {
            Some(by) => Ready::Built {
                by: Some(by),
                output: Output::default(),
            },
            None => Ready::ToBuild,
        };
        self.install_ready(job, &pair, ready, before)
    }

    /// Installs the pair (built already, or built by `dkms install`), over the kept version
    /// when one is installed there.
    fn install_ready(&self, job: &Job, p: &Pair, ready: Ready, before: Printed) -> JobResult {
        let trees = self.trees();
        if let Some(old) =
            kept::installed_kept(trees, p.m, p.kernel, &self.arch).filter(|o| o != p.v)
        {
            return self.replace_kept(job, p, &old, ready);
        }
        let (by, before) = match ready {
            Ready::ToBuild => (None, before),
            Ready::Built { by, output } => (by, before.and(output)),
        };
        let out = self
            .dkms
            .install(p.m, p.v, p.kernel, p.headers, p.make_jobs);
        match self.installed(job, p, out, before) {
            JobResult::Done { note: None } if by.is_some() => JobResult::Done { note: by },
            r => r,
        }
    }

    /// dkms takes sources only from `source_tree/NAME-VERSION`: a directory that declares
    /// another name or version fails, naming both.
    fn source_named_right(&self, job: &Job) -> Result<(), JobResult> {
        let (m, v) = (&job.info.module, &job.info.version);
        let trees = self.trees();
        if fs::symlink_metadata(dkms_tree::source_link(&trees.dkms, m, v)).is_ok() {
            return Ok(());
        }
        let expected = trees.source.join(format!("{m}-{v}"));
        match &job.source {
            Some(src) if *src != expected => Err(failed(
                format!(
                    "{} declares {m} {v}, but dkms only takes sources from {}: rename the directory",
                    trees.display(&src.join("dkms.conf")),
                    trees.display(&expected)
                ),
                vec![],
                None,
                "",
            )),
            _ => Ok(()),
        }
    }

    /// Registers the version when dkms does not know it (`dkms add`; the version's turn held).
    fn register(&self, job: &Job) -> Result<(), JobResult> {
        let (m, v) = (&job.info.module, &job.info.version);
        let trees = self.trees();
        if fs::symlink_metadata(dkms_tree::source_link(&trees.dkms, m, v)).is_ok() {
            return Ok(());
        }
        let added = self.dkms.add(m, v);
        if !added.ok() && added.code != Some(dkms::exit::ALREADY) {
            let log = keep_log(trees, job, &Printed::of(&added.output), None);
            return Err(failed(
                format!("dkms add: {}", dkms::exit_words(added.code)),
                vec![],
                log,
                &added.output,
            ));
        }
        Ok(())
    }

    /// Builds the pair in a private dkms tree while another kernel of its version builds in
    /// dkms's own, then, the version's turn taken, places the build where dkms keeps builds
    /// and installs it as a preflight's build is installed ([`Self::install_ready`]). The
    /// private tree is dkms's tree as far as the build can see (every other module there, so
    /// that BUILD_DEPENDS finds its dependencies and their symbols), with this version's
    /// sources; the same dkms, sources, install tree and signing settings build there, so the
    /// build is signed as the install would sign it. It is removed however the job ends.
    /// Waits for a version's turn, giving make's jobserver back this job's CPU meanwhile (it
    /// compiles nothing while it waits: the build still running takes the core), and taking a
    /// token again once the turn is its own.
    fn wait_for_turn<'t>(&self, turn: &'t std::sync::Mutex<()>) -> std::sync::MutexGuard<'t, ()> {
        if let Ok(held) = turn.try_lock() {
            return held;
        }
        let pool = self.dkms.make.as_ref().map(|js| js.client());
        let given_back = pool.is_some_and(|c| c.release_raw().is_ok());
        let held = turn.lock().unwrap_or_else(|e| e.into_inner());
        if given_back {
            if let Some(c) = pool {
                // Only fails when the pipe is gone; the job then goes on, as without a pool.
                let _ = c.acquire_raw();
            }
        }
        held
    }

    fn build_privately(&self, job: &Job, p: &Pair, turn: &std::sync::Mutex<()>) -> JobResult {
        let trees = self.trees();
        let private = match PrivateTree::make(trees, p.m, p.v, p.kernel) {
            Ok(t) => t,
            Err(e) => {
                // No private tree: this kernel waits for its turn in dkms's tree.
                let _turn = self.wait_for_turn(turn);
                if let Err(r) = self.register(job) {
                    return r;
                }
                let before = Printed::from(&*format!(
                    "==> dkms-hook: no private build tree, built in dkms's: {e}\n"
                ));
                return self.install_ready(job, p, Ready::ToBuild, before);
            }
        };
        let worker = Worker {
            dkms: Dkms {
                trees: Trees {
                    dkms: private.path.clone(),
                    ..trees.clone()
                },
                ..self.dkms.clone()
            },
            ..self.clone()
        };
        let built = worker
            .dkms
            .build(p.m, p.v, p.kernel, p.headers, p.make_jobs);
        match built.code {
            Some(dkms::exit::OK) => {}
            Some(dkms::exit::EXCLUDED) => return excluded(),
            code => {
                let r = worker.build_failed(job, p, &Printed::of(&built.output), code);
                let r = at_dkms_paths(r, &private.path, &trees.dkms);
                return self.saying_kept(p, r);
            }
        }
        let _turn = self.wait_for_turn(turn);
        if self.stopped() {
            return failed(
                "stopped before its build was installed".to_string(),
                vec![],
                None,
                &built.output,
            );
        }
        if let Err(r) = self.register(job) {
            return r;
        }
        let from = dkms_tree::pair_dir(&private.path, p.m, p.v, p.kernel, &self.arch);
        let (ready, before) = match self.place_prebuilt(p, &from) {
            Prebuilt::Placed => (
                Ready::Built {
                    by: None,
                    output: built.output,
                },
                Printed::default(),
            ),
            Prebuilt::NotUsed(why) => (
                Ready::ToBuild,
                Printed::of(&built.output).and(Output::from(format!(
                    "==> dkms-hook: the private build not placed: {why}\n"
                ))),
            ),
            Prebuilt::None => unreachable!("place_prebuilt places or says why not"),
        };
        self.install_ready(job, p, ready, before)
    }

    /// Puts the preflight's build of this pair where dkms keeps builds
    /// (`MODULE/VERSION/KERNEL/ARCH`), so that `dkms install` installs it without compiling
    /// (dkms takes a pair as built when its `module/` directory is there). A build dkms already
    /// has there is replaced: the preflight's was made from what is installed now.
    fn place_prebuilt(&self, p: &Pair, from: &Path) -> Prebuilt {
        let to = dkms_tree::pair_dir(&self.trees().dkms, p.m, p.v, p.kernel, &self.arch);
        let place = || -> std::io::Result<()> {
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent)?;
            }
            match fs::remove_dir_all(&to) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            crate::system::prebuilt::move_dir(from, &to)
        };
        match place() {
            Ok(()) => Prebuilt::Placed,
            Err(e) => {
                // Half moved: dkms must not take it for a build.
                let _ = fs::remove_dir_all(&to);
                Prebuilt::NotUsed(format!("{} -> {}: {e}", from.display(), to.display()))
            }
        }
    }

    /// A failure of a pair whose kernel has a kept version installed says that it stays (as
    /// [`Self::replace_kept`] says it).
    fn saying_kept(&self, p: &Pair, mut r: JobResult) -> JobResult {
        let old = kept::installed_kept(self.trees(), p.m, p.kernel, &self.arch);
        if let (Some(old), JobResult::Failed(f)) = (old.filter(|o| o != p.v), &mut r) {
            f.what
                .push_str(&format!("; kept {} {old} on {}", p.m, p.kernel));
        }
        r
    }

    /// `--force`: builds from the sources as they are now, then installs that build. The previous
    /// build is moved aside first (so dkms builds afresh: dkms 3.0 and 3.2 alike) and put back when
    /// the rebuild fails, so the pair that was installed stays installed.
    fn rebuild(&self, job: &Job, p: &Pair) -> JobResult {
        let trees = self.trees();
        let built = dkms_tree::pair_dir(&trees.dkms, p.m, p.v, p.kernel, &self.arch);
        let kept = dkms_tree::previous_build_dir(&trees.dkms, p.m, p.v, p.kernel, &self.arch);
        let _ = fs::remove_dir_all(&kept);
        let has_previous = built.is_dir();
        if has_previous {
            if let Err(e) = fs::rename(&built, &kept) {
                return failed(format!("{}: {e}", trees.display(&built)), vec![], None, "");
            }
        }
        let restore = || {
            if has_previous {
                let _ = fs::remove_dir_all(&built);
                let _ = fs::rename(&kept, &built);
            }
        };
        let out = self
            .dkms
            .rebuild(p.m, p.v, p.kernel, p.headers, p.make_jobs);
        match out.code {
            Some(dkms::exit::OK) => {
                let _ = fs::remove_dir_all(&kept);
            }
            Some(dkms::exit::EXCLUDED) => {
                restore();
                return excluded();
            }
            _ => {
                restore();
                let mut r = self.build_failed(job, p, &Printed::of(&out.output), out.code);
                if let (true, JobResult::Failed(f)) = (has_previous, &mut r) {
                    f.what.push_str("; the previous build stays installed");
                }
                return r;
            }
        }
        let out_install = self
            .dkms
            .reinstall(p.m, p.v, p.kernel, p.headers, p.make_jobs);
        self.installed(job, p, out_install, Printed::of(&out.output))
    }

    /// A kept version (see [`crate::keep`]) is installed for the kernel: build the new one first,
    /// and swap only when it built. Failing, the kept version stays installed, and the failure
    /// says so; installed and verified, the kept version leaves that kernel (dkms's record and
    /// its files). dkms cannot install a second version of one module for a kernel beside the
    /// first (3.0 and 3.4 compare the modules' versions and may refuse), so the kept one is
    /// uninstalled just before the new one is installed, and installed again from its build if
    /// that fails.
    /// `ready`: whether the build is there already (the store's or a private one, put in
    /// place), and who made it.
    fn replace_kept(&self, job: &Job, p: &Pair, old: &str, ready: Ready) -> JobResult {
        let trees = self.trees();
        let kept_note = format!("kept {} {old} on {}", p.m, p.kernel);
        let keep_saying = |mut r: JobResult| {
            if let JobResult::Failed(f) = &mut r {
                f.what.push_str("; ");
                f.what.push_str(&kept_note);
            }
            r
        };
        // A build put in place: built already.
        let (built, prebuilt) = match ready {
            Ready::Built { by, output } => (
                dkms::Outcome {
                    code: Some(dkms::exit::OK),
                    output,
                },
                by,
            ),
            Ready::ToBuild => (
                self.dkms.build(p.m, p.v, p.kernel, p.headers, p.make_jobs),
                None,
            ),
        };
        match built.code {
            Some(dkms::exit::OK) => {}
            Some(dkms::exit::EXCLUDED) => return excluded(),
            code => {
                return keep_saying(self.build_failed(job, p, &Printed::of(&built.output), code))
            }
        }
        // From here until the swap is over, the journal says which kept version is out: if the
        // swap is cut short (a time limit, a signal, even SIGKILL), settling it puts that
        // version back, and the kept version is never unregistered as replaced meanwhile.
        let forced = self.forced(job);
        if let Err(e) = journal::swapping(trees, job, forced, Some(old)) {
            return failed(
                format!("cannot record the swap: {e}; {kept_note}"),
                vec![],
                None,
                "",
            );
        }
        let out = self.dkms.uninstall(p.m, old, p.kernel);
        let result = if out.ok() {
            let out = self
                .dkms
                .install(p.m, p.v, p.kernel, p.headers, p.make_jobs);
            self.installed(job, p, out, Printed::of(&built.output))
        } else {
            let printed = Printed::of(&built.output).and(&out.output);
            let log = keep_log(trees, job, &printed, None);
            failed(
                format!(
                    "dkms uninstall of the kept {} {old}: {}",
                    p.m,
                    dkms::exit_words(out.code)
                ),
                vec![],
                log,
                &out.output,
            )
        };
        let link = dkms_tree::install_link(&trees.dkms, p.m, p.kernel, &self.arch);
        let new_installed = fs::read_link(&link)
            .is_ok_and(|t| t == dkms_tree::install_target(p.v, p.kernel, &self.arch));
        if new_installed {
            // The new version is in place: the kept one leaves this kernel.
            if !self.stopped() {
                let _ = self.dkms.remove(p.m, old, Some(p.kernel));
            }
            let _ = journal::swapping(trees, job, forced, None);
            return match result {
                JobResult::Done { note: None } if prebuilt.is_some() => {
                    JobResult::Done { note: prebuilt }
                }
                r => r,
            };
        }
        if self.stopped() {
            // Cut short: its settling puts the kept version back (see crate::execute::settle).
            return result;
        }
        // The new version did not stay installed: what it left goes, and the kept one goes
        // back from its build.
        let _ = self.remove_leftovers(p.m, p.v, p.kernel);
        match self.put_back(p.m, old, p.kernel, Some(p.headers)) {
            Ok(()) => {
                let _ = journal::swapping(trees, job, forced, None);
                keep_saying(result)
            }
            Err(e) => {
                let mut r = result;
                if let JobResult::Failed(f) = &mut r {
                    f.what.push_str(&format!(
                        "; the kept {} {old} could not be installed again: {e} (the next run \
                         tries again)",
                        p.m
                    ));
                }
                r
            }
        }
    }

    /// What follows a `dkms install`: verification, or the failure with its logs. `before` is
    /// what the job printed earlier (an earlier dkms call), kept in its log.
    fn installed(&self, job: &Job, p: &Pair, out: dkms::Outcome, before: Printed) -> JobResult {
        let trees = self.trees();
        let output = before.and(&out.output);
        match out.code {
            Some(dkms::exit::OK) => {
                match verify::check_install(trees, p.m, p.v, p.kernel, &self.arch, &job.expect) {
                    Ok(()) => self.signed(job, &output),
                    Err(why) => self.uninstall_unverified(job, p, why, &output),
                }
            }
            Some(dkms::exit::EXCLUDED) => excluded(),
            code => self.build_failed(job, p, &output, code),
        }
    }

    /// dkms exits 0 when signing fails, and installs the module unsigned: a failure, said in the
    /// job's block with sign-file's own lines. The module stays installed (it loads where Secure
    /// Boot does not enforce signatures; removing it would take it from those machines too).
    fn signed(&self, job: &Job, output: &Printed) -> JobResult {
        let lines = dkms::signing_failure(output.lines());
        if lines.is_empty() {
            return JobResult::Done { note: None };
        }
        let log = keep_log(self.trees(), job, output, None);
        failed(
            "module signing failed: installed unsigned, it will not load while Secure Boot \
             enforces signatures"
                .to_string(),
            lines,
            log,
            output,
        )
    }

    /// A pair dkms installed but that fails verification is uninstalled (dkms's record and its
    /// files): left installed, the next run would take it as done and the wrong module would load.
    fn uninstall_unverified(
        &self,
        job: &Job,
        p: &Pair,
        why: String,
        output: &Printed,
    ) -> JobResult {
        let trees = self.trees();
        let out = self.dkms.remove(p.m, p.v, Some(p.kernel));
        let mut what = format!("{why}; uninstalled it");
        if !out.ok() || !leftovers(trees, p.m, p.v, p.kernel, &self.arch).is_empty() {
            if let Err(e) = remove_directly(trees, p.m, p.v, p.kernel, &self.arch) {
                what = format!("{why}; could not uninstall it: {e}");
            }
        }
        let text = output
            .clone()
            .and(Output::from("\n==> dkms remove\n".to_string()))
            .and(&out.output);
        let log = keep_log(trees, job, &text, None);
        failed(what, vec![], log, "")
    }

    fn build_failed(&self, job: &Job, p: &Pair, output: &Printed, code: Option<i32>) -> JobResult {
        let trees = self.trees();
        let make_log = dkms_tree::make_log(&trees.dkms, p.m, p.v);
        let digest = fs::File::open(&make_log)
            .ok()
            .map(|f| crate::system::makelog::digest(f, 40, 15));
        // The compiler's own errors; failing that, the end of make.log says more than dkms.
        let mut errors = match &digest {
            Some(d) if d.errors.is_empty() => d.tail.clone(),
            Some(d) => d.errors.clone(),
            None => Vec::new(),
        };
        let log = keep_log(trees, job, output, digest.is_some().then_some(&*make_log));
        let mut what = dkms::exit_words(code);
        let no_space = digest.and_then(|d| d.no_space);
        match disk_full(trees, output, no_space) {
            Some(DiskFull::Said(line)) => {
                what.push_str("; the disk is full (No space left on device)");
                if !errors.contains(&line) {
                    errors.insert(0, line);
                }
            }
            Some(DiskFull::Free(free)) => what.push_str(&format!(
                "; the disk is full: {} has {} KiB free (No space left on device)",
                trees.display(&trees.dkms),
                free / 1024
            )),
            None => {}
        }
        failed(what, errors, log, output)
    }

    fn remove_from_kernel(&self, job: &Job) -> JobResult {
        let (m, v) = (&job.info.module, &job.info.version);
        let kernel = job.info.kernel.as_deref().unwrap_or_default();
        let trees = self.trees();
        let mut note = None;
        if !job.direct {
            let out = self.dkms.remove(m, v, Some(kernel));
            if out.ok() && leftovers(trees, m, v, kernel, &self.arch).is_empty() {
                prune_empty(&trees.kernel_dir(kernel));
                return JobResult::Done { note: None };
            }
            note = Some(format!(
                "dkms remove: {}; removed its files directly",
                dkms::exit_words(out.code)
            ));
        }
        match remove_directly(trees, m, v, kernel, &self.arch) {
            Ok(()) => JobResult::Done {
                note: note.or_else(|| {
                    Some(format!(
                        "kernel {kernel} has no headers: removed dkms's files for it directly"
                    ))
                }),
            },
            Err(e) => failed(e, vec![], None, ""),
        }
    }

    fn unregister(&self, job: &Job) -> JobResult {
        let (m, v) = (&job.info.module, &job.info.version);
        let trees = self.trees();
        let out = self.dkms.remove(m, v, None);
        let version_dir = dkms_tree::version_dir(&trees.dkms, m, v);
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
            if let Err(e) = remove_directly(trees, m, v, k, &self.arch) {
                return failed(e, vec![], None, &out.output);
            }
        }
        if let Err(e) = fs::remove_dir_all(&version_dir).or_else(ignore_missing) {
            return failed(
                format!("{}: {e}", trees.display(&version_dir)),
                vec![],
                None,
                &out.output,
            );
        }
        let _ = fs::remove_dir(dkms_tree::module_dir(&trees.dkms, m)); // only when empty
        JobResult::Done {
            note: Some(format!(
                "dkms remove: {}; removed its files directly",
                dkms::exit_words(out.code)
            )),
        }
    }
}

/// Below this many bytes free, a filesystem counts as full.
const FULL_BELOW: u64 = 1 << 20;

/// How a failed build shows that the disk filled.
enum DiskFull {
    /// The first line of dkms's output or make.log that says `No space left on device` (the
    /// compiler, the assembler, cp or dkms itself).
    Said(String),
    /// Nothing could even be written to say so, but the dkms tree's filesystem has less than
    /// [`FULL_BELOW`] bytes free: this many.
    Free(u64),
}

/// `make_log` is make.log's first line that says so, if any.
fn disk_full(trees: &Trees, output: &Printed, make_log: Option<String>) -> Option<DiskFull> {
    let said = output
        .lines()
        .find(|l| l.contains("No space left on device"))
        .map(|l| l.trim_end().to_string())
        .or(make_log);
    if let Some(line) = said {
        return Some(DiskFull::Said(line));
    }
    let free = free_bytes(&trees.dkms)?;
    (free < FULL_BELOW).then_some(DiskFull::Free(free))
}

/// Bytes free for an unprivileged writer on the filesystem of `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

fn excluded() -> JobResult {
    JobResult::Excluded {
        reason: "dkms: BUILD_EXCLUSIVE directive does not match this kernel".to_string(),
    }
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// Copies what dkms printed and the make.log where the next run will not delete them, byte for
/// byte, file to file (a make.log of a gigabyte is never in memory).
fn keep_log(
    trees: &Trees,
    job: &Job,
    output: &Printed,
    make_log: Option<&Path>,
) -> Option<PathBuf> {
    use std::io::Write;
    let dir = trees.log_dir();
    fs::create_dir_all(&dir).ok()?;
    let kernel = job.info.kernel.as_deref().unwrap_or("all");
    let path = dir.join(format!(
        "{}-{}_{}.log",
        job.info.module, job.info.version, kernel
    ));
    let write = || -> std::io::Result<()> {
        let mut to = std::io::BufWriter::new(fs::File::create(&path)?);
        writeln!(to, "==> dkms output ({})", job.info.label())?;
        output.copy_to(&mut to)?;
        if let Some(l) = make_log {
            to.write_all(b"\n==> make.log\n")?;
            std::io::copy(&mut fs::File::open(l)?, &mut to)?;
        }
        to.flush()
    };
    write().ok()?;
    Some(path)
}

/// A failure of a build in the private tree `private`, its lines shown at the paths of dkms's
/// tree `dkms` (where the other kernels' builds show theirs): the private tree is gone by the
/// time the user reads them. The whole log keeps what dkms printed.
fn at_dkms_paths(r: JobResult, private: &Path, dkms: &Path) -> JobResult {
    let JobResult::Failed(mut f) = r else {
        return r;
    };
    let (from, to) = (private.to_string_lossy(), dkms.to_string_lossy());
    for line in f.errors.iter_mut().chain(f.output.iter_mut()) {
        if line.contains(&*from) {
            *line = line.replace(&*from, &to);
        }
    }
    JobResult::Failed(f)
}

pub(crate) fn failed(
    what: String,
    errors: Vec<String>,
    log: Option<PathBuf>,
    output: impl Into<Printed>,
) -> JobResult {
    let output: Printed = output.into();
    JobResult::Failed(Failure {
        what,
        output: if errors.is_empty() {
            dkms::tail(output.lines(), 15)
        } else {
            Vec::new()
        },
        errors,
        log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_found_in_what_was_printed_or_in_the_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let trees = Trees::defaults(dir.path());
        let line = "/var/lib/dkms/m/1/build/m.c:3:1: fatal error: closing dependency file \
                    .m.o.d: No space left on device";
        let printed = Printed::from;
        let log =
            crate::system::makelog::digest(format!("make -C ...\n{line}\n").as_bytes(), 40, 15);
        match disk_full(&trees, &printed("Building module:\n"), log.no_space) {
            Some(DiskFull::Said(l)) => assert_eq!(l, line),
            _ => panic!("not found in make.log"),
        }
        // Nothing said, and the temporary directory's filesystem is not full (on this machine,
        // more than 1 MiB free): not a full disk.
        std::fs::create_dir_all(&trees.dkms).unwrap();
        assert!(disk_full(&trees, &printed("make failed\n"), None).is_none());
    }
}
