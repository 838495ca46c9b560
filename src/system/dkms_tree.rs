//! dkms's own tree (`/var/lib/dkms` by default): the one module that knows its on-disk layout.
//!
//! Layout (dkms 3.x): `M/V/source -> SOURCE_TREE/M-V` registers a version; `M/V/build/` is the one
//! scratch directory of all its kernels (with `make.log`); `M/V/K/ARCH/module/*.ko*` are the built
//! modules for kernel K; `M/kernel-K-ARCH -> V/K/ARCH` says that version is installed for K;
//! `M/original_module/K/ARCH/` keeps the in-tree modules that dkms replaced. The path builders
//! below spell it for everyone else; [`DkmsTree::read`] reads it whole (milliseconds, where
//! `dkms status` costs seconds); [`leftovers`], [`remove_directly`] and [`prune_empty`] are the
//! file operations dkms-hook does on it itself, when dkms cannot.

use crate::system::trees::Trees;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// `M/`: everything dkms has of module `m`.
pub fn module_dir(dkms: &Path, m: &str) -> PathBuf {
    dkms.join(m)
}

/// `M/V/`: one registered version.
pub fn version_dir(dkms: &Path, m: &str, v: &str) -> PathBuf {
    dkms.join(m).join(v)
}

/// `M/V/source`: the link that registers the version (to its sources, or a kept copy).
pub fn source_link(dkms: &Path, m: &str, v: &str) -> PathBuf {
    version_dir(dkms, m, v).join("source")
}

/// `M/V/build/make.log`: the log of the version's last build, for whichever kernel.
pub fn make_log(dkms: &Path, m: &str, v: &str) -> PathBuf {
    version_dir(dkms, m, v).join("build/make.log")
}

/// `M/V/K/`: the version's builds for kernel `k`.
pub fn kernel_dir(dkms: &Path, m: &str, v: &str, k: &str) -> PathBuf {
    version_dir(dkms, m, v).join(k)
}

/// `M/V/K/ARCH/`: the version's build for kernel `k` (dkms takes a pair as built when its
/// `module/` is there).
pub fn pair_dir(dkms: &Path, m: &str, v: &str, k: &str, arch: &str) -> PathBuf {
    kernel_dir(dkms, m, v, k).join(arch)
}

/// `M/V/K/ARCH/module/`: the built module files.
pub fn built_dir(dkms: &Path, m: &str, v: &str, k: &str, arch: &str) -> PathBuf {
    pair_dir(dkms, m, v, k, arch).join("module")
}

/// `M/V/K/.dkms-hook-previous-ARCH/`: where a `--force` rebuild keeps the previous build while
/// it builds (dkms-hook's, inside dkms's tree, so that it moves in one rename).
pub fn previous_build_dir(dkms: &Path, m: &str, v: &str, k: &str, arch: &str) -> PathBuf {
    kernel_dir(dkms, m, v, k).join(format!(".dkms-hook-previous-{arch}"))
}

/// `M/kernel-K-ARCH`: the link that says which version of `m` is installed for `k`.
pub fn install_link(dkms: &Path, m: &str, k: &str, arch: &str) -> PathBuf {
    dkms.join(m).join(format!("kernel-{k}-{arch}"))
}

/// What [`install_link`] points at when version `v` is installed: `V/K/ARCH`.
pub fn install_target(v: &str, k: &str, arch: &str) -> PathBuf {
    Path::new(v).join(k).join(arch)
}

/// `M/original_module/K/ARCH/`: the in-tree modules dkms set aside for `m` on `k`.
pub fn original_module_dir(dkms: &Path, m: &str, k: &str, arch: &str) -> PathBuf {
    dkms.join(m).join("original_module").join(k).join(arch)
}

/// A module version, as dkms names it: `NAME/VERSION` (`dkms -m NAME -v VERSION`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleVersion {
    pub name: String,
    pub version: String,
}

impl ModuleVersion {
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> ModuleVersion {
        ModuleVersion {
            name: name.into(),
            version: version.into(),
        }
    }
}

