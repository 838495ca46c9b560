//! The planner: from a request and an inventory to the jobs to run, what is skipped and why.
//!
//! Pure: it reads only the [`Inventory`] value, never the disk, so every rule here is tested without a
//! compiler. Decisions per (module, kernel) pair: BUILD_EXCLUSIVE_* are decided here, already
//! installed pairs are left alone unless forced, BUILD_DEPENDS become edges between jobs of the same
//! kernel (pulling in a dependency that is available but not installed), and unknown dependencies and
//! cycles fail the modules involved with their names.

pub mod cost;
pub mod inventory;
pub mod names;
pub mod queue;
pub mod targets;

use crate::dkmsconf::rules::{ConfError, DkmsConf};
use crate::plan::inventory::Inventory;
use crate::plan::queue::Node;
use crate::plan::targets::Targets;
use crate::system::dkms_tree::{ModuleVersion, PairId};
use crate::system::kernel::Kernel;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// What a job does to one module version (on one kernel, or on all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// `dkms install` for one kernel (adding the version to the dkms tree first if needed).
    Build,
    /// Remove the version from one kernel (`dkms remove -k`, or directly when dkms cannot).
    RemoveFromKernel,
    /// Remove the version from every kernel and unregister it (`dkms remove --all`).
    Unregister,
}

impl Action {
    /// The verb shown in status lines.
    pub fn verb(self) -> &'static str {
        match self {
            Action::Build => "build",
            Action::RemoveFromKernel | Action::Unregister => "remove",
        }
    }
}

/// A job as the reporter sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub module: String,
    pub version: String,
    /// `None` for a job that covers every kernel (unregistering a module version).
    pub kernel: Option<String>,
    pub action: Action,
}

impl JobInfo {
    /// `name/version` for kernel K, or `name/version` on every kernel.
    pub fn label(&self) -> String {
        match &self.kernel {
            Some(k) => format!("{}/{} for {}", self.module, self.version, k),
            None => format!("{}/{} on every kernel", self.module, self.version),
        }
    }
}

/// Something the planner decided without running anything: a skip or a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `name/version`, or the dkms.conf path when the module's identity is unknown.
    pub subject: String,
    pub kernel: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for Decision {
    /// `subject[ for kernel]: reason`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kernel {
            Some(k) => write!(f, "{} for {k}: {}", self.subject, self.reason),
            None => write!(f, "{}: {}", self.subject, self.reason),
        }
    }
}

/// What the user (or pacman) asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Build what the targets bring (module sources for every kernel, kernels get every AUTOINSTALL
    /// module).
    Install,
    /// Remove what the targets take away.
    Remove,
    /// Bring every kernel up to date, like `dkms autoinstall` for each kernel.
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub mode: Mode,
    pub targets: Targets,
    /// `-k`: only these kernels (empty: all).
    pub kernels: Vec<String>,
    pub force: bool,
    /// (module, version, kernel) whose `--force` rebuild a stopped run cut short (the journal's
    /// pending rebuilds, [`crate::execute::journal::rebuild_pairs`]): planned as if forced.
    pub rebuild: BTreeSet<PairId>,
}

/// One unit of work for the runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: usize,
    pub info: JobInfo,
    /// The module's source directory (builds).
    pub source: Option<PathBuf>,
    /// The kernel's headers, when it has them.
    pub headers: Option<PathBuf>,
    /// Remove dkms's files directly instead of asking dkms (the kernel's headers or directory are gone).
    pub direct: bool,
    /// The .ko names a build must produce (BUILT_MODULE_NAME / DEST_MODULE_NAME), for verification.
    pub expect: Vec<String>,
    /// Jobs that must succeed first.
    pub needs: Vec<usize>,
    /// Other module versions whose build directory this job may use (see the `From<&Job> for Node` impl).
    pub shares: Vec<ModuleVersion>,
    /// Kernels whose modules this job changes (for depmod after their last job).
    pub touches: Vec<String>,
    /// A build: the preflight's build of the same inputs, to install instead of compiling.
    pub prebuilt: Option<PathBuf>,
    /// A build that failed with the same inputs before, as the store remembers it: said again
    /// instead of compiled again (a trial only: see [`Inventory::load_remembered`]).
    pub remembered: Option<crate::system::prebuilt::Failure>,
    /// See [`crate::plan::cost`].
    pub cost: u64,
}

/// What the queue needs of a job. Its groups are the module versions whose dkms build directory it
/// may use: its own, and for a build, those of modules that BUILD_DEPENDS on it (dkms 3.2+ rebuilds
/// them itself at the end of the install, in their shared build directory). Two jobs sharing any of
/// these never run at once, except the builds of one version for several kernels: the executor
/// builds a second kernel in a private tree and takes turns for what dkms would collide on
/// (`Worker::build` in `crate::execute::work`).
impl From<&Job> for Node {
    fn from(j: &Job) -> Node {
        let own = (&j.info.module, &j.info.version);
        Node {
            needs: j.needs.clone(),
            groups: std::iter::once(own)
                .chain(j.shares.iter().map(|s| (&s.name, &s.version)))
                .map(|(m, v)| format!("{m}/{v}"))
                .collect(),
            cost: j.cost,
            together: j.info.action == Action::Build,
        }
    }
}

/// The whole plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub jobs: Vec<Job>,
    pub skipped: Vec<Decision>,
    pub failed: Vec<Decision>,
    pub notes: Vec<String>,
    /// Kernels to run depmod for once their jobs are done.
    pub depmod: BTreeSet<String>,
}

/// Plans `req` against `inv`.
pub fn plan(req: &Request, inv: &Inventory) -> Plan {
    let mut p = Planner {
        inv,
        req,
        out: Plan::default(),
    };
    // Target lines that cannot be paths were skipped: each is said, and the rest is planned.
    p.out.notes.extend(req.targets.notes.iter().cloned());
    // A history file that does not read: said, and the costs guessed from the sources.
    p.out.notes.extend(inv.history.warning.iter().cloned());
    match req.mode {
        Mode::Install | Mode::All => p.install(),
        Mode::Remove => p.remove(),
    }
    p.out
        .skipped
        .sort_by(|a, b| (&a.subject, &a.kernel).cmp(&(&b.subject, &b.kernel)));
    // A kernel without headers can be noted by several rules: say it once.
    let mut seen = BTreeSet::new();
    p.out.notes.retain(|n| seen.insert(n.clone()));
    p.out
}

struct Planner<'a> {
    inv: &'a Inventory,
    req: &'a Request,
    out: Plan,
}

/// Why a pair is not built: a skip (nothing is wrong: excluded, already there, a dependency that
/// is not built) or a failure (something must be fixed).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Skip(String),
    Fail(String),
}

/// (kernel, module name): one pair while planning builds.
type PairKey = (String, String);

/// The state of one pair while planning builds.
#[derive(Debug, Clone)]
enum Pair {
    Build {
        src: usize,
        conf: Box<DkmsConf>,
        needs: BTreeSet<String>,
    },
    /// Already installed (in this version or another): satisfies dependents.
    Present,
    /// Will not be built; dependents cannot be built either, and learn why.
    Blocked { why: String },
}

impl<'a> Planner<'a> {
    fn wanted_kernel(&self, k: &str) -> bool {
        self.req.kernels.is_empty() || self.req.kernels.iter().any(|x| x == k)
    }

    /// Records a pair (or a module, with no kernel) that is not built, and why.
    fn decide(&mut self, subject: String, kernel: Option<&str>, verdict: Verdict) {
        let (list, reason) = match verdict {
            Verdict::Skip(r) => (&mut self.out.skipped, r),
            Verdict::Fail(r) => (&mut self.out.failed, r),
        };
        let d = Decision {
            subject,
            kernel: kernel.map(str::to_string),
            reason,
        };
        if !list.contains(&d) {
            list.push(d);
        }
    }

    /// A dkms.conf that cannot be used fails the pair (or the module) it was read for, naming the
    /// file as the admin sees it.
    fn conf_failed(&mut self, e: &ConfError, kernel: Option<&str>) {
        let subject = self.inv.trees.display(&e.path).into_owned();
        self.decide(subject, kernel, Verdict::Fail(e.problem.to_string()));
    }

