//! `dkms-hook orphans`: module files dkms installed that no dkms record owns any more, and kernel
//! directories left with nothing else.
//!
//! The ArchWiki's manual clean-up after the dkms package (or its tree) is gone: "go through
//! /usr/lib/modules/KERNELVERSION-ARCH and delete all files no longer in use". Only dkms's own
//! places are looked at: `K/updates/dkms/` (where dkms installs on Arch and Debian, whatever
//! dkms.conf says), and a DEST_MODULE_LOCATION that a dkms.conf still under the source tree names,
//! for that dkms.conf's own module names only. A location under `/kernel` is never one of them:
//! that is the kernel package's tree, and a vendor module there is not an orphan. A file is owned
//! when any dkms record (built or installed, any version) has a module of that name for that
//! kernel, or when a module with a record for that kernel is named so by its dkms.conf.
//!
//! A kernel directory is left over when it holds nothing but orphans and depmod's index files
//! (`modules.dep`, `modules.alias`, ...): no `build` link, no `modules.order` or `modules.builtin`
//! (which the kernel package ships), no other file.

use crate::plan::inventory::Inventory;
use crate::system::trees::Trees;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// What `orphans` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Orphans {
    /// Module files no dkms record owns, sorted.
    pub files: Vec<PathBuf>,
    /// Kernel directories that hold nothing but orphans and depmod's index, sorted.
    pub kernels: Vec<PathBuf>,
}

/// The files a kernel package ships beside the modules: a directory holding one is not left over.
const PACKAGE_FILES: [&str; 3] = [
    "modules.order",
    "modules.builtin",
    "modules.builtin.modinfo",
];

/// `foo` for `foo.ko`, `foo.ko.zst`, ...; `None` for a file that is not a module.
pub fn module_stem(file_name: &str) -> Option<&str> {
    ["", ".gz", ".xz", ".zst"]
        .iter()
        .find_map(|z| file_name.strip_suffix(&format!(".ko{z}") as &str))
        .filter(|s| !s.is_empty())
}

/// Finds the orphans of the system `inv` describes.
pub fn find(inv: &Inventory) -> Orphans {
    // Module names each dkms.conf under the source tree installs, and where (other than
    // updates/dkms) it would put them.
    let mut conf_names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut places: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for src in &inv.sources {
        for conf in src.conf.per_kernel.values().flatten() {
            let names = conf_names.entry(conf.name.clone()).or_default();
            for (i, b) in conf.built_modules.iter().enumerate() {
                names.insert(b.clone());
                if let Some(d) = conf.dest_names.get(i).filter(|d| !d.is_empty()) {
                    names.insert(d.clone());
                }
            }
            if conf.built_modules.is_empty() {
                names.insert(conf.name.clone());
            }
            for loc in &conf.dest_locations {
                if let Some(rel) = dkms_place(loc) {
                    places.entry(rel).or_default().extend(names.iter().cloned());
                }
            }
        }
    }

    let mut out = Orphans::default();
    for k in &inv.kernels {
        let owned = owned_names(inv, &k.release, &conf_names);
        let mut found: BTreeSet<PathBuf> = BTreeSet::new();
        for file in module_files(&k.dir.join("updates/dkms")) {
            if !is_owned(&file, &owned) {
                found.insert(file);
            }
        }
        for (rel, names) in &places {
            let Ok(rd) = fs::read_dir(k.dir.join(rel)) else {
                continue;
            };
            for e in rd.flatten() {
                let is_file = e.file_type().is_ok_and(|t| t.is_file());
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(stem) = module_stem(&name) else {
                    continue;
                };
                if is_file && names.contains(stem) && !owned.contains(stem) {
                    found.insert(e.path());
                }
            }
        }
        if !found.is_empty() && only_these_and_index(&k.dir, &k.dir, &found) {
            out.kernels.push(k.dir.clone());
        }
        out.files.extend(found);
    }
    out.files.sort();
    out
}

/// A DEST_MODULE_LOCATION as a path relative to the kernel's directory, when it is one of
/// dkms's places: under `/updates` or `/extra`, never `/kernel` (the kernel package's), never
/// climbing out.
fn dkms_place(loc: &str) -> Option<String> {
    let rel = loc.trim_start_matches('/').trim_end_matches('/');
    let first = rel.split('/').next()?;
    let ok = matches!(first, "updates" | "extra")
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    (ok && rel != "updates/dkms").then(|| rel.to_string())
}

