//! Module versions named on the command line, made the targets pacman would have sent for them:
//! `dkms-hook install nvidia/550.78` and `dkms-hook remove nvidia/535.1` become the source
//! directories of those versions ([`Targets::to_install`], [`Targets::to_remove`]), so the
//! planner sees one kind of request. A name that names nothing is a [`NameError`] that says what
//! there is.

use crate::plan::inventory::Inventory;
use crate::plan::targets::Targets;
use crate::system::dkms_tree::DkmsTree;
use crate::system::trees::Trees;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

impl Targets {
    /// The source directories of the module versions named, to build: `NAME/VERSION` is the
    /// source whose dkms.conf says so (or, when that dkms.conf cannot be read, the directory
    /// `NAME-VERSION`, so the planner fails it with its reason), `NAME` the newest version of that
    /// name in the source tree.
    pub fn to_install(specs: &[ModuleSpec], inv: &Inventory) -> Result<Targets, NameError> {
        let trees = &inv.trees;
        let known: Vec<(&str, &str, &Path)> = inv
            .sources
            .iter()
            .filter_map(|s| {
                let (n, v) = s.conf.identity().ok()?;
                Some((n, v, s.dir.as_path()))
            })
            .collect();
        let mut t = Targets::default();
        for spec in specs {
            let same_name: Vec<&(&str, &str, &Path)> =
                known.iter().filter(|(n, _, _)| *n == spec.name).collect();
            let dir = match &spec.version {
                Some(v) => {
                    let by_identity = same_name.iter().find(|(_, kv, _)| kv == v).map(|k| k.2);
                    let dir_name = trees.source.join(format!("{}-{v}", spec.name));
                    let unreadable = inv
                        .sources
                        .iter()
                        .find(|s| s.dir == dir_name && s.conf.identity().is_err())
                        .map(|s| s.dir.as_path());
                    by_identity.or(unreadable)
                }
                None => same_name
                    .iter()
                    .max_by(|a, b| crate::system::version::cmp(a.1, b.1))
                    .map(|k| k.2)
                    .or_else(|| {
                        // A dkms.conf that cannot be read names no module: its directory
                        // (`NAME-VERSION`) does, and the planner then fails it naming the file.
                        let prefix = format!("{}-", spec.name);
                        let version = |s: &&crate::plan::inventory::Source| {
                            let dir = s.dir.file_name()?.to_str()?;
                            dir.strip_prefix(&prefix).map(str::to_owned)
                        };
                        inv.sources
                            .iter()
                            .filter(|s| s.conf.identity().is_err() && version(s).is_some())
                            .max_by(|a, b| {
                                crate::system::version::cmp(
                                    &version(a).unwrap_or_default(),
                                    &version(b).unwrap_or_default(),
                                )
                            })
                            .map(|s| s.dir.as_path())
                    }),
            };
            let Some(dir) = dir else {
                let place = trees.display(&trees.source).into_owned();
                return Err(if same_name.is_empty() {
                    let names: BTreeSet<&str> = known.iter().map(|k| k.0).collect();
                    NameError::UnknownModule {
                        spec: spec.to_string(),
                        place,
                        there: listing(names),
                    }
                } else {
                    NameError::UnknownVersion {
                        spec: spec.to_string(),
                        place,
                        there: listing(sorted_versions(same_name.iter().map(|k| k.1))),
                    }
                });
            };
            t.sources.insert(relative(trees, dir));
        }
        Ok(t)
    }