    /// Kernels that can be built for, and a note for each that cannot.
    fn buildable_kernels(&mut self, only: Option<&BTreeSet<String>>) -> Vec<&'a Kernel> {
        let mut out = Vec::new();
        for k in &self.inv.kernels {
            if !self.wanted_kernel(&k.release) || only.is_some_and(|o| !o.contains(&k.release)) {
                continue;
            }
            if k.headers.is_some() {
                out.push(k);
            } else {
                self.out.notes.push(format!(
                    "kernel {} has no headers ({}/build/Makefile is missing): nothing is built for it",
                    k.release,
                    self.inv.trees.display(&k.dir)
                ));
            }
        }
        out
    }

    /// Index of the newest source of each module name whose dkms.conf evaluates.
    fn newest_by_name(&self) -> BTreeMap<String, usize> {
        crate::plan::inventory::newest_by_name(self.inv.sources.iter().map(|s| &s.conf))
    }

    fn install(&mut self) {
        let newest = self.newest_by_name();
        let wanted = match self.req.mode {
            Mode::All => {
                let kernels = self.buildable_kernels(None);
                self.autoinstall_pairs(&newest, &kernels)
            }
            _ => {
                let mut w = self.for_new_kernels(&newest);
                w.extend(self.for_new_sources());
                w
            }
        };
        self.plan_builds(wanted, &newest);
    }

    /// What a kernel gets by itself, as `dkms autoinstall` would give it: the newest version of
    /// each name that asks for AUTOINSTALL, and every source whose dkms.conf cannot be read for
    /// any kernel (it may ask for it; its failure is said for each of `kernels` rather than left
    /// out without a word).
    fn autoinstall_pairs(
        &self,
        newest: &BTreeMap<String, usize>,
        kernels: &[&'a Kernel],
    ) -> Vec<(usize, &'a Kernel)> {
        let sources = &self.inv.sources;
        let candidates: BTreeSet<usize> = newest
            .values()
            .copied()
            .filter(|&i| sources[i].conf.autoinstall_candidate())
            .chain((0..sources.len()).filter(|&i| sources[i].conf.identity().is_err()))
            .collect();
        candidates
            .into_iter()
            .flat_map(|i| kernels.iter().map(move |k| (i, *k)))
            .collect()
    }

    /// Kernels that arrived (their package or their headers): every AUTOINSTALL candidate.
    fn for_new_kernels(&mut self, newest: &BTreeMap<String, usize>) -> Vec<(usize, &'a Kernel)> {
        let inv = self.inv;
        let targeted: BTreeSet<String> = self.req.targets.kernels.keys().cloned().collect();
        for k in &targeted {
            if inv.kernel(k).is_none() && self.wanted_kernel(k) {
                self.out.notes.push(format!(
                    "kernel {k}: no such directory under {}",
                    inv.trees.display(&inv.trees.install)
                ));
            }
        }
        if targeted.is_empty() {
            return Vec::new();
        }
        let kernels = self.buildable_kernels(Some(&targeted));
        self.autoinstall_pairs(newest, &kernels)
    }

    /// Module sources that arrived: built for every kernel.
    fn for_new_sources(&mut self) -> Vec<(usize, &'a Kernel)> {
        let inv = self.inv;
        let targets = &self.req.targets;
        for rel in &targets.sources {
            let dir = inv.trees.root.join(rel);
            if !inv.sources.iter().any(|s| s.dir == dir) {
                self.out.notes.push(format!(
                    "{}: no dkms.conf there, nothing to build",
                    inv.trees.display(&dir)
                ));
            }
        }
        let sources: Vec<usize> = (0..inv.sources.len())
            .filter(|&i| {
                inv.sources[i]
                    .dir
                    .strip_prefix(&inv.trees.root)
                    .is_ok_and(|rel| targets.sources.contains(rel))
            })
            .collect();
        if sources.is_empty() {
            return Vec::new();
        }
        let kernels = self.buildable_kernels(None);
        if kernels.is_empty() {
            if targets.kernels.is_empty() {
                self.out
                    .notes
                    .push("no kernel with headers: nothing to build for".to_string());
            }
            // No kernel to fail it for, but a dkms.conf that cannot be read is still said.
            for &i in &sources {
                if let Err(e) = inv.sources[i].conf.identity() {
                    self.conf_failed(&e, None);
                }
            }
        }
        sources
            .into_iter()
            .flat_map(|i| kernels.iter().map(move |k| (i, *k)))
            .collect()
    }

    /// Decides every wanted pair (and the dependencies they pull in), then emits the jobs.
    fn plan_builds(&mut self, wanted: Vec<(usize, &'a Kernel)>, newest: &BTreeMap<String, usize>) {
        let inv = self.inv;
        let mut pairs: BTreeMap<PairKey, Pair> = BTreeMap::new();
        let mut work = wanted;
        work.reverse(); // popped from the end: keep the wanted order
        let mut seen: BTreeSet<(usize, String)> = BTreeSet::new();
        while let Some((i, k)) = work.pop() {
            if !seen.insert((i, k.release.clone())) {
                continue;
            }
            let conf = match inv.sources[i].conf.result_for(&k.release) {
                Ok(c) => c.clone(),
                Err(e) => {
                    self.conf_failed(&e, Some(&k.release));
                    continue;
                }
            };
            let key = (k.release.clone(), conf.name.clone());
            if let Some(Pair::Build { conf: other, .. }) = pairs.get(&key) {
                // Two versions of one name for one kernel: the newer wins, as dkms would install it.
                if crate::system::version::cmp(&conf.version, &other.version).is_le() {
                    continue;
                }
            }
            let pair = self.pair_state(i, conf, k);
            if let Pair::Build { conf, .. } = &pair {
                // Pull in dependencies that are available but neither planned nor installed.
                for d in &conf.build_depends {
                    let dkey = (k.release.clone(), d.clone());
                    if pairs.contains_key(&dkey) {
                        continue;
                    }
                    if let Some(&j) = newest.get(d) {
                        work.push((j, k));
                    } else if inv.tree.installed(d, &k.release, &inv.arch).is_some() {
                        pairs.insert(dkey, Pair::Present);
                    }
                }
            }
            pairs.insert(key, pair);
        }
        self.resolve(&mut pairs);
        self.emit_builds(&pairs);
    }

    /// One pair on its own: excluded there, already installed, or to build.
    fn pair_state(&mut self, src: usize, conf: DkmsConf, k: &Kernel) -> Pair {
        let subject = format!("{}/{}", conf.name, conf.version);
        let kernel = Some(k.release.as_str());
        // What dkms 3.4.3 refuses before it builds (exit 8, or 5 for a patch; see
        // `DkmsConf::refusals`): a failure naming the file, before any dkms call, even where
        // BUILD_EXCLUSIVE rules the pair out (dkms reads the file strictly first). A pair already
        // installed in this version is left alone, as before: no dkms call is made for it.
        let file = self.inv.trees.display(&self.inv.sources[src].conf.path);
        let file = file.into_owned();
        // `--force`, or a rebuild a stopped run left to do.
        let forced = self.req.force
            || self
                .req
                .rebuild
                .contains(&PairId::new(&conf.name, &conf.version, &k.release));
        let kept = !forced
            && self
                .inv
                .tree
                .installed(&conf.name, &k.release, &self.inv.arch)
                == Some(conf.version.as_str());
        if !conf.refusals.is_empty() && !kept {
            let list: Vec<String> = conf.refusals.iter().map(ToString::to_string).collect();
            let reason = format!("dkms 3.4 refuses it: {}", list.join("; "));
            let why = format!("its dkms.conf is refused ({})", list.join("; "));
            self.decide(file, kernel, Verdict::Fail(reason));
            return Pair::Blocked { why };
        }
        // Excluded there (a skip) or an exclusion that cannot be read (a failure): either way the
        // pair is not built, and its dependents learn why.
        match conf
            .exclusive
            .excludes(&k.release, &self.inv.arch, &k.config)
        {
            Ok(None) => {}
            Ok(Some(reason)) => {
                let why = format!("it is excluded there ({reason})");
                self.decide(subject, kernel, Verdict::Skip(reason));
                return Pair::Blocked { why };
            }
            Err(e) => {
                let why = format!("its dkms.conf is invalid ({e})");
                self.decide(subject, kernel, Verdict::Fail(e));
                return Pair::Blocked { why };
            }
        }
        let installed = self
            .inv
            .tree
            .installed(&conf.name, &k.release, &self.inv.arch);
        if installed == Some(conf.version.as_str()) && !forced {
            self.decide(
                subject,
                kernel,
                Verdict::Skip("already installed".to_string()),
            );
            return Pair::Present;
        }
        // What dkms 3.4.3 warns about when it builds (obsolete directives, no module): a note,
        // said once, for a file that is built.
        for w in &conf.warnings {
            self.out.notes.push(format!("{file}: {w}"));
        }
        Pair::Build {
            src,
            needs: conf.build_depends.iter().cloned().collect(),
            conf: Box::new(conf),
        }
    }

    /// Blocks every pair whose dependencies cannot be met, dependency cycles included, until
    /// nothing changes.
    fn resolve(&mut self, pairs: &mut BTreeMap<PairKey, Pair>) {
        loop {
            while self.block_unmet(pairs) {}
            if !self.block_cycles(pairs) {
                break;
            }
        }
    }

    /// What keeps `needs` from being met on `kernel`, if anything.
    fn unmet(&self, pairs: &BTreeMap<PairKey, Pair>, kernel: &str, d: &str) -> Option<Verdict> {
        let inv = self.inv;
        match pairs.get(&(kernel.to_string(), d.to_string())) {
            Some(Pair::Build { .. } | Pair::Present) => None,
            // Its dependency will not be built: a skip, naming why.
            Some(Pair::Blocked { why }) => Some(Verdict::Skip(format!(
                "needs {d}, which is not built for {kernel}: {why}"
            ))),
            None if inv.tree.installed(d, kernel, &inv.arch).is_some() => None,
            // A dependency nobody provides: this module's own failure.
            None => Some(Verdict::Fail(format!(
                "unknown dependency {d} (BUILD_DEPENDS): no such module in {} or {}",
                inv.trees.display(&inv.trees.source),
                inv.trees.display(&inv.trees.dkms)
            ))),
        }
    }

    /// One pass: blocks the pairs with an unmet dependency. Whether any was blocked.
    fn block_unmet(&mut self, pairs: &mut BTreeMap<PairKey, Pair>) -> bool {
        let mut blocked = Vec::new();
        for ((kernel, name), pair) in pairs.iter() {
            let Pair::Build { conf, needs, .. } = pair else {
                continue;
            };
            let first = needs
                .iter()
                .find_map(|d| self.unmet(pairs, kernel, d).map(|v| (d.clone(), v)));
            if let Some((d, verdict)) = first {
                let subject = format!("{}/{}", conf.name, conf.version);
                blocked.push(((kernel.clone(), name.clone()), subject, d, verdict));
            }
        }
        let any = !blocked.is_empty();
        for (key, subject, d, verdict) in blocked {
            self.decide(subject, Some(&key.0), verdict);
            let why = format!("its dependency {d} cannot be built");
            pairs.insert(key, Pair::Blocked { why });
        }
        any
    }

    /// Fails every pair on a dependency cycle, naming the whole cycle. Whether any was found.
    fn block_cycles(&mut self, pairs: &mut BTreeMap<PairKey, Pair>) -> bool {
        let cycles = find_cycles(pairs);
        for (kernel, cycle) in &cycles {
            let names = cycle.join(" -> ");
            for name in &cycle[..cycle.len() - 1] {
                let key = (kernel.clone(), name.clone());
                if let Some(Pair::Build { conf, .. }) = pairs.get(&key) {
                    let subject = format!("{}/{}", conf.name, conf.version);
                    let verdict = Verdict::Fail(format!("dependency cycle: {names}"));
                    self.decide(subject, Some(kernel), verdict);
                }
                let why = "dependency cycle".to_string();
                pairs.insert(key, Pair::Blocked { why });
            }
        }
        !cycles.is_empty()
    }

    /// The jobs of the pairs left to build, in a stable order (module name, then kernel), with
    /// their dependency edges.
    fn emit_builds(&mut self, pairs: &BTreeMap<PairKey, Pair>) {
        let inv = self.inv;
        let mut keys: Vec<&PairKey> = pairs
            .iter()
            .filter(|(_, p)| matches!(p, Pair::Build { .. }))
            .map(|(k, _)| k)
            .collect();
        keys.sort_by(|a, b| {
            (&a.1, crate::system::version::key(&a.0))
                .cmp(&(&b.1, crate::system::version::key(&b.0)))
        });
        let dependents = self.dependents();
        let ids: BTreeMap<&PairKey, usize> =
            keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
        for key in keys {
            let Some(Pair::Build { src, conf, needs }) = pairs.get(key) else {
                continue;
            };
            let s = &inv.sources[*src];
            let k = inv.kernel(&key.0).expect("planned kernels exist");
            let mut need_ids: Vec<usize> = needs
                .iter()
                .filter_map(|d| ids.get(&(key.0.clone(), d.clone())).copied())
                .collect();
            need_ids.sort();
            let expect = conf
                .built_modules
                .iter()
                .zip(&conf.dest_names)
                .map(|(b, d)| if d.is_empty() { b.clone() } else { d.clone() })
                .collect();
            let shares = dependents.get(&conf.name).cloned().unwrap_or_default();
            // What the store holds for the pair (a build to install, a failure to say again),
            // but under --force, which builds afresh.
            let pair = PairId::new(&conf.name, &conf.version, &k.release);
            let prebuilt = stored(&self.inv.prebuilt, &pair, self.req.force);
            let remembered = stored(&self.inv.remembered, &pair, self.req.force);
            self.out.depmod.insert(k.release.clone());
            self.out.jobs.push(Job {
                id: ids[key],
                info: JobInfo {
                    module: conf.name.clone(),
                    version: conf.version.clone(),
                    kernel: Some(k.release.clone()),
                    action: Action::Build,
                },
                source: Some(s.dir.clone()),
                headers: k.headers.clone(),
                direct: false,
                expect,
                needs: need_ids,
                shares,
                touches: vec![k.release.clone()],
                // What the build took last time beats the guess from the sources.
                cost: match (&prebuilt, &remembered) {
                    (Some(_), _) | (_, Some(_)) => crate::plan::cost::DKMS_CALL,
                    _ => inv
                        .history
                        .took(&conf.name, &k.release)
                        .map_or(s.cost, crate::plan::cost::took),
                },
                prebuilt,
                remembered,
            });
        }
    }

    /// Module name -> the versions (of any module) whose dkms.conf BUILD_DEPENDS on it.
    fn dependents(&self) -> BTreeMap<String, Vec<ModuleVersion>> {
        let mut dependents: BTreeMap<String, Vec<ModuleVersion>> = BTreeMap::new();
        for s in &self.inv.sources {
            let mut seen = BTreeSet::new();
            for c in s.conf.per_kernel.values().flatten() {
                for d in &c.build_depends {
                    if seen.insert(d.clone()) {
                        dependents
                            .entry(d.clone())
                            .or_default()
                            .push(ModuleVersion::new(&c.name, &c.version));
                    }
                }
            }
        }
        dependents
    }

    fn remove(&mut self) {
        let mut jobs: Vec<Job> = Vec::new();
        let mut unregistered: BTreeSet<ModuleVersion> = BTreeSet::new();
        for rel in &self.req.targets.sources {
            let Some(mv) = self.registered_identity(rel) else {
                continue;
            };
            if self.req.kernels.is_empty() {
                unregistered.insert(mv.clone());
                jobs.push(self.unregister_job(rel, mv));
            } else {
                for k in &self.req.kernels {
                    if self.inv.tree.pairs_for_kernel(k).contains(&mv) {
                        jobs.push(self.remove_job(&mv.name, &mv.version, k));
                    }
                }
            }
        }
        self.remove_from_kernels(&unregistered, &mut jobs);
        self.note_dependents_left(&jobs);
        for (i, j) in jobs.iter_mut().enumerate() {
            j.id = i;
            for k in &j.touches {
                self.out.depmod.insert(k.clone());
            }
        }
        self.out.jobs = jobs;
    }

    /// A removal leaves the modules that BUILD_DEPENDS on what it removes installed: dkms-hook
    /// removes what it is told to remove, as dkms does (pacman, which knows the packages'
    /// dependencies, decides whether the dependent's package goes too). A note says so for each
    /// kernel, with how to remove the dependent too. The dependents' dkms.conf files must be in
    /// the inventory: the remove mode reads those of every installed version.
    fn note_dependents_left(&mut self, jobs: &[Job]) {
        let arch = &self.inv.arch;
        let mut removed: BTreeSet<(String, String)> = BTreeSet::new();
        for j in jobs {
            let m = &j.info.module;
            match (&j.info.kernel, j.info.action) {
                (Some(k), _) => {
                    removed.insert((m.clone(), k.clone()));
                }
                (None, _) => {
                    let kernels = self.inv.tree.modules.get(m).into_iter().flat_map(|e| {
                        e.installed
                            .iter()
                            .filter(|(_, v)| **v == j.info.version)
                            .map(|((k, _), _)| k.clone())
                    });
                    removed.extend(kernels.map(|k| (m.clone(), k)));
                }
            }
        }
        let dependents = self.dependents();
        for (m, k) in &removed {
            for dep in dependents.get(m).into_iter().flatten() {
                let (d, dv) = (&dep.name, &dep.version);
                if removed.contains(&(d.clone(), k.clone()))
                    || self.inv.tree.installed(d, k, arch) != Some(dv.as_str())
                {
                    continue;
                }
                let note = format!(
                    "{d}/{dv} stays installed for {k}, but it BUILD_DEPENDS on {m}, removed \
                     there: it may not load without it (`dkms-hook remove {d}/{dv}` removes it too)"
                );
                if !self.out.notes.contains(&note) {
                    self.out.notes.push(note);
                }
            }
        }
    }

    /// Which registered module version a leaving source directory is (from its dkms.conf, else
    /// from the dkms tree's `source` links); `None`, with a note or a failure, when there is
    /// nothing to remove or no telling what.
    fn registered_identity(&mut self, rel: &std::path::Path) -> Option<ModuleVersion> {
        let inv = self.inv;
        let dir = inv.trees.root.join(rel);
        let shown = inv.trees.display(&dir).into_owned();
        let from_conf = inv
            .sources
            .iter()
            .find(|s| s.dir == dir)
            .map(|s| s.conf.identity().map(|(n, v)| ModuleVersion::new(n, v)));
        let mv = match (from_conf, inv.tree.version_for_source(&dir)) {
            (Some(Ok(id)), _) => id,
            (_, Some(id)) => id,
            (Some(Err(e)), None) => {
                let reason = format!("cannot tell which module to remove: {}", e.problem);
                self.decide(shown, None, Verdict::Fail(reason));
                return None;
            }
            (None, None) => {
                self.out.notes.push(format!(
                    "{shown}: not registered with dkms, nothing to remove"
                ));
                return None;
            }
        };
        if inv.tree.version(&mv.name, &mv.version).is_none() {
            self.out.notes.push(format!(
                "{mv} is not registered with dkms, nothing to remove"
            ));
            return None;
        }
        Some(mv)
    }

    /// Whether a kernel's module index is to be updated after a removal: it stays (its package is
    /// not leaving) and its directory is there, whatever else it holds (with or without
    /// modules.order: a stale modules.dep naming a deleted .ko is worse than a fresh one).
    fn keeps_index(&self, kernel: &str) -> bool {
        let leaving = self
            .req
            .targets
            .kernels
            .get(kernel)
            .is_some_and(|t| !t.headers_only);
        !leaving && self.inv.kernel(kernel).is_some()
    }

    /// `dkms remove --all`: the version leaves every kernel and the dkms tree.
    fn unregister_job(&self, rel: &std::path::Path, mv: ModuleVersion) -> Job {
        let ModuleVersion { name, version } = mv;
        let inv = self.inv;
        let built = inv
            .tree
            .version(&name, &version)
            .into_iter()
            .flat_map(|v| v.built.keys().map(|(k, _)| k.clone()));
        let installed = inv.tree.modules[&name]
            .installed
            .iter()
            .filter(|(_, v)| **v == version)
            .map(|((k, _), _)| k.clone());
        let touches: BTreeSet<String> = built
            .chain(installed)
            .filter(|k| self.keeps_index(k))
            .collect();
        Job {
            id: 0,
            info: JobInfo {
                module: name,
                version,
                kernel: None,
                action: Action::Unregister,
            },
            source: Some(inv.trees.root.join(rel)),
            headers: None,
            direct: false,
            expect: Vec::new(),
            needs: Vec::new(),
            shares: Vec::new(),
            touches: touches.into_iter().collect(),
            cost: crate::plan::cost::REMOVE,
            prebuilt: None,
            remembered: None,
        }
    }

    /// Kernels that leave: every module version installed or built there, unless it is being
    /// unregistered anyway. Kernels whose headers alone leave keep their modules.
    fn remove_from_kernels(&mut self, unregistered: &BTreeSet<ModuleVersion>, jobs: &mut Vec<Job>) {
        for (k, target) in &self.req.targets.kernels {
            if !self.wanted_kernel(k) {
                continue;
            }
            let pairs = self.inv.tree.pairs_for_kernel(k);
            if target.headers_only {
                // Only the headers package leaves: the kernel stays and may still boot, and its
                // modules still load. They go when the kernel itself goes (directly, then).
                if !pairs.is_empty() {
                    self.out.notes.push(format!(
                        "kernel {k}: only its headers are going away; its DKMS modules stay \
                         installed (nothing can be rebuilt for it until headers come back)"
                    ));
                }
                continue;
            }
            if pairs.is_empty() {
                self.out
                    .notes
                    .push(format!("kernel {k}: no DKMS modules to remove"));
            }
            for mv in pairs {
                if !unregistered.contains(&mv) {
                    jobs.push(self.remove_job(&mv.name, &mv.version, k));
                }
            }
        }
    }

    /// Removes one version from one kernel: through dkms while the kernel has headers, directly
    /// otherwise.
    fn remove_job(&self, name: &str, version: &str, kernel: &str) -> Job {
        let headers = self.inv.kernel(kernel).and_then(|k| k.headers.clone());
        Job {
            id: 0,
            info: JobInfo {
                module: name.to_string(),
                version: version.to_string(),
                kernel: Some(kernel.to_string()),
                action: Action::RemoveFromKernel,
            },
            source: None,
            direct: headers.is_none(),
            headers,
            expect: Vec::new(),
            needs: Vec::new(),
            shares: Vec::new(),
            touches: if self.keeps_index(kernel) {
                vec![kernel.to_string()]
            } else {
                Vec::new()
            },
            cost: crate::plan::cost::REMOVE,
            prebuilt: None,
            remembered: None,
        }
    }
}

/// Every dependency cycle among planned builds, per kernel, as `a -> b -> a`.
fn find_cycles(pairs: &BTreeMap<(String, String), Pair>) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut done: BTreeSet<(String, String)> = BTreeSet::new();
    for start in pairs.keys() {
        if done.contains(start) {
            continue;
        }
        // Iterative DFS keeping the current path.
        let mut path: Vec<(String, String)> = Vec::new();
        let mut stack: Vec<((String, String), bool)> = vec![(start.clone(), false)];
        while let Some((node, leaving)) = stack.pop() {
            if leaving {
                path.pop();
                done.insert(node);
                continue;
            }
            if done.contains(&node) {
                continue;
            }
            if let Some(pos) = path.iter().position(|n| *n == node) {
                let mut cycle: Vec<String> = path[pos..].iter().map(|(_, n)| n.clone()).collect();
                cycle.push(node.1.clone());
                if !out
                    .iter()
                    .any(|(k, c): &(String, Vec<String>)| *k == node.0 && same_cycle(c, &cycle))
                {
                    out.push((node.0.clone(), cycle));
                }
                continue;
            }
            let Some(Pair::Build { needs, .. }) = pairs.get(&node) else {
                done.insert(node);
                continue;
            };
            path.push(node.clone());
            stack.push((node.clone(), true));
            for d in needs.iter().rev() {
                stack.push(((node.0.clone(), d.clone()), false));
            }
        }
    }
    out
}

