//! Reading a built package for `lint`: its .PKGINFO, its .INSTALL, the list of its files, and its
//! module sources (`usr/src/*/`) unpacked into a temporary directory so dkms.conf can be evaluated.
//!
//! The archive is read with the ALPM project's pure-Rust crates (`alpm-package` for the file name
//! and the decompressing tar reader, `alpm-types` for names, versions and relations), never with
//! libalpm: one pass over the entries, whatever order they come in.
//!
//! .PKGINFO is not handed whole to `alpm-pkginfo`: it rejects what makepkg writes by default and
//! pacman installs (`packager = Unknown Packager` without an e-mail address, an empty `url = `),
//! which would make most locally built packages "not a package". Only the fields lint uses are
//! read, each validated by its alpm-types parser.

use alpm_package::{Package, PackageReader};
use alpm_types::{FullVersion, Name, PackageRelation, RelationOrSoname};
use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

/// A file that cannot be linted, and why.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not a package at all (wrong name, not an archive, no valid .PKGINFO).
    #[error("{path}: not a package: {reason}")]
    NotAPackage { path: String, reason: String },
    /// A file that cannot be opened.
    #[error("{path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A package whose sources could not be unpacked for evaluation.
    #[error("{path}: cannot unpack its module sources: {source}")]
    Unpack {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What a package file says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageFacts {
    pub name: String,
    /// `pkgver` alone: no epoch, no pkgrel.
    pub pkgver: String,
    /// Names only (a version requirement such as `dkms>=3` is dropped).
    pub depends: Vec<String>,
    pub conflicts: Vec<String>,
    /// The .INSTALL scriptlet, when there is one.
    pub install: Option<String>,
    /// Every data path in the archive, without a leading `./` or trailing `/`.
    pub files: Vec<DataPath>,
}

/// One data entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DataPath {
    pub path: String,
    pub is_dir: bool,
}

impl PackageFacts {
    pub fn has_file(&self, path: &str) -> bool {
        self.files.iter().any(|f| !f.is_dir && f.path == path)
    }
}

/// A package read, with its module sources unpacked under `dir` (kept until this is dropped).
#[derive(Debug)]
pub struct ReadPackage {
    pub facts: PackageFacts,
    /// The temporary root: `usr/src/*/` of the package is unpacked below it.
    pub dir: tempfile::TempDir,
    /// The in-package paths of the dkms.conf files found at `usr/src/*/dkms.conf`.
    pub confs: Vec<String>,
}

/// Reads `path` and unpacks its `usr/src/*/` into a new temporary directory.
pub fn read(path: &Path) -> Result<ReadPackage, ReadError> {
    let shown = path.display().to_string();
    let not_a_package = |reason: String| ReadError::NotAPackage {
        path: shown.clone(),
        reason: one_line(&reason),
    };
    let unpack = |source| ReadError::Unpack {
        path: shown.clone(),
        source,
    };
    // alpm-package wants an existing file in an absolute directory.
    let abs = fs::canonicalize(path).map_err(|source| ReadError::Open {
        path: shown.clone(),
        source,
    })?;
    if !abs.is_file() {
        return Err(not_a_package("not a regular file".into()));
    }
    // The crate's own message echoes the name with a caret under it: ours says what it wants.
    let package = Package::try_from(abs.as_path()).map_err(|_| {
        not_a_package("its file name is not NAME-PKGVER-PKGREL-ARCH.pkg.tar.{zst,xz,gz,bz2}".into())
    })?;
    let mut reader = PackageReader::try_from(package).map_err(|e| not_a_package(e.to_string()))?;
    let dir = tempfile::Builder::new()
        .prefix("dkms-hook-lint.")
        .tempdir()
        .map_err(unpack)?;
    let mut pkginfo: Option<PackageFacts> = None;
    let mut install = None;
    let mut files = Vec::new();
    let mut links = BTreeSet::new();
    let entries = reader
        .raw_entries()
        .map_err(|e| not_a_package(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| not_a_package(e.to_string()))?;
        let Some(rel) = clean(entry.path()) else {
            continue;
        };
        match rel.as_str() {
            ".PKGINFO" => {
                let text = read_text(&mut entry).map_err(|e| not_a_package(e.to_string()))?;
                let info =
                    parse_pkginfo(&text).map_err(|e| not_a_package(format!(".PKGINFO: {e}")))?;
                pkginfo = Some(info);
            }
            ".INSTALL" => {
                install = Some(read_text(&mut entry).map_err(|e| not_a_package(e.to_string()))?);
            }
            ".BUILDINFO" | ".MTREE" => {}
            _ => {
                let is_dir = entry.is_dir();
                if is_source_path(&rel) {
                    let target = dir.path().join(&rel);
                    // Never write through a link the package made: it could point anywhere.
                    let through_link = Path::new(&rel).ancestors().any(|a| links.contains(a));
                    if !through_link {
                        if is_dir {
                            fs::create_dir_all(&target).map_err(unpack)?;
                        } else if entry.is_symlink() {
                            if let Ok(Some(to)) = entry.raw().link_name() {
                                make_parent(&target).map_err(unpack)?;
                                let _ = fs::remove_file(&target);
                                std::os::unix::fs::symlink(to.as_ref(), &target).map_err(unpack)?;
                                links.insert(PathBuf::from(&rel));
                            }
                        } else if entry.is_file() {
                            make_parent(&target).map_err(unpack)?;
                            let mode = entry.permissions().unwrap_or(0o644);
                            let mut bytes = Vec::new();
                            entry.read_to_end(&mut bytes).map_err(unpack)?;
                            fs::write(&target, bytes).map_err(unpack)?;
                            fs::set_permissions(
                                &target,
                                fs::Permissions::from_mode((mode & 0o777) | 0o600),
                            )
                            .map_err(unpack)?;
                        }
                    }
                }
                files.push(DataPath { path: rel, is_dir });
            }
        }
    }
    let Some(mut facts) = pkginfo else {
        return Err(not_a_package("no .PKGINFO in the archive".into()));
    };
    facts.install = install;
    files.sort();
    files.dedup();
    let confs = files
        .iter()
        .filter(|f| !f.is_dir && is_module_conf(&f.path))
        .map(|f| f.path.clone())
        .collect();
    facts.files = files;
    Ok(ReadPackage { facts, dir, confs })
}

