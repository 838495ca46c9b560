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
//!
//! framework.conf and its drop-ins are read as dkms 3.x reads them (its `safe_source`): each file
//! sourced on its own in a subshell, over what the files before it set, its variables printed
//! after it. A file that stops at a syntax error still sets what came before the error; one that
//! `exit`s sets nothing; the status a file ends with is ignored. What bash says about a file, an
//! early `exit` and a file still running after [`FRAMEWORK_LIMIT`] (stopped) are warnings naming
//! it ([`FrameworkWarning`]), never an error: dkms goes on, so every command goes on.

use crate::os::process::{Running, Watch};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// Failure to work out where the trees are: only bash that cannot run at all (dkms would not
/// run either). A framework file that does not read well is a [`FrameworkWarning`].
#[derive(Debug, thiserror::Error)]
pub enum TreesError {
    #[error("running bash to read {path}: {source}")]
    Bash {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How long one framework file may take to source: a file that waits for something (a `sleep`,
/// a network call) must not hold a hook. Then it is stopped and its settings are ignored.
pub const FRAMEWORK_LIMIT: Duration = Duration::from_secs(5);

/// One framework file that did not read to its end, or that bash said something about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct FrameworkWarning {
    /// The file, under the root.
    pub path: PathBuf,
    /// What happened, in bash's words where bash said something (the file's name taken off).
    pub message: String,
}

/// The trees, with what reading the framework files said.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub trees: Trees,
    /// In the order dkms reads the files.
    pub warnings: Vec<FrameworkWarning>,
}

/// The variables dkms-hook takes from the framework files, in the order [`FRAMEWORK_SCRIPT`]
/// prints them: the three trees, then [`SIGNING_VARIABLES`].
const FRAMEWORK_VARIABLES: [&str; 7] = [
    "source_tree",
    "dkms_tree",
    "install_tree",
    "mok_signing_key",
    "mok_certificate",
    "sign_file",
    "try_sign_modules",
];

/// Sources one file (`$1`) over the values the files before it set (`NAME=VALUE` arguments), as
/// dkms's `safe_source` does (stdout to /dev/null, a trailing CR dropped), then prints `done` and
/// the variables, NUL-separated. Without `done` the file `exit`ed: dkms then takes nothing of it.
const FRAMEWORK_SCRIPT: &str = r#"
    f=$1; shift
    for kv; do printf -v "${kv%%=*}" '%s' "${kv#*=}"; done
    . "$f" >/dev/null
    printf '%s\0' done
    for v in source_tree dkms_tree install_tree mok_signing_key mok_certificate sign_file \
        try_sign_modules; do
        val=${!v-}
        printf '%s\0' "${val%$'\r'}"
    done
"#;

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
    /// `ROOT/etc/dkms/framework.conf` and `ROOT/etc/dkms/framework.conf.d/*.conf`, which dkms
    /// sources as bash (so we evaluate them with bash too), each file within [`FRAMEWORK_LIMIT`].
    /// What reading them said is dropped: see [`Trees::read`].
    pub fn load(root: &Path) -> Result<Trees, TreesError> {
        Ok(Trees::read(root, FRAMEWORK_LIMIT)?.trees)
    }