fn same_cycle(a: &[String], b: &[String]) -> bool {
    let sa: BTreeSet<&String> = a.iter().collect();
    let sb: BTreeSet<&String> = b.iter().collect();
    sa == sb
}

impl Plan {
    /// Whether the planner alone already failed something.
    pub fn has_failures(&self) -> bool {
        !self.failed.is_empty()
    }
}

/// What `held` has for `pair`, unless `force` (which builds afresh).
fn stored<T: Clone>(held: &BTreeMap<PairId, T>, pair: &PairId, force: bool) -> Option<T> {
    match force {
        true => None,
        false => held.get(pair).cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkmsconf::exclusive::Exclusive;
    use crate::dkmsconf::rules::{ConfError, Problem};
    use crate::dkmsconf::Evaluated;
    use crate::plan::inventory::Source;
    use crate::system::dkms_tree::{DkmsTree, VersionEntry};
    use crate::system::kernel::KernelConfig;
    use crate::system::trees::Trees;
    use std::path::Path;
    use std::time::Duration;

    const K1: &str = "6.1.0-55-amd64";
    const K2: &str = "6.1.0-56-amd64";

    /// A synthetic system: nothing here exists on disk.
    struct Sys {
        inv: Inventory,
    }

    fn conf(name: &str, version: &str) -> DkmsConf {
        DkmsConf {
            name: name.into(),
            version: version.into(),
            autoinstall: true,
            built_modules: vec![name.into()],
            dest_names: vec![String::new()],
            ..Default::default()
        }
    }

    impl Sys {
        fn new(kernels: &[&str]) -> Sys {
            let trees = Trees::defaults(Path::new("/r"));
            let kernels = kernels
                .iter()
                .map(|k| Kernel {
                    release: k.to_string(),
                    dir: trees.kernel_dir(k),
                    headers: Some(trees.kernel_dir(k).join("build")),
                    config: KernelConfig::parse("CONFIG_ACPI=y\nCONFIG_USB=m\n"),
                })
                .collect();
            Sys {
                inv: Inventory {
                    tree: DkmsTree::default(),
                    trees,
                    arch: "x86_64".into(),
                    kernels,
                    sources: vec![],
                    prebuilt: Default::default(),
                    remembered: Default::default(),
                    history: Default::default(),
                },
            }
        }
        fn headerless(mut self, k: &str) -> Sys {
            self.inv.kernels.push(Kernel {
                release: k.into(),
                dir: self.inv.trees.kernel_dir(k),
                headers: None,
                config: KernelConfig::default(),
            });
            self
        }
        /// A source whose dkms.conf gives `c` for every kernel, after `edit(kernel, &mut c)`.
        fn source_with(
            mut self,
            dir: &str,
            c: DkmsConf,
            edit: impl Fn(&str, &mut DkmsConf),
        ) -> Sys {
            let d = self.inv.trees.source.join(dir);
            let per_kernel = self
                .inv
                .kernels
                .iter()
                .filter(|k| k.headers.is_some())
                .map(|k| {
                    let mut c = c.clone();
                    edit(&k.release, &mut c);
                    (k.release.clone(), Ok(c))
                })
                .collect();
            self.inv.sources.push(Source {
                conf: Evaluated {
                    path: d.join("dkms.conf"),
                    per_kernel,
                    error: None,
                },
                dir: d,
                cost: 10,
            });
            self
        }
        fn source(self, name: &str, version: &str) -> Sys {
            self.source_with(&format!("{name}-{version}"), conf(name, version), |_, _| {})
        }
        fn broken(mut self, dir: &str) -> Sys {
            let d = self.inv.trees.source.join(dir);
            self.inv.sources.push(Source {
                conf: Evaluated {
                    path: d.join("dkms.conf"),
                    per_kernel: BTreeMap::new(),
                    error: Some(ConfError {
                        path: d.join("dkms.conf"),
                        problem: Problem::Syntax {
                            message: "line 3: syntax error: unexpected end of file".into(),
                        },
                    }),
                },
                dir: d,
                cost: crate::plan::cost::REMOVE,
            });
            self
        }
        /// A source whose dkms.conf gives no directives for any kernel: `problem` for each.
        fn unreadable(mut self, dir: &str, problem: Problem) -> Sys {
            let d = self.inv.trees.source.join(dir);
            let path = d.join("dkms.conf");
            let per_kernel = self
                .inv
                .kernels
                .iter()
                .filter(|k| k.headers.is_some())
                .map(|k| {
                    let e = ConfError {
                        path: path.clone(),
                        problem: problem.clone(),
                    };
                    (k.release.clone(), Err(e))
                })
                .collect();
            self.inv.sources.push(Source {
                conf: Evaluated {
                    path,
                    per_kernel,
                    error: None,
                },
                dir: d,
                cost: crate::plan::cost::REMOVE,
            });
            self
        }
        fn installed(mut self, name: &str, version: &str, kernels: &[&str]) -> Sys {
            let src = self.inv.trees.source.join(format!("{name}-{version}"));
            let m = self.inv.tree.modules.entry(name.into()).or_default();
            let v = m
                .versions
                .entry(version.into())
                .or_insert_with(|| VersionEntry {
                    source: Some(src),
                    built: BTreeMap::new(),
                });
            for k in kernels {
                v.built.insert((k.to_string(), "x86_64".into()), vec![]);
                m.installed
                    .insert((k.to_string(), "x86_64".into()), version.into());
            }
            self
        }
        fn plan(&self, mode: Mode, targets: &str) -> Plan {
            self.plan_with(mode, targets, false)
        }
        fn plan_with(&self, mode: Mode, targets: &str, force: bool) -> Plan {
            let req = Request {
                mode,
                targets: Targets::parse(
                    targets.as_bytes(),
                    Path::new("usr/src"),
                    Path::new("usr/lib/modules"),
                ),
                kernels: vec![],
                force,
                rebuild: Default::default(),
            };
            plan(&req, &self.inv)
        }
    }

    fn jobs(p: &Plan) -> Vec<String> {
        crate::plan::queue::serial_order(&p.jobs)
            .into_iter()
            .map(|i| {
                format!(
                    "{} {}",
                    p.jobs[i].info.action.verb(),
                    p.jobs[i].info.label()
                )
            })
            .collect()
    }

    fn reasons(d: &[Decision]) -> Vec<String> {
        d.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn new_module_is_built_for_every_kernel_with_headers() {
        let s = Sys::new(&[K1, K2])
            .headerless("6.0.0-old")
            .source("vpoll", "0.1")
            .source("other", "1.0");
        let p = s.plan(Mode::Install, "usr/src/vpoll-0.1/dkms.conf\n");
        assert_eq!(
            jobs(&p),
            [
                format!("build vpoll/0.1 for {K1}"),
                format!("build vpoll/0.1 for {K2}")
            ]
        );
        assert_eq!(p.depmod, BTreeSet::from([K1.to_string(), K2.to_string()]));
        assert!(
            p.notes[0].contains("6.0.0-old has no headers"),
            "{:?}",
            p.notes
        );
        assert!(p.failed.is_empty() && p.skipped.is_empty());
    }

    #[test]
    fn a_build_that_took_longest_last_time_starts_first_whatever_its_sources_say() {
        let mut s = Sys::new(&[K1])
            .source("wide", "1.0")
            .source("slow", "1.0")
            .source("small", "1.0");
        s.inv.sources[0].cost = 1_000_000; // 1 MB of C, built in seconds
        s.inv.sources[1].cost = 60_000; // a small source with a long serial configure
        let order = |s: &Sys| jobs(&s.plan(Mode::All, ""));
        let build = |m: &str| format!("build {m}/1.0 for {K1}");
        assert_eq!(order(&s), [build("wide"), build("slow"), build("small")]);
        // What the builds took last time, on an older kernel of K1's series.
        let older = K1.replacen("-55-", "-47-", 1);
        assert_ne!(older, K1);
        s.inv.history.learn("wide", &older, Duration::from_secs(4));
        s.inv
            .history
            .learn("slow", &older, Duration::from_secs(300));
        assert_eq!(order(&s), [build("slow"), build("wide"), build("small")]);
    }

    #[test]
    fn a_history_file_that_does_not_read_is_said() {
        let mut s = Sys::new(&[K1]).source("wide", "1.0");
        s.inv.history.warning = Some("/var/lib/dkms-hook/build-times: line 2: ...: ignored".into());
        let p = s.plan(Mode::All, "");
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("build-times") && n.contains("ignored")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn identity_comes_from_dkms_conf_not_the_directory_name() {
        let s = Sys::new(&[K1]).source_with(
            "foo-bar-1.2-rc3-7",
            conf("foo-bar", "1.2-rc3-7"),
            |_, _| {},
        );
        let p = s.plan(Mode::Install, "usr/src/foo-bar-1.2-rc3-7/dkms.conf\n");
        assert_eq!(jobs(&p), [format!("build foo-bar/1.2-rc3-7 for {K1}")]);
    }

    #[test]
    fn new_kernel_gets_newest_autoinstall_version_of_each_module() {
        let s = Sys::new(&[K1, K2])
            .source("zfs", "2.2.9")
            .source("zfs", "2.2.10")
            .source_with("manual-1", conf("manual", "1"), |_, c| {
                c.autoinstall = false
            })
            .installed("zfs", "2.2.10", &[K1]);
        let p = s.plan(
            Mode::Install,
            &format!("usr/lib/modules/{K2}/modules.order\n"),
        );
        assert_eq!(jobs(&p), [format!("build zfs/2.2.10 for {K2}")]);
        assert_eq!(p.depmod, BTreeSet::from([K2.to_string()]));
    }

    #[test]
    fn installed_pairs_are_left_alone_unless_forced() {
        let s = Sys::new(&[K1, K2])
            .source("vpoll", "0.1")
            .installed("vpoll", "0.1", &[K1]);
        let p = s.plan(Mode::All, "");
        assert_eq!(jobs(&p), [format!("build vpoll/0.1 for {K2}")]);
        assert_eq!(
            reasons(&p.skipped),
            [format!("vpoll/0.1 for {K1}: already installed")]
        );
        let p = s.plan_with(Mode::All, "", true);
        assert_eq!(p.jobs.len(), 2);
    }

    #[test]
    fn build_exclusive_directives_are_decided_per_kernel() {
        let ex = |f: fn(&mut Exclusive)| {
            let mut c = conf("m", "1");
            f(&mut c.exclusive);
            c
        };
        let cases: Vec<(DkmsConf, Option<&str>)> = vec![
            (
                ex(|e| e.kernel = Some("^6\\.1\\.0-56".into())),
                Some("BUILD_EXCLUSIVE_KERNEL"),
            ),
            (
                ex(|e| e.kernel_min = Some("6.1.0-56".into())),
                Some("BUILD_EXCLUSIVE_KERNEL_MIN"),
            ),
            (ex(|e| e.kernel_max = Some("6.1.0-55-amd64".into())), None),
            (
                ex(|e| e.kernel_max = Some("6.0".into())),
                Some("BUILD_EXCLUSIVE_KERNEL_MAX"),
            ),
            (
                ex(|e| e.arch = Some("^aarch64$".into())),
                Some("BUILD_EXCLUSIVE_ARCH"),
            ),
            (ex(|e| e.arch = Some("x86_64|i686".into())), None),
            (
                ex(|e| e.config = vec!["CONFIG_ACPI".into(), "CONFIG_USB".into()]),
                None,
            ),
            (
                ex(|e| e.config = vec!["CONFIG_I2C".into()]),
                Some("CONFIG_I2C is not enabled"),
            ),
            (
                ex(|e| e.config = vec!["!CONFIG_ACPI".into()]),
                Some("CONFIG_ACPI is enabled"),
            ),
        ];
        for (c, want) in cases {
            let s = Sys::new(&[K1]).source_with("m-1", c.clone(), |_, _| {});
            let p = s.plan(Mode::All, "");
            match want {
                None => assert_eq!(p.jobs.len(), 1, "{c:?}: {:?}", p.skipped),
                Some(w) => {
                    assert!(p.jobs.is_empty(), "{c:?}");
                    assert!(p.skipped[0].reason.contains(w), "{w}: {:?}", p.skipped);
                    assert!(p.failed.is_empty());
                }
            }
        }
        // An invalid regex is a failure of that module, not a panic.
        let s = Sys::new(&[K1]).source_with("m-1", ex(|e| e.kernel = Some("(".into())), |_, _| {});
        let p = s.plan(Mode::All, "");
        assert!(
            p.failed[0]
                .reason
                .contains("not a valid regular expression"),
            "{:?}",
            p.failed
        );
    }

    #[test]
    fn exclusion_can_differ_between_kernels() {
        // Like Debian's v4l2loopback: the dkms.conf itself decides from each kernel's config.
        let s = Sys::new(&[K1, K2]).source_with("v4l2-1", conf("v4l2", "1"), |k, c| {
            if k == K2 {
                c.exclusive.kernel = Some("REQUIRES CONFIG_VIDEO_DEV".into());
            }
        });
        let p = s.plan(Mode::All, "");
        assert_eq!(jobs(&p), [format!("build v4l2/1 for {K1}")]);
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].kernel.as_deref(), Some(K2));
    }

    #[test]
    fn build_depends_orders_jobs_per_kernel_and_pulls_in_dependencies() {
        let mut zfs = conf("zfs", "2.2");
        zfs.build_depends = vec!["spl".into()];
        let s = Sys::new(&[K1, K2])
            .source_with("zfs-2.2", zfs, |_, _| {})
            .source("spl", "2.2")
            .installed("spl", "2.2", &[K1]);
        // Only zfs arrives; spl is installed on K1 but not K2, so it is pulled in there.
        let p = s.plan(Mode::Install, "usr/src/zfs-2.2/dkms.conf\n");
        let j = jobs(&p);
        assert_eq!(j.len(), 3, "{j:?}");
        let pos = |s: &str| j.iter().position(|x| x == s).unwrap();
        assert!(pos(&format!("build spl/2.2 for {K2}")) < pos(&format!("build zfs/2.2 for {K2}")));
        let zfs2 = p
            .jobs
            .iter()
            .find(|j| j.info.module == "zfs" && j.info.kernel.as_deref() == Some(K2))
            .unwrap();
        assert_eq!(zfs2.needs.len(), 1);
        let zfs1 = p
            .jobs
            .iter()
            .find(|j| j.info.module == "zfs" && j.info.kernel.as_deref() == Some(K1))
            .unwrap();
        assert!(zfs1.needs.is_empty(), "spl is already installed for K1");
        // The dependency starts before unrelated work: its priority counts what waits on it.
        let spl2 = p.jobs.iter().find(|j| j.info.module == "spl").unwrap();
        // dkms 3.2+ may rebuild zfs itself when spl is installed: spl's job holds zfs's build dir.
        assert_eq!(spl2.shares, [ModuleVersion::new("zfs", "2.2")]);
        assert_eq!(Node::from(spl2).groups, ["spl/2.2", "zfs/2.2"]);
    }

    #[test]
    fn unknown_dependencies_and_cycles_fail_with_names() {
        let mut a = conf("a", "1");
        a.build_depends = vec!["b".into()];
        let mut b = conf("b", "1");
        b.build_depends = vec!["a".into()];
        let mut c = conf("c", "1");
        c.build_depends = vec!["nosuch".into()];
        let mut d = conf("d", "1");
        d.build_depends = vec!["c".into()];
        let s = Sys::new(&[K1])
            .source_with("a-1", a, |_, _| {})
            .source_with("b-1", b, |_, _| {})
            .source_with("c-1", c, |_, _| {})
            .source_with("d-1", d, |_, _| {})
            .source("ok", "1");
        let p = s.plan(Mode::All, "");
        assert_eq!(jobs(&p), [format!("build ok/1 for {K1}")]);
        let failed = reasons(&p.failed);
        assert!(
            failed.iter().any(|f| f.contains("a/1")
                && f.contains("dependency cycle")
                && f.contains("a -> b -> a")
                || f.contains("b -> a -> b")),
            "{failed:?}"
        );
        assert!(
            failed
                .iter()
                .any(|f| f.starts_with("c/1") && f.contains("unknown dependency nosuch")),
            "{failed:?}"
        );
        let skipped = reasons(&p.skipped);
        assert!(
            skipped
                .iter()
                .any(|f| f.starts_with("d/1") && f.contains("needs c")),
            "{skipped:?}"
        );
    }

    #[test]
    fn broken_dkms_conf_fails_alone() {
        let s = Sys::new(&[K1]).broken("bad-1").source("good", "1");
        let p = s.plan(Mode::All, "");
        assert_eq!(jobs(&p), [format!("build good/1 for {K1}")]);
        assert_eq!(p.failed.len(), 1);
        assert!(
            p.failed[0].subject.ends_with("/usr/src/bad-1/dkms.conf"),
            "{:?}",
            p.failed
        );
        assert!(p.failed[0].reason.contains("syntax error"));
    }

    #[test]
    fn removing_a_module_unregisters_it_and_depmods_its_kernels() {
        let s = Sys::new(&[K1, K2])
            .source("vpoll", "0.1")
            .installed("vpoll", "0.1", &[K1, K2]);
        let p = s.plan(Mode::Remove, "usr/src/vpoll-0.1/dkms.conf\n");
        assert_eq!(jobs(&p), ["remove vpoll/0.1 on every kernel"]);
        assert_eq!(p.depmod, BTreeSet::from([K1.to_string(), K2.to_string()]));
        // Unknown to dkms: nothing to do, said once.
        let s = Sys::new(&[K1]).source("vpoll", "0.1");
        let p = s.plan(Mode::Remove, "usr/src/vpoll-0.1/dkms.conf\n");
        assert!(p.jobs.is_empty());
        assert!(p.notes[0].contains("not registered"), "{:?}", p.notes);
    }

    #[test]
    fn removing_a_kernel_removes_every_pair_directly_when_headers_are_gone() {
        let mut s = Sys::new(&[K1])
            .installed("a", "1", &[K1, "6.0.9-gone"])
            .installed("b", "2", &["6.0.9-gone"]);
        s = s.headerless("6.0.9-gone");
        let p = s.plan(Mode::Remove, "usr/lib/modules/6.0.9-gone/modules.order\n");
        assert_eq!(
            jobs(&p),
            ["remove a/1 for 6.0.9-gone", "remove b/2 for 6.0.9-gone"]
        );
        assert!(p.jobs.iter().all(|j| j.direct));
        assert!(p.depmod.is_empty(), "a kernel that leaves gets no depmod");
        let p = s.plan(
            Mode::Remove,
            &format!("usr/lib/modules/{K1}/modules.order\n"),
        );
        assert_eq!(jobs(&p), [format!("remove a/1 for {K1}")]);
        assert!(
            !p.jobs[0].direct,
            "K1 still has its headers: dkms removes it"
        );
    }

    #[test]
    fn removing_only_a_kernels_headers_keeps_its_modules() {
        // The kernel stays and may still boot: its modules must stay too.
        let s = Sys::new(&[K1, K2]).installed("a", "1", &[K1, K2]);
        let p = s.plan(
            Mode::Remove,
            &format!("usr/lib/modules/{K1}/build/include/\n"),
        );
        assert!(p.jobs.is_empty(), "{:?}", jobs(&p));
        assert!(p.notes[0].contains("only its headers"), "{:?}", p.notes);
        // Headers and kernel in one transaction: the kernel goes, so do its modules.
        let p = s.plan(
            Mode::Remove,
            &format!("usr/lib/modules/{K1}/build/include/\nusr/lib/modules/{K1}/vmlinuz\n"),
        );
        assert_eq!(jobs(&p), [format!("remove a/1 for {K1}")]);
    }

    /// Defect: an empty dkms.conf, or one that ends in `exit 3`, was left out without a word
    /// when a new kernel arrived (or with no command), and the run succeeded.
    #[test]
    fn an_unreadable_autoinstall_candidate_fails_for_each_kernel() {
        let empty = Problem::Missing {
            directive: "PACKAGE_NAME",
        };
        let exits = Problem::Aborted {
            output: String::new(),
        };
        let s = Sys::new(&[K1, K2])
            .unreadable("empty-1", empty)
            .unreadable("exits-1", exits)
            .source("good", "1");
        let new_kernel = format!("usr/lib/modules/{K2}/modules.order\n");
        for (mode, targets, kernels) in [
            (Mode::All, "", vec![K1, K2]),
            (Mode::Install, new_kernel.as_str(), vec![K2]),
        ] {
            let p = s.plan(mode, targets);
            let mut want = Vec::new();
            for dir in ["empty-1", "exits-1"] {
                for k in &kernels {
                    want.push(format!("/usr/src/{dir}/dkms.conf for {k}"));
                }
            }
            let mut got: Vec<String> = p
                .failed
                .iter()
                .map(|d| format!("{} for {}", d.subject, d.kernel.as_deref().unwrap_or("-")))
                .collect();
            got.sort();
            assert_eq!(got, want, "{mode:?}");
            assert!(p.has_failures());
            assert_eq!(
                p.jobs.len(),
                kernels.len(),
                "the good module is still built"
            );
        }
        // A module that evaluates and does not ask for AUTOINSTALL stays out, silently.
        let s = Sys::new(&[K1]).source_with("manual-1", conf("manual", "1"), |_, c| {
            c.autoinstall = false
        });
        let p = s.plan(Mode::All, "");
        assert!(p.jobs.is_empty() && p.failed.is_empty());
    }

    /// Defects: the planner checked modules.order on the disk, and skipped depmod where it was
    /// missing, leaving a modules.dep that names a deleted .ko. Every kernel that stays is depmodded.
    #[test]
    fn depmod_after_removal_on_every_kernel_that_stays() {
        let s = Sys::new(&[K1, K2]).installed("a", "1", &[K1, K2]);
        let p = s.plan(Mode::Remove, "usr/src/a-1/dkms.conf\n");
        assert_eq!(p.depmod, BTreeSet::from([K1.to_string(), K2.to_string()]));
    }

    /// What dkms 3.4.3 refuses before a build fails the pair before any dkms call, naming the
    /// file, and skips its dependents; what it only warns about is a note, said once.
    #[test]
    fn a_dkms_conf_that_dkms_refuses_fails_before_any_build_and_names_the_file() {
        use crate::dkmsconf::rules::Refusal;
        let s = Sys::new(&[K1, K2])
            .source_with("dup-1", conf("dup", "1"), |_, c| {
                c.refusals = vec![Refusal::DuplicateDest {
                    name: "x".into(),
                    indices: vec![0, 1],
                }];
            })
            .source_with("user-1", conf("user", "1"), |_, c| {
                c.build_depends = vec!["dup".into()];
            })
            .source_with("old-1", conf("old", "1"), |_, c| {
                c.warnings = vec!["REMAKE_INITRD is deprecated: dkms 3.x ignores it".into()];
            });
        let p = s.plan(
            Mode::Install,
            "usr/src/dup-1/dkms.conf\nusr/src/user-1/dkms.conf\nusr/src/old-1/dkms.conf\n",
        );
        assert_eq!(
            jobs(&p),
            [
                format!("build old/1 for {K1}"),
                format!("build old/1 for {K2}")
            ]
        );
        let failed = reasons(&p.failed);
        assert_eq!(failed.len(), 2, "{failed:#?}");
        for (f, k) in failed.iter().zip([K1, K2]) {
            assert!(
                f.starts_with(&format!(
                    "/usr/src/dup-1/dkms.conf for {k}: dkms 3.4 refuses it: "
                )),
                "{f}"
            );
            assert!(f.contains("2 modules are installed as \"x\""), "{f}");
        }
        let skipped = reasons(&p.skipped);
        assert!(
            skipped
                .iter()
                .all(|s| s.starts_with("user/1") && s.contains("needs dup")),
            "{skipped:#?}"
        );
        assert_eq!(
            p.notes,
            ["/usr/src/old-1/dkms.conf: REMAKE_INITRD is deprecated: dkms 3.x ignores it"]
        );
        // Installed already (by an older dkms that took the file): left alone, no dkms call.
        let s = s.installed("dup", "1", &[K1]);
        let p = s.plan(Mode::All, "");
        assert_eq!(
            reasons(&p.failed),
            [format!(
                "/usr/src/dup-1/dkms.conf for {K2}: dkms 3.4 refuses it: 2 modules are installed \
                 as \"x\" (modules #0, #1; DEST_MODULE_NAME, or BUILT_MODULE_NAME where unset): \
                 one would overwrite the other"
            )]
        );
    }

    /// Defect: one target line that was not UTF-8 failed the run; now it is a note and the rest
    /// is planned.
    #[test]
    fn skipped_target_lines_are_notes_of_the_plan() {
        let s = Sys::new(&[K1]).source("good", "1");
        let req = Request {
            mode: Mode::Install,
            targets: Targets::parse(
                b"usr/src/bad\xff-1/dkms.conf\nusr/src/good-1/dkms.conf\n",
                Path::new("usr/src"),
                Path::new("usr/lib/modules"),
            ),
            kernels: vec![],
            force: false,
            rebuild: Default::default(),
        };
        let p = plan(&req, &s.inv);
        assert_eq!(jobs(&p), [format!("build good/1 for {K1}")]);
        assert_eq!(
            p.notes,
            [r#"target line 1 skipped: "usr/src/bad\xff-1/dkms.conf" is not valid UTF-8"#]
        );
    }
}

#[cfg(test)]
mod newest_only {
    //! The inventory that evaluates older versions for one kernel only
    //! ([`Depth::Newest`]) against the one that evaluates everything.
    use super::*;
    use crate::plan::inventory::{Depth, SourceSelection};
    use crate::system::trees::Trees;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::{Path, PathBuf};

    const MODULE: &str = "BUILT_MODULE_NAME[0]=m\nDEST_MODULE_LOCATION[0]=/updates/dkms\n";
    const KERNELS: [&str; 3] = ["6.1.0-50-amd64", "6.1.0-51-amd64", "6.1.0-52-amd64"];

    /// A system where what the newest-only inventory leaves out could change a plan if it were
    /// read: older versions with logic (installed, AUTOINSTALL where the newest is not, excluded
    /// on some kernels, BUILD_DEPENDS), a file that fails for the first kernel only, one with a
    /// syntax error, a kernel without headers.
    fn system() -> (tempfile::TempDir, Trees) {
        let d = tempfile::tempdir().unwrap();
        let trees = Trees::defaults(d.path());
        for (i, k) in KERNELS.iter().enumerate() {
            let build = trees.install.join(k).join("build");
            fs::create_dir_all(&build).unwrap();
            fs::write(build.join("Makefile"), "").unwrap();
            let opt = if i % 2 == 0 { "y" } else { "n" };
            fs::write(build.join(".config"), format!("CONFIG_FOO={opt}\n")).unwrap();
        }
        fs::create_dir_all(trees.install.join("6.1.0-49-amd64/kernel")).unwrap();
        let logic = |name: &str, version: &str, extra: &str| {
            format!(
                "PACKAGE_NAME={name}\nPACKAGE_VERSION={version}\nBUILT_MODULE_NAME[0]={name}\n\
                 DEST_MODULE_LOCATION[0]=/updates/dkms\nif grep -q '^CONFIG_FOO=y' \"$kernel_source_dir/.config\"; then\n  \
                 AUTOINSTALL=yes\nelse\n  BUILD_EXCLUSIVE_CONFIG=CONFIG_FOO\nfi\n{extra}"
            )
        };
        let confs = [
            ("a-1.0", logic("a", "1.0", "")),
            (
                "a-1.5",
                format!("PACKAGE_NAME=a\nPACKAGE_VERSION=1.5\nAUTOINSTALL=yes\n{MODULE}"),
            ),
            ("a-2.0", logic("a", "2.0", "")),
            ("b-0.9", logic("b", "0.9", "BUILD_DEPENDS=(c)\n")),
            ("b-1.0", logic("b", "1.0", "BUILD_DEPENDS=(a)\n")),
            (
                "c-1.0",
                logic("c", "1.0", "[[ $kernelver == *-50-* ]] && exit 3\n"),
            ),
            ("c-0.1", logic("c", "0.1", "")),
            ("d-1.0", "PACKAGE_NAME=d\nif then\n".into()),
            (
                "e-1.0",
                format!(
                    "PACKAGE_NAME=e\nPACKAGE_VERSION=1.0\nAUTOINSTALL=yes\n{MODULE}\
                     [[ $kernelver == *-52-* ]] && AUTOINSTALL=\n"
                ),
            ),
            ("e-0.5", logic("e", "0.5", "AUTOINSTALL=yes\n")),
        ];
        for (dir, text) in confs {
            let src = trees.source.join(dir);
            fs::create_dir_all(&src).unwrap();
            fs::write(src.join("dkms.conf"), text).unwrap();
        }
        // a/1.0 and b/0.9 installed for the first kernel, as an older version.
        for (m, v) in [("a", "1.0"), ("b", "0.9")] {
            let k = KERNELS[0];
            let built = trees.dkms.join(m).join(v).join(k).join("x86_64/module");
            fs::create_dir_all(&built).unwrap();
            fs::write(built.join(format!("{m}.ko")), "").unwrap();
            symlink(
                trees.source.join(format!("{m}-{v}")),
                trees.dkms.join(m).join(v).join("source"),
            )
            .unwrap();
            symlink(
                format!("{v}/{k}/x86_64"),
                trees.dkms.join(m).join(format!("kernel-{k}-x86_64")),
            )
            .unwrap();
        }
        (d, trees)
    }

    fn request(mode: Mode, targets: &str) -> Request {
        Request {
            mode,
            targets: Targets::parse(
                targets.as_bytes(),
                Path::new("usr/src"),
                Path::new("usr/lib/modules"),
            ),
            kernels: vec![],
            force: false,
            rebuild: Default::default(),
        }
    }

    /// Issue 18: the install plans read only the newest version of each name for every kernel
    /// (and what the targets bring): the whole plan is the one the inventory that evaluates
    /// every file for every kernel gives, for every kind of request.
    #[test]
    fn the_newest_only_inventory_plans_what_the_whole_one_plans() {
        let (_d, trees) = system();
        let every = Inventory::load(&trees, "x86_64", &SourceSelection::All, Depth::Every);
        let requests = [
            (Mode::All, String::new()),
            (
                Mode::Install,
                format!("usr/lib/modules/{}/build/include/\n", KERNELS[2]),
            ),
            (Mode::Install, "usr/src/a-1.0/dkms.conf\n".into()),
            (Mode::Install, "usr/src/b-0.9/dkms.conf\n".into()),
            (Mode::Install, "usr/src/c-0.1/dkms.conf\n".into()),
            (
                Mode::Install,
                format!(
                    "usr/src/e-0.5/dkms.conf\nusr/lib/modules/{}/build/include/\n",
                    KERNELS[1]
                ),
            ),
        ];
        let mut lighter = 0;
        for (mode, targets) in requests {
            let req = request(mode, &targets);
            let wanted: BTreeSet<PathBuf> = req
                .targets
                .sources
                .iter()
                .map(|s| trees.root.join(s))
                .collect();
            let newest = Inventory::load(
                &trees,
                "x86_64",
                &SourceSelection::All,
                Depth::Newest(&wanted),
            );
            let whole = plan(&req, &every);
            assert!(
                !whole.jobs.is_empty() || !whole.failed.is_empty(),
                "{mode:?} {targets:?}: the plan does something"
            );
            assert_eq!(plan(&req, &newest), whole, "{mode:?} {targets:?}");
            let evaluated = |inv: &Inventory| -> usize {
                inv.sources.iter().map(|s| s.conf.per_kernel.len()).sum()
            };
            assert!(evaluated(&newest) <= evaluated(&every));
            if evaluated(&newest) < evaluated(&every) {
                lighter += 1;
            }
            // What a request names by hand is resolved later and completed then.
            let mut completed = newest.clone();
            completed.complete(&every.sources.iter().map(|s| s.dir.clone()).collect());
            assert_eq!(completed, every, "{mode:?} {targets:?}: completed");
        }
        assert!(
            lighter > 0,
            "the older versions with logic were not left out"
        );
    }
}
