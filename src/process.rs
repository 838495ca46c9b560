//! Child processes that are finished when they exit, not when their output pipe closes.
//!
//! dkms 3.4 prints progress dots from a background `while sleep 3` loop that inherits its stdout: a
//! pipe read to its end stays open until that `sleep` ends, up to 3 s after dkms exited
//! (rust-lang/rust#68936: `wait_with_output` hangs so). Here a child writes stdout and stderr to one
//! anonymous in-memory file (so they keep their order), runs in a process group of its own, and is
//! waited for by its exit alone. Once it has exited, and before it is reaped (so its id cannot be
//! reused), whatever is left of its group is killed: no grandchild holds a job open or outlives it.
//! The group is what later signals and timeouts will be sent to ([`Running::group`]).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};

/// A started child, leader of its own process group.
#[derive(Debug)]
pub struct Running {
    child: Child,
    output: File,
}

/// What a finished child left.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// stdout and stderr, interleaved as written.
    pub output: String,
}

impl Running {
    /// Starts `cmd` with stdout and stderr captured, in a new process group.
    pub fn spawn(mut cmd: Command) -> io::Result<Running> {
        let output = anonymous_file()?;
        cmd.stdout(output.try_clone()?)
            .stderr(output.try_clone()?)
            .process_group(0);
        let child = cmd.spawn()?;
        Ok(Running { child, output })
    }

    /// The child's process group id (its pid): signal `-group` to reach every process it started.
    pub fn group(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the child to exit, kills what is left of its group, reaps it, returns its output.
    pub fn wait(mut self) -> io::Result<Finished> {
        let pid = self.group();
        // Wait for the exit without reaping: while the child is a zombie its id, and so its group's
        // id, cannot be given to another process.
        loop {
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let r = unsafe {
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if r == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        // Leftovers (a background `sleep` of dkms's progress loop); ESRCH when there are none.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let status = self.child.wait()?;
        let mut buf = Vec::new();
        self.output.seek(SeekFrom::Start(0))?;
        self.output.read_to_end(&mut buf)?;
        Ok(Finished {
            status,
            output: String::from_utf8_lossy(&buf).into_owned(),
        })
    }
}

/// Runs `cmd` to its exit (see [`Running`]).
pub fn run(cmd: Command) -> io::Result<Finished> {
    Running::spawn(cmd)?.wait()
}

/// A file with no name, in memory, closed on exec in this process (the child gets its own copies).
fn anonymous_file() -> io::Result<File> {
    let fd = unsafe { libc::memfd_create(c"dkms-hook-output".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn output_keeps_its_order_and_the_exit_code_is_kept() {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("echo one; echo two >&2; echo three; exit 10");
        let f = run(c).unwrap();
        assert_eq!(f.status.code(), Some(10));
        assert_eq!(f.output, "one\ntwo\nthree\n");
    }

    /// Whether `pid` is gone (or a zombie nobody has reaped yet, which runs nothing).
    fn gone(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        }
    }

    /// Fault injection, the shape of dkms 3.4's progress loop: a background `sleep 30` keeps the
    /// child's stdout open after the child exits. The call must end with the child, and the sleep
    /// must not survive it.
    #[test]
    fn a_grandchild_holding_stdout_neither_holds_the_call_nor_survives() {
        let mut c = Command::new("sh");
        c.arg("-c").arg("sleep 30 & echo $!; echo done; exit 3");
        let t = Instant::now();
        let f = run(c).unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "took {:?}",
            t.elapsed()
        );
        assert_eq!(f.status.code(), Some(3));
        let mut lines = f.output.lines();
        let sleep: i32 = lines.next().unwrap().parse().unwrap();
        assert_eq!(lines.next(), Some("done"));
        let deadline = Instant::now() + Duration::from_secs(2);
        while !gone(sleep) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(gone(sleep), "the sleep {sleep} survived its parent");
    }
}
