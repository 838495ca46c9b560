//! pacman's package databases, read without libalpm: the sync databases (`DBPath/sync/REPO.db`,
//! tar archives of `NAME-VERSION/desc` entries) say which version of each package the
//! repositories offer and its package file's name (`%FILENAME%`); the local database
//! (`DBPath/local/NAME-VERSION/desc`) says which version is installed. Versions are compared as
//! pacman does (`alpm-types`' vercmp).
//!
//! A `desc` entry is `%KEY%` lines each followed by values and a blank line (alpm-repo-desc(5),
//! alpm-db-desc(5)). Only NAME, VERSION, FILENAME and the PROVIDES, CONFLICTS and REPLACES lists
//! are read, and leniently: `alpm-repo-db`'s
//! strict parser takes a database with an `%MD5SUM%` for schema v1, which requires a
//! `%PGPSIG%` that `repo-add` writes only for signed packages, so it would reject the unsigned
//! local repositories many users keep.

use super::archive::{self, ArchiveError};
use alpm_types::FullVersion;
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

/// One package as a database describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desc {
    pub name: String,
    /// `[EPOCH:]PKGVER-PKGREL`.
    pub version: String,
    /// The package file's name (sync databases only).
    pub filename: Option<String>,
    /// Relations, as written (`glibc>=2.38`, `sh`): what the package needs, what it also
    /// counts as, which installed packages it takes the place of, which it cannot live with.
    pub depends: Vec<String>,
    pub provides: Vec<String>,
    pub replaces: Vec<String>,
    pub conflicts: Vec<String>,
}

/// Parses one `desc` entry; `None` without a NAME or a VERSION.
pub fn parse_desc(text: &str) -> Option<Desc> {
    let mut fields: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let key = line.trim();
        if key.len() > 2 && key.starts_with('%') && key.ends_with('%') {
            let values = fields.entry(&key[1..key.len() - 1]).or_default();
            for value in lines.by_ref() {
                let value = value.trim();
                if value.is_empty() {
                    break;
                }
                values.push(value);
            }
        }
    }
    let first = |k: &str| fields.get(k).and_then(|v| v.first()).copied();
    let all = |k: &str| -> Vec<String> {
        fields
            .get(k)
            .map(|v| v.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default()
    };
    Some(Desc {
        name: first("NAME").filter(|v| !v.is_empty())?.to_string(),
        version: first("VERSION").filter(|v| !v.is_empty())?.to_string(),
        filename: first("FILENAME").map(str::to_string),
        depends: all("DEPENDS"),
        provides: all("PROVIDES"),
        replaces: all("REPLACES"),
        conflicts: all("CONFLICTS"),
    })
}

/// The package name of a relation (`glibc>=2.38` -> `glibc`, `sh` -> `sh`).
pub fn relation_name(relation: &str) -> &str {
    relation
        .split(['<', '>', '=', ':'])
        .next()
        .unwrap_or(relation)
        .trim()
}

/// Whether two pacman versions differ (vercmp; as strings when one does not parse).
pub fn same_version(a: &str, b: &str) -> bool {
    match (FullVersion::from_str(a), FullVersion::from_str(b)) {
        (Ok(x), Ok(y)) => x.vercmp(&y) == 0,
        _ => a == b,
    }
}

/// pacman's version order (`vercmp`): negative, zero or positive.
pub fn vercmp(a: &str, b: &str) -> i8 {
    match (FullVersion::from_str(a), FullVersion::from_str(b)) {
        (Ok(x), Ok(y)) => x.vercmp(&y),
        _ => a.cmp(b) as i8,
    }
}

/// Every package of the sync databases of the repositories `repos` (`sync_dir/REPO.db`, in that
/// order: pacman.conf's, where the first repository that has a package is the one pacman takes
/// it from); a repository without its database is skipped, a database that cannot be read is an
/// error beside the others' packages. A `*.db` in `sync_dir` of a repository pacman.conf no
/// longer configures is left there by pacman and is not read, as pacman does not.
pub fn read_sync_dbs(sync_dir: &Path, repos: &[String]) -> (Vec<Desc>, Vec<ArchiveError>) {
    let dbs = repos
        .iter()
        .map(|r| sync_dir.join(format!("{r}.db")))
        .filter(|p| p.exists());
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for db in dbs {
        let is_desc = |p: &Path| p.components().count() == 2 && p.ends_with("desc");
        match archive::read_entries(&db, is_desc) {
            Ok(entries) => out.extend(entries.iter().filter_map(|(_, t)| parse_desc(t))),
            Err(e) => errors.push(e),
        }
    }
    (out, errors)
}

/// The installed packages: name -> version, from `local_dir/*/desc`.
pub fn read_local_db(local_dir: &Path) -> BTreeMap<String, String> {
    read_local_descs(local_dir)
        .into_iter()
        .map(|(name, d)| (name, d.version))
        .collect()
}

/// The installed packages: name -> their `desc`, from `local_dir/*/desc`.
pub fn read_local_descs(local_dir: &Path) -> BTreeMap<String, Desc> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(local_dir) else {
        return out;
    };
    for e in dir.filter_map(Result::ok) {
        if let Some(d) = std::fs::read_to_string(e.path().join("desc"))
            .ok()
            .as_deref()
            .and_then(parse_desc)
        {
            out.insert(d.name.clone(), d);
        }
    }
    out
}

