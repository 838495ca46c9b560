//! dkms-hook's own settings: `/etc/dkms-hook.conf` under `--root`, read for the preflight.
//!
//! The file is `key = value` lines with `#` comments. Two keys: `essential = NAME...` (module
//! names as in dkms.conf's PACKAGE_NAME, separated by spaces or commas, or `all`) and
//! `preflight = abort|warn|off`. A value may be quoted as in a shell (`"nvidia zfs"`), and so
//! may each name: users write it so. The environment variable `DKMS_HOOK_PREFLIGHT` overrides
//! `preflight` for one command.
//!
//! A bad file must never block pacman: an unreadable file or a malformed line is an error that
//! names the file and line, and the defaults stand in for what could not be read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where the file lives, relative to the system root.
pub const CONFIG_PATH: &str = "etc/dkms-hook.conf";
/// The environment variable that overrides `preflight` for one command.
pub const PREFLIGHT_ENV: &str = "DKMS_HOOK_PREFLIGHT";

/// What the preflight does when a module would not build.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PreflightMode {
    /// An essential module that fails aborts the transaction; the others warn.
    #[default]
    Abort,
    /// Every failure only warns; the transaction goes on.
    Warn,
    /// No preflight at all.
    Off,
}

impl PreflightMode {
    fn parse(s: &str) -> Option<PreflightMode> {
        match s {
            "abort" => Some(PreflightMode::Abort),
            "warn" => Some(PreflightMode::Warn),
            "off" => Some(PreflightMode::Off),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PreflightMode::Abort => "abort",
            PreflightMode::Warn => "warn",
            PreflightMode::Off => "off",
        }
    }
}

/// Which modules are essential (a failure of one aborts the transaction).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Essential {
    /// None named: the DKMS modules loaded right now (see `preflight::essential`).
    #[default]
    Loaded,
    /// Every module.
    All,
    /// These module names.
    Names(BTreeSet<String>),
}

impl Essential {
    /// Whether module `name` is essential, given the names of the DKMS modules loaded now
    /// (used only when the file names none).
    pub fn contains(&self, name: &str, loaded: &BTreeSet<String>) -> bool {
        match self {
            Essential::All => true,
            Essential::Names(n) => n.contains(name),
            Essential::Loaded => loaded.contains(name),
        }
    }

    /// The names that are no module in `source_tree` (dkms takes a module's sources only from
    /// `source_tree/NAME-VERSION`): a typo there would silently leave a module unprotected.
    pub fn unknown(&self, source_tree: &Path) -> Vec<String> {
        let Essential::Names(names) = self else {
            return Vec::new();
        };
        let there: Vec<String> = std::fs::read_dir(source_tree)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names
            .iter()
            .filter(|n| {
                !there.iter().any(|d| {
                    d.strip_prefix(n.as_str())
                        .is_some_and(|v| v.starts_with('-'))
                })
            })
            .cloned()
            .collect()
    }
}

/// The settings, defaults filled in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub essential: Essential,
    pub preflight: PreflightMode,
}

/// One problem with the file or the environment; the setting it concerns keeps its default.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {message} (using the defaults)")]
    Unreadable { path: PathBuf, message: String },
    #[error("{path}: line {line}: {message} (ignored)")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{PREFLIGHT_ENV}={value}: not abort, warn or off (ignored)")]
    Env { value: String },
}

impl Config {
    /// Reads `ROOT/etc/dkms-hook.conf` (a missing file is the defaults, silently), then applies
    /// `env_preflight` (the value of `DKMS_HOOK_PREFLIGHT`, if set). Never fails: problems are
    /// returned beside the settings, to be printed.
    pub fn load(root: &Path, env_preflight: Option<&str>) -> (Config, Vec<ConfigError>) {
        let path = root.join(CONFIG_PATH);
        let (mut cfg, mut errors) = match std::fs::read(&path) {
            // Not UTF-8: the bad bytes spoil their own line only, which is then named.
            Ok(bytes) => {
                Config::parse(&String::from_utf8_lossy(&bytes), &display_path(root, &path))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Config::default(), vec![]),
            Err(e) => (
                Config::default(),
                vec![ConfigError::Unreadable {
                    path: display_path(root, &path),
                    message: e.to_string(),
                }],
            ),
        };
        if let Some(v) = env_preflight {
            match PreflightMode::parse(v.trim()) {
                Some(m) => cfg.preflight = m,
                None => errors.push(ConfigError::Env { value: v.into() }),
            }
        }
        (cfg, errors)
    }

