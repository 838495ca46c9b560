//! `dkms-hook prebuild`: the preflight ahead of time. When the repositories offer a new kernel,
//! new headers or a new version of a `-dkms` package, it does now what the preflight of the later
//! `pacman -Syu` would do, so that this transaction spends on DKMS only the installing of ready
//! builds:
//!
//! 1. a private copy of pacman's sync databases (`/var/cache/dkms-hook/prebuild/db`, its `local`
//!    a link to pacman's own local database) is refreshed from the configured mirrors, the way
//!    pacman-contrib's `checkupdates` does it: `pacman -Sy --dbpath PRIVATE`. pacman's own sync
//!    databases are never written, and its lock (`DBPath/db.lck`) never taken: a prebuild that
//!    finds it held (a transaction under way) does nothing this time;
//! 2. when an upgrade it offers touches what DKMS builds from (an installed package that owns a
//!    kernel's image or headers or a module's dkms.conf), every upgrade is downloaded into
//!    pacman's CacheDir (`pacman -Swu --dbpath PRIVATE`: pacman checks each package's signature
//!    as it would for the transaction), where `pacman -Syu` will find them;
//! 3. the transaction `-Syu` would make is judged as the preflight judges it ([`super::judge`]):
//!    in the view of the system after it, each build kept in the store with its stamp, each
//!    failure remembered with its log. Nothing is installed or removed.
//!
//! A prebuild gives way to pacman: should a transaction start while it builds (pacman's
//! `db.lck` appears), it stops its builds at once, as a SIGTERM would, and ends, so that the
//! transaction's preflight, waiting for the run lock, gets it within seconds; the next prebuild
//! goes on from what the store holds.
//!
//! What cannot be done (offline, a mirror that answers nothing, a signature that fails, a full
//! disk) is one line, and nothing changes.

use super::{Judged, Options, Purpose};
use crate::pacman::caller::{PacmanPaths, PacmanView, SyncRequest};
use crate::pacman::pkgdb;
use crate::pacman::transaction::Transaction;
use crate::system::trees::Trees;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often a prebuild looks whether pacman has started a transaction.
const PACMAN_POLL: Duration = Duration::from_millis(500);

/// The private copy of the sync databases, relative to the root.
pub const DB_DIR: &str = "var/cache/dkms-hook/prebuild/db";

/// Exit codes of `dkms-hook prebuild`.
pub const EXIT_OK: u8 = 0;
/// Something offered would not build (its failure is remembered for the transaction).
pub const EXIT_WOULD_FAIL: u8 = 1;

/// What the preflight's hook watches: the paths whose arrival makes DKMS work.
pub fn is_trigger(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    matches!(
        parts.as_slice(),
        ["usr", "src", _, "dkms.conf"]
            | ["usr", "lib", "modules", _, "vmlinuz"]
            | ["usr", "lib", "modules", _, "build", "include"]
    )
}

/// Runs the prebuild: see the module's comment. `pacman` is the pacman program.
pub fn run(trees: &Trees, opts: &Options, pacman: &Path, out: &mut dyn Write) -> u8 {
    let view = PacmanView::at(&trees.root, vec![]);
    let paths = view.paths();
    let lock = paths.db_path.join("db.lck");
    if lock.exists() {
        let _ = writeln!(
            out,
            "prebuild: pacman is running, or was stopped and left its lock ({} exists): nothing \
             done, the next run will look",
            trees.display(&lock)
        );
        return EXIT_OK;
    }
    // One prebuild at a time (its private databases and cache); it takes the run lock only to
    // build, so that a transaction's hooks never wait for its downloads.
    let own = trees.root.join(LOCK);
    let _own = match take_own_lock(&own) {
        Ok(Some(f)) => f,
        Ok(None) => {
            let _ = writeln!(out, "prebuild: another prebuild is running: nothing done");
            return EXIT_OK;
        }
        Err(e) => {
            let _ = writeln!(out, "prebuild: {}: {e}: nothing done", trees.display(&own));
            return EXIT_OK;
        }
    };
    let code = giving_way_to_pacman(&lock, || ahead(trees, opts, pacman, &view, out));
    code.unwrap_or_else(|| {
        let _ = writeln!(
            out,
            "prebuild: pacman started a transaction ({} appeared): stopped, to leave it the \
             machine and the run lock; the next prebuild goes on",
            trees.display(&lock)
        );
        EXIT_OK
    })
}