    /// The source directories of the registered module versions named, to remove, as dkms's
    /// `source` link names them (the directory may be gone already): `NAME/VERSION`, or `NAME`
    /// when dkms has exactly one version of it.
    pub fn to_remove(
        specs: &[ModuleSpec],
        tree: &DkmsTree,
        trees: &Trees,
    ) -> Result<Targets, NameError> {
        let mut t = Targets::default();
        for spec in specs {
            let Some(m) = tree.modules.get(&spec.name) else {
                return Err(NameError::ModuleNotRegistered {
                    spec: spec.to_string(),
                    there: listing(tree.modules.keys().map(String::as_str)),
                });
            };
            let versions = sorted_versions(m.versions.keys().map(String::as_str));
            let version = match &spec.version {
                Some(v) if m.versions.contains_key(v) => v.clone(),
                None if versions.len() == 1 => versions[0].to_string(),
                None if !versions.is_empty() => {
                    return Err(NameError::Ambiguous {
                        name: spec.name.clone(),
                        there: listing(versions),
                    })
                }
                _ => {
                    return Err(NameError::VersionNotRegistered {
                        spec: spec.to_string(),
                        there: listing(versions),
                    })
                }
            };
            let linked = m.versions[&version]
                .source
                .as_deref()
                .filter(|d| d.starts_with(&trees.root));
            let dir = match linked {
                Some(d) => d.to_path_buf(),
                None => trees.source.join(format!("{}-{version}", spec.name)),
            };
            t.sources.insert(relative(trees, &dir));
        }
        Ok(t)
    }
}

/// A module named on the command line: `NAME` or `NAME/VERSION`, as dkms names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSpec {
    pub name: String,
    pub version: Option<String>,
}

impl std::str::FromStr for ModuleSpec {
    type Err = NameError;

    fn from_str(s: &str) -> Result<ModuleSpec, NameError> {
        let (name, version) = match s.split_once('/') {
            Some((n, v)) => (n, Some(v)),
            None => (s, None),
        };
        let bad = |part: &str| {
            part.is_empty()
                || part.contains('/')
                || part == "."
                || part == ".."
                || part.contains(char::is_whitespace)
        };
        if bad(name) || version.is_some_and(bad) {
            return Err(NameError::Malformed(s.to_string()));
        }
        Ok(ModuleSpec {
            name: name.to_string(),
            version: version.map(str::to_string),
        })
    }
}

impl std::fmt::Display for ModuleSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{}/{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A module named on the command line that names nothing to act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{0}: not a module: name one as MODULE or MODULE/VERSION")]
    Malformed(String),
    #[error("{spec}: no such module in {place} (there: {there})")]
    UnknownModule {
        spec: String,
        place: String,
        there: String,
    },
    #[error("{spec}: no such version in {place} (there: {there})")]
    UnknownVersion {
        spec: String,
        place: String,
        there: String,
    },
    #[error("{spec}: not registered with dkms (modules registered: {there})")]
    ModuleNotRegistered { spec: String, there: String },
    #[error("{spec}: not registered with dkms (versions registered: {there})")]
    VersionNotRegistered { spec: String, there: String },
    #[error(
        "{name}: several versions are registered with dkms ({there}): name one, as {name}/VERSION"
    )]
    Ambiguous { name: String, there: String },
}

/// `a, b, c`, or `none`.
fn listing<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let v: Vec<&str> = items.into_iter().collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// Versions, oldest first, each once.
fn sorted_versions<'a>(versions: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = versions.collect();
    v.sort_by(|a, b| crate::system::version::cmp(a, b));
    v.dedup();
    v
}

/// A directory relative to the root, as pacman names paths.
fn relative(trees: &Trees, dir: &Path) -> PathBuf {
    dir.strip_prefix(&trees.root).unwrap_or(dir).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_specs_are_a_name_and_maybe_a_version() {
        let spec = |s: &str| s.parse::<ModuleSpec>();
        assert_eq!(
            spec("nvidia/550.78"),
            Ok(ModuleSpec {
                name: "nvidia".into(),
                version: Some("550.78".into())
            })
        );
        assert_eq!(
            spec("hid-xpadneo/v0.11-pre-64-g9aa168e")
                .unwrap()
                .version
                .as_deref(),
            Some("v0.11-pre-64-g9aa168e")
        );
        assert_eq!(spec("zfs").unwrap().version, None);
        for bad in ["", "/1.0", "zfs/", "a/b/c", "../x", "x/..", "a b/1"] {
            assert_eq!(spec(bad), Err(NameError::Malformed(bad.into())), "{bad:?}");
        }
    }
}