    /// Parses the file's text; `path` names it in errors. A bad line is skipped, the rest holds.
    pub fn parse(text: &str, path: &Path) -> (Config, Vec<ConfigError>) {
        let mut cfg = Config::default();
        let mut errors = Vec::new();
        let mut names = BTreeSet::new();
        let mut all = false;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |message: String| ConfigError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                message,
            };
            let Some((key, value)) = line.split_once('=') else {
                errors.push(bad(format!("`{line}`: not `key = value`")));
                continue;
            };
            let (key, value) = (key.trim(), unquote(value.trim()));
            match key {
                "essential" => {
                    let words = value
                        .split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|w| !w.is_empty())
                        .map(unquote);
                    for word in words {
                        if word == "all" {
                            all = true;
                        } else if valid_module_name(word) {
                            names.insert(word.to_owned());
                        } else {
                            errors.push(bad(format!(
                                "`{word}`: not a module name (expected: module names as in \
                                 dkms.conf's PACKAGE_NAME, separated by spaces or commas, or \
                                 `all`)"
                            )));
                        }
                    }
                }
                "preflight" => match PreflightMode::parse(value) {
                    Some(m) => cfg.preflight = m,
                    None => errors.push(bad(format!(
                        "preflight = `{value}`: not abort, warn or off"
                    ))),
                },
                _ => errors.push(bad(format!(
                    "unknown key `{key}` (known: essential, preflight)"
                ))),
            }
        }
        cfg.essential = if all {
            Essential::All
        } else if names.is_empty() {
            Essential::Loaded
        } else {
            Essential::Names(names)
        };
        (cfg, errors)
    }
}

/// dkms's module names are directory names: no `/`, no whitespace, not `.` or `..`; and none
/// holds what a shell would read as quoting or expansion (`essential = "nvidia` lost its closing
/// quote; `$GPU` is not expanded here).
fn valid_module_name(s: &str) -> bool {
    const SHELLISH: &[char] = &['"', '\'', '`', '$', '\\', ';', '=', '(', ')'];
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains(SHELLISH)
}

/// A value as written in shell style: `"x"` or `'x'` is `x`.
fn unquote(s: &str) -> &str {
    for q in ['"', '\''] {
        match s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            Some(inner) if !inner.contains(q) => return inner.trim(),
            _ => {}
        }
    }
    s
}

