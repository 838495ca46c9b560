//! A read-only view of dkms's own tree (`/var/lib/dkms` by default).
//!
//! Layout (dkms 3.x): `M/V/source -> SOURCE_TREE/M-V` registers a version; `M/V/K/ARCH/module/*.ko*`
//! are the built modules for kernel K; `M/kernel-K-ARCH -> V/K/ARCH` says that version is installed
//! for K; `M/original_module/` keeps in-tree modules that dkms replaced. Reading it directly costs
//! milliseconds where `dkms status` costs seconds.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

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
    pub fn pairs_for_kernel(&self, kernel: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, m) in &self.modules {
            for (ver, v) in &m.versions {
                let built = v.built.keys().any(|(k, _)| k == kernel);
                let installed = m
                    .installed
                    .iter()
                    .any(|((k, _), iv)| k == kernel && iv == ver);
                if built || installed {
                    out.push((name.clone(), ver.clone()));
                }
            }
        }
        out
    }

    /// The registered version whose `source` link points at `dir`, if any.
    pub fn version_for_source(&self, dir: &Path) -> Option<(String, String)> {
        for (name, m) in &self.modules {
            for (ver, v) in &m.versions {
                if v.source.as_deref() == Some(dir) {
                    return Some((name.clone(), ver.clone()));
                }
            }
        }
        None
    }
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
