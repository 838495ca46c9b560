//! pacman as the preflight finds it: the process that runs the hook, its command line, and the
//! parts of its configuration that say where package files are (DBPath, CacheDir) and which
//! repositories it reads (pacman.conf's sections but `[options]`, in their order).
//!
//! pacman is the hook's parent process (libalpm forks, chroots the child into pacman's root and
//! execs the hook's `Exec` directly). Its paths are pacman's, not the hook's: `pacman -U
//! ./foo.pkg.tar.zst` is relative to pacman's working directory, and with `pacman --root /mnt` the
//! hook runs chrooted in /mnt while pacman's CacheDir and config stay on the host. So every path
//! pacman uses is opened through `/proc/PPID/root` (pacman's own `/`) and `/proc/PPID/cwd`
//! (its working directory): the kernel's magic links reach them from inside the chroot. When
//! /proc is not mounted there (a bare chroot), the hook's own `/` is used instead, which is
//! pacman's too in the usual case of a pacman without `--root`; what cannot be found then is
//! said in one line and does not block.

use crate::system::trees::normalize;
use std::path::{Path, PathBuf};

/// pacman's default paths (pacman.conf(5)).
const DEFAULT_CONFIG: &str = "/etc/pacman.conf";
const DEFAULT_DBPATH: &str = "/var/lib/pacman/";
const DEFAULT_CACHEDIR: &str = "/var/cache/pacman/pkg/";

/// pacman's long options that take a value (as a separate argument or after `=`).
const LONG_WITH_VALUE: &[&str] = &[
    "--config",
    "--dbpath",
    "--root",
    "--sysroot",
    "--cachedir",
    "--hookdir",
    "--gpgdir",
    "--logfile",
    "--arch",
    "--color",
    "--ignore",
    "--ignoregroup",
    "--overwrite",
    "--assume-installed",
    "--print-format",
];

/// What pacman was asked to do, as far as the preflight cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `-U`: install these package files (paths or URLs, as given).
    Upgrade { files: Vec<String> },
    /// `-S` (with `-y`, `-u` or package names): packages from the sync databases.
    Sync,
    /// Anything else (or not pacman at all): look in the sync databases and the cache.
    Unknown,
}

/// What `pacman -S` was asked: the packages named, how many `-u` (`--sysupgrade`), and the
/// names it must not upgrade (`IgnorePkg`, `--ignore`; globs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncRequest {
    pub targets: Vec<String>,
    pub sysupgrade: u8,
    pub ignore: Vec<String>,
}

impl SyncRequest {
    /// Whether pacman leaves package `name` alone in a system upgrade.
    pub fn ignored(&self, name: &str) -> bool {
        let Ok(n) = std::ffi::CString::new(name) else {
            return false;
        };
        self.ignore.iter().any(|g| {
            std::ffi::CString::new(g.as_str())
                // SAFETY: both are NUL-terminated strings that live through the call.
                .is_ok_and(|g| unsafe { libc::fnmatch(g.as_ptr(), n.as_ptr(), 0) } == 0)
        })
    }
}

/// One pacman process's view of the filesystem and its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacmanView {
    /// Where pacman's `/` is reached from here: `/proc/PID/root`, or `/`.
    pub fs_root: PathBuf,
    /// Where pacman's working directory is reached from here: `/proc/PID/cwd`, or ours.
    pub cwd: PathBuf,
    /// pacman's arguments, without `argv[0]`.
    pub args: Vec<String>,
}

/// Where pacman keeps its databases and downloaded packages, as paths reachable from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacmanPaths {
    /// DBPath: `local/NAME-VERSION/desc` and `sync/REPO.db`.
    pub db_path: PathBuf,
    /// CacheDir (several allowed; pacman downloads into the first writable one).
    pub cache_dirs: Vec<PathBuf>,
    /// The repositories pacman.conf configures, in its order (the first that has a package
    /// is the one pacman takes it from): their databases are `db_path/sync/REPO.db`. A
    /// `REPO.db` there of a repository no longer configured is not one of them.
    pub repos: Vec<String>,
}