/// Where one prebuild at a time holds its own lock (an flock).
const LOCK: &str = "var/cache/dkms-hook/prebuild/lock";

/// Where the prebuild downloads, before each complete package moves into pacman's CacheDir.
pub const PKG_DIR: &str = "var/cache/dkms-hook/prebuild/pkg";

/// The prebuild's own lock, taken without waiting: None when another prebuild holds it.
fn take_own_lock(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    use std::os::fd::AsRawFd;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(f));
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(None),
        _ => Err(e),
    }
}

/// The prebuild's steps, once it holds its own lock: refresh, download, judge.
fn ahead(
    trees: &Trees,
    opts: &Options,
    pacman: &Path,
    view: &PacmanView,
    out: &mut dyn Write,
) -> u8 {
    let paths = view.paths();
    let private = trees.root.join(DB_DIR);
    if let Err(e) = prepare_private_db(&private, &paths) {
        let _ = writeln!(
            out,
            "prebuild: {}: {e}: nothing done",
            trees.display(&private)
        );
        return EXIT_OK;
    }
    // Only a prebuild uses these databases, and it holds its own lock: a pacman lock there is
    // one a stopped prebuild's pacman left.
    let _ = std::fs::remove_file(private.join("db.lck"));
    let private_pkg = trees.root.join(PKG_DIR);
    let conf = view.resolve("/etc/pacman.conf");
    let pacman_in = |args: &[&str]| {
        let mut c = Command::new(pacman);
        c.args(["--noconfirm", "--noprogressbar", "--logfile", "/dev/null"])
            .arg("--dbpath")
            .arg(&private)
            .arg("--config")
            .arg(&conf);
        // Downloads go to the private cache (the first writable one), so that a `pacman -Syu`
        // started meanwhile never reads a file half written; what pacman's CacheDir has
        // already is found there and not fetched again. Given on the command line, the cache
        // directories are the ones under `--root` too, where the preflight looks.
        c.arg("--cachedir").arg(&private_pkg);
        for d in &paths.cache_dirs {
            c.arg("--cachedir").arg(d);
        }
        if trees.root != Path::new("/") {
            c.arg("--root").arg(&trees.root);
        }
        c.args(args).env("LC_ALL", "C").stdin(Stdio::null());
        c
    };
    if let Err(why) = run_pacman(pacman_in(&["-Sy"])) {
        let _ = writeln!(
            out,
            "prebuild: cannot refresh the sync databases: {why}: nothing done"
        );
        return EXIT_OK;
    }
    let offered = dkms_upgrades(&private, &paths.repos);
    if offered.is_empty() {
        let _ = writeln!(
            out,
            "prebuild: nothing the repositories offer brings DKMS work: nothing to build"
        );
        return EXIT_OK;
    }
    let _ = writeln!(
        out,
        "prebuild: the repositories offer {}: downloading the upgrades",
        offered.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    if let Err(e) = std::fs::create_dir_all(&private_pkg) {
        let _ = writeln!(
            out,
            "prebuild: {}: {e}: nothing done",
            trees.display(&private_pkg)
        );
        return EXIT_OK;
    }
    if let Err(why) = run_pacman(pacman_in(&["-Swu"])) {
        let _ = writeln!(
            out,
            "prebuild: cannot download the upgrades: {why}: nothing built"
        );
        return EXIT_OK;
    }
    if let Some(e) = move_into_cache(&private_pkg, &paths.cache_dirs) {
        // Not fatal: the preflight finds them in the private cache too, and pacman downloads
        // them again.
        let _ = writeln!(out, "warning: prebuild: {e}");
    }
    let req = SyncRequest {
        targets: vec![],
        sysupgrade: 1,
        ignore: view.sync_request().ignore,
    };
    let mut cache_dirs = paths.cache_dirs.clone();
    cache_dirs.push(private_pkg.clone());
    let private_paths = PacmanPaths {
        db_path: private.clone(),
        cache_dirs,
        ..paths.clone()
    };
    let tx = Transaction::from_repos(&private_paths, &req);
    for n in &tx.notes {
        let _ = writeln!(out, "warning: prebuild: {n}");
    }
    let targets: BTreeSet<String> = tx
        .packages
        .iter()
        .flat_map(|p| p.listing.paths.iter())
        .filter(|p| is_trigger(p))
        .map(|p| p.trim_end_matches('/').to_owned())
        .collect();
    let brought: BTreeSet<&String> = targets.iter().collect();
    // The run lock, to build: one trial at a time, never beside a run of the hooks.
    let run_lock = trees.root.join(crate::os::lock::LOCK_FILE);
    let shown_lock = trees.display(&run_lock).into_owned();
    let waited = crate::os::lock::acquire(&run_lock, &shown_lock, &mut |path, pid| {
        let who = pid.map_or("a dkms-hook run".to_string(), |p| {
            format!("a dkms-hook run (pid {p})")
        });
        eprintln!("dkms-hook: prebuild: waiting for {who} to finish: it holds {path}");
    });
    let _run_lock = match waited {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(out, "prebuild: {e}: nothing built");
            return EXIT_OK;
        }
    };
    let _ = out.flush();
    let shown = |f: &Path| trees.display(f).into_owned();
    let judged = super::judge(trees, opts, &tx, &brought, Purpose::Prebuild, &shown, out);
    match judged {
        Judged::NotChecked => EXIT_OK,
        Judged::Interrupted { signal, checked } => {
            let _ = writeln!(
                out,
                "prebuild: interrupted by {}: {} module(s) not checked; what built is kept, the \
                 next prebuild goes on",
                crate::os::interrupt::name(signal),
                checked.unchecked.len()
            );
            EXIT_OK
        }
        Judged::Done(j) => {
            for (k, n) in &j.ok {
                let _ = writeln!(out, "prebuild: {n} DKMS modules built ahead for {k}");
            }
            for (m, ks) in &j.failed {
                let ks: Vec<&str> = ks.iter().map(String::as_str).collect();
                let _ = writeln!(
                    out,
                    "prebuild: {m} would not build for {}: the preflight of the upgrade will \
                     say so again",
                    ks.join(", ")
                );
            }
            if j.failed.is_empty() {
                EXIT_OK
            } else {
                EXIT_WOULD_FAIL
            }
        }
    }
}

