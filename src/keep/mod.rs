//! Kept module versions: the old version of an upgraded module stays installed until the new one
//! is installed, kernel by kernel.
//!
//! pacman's remove hook runs before the transaction, when `usr/src/foo-1.0` is still there and
//! `usr/src/foo-1.1` is not yet. Removing 1.0 then (as the stock hooks do) leaves a kernel without
//! foo when 1.1 fails to build for it. So when a new version of the same module arrives in the
//! transaction ([`crate::keep::arriving`]), the remove hook keeps 1.0 installed instead: it copies what
//! dkms needs to uninstall it later (its dkms.conf and the small files beside it, such as a
//! POST_REMOVE script) to `ROOT/var/lib/dkms-hook/kept/foo-1.0/`, and points dkms's
//! `foo/1.0/source` link there. dkms's own record (the build results, the `kernel-K-ARCH` links,
//! the installed files) stays dkms's, untouched: `dkms status` shows 1.0 installed, and
//! `dkms remove -m foo -v 1.0` works once `/usr/src/foo-1.0` is gone (dkms 3.4 refuses to touch a
//! version whose source link dangles, "broken").
//!
//! After the transaction, a build of foo for kernel K that finds a kept version installed there
//! builds first, and swaps only when the build succeeded (see `DkmsExecutor`'s `replace_kept`); when
//! it fails, the kept version stays installed and the failure says so; when the swap is cut short
//! (a time limit, a signal, a run killed), the kept version is put back, installed and verified
//! (see [`crate::execute::journal`] and [`crate::execute::settle`]). [`settle`] then unregisters
//! the kept versions installed nowhere any more, or whose module has no source left at all, and
//! removes their copies. A plain removal of the module (nothing of it arrives) removes its kept
//! versions with it ([`before_removal`]).

pub mod arriving;

use crate::keep::arriving::Arriving;
use crate::plan::inventory::Inventory;
use crate::plan::targets::Targets;
use crate::system::dkms::Dkms;
use crate::system::dkms_tree::DkmsTree;
use crate::system::trees::Trees;
use std::fs;
use std::path::{Path, PathBuf};

/// Where the kept copies live, under the root.
pub const KEPT_DIR: &str = "var/lib/dkms-hook/kept";

/// Files beside dkms.conf larger than this are not copied: what dkms runs on uninstall is small.
const MAX_COPIED: u64 = 1 << 20;

/// The directory of every kept copy.
pub fn dir(trees: &Trees) -> PathBuf {
    trees.root.join(KEPT_DIR)
}

/// The kept copy of `m/v`.
pub fn copy_of(trees: &Trees, m: &str, v: &str) -> PathBuf {
    dir(trees).join(format!("{m}-{v}"))
}

/// Whether `m/v` is kept: dkms's `source` link points at its copy.
pub fn is_kept(trees: &Trees, m: &str, v: &str) -> bool {
    fs::read_link(trees.dkms.join(m).join(v).join("source"))
        .is_ok_and(|t| t.starts_with(dir(trees)))
}

/// The kept version of `m` installed for `kernel`, if the version installed there is kept.
pub fn installed_kept(trees: &Trees, m: &str, kernel: &str, arch: &str) -> Option<String> {
    let link = trees.dkms.join(m).join(format!("kernel-{kernel}-{arch}"));
    let target = fs::read_link(link).ok()?;
    let v = target
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    is_kept(trees, m, &v).then_some(v)
}

/// Every kept (module, version), from dkms's tree.
pub fn list(trees: &Trees) -> Vec<(String, String)> {
    let tree = DkmsTree::read(&trees.dkms);
    let kept = dir(trees);
    let mut out = Vec::new();
    for (m, entry) in &tree.modules {
        for (v, ver) in &entry.versions {
            if ver.source.as_deref().is_some_and(|s| s.starts_with(&kept)) {
                out.push((m.clone(), v.clone()));
            }
        }
    }
    out
}