/// Module names some dkms record owns on `kernel`: the built files of every version with a build
/// for it, and the dkms.conf names of every module installed or built for it.
fn owned_names(
    inv: &Inventory,
    kernel: &str,
    conf_names: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeSet<String> {
    let mut owned = BTreeSet::new();
    for (name, m) in &inv.tree.modules {
        let mut touches = m.installed.keys().any(|(k, _)| k == kernel);
        for v in m.versions.values() {
            for ((k, _), files) in &v.built {
                if k != kernel {
                    continue;
                }
                touches = true;
                for f in files {
                    let file = f.file_name().unwrap_or_default().to_string_lossy();
                    if let Some(stem) = module_stem(&file) {
                        owned.insert(stem.to_string());
                    }
                }
            }
        }
        if touches {
            owned.insert(name.clone());
            owned.extend(conf_names.get(name).into_iter().flatten().cloned());
        }
    }
    owned
}

fn is_owned(file: &Path, owned: &BTreeSet<String>) -> bool {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    module_stem(&name).is_none_or(|s| owned.contains(s))
}

/// Module files under `dir`, recursively (links are not followed).
fn module_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            out.extend(module_files(&e.path()));
        } else if t.is_file() && module_stem(&e.file_name().to_string_lossy()).is_some() {
            out.push(e.path());
        }
    }
    out
}

/// Whether everything under `dir` is a directory, one of `orphans`, or (at the kernel's top) an
/// index file depmod writes.
fn only_these_and_index(top: &Path, dir: &Path, orphans: &BTreeSet<PathBuf>) -> bool {
    let Ok(rd) = fs::read_dir(dir) else {
        return false;
    };
    rd.flatten().all(|e| {
        let Ok(t) = e.file_type() else { return false };
        let name = e.file_name().to_string_lossy().into_owned();
        if t.is_dir() {
            only_these_and_index(top, &e.path(), orphans)
        } else if t.is_file() && dir == top && name.starts_with("modules.") {
            !PACKAGE_FILES.contains(&name.as_str())
        } else {
            t.is_file() && orphans.contains(&e.path())
        }
    })
}

/// What `--remove` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removal {
    /// Files and kernel directories removed.
    pub removed: Vec<PathBuf>,
    /// Files and kernel directories listed, but no longer orphans when their turn came (a dkms
    /// record owns them again, or the directory holds something else now): kept.
    pub kept: Vec<PathBuf>,
    /// Kernels whose module index depmod rebuilt.
    pub depmod: Vec<String>,
    /// What could not be done, one line each.
    pub errors: Vec<String>,
}

/// Deletes `orphans`, found in `inv` (each left-over kernel directory whole), then runs depmod
/// for every other kernel that lost a file. Each one is looked at again just before it goes,
/// against the dkms tree as it is then: what is no longer an orphan is kept. (The caller holds
/// the run lock, so no dkms-hook run changes the trees meanwhile; dkms run by hand may.)
pub fn remove(inv: &Inventory, orphans: &Orphans) -> Removal {
    let trees = &inv.trees;
    let mut r = Removal::default();
    let mut changed: BTreeSet<String> = BTreeSet::new();
    let now = || {
        let mut fresh = inv.clone();
        fresh.tree = crate::system::dkms_tree::DkmsTree::read(&trees.dkms);
        find(&fresh)
    };
    for f in &orphans.files {
        if orphans.kernels.iter().any(|k| f.starts_with(k)) {
            continue;
        }
        if !now().files.contains(f) {
            r.kept.push(f.clone());
            continue;
        }
        match fs::remove_file(f) {
            Ok(()) => {
                r.removed.push(f.clone());
                if let Some(k) = kernel_of(trees, f) {
                    changed.insert(k);
                }
            }
            Err(e) => r.errors.push(format!("{}: {e}", trees.display(f))),
        }
    }
    for k in &orphans.kernels {
        if !now().kernels.contains(k) {
            r.kept.push(k.clone());
            continue;
        }
        match fs::remove_dir_all(k) {
            Ok(()) => r.removed.push(k.clone()),
            Err(e) => r.errors.push(format!("{}: {e}", trees.display(k))),
        }
    }
    for k in changed {
        match crate::system::depmod::depmod(trees, &k) {
            Ok(()) => r.depmod.push(k),
            Err(e) => r.errors.push(e.to_string()),
        }
    }
    r
}

