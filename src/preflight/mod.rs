//! The preflight: before pacman changes any file, trial-build the DKMS modules for what the
//! transaction brings, in a view of the system as the transaction will leave it, so that a module
//! that would not build stops the transaction (when it is essential) or is announced (when it is
//! not) while the old kernel and modules are still there; and keep what built, so that the
//! install hook after the transaction installs those builds instead of compiling again.
//!
//! Steps, one module each:
//! 1. [`crate::pacman::caller`]: the pacman that runs the hook, its command line and its
//!    DBPath/CacheDir;
//! 2. [`crate::pacman::transaction`]: the packages the transaction installs, upgrades and
//!    removes (read with [`crate::pacman::archive`] and [`crate::pacman::pkgdb`]), and
//!    [`crate::pacman::locate`] for a target those rules miss;
//! 3. [`Scratch`] + [`archive::unpack`]: every incoming package unpacked into a layer, once the
//!    scratch's filesystem has room for them and the builds ([`SCRATCH_MARGIN`]);
//! 4. [`view`] + [`trial`]: a child process makes the view (the layer over the live root in a
//!    private mount namespace, what leaves deleted there) and runs the usual pipeline
//!    (inventory, plan, runner, reporter) on the system's own trees in it;
//! 5. [`run`] turns its outcome into the last lines and the exit code, with [`essential`] and
//!    [`crate::system::config`]. A trial that ran out of space in the scratch says nothing of
//!    the modules: its failures are "not checked", never a reason to abort.

pub mod essential;
pub mod prebuild;
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

/// The room the trial needs in the scratch's filesystem beyond the packages unpacked (their
/// installed size): what dkms's build directories and the modules installed in the view take.
/// Less free than both together, and the preflight does not start (see [`run`]).
pub const SCRATCH_MARGIN: u64 = 64 << 20;

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
    // The builds an earlier run kept stay (their stamps say what they serve); its notes go.
    let store = Store::at(&trees.root);
    store.forget_notes();
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
        let _ = writeln!(
            out,
            "  preflight: nothing to check: no targets on stdin (the paths that arrive, one a \
             line, as pacman's hook sends them; --package only names the package files that \
             bring them)"
        );
        return EXIT_GO_ON;
    }
    let parent = pacman::PacmanView::parent();
    // How to run this transaction again, going on knowingly: pacman's own command line.
    let again = proceed_knowingly(parent.as_ref().map(|v| v.args.as_slice()));
    let view = parent.unwrap_or_else(|| pacman::PacmanView::at(&trees.root, vec![]));
    let local = view.paths().db_path.join("local");
    // A package file is named as pacman was given it (or `--package`), else as on the system.
    let given = if opts.packages.is_empty() {
        locate::given_names(&view)
    } else {
        BTreeMap::new()
    };
    let shown = |file: &Path| -> String {
        let name = match given.get(file) {
            Some(g) => g.clone(),
            None if !opts.packages.is_empty() => file.display().to_string(),
            None => trees.display(file).into_owned(),
        };
        crate::os::text::printable(&name)
    };
    let (source, mut tx) = if opts.packages.is_empty() {
        let source = Source::from_pacman(&view);
        let tx = match &source {
            Source::Files(files) => Transaction::from_files(files, &local),
            Source::Repos(paths) => Transaction::from_repos(paths, &view.sync_request()),
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
        for u in located.unreadable {
            if !tx.unreadable.iter().any(|t| t.file == u.file) {
                tx.unreadable.push(u);
            }
        }
        missing = located.missing;
    }
    for n in &tx.notes {
        let _ = writeln!(out, "warning: preflight: {n}");
    }
    for u in &tx.unreadable {
        let _ = writeln!(
            out,
            "warning: preflight: cannot read package {}: {}",
            shown(&u.file),
            u.why
        );
    }
    if !missing.is_empty() {
        let _ = writeln!(
            out,
            "warning: preflight: no package file found for {} (not checked)",
            missing.join(", ")
        );
    }
    // A module the transaction brings counts too (its sources arrive with it).
    let mut unknown = config.essential.unknown(&trees.source);
    unknown.retain(|n| {
        let dir = format!("usr/src/{n}-");
        !tx.packages.iter().any(|p| {
            p.listing
                .paths
                .iter()
                .any(|f| f.trim_start_matches('/').starts_with(&dir))
        })
    });
    if !unknown.is_empty() {
        let _ = writeln!(
            out,
            "warning: preflight: {}: essential names {}, which is no module in {} (a module's \
             name is its source directory's, before the version): it protects nothing",
            trees.display(&trees.root.join(crate::system::config::CONFIG_PATH)),
            unknown.join(", "),
            trees.display(&trees.source)
        );
    }
    let brought: BTreeSet<&String> = wanted.iter().filter(|w| !missing.contains(w)).collect();
    if brought.is_empty() {
        return EXIT_GO_ON;
    }
    match judge(trees, opts, &tx, &brought, Purpose::Preflight, &shown, out) {
        Judged::NotChecked => EXIT_GO_ON,
        Judged::Interrupted { signal, checked } => {
            interrupted(trees, signal, &checked, &config, opts, out, &again)
        }
        Judged::Done(j) => {
            // The notes were said: the install hook does not say them again.
            if let Err(e) = store.remember_notes(&j.notes) {
                let _ = writeln!(
                    out,
                    "warning: preflight: {}: {e}",
                    trees.display(&store.dir)
                );
            }
            decide(trees, &j.failed, &j.ok, &config, opts, out, &again)
        }
    }
}

