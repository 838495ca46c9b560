//! The preflight: before pacman changes any file, trial-build the DKMS modules for what the
//! transaction brings, so that a module that would not build stops the transaction (when it is
//! essential) or is announced (when it is not) while the old kernel and modules are still there.
//!
//! Steps, one module each:
//! 1. [`pacman`]: the pacman that runs the hook, its command line and its DBPath/CacheDir;
//! 2. [`locate`]: the package files that bring the targets (`-U`'s files; else the cache's files
//!    of the sync databases' new versions), read with [`archive`] and [`pkgdb`];
//! 3. [`Scratch`] + [`archive::extract`]: the incoming headers and module sources unpacked into a
//!    scratch system root, next to what stays (linked), with an empty dkms tree;
//! 4. [`run`]: the usual pipeline (inventory, plan, runner, reporter) on that scratch root, and the
//!    outcome turned into an exit code with [`essential`] and [`crate::config`].

pub mod archive;
pub mod essential;
pub mod locate;
pub mod pacman;
pub mod pkgdb;

use crate::config::{Config, PreflightMode};
use crate::dkms::Dkms;
use crate::dkms_tree::DkmsTree;
use crate::inventory::{Inventory, SourceSelection};
use crate::plan::{self, Mode, Request};
use crate::prebuilt::{self, Store};
use crate::report::{Reporter, Style};
use crate::runner::{self, RunConfig};
use crate::targets::Targets;
use crate::trees::Trees;
use locate::{Located, Source};
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
        // remove_dir_all does not follow symlinks: the links to what stays are removed, not
        // what they point to.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What arrived, unpacked in the scratch root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Incoming {
    /// Kernel releases whose headers are unpacked at `usr/lib/modules/K/build`.
    pub kernels: BTreeSet<String>,
    /// Module source directories unpacked (relative to the root), e.g. `usr/src/foo-1.1`.
    pub sources: BTreeSet<PathBuf>,
}