/// Moves each complete download from `private` into the first of pacman's cache directories
/// that takes it, in one rename (a copy to a hidden name first, across filesystems), so that a
/// pacman reading the cache meanwhile sees a whole package or none. A file the cache has
/// already stays where it is. What could not move is said (the packages stay in `private`).
fn move_into_cache(private: &Path, caches: &[PathBuf]) -> Option<String> {
    let entries = std::fs::read_dir(private).ok()?;
    let mut failed = Vec::new();
    for e in entries.flatten() {
        let from = e.path();
        let name = e.file_name();
        if !from.is_file() || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if caches.iter().any(|c| c.join(&name).exists()) {
            let _ = std::fs::remove_file(&from);
            continue;
        }
        let moved = caches.iter().any(|c| {
            let to = c.join(&name);
            if std::fs::rename(&from, &to).is_ok() {
                return true;
            }
            let part = c.join(format!(".{}.dkms-hook.part", name.to_string_lossy()));
            let copied = std::fs::copy(&from, &part).and_then(|_| std::fs::rename(&part, &to));
            match copied {
                Ok(()) => {
                    let _ = std::fs::remove_file(&from);
                    true
                }
                Err(_) => {
                    let _ = std::fs::remove_file(&part);
                    false
                }
            }
        });
        if !moved {
            failed.push(name.to_string_lossy().into_owned());
        }
    }
    (!failed.is_empty()).then(|| {
        format!(
            "{} could not move into pacman's cache ({}): pacman -Syu downloads them again",
            failed.join(", "),
            caches
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Runs `work`, stopped as by a SIGTERM should pacman take its lock (`db_lock` appears)
/// meanwhile: then None, and the stop is withdrawn (the prebuild ends as it chose to).
fn giving_way_to_pacman<T>(db_lock: &Path, work: impl FnOnce() -> T) -> Option<T> {
    let done = AtomicBool::new(false);
    let gave_way = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                if db_lock.exists() {
                    if crate::os::interrupt::global().raise(libc::SIGTERM) {
                        gave_way.store(true, Ordering::SeqCst);
                    }
                    return;
                }
                std::thread::sleep(PACMAN_POLL);
            }
        });
        let r = work();
        done.store(true, Ordering::SeqCst);
        r
    });
    if gave_way.load(Ordering::SeqCst) {
        crate::os::interrupt::global().withdraw();
        return None;
    }
    Some(result)
}

