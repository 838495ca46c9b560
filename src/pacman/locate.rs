//! Which package files bring the hook's targets, found before pacman unpacks them.
//!
//! By the time PreTransaction hooks run, pacman has downloaded and checked every package of the
//! transaction. For `pacman -U FILE...` they are the files pacman was given. For `-S`/`-Syu`
//! they are in CacheDir under the `%FILENAME%` the sync databases give for each package whose
//! offered version is not the installed one (an upgrade, a downgrade, a new package); a
//! same-version reinstall is looked for only when nothing else brings a target. Of those
//! candidates, the ones whose file list holds a target path bring it.

use super::archive;
use super::caller::{Operation, PacmanPaths, PacmanView};
use super::pkgdb;
use super::transaction::Unreadable;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A package file that brings some of the targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub file: PathBuf,
    /// Its package name (`.PKGINFO`), when it says.
    pub name: Option<String>,
    /// The targets it holds (as pacman gave them, without a trailing `/`).
    pub targets: Vec<String>,
}

/// What was found for the targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Located {
    pub packages: Vec<Found>,
    /// Targets no package file was found for.
    pub missing: Vec<String>,
    /// Things that went wrong on the way (an unreadable database), one line each.
    pub notes: Vec<String>,
    /// The package files that could not be read.
    pub unreadable: Vec<Unreadable>,
}

/// Where to look: the package files of a `-U`, or pacman's databases and cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Files(Vec<PathBuf>),
    Repos(PacmanPaths),
}

impl Source {
    /// Where to look, from what pacman was asked to do.
    pub fn from_pacman(view: &PacmanView) -> Source {
        match view.operation() {
            Operation::Upgrade { .. } => {
                Source::Files(upgrade_files(view).into_iter().map(|(p, _)| p).collect())
            }
            Operation::Sync | Operation::Unknown => Source::Repos(view.paths()),
        }
    }
}

/// For `pacman -U`: each package file, as found, with its name on pacman's command line (what
/// a message names it by: the path found may run through `/proc/PID/fd/N`).
pub fn given_names(view: &PacmanView) -> BTreeMap<PathBuf, String> {
    upgrade_files(view).into_iter().collect()
}

fn upgrade_files(view: &PacmanView) -> Vec<(PathBuf, String)> {
    let Operation::Upgrade { files } = view.operation() else {
        return vec![];
    };
    files
        .iter()
        .map(|f| {
            let found = match f.rsplit_once("://") {
                // A URL: pacman downloaded it into the cache under its last component.
                Some((_, rest)) => {
                    let name = rest.rsplit('/').next().unwrap_or(rest);
                    let paths = view.paths();
                    paths
                        .cache_dirs
                        .iter()
                        .map(|c| c.join(name))
                        .find(|p| p.is_file())
                        .unwrap_or_else(|| paths.cache_dirs[0].join(name))
                }
                None => view.resolve(f),
            };
            (found, f.clone())
        })
        .collect()
}

/// Finds the package files that bring `targets` (pacman's NeedsTargets lines).
pub fn locate(source: &Source, targets: &[String]) -> Located {
    let wanted: BTreeSet<String> = targets
        .iter()
        .map(|t| t.trim().trim_matches('/').to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    let mut out = Located::default();
    let mut left = wanted.clone();
    match source {
        Source::Files(files) => scan(files, &mut left, &mut out),
        Source::Repos(paths) => {
            let (new, same) = repo_candidates(paths, &mut out.notes);
            scan(&new, &mut left, &mut out);
            if !left.is_empty() {
                scan(&same, &mut left, &mut out);
            }
        }
    }
    out.missing = left.into_iter().collect();
    out
}

/// Reads each candidate's file list; those holding targets still unresolved bring them.
fn scan(files: &[PathBuf], left: &mut BTreeSet<String>, out: &mut Located) {
    for file in files {
        if left.is_empty() {
            return;
        }
        match archive::package_listing(file) {
            Ok(listing) => {
                let hits: Vec<String> = listing
                    .paths
                    .into_iter()
                    .filter(|p| left.contains(p))
                    .collect();
                if !hits.is_empty() {
                    for h in &hits {
                        left.remove(h);
                    }
                    out.packages.push(Found {
                        file: file.clone(),
                        name: listing.name,
                        targets: hits,
                    });
                }
            }
            Err(e) => out.unreadable.push(Unreadable::new(file, &e)),
        }
    }
}

/// The cached package files of the sync databases' packages: (not installed at that version,
/// installed at that version).
fn repo_candidates(paths: &PacmanPaths, notes: &mut Vec<String>) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (sync, errors) = pkgdb::read_sync_dbs(&paths.db_path.join("sync"), &paths.repos);
    notes.extend(
        errors
            .iter()
            .map(|e| format!("cannot read sync database {e}")),
    );
    let local = pkgdb::read_local_db(&paths.db_path.join("local"));
    let mut new = Vec::new();
    let mut same = Vec::new();
    let mut seen = BTreeSet::new();
    for d in sync {
        let Some(name) = d.filename.as_deref() else {
            continue;
        };
        if !seen.insert(name.to_owned()) {
            continue;
        }
        let Some(file) = cached(&paths.cache_dirs, name) else {
            continue;
        };
        match local.get(&d.name) {
            Some(v) if pkgdb::same_version(v, &d.version) => same.push(file),
            _ => new.push(file),
        }
    }
    (new, same)
}