/// The kernel whose directory holds `file`.
fn kernel_of(trees: &Trees, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(&trees.install).ok()?;
    Some(
        rel.components()
            .next()?
            .as_os_str()
            .to_string_lossy()
            .into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::inventory::{Depth, SourceSelection};
    use std::os::unix::fs::symlink;

    const K1: &str = "6.1.0-55-amd64";
    const K2: &str = "6.0.0-1-amd64";

    fn write(p: &Path, text: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn find_in(trees: &Trees) -> Orphans {
        find(&Inventory::load(
            trees,
            "x86_64",
            &SourceSelection::All,
            Depth::Every,
        ))
    }

    #[test]
    fn stems() {
        assert_eq!(module_stem("a.ko"), Some("a"));
        assert_eq!(module_stem("a.ko.zst"), Some("a"));
        assert_eq!(module_stem("a.ko.bz2"), None);
        assert_eq!(module_stem("modules.dep"), None);
        assert_eq!(module_stem(".ko"), None);
    }

    #[test]
    fn places_are_dkms_ones() {
        assert_eq!(dkms_place("/extra"), Some("extra".into()));
        assert_eq!(dkms_place("/updates"), Some("updates".into()));
        assert_eq!(dkms_place("/updates/dkms"), None, "always looked at");
        assert_eq!(dkms_place("/kernel/drivers/net"), None);
        assert_eq!(dkms_place("/extra/../kernel"), None);
        assert_eq!(dkms_place(""), None);
    }

    /// K1 keeps its kernel package (modules.order, a vendor module); K2's package is gone. The
    /// dkms tree knows only `kept` on K1. A dkms.conf still there puts `gone` in /extra.
    #[test]
    fn finds_unowned_files_in_dkms_places_only() {
        let dir = tempfile::tempdir().unwrap();
        let trees = Trees::defaults(dir.path());
        let k1 = trees.kernel_dir(K1);
        let k2 = trees.kernel_dir(K2);
        write(&k1.join("modules.order"), "");
        write(&k1.join("modules.dep"), "");
        write(&k1.join("kernel/drivers/vendor.ko"), "vendor");
        write(
            &k1.join("kernel/drivers/gone.ko"),
            "a vendor module of the same name",
        );
        write(&k1.join("updates/dkms/kept.ko.zst"), "dkms");
        write(&k1.join("updates/dkms/old.ko"), "dkms");
        write(&k1.join("updates/dkms/notes.txt"), "not a module");
        write(&k1.join("extra/gone.ko"), "dkms, elsewhere");
        write(&k1.join("extra/someone-elses.ko"), "named by no dkms.conf");
        write(&k2.join("updates/dkms/old.ko"), "dkms");
        write(&k2.join("modules.dep"), "");
        write(&k2.join("modules.alias.bin"), "");
        write(
            &trees.source.join("gone-1/dkms.conf"),
            "PACKAGE_NAME=gone\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[0]=gone\n\
             DEST_MODULE_LOCATION[0]=/extra\n",
        );
        let kept = trees.dkms.join("kept/2");
        write(&kept.join(K1).join("x86_64/module/kept.ko.zst"), "dkms");
        symlink(
            "2/".to_string() + K1 + "/x86_64",
            trees.dkms.join("kept/kernel-6.1.0-55-amd64-x86_64"),
        )
        .unwrap();

        let o = find_in(&trees);
        assert_eq!(
            o.files,
            [
                k2.join("updates/dkms/old.ko"),
                k1.join("extra/gone.ko"),
                k1.join("updates/dkms/old.ko"),
            ]
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        assert_eq!(o.kernels, std::slice::from_ref(&k2));

        // A built (not installed) record of `gone` for K1 owns its file there.
        write(
            &trees
                .dkms
                .join("gone/1")
                .join(K1)
                .join("x86_64/module/gone.ko"),
            "",
        );
        assert!(!find_in(&trees).files.contains(&k1.join("extra/gone.ko")));

        // A kernel directory with its headers link is not left over.
        symlink("/nowhere", k2.join("build")).unwrap();
        assert_eq!(find_in(&trees).kernels, Vec::<PathBuf>::new());
    }

    /// Defect (issue 16, item 4): --remove deleted what it had listed without looking again: a
    /// file that a dkms record owns by the time its turn comes stays, and so does its kernel.
    #[test]
    fn a_file_owned_again_before_its_turn_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let trees = Trees::defaults(dir.path());
        let k1 = trees.kernel_dir(K1);
        let k2 = trees.kernel_dir(K2);
        write(&k1.join("modules.order"), "");
        write(&k1.join("updates/dkms/old.ko"), "dkms");
        write(&k1.join("updates/dkms/other.ko"), "dkms");
        write(&k2.join("updates/dkms/old.ko"), "dkms");
        let inv = Inventory::load(&trees, "x86_64", &SourceSelection::All, Depth::Every);
        let listed = find(&inv);
        assert_eq!(listed.files.len(), 3, "{listed:?}");
        assert_eq!(listed.kernels, std::slice::from_ref(&k2));
        // Between the listing and the removal, `old` is built for both kernels again.
        for k in [K1, K2] {
            write(
                &trees
                    .dkms
                    .join("old/1")
                    .join(k)
                    .join("x86_64/module/old.ko"),
                "",
            );
        }
        let done = remove(&inv, &listed);
        assert!(k1.join("updates/dkms/old.ko").is_file(), "{done:?}");
        assert!(k2.join("updates/dkms/old.ko").is_file(), "{done:?}");
        assert_eq!(done.removed, [k1.join("updates/dkms/other.ko")]);
        assert_eq!(
            done.kept,
            [k1.join("updates/dkms/old.ko"), k2.clone()],
            "{done:?}"
        );
    }
}
