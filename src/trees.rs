//! Where dkms keeps its three trees, resolved under `--root` the way pacman's own `--root` works.
//!
//! The trees are values, not fixed paths: a test, a benchmark or a future preflight run can point the
//! whole engine at a private copy of a system. Paths are normalised lexically (never through the
//! disk it describes) because dkms misreports state when given paths like `//var/lib/dkms`.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// The dkms trees of one system, every path already joined under the root and normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trees {
    /// The system root (`/` on a live system).
    pub root: PathBuf,
    /// Module sources, `usr/src` by default: one `NAME-VERSION/dkms.conf` per module version.
    pub source: PathBuf,
    /// dkms's own state, `var/lib/dkms` by default.
    pub dkms: PathBuf,
    /// Kernel module directories, `usr/lib/modules` by default: one directory per kernel release.
    pub install: PathBuf,
}

/// Failure to work out where the trees are.
#[derive(Debug, thiserror::Error)]
pub enum TreesError {
    #[error("{path}: cannot evaluate dkms framework configuration: {message}")]
    Framework { path: PathBuf, message: String },
    #[error("running bash to read {path}: {source}")]
    Bash {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Trees {
    /// The default layout under `root`, ignoring any framework.conf.
    pub fn defaults(root: &Path) -> Trees {
        let root = normalize(root);
        Trees {
            source: join_under(&root, "/usr/src"),
            dkms: join_under(&root, "/var/lib/dkms"),
            install: join_under(&root, "/usr/lib/modules"),
            root,
        }
    }

    /// The layout under `root`, honouring `source_tree`, `dkms_tree` and `install_tree` from
    /// `ROOT/etc/dkms/framework.conf` and `ROOT/etc/dkms/framework.conf.d/*.conf`, which dkms sources
    /// as bash (so we evaluate them with bash too).
    pub fn load(root: &Path) -> Result<Trees, TreesError> {
        let mut trees = Trees::defaults(root);
        let conf_dir = trees.root.join("etc/dkms");
        let main = conf_dir.join("framework.conf");
        let has_drop_ins = std::fs::read_dir(conf_dir.join("framework.conf.d"))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if !main.exists() && !has_drop_ins {
            return Ok(trees);
        }
        let script = r#"
            for f in "$1"/framework.conf "$1"/framework.conf.d/*.conf; do
                [[ -e $f ]] || continue
                . "$f" >/dev/null || { echo "$f: evaluation failed" >&2; exit 1; }
            done
            printf '%s\0' "${source_tree-}" "${dkms_tree-}" "${install_tree-}"
        "#;
        let out = Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg("bash")
            .arg(&conf_dir)
            .env_remove("source_tree")
            .env_remove("dkms_tree")
            .env_remove("install_tree")
            .output()
            .map_err(|source| TreesError::Bash {
                path: main.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(TreesError::Framework {
                path: main,
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split('\0');
        let mut take = |slot: &mut PathBuf| {
            if let Some(v) = fields.next().filter(|v| !v.is_empty()) {
                *slot = join_under(&trees.root, v);
            }
        };
        take(&mut trees.source);
        take(&mut trees.dkms);
        take(&mut trees.install);
        Ok(trees)
    }

    /// A kernel's module directory, `install/KVER`.
    pub fn kernel_dir(&self, kernel: &str) -> PathBuf {
        self.install.join(kernel)
    }

    /// The base directory for `depmod -b`: depmod works on `BASE/lib/modules/KVER`, so the install
    /// tree must end in `lib/modules`. `None` when it does not.
    pub fn depmod_base(&self) -> Option<PathBuf> {
        let parent = self.install.parent()?;
        if self.install.file_name()? == "modules" && parent.file_name()? == "lib" {
            parent.parent().map(Path::to_path_buf)
        } else {
            None
        }
    }

    /// Where dkms-hook keeps failed build logs, so that the next run of dkms does not delete them.
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("var/log/dkms-hook")
    }

    /// A path as the admin would write it on the target system (relative to the root, with a
    /// leading `/`), for messages.
    pub fn display<'a>(&self, path: &'a Path) -> std::borrow::Cow<'a, str> {
        display_under(&self.root, path)
    }
}

/// The one rule for every path dkms-hook shows: as the admin sees it on the system under `root`
/// (relative to the root, with a leading `/`). A path outside the root is shown as it is.
pub fn display_under<'a>(root: &Path, path: &'a Path) -> std::borrow::Cow<'a, str> {
    if root == Path::new("/") {
        return path.to_string_lossy();
    }
    match path.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.display()).into(),
        Err(_) => path.to_string_lossy(),
    }
}

/// Joins an absolute path (as seen inside the root) under the root, normalised.
pub fn join_under(root: &Path, inner: &str) -> PathBuf {
    let rel = inner.trim_start_matches('/');
    normalize(&root.join(rel))
}

/// Lexical normalisation: collapses `//`, `.` and `..` without reading the disk. `..` never climbs
/// above the root of an absolute path.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() || out.as_os_str().is_empty() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_under_slash_are_the_usual_paths() {
        let t = Trees::defaults(Path::new("/"));
        assert_eq!(t.source, Path::new("/usr/src"));
        assert_eq!(t.dkms, Path::new("/var/lib/dkms"));
        assert_eq!(t.install, Path::new("/usr/lib/modules"));
        assert_eq!(t.depmod_base().unwrap(), Path::new("/usr"));
    }

    #[test]
    fn root_paths_never_get_double_slashes() {
        let t = Trees::defaults(Path::new("/tmp/x//y/"));
        assert_eq!(t.dkms, Path::new("/tmp/x/y/var/lib/dkms"));
        assert_eq!(
            join_under(Path::new("/"), "//var/lib/dkms"),
            Path::new("/var/lib/dkms")
        );
        assert_eq!(normalize(Path::new("/a/./b/../c")), Path::new("/a/c"));
    }

    #[test]
    fn framework_conf_moves_the_trees() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/dkms/framework.conf.d")).unwrap();
        std::fs::write(
            dir.path().join("etc/dkms/framework.conf"),
            "# comment\nsource_tree=\"/opt/src\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/dkms/framework.conf.d/x.conf"),
            "dkms_tree=/srv/dkms/\n",
        )
        .unwrap();
        let t = Trees::load(dir.path()).unwrap();
        assert_eq!(t.source, dir.path().join("opt/src"));
        assert_eq!(t.dkms, dir.path().join("srv/dkms"));
        assert_eq!(t.install, dir.path().join("usr/lib/modules"));
    }

    #[test]
    fn display_is_relative_to_root() {
        let t = Trees::defaults(Path::new("/tmp/r"));
        assert_eq!(t.display(&t.dkms), "/var/lib/dkms");
    }
}