impl std::fmt::Display for ModuleVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.name, self.version)
    }
}

/// One module version on one kernel: what dkms builds and installs as one (its "pair"). The
/// key of the preflight's builds and of the rebuilds a stopped run left pending.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PairId {
    pub name: String,
    pub version: String,
    pub kernel: String,
}

impl PairId {
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        kernel: impl Into<String>,
    ) -> PairId {
        PairId {
            name: name.into(),
            version: version.into(),
            kernel: kernel.into(),
        }
    }
}

/// The whole dkms tree: module name -> what dkms knows of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DkmsTree {
    pub modules: BTreeMap<String, ModuleEntry>,
}

/// One module name in the dkms tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleEntry {
    pub versions: BTreeMap<String, VersionEntry>,
    /// (kernel, arch) -> installed version, from the `kernel-K-ARCH` links.
    pub installed: BTreeMap<(String, String), String>,
}

/// One registered (or half-removed) module version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionEntry {
    /// Where `M/V/source` points, if it is a link.
    pub source: Option<PathBuf>,
    /// (kernel, arch) -> built module files under `M/V/K/ARCH/module/`.
    pub built: BTreeMap<(String, String), Vec<PathBuf>>,
}

impl DkmsTree {
    /// Reads the tree at `root`. A missing tree is an empty one; unreadable entries are skipped.
    pub fn read(root: &Path) -> DkmsTree {
        let mut tree = DkmsTree::default();
        for (name, path) in dirs(root) {
            let entry = read_module(&path);
            tree.modules.insert(name, entry);
        }
        tree
    }

    /// The version of `module` installed for (kernel, arch), if any.
    pub fn installed(&self, module: &str, kernel: &str, arch: &str) -> Option<&str> {
        self.modules
            .get(module)?
            .installed
            .get(&(kernel.to_string(), arch.to_string()))
            .map(String::as_str)
    }

    /// Whether `module/version` is registered (its `source` link exists).
    pub fn is_added(&self, module: &str, version: &str) -> bool {
        self.version(module, version)
            .is_some_and(|v| v.source.is_some())
    }

    pub fn version(&self, module: &str, version: &str) -> Option<&VersionEntry> {
        self.modules.get(module)?.versions.get(version)
    }

    /// Every (module, version) with anything for `kernel` (any arch): built files or an install link.
    pub fn pairs_for_kernel(&self, kernel: &str) -> Vec<ModuleVersion> {
        let mut out = Vec::new();
        for (name, m) in &self.modules {
            for (ver, v) in &m.versions {
                let built = v.built.keys().any(|(k, _)| k == kernel);
                let installed = m
                    .installed
                    .iter()
                    .any(|((k, _), iv)| k == kernel && iv == ver);
                if built || installed {
                    out.push(ModuleVersion::new(name, ver));
                }
            }
        }
        out
    }

    /// The registered version whose `source` link points at `dir`, if any.
    pub fn version_for_source(&self, dir: &Path) -> Option<ModuleVersion> {
        for (name, m) in &self.modules {
            for (ver, v) in &m.versions {
                if v.source.as_deref() == Some(dir) {
                    return Some(ModuleVersion::new(name, ver));
                }
            }
        }
        None
    }
}

/// What dkms left of `m/v` for `kernel`: the install link, the build directory, the files that
/// version installed. An installed file named like one of its modules is that version's only
/// when dkms's `kernel-K-ARCH` link says `m/v` is installed there, or, with no version installed
/// there (an install cut short before dkms made the link), when it is that version's built file
/// or a copy of it cut short (its first bytes); never while the link names another version, whose
/// file it is.
pub fn leftovers(trees: &Trees, m: &str, v: &str, kernel: &str, arch: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let link = install_link(&trees.dkms, m, kernel, arch);
    let installed = fs::read_link(&link).ok();
    let ours = installed
        .as_ref()
        .is_some_and(|t| t.components().next() == Some(std::path::Component::Normal(v.as_ref())));
    if ours {
        out.push(link);
    }
    let dir = kernel_dir(&trees.dkms, m, v, kernel);
    for ko in ko_files(&built_dir(&trees.dkms, m, v, kernel, arch)) {
        let name = ko.file_name().unwrap_or_default().to_owned();
        out.extend(
            installed_kos(&trees.kernel_dir(kernel))
                .into_iter()
                .filter(|p| p.file_name() == Some(&name))
                .filter(|p| ours || (installed.is_none() && copied_from(p, &ko))),
        );
    }
    if dir.exists() {
        out.push(dir);
    }
    out
}

