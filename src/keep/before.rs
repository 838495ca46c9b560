//! The remove hook's half (before the transaction): a leaving module version that a new
//! version of the same module replaces in the transaction is kept where it is installed on a
//! kernel that stays, and taken out of the removal.

use crate::keep::arriving::Arriving;
use crate::plan::inventory::Inventory;
use crate::plan::targets::Targets;
use crate::system::dkms_tree::ModuleVersion;
use crate::system::kept::{copy_of, keep, list, KEPT_DIR};
use std::path::PathBuf;

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
            .map(|(n, v)| ModuleVersion::new(n, v));
        let Some(ModuleVersion {
            name: m,
            version: v,
        }) = from_conf.or_else(|| inv.tree.version_for_source(&dir))
        else {
            continue;
        };
        if !arriving.new_version_of(&m, &rel) {
            // A plain removal: every kept version of the module goes too.
            for k in list(trees) {
                if k.name == m && k.version != v {
                    targets
                        .sources
                        .insert(kept_dir_rel.join(format!("{}-{}", k.name, k.version)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::inventory::{Depth, SourceSelection};
    use crate::system::kept::tests::{root_with_foo, K};
    use crate::system::kept::{dir, installed_kept, is_kept};
    use crate::system::trees::Trees;
    use std::fs;
    use std::os::unix::fs::symlink;

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
        Inventory::load(trees, "x86_64", &SourceSelection::Only(only), Depth::Every)
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
        assert_eq!(list(&trees), [ModuleVersion::new("foo", "1.0")]);
    }

    /// Defect (issue 16, item 7): the copy followed links in the source directory, so a link to
    /// a file elsewhere on the system was copied into the kept copy.
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
}