    /// [`Trees::load`] with what reading the framework files said, each file stopped after
    /// `limit` (see the module's comment).
    pub fn read(root: &Path, limit: Duration) -> Result<Loaded, TreesError> {
        let mut trees = Trees::defaults(root);
        let mut warnings = Vec::new();
        let conf_dir = trees.root.join("etc/dkms");
        let mut files = vec![conf_dir.join("framework.conf")];
        // dkms's glob: sorted as bash sorts it (the C locale's byte order for these names).
        let mut drop_ins: Vec<PathBuf> = std::fs::read_dir(conf_dir.join("framework.conf.d"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            // `*.conf` matches no name that starts with a dot.
            .filter(|p| {
                p.extension().is_some_and(|x| x == "conf")
                    && p.file_name()
                        .is_some_and(|n| !n.as_encoded_bytes().starts_with(b"."))
            })
            .collect();
        drop_ins.sort();
        files.extend(drop_ins);
        let mut values = Values::default();
        for file in files.iter().filter(|f| f.exists()) {
            match source_one(file, &values, limit)? {
                (Some(read), warning) => {
                    values = read;
                    warnings.extend(warning);
                }
                (None, warning) => warnings.extend(warning),
            }
        }
        let [source, dkms, install, signing @ ..] = values;
        for (slot, value) in [
            (&mut trees.source, source),
            (&mut trees.dkms, dkms),
            (&mut trees.install, install),
        ] {
            if let Some(v) = value {
                *slot = join_under(&trees.root, &v);
            }
        }
        for (i, (name, value)) in SIGNING_VARIABLES.into_iter().zip(signing).enumerate() {
            let Some(value) = value else {
                continue;
            };
            let value = if i < 3 && !value.starts_with("pkcs11:") {
                path_under(&trees.root, &value)
            } else {
                value
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
        Ok(Loaded { trees, warnings })
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

    /// Where dkms-hook builds a module version for a kernel beside the build of another kernel
    /// in dkms's tree: one private dkms tree per pair, removed once the build is placed (see
    /// `crate::execute::work`), and all of them at the start of a run.
    pub fn private_dir(&self) -> PathBuf {
        self.root.join("var/lib/dkms-hook/private")
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

/// The values of [`FRAMEWORK_VARIABLES`]; `None`: unset or empty.
type Values = [Option<String>; 7];

/// Sources one framework file over `before` (the values the files before it set), as dkms does.
/// The values after it (`None` when it `exit`ed or was stopped: dkms takes nothing of it), and a
/// warning when it did not read cleanly.
fn source_one(
    file: &Path,
    before: &Values,
    limit: Duration,
) -> Result<(Option<Values>, Option<FrameworkWarning>), TreesError> {
    let mut bash = Command::new("bash");
    bash.arg("-c")
        .arg(FRAMEWORK_SCRIPT)
        .arg("bash")
        .arg(file)
        .stdin(Stdio::null());
    for (name, value) in FRAMEWORK_VARIABLES.iter().zip(before) {
        // Only what the files set counts, never dkms-hook's own environment.
        bash.env_remove(name);
        if let Some(v) = value {
            bash.arg(format!("{name}={v}"));
        }
    }
    let bash_error = |source| TreesError::Bash {
        path: file.to_path_buf(),
        source,
    };
    let out = Running::spawn_split(bash)
        .map_err(bash_error)?
        .wait_with(Watch {
            deadline: Some(Instant::now() + limit),
            stall: None,
        })
        .map_err(bash_error)?;
    let stdout = out.output.bytes().map_err(bash_error)?;
    let text = String::from_utf8_lossy(&stdout);
    let mut fields = text.split('\0');
    let finished = out.stopped.is_none() && fields.next() == Some("done");
    let values = finished.then(|| {
        let mut values = Values::default();
        for (slot, field) in values.iter_mut().zip(fields) {
            *slot = Some(field.to_string()).filter(|v| !v.is_empty());
        }
        values
    });
    // bash names the file first on each line: it is named once, in front.
    let prefix = format!("{}: ", file.display());
    let said = out.errors.text_up_to(4096);
    let mut words: Vec<&str> = said
        .lines()
        .map(|l| l.trim().trim_start_matches(prefix.as_str()))
        .filter(|l| !l.is_empty())
        .collect();
    let ended;
    if out.stopped.is_some() {
        ended = format!(
            "still running after {} s, stopped: dkms-hook ignores what it sets",
            limit.as_secs_f64()
        );
        words.push(&ended);
    } else if !finished {
        ended = match out.status.code() {
            Some(code) => {
                format!("exits (status {code}) before its end: dkms ignores what it sets")
            }
            None => "killed before its end: dkms-hook ignores what it sets".to_string(),
        };
        words.push(&ended);
    }
    let warning = (!words.is_empty()).then(|| FrameworkWarning {
        path: file.to_path_buf(),
        message: words.join("; "),
    });
    Ok((values, warning))
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
    /// absent is no error, and what the file set before it holds.
    #[test]
    fn a_files_exit_status_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("etc/dkms/framework.conf.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("10-key.conf"),
            "dkms_tree=/srv/dkms\n[ -r /nonexistent/x ] && mok_signing_key=/nonexistent/x\n",
        )
        .unwrap();
        let loaded = Trees::read(dir.path(), FRAMEWORK_LIMIT).unwrap();
        assert_eq!(loaded.warnings, []);
        let t = loaded.trees;
        assert_eq!(t.dkms, dir.path().join("srv/dkms"));
        assert_eq!(
            t.signing.key,
            format!("{}/var/lib/dkms/mok.key", dir.path().display())
        );
    }

    /// Defect (a new user's trial): a syntax error in a snippet was an error that stopped every
    /// hook. dkms sources each file on its own: what the file set before the error holds, the
    /// files after it are read, and bash's words are a warning naming the file, once.
    #[test]
    fn a_syntax_error_is_a_warning_naming_the_file_and_what_came_before_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("etc/dkms/framework.conf.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("20-bad.conf"),
            "dkms_tree=/srv/dkms\nif then\nsource_tree=/x\n",
        )
        .unwrap();
        std::fs::write(d.join("30-after.conf"), "install_tree=/opt/modules\n").unwrap();
        // Not matched by dkms's `*.conf`.
        std::fs::write(d.join(".hidden.conf"), "if then\n").unwrap();
        let loaded = Trees::read(dir.path(), FRAMEWORK_LIMIT).unwrap();
        assert_eq!(loaded.trees.dkms, dir.path().join("srv/dkms"));
        assert_eq!(loaded.trees.source, dir.path().join("usr/src"));
        assert_eq!(loaded.trees.install, dir.path().join("opt/modules"));
        let [w] = &loaded.warnings[..] else {
            panic!("{:?}", loaded.warnings)
        };
        assert_eq!(w.path, d.join("20-bad.conf"));
        let text = w.to_string();
        assert!(
            text.starts_with(&format!(
                "{}: line 2: syntax error near unexpected token `then'",
                w.path.display()
            )) && text.matches("20-bad.conf").count() == 1
                && !text.contains('\n'),
            "{text}"
        );
    }

    /// Defect (a new user's trial): `exit 3` in a snippet was said as "framework.conf: cannot
    /// evaluate ...: " (the wrong file, no reason). dkms takes nothing of a file that exits (its
    /// subshell ends before it prints the variables), and reads the others.
    #[test]
    fn a_file_that_exits_is_a_warning_naming_it_and_sets_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("etc/dkms/framework.conf.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            dir.path().join("etc/dkms/framework.conf"),
            "dkms_tree=/srv/dkms\n",
        )
        .unwrap();
        std::fs::write(d.join("zz-exit.conf"), "source_tree=/x\nexit 3\n").unwrap();
        let loaded = Trees::read(dir.path(), FRAMEWORK_LIMIT).unwrap();
        assert_eq!(loaded.trees.dkms, dir.path().join("srv/dkms"));
        assert_eq!(loaded.trees.source, dir.path().join("usr/src"));
        assert_eq!(
            loaded.warnings,
            [FrameworkWarning {
                path: d.join("zz-exit.conf"),
                message: "exits (status 3) before its end: dkms ignores what it sets".into(),
            }]
        );
    }

    /// Defect (a new user's trial): a snippet that ran `sleep 100` held dkms-hook that long (and
    /// twice in a preflight). It is stopped after the limit, named, and the others are read.
    #[test]
    fn a_file_that_hangs_is_stopped_after_the_limit_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("etc/dkms/framework.conf.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("10-slow.conf"), "source_tree=/x\nsleep 100\n").unwrap();
        std::fs::write(d.join("20-after.conf"), "dkms_tree=/srv/dkms\n").unwrap();
        let t = Instant::now();
        let loaded = Trees::read(dir.path(), Duration::from_millis(300)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert_eq!(loaded.trees.source, dir.path().join("usr/src"));
        assert_eq!(loaded.trees.dkms, dir.path().join("srv/dkms"));
        let [w] = &loaded.warnings[..] else {
            panic!("{:?}", loaded.warnings)
        };
        assert_eq!(w.path, d.join("10-slow.conf"));
        assert!(
            w.message.starts_with("still running after 0.3 s, stopped"),
            "{w}"
        );
    }

    #[test]
    fn display_is_relative_to_root() {
        let t = Trees::defaults(Path::new("/tmp/r"));
        assert_eq!(t.display(&t.dkms), "/var/lib/dkms");
    }
}
