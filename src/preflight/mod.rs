//! The preflight: before pacman changes any file, trial-build the DKMS modules for what the
//! transaction brings, in a view of the system as the transaction will leave it, so that a module
//! that would not build stops the transaction (when it is essential) or is announced (when it is
//! not) while the old kernel and modules are still there; and keep what built, so that the
//! install hook after the transaction installs those builds instead of compiling again.
//!
//! Steps, one module each:
//! 1. [`pacman`]: the pacman that runs the hook, its command line and its DBPath/CacheDir;
//! 2. [`transaction`]: the packages the transaction installs, upgrades and removes (read with
//!    [`archive`] and [`pkgdb`]), and [`locate`] for a target those rules miss;
//! 3. [`Scratch`] + [`archive::unpack`]: every incoming package unpacked into a layer;
//! 4. [`view`] + [`trial`]: a child process makes the view (the layer over the live root in a
//!    private mount namespace, what leaves deleted there) and runs the usual pipeline
//!    (inventory, plan, runner, reporter) on the system's own trees in it;
//! 5. [`run`] turns its outcome into the last lines and the exit code, with [`essential`] and
//!    [`crate::system::config`].

pub mod essential;
pub mod trial;
pub mod view;

use crate::pacman::locate::{self, Source};
use crate::pacman::transaction::{Leaving, Transaction};
use crate::pacman::{archive, caller as pacman};
use crate::plan::targets::Targets;
use crate::system::config::{Config, PreflightMode};
use crate::system::dkms_tree::DkmsTree;
use crate::system::prebuilt::Store;
use crate::system::trees::Trees;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The scratch directory, relative to the root. Under /var/cache, not /tmp: the headers of a
/// kernel are hundreds of megabytes unpacked (too much for a tmpfs /tmp), they are regenerable
/// data, and /var/cache is normally on the same filesystem as the dkms tree in /var/lib, so a
/// later step can move trial builds into place instead of copying them. Not inside the dkms tree:
/// dkms and `status` would take a directory there for a module. One fixed place, emptied at the
/// start and removed at the end of each run, so scratch files never pile up.
pub const SCRATCH_DIR: &str = "var/cache/dkms-hook/preflight";

/// Exit codes of `dkms-hook preflight`.
pub const EXIT_GO_ON: u8 = 0;
/// An essential module would not build: pacman (AbortOnFail) aborts the transaction.
pub const EXIT_ABORT: u8 = 1;

/// The scratch root of one preflight run; removed when dropped.
#[derive(Debug)]
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    /// Empties and creates `ROOT/var/cache/dkms-hook/preflight` (what an earlier, killed run
    /// left goes first).
    pub fn create(root: &Path) -> std::io::Result<Scratch> {
        let dir = root.join(SCRATCH_DIR);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch { dir })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // remove_dir_all does not follow symlinks: the packages' links are removed, not what
        // they point to.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What no module build reads, left out of the view: documentation, translations and firmware.
pub fn not_for_builds(p: &Path) -> bool {
    const SKIPPED: &[&str] = &[
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
        "usr/share/help",
        "usr/share/gtk-doc",
        "usr/share/licenses",
        "usr/lib/firmware",
    ];
    SKIPPED.iter().any(|s| p.starts_with(s))
}

/// Inputs of one preflight run that the command line and the environment give.
#[derive(Debug, Clone)]
pub struct Options {
    /// Package files named by hand (`--package`): used instead of asking pacman.
    pub packages: Vec<PathBuf>,
    /// `DKMS_HOOK_PREFLIGHT`'s value, if set.
    pub env_preflight: Option<String>,
    /// Where the loaded modules are listed (`/proc/modules`).
    pub proc_modules: PathBuf,
    /// The running kernel and the architecture (`uname -r`, `uname -m`).
    pub running: String,
    pub arch: String,
    pub jobs: usize,
    pub cpus: usize,
    /// `--job-timeout`: a trial build still running after this long is stopped and failed.
    pub job_timeout: Option<std::time::Duration>,
    /// The program that makes the view and runs the trial in it (this binary).
    pub program: PathBuf,
}

/// What arrives with headers, and what will have none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Incoming {
    /// Kernel releases whose headers will be at `usr/lib/modules/K/build`.
    pub kernels: BTreeSet<String>,
    /// Module source directories that arrive (relative to the root), e.g. `usr/src/foo-1.1`.
    pub sources: BTreeSet<PathBuf>,
    /// Incoming kernels that will have no headers: none arrive, and none stay installed.
    pub headerless: BTreeSet<String>,
}

