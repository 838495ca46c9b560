//! One run at a time: an exclusive `flock` on `ROOT/run/dkms-hook.lock`.
//!
//! dkms has no locking, and two runs on the same trees (a run by hand while pacman's hook runs)
//! build the same module version in one shared build directory and undo each other's installs.
//! So every run that changes the trees (install, remove, a plain run, and preflight, whose scratch
//! directory is one fixed place each run empties) holds this lock from before it reads the trees
//! until it exits; `--dry-run`, `status` and `lint` change nothing and take none.
//!
//! Where: `/run` (under `--root`), as iptables keeps `/run/xtables.lock`. It is root's alone (not
//! `/run/lock`, where any user could create the file first and hold it), it is emptied at boot,
//! and it sits outside the dkms tree, where dkms and `status` would take any entry for a module.
//! A run by hand in `arch-chroot /mnt` and pacman's hook for `--root /mnt` reach the same file.
//!
//! `flock` is released by the kernel when its holder dies however it dies, so a stale lock never
//! blocks; the holder's pid, written into the file, only serves the waiting message. The wait
//! polls, so that a signal stops a waiting run too.

use crate::os::interrupt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// The lock file, relative to the root.
pub const LOCK_FILE: &str = "run/dkms-hook.lock";

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    /// A stopping signal came while waiting.
    #[error("interrupted by {} while waiting for {path}", interrupt::name(*.signal))]
    Interrupted { path: String, signal: i32 },
}

/// The held lock; released when dropped (or when the process ends), once the
/// [`crate::os::watchdog`] that shares it has ended.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        crate::os::watchdog::stop();
    }
}

/// Takes the lock at `path` (a root's [`LOCK_FILE`]), `shown` so in messages, waiting while
/// another run holds it; `waiting` is called once, with the holder's pid when known, before the
/// wait.
pub fn acquire(
    path: &Path,
    shown: &str,
    waiting: &mut dyn FnMut(&str, Option<u32>),
) -> Result<RunLock, LockError> {
    let shown = shown.to_string();
    let io_err = |source| LockError::Io {
        path: shown.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err)?;
    let mut told = false;
    loop {
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) && e.kind() != io::ErrorKind::Interrupted {
            return Err(io_err(e));
        }
        if let Some(signal) = interrupt::global().signal() {
            return Err(LockError::Interrupted {
                path: shown,
                signal,
            });
        }
        if !told {
            told = true;
            waiting(&shown, holder(&mut file));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Who holds it, for the next run's message.
    let pid = format!("{}\n", std::process::id());
    file.set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(pid.as_bytes()))
        .map_err(io_err)?;
    // From here on, the run's children die with it (see crate::os::watchdog).
    crate::os::watchdog::start(file.as_raw_fd());
    Ok(RunLock { _file: file })
}

/// The pid the holder wrote, when that process exists.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_and_a_dropped_lock_frees_it() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(LOCK_FILE);
        let shown = "/run/dkms-hook.lock";
        let first = acquire(&path, shown, &mut |_, _| panic!("nobody holds it yet")).unwrap();
        let path2 = path.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let mut told = None;
            let lock = acquire(&path2, shown, &mut |path, pid| {
                told = Some((path.to_string(), pid));
                tx.send(()).unwrap();
            });
            (lock.is_ok(), told)
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the second did not say it waits");
        drop(first);
        let (ok, told) = t.join().unwrap();
        assert!(ok);
        assert_eq!(
            told,
            Some(("/run/dkms-hook.lock".to_string(), Some(std::process::id())))
        );
    }

    /// A lock file left by a run that died (its pid inside, no flock held) never blocks.
    #[test]
    fn a_dead_runs_lock_file_does_not_block() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("run")).unwrap();
        fs::write(d.path().join(LOCK_FILE), "999999999\n").unwrap();
        let path = d.path().join(LOCK_FILE);
        let lock = acquire(&path, "/run/dkms-hook.lock", &mut |_, _| {
            panic!("waited for a dead run")
        });
        assert!(lock.is_ok());
        let pid = fs::read_to_string(d.path().join(LOCK_FILE)).unwrap();
        assert_eq!(pid, format!("{}\n", std::process::id()));
    }
}
