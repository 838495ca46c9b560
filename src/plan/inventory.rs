//! Inventory: everything planning needs to know about one system, read once.
//!
//! Kernels (with or without headers), module sources (each dkms.conf evaluated per kernel), the
//! dkms tree, and the build times of earlier runs. Reading happens here; the planner only looks
//! at this value, so it can be tested on synthetic inventories and never touches the disk it
//! describes.

use crate::dkmsconf::{self, Context, Evaluated};
use crate::system::dkms_tree::{DkmsTree, PairId};
use crate::system::kernel::Kernel;
use crate::system::trees::Trees;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// One module source directory with its evaluated dkms.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `source_tree/NAME-VERSION`.
    pub dir: PathBuf,
    pub conf: Evaluated,
    /// A rough cost of one build (see [`crate::plan::cost::build`]), so long builds start first.
    pub cost: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub trees: Trees,
    pub arch: String,
    /// Every kernel directory, sorted by version; those without headers too.
    pub kernels: Vec<Kernel>,
    pub sources: Vec<Source>,
    pub tree: DkmsTree,
    /// Pair -> a build the preflight made from the same inputs (see
    /// [`crate::system::prebuilt`]), ready to install.
    pub prebuilt: BTreeMap<PairId, PathBuf>,
    /// Pair -> the failure the store remembers for a build of the same inputs; loaded only by a
    /// trial that says it again instead of compiling ([`Inventory::load_remembered`]).
    pub remembered: BTreeMap<PairId, crate::system::prebuilt::Failure>,
    /// What each module's builds took in earlier runs, per kernel series: beats the guess
    /// from the sources ([`crate::plan::cost::took`]).
    pub history: crate::system::history::History,
}

/// Which module sources are evaluated for every kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth<'a> {
    /// Every source: what reads every version's directives (a removal's dependents, orphans,
    /// keep-old).
    Every,
    /// The newest version of each module name, the sources in the set (directories: what the
    /// targets bring) and every source whose name and version are unknown; every other source
    /// only for the kernel that gives its identity. That is all an install plan reads (a
    /// kernel gets the newest version of each name, BUILD_DEPENDS pulls in the newest), and
    /// it saves sourcing the older versions' files with logic once per kernel.
    /// [`Inventory::complete`] evaluates more, for a source resolved later.
    Newest(&'a BTreeSet<PathBuf>),
}

/// Which module sources to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSelection {
    /// Every `source_tree/*/dkms.conf`.
    All,
    /// Only these directories.
    Only(BTreeSet<PathBuf>),
}

impl Inventory {
    pub fn load(trees: &Trees, arch: &str, selection: &SourceSelection, depth: Depth) -> Inventory {
        let kernels = Kernel::scan(&trees.install);
        let dirs: Vec<PathBuf> = match selection {
            SourceSelection::All => source_dirs(&trees.source),
            SourceSelection::Only(set) => set
                .iter()
                .filter(|d| d.join("dkms.conf").is_file())
                .cloned()
                .collect(),
        };
        let contexts = contexts(trees, &kernels);
        let confs: Vec<PathBuf> = dirs.iter().map(|d| d.join("dkms.conf")).collect();
        let evaluated = match depth {
            Depth::Every => dkmsconf::evaluate(&confs, &contexts, trees, arch),
            Depth::Newest(wanted) => {
                let mut evaluated = dkmsconf::evaluate_first(&confs, &contexts, trees, arch);
                let newest = newest_by_name(&evaluated);
                let used: Vec<usize> = (0..evaluated.len())
                    .filter(|&i| {
                        evaluated[i].identity().is_err()
                            || wanted.contains(&dirs[i])
                            || newest.values().any(|&n| n == i)
                    })
                    .collect();
                dkmsconf::complete(&mut evaluated, &used, &contexts, trees, arch);
                evaluated
            }
        };
        let sources: Vec<Source> = dirs
            .into_iter()
            .zip(evaluated)
            .map(|(dir, conf)| Source {
                cost: crate::plan::cost::build(&dir),
                dir,
                conf,
            })
            .collect();
        let prebuilt = prebuilt(trees, arch, &kernels, &sources);
        Inventory {
            trees: trees.clone(),
            arch: arch.to_string(),
            kernels,
            sources,
            tree: DkmsTree::read(&trees.dkms),
            prebuilt,
            remembered: BTreeMap::new(),
            history: crate::system::history::History::load(trees),
        }
    }