impl PacmanView {
    /// The hook's parent, if it is pacman and its /proc entry is readable. `None` otherwise
    /// (run by hand, or /proc missing in the chroot).
    pub fn parent() -> Option<PacmanView> {
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() };
        let proc = PathBuf::from(format!("/proc/{ppid}"));
        let comm = std::fs::read_to_string(proc.join("comm")).ok()?;
        if comm.trim() != "pacman" {
            return None;
        }
        let raw = std::fs::read(proc.join("cmdline")).ok()?;
        let mut args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.last().is_some_and(String::is_empty) {
            args.pop();
        }
        if !args.is_empty() {
            args.remove(0);
        }
        Some(PacmanView {
            fs_root: proc.join("root"),
            cwd: proc.join("cwd"),
            args,
        })
    }

    /// A pacman whose `/` is `root` as we see it, run from our working directory (by hand,
    /// with no pacman above us: pacman's defaults under `--root`).
    pub fn at(root: &Path, args: Vec<String>) -> PacmanView {
        PacmanView {
            fs_root: root.to_path_buf(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            args,
        }
    }

    /// A path as pacman would open it, reachable from here.
    pub fn resolve(&self, p: &str) -> PathBuf {
        if p.starts_with('/') {
            // `..` never climbs above pacman's `/`.
            let abs = normalize(Path::new(p));
            self.fs_root.join(abs.strip_prefix("/").unwrap_or(&abs))
        } else {
            // While it runs a hook, pacman has moved to its root (libalpm's _alpm_run_chroot
            // does chdir(root) first), keeping its own working directory open to go back to:
            // a relative `pacman -U foo.pkg.tar.zst` is found through that open directory.
            self.working_dirs()
                .into_iter()
                .map(|d| d.join(p))
                .find(|c| c.exists())
                .unwrap_or_else(|| self.cwd.join(p))
        }
    }

    /// pacman's working directory, then, for a pacman seen through /proc, each directory it
    /// holds open (`/proc/PID/fd/N`), in fd order.
    fn working_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.cwd.clone()];
        let (Some(proc), Some("cwd")) = (
            self.cwd.parent(),
            self.cwd.file_name().and_then(|n| n.to_str()),
        ) else {
            return dirs;
        };
        if !proc.starts_with("/proc") {
            return dirs;
        }
        let mut fds: Vec<(u32, PathBuf)> = std::fs::read_dir(proc.join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_str()?.parse().ok()?;
                e.path().is_dir().then(|| (n, e.path()))
            })
            .collect();
        fds.sort();
        dirs.extend(fds.into_iter().map(|(_, p)| p));
        dirs
    }

    /// The operation and its positional arguments.
    pub fn operation(&self) -> Operation {
        let mut op = None;
        let mut positional = Vec::new();
        let mut args = self.args.iter();
        while let Some(a) = args.next() {
            if a == "--" {
                positional.extend(args.by_ref().cloned());
                break;
            }
            if let Some(long) = a.strip_prefix("--") {
                let name = long.split('=').next().unwrap_or("");
                match name {
                    "upgrade" => op = Some('U'),
                    "sync" => op = Some('S'),
                    "remove" | "query" | "database" | "deptest" | "files" | "version" => {
                        op = Some('?')
                    }
                    _ => {}
                }
                if !long.contains('=') && LONG_WITH_VALUE.contains(&a.as_str()) {
                    args.next();
                }
                continue;
            }
            if let Some(short) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
                for (i, c) in short.char_indices() {
                    match c {
                        'U' => op = Some('U'),
                        'S' => op = Some('S'),
                        'R' | 'Q' | 'D' | 'T' | 'F' | 'V' => op = Some('?'),
                        // -b DBPATH, -r ROOT: the value is the rest, or the next argument.
                        'b' | 'r' => {
                            if i + 1 == short.len() {
                                args.next();
                            }
                            break;
                        }
                        _ => {}
                    }
                }
                continue;
            }
            positional.push(a.clone());
        }
        match op {
            Some('U') => Operation::Upgrade { files: positional },
            Some('S') => Operation::Sync,
            _ => Operation::Unknown,
        }
    }

    /// For `-S`: the packages named, the count of `-u`, and what is ignored (the command line's
    /// `--ignore`, then pacman.conf's `IgnorePkg`).
    pub fn sync_request(&self) -> SyncRequest {
        let mut req = SyncRequest::default();
        let mut args = self.args.iter();
        while let Some(a) = args.next() {
            if a == "--" {
                req.targets.extend(args.by_ref().cloned());
                break;
            }
            if let Some(long) = a.strip_prefix("--") {
                if long == "sysupgrade" {
                    req.sysupgrade += 1;
                }
                if !long.contains('=') && LONG_WITH_VALUE.contains(&a.as_str()) {
                    args.next();
                }
                continue;
            }
            if let Some(short) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
                for (i, c) in short.char_indices() {
                    match c {
                        'u' => req.sysupgrade += 1,
                        'b' | 'r' => {
                            if i + 1 == short.len() {
                                args.next();
                            }
                            break;
                        }
                        _ => {}
                    }
                }
                continue;
            }
            req.targets.push(a.clone());
        }
        for v in self.option("--ignore", None) {
            req.ignore.extend(v.split(',').map(str::to_owned));
        }
        req.ignore.extend(self.conf().ignore);
        req
    }

    /// The last value of a pacman option (`--dbpath X`, `--dbpath=X`, `-b X`, `-bX`).
    fn option(&self, long: &str, short: Option<char>) -> Vec<String> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.args.len() {
            let a = &self.args[i];
            if a == "--" {
                break;
            }
            if let Some(v) = a.strip_prefix(long).and_then(|r| r.strip_prefix('=')) {
                out.push(v.to_owned());
            } else if a == long {
                if let Some(v) = self.args.get(i + 1) {
                    out.push(v.clone());
                    i += 1;
                }
            } else if let (Some(c), Some(short_args)) = (short, a.strip_prefix('-')) {
                if !short_args.starts_with('-') {
                    if let Some(pos) = short_args.find(c) {
                        let rest = &short_args[pos + c.len_utf8()..];
                        if !rest.is_empty() {
                            out.push(rest.to_owned());
                        } else if let Some(v) = self.args.get(i + 1) {
                            out.push(v.clone());
                            i += 1;
                        }
                    }
                }
            }
            i += 1;
        }
        out
    }

    /// pacman.conf's `[options]` (`--config`, else /etc/pacman.conf).
    fn conf(&self) -> ConfOptions {
        let config = self
            .option("--config", None)
            .pop()
            .unwrap_or_else(|| DEFAULT_CONFIG.to_owned());
        match std::fs::read_to_string(self.resolve(&config)) {
            Ok(text) => parse_conf_options(&text, &mut |pattern| self.included(pattern)),
            Err(_) => ConfOptions::default(),
        }
    }

    /// The texts of the files an `Include = PATTERN` reads, as pacman's glob(3) finds them
    /// (in its order: sorted), through pacman's `/`. A pattern that matches nothing is read as
    /// a path, as pacman does (GLOB_NOCHECK): when that fails, nothing is included.
    fn included(&self, pattern: &str) -> Vec<String> {
        let (base, rest) = match pattern.strip_prefix('/') {
            Some(rest) => (self.fs_root.clone(), rest),
            None => (self.cwd.clone(), pattern),
        };
        let full = format!(
            "{}/{rest}",
            glob::Pattern::escape(&base.to_string_lossy()).trim_end_matches('/')
        );
        // glob(3) without GLOB_PERIOD: a `*` matches no leading dot, nor a `/`.
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let mut files: Vec<PathBuf> = match glob::glob_with(&full, options) {
            Ok(paths) => paths.filter_map(Result::ok).collect(),
            Err(_) => Vec::new(),
        };
        if files.is_empty() {
            files.push(base.join(rest));
        }
        files.sort();
        files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .collect()
    }

    /// DBPath and CacheDir: the command line's `--dbpath`/`--cachedir` first, then the `[options]`
    /// of pacman.conf (`--config`, else /etc/pacman.conf), then pacman's defaults (a `--root`
    /// without `--dbpath` puts the databases under that root, as pacman does). The repositories
    /// are that pacman.conf's sections (none when it cannot be read: pacman would not run).
    pub fn paths(&self) -> PacmanPaths {
        let conf = self.conf();
        let root = self.option("--root", Some('r')).pop();
        let db_path = self
            .option("--dbpath", Some('b'))
            .pop()
            .or(conf.db_path)
            .unwrap_or_else(|| match &root {
                Some(r) => format!("{}/{}", r.trim_end_matches('/'), DEFAULT_DBPATH),
                None => DEFAULT_DBPATH.to_owned(),
            });
        let mut cache = self.option("--cachedir", None);
        if cache.is_empty() {
            cache = conf.cache_dirs;
        }
        if cache.is_empty() {
            cache.push(DEFAULT_CACHEDIR.to_owned());
        }
        PacmanPaths {
            db_path: self.resolve(&db_path),
            cache_dirs: cache.iter().map(|c| self.resolve(c)).collect(),
            repos: conf.repos,
        }
    }
}