/// Keeps `m/v`, whose sources are in `source`: copies dkms.conf and the small regular files
/// beside it, then points dkms's `source` link at the copy (each step replaces atomically).
/// No link in the source directory is followed, but for dkms.conf's own (dkms follows it too):
/// what is copied is the package's own files, never a file elsewhere on the system. Each file and
/// directory of the copy is synced before dkms is pointed at it, and the link after: a power loss
/// leaves dkms pointing at the sources or at a whole copy, never at an empty dkms.conf.
pub fn keep(trees: &Trees, m: &str, v: &str, source: &Path) -> Result<PathBuf, String> {
    let copy = copy_of(trees, m, v);
    let shown = |p: &Path| trees.display(p).into_owned();
    fn err<'a>(trees: &'a Trees, p: &'a Path) -> impl Fn(std::io::Error) -> String + 'a {
        move |e| format!("{}: {e}", trees.display(p))
    }
    let tmp = dir(trees).join(format!(".{m}-{v}.tmp"));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(err(trees, &tmp))?;
    let entries = fs::read_dir(source).map_err(err(trees, source))?;
    for e in entries.flatten() {
        let is_conf = e.file_name() == "dkms.conf";
        let md = if is_conf {
            fs::metadata(e.path())
        } else {
            fs::symlink_metadata(e.path())
        };
        let Ok(md) = md else {
            continue;
        };
        if !md.is_file() || (md.len() > MAX_COPIED && !is_conf) {
            continue;
        }
        let to = tmp.join(e.file_name());
        fs::copy(e.path(), &to)
            .and_then(|_| sync(&to))
            .map_err(err(trees, &to))?;
    }
    if !tmp.join("dkms.conf").is_file() {
        let _ = fs::remove_dir_all(&tmp);
        return Err(format!("{}: no dkms.conf to keep", shown(source)));
    }
    sync(&tmp).map_err(err(trees, &tmp))?;
    let _ = fs::remove_dir_all(&copy);
    fs::rename(&tmp, &copy).map_err(err(trees, &copy))?;
    sync(&dir(trees)).map_err(err(trees, &dir(trees)))?;
    repoint(trees, m, v, &copy)?;
    Ok(copy)
}

/// Writes a file's (or a directory's) contents through to the disk.
fn sync(path: &Path) -> std::io::Result<()> {
    fs::File::open(path)?.sync_all()
}

/// Points `m/v`'s `source` link at `to`, replacing it in one rename, synced.
fn repoint(trees: &Trees, m: &str, v: &str, to: &Path) -> Result<(), String> {
    let vdir = trees.dkms.join(m).join(v);
    let tmp = vdir.join(".source.dkms-hook");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(to, &tmp)
        .and_then(|()| fs::rename(&tmp, vdir.join("source")))
        .and_then(|()| sync(&vdir))
        .map_err(|e| format!("{}: {e}", trees.display(&vdir.join("source"))))
}