/// The file as the admin knows it (`/etc/dkms-hook.conf`), under a root that is not `/`.
fn display_path(root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix(root) {
        Ok(rel) => Path::new("/").join(rel),
        Err(_) => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> (Config, Vec<ConfigError>) {
        Config::parse(s, Path::new("/etc/dkms-hook.conf"))
    }

    fn names(v: &[&str]) -> Essential {
        Essential::Names(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn an_empty_or_commented_file_is_the_defaults() {
        let (cfg, errs) = parse("# nothing\n\n   # still nothing\n");
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.essential, Essential::Loaded);
        assert_eq!(cfg.preflight, PreflightMode::Abort);
        assert!(errs.is_empty());
    }

    #[test]
    fn keys_values_comments_and_repeated_essential_lines() {
        let (cfg, errs) = parse(
            "essential = nvidia zfs   # the GPU and the root fs\n\
             essential=v4l2loopback\n\
             preflight =warn\n",
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(cfg.essential, names(&["nvidia", "v4l2loopback", "zfs"]));
        assert_eq!(cfg.preflight, PreflightMode::Warn);
    }

    #[test]
    fn all_wins_over_names() {
        let (cfg, _) = parse("essential = zfs all\n");
        assert_eq!(cfg.essential, Essential::All);
        assert!(cfg.essential.contains("anything", &BTreeSet::new()));
    }

    #[test]
    fn loaded_modules_are_essential_only_when_none_is_named() {
        let loaded: BTreeSet<String> = ["nvidia".to_string()].into();
        assert!(Essential::Loaded.contains("nvidia", &loaded));
        assert!(!Essential::Loaded.contains("zfs", &loaded));
        assert!(!names(&["zfs"]).contains("nvidia", &loaded));
    }

    #[test]
    fn a_bad_line_names_the_file_and_line_and_the_rest_holds() {
        let (cfg, errs) = parse(
            "essential = zfs\n\
             this is not a setting\n\
             preflight = sometimes\n\
             colour = blue\n\
             essential = a/b\n",
        );
        assert_eq!(cfg.essential, names(&["zfs"]));
        assert_eq!(cfg.preflight, PreflightMode::Abort);
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "/etc/dkms-hook.conf: line 2: `this is not a setting`: not `key = value` (ignored)",
                "/etc/dkms-hook.conf: line 3: preflight = `sometimes`: not abort, warn or off (ignored)",
                "/etc/dkms-hook.conf: line 4: unknown key `colour` (known: essential, preflight) (ignored)",
                "/etc/dkms-hook.conf: line 5: `a/b`: not a module name (expected: module names as in \
                 dkms.conf's PACKAGE_NAME, separated by spaces or commas, or `all`) (ignored)",
            ]
        );
    }

    /// Defect (a new user's trial): `essential = "nvidia"` and `essential = a, b` were taken as
    /// the names `"nvidia"`, `a,` and `b`, which no module has: silently nothing was essential.
    /// Quotes and commas are read as a user means them; what still cannot be a name is named.
    /// A name in `essential` that is no module of the source tree is named (a typo, the
    /// module's `.ko` name, `ALL` for `all`); a module's own name is not.
    #[test]
    fn essential_names_that_are_no_module_are_found() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["nvidia-550.78", "v4l2loopback-0.12.7", "zfs-2.2.2"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let names = |n: &[&str]| Essential::Names(n.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            names(&["nvidia", "nvidai", "v4l2", "ALL", "zfs"]).unknown(dir.path()),
            ["ALL", "nvidai", "v4l2"]
        );
        assert!(Essential::All.unknown(dir.path()).is_empty());
        assert!(Essential::Loaded.unknown(dir.path()).is_empty());
    }

    #[test]
    fn quoted_values_and_comma_lists_are_read_as_meant() {
        for text in [
            "essential = \"nvidia\"\n",
            "essential = 'nvidia'\n",
            "essential = nvidia,\n",
        ] {
            let (cfg, errs) = parse(text);
            assert!(errs.is_empty(), "{text}: {errs:?}");
            assert_eq!(cfg.essential, names(&["nvidia"]), "{text}");
        }
        for text in [
            "essential = nvidia, zfs\n",
            "essential = nvidia,zfs\n",
            "essential = \"nvidia zfs\"\n",
            "essential = \"nvidia\", \"zfs\"\n",
        ] {
            let (cfg, errs) = parse(text);
            assert!(errs.is_empty(), "{text}: {errs:?}");
            assert_eq!(cfg.essential, names(&["nvidia", "zfs"]), "{text}");
        }
        let (cfg, errs) = parse("preflight = \"warn\"\n");
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(cfg.preflight, PreflightMode::Warn);
        let (cfg, errs) = parse("essential = \"nvidia\nessential = $GPU zfs\n");
        assert_eq!(cfg.essential, names(&["zfs"]));
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "/etc/dkms-hook.conf: line 1: `\"nvidia`: not a module name (expected: module \
                 names as in dkms.conf's PACKAGE_NAME, separated by spaces or commas, or `all`) \
                 (ignored)",
                "/etc/dkms-hook.conf: line 2: `$GPU`: not a module name (expected: module \
                 names as in dkms.conf's PACKAGE_NAME, separated by spaces or commas, or `all`) \
                 (ignored)",
            ]
        );
    }

    #[test]
    fn load_reads_under_root_and_env_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join(CONFIG_PATH),
            "preflight = off\nessential = zfs\n",
        )
        .unwrap();
        let (cfg, errs) = Config::load(dir.path(), None);
        assert!(errs.is_empty());
        assert_eq!(cfg.preflight, PreflightMode::Off);
        assert_eq!(cfg.essential, names(&["zfs"]));
        let (cfg, errs) = Config::load(dir.path(), Some("warn"));
        assert!(errs.is_empty());
        assert_eq!(cfg.preflight, PreflightMode::Warn);
        let (cfg, errs) = Config::load(dir.path(), Some("later"));
        assert_eq!(
            cfg.preflight,
            PreflightMode::Off,
            "a bad value changes nothing"
        );
        assert_eq!(
            errs[0].to_string(),
            "DKMS_HOOK_PREFLIGHT=later: not abort, warn or off (ignored)"
        );
    }

    #[test]
    fn a_missing_file_is_silent_an_unreadable_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, errs) = Config::load(dir.path(), None);
        assert_eq!(cfg, Config::default());
        assert!(errs.is_empty());
        // A directory where the file should be: reading it fails, whoever runs the test.
        std::fs::create_dir_all(dir.path().join(CONFIG_PATH)).unwrap();
        let (cfg, errs) = Config::load(dir.path(), None);
        assert_eq!(cfg, Config::default());
        assert_eq!(errs.len(), 1);
        let msg = errs[0].to_string();
        assert!(
            msg.starts_with("/etc/dkms-hook.conf: cannot read: ")
                && msg.ends_with("(using the defaults)"),
            "{msg}"
        );
        std::fs::remove_dir(dir.path().join(CONFIG_PATH)).unwrap();
        std::fs::write(dir.path().join(CONFIG_PATH), b"preflight = warn\n\xff\n").unwrap();
        let (cfg, errs) = Config::load(dir.path(), None);
        assert_eq!(cfg.preflight, PreflightMode::Warn);
        assert_eq!(
            errs[0].to_string(),
            "/etc/dkms-hook.conf: line 2: `\u{FFFD}`: not `key = value` (ignored)"
        );
    }
}