/// `dkms-hook preflight`: reads the targets (pacman's NeedsTargets lines, as bytes), finds what
/// the transaction brings and takes away, trial-builds in the view of the system after it,
/// reports on `out` (the trial's own lines go to stdout, from the child), and returns the exit
/// code. Never blocks for want of information: what cannot be checked is said in one line, and
/// so is each target line that cannot be a path (the same reader as the hooks',
/// [`crate::plan::targets::read_lines`]).
pub fn run(trees: &Trees, opts: &Options, targets_bytes: &[u8], out: &mut dyn Write) -> u8 {
    let (config, errors) = Config::load(&trees.root, opts.env_preflight.as_deref());
    for e in &errors {
        let _ = writeln!(out, "error: {e}");
    }
    // What an earlier transaction's preflight kept goes first, whatever this one does.
    let store = Store::at(&trees.root);
    if let Err(e) = store.clear() {
        let _ = writeln!(
            out,
            "warning: preflight: {}: {e}",
            trees.display(&store.dir)
        );
    }
    if config.preflight == PreflightMode::Off {
        let _ = writeln!(
            out,
            "  preflight is off (/etc/dkms-hook.conf or DKMS_HOOK_PREFLIGHT)"
        );
        return EXIT_GO_ON;
    }
    let (lines, notes) = crate::plan::targets::read_lines(targets_bytes);
    for n in &notes {
        let _ = writeln!(out, "warning: preflight: {n}");
    }
    let wanted: BTreeSet<String> = lines
        .iter()
        .map(|t| t.trim().trim_matches('/').to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    if wanted.is_empty() {
        return EXIT_GO_ON;
    }
    let view =
        pacman::PacmanView::parent().unwrap_or_else(|| pacman::PacmanView::at(&trees.root, vec![]));
    let local = view.paths().db_path.join("local");
    let (source, mut tx) = if opts.packages.is_empty() {
        let source = Source::from_pacman(&view);
        let tx = match &source {
            Source::Files(files) => Transaction::from_files(files, &local),
            Source::Repos(paths) => {
                Transaction::from_repos(&paths.db_path, &paths.cache_dirs, &view.sync_request())
            }
        };
        (source, tx)
    } else {
        let source = Source::Files(opts.packages.clone());
        (
            source.clone(),
            Transaction::from_files(&opts.packages, &local),
        )
    };
    // pacman's targets are the truth of what arrives: a package that brings one is in the
    // transaction, whatever the rules of `transaction` found.
    let unbrought: Vec<String> = tx.unbrought(&wanted).into_iter().cloned().collect();
    let mut missing = Vec::new();
    if !unbrought.is_empty() {
        let located = locate::locate(&source, &unbrought);
        for found in &located.packages {
            tx.add(&found.file, &local);
        }
        tx.notes.extend(located.notes);
        missing = located.missing;
    }
    for n in &tx.notes {
        let _ = writeln!(out, "warning: preflight: {n}");
    }
    if !missing.is_empty() {
        let _ = writeln!(
            out,
            "warning: preflight: no package file found for {} (not checked)",
            missing.join(", ")
        );
    }
    let brought: BTreeSet<&String> = wanted.iter().filter(|w| !missing.contains(w)).collect();
    if brought.is_empty() {
        return EXIT_GO_ON;
    }
    let scratch = match Scratch::create(&trees.root) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(
                out,
                "warning: preflight: {}: {e} (not checked)",
                trees.display(&trees.root.join(SCRATCH_DIR))
            );
            return EXIT_GO_ON;
        }
    };
    let layer = scratch.dir.join("layer");
    for p in &tx.packages {
        if let Err(e) = archive::unpack(&p.file, &layer, &not_for_builds) {
            if let archive::ArchiveError::Interrupted { signal, .. } = e {
                return interrupted(trees, signal, &Checked::default(), &config, opts, out);
            }
            let _ = writeln!(out, "warning: preflight: cannot unpack {e} (not checked)");
            return EXIT_GO_ON;
        }
    }
    let leaving = tx.leaving_parts();
    let incoming = incoming(&brought, trees, &layer, &leaving);
    let failed = without_headers(&incoming, &leaving, trees, opts, out);
    if incoming.kernels.is_empty() && incoming.sources.is_empty() {
        return decide(trees, &failed, &BTreeMap::new(), &config, opts, out);
    }
    match look(trees, &scratch, &tx, &incoming, &leaving, opts, out) {
        Ok(outcome)
            if outcome
                .interrupted
                .or(crate::os::interrupt::global().signal())
                .is_some() =>
        {
            let _ = store.clear();
            let signal = outcome
                .interrupted
                .or(crate::os::interrupt::global().signal())
                .unwrap_or(libc::SIGTERM);
            let mut checked = Checked {
                failed,
                unchecked: outcome.unchecked,
            };
            for (m, ks) in outcome.failed {
                checked.failed.entry(m).or_default().extend(ks);
            }
            interrupted(trees, signal, &checked, &config, opts, out)
        }
        Err(_) if crate::os::interrupt::global().signal().is_some() => {
            let _ = store.clear();
            let signal = crate::os::interrupt::global()
                .signal()
                .unwrap_or(libc::SIGTERM);
            interrupted(trees, signal, &Checked::default(), &config, opts, out)
        }
        Ok(outcome) => {
            // The notes were said: the install hook does not say them again.
            if let Err(e) = store.remember_notes(&outcome.notes) {
                let _ = writeln!(
                    out,
                    "warning: preflight: {}: {e}",
                    trees.display(&store.dir)
                );
            }
            let mut failed = failed;
            for (m, ks) in outcome.failed {
                failed.entry(m).or_default().extend(ks);
            }
            let code = decide(trees, &failed, &outcome.ok, &config, opts, out);
            if code == EXIT_ABORT {
                // The transaction will not happen: nothing of it is kept.
                let _ = store.clear();
            }
            code
        }
        Err(why) => {
            let _ = writeln!(
                out,
                "warning: preflight: cannot make the view of the system after the transaction: \
                 {why} (not checked; the install hook builds as usual)"
            );
            let _ = store.clear();
            EXIT_GO_ON
        }
    }
}