/// What a trial is for. The preflight of a transaction says again the failures the store
/// remembers (a build that failed with the same inputs is not compiled again); a prebuild, ahead
/// of time, builds those afresh, and its builds say it made them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Preflight,
    Prebuild,
}

impl Purpose {
    /// The word its lines start with.
    fn word(self) -> &'static str {
        match self {
            Purpose::Preflight => "preflight",
            Purpose::Prebuild => "prebuild",
        }
    }

    /// What a trial that could not look leaves undone, in a few words.
    fn not_checked(self) -> &'static str {
        match self {
            Purpose::Preflight => "not checked",
            Purpose::Prebuild => "not built ahead",
        }
    }

    /// What happens next to what it did not check.
    fn then(self) -> &'static str {
        match self {
            Purpose::Preflight => "the install hook builds after the transaction as usual",
            Purpose::Prebuild => "the preflight of the upgrade looks again",
        }
    }
}

/// What a trial found: for each module, the kernels it would not build for; for each incoming
/// kernel, how many modules build; the planner's notes it said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Judgement {
    pub failed: BTreeMap<String, BTreeSet<String>>,
    pub ok: BTreeMap<String, usize>,
    pub notes: Vec<String>,
}

/// How a trial ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    /// It could not look (said on `out`): nothing is known.
    NotChecked,
    Done(Judgement),
    /// A stopping signal ended the trial early: what failed before it, what it did not check.
    Interrupted {
        signal: i32,
        checked: Checked,
    },
}