    /// Evaluates the sources in `dirs` for every kernel, as [`Depth::Every`] would have (for
    /// sources that a request names by hand, resolved against this inventory).
    pub fn complete(&mut self, dirs: &BTreeSet<PathBuf>) {
        let which: Vec<usize> = (0..self.sources.len())
            .filter(|&i| dirs.contains(&self.sources[i].dir))
            .collect();
        if which.is_empty() {
            return;
        }
        let contexts = contexts(&self.trees, &self.kernels);
        let mut evaluated: Vec<_> = self.sources.iter().map(|s| s.conf.clone()).collect();
        dkmsconf::complete(&mut evaluated, &which, &contexts, &self.trees, &self.arch);
        for (s, e) in self.sources.iter_mut().zip(evaluated) {
            s.conf = e;
        }
    }

    /// Takes the failures the store remembers for builds of the same inputs as now.
    pub fn load_remembered(&mut self) {
        let store = crate::system::prebuilt::Store::at(&self.trees.root);
        if store.is_empty() {
            return;
        }
        let dkms = crate::system::dkms::find_program().unwrap_or_else(|| PathBuf::from("dkms"));
        for s in &self.sources {
            let Ok((m, v)) = s.conf.identity() else {
                continue;
            };
            for k in &self.kernels {
                let Some(headers) = &k.headers else { continue };
                let inputs = crate::system::prebuilt::Inputs {
                    module: m,
                    version: v,
                    kernel: &k.release,
                    arch: &self.arch,
                    source: &s.dir,
                    headers,
                    dkms: &dkms,
                    trees: &self.trees,
                };
                if let Some(f) = store.failure(&inputs) {
                    self.remembered.insert(PairId::new(m, v, &k.release), f);
                }
            }
        }
    }

    pub fn kernel(&self, release: &str) -> Option<&Kernel> {
        self.kernels.iter().find(|k| k.release == release)
    }
}

/// What each dkms.conf is evaluated for: every kernel with headers, or, with none, the running
/// kernel as dkms would without -k (for the module's identity).
fn contexts(trees: &Trees, kernels: &[Kernel]) -> Vec<Context> {
    let mut contexts: Vec<Context> = kernels
        .iter()
        .filter_map(|k| {
            k.headers.as_ref().map(|h| Context {
                kernel: k.release.clone(),
                kernel_source_dir: h.clone(),
            })
        })
        .collect();
    if contexts.is_empty() {
        let running = crate::system::kernel::running_release();
        contexts.push(Context {
            kernel_source_dir: trees.kernel_dir(&running).join("build"),
            kernel: running,
        });
    }
    contexts
}

/// Index of the newest of `confs` of each module name whose dkms.conf evaluates (by dkms's
/// version order; the first of equal versions).
pub fn newest_by_name<'a>(
    confs: impl IntoIterator<Item = &'a Evaluated>,
) -> BTreeMap<String, usize> {
    let mut best: BTreeMap<String, (usize, &str)> = BTreeMap::new();
    for (i, c) in confs.into_iter().enumerate() {
        let Ok((name, version)) = c.identity() else {
            continue;
        };
        let newer = best
            .get(name)
            .is_none_or(|(_, v)| crate::system::version::cmp(version, v).is_gt());
        if newer {
            best.insert(name.to_string(), (i, version));
        }
    }
    best.into_iter().map(|(n, (i, _))| (n, i)).collect()
}

/// The preflight's builds that are still good for this system: for each module version and
/// kernel with headers that has one kept, its stamp computed on the system as it is now.
fn prebuilt(
    trees: &Trees,
    arch: &str,
    kernels: &[Kernel],
    sources: &[Source],
) -> BTreeMap<PairId, PathBuf> {
    let store = crate::system::prebuilt::Store::at(&trees.root);
    let mut out = BTreeMap::new();
    if store.is_empty() {
        return out;
    }
    let dkms = crate::system::dkms::find_program().unwrap_or_else(|| PathBuf::from("dkms"));
    let mut cache = crate::system::prebuilt::StampCache::default();
    for s in sources {
        let Ok((m, v)) = s.conf.identity() else {
            continue;
        };
        for k in kernels {
            let Some(headers) = &k.headers else { continue };
            let inputs = crate::system::prebuilt::Inputs {
                module: m,
                version: v,
                kernel: &k.release,
                arch,
                source: &s.dir,
                headers,
                dkms: &dkms,
                trees,
            };
            if let Some(dir) = store.usable_with(&mut cache, &inputs) {
                out.insert(PairId::new(m, v, &k.release), dir);
            }
        }
    }
    out
}

/// `source_tree/*` directories that hold a dkms.conf, sorted.
fn source_dirs(source_tree: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(source_tree)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("dkms.conf").is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