/// The prefixes to unpack for some targets: a kernel's whole `build/`, a module's whole source
/// directory.
pub fn prefixes(targets: &Targets, trees: &Trees) -> Vec<PathBuf> {
    let rel = |p: &Path| {
        p.strip_prefix(&trees.root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let install = rel(&trees.install);
    let mut out: Vec<PathBuf> = targets
        .kernels
        .keys()
        .map(|k| install.join(k).join("build"))
        .collect();
    out.extend(targets.sources.iter().cloned());
    out
}

/// Unpacks what `located` brings into `scratch/root`, links what stays on the system beside it
/// (each other kernel's headers, each other module source, but not what is `leaving`), and makes
/// an empty dkms tree there.
/// Returns the scratch system's trees and what was unpacked.
pub fn stage(
    located: &Located,
    leaving: &locate::Leaving,
    trees: &Trees,
    scratch: &Scratch,
) -> Result<(Trees, Incoming), archive::ArchiveError> {
    let root = scratch.dir.join("root");
    // The scratch trees keep the system's root: paths are shown as the admin finds them, and
    // the failed builds' logs go to the system's log directory, where they outlive the scratch.
    let strees = Trees {
        root: trees.root.clone(),
        ..Trees::defaults(&root)
    };
    let mut incoming = Incoming::default();
    for found in &located.packages {
        let t = parse_targets(&found.targets.join("\n"), trees);
        let pre = prefixes(&t, trees);
        // Each package unpacked to the default layout of the scratch root.
        let pre: Vec<PathBuf> = pre.iter().map(|p| to_default(p, trees)).collect();
        archive::extract(&found.file, &pre, &root, &trees.root)?;
        incoming.kernels.extend(t.kernels.keys().cloned());
        incoming
            .sources
            .extend(t.sources.iter().map(|s| to_default(s, trees)));
    }
    let mkdir = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|source| archive::ArchiveError::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    mkdir(&strees.dkms)?;
    mkdir(&strees.install)?;
    mkdir(&strees.source)?;
    // Kernels that stay, and incoming kernels whose headers are installed already: a real
    // directory (dkms installs there), headers linked.
    for e in std::fs::read_dir(&trees.install)
        .into_iter()
        .flatten()
        .flatten()
    {
        let k = e.file_name().to_string_lossy().into_owned();
        if fs_exists(&strees.install.join(&k).join("build"))
            || leaving.kernels.contains(&k)
            || !e.path().join("build").is_dir()
        {
            continue;
        }
        let kdir = strees.install.join(&k);
        mkdir(&kdir)?;
        let _ = std::os::unix::fs::symlink(e.path().join("build"), kdir.join("build"));
    }
    // Module sources that stay: linked (dkms only reads them).
    for e in std::fs::read_dir(&trees.source)
        .into_iter()
        .flatten()
        .flatten()
    {
        let to = strees.source.join(e.file_name());
        let rel = to_default(
            e.path().strip_prefix(&trees.root).unwrap_or(&e.path()),
            trees,
        );
        if to.exists() || leaving.sources.contains(&rel) || !e.path().join("dkms.conf").is_file() {
            continue;
        }
        let _ = std::os::unix::fs::symlink(e.path(), to);
    }
    Ok((strees, incoming))
}

fn fs_exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// The incoming kernels that will have no headers after the transaction: none arrive and none
/// are installed. Taken out of `incoming` (there is nothing to trial-build for them).
pub fn headerless(incoming: &mut Incoming, strees: &Trees) -> BTreeSet<String> {
    let out: BTreeSet<String> = incoming
        .kernels
        .iter()
        .filter(|k| !strees.install.join(k).join("build/include").is_dir())
        .cloned()
        .collect();
    incoming.kernels.retain(|k| !out.contains(k));
    out
}

/// A path of the real trees moved to the default layout (what the scratch root uses).
fn to_default(rel: &Path, trees: &Trees) -> PathBuf {
    let d = Trees::defaults(&trees.root);
    for (real, def) in [(&trees.install, &d.install), (&trees.source, &d.source)] {
        if let Ok(r) = real.strip_prefix(&trees.root) {
            if let Ok(rest) = rel.strip_prefix(r) {
                let def = def.strip_prefix(&trees.root).unwrap_or(def);
                return def.join(rest);
            }
        }
    }
    rel.to_path_buf()
}

fn parse_targets(text: &str, trees: &Trees) -> Targets {
    let rel = |p: &Path| p.strip_prefix(&trees.root).map(Path::to_path_buf);
    Targets::parse(
        text.as_bytes(),
        &rel(&trees.source).unwrap_or_else(|_| PathBuf::from("usr/src")),
        &rel(&trees.install).unwrap_or_else(|_| PathBuf::from("usr/lib/modules")),
    )
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
}

/// `dkms-hook preflight`: reads the targets (pacman's NeedsTargets lines, as bytes), finds and
/// unpacks what arrives, trial-builds, reports on `out`, and returns the exit code. Never blocks
/// for want of information: what cannot be checked is said in one line, and so is each target
/// line that cannot be a path (the same reader as the hooks', [`crate::targets::read_lines`]).
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
    let (lines, notes) = crate::targets::read_lines(targets_bytes);
    for n in &notes {
        let _ = writeln!(out, "warning: preflight: {n}");
    }
    let targets: Vec<String> = lines.into_iter().map(str::to_owned).collect();
    if targets.is_empty() {
        return EXIT_GO_ON;
    }
    let view =
        pacman::PacmanView::parent().unwrap_or_else(|| pacman::PacmanView::at(&trees.root, vec![]));
    let source = if opts.packages.is_empty() {
        Source::from_pacman(&view)
    } else {
        Source::Files(opts.packages.clone())
    };
    let located = locate::locate(&source, &targets);
    let leaving = locate::leaving(&view.paths().db_path.join("local"), &located.packages);
    for n in &located.notes {
        let _ = writeln!(out, "warning: preflight: {n}");
    }
    if !located.missing.is_empty() {
        let _ = writeln!(
            out,
            "warning: preflight: no package file found for {} (not checked)",
            located.missing.join(", ")
        );
    }
    if located.packages.is_empty() {
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
    let (strees, mut incoming) = match stage(&located, &leaving, trees, &scratch) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(out, "warning: preflight: cannot unpack {e} (not checked)");
            return EXIT_GO_ON;
        }
    };
    let missing = without_headers(&mut incoming, &strees, &leaving, trees, opts, out);
    trial(trees, &strees, &incoming, missing, &config, opts, out)
}