/// Unpacks the transaction `tx`, makes the view of the system after it, trial-builds there what
/// would be built for the targets `brought`, keeps what built (and remembers what failed) in the
/// store, and says what it found. Shared by `preflight` and `prebuild`.
pub fn judge(
    trees: &Trees,
    opts: &Options,
    tx: &Transaction,
    brought: &BTreeSet<&String>,
    purpose: Purpose,
    shown: &dyn Fn(&Path) -> String,
    out: &mut dyn Write,
) -> Judged {
    let scratch = match Scratch::create(&trees.root) {
        Ok(s) => s,
        Err(e) => {
            // The path to mend: the first one on the way that is there but no directory.
            let dir = trees.root.join(SCRATCH_DIR);
            let blocking = dir
                .ancestors()
                .take_while(|a| *a != trees.root)
                .filter(|a| a.exists() && !a.is_dir())
                .last();
            let what = match blocking {
                Some(f) => format!("{} is not a directory", trees.display(f)),
                None => format!("{}: {e}", trees.display(&dir)),
            };
            let _ = writeln!(
                out,
                "warning: {}: cannot make the trial's scratch directory: {what}: {} ({})",
                purpose.word(),
                purpose.not_checked(),
                purpose.then()
            );
            return Judged::NotChecked;
        }
    };
    // Room for the packages unpacked and the builds, or no trial: one that runs out of space
    // fails its builds for want of room, not for the modules.
    let scratch_shown = trees.display(&scratch.dir).into_owned();
    let room = Room {
        purpose,
        unpacked: tx.packages.iter().filter_map(|p| p.listing.size).sum(),
        free: crate::execute::work::free_bytes(&scratch.dir),
    };
    if let Some(free) = room.free {
        if free < room.need() {
            let _ = writeln!(
                out,
                "warning: {}: {scratch_shown}: {} MiB free on its filesystem, the trial needs \
                 about {}: {} ({})",
                purpose.word(),
                free >> 20,
                room.describe(),
                purpose.not_checked(),
                purpose.then()
            );
            return Judged::NotChecked;
        }
    }
    let layer = scratch.dir.join("layer");
    for p in &tx.packages {
        if let Err(e) = archive::unpack(&p.file, &layer, &not_for_builds) {
            if let archive::ArchiveError::Interrupted { signal, .. } = e {
                return Judged::Interrupted {
                    signal,
                    checked: Checked::default(),
                };
            }
            let what = format!("cannot unpack {}: {}", shown(&p.file), e.reason());
            if e.is_no_space() {
                let _ = writeln!(out, "{}", room.ran_out(&scratch_shown, &what));
            } else {
                let _ = writeln!(
                    out,
                    "warning: {}: {what} ({})",
                    purpose.word(),
                    purpose.not_checked()
                );
            }
            return Judged::NotChecked;
        }
    }
    let leaving = tx.leaving_parts();
    let incoming = incoming(brought, trees, &layer, &leaving);
    let failed = without_headers(&incoming, &leaving, trees, opts, out);
    if incoming.kernels.is_empty() && incoming.sources.is_empty() {
        return Judged::Done(Judgement {
            failed,
            ..Default::default()
        });
    }
    let result = look(trees, &scratch, tx, &incoming, &leaving, purpose, opts, out);
    // A prebuild knows the kernels the repositories offer (its incoming ones): what the store
    // holds for kernels neither installed nor offered cannot serve any more. A preflight does
    // not know what is offered beside its own transaction: it keeps the store within bounds.
    let store = Store::at(&trees.root);
    let installed = crate::system::prebuilt::installed_kernels(&trees.install);
    let wanted = |k: &str| match purpose {
        Purpose::Prebuild => installed.contains(k) || incoming.kernels.contains(k),
        Purpose::Preflight => true,
    };
    store.prune(&wanted, crate::system::prebuilt::MAX_BYTES);
    match result {
        Ok(outcome)
            if outcome
                .interrupted
                .or(crate::os::interrupt::global().signal())
                .is_some() =>
        {
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
            Judged::Interrupted { signal, checked }
        }
        Err(_) if crate::os::interrupt::global().signal().is_some() => Judged::Interrupted {
            signal: crate::os::interrupt::global()
                .signal()
                .unwrap_or(libc::SIGTERM),
            checked: Checked::default(),
        },
        Ok(outcome) => {
            let mut failed = failed;
            let ok = match &outcome.out_of_space {
                Some(what) => {
                    // What failed may have failed for want of room: none of it is the module's
                    // verdict (what built stays kept).
                    let _ = writeln!(out, "{}", room.ran_out(&scratch_shown, what));
                    BTreeMap::new()
                }
                None => {
                    for (m, ks) in outcome.failed {
                        failed.entry(m).or_default().extend(ks);
                    }
                    outcome.ok
                }
            };
            // A build that wrote where the view lets nothing write: the view's limit, not the
            // module's verdict (it may build after the transaction).
            for (m, ks) in &outcome.sealed {
                for (k, line) in ks {
                    let _ = writeln!(
                        out,
                        "warning: {}: {m} {} for {k}: its build writes outside what the trial's \
                         view lets it write ({line}); {}",
                        purpose.word(),
                        purpose.not_checked(),
                        purpose.then()
                    );
                }
            }
            Judged::Done(Judgement {
                failed,
                ok,
                notes: outcome.notes,
            })
        }
        Err(why) => {
            let _ = writeln!(
                out,
                "warning: {}: cannot make the view of the system after the transaction: \
                 {why} ({}; {})",
                purpose.word(),
                purpose.not_checked(),
                purpose.then()
            );
            Judged::NotChecked
        }
    }
}

/// The room a trial takes in the scratch's filesystem.
struct Room {
    purpose: Purpose,
    /// The packages' installed size (`.PKGINFO`'s `size`), what the layer takes at most.
    unpacked: u64,
    /// The bytes free there before it started.
    free: Option<u64>,
}

impl Room {
    fn need(&self) -> u64 {
        self.unpacked + SCRATCH_MARGIN
    }

    fn describe(&self) -> String {
        format!(
            "{} MiB (the packages unpacked, {} MiB, and {} MiB to build in)",
            self.need().div_ceil(1 << 20),
            self.unpacked.div_ceil(1 << 20),
            SCRATCH_MARGIN >> 20
        )
    }