fn cached(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return None;
    }
    dirs.iter().map(|d| d.join(name)).find(|p| Path::is_file(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(root: &Path, args: &str) -> PacmanView {
        PacmanView {
            fs_root: root.to_path_buf(),
            cwd: root.join("home/me"),
            args: args.split_whitespace().map(str::to_owned).collect(),
        }
    }

    #[test]
    fn upgrade_files_are_pacmans_paths_and_urls_its_downloads() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("var/cache/pacman/pkg");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(cache.join("foo-1-1-any.pkg.tar.zst"), b"").unwrap();
        let v = view(
            dir.path(),
            "-U ./a.pkg.tar.zst /srv/b.pkg.tar.zst https://example.org/repo/foo-1-1-any.pkg.tar.zst",
        );
        assert_eq!(
            Source::from_pacman(&v),
            Source::Files(vec![
                dir.path().join("home/me/./a.pkg.tar.zst"),
                dir.path().join("srv/b.pkg.tar.zst"),
                cache.join("foo-1-1-any.pkg.tar.zst"),
            ])
        );
        assert_eq!(
            Source::from_pacman(&view(dir.path(), "-Syu")),
            Source::Repos(PacmanPaths {
                db_path: dir.path().join("var/lib/pacman"),
                cache_dirs: vec![cache.clone()],
                repos: vec![],
            })
        );
    }

    /// A message names a `-U` file as it was typed, not by the path it was found at.
    #[test]
    fn upgrade_files_keep_the_names_pacman_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let v = view(dir.path(), "-U ./a.pkg.tar.zst /srv/b.pkg.tar.zst");
        let names = given_names(&v);
        assert_eq!(
            names.get(&dir.path().join("home/me/./a.pkg.tar.zst")),
            Some(&"./a.pkg.tar.zst".to_string())
        );
        assert_eq!(
            names.get(&dir.path().join("srv/b.pkg.tar.zst")),
            Some(&"/srv/b.pkg.tar.zst".to_string())
        );
        assert!(given_names(&view(dir.path(), "-Syu")).is_empty());
    }

    #[test]
    fn a_target_nothing_brings_is_missing_and_an_unreadable_file_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.pkg.tar.zst");
        std::fs::write(&bad, b"\x28\xb5\x2f\xfdnot zstd at all").unwrap();
        let got = locate(
            &Source::Files(vec![bad.clone(), dir.path().join("absent.pkg.tar.zst")]),
            &["usr/src/foo-1/dkms.conf".into(), "  \n".into()],
        );
        assert!(got.packages.is_empty());
        assert_eq!(got.missing, ["usr/src/foo-1/dkms.conf"]);
        assert!(got.notes.is_empty(), "{:?}", got.notes);
        assert_eq!(got.unreadable.len(), 2, "{:?}", got.unreadable);
        assert_eq!(got.unreadable[0].file, bad);
        assert!(!got.unreadable[0].why.contains(&*bad.to_string_lossy()));
    }
}
