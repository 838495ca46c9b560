//! The packages of the transaction that the preflight runs before, and the paths that it takes
//! away: what the view of the system after the transaction is made of ([`crate::preflight::view`]).
//!
//! pacman hands a PreTransaction hook the paths that matched, not its transaction; the package
//! files and pacman's databases say the rest, read without libalpm:
//! - `pacman -U FILE...`: those files.
//! - `pacman -S NAME...`, `-Syu`: the sync databases' packages, each from the file pacman has
//!   downloaded into its CacheDir by the time the hook runs: the packages named, and with `-u`
//!   every installed package that the repositories offer in a newer version (in another with
//!   `-uu`), but those IgnorePkg names; then the packages these depend on that nothing installed
//!   provides, as pacman pulls them in. A package whose file is not in the cache is not in the
//!   transaction (pacman downloads every package before the hooks run).
//! - Both: the installed packages that an incoming one replaces (`-Su`) or conflicts with are
//!   removed.
//!
//! What leaves: the files of an upgraded package's installed version that its new version does
//! not hold, and every file of a removed package. The preflight adds the packages that bring its
//! targets (pacman's own word on what arrives) whatever these rules say
//! ([`Transaction::add`]).

use super::archive::{self, Listing};
use super::caller::{PacmanPaths, SyncRequest};
use super::pkgdb::{self, Desc};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One package the transaction installs or upgrades.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub file: PathBuf,
    pub listing: Listing,
}

impl Package {
    pub fn name(&self) -> &str {
        self.listing.name.as_deref().unwrap_or_default()
    }
}

/// What the transaction brings and takes away.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    /// The packages installed or upgraded, in the order found.
    pub packages: Vec<Package>,
    /// The installed packages it removes (replaced, or in conflict with an incoming one).
    pub removed: BTreeSet<String>,
    /// The paths that go (relative to the root; a directory with a trailing `/`): installed
    /// files that no incoming package holds.
    pub leaving: BTreeSet<String>,
    /// What could not be read on the way, one line each (but the package files).
    pub notes: Vec<String>,
    /// The package files that could not be read, once each.
    pub unreadable: Vec<Unreadable>,
}

/// A package file that could not be read, and why (in words, without its path: the caller
/// names the file as pacman was given it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub file: PathBuf,
    pub why: String,
}

impl Unreadable {
    pub fn new(file: &Path, e: &archive::ArchiveError) -> Unreadable {
        Unreadable {
            file: file.to_path_buf(),
            why: crate::os::text::printable(&e.reason()),
        }
    }
}

impl Transaction {
    /// `pacman -U`: the package files given.
    pub fn from_files(files: &[PathBuf], local_dir: &Path) -> Transaction {
        let mut t = Transaction::default();
        for f in files {
            t.read_and_add(f);
        }
        t.settle(local_dir, false);
        t
    }

    /// `pacman -S`: what `req` asks of the sync databases of the configured repositories in
    /// `paths.db_path/sync`, from the package files in `paths.cache_dirs`.
    pub fn from_repos(paths: &PacmanPaths, req: &SyncRequest) -> Transaction {
        let (db_path, cache_dirs) = (&paths.db_path, &paths.cache_dirs);
        let mut t = Transaction::default();
        let (descs, errors) = pkgdb::read_sync_dbs(&db_path.join("sync"), &paths.repos);
        t.notes.extend(
            errors
                .iter()
                .map(|e| format!("cannot read sync database {e}")),
        );
        // The first repository that has a name is the one pacman takes it from.
        let mut sync: BTreeMap<String, Desc> = BTreeMap::new();
        for d in descs {
            sync.entry(d.name.clone()).or_insert(d);
        }
        let local = pkgdb::read_local_descs(&db_path.join("local"));
        let mut wanted: BTreeSet<String> = BTreeSet::new();
        for name in &req.targets {
            // `repo/name` names the repository too.
            let name = name.rsplit('/').next().unwrap_or(name);
            if sync.contains_key(name) {
                wanted.insert(name.to_owned());
            }
        }
        if req.sysupgrade > 0 {
            for (name, d) in &sync {
                let Some(installed) = local.get(name) else {
                    // A package that replaces an installed one comes with -u.
                    if d.replaces
                        .iter()
                        .any(|r| local.contains_key(pkgdb::relation_name(r)))
                    {
                        wanted.insert(name.clone());
                    }
                    continue;
                };
                let order = pkgdb::vercmp(&d.version, &installed.version);
                let upgrade = order > 0 || (req.sysupgrade > 1 && order != 0);
                if upgrade && !req.ignored(name) {
                    wanted.insert(name.clone());
                }
            }
        }
        // The dependencies nothing installed (nor already wanted) satisfies.
        let mut todo: Vec<String> = wanted.iter().cloned().collect();
        while let Some(name) = todo.pop() {
            let Some(d) = sync.get(&name) else { continue };
            for dep in &d.depends {
                let dep = pkgdb::relation_name(dep);
                let gives = |x: &Desc| {
                    x.name == dep || x.provides.iter().any(|p| pkgdb::relation_name(p) == dep)
                };
                if local.values().any(gives) || wanted.iter().filter_map(|w| sync.get(w)).any(gives)
                {
                    continue;
                }
                let provider = sync.get(dep).map(|d| d.name.clone()).or_else(|| {
                    sync.values()
                        .find(|x| x.provides.iter().any(|p| pkgdb::relation_name(p) == dep))
                        .map(|x| x.name.clone())
                });
                if let Some(p) = provider {
                    if wanted.insert(p.clone()) {
                        todo.push(p);
                    }
                }
            }
        }
        for name in &wanted {
            let Some(file) = sync
                .get(name)
                .and_then(|d| d.filename.as_deref())
                .and_then(|f| cached(cache_dirs, f))
            else {
                continue;
            };
            t.read_and_add(&file);
        }
        t.settle(&db_path.join("local"), req.sysupgrade > 0);
        t
    }