/// DBPath, CacheDir and IgnorePkg from pacman.conf's `[options]` section, and the names of its
/// other sections, the repositories, in order (a repository's database is DBPath/sync/REPO.db).
#[derive(Debug, Default, PartialEq, Eq)]
struct ConfOptions {
    db_path: Option<String>,
    cache_dirs: Vec<String>,
    ignore: Vec<String>,
    repos: Vec<String>,
}

/// How deep pacman follows `Include`s (conf.c's config_max_recursion).
const MAX_INCLUDE_DEPTH: usize = 10;

/// pacman.conf's text as pacman's conf.c reads it: `include(PATTERN)` gives the texts an
/// `Include = PATTERN` reads; each is parsed in the section that includes it, and a section one
/// of them opens goes on after it (pacman keeps one current section through all files).
fn parse_conf_options(text: &str, include: &mut dyn FnMut(&str) -> Vec<String>) -> ConfOptions {
    let mut out = ConfOptions::default();
    let mut in_options = false;
    parse_conf_into(text, include, &mut out, &mut in_options, 0);
    out
}

fn parse_conf_into(
    text: &str,
    include: &mut dyn FnMut(&str) -> Vec<String>,
    out: &mut ConfOptions,
    in_options: &mut bool,
    depth: usize,
) {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            *in_options = section == "options";
            if !*in_options && !section.is_empty() && !out.repos.iter().any(|r| r == section) {
                out.repos.push(section.to_owned());
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        if key.trim() == "Include" {
            if depth < MAX_INCLUDE_DEPTH && !value.is_empty() {
                for text in include(value) {
                    parse_conf_into(&text, include, out, in_options, depth + 1);
                }
            }
            continue;
        }
        if !*in_options {
            continue;
        }
        match key.trim() {
            "DBPath" => out.db_path = Some(value.to_owned()),
            "CacheDir" => out
                .cache_dirs
                .extend(value.split_whitespace().map(str::to_owned)),
            "IgnorePkg" => out
                .ignore
                .extend(value.split_whitespace().map(str::to_owned)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that did what pacman does before it runs a hook (keep its working directory
    /// open, move to the root): a relative package path is found in the directory it left.
    #[test]
    fn a_relative_path_is_found_where_pacman_was_before_it_moved_to_its_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("foo-1-1-any.pkg.tar.zst"), "pkg").unwrap();
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("exec 9<. && cd / && exec sleep 30")
            .current_dir(dir.path())
            .spawn()
            .unwrap();
        let proc = PathBuf::from(format!("/proc/{}", child.id()));
        let view = PacmanView {
            fs_root: proc.join("root"),
            cwd: proc.join("cwd"),
            args: vec![],
        };
        // Until the shell has moved, the file is found through its cwd; after, through fd 9.
        let mut found = PathBuf::new();
        for _ in 0..100 {
            found = view.resolve("foo-1-1-any.pkg.tar.zst");
            if found.starts_with(proc.join("fd")) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, proc.join("fd/9/foo-1-1-any.pkg.tar.zst"));
    }

    fn view(args: &str) -> PacmanView {
        PacmanView {
            fs_root: PathBuf::from("/proc/42/root"),
            cwd: PathBuf::from("/proc/42/cwd"),
            args: args.split_whitespace().map(str::to_owned).collect(),
        }
    }

    #[test]
    fn upgrade_files_are_the_positional_arguments() {
        assert_eq!(
            view("--noconfirm -U ./a.pkg.tar.zst /srv/b.pkg.tar.zst --overwrite /etc/x c")
                .operation(),
            Operation::Upgrade {
                files: vec![
                    "./a.pkg.tar.zst".into(),
                    "/srv/b.pkg.tar.zst".into(),
                    "c".into()
                ]
            }
        );
        assert_eq!(
            view("-Udd --dbpath /db -b /db2 --config=/c x.pkg").operation(),
            Operation::Upgrade {
                files: vec!["x.pkg".into()]
            }
        );
        assert_eq!(
            view("--upgrade -r /mnt y").operation(),
            Operation::Upgrade {
                files: vec!["y".into()]
            }
        );
    }

    #[test]
    fn a_sync_request_is_its_names_its_upgrades_and_what_it_ignores() {
        let r =
            view("--noconfirm -Syuu --ignore a,b* linux --dbpath /x core/zfs-dkms").sync_request();
        assert_eq!(r.targets, ["linux", "core/zfs-dkms"]);
        assert_eq!(r.sysupgrade, 2);
        assert!(r.ignored("a") && r.ignored("bee") && !r.ignored("c"));
        let r = view("--sync --refresh --sysupgrade").sync_request();
        assert_eq!((r.targets.len(), r.sysupgrade), (0, 1));
        assert_eq!(view("-S foo").sync_request().sysupgrade, 0);
    }

    #[test]
    fn sync_and_the_rest() {
        assert_eq!(view("-Syu").operation(), Operation::Sync);
        assert_eq!(view("--sync --refresh linux").operation(), Operation::Sync);
        assert_eq!(view("-Rns foo").operation(), Operation::Unknown);
        assert_eq!(view("").operation(), Operation::Unknown);
    }

    #[test]
    fn paths_resolve_through_pacmans_root_and_cwd() {
        let v = view("-U x");
        assert_eq!(
            v.resolve("/var/cache/pacman/pkg/"),
            Path::new("/proc/42/root/var/cache/pacman/pkg")
        );
        assert_eq!(v.resolve("a/b.pkg"), Path::new("/proc/42/cwd/a/b.pkg"));
        assert_eq!(v.resolve("//x/../y"), Path::new("/proc/42/root/y"));
    }

    #[test]
    fn command_line_then_config_then_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("etc/pacman.conf");
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        let v = |args: &str| PacmanView {
            fs_root: dir.path().to_path_buf(),
            cwd: dir.path().join("home"),
            args: args.split_whitespace().map(str::to_owned).collect(),
        };
        // No config file: pacman's defaults; --root moves DBPath, not CacheDir.
        let p = v("-Syu").paths();
        assert_eq!(p.db_path, dir.path().join("var/lib/pacman"));
        assert_eq!(p.cache_dirs, [dir.path().join("var/cache/pacman/pkg")]);
        assert_eq!(
            v("-r /mnt -Syu").paths().db_path,
            dir.path().join("mnt/var/lib/pacman")
        );
        std::fs::write(
            &conf,
            "[options]\nDBPath = /db/ # here\nCacheDir = /c1/ /c2/\nCacheDir=/c3\n#CacheDir = /no\n\
             [core]\nCacheDir = /not-options\nInclude = /etc/pacman.d/mirrorlist\n\
             [options]\n[local-repo] # mine\nServer = file:///srv/repo\n[extra]\n#[stale]\n",
        )
        .unwrap();
        let p = v("-Syu").paths();
        assert_eq!(p.db_path, dir.path().join("db"));
        // The repositories: the sections but [options], in pacman.conf's order.
        assert_eq!(p.repos, ["core", "local-repo", "extra"]);
        assert_eq!(
            p.cache_dirs,
            [
                dir.path().join("c1"),
                dir.path().join("c2"),
                dir.path().join("c3")
            ]
        );
        let p = v("-Syu --cachedir /cc -bdb2").paths();
        assert_eq!(p.db_path, dir.path().join("home/db2"));
        assert_eq!(p.cache_dirs, [dir.path().join("cc")]);
        std::fs::write(dir.path().join("other.conf"), "[options]\nDBPath=/odb\n").unwrap();
        assert_eq!(
            v("--config=/other.conf -Syu").paths().db_path,
            dir.path().join("odb")
        );
        assert!(v("--config=/other.conf -Syu").paths().repos.is_empty());
    }

    /// `Include` as pacman follows it: each match of its glob, in sorted order, parsed in the
    /// section that includes it; a section an included file opens goes on after it; a file
    /// that includes itself stops at pacman's depth.
    #[test]
    fn included_files_bring_their_repositories_and_options() {
        let dir = tempfile::tempdir().unwrap();
        let write = |p: &str, text: &str| {
            let f = dir.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, text).unwrap();
        };
        write(
            "/etc/pacman.conf",
            "[options]\nInclude = /etc/pacman.d/options.conf\nIgnorePkg = a\n\
             [core]\nInclude = /etc/pacman.d/mirrorlist\n\
             Include = /etc/pacman.d/repos/*.conf\nIgnorePkg = after-include\n\
             Include = /etc/pacman.d/loop.conf\nInclude = /etc/pacman.d/missing.conf\n",
        );
        write(
            "/etc/pacman.d/options.conf",
            "IgnorePkg = linux linux-headers\n",
        );
        write(
            "/etc/pacman.d/mirrorlist",
            "Server = https://mirror/$repo\n[mirror-repo]\n",
        );
        write(
            "/etc/pacman.d/repos/b.conf",
            "[zen]\nServer = file:///zen\n",
        );
        write("/etc/pacman.d/repos/a.conf", "[custom]\n[options]\n");
        write("/etc/pacman.d/repos/c.txt", "[not-a-conf]\n");
        write("/etc/pacman.d/repos/.hidden.conf", "[hidden]\n");
        write(
            "/etc/pacman.d/loop.conf",
            "[loop]\nInclude = /etc/pacman.d/loop.conf\n",
        );
        let view = PacmanView {
            fs_root: dir.path().to_path_buf(),
            cwd: dir.path().to_path_buf(),
            args: vec!["-Syu".to_owned()],
        };
        assert_eq!(
            view.paths().repos,
            ["core", "mirror-repo", "custom", "zen", "loop"]
        );
        // a.conf opens [options] before b.conf opens [zen]: the IgnorePkg after the includes
        // belongs to [zen], not to [options].
        assert_eq!(view.sync_request().ignore, ["linux", "linux-headers", "a"]);
    }
}
