//! Where dkms keeps its three trees, resolved under `--root` the way pacman's own `--root` works.
//!
//! The trees are values, not fixed paths: a test, a benchmark or a future preflight run can point the
//! whole engine at a private copy of a system. Paths are normalised lexically (never through the
//! disk it describes) because dkms misreports state when given paths like `//var/lib/dkms`.
//!
//! dkms reads its module signing settings (`mok_signing_key`, `mok_certificate`, `sign_file`,
//! `try_sign_modules`) only from the running system's /etc/dkms, and makes its key at the fixed
//! path /var/lib/dkms/mok.key when none is named. Under a root other than `/` (not chrooted, as
//! pacman's hooks are) that would sign with the host's settings and create a key on the host, so
//! the root's settings are handed to dkms in its environment instead ([`Trees::dkms_env`]), paths
//! joined under the root: dkms takes a variable from its environment unless the running system's
//! framework.conf sets it.

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
    /// Variables for dkms's environment: the root's signing settings, with the key and certificate
    /// under the root by default. Empty when the root is `/` (dkms reads its /etc/dkms itself).
    pub dkms_env: Vec<(String, String)>,
    /// The signing settings dkms will use (under any root), for [`crate::system::signing`].
    pub signing: Signing,
}

/// How dkms will sign the modules it builds: framework.conf's `mok_signing_key`,
/// `mok_certificate` and `try_sign_modules`, or dkms's defaults (its key and certificate in
/// `/var/lib/dkms`), paths under the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    /// The private key: a path, or a `pkcs11:` URI (which dkms never creates).
    pub key: String,
    pub certificate: PathBuf,
    /// `true`, `false`, `not_in_chroot` (dkms 3.4's default when unset), as written.
    pub try_sign_modules: Option<String>,
}

