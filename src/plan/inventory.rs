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
            if let Some(dir) = store.usable(&inputs) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::targets::Targets;
    use crate::plan::{plan, Mode, Request};
    use std::os::unix::fs::symlink;

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