/// `usr/src/X/dkms.conf`, exactly one directory deep.
fn is_module_conf(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    parts.len() == 4 && parts[0] == "usr" && parts[1] == "src" && parts[3] == "dkms.conf"
}

/// Anything below `usr/src/X/` (X itself included).
fn is_source_path(path: &str) -> bool {
    path.strip_prefix("usr/src/")
        .is_some_and(|rest| !rest.is_empty())
}

/// An archive path made relative and plain: no `./`, no trailing `/`; `None` for `..` or `/`.
fn clean(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The crates' multi-line messages (a parser's echo of its input, a caret) as one line.
fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_text(r: &mut impl Read) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn make_parent(p: &Path) -> std::io::Result<()> {
    match p.parent() {
        Some(d) => fs::create_dir_all(d),
        None => Ok(()),
    }
}

/// The fields of .PKGINFO that lint uses: `pkgname`, `pkgver`, `depend`, `conflict`. Other lines
/// are not looked at; a field lint uses that does not parse makes the file not a package.
fn parse_pkginfo(text: &str) -> Result<PackageFacts, String> {
    let mut facts = PackageFacts::default();
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {line:?} is not KEY = VALUE"));
        };
        let value = value.trim();
        let bad = |e: &dyn std::fmt::Display| {
            format!("{} = {value}: {}", key.trim(), one_line(&e.to_string()))
        };
        match key.trim() {
            "pkgname" => name = Some(Name::from_str(value).map_err(|e| bad(&e))?.to_string()),
            "pkgver" => {
                let v = FullVersion::from_str(value).map_err(|e| bad(&e))?;
                version = Some(v.pkgver.to_string());
            }
            "depend" => {
                if let RelationOrSoname::Relation(r) =
                    RelationOrSoname::from_str(value).map_err(|e| bad(&e))?
                {
                    facts.depends.push(r.name.to_string());
                }
            }
            "conflict" => {
                let r = PackageRelation::from_str(value).map_err(|e| bad(&e))?;
                facts.conflicts.push(r.name.to_string());
            }
            _ => {}
        }
    }
    facts.name = name.ok_or("no pkgname")?;
    facts.pkgver = version.ok_or("no pkgver")?;
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkginfo_as_makepkg_writes_it_by_default() {
        let f = parse_pkginfo(
            "# Generated by makepkg 6.0.2\npkgname = foo-dkms\npkgbase = foo-dkms\n\
             pkgver = 1:1.2-3\nurl = \npackager = Unknown Packager\nlicense = GPL2\n\
             depend = dkms>=3\ndepend = libfoo.so=1-64\nconflict = foo<1.2\n",
        )
        .unwrap();
        assert_eq!(f.name, "foo-dkms");
        assert_eq!(f.pkgver, "1.2");
        assert_eq!(f.depends, ["dkms"]);
        assert_eq!(f.conflicts, ["foo"]);
        assert_eq!(parse_pkginfo("pkgver = 1-1\n").unwrap_err(), "no pkgname");
        let e = parse_pkginfo("pkgname = Foo Bar\npkgver = 1-1\n").unwrap_err();
        assert!(e.starts_with("pkgname = Foo Bar: "), "{e}");
    }

    #[test]
    fn archive_paths_are_made_plain_and_safe() {
        assert_eq!(clean(Path::new("./usr/src/")).as_deref(), Some("usr/src"));
        assert_eq!(clean(Path::new("usr/src/a/../../etc")), None);
        assert_eq!(clean(Path::new("/etc/passwd")), None);
        assert!(is_module_conf("usr/src/foo-1.0/dkms.conf"));
        assert!(!is_module_conf("usr/src/foo-1.0/sub/dkms.conf"));
        assert!(!is_module_conf("usr/src/dkms.conf"));
        assert!(is_source_path("usr/src/foo-1.0"));
        assert!(!is_source_path("usr/src"));
        assert!(!is_source_path("usr/lib/modules/x"));
    }
}