/// The signing settings of framework.conf handed to dkms under a root; the first three are paths.
const SIGNING_VARIABLES: [&str; 4] = [
    "mok_signing_key",
    "mok_certificate",
    "sign_file",
    "try_sign_modules",
];

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
        let mut dkms_env = Vec::new();
        if root != Path::new("/") {
            // dkms's own defaults, which it would make on the host.
            for (name, path) in [
                ("mok_signing_key", "/var/lib/dkms/mok.key"),
                ("mok_certificate", "/var/lib/dkms/mok.pub"),
            ] {
                dkms_env.push((name.to_string(), path_under(&root, path)));
            }
        }
        Trees {
            source: join_under(&root, "/usr/src"),
            dkms: join_under(&root, "/var/lib/dkms"),
            install: join_under(&root, "/usr/lib/modules"),
            signing: Signing {
                key: path_under(&root, "/var/lib/dkms/mok.key"),
                certificate: join_under(&root, "/var/lib/dkms/mok.pub"),
                try_sign_modules: None,
            },
            root,
            dkms_env,
        }
    }

    /// The layout under `root`, honouring `source_tree`, `dkms_tree` and `install_tree` from
    /// `ROOT/etc/dkms/framework.conf` and `ROOT/etc/dkms/framework.conf.d/*.conf`, which dkms sources
    /// as bash (so we evaluate them with bash too). As dkms, the status a file ends with is
    /// ignored (`[ -r KEY ] && mok_signing_key=KEY` ends with 1 when KEY is absent); a file that
    /// does not parse (`bash -n`) is an error naming it, in bash's words.
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
                if ! err=$("$BASH" -n "$f" 2>&1); then
                    printf '%s\0%s' "$f" "$err" >&2
                    exit 3
                fi
                . "$f" >/dev/null
            done
            printf '%s\0' "${source_tree-}" "${dkms_tree-}" "${install_tree-}" \
                "${mok_signing_key-}" "${mok_certificate-}" "${sign_file-}" "${try_sign_modules-}"
        "#;
        let mut bash = Command::new("bash");
        for name in SIGNING_VARIABLES {
            bash.env_remove(name);
        }
        let out = bash
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
            let stderr = String::from_utf8_lossy(&out.stderr);
            let (path, message) = match stderr.split_once('\0') {
                Some((file, message)) if out.status.code() == Some(3) => {
                    (PathBuf::from(file), message)
                }
                _ => (main, &*stderr),
            };
            // bash names the file first on each line: it is named once, in front.
            let prefix = format!("{}: ", path.display());
            let message: Vec<&str> = message
                .lines()
                .map(|l| l.trim().trim_start_matches(prefix.as_str()))
                .filter(|l| !l.is_empty())
                .collect();
            return Err(TreesError::Framework {
                path,
                message: message.join("; "),
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
        for (i, name) in SIGNING_VARIABLES.into_iter().enumerate() {
            let Some(value) = fields.next().filter(|v| !v.is_empty()) else {
                continue;
            };
            let value = if i < 3 && !value.starts_with("pkcs11:") {
                path_under(&trees.root, value)
            } else {
                value.to_string()
            };
            match name {
                "mok_signing_key" => trees.signing.key = value.clone(),
                "mok_certificate" => trees.signing.certificate = PathBuf::from(&value),
                "try_sign_modules" => trees.signing.try_sign_modules = Some(value.clone()),
                _ => {}
            }
            if trees.root != Path::new("/") {
                trees.dkms_env.retain(|(n, _)| n != name);
                trees.dkms_env.push((name.to_string(), value));
            }
        }
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
    // Normalised as a path of the system under the root first, so that no `..` climbs out.
    let inner = normalize(&Path::new("/").join(inner));
    let rel = inner.strip_prefix("/").unwrap_or(&inner);
    normalize(&root.join(rel))
}

/// [`join_under`] as a string, for dkms's environment.
fn path_under(root: &Path, inner: &str) -> String {
    join_under(root, inner).to_string_lossy().into_owned()
}

/// Lexical normalisation: collapses `//`, `.` and `..` without reading the disk. `..` never climbs
/// above the root of an absolute path.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            // At the root of an absolute path `..` stays there, as the kernel resolves it; only
            // a relative path keeps its leading `..`s.
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
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

    /// Defect (issue 16, item 7): a `..` at the root was kept (`/../etc`), so a framework.conf's
    /// `dkms_tree=/../../etc` under `--root /mnt` named the host's /etc.
    #[test]
    fn dot_dot_never_climbs_above_the_root() {
        assert_eq!(normalize(Path::new("/../etc")), Path::new("/etc"));
        assert_eq!(normalize(Path::new("/mnt/../../etc")), Path::new("/etc"));
        assert_eq!(normalize(Path::new("a/../../b")), Path::new("../b"));
        assert_eq!(normalize(Path::new("../../b")), Path::new("../../b"));
        assert_eq!(normalize(Path::new("a/..")), Path::new("."));
        assert_eq!(
            join_under(Path::new("/mnt"), "/../../etc"),
            Path::new("/mnt/etc")
        );
        assert_eq!(
            join_under(Path::new("/mnt"), "/var/../../../lib/dkms"),
            Path::new("/mnt/lib/dkms")
        );
    }

    #[test]
    fn signing_settings_reach_dkms_under_the_root_only() {
        assert!(Trees::defaults(Path::new("/")).dkms_env.is_empty());
        // dkms's default key would be made on the host: it goes under the root.
        let t = Trees::defaults(Path::new("/mnt/"));
        assert_eq!(
            t.dkms_env,
            [
                ("mok_signing_key".into(), "/mnt/var/lib/dkms/mok.key".into()),
                ("mok_certificate".into(), "/mnt/var/lib/dkms/mok.pub".into()),
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/dkms")).unwrap();
        std::fs::write(
            dir.path().join("etc/dkms/framework.conf"),
            "mok_signing_key=/etc/keys/db.key\ntry_sign_modules=true\nsign_file=/usr/bin/sign-file\n",
        )
        .unwrap();
        let t = Trees::load(dir.path()).unwrap();
        let root = dir.path().display();
        let want: Vec<(String, String)> = [
            ("mok_certificate", format!("{root}/var/lib/dkms/mok.pub")),
            ("mok_signing_key", format!("{root}/etc/keys/db.key")),
            ("sign_file", format!("{root}/usr/bin/sign-file")),
            ("try_sign_modules", "true".to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .into();
        assert_eq!(t.dkms_env, want);
        assert_eq!(t.signing.key, format!("{root}/etc/keys/db.key"));
        assert_eq!(
            t.signing.certificate,
            dir.path().join("var/lib/dkms/mok.pub")
        );
        assert_eq!(t.signing.try_sign_modules.as_deref(), Some("true"));
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

    /// dkms ignores the status a sourced file ends with: a last line `[ -r F ] && x=F` with F
    /// absent is no error, and what the file set before it holds. A syntax error names its file.
    #[test]
    fn a_files_exit_status_is_ignored_and_a_syntax_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("etc/dkms/framework.conf.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("10-key.conf"),
            "dkms_tree=/srv/dkms
[ -r /nonexistent/x ] && mok_signing_key=/nonexistent/x
",
        )
        .unwrap();
        let t = Trees::load(dir.path()).unwrap();
        assert_eq!(t.dkms, dir.path().join("srv/dkms"));
        assert_eq!(
            t.signing.key,
            format!("{}/var/lib/dkms/mok.key", dir.path().display())
        );
        std::fs::write(d.join("20-bad.conf"), "install_tree=(\n").unwrap();
        let e = Trees::load(dir.path()).unwrap_err().to_string();
        let name = d.join("20-bad.conf");
        assert!(
            e.starts_with(&format!(
                "{}: cannot evaluate dkms framework configuration: line ",
                name.display()
            )) && !e.contains('\n'),
            "{e}"
        );
    }

    #[test]
    fn display_is_relative_to_root() {
        let t = Trees::defaults(Path::new("/tmp/r"));
        assert_eq!(t.display(&t.dkms), "/var/lib/dkms");
    }
}