    fn read_and_add(&mut self, file: &Path) {
        match archive::package_listing(file) {
            Ok(listing) => self.packages.push(Package {
                file: file.to_path_buf(),
                listing,
            }),
            Err(e) => {
                if !self.unreadable.iter().any(|u| u.file == file) {
                    self.unreadable.push(Unreadable::new(file, &e));
                }
            }
        }
    }

    /// Adds a package that the rules above did not find (one that brings a target), and
    /// settles again what leaves.
    pub fn add(&mut self, file: &Path, local_dir: &Path) {
        if self.packages.iter().any(|p| p.file == file) {
            return;
        }
        self.read_and_add(file);
        self.settle(local_dir, false);
    }

    /// Works out what is removed and what leaves, from the local database.
    fn settle(&mut self, local_dir: &Path, replaces: bool) {
        let local = pkgdb::read_local_descs(local_dir);
        let incoming: BTreeSet<&str> = self.packages.iter().map(Package::name).collect();
        for p in &self.packages {
            let l = &p.listing;
            let mut gone: Vec<&str> = l
                .conflicts
                .iter()
                .map(|c| pkgdb::relation_name(c))
                .collect();
            if replaces {
                gone.extend(l.replaces.iter().map(|r| pkgdb::relation_name(r)));
            }
            for g in gone {
                for (name, d) in &local {
                    let matches =
                        name == g || d.provides.iter().any(|x| pkgdb::relation_name(x) == g);
                    if matches && !incoming.contains(name.as_str()) && name != p.name() {
                        self.removed.insert(name.clone());
                    }
                }
            }
        }
        let arriving: BTreeSet<&str> = self
            .packages
            .iter()
            .flat_map(|p| p.listing.paths.iter().map(String::as_str))
            .collect();
        let mut leaving = BTreeSet::new();
        let owners = self
            .packages
            .iter()
            .map(Package::name)
            .chain(self.removed.iter().map(String::as_str));
        for name in owners {
            let Some(d) = local.get(name) else { continue };
            for f in pkgdb::local_files(local_dir, name, &d.version) {
                if !arriving.contains(f.trim_end_matches('/')) {
                    leaving.insert(f);
                }
            }
        }
        self.leaving = leaving;
    }

    /// Of `targets` (pacman's paths, without a trailing `/`), the ones no package of the
    /// transaction holds.
    pub fn unbrought<'a>(&self, targets: &'a BTreeSet<String>) -> Vec<&'a String> {
        let held: BTreeSet<&str> = self
            .packages
            .iter()
            .flat_map(|p| p.listing.paths.iter().map(String::as_str))
            .collect();
        targets
            .iter()
            .filter(|t| !held.contains(t.as_str()))
            .collect()
    }

    /// What leaves, in the terms the preflight reasons in.
    pub fn leaving_parts(&self) -> Leaving {
        let mut out = Leaving::default();
        for line in &self.leaving {
            let parts: Vec<&str> = line.trim_end_matches('/').split('/').collect();
            match parts.as_slice() {
                ["usr", "lib", "modules", k, "build", "include"] => {
                    out.kernels.insert((*k).to_owned());
                }
                ["usr", "lib", "modules", k, "vmlinuz"] => {
                    out.images.insert((*k).to_owned());
                }
                ["usr", "src", dir, "dkms.conf"] => {
                    out.sources.insert(PathBuf::from(format!("usr/src/{dir}")));
                }
                _ => {}
            }
        }
        out
    }
}

/// What the transaction takes away that the preflight must not count on: the kernels whose
/// headers go, the kernels whose image goes (those an incoming kernel replaces), and the module
/// source directories that go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leaving {
    /// Kernel releases whose `usr/lib/modules/K/build/` goes.
    pub kernels: BTreeSet<String>,
    /// Kernel releases whose image (`usr/lib/modules/K/vmlinuz`) goes.
    pub images: BTreeSet<String>,
    /// Module source directories that go, e.g. `usr/src/foo-1.0`.
    pub sources: BTreeSet<PathBuf>,
}

fn cached(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return None;
    }
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}