    /// The warning of a trial that ran out of space in the scratch (shown as `shown`): `what`
    /// says where it showed.
    fn ran_out(&self, shown: &str, what: &str) -> String {
        let free = self
            .free
            .map(|f| format!("{} MiB were free there when it started; ", f >> 20))
            .unwrap_or_default();
        format!(
            "warning: {}: the trial ran out of space in {shown} ({what}): {free}it needs more \
             (the packages unpacked, {} MiB, and what the builds write): {} ({})",
            self.purpose.word(),
            self.unpacked.div_ceil(1 << 20),
            self.purpose.not_checked(),
            self.purpose.then()
        )
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
#[allow(clippy::too_many_arguments)]
fn look(
    trees: &Trees,
    scratch: &Scratch,
    tx: &Transaction,
    incoming: &Incoming,
    leaving: &Leaving,
    purpose: Purpose,
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
                "  {}: made the module signing key {key}, as dkms would on its first signed \
                 build, so that these builds and the ones after the transaction carry the same \
                 signature",
                purpose.word()
            );
        }
        Ok(crate::system::signing::Key::Unchanged) => {}
        Err(e) => {
            let _ = writeln!(out, "warning: {}: {e}", purpose.word());
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
            parent_ns: view::current_ns().map_err(|e| format!("/proc/thread-self/ns/mnt: {e}"))?,
        },
        kernels: incoming.kernels.iter().cloned().collect(),
        sources: incoming.sources.iter().cloned().collect(),
        sources_leaving: leaving.sources.iter().cloned().collect(),
        kernels_leaving: leaving
            .kernels
            .difference(&incoming.kernels)
            .cloned()
            .collect(),
        jobs: opts.jobs,
        cpus: opts.cpus,
        arch: opts.arch.clone(),
        job_timeout_secs: opts.job_timeout.map(|d| d.as_secs()),
        remembered: purpose == Purpose::Preflight,
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
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Module name -> the kernels it failed for before the signal.
    pub failed: BTreeMap<String, BTreeSet<String>>,
    /// Module name -> the kernels whose trial build the signal cut short: not checked.
    pub unchecked: BTreeMap<String, BTreeSet<String>>,
}

/// The last lines of a preflight a stopping signal ended early: what failed before it (as
/// usual), what was not checked, and that the run was interrupted; the run ends as an
/// interrupted run does (128 + the signal, [`crate::os::interrupt::exit_code`]): under pacman,
/// the transaction stops before any file changed. What built before the signal is kept (whole
/// and stamped); no failure after it is remembered.
fn interrupted(
    trees: &Trees,
    signal: i32,
    checked: &Checked,
    config: &Config,
    opts: &Options,
    out: &mut dyn Write,
    again: &str,
) -> u8 {
    let name = crate::os::interrupt::name(signal);
    if !checked.failed.is_empty() {
        decide(
            trees,
            &checked.failed,
            &BTreeMap::new(),
            config,
            opts,
            out,
            again,
        );
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

/// The command that runs the transaction again with the preflight warning instead of aborting:
/// pacman's own arguments when pacman runs the hook (`pacman -U ./foo.pkg.tar.zst` gets its own
/// line back, quoted for the shell), else the usual upgrade.
fn proceed_knowingly(pacman_args: Option<&[String]>) -> String {
    let line = pacman_args
        .filter(|a| !a.is_empty())
        .and_then(|a| shlex::try_join(a.iter().map(String::as_str)).ok())
        .unwrap_or_else(|| "-Syu".to_owned());
    format!("DKMS_HOOK_PREFLIGHT=warn pacman {line}")
}

/// Turns the failures into the last lines and the exit code.
fn decide(
    trees: &Trees,
    failed: &BTreeMap<String, BTreeSet<String>>,
    ok: &BTreeMap<String, usize>,
    config: &Config,
    opts: &Options,
    out: &mut dyn Write,
    again: &str,
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
    let (mut abort, mut any_essential) = (false, false);
    for (m, ks) in failed {
        let ks: Vec<&str> = ks.iter().map(String::as_str).collect();
        let is_essential = config.essential.contains(m, &loaded);
        let stop = is_essential && config.preflight == PreflightMode::Abort;
        abort |= stop;
        any_essential |= is_essential;
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
             the module; remove it; or proceed knowingly with `{again}`"
        );
        EXIT_ABORT
    } else {
        // Why pacman goes on, said once: the warnings alone leave a user asking.
        let why = if any_essential && opts.env_preflight.is_some() {
            "DKMS_HOOK_PREFLIGHT=warn"
        } else if any_essential {
            "`preflight = warn` in /etc/dkms-hook.conf"
        } else {
            "no module that fails is essential (see `essential` in /etc/dkms-hook.conf)"
        };
        let _ = writeln!(
            out,
            "  preflight: the transaction goes on: {why}; the install hook tries them again \
             after it"
        );
        EXIT_GO_ON
    }
}

#[cfg(test)]
mod tests {
    use super::proceed_knowingly;

    /// The advice gives pacman's own command line back, quoted for the shell; by hand, the
    /// usual upgrade.
    #[test]
    fn the_way_on_is_the_transaction_that_was_stopped() {
        let args: Vec<String> = ["-U", "./my pkg.pkg.tar.zst", "--noconfirm"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            proceed_knowingly(Some(&args)),
            "DKMS_HOOK_PREFLIGHT=warn pacman -U './my pkg.pkg.tar.zst' --noconfirm"
        );
        assert_eq!(
            proceed_knowingly(None),
            "DKMS_HOOK_PREFLIGHT=warn pacman -Syu"
        );
        assert_eq!(
            proceed_knowingly(Some(&[])),
            "DKMS_HOOK_PREFLIGHT=warn pacman -Syu"
        );
    }
}