/// Makes the private database directory: its `local` a link to pacman's, its `sync/` seeded
/// with pacman's sync databases of the configured repositories when it has none (so that the
/// first refresh downloads only what changed; a database pacman left behind of a repository
/// no longer configured is not copied).
fn prepare_private_db(private: &Path, paths: &PacmanPaths) -> std::io::Result<()> {
    let db_path = &paths.db_path;
    std::fs::create_dir_all(private.join("sync"))?;
    let local = private.join("local");
    let target = std::fs::canonicalize(db_path.join("local"))?;
    if std::fs::read_link(&local).ok().as_deref() != Some(target.as_path()) {
        let _ = std::fs::remove_file(&local);
        std::os::unix::fs::symlink(&target, &local)?;
    }
    let seeded = std::fs::read_dir(private.join("sync"))?.next().is_some();
    if !seeded {
        for repo in &paths.repos {
            let name = format!("{repo}.db");
            let p = db_path.join("sync").join(&name);
            let Ok(meta) = std::fs::metadata(&p) else {
                continue;
            };
            let to = private.join("sync").join(&name);
            std::fs::copy(&p, &to)?;
            // The time too: pacman asks the mirror for what is newer than its copy.
            if let Ok(t) = meta.modified() {
                let _ = std::fs::File::options()
                    .write(true)
                    .open(&to)
                    .and_then(|f| f.set_modified(t));
            }
        }
    }
    Ok(())
}

/// Runs pacman to its end; its last lines when it fails.
fn run_pacman(cmd: Command) -> Result<(), String> {
    match crate::os::process::run(cmd) {
        Ok(f) if f.status.success() => Ok(()),
        Ok(f) => {
            // Its last lines say why (pacman's error: lines come last).
            let text = f.output.text_up_to(1 << 20);
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
            Err(format!("pacman {}: {}", f.status, tail.trim()))
        }
        Err(e) => Err(format!("pacman: {e}")),
    }
}

/// The installed packages that the refreshed databases in `private` of the configured
/// repositories `repos` offer in a newer version and whose installed version owns what DKMS
/// builds from (a kernel's image or headers, a module's dkms.conf): `NAME OLD -> NEW`.
fn dkms_upgrades(private: &Path, repos: &[String]) -> BTreeSet<String> {
    let (sync, _) = pkgdb::read_sync_dbs(&private.join("sync"), repos);
    let local_dir = private.join("local");
    let local = pkgdb::read_local_descs(&local_dir);
    let mut seen = BTreeSet::new();
    let mut out = BTreeSet::new();
    for d in sync {
        if !seen.insert(d.name.clone()) {
            continue;
        }
        let Some(installed) = local.get(&d.name) else {
            continue;
        };
        if pkgdb::vercmp(&d.version, &installed.version) <= 0 {
            continue;
        }
        let owns = pkgdb::local_files(&local_dir, &d.name, &installed.version)
            .iter()
            .any(|f| is_trigger(f));
        if owns {
            out.insert(format!("{} {} -> {}", d.name, installed.version, d.version));
        }
    }
    out
}

/// The default place of the pacman program.
pub fn pacman_program() -> PathBuf {
    std::env::var_os("DKMS_HOOK_PACMAN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("pacman"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_triggers_are_the_preflight_hooks() {
        assert!(is_trigger("usr/src/foo-1.0/dkms.conf"));
        assert!(is_trigger("usr/lib/modules/6.9.1-arch1-1/vmlinuz"));
        assert!(is_trigger("usr/lib/modules/6.9.1-arch1-1/build/include/"));
        assert!(!is_trigger("usr/src/foo-1.0/sub/dkms.conf"));
        assert!(!is_trigger(
            "usr/lib/modules/6.9.1-arch1-1/build/include/linux/x.h"
        ));
        assert!(!is_trigger("usr/lib/modules/6.9.1-arch1-1/modules.order"));
        // The hook file says the same.
        let hook = include_str!("../../libalpm-hooks.d/70-dkms-hook-preflight.hook");
        for t in [
            "usr/src/*/dkms.conf",
            "usr/lib/modules/*/vmlinuz",
            "usr/lib/modules/*/build/include/",
        ] {
            assert!(hook.contains(&format!("Target = {t}\n")), "{t}");
        }
    }
}