/// The kernels and module sources that arrive, from the targets pacman sent, and which of the
/// kernels will have no headers (neither unpacked in `layer` nor installed and staying).
fn incoming(
    brought: &BTreeSet<&String>,
    trees: &Trees,
    layer: &Path,
    leaving: &Leaving,
) -> Incoming {
    let text: String = brought.iter().map(|t| format!("{t}\n")).collect();
    let t = parse_targets(&text, trees);
    let mut out = Incoming {
        sources: t.sources.clone(),
        ..Default::default()
    };
    let rel = |p: &Path| p.strip_prefix(&trees.root).unwrap_or(p).to_path_buf();
    let install = rel(&trees.install);
    for k in t.kernels.keys() {
        let include = install.join(k).join("build/include");
        let arrives = layer.join(&include).is_dir();
        let stays = trees.root.join(&include).is_dir() && !leaving.kernels.contains(k);
        if arrives || stays {
            out.kernels.insert(k.clone());
        } else {
            out.headerless.insert(k.clone());
        }
    }
    out
}

fn parse_targets(text: &str, trees: &Trees) -> Targets {
    let rel = |p: &Path| p.strip_prefix(&trees.root).map(Path::to_path_buf);
    Targets::parse(
        text.as_bytes(),
        &rel(&trees.source).unwrap_or_else(|_| PathBuf::from("usr/src")),
        &rel(&trees.install).unwrap_or_else(|_| PathBuf::from("usr/lib/modules")),
    )
}

/// A kernel that arrives without headers (`linux` upgraded, `linux-headers` not) gets none of
/// the DKMS modules the kernel it replaces has: said before any file changes, and returned as a
/// failure of each of those modules on it (so an essential one stops the transaction). A kernel
/// that replaces none (one more kernel installed) only gets a warning.
fn without_headers(
    incoming: &Incoming,
    leaving: &Leaving,
    trees: &Trees,
    opts: &Options,
    out: &mut dyn Write,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut failed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if incoming.headerless.is_empty() {
        return failed;
    }
    let tree = DkmsTree::read(&trees.dkms);
    for k in &incoming.headerless {
        let mut modules = BTreeSet::new();
        for old in leaving.images.iter().filter(|old| *old != k) {
            for m in tree.modules.keys() {
                if tree.installed(m, old, &opts.arch).is_some() {
                    modules.insert(m.clone());
                }
            }
        }
        let build = trees.install.join(k).join("build");
        let display = trees.display(&build);
        if modules.is_empty() {
            let _ = writeln!(
                out,
                "warning: preflight: kernel {k} arrives without its headers ({display}): no \
                 DKMS module can be built for it"
            );
            continue;
        }
        let names: Vec<&str> = modules.iter().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "warning: preflight: kernel {k} arrives without its headers ({display}), and \
             replaces a kernel with DKMS modules: {} will be missing on it. Install the \
             headers package of the kernel in the same transaction",
            names.join(", ")
        );
        for m in modules {
            failed.entry(m).or_default().insert(k.clone());
        }
    }
    failed
}