/// Before a removal: a leaving module version that a new version of the same module replaces in
/// this transaction is kept where it is installed on a kernel that stays, and taken out of the
/// targets (the planner then removes it only from kernels that leave). A leaving version that
/// nothing replaces takes its module's kept versions with it: they are added to the targets.
/// With `act` false (a dry run) nothing changes on disk. Returns what to tell the user.
pub fn before_removal(
    inv: &Inventory,
    targets: &mut Targets,
    arriving: &Arriving,
    act: bool,
) -> Vec<String> {
    let trees = &inv.trees;
    let mut notes: Vec<String> = arriving
        .notes
        .iter()
        .map(|n| format!("{n}: an upgraded module is removed before its new version is built"))
        .collect();
    let kept_dir_rel = PathBuf::from(KEPT_DIR);
    for rel in targets.sources.clone() {
        if rel.starts_with(&kept_dir_rel) {
            continue;
        }
        let dir = trees.root.join(&rel);
        let from_conf = inv
            .sources
            .iter()
            .find(|s| s.dir == dir)
            .and_then(|s| s.conf.identity().ok())
            .map(|(n, v)| (n.to_string(), v.to_string()));
        let Some((m, v)) = from_conf.or_else(|| inv.tree.version_for_source(&dir)) else {
            continue;
        };
        if !arriving.new_version_of(&m, &rel) {
            // A plain removal: every kept version of the module goes too.
            for (km, kv) in list(trees) {
                if km == m && kv != v {
                    targets
                        .sources
                        .insert(kept_dir_rel.join(format!("{km}-{kv}")));
                }
            }
            continue;
        }
        let staying: Vec<String> = inv
            .tree
            .modules
            .get(&m)
            .map(|e| {
                e.installed
                    .iter()
                    .filter(|((k, _), iv)| **iv == v && stays(inv, targets, k))
                    .map(|((k, _), _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        if staying.is_empty() {
            continue;
        }
        if act {
            if let Err(e) = keep(trees, &m, &v, &dir) {
                notes.push(format!(
                    "{m}/{v} cannot be kept until its new version is built ({e}): removed now"
                ));
                continue;
            }
        }
        targets.sources.remove(&rel);
        notes.push(format!(
            "{m}/{v} stays installed for {} until a new {m} is built there (what dkms needs to \
             remove it is kept in {})",
            staying.join(" and "),
            trees.display(&copy_of(trees, &m, &v))
        ));
    }
    notes
}

/// Whether `kernel` stays through the transaction: its directory is there and its package is not
/// among the targets (its headers alone may leave).
fn stays(inv: &Inventory, targets: &Targets, kernel: &str) -> bool {
    let leaving = targets.kernels.get(kernel).is_some_and(|t| !t.headers_only);
    !leaving && inv.trees.kernel_dir(kernel).is_dir()
}

/// Before building: a kept version whose sources are back in the source tree (a downgrade to it,
/// or its package reinstalled) is an ordinary version again: its `source` link points at its
/// sources, and its copy goes.
pub fn restore_returned(trees: &Trees) -> Vec<String> {
    let mut out = Vec::new();
    for (m, v) in list(trees) {
        let src = trees.source.join(format!("{m}-{v}"));
        if !src.join("dkms.conf").is_file() {
            continue;
        }
        match repoint(trees, &m, &v, &src) {
            Ok(()) => {
                let _ = fs::remove_dir_all(copy_of(trees, &m, &v));
            }
            Err(e) => out.push(format!(
                "error: {m}/{v}: cannot point dkms back at its sources: {e}"
            )),
        }
    }
    out
}

/// After a run: the kept versions installed on no kernel any more, or whose module has no source
/// left at all (its package went while it was kept), are removed from dkms's tree; copies nothing
/// points at are deleted. Returns one line per version removed, and per error (`error:` lines).
pub fn settle(trees: &Trees, dkms: &Dkms) -> Vec<String> {
    let mut out = Vec::new();
    let tree = DkmsTree::read(&trees.dkms);
    // A kept version that a swap cut short took out, and that could not be put back yet, is
    // installed nowhere, but not replaced: it stays for the next run to put back.
    let out_for_a_swap = crate::execute::journal::pending_swaps(trees);
    for (m, v) in list(trees) {
        if out_for_a_swap.contains(&(m.clone(), v.clone())) {
            continue;
        }
        let installed = tree
            .modules
            .get(&m)
            .is_some_and(|e| e.installed.values().any(|iv| *iv == v));
        let has_sources = has_sources_of(trees, &m);
        if installed && has_sources {
            continue;
        }
        let kernels: Vec<String> = tree
            .modules
            .get(&m)
            .map(|e| {
                e.installed
                    .iter()
                    .filter(|(_, iv)| **iv == v)
                    .map(|((k, _), _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        let r = dkms.remove(&m, &v, None);
        for k in &kernels {
            if let Err(e) = crate::execute::executor::depmod(trees, k) {
                out.push(format!("error: {e}"));
            }
        }
        if r.ok() {
            let why = if installed {
                "its module has no sources left"
            } else {
                "a newer version is installed wherever it was"
            };
            out.push(format!("  removed the kept {m}/{v}: {why}"));
        } else {
            out.push(format!(
                "error: removing the kept {m}/{v}: dkms remove: {}",
                crate::system::dkms::exit_words(r.code)
            ));
        }
    }
    remove_orphan_copies(trees);
    out
}

/// Deletes the kept copies that no dkms version points at (it was removed).
pub fn remove_orphan_copies(trees: &Trees) {
    let kept: Vec<PathBuf> = list(trees)
        .into_iter()
        .map(|(m, v)| copy_of(trees, &m, &v))
        .collect();
    let Ok(rd) = fs::read_dir(dir(trees)) else {
        return;
    };
    for e in rd.flatten() {
        if !kept.contains(&e.path()) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Whether the source tree holds any version of `m` (a `m-*/dkms.conf`).
fn has_sources_of(trees: &Trees, m: &str) -> bool {
    let prefix = format!("{m}-");
    fs::read_dir(&trees.source).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with(&prefix)
                && e.path().join("dkms.conf").is_file()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::inventory::SourceSelection;
    use std::os::unix::fs::symlink;

    const K: &str = "6.1.0-1-amd64";

    /// A root with foo 1.0 added and installed for K (a fake kernel with headers).
    fn root_with_foo() -> (tempfile::TempDir, Trees) {
        let dir = tempfile::tempdir().unwrap();
        let trees = Trees::defaults(dir.path());
        let src = trees.source.join("foo-1.0");
        fs::create_dir_all(&src).unwrap();
        fs::write(
            src.join("dkms.conf"),
            "PACKAGE_NAME=foo\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]=foo\nAUTOINSTALL=yes\n",
        )
        .unwrap();
        fs::write(src.join("post-remove.sh"), "#!/bin/sh\n").unwrap();
        fs::write(src.join("big.bin"), vec![0u8; (MAX_COPIED + 1) as usize]).unwrap();
        let kdir = trees.install.join(K);
        fs::create_dir_all(kdir.join("build")).unwrap();
        fs::write(kdir.join("build/Makefile"), "").unwrap();
        let built = trees.dkms.join("foo/1.0").join(K).join("x86_64/module");
        fs::create_dir_all(&built).unwrap();
        fs::write(built.join("foo.ko"), "").unwrap();
        symlink(&src, trees.dkms.join("foo/1.0/source")).unwrap();
        symlink(
            format!("1.0/{K}/x86_64"),
            trees.dkms.join(format!("foo/kernel-{K}-x86_64")),
        )
        .unwrap();
        (dir, trees)
    }

    fn targets(paths: &[&str]) -> Targets {
        let mut t = Targets::default();
        t.sources.extend(paths.iter().map(PathBuf::from));
        t
    }

    fn arriving(paths: &[&str]) -> Arriving {
        Arriving {
            sources: paths.iter().map(PathBuf::from).collect(),
            notes: vec![],
        }
    }

    fn inventory(trees: &Trees, t: &Targets) -> Inventory {
        let only = t.sources.iter().map(|s| trees.root.join(s)).collect();
        Inventory::load(trees, "x86_64", &SourceSelection::Only(only))
    }

    #[test]
    fn an_upgraded_version_is_kept_and_taken_out_of_the_removal() {
        let (_d, trees) = root_with_foo();
        let mut t = targets(&["usr/src/foo-1.0"]);
        let inv = inventory(&trees, &t);
        let notes = before_removal(&inv, &mut t, &arriving(&["usr/src/foo-1.1"]), true);
        assert!(t.sources.is_empty(), "{t:?}");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with(&format!("foo/1.0 stays installed for {K}")));
        let copy = copy_of(&trees, "foo", "1.0");
        assert!(copy.join("dkms.conf").is_file() && copy.join("post-remove.sh").is_file());
        assert!(!copy.join("big.bin").exists(), "large files are not copied");
        assert_eq!(
            fs::read_link(trees.dkms.join("foo/1.0/source")).unwrap(),
            copy
        );
        assert!(is_kept(&trees, "foo", "1.0"));
        assert_eq!(
            installed_kept(&trees, "foo", K, "x86_64").as_deref(),
            Some("1.0")
        );
        assert_eq!(list(&trees), [("foo".to_string(), "1.0".to_string())]);
    }

    /// Defect (issue 16, item 7): the copy followed links in the source directory, so a link to
    /// a file elsewhere on the system was copied into the kept copy.
    #[test]
    fn the_kept_copy_follows_no_link() {
        let (_d, trees) = root_with_foo();
        let src = trees.source.join("foo-1.0");
        let outside = trees.root.join("etc/secret");
        fs::create_dir_all(outside.parent().unwrap()).unwrap();
        fs::write(&outside, "not the module's\n").unwrap();
        symlink(&outside, src.join("secret")).unwrap();
        symlink("post-remove.sh", src.join("alias.sh")).unwrap();
        let copy = keep(&trees, "foo", "1.0", &src).unwrap();
        let mut names: Vec<String> = fs::read_dir(&copy)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["dkms.conf", "post-remove.sh"]);
    }

    #[test]
    fn a_dry_run_keeps_nothing_but_says_it_would() {
        let (_d, trees) = root_with_foo();
        let mut t = targets(&["usr/src/foo-1.0"]);
        let inv = inventory(&trees, &t);
        let notes = before_removal(&inv, &mut t, &arriving(&["usr/src/foo-1.1"]), false);
        assert_eq!(notes.len(), 1);
        assert!(!is_kept(&trees, "foo", "1.0"));
        assert!(!dir(&trees).exists());
    }

    #[test]
    fn a_plain_removal_takes_the_kept_versions_of_its_module_along() {
        let (_d, trees) = root_with_foo();
        keep(&trees, "foo", "1.0", &trees.source.join("foo-1.0")).unwrap();
        // foo 1.1 is installed elsewhere and now removed, with nothing of foo arriving.
        let src = trees.source.join("foo-1.1");
        fs::create_dir_all(&src).unwrap();
        fs::write(
            src.join("dkms.conf"),
            "PACKAGE_NAME=foo\nPACKAGE_VERSION=1.1\n",
        )
        .unwrap();
        fs::create_dir_all(trees.dkms.join("foo/1.1")).unwrap();
        symlink(&src, trees.dkms.join("foo/1.1/source")).unwrap();
        let mut t = targets(&["usr/src/foo-1.1"]);
        let inv = inventory(&trees, &t);
        let notes = before_removal(&inv, &mut t, &arriving(&["usr/src/bar-2"]), true);
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(
            t.sources,
            targets(&["usr/src/foo-1.1", "var/lib/dkms-hook/kept/foo-1.0"]).sources
        );
    }

    #[test]
    fn a_kept_version_whose_sources_return_is_an_ordinary_version_again() {
        let (_d, trees) = root_with_foo();
        let src = trees.source.join("foo-1.0");
        keep(&trees, "foo", "1.0", &src).unwrap();
        assert!(restore_returned(&trees).is_empty());
        assert_eq!(
            fs::read_link(trees.dkms.join("foo/1.0/source")).unwrap(),
            src
        );
        remove_orphan_copies(&trees);
        assert!(!copy_of(&trees, "foo", "1.0").exists());
    }
}
