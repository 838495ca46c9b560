//! Which module source directories a pacman transaction brings, seen from a PreTransaction hook.
//!
//! The remove hook runs before pacman swaps `usr/src/foo-1.0` for `usr/src/foo-1.1`, and pacman
//! hands it only the paths that leave. Whether a new version of the same module arrives is in the
//! transaction's package files, which pacman has already downloaded and checked by then: for
//! `pacman -U FILE...` the files on its command line; for `-S`/`-Syu` the cached files of the
//! installed packages that own a `usr/src/*/dkms.conf` and that the sync databases offer at
//! another version (a `-dkms` package being upgraded). `pacman -R` brings nothing. The files are
//! found as the preflight finds them ([`crate::preflight::locate`]); only their listings are read.

use crate::preflight::archive;
use crate::preflight::locate::Source;
use crate::preflight::pacman::{PacmanPaths, PacmanView};
use crate::preflight::pkgdb;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The module source directories (`usr/src/NAME-VERSION`) that some package file brings, and
/// what could not be read on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Arriving {
    pub sources: BTreeSet<PathBuf>,
    pub notes: Vec<String>,
}

impl Arriving {
    /// Whether a version of `name` other than the one in `leaving` (`usr/src/NAME-VERSION`)
    /// arrives: a directory `NAME-<something>` with a dkms.conf. dkms takes sources only from
    /// `NAME-VERSION`, so the directory's name says the module's.
    pub fn new_version_of(&self, name: &str, leaving: &Path) -> bool {
        let prefix = format!("{name}-");
        self.sources.iter().any(|s| {
            s != leaving
                && s.file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with(&prefix))
        })
    }
}

/// What the transaction of the pacman that runs this hook brings; empty when the parent is not
/// pacman (run by hand) or is removing packages.
pub fn from_parent() -> Arriving {
    let Some(view) = PacmanView::parent() else {
        return Arriving::default();
    };
    match Source::from_pacman(&view) {
        Source::Files(files) if is_upgrade(&view) => scan(&files),
        Source::Files(_) => Arriving::default(),
        Source::Repos(paths) if is_sync(&view) => scan(&upgraded_dkms_packages(&paths)),
        Source::Repos(_) => Arriving::default(),
    }
}

fn is_upgrade(view: &PacmanView) -> bool {
    matches!(
        view.operation(),
        crate::preflight::pacman::Operation::Upgrade { .. }
    )
}

fn is_sync(view: &PacmanView) -> bool {
    matches!(view.operation(), crate::preflight::pacman::Operation::Sync)
}

/// The module source directories the package `files` hold.
pub fn scan(files: &[PathBuf]) -> Arriving {
    let mut out = Arriving::default();
    for f in files {
        match archive::package_listing(f) {
            Ok(listing) => out
                .sources
                .extend(listing.paths.iter().filter_map(|p| source_dir(p))),
            Err(e) => out.notes.push(format!(
                "cannot read package {}",
                crate::targets::printable(&e.to_string())
            )),
        }
    }
    out
}

/// `usr/src/X/dkms.conf` -> `usr/src/X`.
fn source_dir(path: &str) -> Option<PathBuf> {
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["usr", "src", dir, "dkms.conf"] if !dir.is_empty() => {
            Some(PathBuf::from(format!("usr/src/{dir}")))
        }
        _ => None,
    }
}

/// The cached files of installed packages that own a `usr/src/*/dkms.conf` and that the sync
/// databases offer at another version.
fn upgraded_dkms_packages(paths: &PacmanPaths) -> Vec<PathBuf> {
    let local_dir = paths.db_path.join("local");
    let local = pkgdb::read_local_db(&local_dir);
    let (sync, _) = pkgdb::read_sync_dbs(&paths.db_path.join("sync"));
    let mut out = Vec::new();
    for d in sync {
        let Some(installed) = local.get(&d.name) else {
            continue;
        };
        if pkgdb::same_version(installed, &d.version) {
            continue;
        }
        let files = local_dir
            .join(format!("{}-{installed}", d.name))
            .join("files");
        let owns_sources = std::fs::read_to_string(files)
            .is_ok_and(|t| t.lines().any(|l| source_dir(l.trim()).is_some()));
        if !owns_sources {
            continue;
        }
        let Some(name) = d.filename.as_deref().filter(|n| !n.contains('/')) else {
            continue;
        };
        if let Some(file) = paths
            .cache_dirs
            .iter()
            .map(|c| c.join(name))
            .find(|p| p.is_file())
        {
            out.push(file);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_version_is_another_directory_of_the_same_name() {
        let a = Arriving {
            sources: ["usr/src/foo-1.1", "usr/src/foobar-2", "usr/src/bar-1.0"]
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            notes: vec![],
        };
        assert!(a.new_version_of("foo", Path::new("usr/src/foo-1.0")));
        assert!(!a.new_version_of("foo", Path::new("usr/src/foo-1.1")));
        assert!(!a.new_version_of("bar", Path::new("usr/src/bar-1.0")));
        assert!(!a.new_version_of("baz", Path::new("usr/src/baz-1.0")));
    }

    #[test]
    fn only_top_level_dkms_confs_are_sources() {
        assert_eq!(
            source_dir("usr/src/foo-1/dkms.conf"),
            Some(PathBuf::from("usr/src/foo-1"))
        );
        assert_eq!(source_dir("usr/src/foo-1/sub/dkms.conf"), None);
        assert_eq!(source_dir("usr/src/foo-1/"), None);
    }
}
