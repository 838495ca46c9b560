//! Which module source directories a pacman transaction brings, seen from a PreTransaction hook.
//!
//! The remove hook runs before pacman swaps `usr/src/foo-1.0` for `usr/src/foo-1.1`, and pacman
//! hands it only the paths that leave. Whether a new version of the same module arrives is in the
//! transaction's package files, which pacman has already downloaded and checked by then: for
//! `pacman -U FILE...` the files on its command line; for `-S`/`-Syu` the cached files of the
//! installed packages that own a `usr/src/*/dkms.conf` and that the sync databases offer at
//! another version (a `-dkms` package being upgraded), and of the packages that replace or
//! conflict with one (a module that changes package name: Arch's `nvidia-open-dkms` replacing
//! `nvidia-dkms`; `-Syu` takes its `replaces`, `-S` its `conflicts`). `pacman -R` brings nothing.
//! The files are found as the preflight finds them ([`crate::pacman::locate`]); only their
//! listings are read.

use crate::pacman::archive;
use crate::pacman::caller::{PacmanPaths, PacmanView};
use crate::pacman::locate::Source;
use crate::pacman::pkgdb;
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
        Source::Repos(paths) if is_sync(&view) => scan(&incoming_dkms_packages(&paths)),
        Source::Repos(_) => Arriving::default(),
    }
}

fn is_upgrade(view: &PacmanView) -> bool {
    matches!(
        view.operation(),
        crate::pacman::caller::Operation::Upgrade { .. }
    )
}

fn is_sync(view: &PacmanView) -> bool {
    matches!(view.operation(), crate::pacman::caller::Operation::Sync)
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
                crate::os::text::printable(&e.to_string())
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

/// The cached files of the sync databases' packages that bring a new version of an installed
/// module's sources: an installed package that owns a `usr/src/*/dkms.conf` offered at another
/// version, or a package not installed that replaces or conflicts with one (by its name or by
/// what it provides; a version constraint is not checked: a package that does not leave sends
/// no path to the remove hook anyway).
fn incoming_dkms_packages(paths: &PacmanPaths) -> Vec<PathBuf> {
    let local_dir = paths.db_path.join("local");
    let local = installed_packages(&local_dir);
    let (sync, _) = pkgdb::read_sync_dbs(&paths.db_path.join("sync"), &paths.repos);
    let owns_sources = |p: &Installed| {
        std::fs::read_to_string(p.dir.join("files"))
            .is_ok_and(|t| t.lines().any(|l| source_dir(l.trim()).is_some()))
    };
    let mut out = Vec::new();
    for d in sync {
        let brings = match local.iter().find(|p| p.desc.name == d.name) {
            Some(installed) => {
                !pkgdb::same_version(&installed.desc.version, &d.version) && owns_sources(installed)
            }
            None => {
                let named: Vec<&str> = d
                    .replaces
                    .iter()
                    .chain(&d.conflicts)
                    .map(|e| pkgdb::relation_name(e))
                    .collect();
                local.iter().any(|p| {
                    let names = std::iter::once(&p.desc.name).chain(&p.desc.provides);
                    names
                        .map(|n| pkgdb::relation_name(n))
                        .any(|n| named.contains(&n))
                        && owns_sources(p)
                })
            }
        };
        if !brings {
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

/// An installed package: its local database entry and that entry's directory.
struct Installed {
    desc: pkgdb::Desc,
    dir: PathBuf,
}

/// Every installed package (`local_dir/*/desc`).
fn installed_packages(local_dir: &Path) -> Vec<Installed> {
    let Ok(entries) = std::fs::read_dir(local_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path().join("desc")).ok()?;
            Some(Installed {
                desc: pkgdb::parse_desc(&text)?,
                dir: e.path(),
            })
        })
        .collect()
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

    /// A pacman DBPath and CacheDir: `local` holds (name, version, extra desc lines, files),
    /// the sync database `test.db` the descs `sync`, each offered package's file cached.
    fn pacman_dirs(local: &[(&str, &str, &str, &str)], sync: &[(&str, &str, &str)]) -> PacmanPaths {
        let dir = tempfile::tempdir().unwrap().keep();
        let db_path = dir.join("db");
        let cache = dir.join("cache");
        std::fs::create_dir_all(db_path.join("sync")).unwrap();
        std::fs::create_dir_all(&cache).unwrap();
        for (name, version, extra, files) in local {
            let entry = db_path.join(format!("local/{name}-{version}"));
            std::fs::create_dir_all(&entry).unwrap();
            let desc = format!("%NAME%\n{name}\n\n%VERSION%\n{version}\n\n{extra}");
            std::fs::write(entry.join("desc"), desc).unwrap();
            std::fs::write(entry.join("files"), format!("%FILES%\n{files}\n")).unwrap();
        }
        for (name, version, _) in sync {
            let file = format!("{name}-{version}-any.pkg.tar.zst");
            std::fs::write(cache.join(&file), b"").unwrap();
        }
        crate::pacman::pkgdb::write_sync_db(&db_path.join("sync/test.db"), sync);
        PacmanPaths {
            db_path,
            cache_dirs: vec![cache],
            repos: vec!["test".into()],
        }
    }

    fn names(files: Vec<PathBuf>) -> Vec<String> {
        let mut n: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    /// Defect (issue 16): under -S/-Syu only a same-name upgrade counted, so a module whose
    /// package changed name (nvidia-dkms -> nvidia-open-dkms) lost its old version before the
    /// new one was built.
    #[test]
    fn a_package_that_replaces_or_conflicts_with_an_installed_dkms_package_brings_its_sources() {
        let foo = "usr/src/\nusr/src/foo-1.0/\nusr/src/foo-1.0/dkms.conf";
        let paths = pacman_dirs(
            &[
                ("foo-dkms", "1.0-1", "%PROVIDES%\nFOO-MODULE\n\n", foo),
                ("bar-dkms", "2-1", "", "usr/src/bar-2/dkms.conf"),
                ("tool", "1-1", "", "usr/bin/tool"),
            ],
            &[
                // By `replaces` (what -Syu acts on), with a version constraint.
                ("foo-open-dkms", "1.1-1", "%REPLACES%\nfoo-dkms<1.1\n\n"),
                // By `conflicts` with what foo-dkms provides (what -S asks about).
                ("foo-git-dkms", "1.2-1", "%CONFLICTS%\nFOO-MODULE\n\n"),
                // A same-name upgrade, as before.
                ("bar-dkms", "3-1", ""),
                // Replacing a package that owns no module sources, or nothing installed.
                ("tool-ng", "2-1", "%REPLACES%\ntool\n\n"),
                ("baz-dkms", "1-1", "%CONFLICTS%\nnot-installed\n\n"),
                // Installed at that version: not in the transaction.
                ("tool", "1-1", ""),
            ],
        );
        assert_eq!(
            names(incoming_dkms_packages(&paths)),
            [
                "bar-dkms-3-1-any.pkg.tar.zst",
                "foo-git-dkms-1.2-1-any.pkg.tar.zst",
                "foo-open-dkms-1.1-1-any.pkg.tar.zst",
            ]
        );
        let _ = std::fs::remove_dir_all(paths.db_path.parent().unwrap());
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