/// The paths an installed package owns, from `local_dir/NAME-VERSION/files` (relative to the
/// root, directories with a trailing `/`, as pacman writes them).
pub fn local_files(local_dir: &Path, name: &str, version: &str) -> Vec<String> {
    let text = std::fs::read_to_string(local_dir.join(format!("{name}-{version}/files")))
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut in_files = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('%') && line.ends_with('%') {
            in_files = line == "%FILES%";
        } else if in_files && !line.is_empty() {
            out.push(line.to_owned());
        }
    }
    out
}

/// Test fixture: a gzipped sync database at `path` offering `entries` (name, version, more
/// `desc` lines), each package file named `NAME-VERSION-any.pkg.tar.zst`.
#[cfg(test)]
pub(crate) fn write_sync_db(path: &Path, entries: &[(&str, &str, &str)]) {
    let db = std::fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(db, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, version, extra) in entries {
        let desc = format!(
            "%FILENAME%\n{name}-{version}-any.pkg.tar.zst\n\n%NAME%\n{name}\n\n\
             %VERSION%\n{version}\n\n{extra}"
        );
        let mut h = tar::Header::new_gnu();
        h.set_size(desc.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("{name}-{version}/desc"), desc.as_bytes())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repo_add_desc() {
        let d = parse_desc(
            "%FILENAME%\nlinux-6.9.1.arch1-1-x86_64.pkg.tar.zst\n\n%NAME%\nlinux\n\n\
             %BASE%\nlinux\n\n%VERSION%\n6.9.1.arch1-1\n\n%MD5SUM%\nabc\n\n%DEPENDS%\ncoreutils\nkmod\n\n",
        )
        .unwrap();
        assert_eq!(d.name, "linux");
        assert_eq!(d.version, "6.9.1.arch1-1");
        assert_eq!(
            d.filename.as_deref(),
            Some("linux-6.9.1.arch1-1-x86_64.pkg.tar.zst")
        );
        assert_eq!(d.depends, ["coreutils", "kmod"]);
        assert!(d.provides.is_empty());
        assert_eq!(parse_desc("%NAME%\nfoo\n\n"), None, "no version");
        assert_eq!(relation_name("glibc>=2.38"), "glibc");
        assert_eq!(relation_name("sh"), "sh");
        assert_eq!(relation_name("libfoo.so=1-64"), "libfoo.so");
    }

    #[test]
    fn a_replacing_packages_lists() {
        let d = parse_desc(
            "%NAME%\nnvidia-open-dkms\n\n%VERSION%\n590.44.01-1\n\n\
             %CONFLICTS%\nnvidia-dkms\nNVIDIA-MODULE<600\n\n%PROVIDES%\nNVIDIA-MODULE\n\n\
             %REPLACES%\nnvidia-dkms\n\n",
        )
        .unwrap();
        assert_eq!(d.conflicts, ["nvidia-dkms", "NVIDIA-MODULE<600"]);
        assert_eq!(d.provides, ["NVIDIA-MODULE"]);
        assert_eq!(d.replaces, ["nvidia-dkms"]);
        assert_eq!(relation_name(&d.conflicts[1]), "NVIDIA-MODULE");
        assert_eq!(relation_name("foo>=1.0"), "foo");
        assert_eq!(relation_name("foo"), "foo");
        // An empty value list (a key without values) is no value.
        assert_eq!(parse_desc("%NAME%\n\n%VERSION%\n1-1\n"), None);
    }

    #[test]
    fn versions_compare_as_pacman_does() {
        assert!(vercmp("6.9.1.arch1-1", "6.10.arch1-1") < 0);
        assert!(vercmp("1:1.0-1", "2.0-1") > 0);
        assert!(vercmp("1.0-2", "1.0-1") > 0);
        assert!(same_version("1.0-1", "1.0-1"));
        assert!(!same_version("1.0-1", "1.0-2"));
    }

    /// A sync database `dir/REPO.db` offering `packages` (name, version).
    fn sync_db(dir: &Path, repo: &str, packages: &[(&str, &str)]) {
        let entries: Vec<(&str, &str, &str)> = packages.iter().map(|(n, v)| (*n, *v, "")).collect();
        write_sync_db(&dir.join(format!("{repo}.db")), &entries);
    }

    /// Only the configured repositories are read, in pacman.conf's order: a `stale.db` pacman
    /// left behind when its section was removed offers nothing, and `zeta` before `alpha` in
    /// the list comes first although it sorts after.
    #[test]
    fn only_the_configured_repositories_in_their_order() {
        let dir = tempfile::tempdir().unwrap();
        sync_db(dir.path(), "alpha", &[("linux", "6.9-1"), ("foo", "1-1")]);
        sync_db(dir.path(), "zeta", &[("linux", "6.8-1")]);
        sync_db(dir.path(), "stale", &[("linux", "7.0-1"), ("bar", "1-1")]);
        let repos = ["zeta", "alpha", "missing"].map(String::from);
        let (descs, errors) = read_sync_dbs(dir.path(), &repos);
        assert!(errors.is_empty(), "{errors:?}");
        let got: Vec<(&str, &str)> = descs
            .iter()
            .map(|d| (d.name.as_str(), d.version.as_str()))
            .collect();
        assert_eq!(
            got,
            [("linux", "6.8-1"), ("linux", "6.9-1"), ("foo", "1-1")]
        );
        assert!(read_sync_dbs(dir.path(), &[]).0.is_empty());
    }
}