/// Makes the module signing key if dkms would make one (so that the trial builds and the
/// install after the transaction sign with the same key), then runs the trial in the view in a
/// child process, and reads what it found. `Err`: the view could not be made, or the child gave
/// no answer; why, in words.
fn look(
    trees: &Trees,
    scratch: &Scratch,
    tx: &Transaction,
    incoming: &Incoming,
    leaving: &Leaving,
    opts: &Options,
    out: &mut dyn Write,
) -> Result<trial::Outcome, String> {
    let layer = scratch.dir.join("layer");
    let rel = |p: &Path| p.strip_prefix(&trees.root).unwrap_or(p).to_path_buf();
    // The headers every trial build will use: the incoming kernels', and for an incoming
    // module, those of every kernel that stays.
    let mut headers: Vec<PathBuf> = Vec::new();
    for base in [layer.join(rel(&trees.install)), trees.install.clone()] {
        for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let k = e.file_name().to_string_lossy().into_owned();
            if !leaving.kernels.contains(&k) || incoming.kernels.contains(&k) {
                headers.push(e.path().join("build"));
            }
        }
    }
    let dkms = crate::system::dkms::Dkms::new(trees);
    let headers: Vec<&Path> = headers.iter().map(PathBuf::as_path).collect();
    match crate::system::signing::ensure_key(trees, &dkms, &headers) {
        Ok(crate::system::signing::Key::Made(key)) => {
            let _ = writeln!(
                out,
                "  preflight: made the module signing key {key}, as dkms would on its first \
                 signed build, so that these builds and the ones after the transaction carry \
                 the same signature"
            );
        }
        Ok(crate::system::signing::Key::Unchanged) => {}
        Err(e) => {
            let _ = writeln!(out, "warning: preflight: {e}");
        }
    }
    let mounts = view::mount_points(
        &trees.root,
        &layer,
        &[&trees.dkms, &trees.install, &trees.source],
    );
    for m in &mounts {
        std::fs::create_dir_all(m).map_err(|e| format!("{}: {e}", trees.display(m)))?;
    }
    let request = trial::TrialRequest {
        view: view::Spec {
            root: trees.root.clone(),
            layer: layer.clone(),
            upper: scratch.dir.join("upper"),
            mounts,
            leaving: tx.leaving.iter().cloned().collect(),
            sign: crate::system::signing::signs_outside_a_chroot(trees),
            writable: vec![trees.root.join("var/cache/dkms-hook"), trees.log_dir()],
            parent_ns: view::current_ns().map_err(|e| format!("/proc/self/ns/mnt: {e}"))?,
        },
        kernels: incoming.kernels.iter().cloned().collect(),
        sources: incoming.sources.iter().cloned().collect(),
        sources_leaving: leaving.sources.iter().cloned().collect(),
        jobs: opts.jobs,
        cpus: opts.cpus,
        arch: opts.arch.clone(),
        job_timeout_secs: opts.job_timeout.map(|d| d.as_secs()),
        outcome: scratch.dir.join("outcome.json"),
        lock_fd: crate::os::watchdog::lock_fd(),
    };
    let file = scratch.dir.join("request.json");
    let text = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    std::fs::write(&file, text).map_err(|e| format!("{}: {e}", trees.display(&file)))?;
    let _ = out.flush();
    let status = spawn_in_namespace(&opts.program, &trees.root, &file, request.lock_fd)?;
    let outcome: trial::Outcome = std::fs::read(&request.outcome)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| format!("its process ended without an answer ({status})"))?;
    match outcome.view_error {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

/// Runs `program --root ROOT preflight-view REQUEST` in a mount namespace of its own (made
/// between fork and exec, where the child is one thread), in a process group of its own that
/// the signals dkms-hook gets are forwarded to ([`crate::os::interrupt`]). It dies with this
/// process (SIGKILL: `PR_SET_PDEATHSIG` follows the forking thread, this run's main thread,
/// which lives as long as the run), and this run's watchdog kills its group too; it inherits
/// the run lock's descriptor `lock_fd` for a watchdog of its own, which kills the dkms groups
/// it started (see [`crate::os::watchdog`]).
fn spawn_in_namespace(
    program: &Path,
    root: &Path,
    request: &Path,
    lock_fd: Option<i32>,
) -> Result<std::process::ExitStatus, String> {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(program);
    cmd.arg("--root")
        .arg(root)
        .arg("preflight-view")
        .arg(request)
        .stdin(std::process::Stdio::null())
        .process_group(0);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec only async-signal-safe system calls are made (no
    // allocation, no lock): unshare(2), prctl(2), getppid(2), kill(2), fcntl(2).
    unsafe {
        cmd.pre_exec(move || {
            rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS)?;
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            if libc::getppid() != parent {
                // dkms-hook died before the line above.
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            if let Some(fd) = lock_fd {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let stop = crate::os::interrupt::global();
    if let Err(sig) = stop.may_start() {
        return Err(format!(
            "not started: dkms-hook got {}",
            crate::os::interrupt::name(sig)
        ));
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("a private mount namespace (unshare): {e}"))?;
    let pid = child.id() as i32;
    stop.register(pid);
    // Killed with SIGKILL, this run's watchdog kills its group (it dies with us anyway).
    crate::os::watchdog::track(pid);
    // Waited for without reaping first: while it is a zombie, its group id cannot be reused.
    // SAFETY: waitid writes only into `info`, which lives through the call.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        while libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        ) != 0
            && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {}
    }
    crate::os::watchdog::untrack(pid);
    stop.unregister(pid);
    child.wait().map_err(|e| e.to_string())
}

/// What an interrupted preflight found: the builds that failed before the signal, and those it
/// did not finish. Module name -> kernels, each.
#[derive(Debug, Default)]
struct Checked {
    failed: BTreeMap<String, BTreeSet<String>>,
    unchecked: BTreeMap<String, BTreeSet<String>>,
}

/// The last lines of a preflight a stopping signal ended early: what failed before it (as
/// usual), what was not checked, and that the run was interrupted; the run ends as an
/// interrupted run does (128 + the signal, [`crate::os::interrupt::exit_code`]): under pacman,
/// the transaction stops before any file changed. Nothing is kept for the install hook.
fn interrupted(
    trees: &Trees,
    signal: i32,
    checked: &Checked,
    config: &Config,
    opts: &Options,
    out: &mut dyn Write,
) -> u8 {
    let name = crate::os::interrupt::name(signal);
    if !checked.failed.is_empty() {
        decide(trees, &checked.failed, &BTreeMap::new(), config, opts, out);
    }
    for (m, ks) in &checked.unchecked {
        let ks: Vec<&str> = ks.iter().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "warning: preflight: {m} not checked for {} (interrupted by {name})",
            ks.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "==> ERROR: preflight: interrupted by {name} before it checked every module: the \
         transaction is stopped before any file changed"
    );
    // A signal only the trial got (sent to its process alone) ends this run as interrupted too.
    crate::os::interrupt::global().raise(signal);
    EXIT_ABORT
}

/// Turns the failures into the last lines and the exit code.
fn decide(
    trees: &Trees,
    failed: &BTreeMap<String, BTreeSet<String>>,
    ok: &BTreeMap<String, usize>,
    config: &Config,
    opts: &Options,
    out: &mut dyn Write,
) -> u8 {
    if failed.is_empty() {
        for (k, n) in ok {
            let _ = match n {
                0 => writeln!(out, "  preflight: no DKMS module to build for {k}"),
                1 => writeln!(out, "  preflight: 1 DKMS module builds for {k}"),
                n => writeln!(out, "  preflight: {n} DKMS modules build for {k}"),
            };
        }
        return EXIT_GO_ON;
    }
    let loaded = essential::loaded_dkms_modules(
        &essential::read_proc_modules(&opts.proc_modules),
        &DkmsTree::read(&trees.dkms),
        &opts.running,
        &opts.arch,
    );
    let mut abort = false;
    for (m, ks) in failed {
        let ks: Vec<&str> = ks.iter().map(String::as_str).collect();
        let is_essential = config.essential.contains(m, &loaded);
        let stop = is_essential && config.preflight == PreflightMode::Abort;
        abort |= stop;
        let _ = writeln!(
            out,
            "{}: preflight: {m} would not build for {}{}",
            if stop { "error" } else { "warning" },
            ks.join(", "),
            if is_essential { " (essential)" } else { "" }
        );
    }
    if abort {
        let _ = writeln!(
            out,
            "==> ERROR: the transaction is stopped before any file changed. Ways on: fix or upgrade \
             the module; remove it; or proceed knowingly with `DKMS_HOOK_PREFLIGHT=warn pacman -Syu`"
        );
        EXIT_ABORT
    } else {
        EXIT_GO_ON
    }
}