/// Whether `file` is `built`, or the start of it (a copy cut short).
fn copied_from(file: &Path, built: &Path) -> bool {
    match (fs::read(file), fs::read(built)) {
        (Ok(f), Ok(b)) => b.starts_with(&f),
        _ => false,
    }
}

/// Removes dkms's artefacts of `m/v` for `kernel` without dkms: installed modules, the build
/// results, the install link; then the empty directories dkms made under the kernel.
pub fn remove_directly(
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
pub fn prune_empty(kernel_dir: &Path) {
    for d in ["updates/dkms", "updates", "extra"] {
        let _ = fs::remove_dir(kernel_dir.join(d));
    }
}

/// `.ko`, `.ko.xz`, `.ko.zst`, `.ko.gz` files directly in `dir`.
pub fn ko_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| is_ko(p))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn is_ko(p: &Path) -> bool {
    let n = p.file_name().unwrap_or_default().to_string_lossy();
    n.ends_with(".ko") || n.contains(".ko.")
}

/// Module files under a kernel's directory that dkms may have put there (not the kernel's own
/// `kernel/` tree, not the headers).
pub fn installed_kos(kernel_dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>, top: bool) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(t) = e.file_type() else { continue };
            let name = e.file_name();
            if top && (name == "build" || name == "source" || name == "kernel") {
                continue;
            }
            if t.is_dir() {
                walk(&p, out, false);
            } else if is_ko(&p) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(kernel_dir, &mut out, true);
    out.sort();
    out
}

fn read_module(path: &Path) -> ModuleEntry {
    let mut entry = ModuleEntry::default();
    let Ok(rd) = fs::read_dir(path) else {
        return entry;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        let is_link = e.file_type().map(|t| t.is_symlink()).unwrap_or(false);
        if name.starts_with("kernel-") && is_link {
            // The link's target, V/K/ARCH, names all three without guessing at dashes in the name.
            if let Ok(target) = fs::read_link(&p) {
                let parts: Vec<String> = target
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if let [v, k, a] = parts.as_slice() {
                    entry.installed.insert((k.clone(), a.clone()), v.clone());
                }
            }
            continue;
        }
        if name == "original_module" || is_link || !p.is_dir() {
            continue;
        }
        entry.versions.insert(name, read_version(&p));
    }
    entry
}

fn read_version(path: &Path) -> VersionEntry {
    let mut v = VersionEntry {
        source: fs::read_link(path.join("source")).ok(),
        built: BTreeMap::new(),
    };
    for (kernel, kpath) in dirs(path) {
        if kernel == "build" || kernel == "source" || kernel == "tarball" {
            continue;
        }
        for (arch, apath) in dirs(&kpath) {
            let mut files: Vec<PathBuf> = fs::read_dir(apath.join("module"))
                .map(|rd| rd.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            files.sort();
            v.built.insert((kernel.clone(), arch), files);
        }
    }
    v
}

/// Real directories (not links) under `path`, sorted by name.
fn dirs(path: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_kos_skip_the_kernels_own_tree_and_headers() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "kernel/fs/a.ko.zst",
            "build/b.ko",
            "updates/dkms/c.ko",
            "extra/d.ko.xz",
            "modules.dep",
        ] {
            let p = d.path().join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, "").unwrap();
        }
        let names: Vec<String> = installed_kos(d.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["d.ko.xz", "c.ko"]);
    }
}