/// A kernel that arrives without headers (`linux` upgraded, `linux-headers` not) gets none of
/// the DKMS modules the kernel it replaces has: said before any file changes, and returned as a
/// failure of each of those modules on it (so an essential one stops the transaction). A kernel
/// that replaces none (one more kernel installed) only gets a warning.
fn without_headers(
    incoming: &mut Incoming,
    strees: &Trees,
    leaving: &locate::Leaving,
    trees: &Trees,
    opts: &Options,
    out: &mut dyn Write,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut failed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let kernels = headerless(incoming, strees);
    if kernels.is_empty() {
        return failed;
    }
    let tree = DkmsTree::read(&trees.dkms);
    for k in &kernels {
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

/// Trial-builds on the scratch trees what the transaction would build, and decides.
fn trial(
    trees: &Trees,
    strees: &Trees,
    incoming: &Incoming,
    mut failed: BTreeMap<String, BTreeSet<String>>,
    config: &Config,
    opts: &Options,
    out: &mut dyn Write,
) -> u8 {
    // The targets, as paths of the scratch trees relative to the root.
    let rel = |p: &Path| p.strip_prefix(&strees.root).unwrap_or(p).to_path_buf();
    let (source, install) = (rel(&strees.source), rel(&strees.install));
    let mut text = String::new();
    for k in &incoming.kernels {
        text.push_str(&format!("{}/{k}/build/include/\n", install.display()));
    }
    for s in &incoming.sources {
        let name = s.file_name().unwrap_or_default().to_string_lossy();
        text.push_str(&format!("{}/{name}/dkms.conf\n", source.display()));
    }
    let targets = Targets::parse(text.as_bytes(), &source, &install);
    let inv = Inventory::load(strees, &opts.arch, &SourceSelection::All);
    let req = Request {
        mode: Mode::Install,
        targets,
        kernels: vec![],
        force: false,
    };
    let plan = plan::plan(&req, &inv);
    let mut reporter =
        Reporter::new(Box::new(std::io::stdout()), Style::detect(false, true)).trial();
    let cfg = RunConfig {
        jobs: opts.jobs,
        cpus: opts.cpus,
        force: false,
        arch: opts.arch.clone(),
        dkms: Dkms::new(strees),
        job_timeout: opts.job_timeout,
    };
    let _ = out.flush();
    runner::run(&plan, &cfg, &mut |e| reporter.handle(e));
    drop(reporter);
    // What did not get installed in the scratch tree failed (or was refused by the planner).
    let built = DkmsTree::read(&strees.dkms);
    keep_builds(&plan, &built, strees, &cfg, out);
    // Every incoming kernel gets its line, even with nothing to build.
    let mut ok: BTreeMap<String, usize> = incoming.kernels.iter().map(|k| (k.clone(), 0)).collect();
    for job in &plan.jobs {
        let Some(k) = &job.info.kernel else { continue };
        if built.installed(&job.info.module, k, &opts.arch) == Some(job.info.version.as_str()) {
            *ok.entry(k.clone()).or_default() += 1;
        } else {
            failed
                .entry(job.info.module.clone())
                .or_default()
                .insert(k.clone());
        }
    }
    for d in &plan.failed {
        let module = d.subject.split('/').next().unwrap_or(&d.subject).to_owned();
        let k = d.kernel.clone().unwrap_or_else(|| "every kernel".into());
        failed.entry(module).or_default().insert(k);
    }
    let code = decide(trees, &failed, &ok, config, opts, out);
    if code == EXIT_ABORT {
        // The transaction will not happen: nothing of it is kept.
        let _ = Store::at(&trees.root).clear();
    }
    code
}

/// Keeps each trial build that installed in the scratch tree for the install hook after the
/// transaction, stamped with what it was compiled from (see [`crate::prebuilt`]).
fn keep_builds(
    plan: &plan::Plan,
    built: &DkmsTree,
    strees: &Trees,
    cfg: &RunConfig,
    out: &mut dyn Write,
) {
    let store = Store::at(&strees.root);
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
        };
        let dir = strees.dkms.join(m).join(v).join(k).join(&cfg.arch);
        if let Err(e) = store.keep(&dir, &inputs, &prebuilt::stamp(&inputs)) {
            // Not fatal: the install hook builds it again.
            let _ = writeln!(
                out,
                "warning: preflight: keeping the build of {m}/{v} for {k}: {e}"
            );
        }
    }
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
