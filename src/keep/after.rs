//! The install hook's half (around a run, after the transaction): a kept version whose
//! sources are back is an ordinary version again ([`restore_returned`]); after the run, the kept
//! versions installed nowhere any more, or whose module has no source left, are removed
//! ([`settle`]: its results travel as events, `Event::Kept`), and the copies nothing points at are deleted ([`remove_orphan_copies`]).

use crate::run::events::{KeptGone, KeptSettled};
use crate::system::dkms::Dkms;
use crate::system::dkms_tree::{DkmsTree, ModuleVersion};
use crate::system::kept::{copy_of, dir, list, repoint};
use crate::system::trees::Trees;
use std::fs;
use std::path::PathBuf;

/// Before building: a kept version whose sources are back in the source tree (a downgrade to it,
/// or its package reinstalled) is an ordinary version again: its `source` link points at its
/// sources, and its copy goes.
pub fn restore_returned(trees: &Trees) -> Vec<String> {
    let mut out = Vec::new();
    for ModuleVersion {
        name: m,
        version: v,
    } in list(trees)
    {
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
/// points at are deleted. Returns what became of each (the reporter says it, the tally counts its
/// failures).
pub fn settle(trees: &Trees, dkms: &Dkms) -> Vec<KeptSettled> {
    let mut out = Vec::new();
    let tree = DkmsTree::read(&trees.dkms);
    // A kept version that a swap cut short took out, and that could not be put back yet, is
    // installed nowhere, but not replaced: it stays for the next run to put back.
    let out_for_a_swap = crate::execute::journal::pending_swaps(trees);
    for kept in list(trees) {
        if out_for_a_swap.contains(&kept) {
            continue;
        }
        let ModuleVersion {
            name: m,
            version: v,
        } = kept;
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
            if let Err(e) = crate::system::depmod::depmod(trees, k) {
                out.push(KeptSettled::DepmodFailed(e));
            }
        }
        out.push(match r.ok() {
            true => KeptSettled::Removed {
                module: m,
                version: v,
                why: match installed {
                    true => KeptGone::NoSources,
                    false => KeptGone::Replaced,
                },
            },
            false => KeptSettled::NotRemoved {
                module: m,
                version: v,
                dkms: crate::system::dkms::exit_words(r.code),
            },
        });
    }
    remove_orphan_copies(trees);
    out
}

/// Deletes the kept copies that no dkms version points at (it was removed).
pub fn remove_orphan_copies(trees: &Trees) {
    let kept: Vec<PathBuf> = list(trees)
        .into_iter()
        .map(|k| copy_of(trees, &k.name, &k.version))
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
    use crate::system::kept::keep;
    use crate::system::kept::tests::root_with_foo;

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
