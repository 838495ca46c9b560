//! Child processes that are finished when they exit, not when their output pipe closes.
//!
//! dkms 3.4 prints progress dots from a background `while sleep 3` loop that inherits its stdout: a
//! pipe read to its end stays open until that `sleep` ends, up to 3 s after dkms exited
//! (rust-lang/rust#68936: `wait_with_output` hangs so). Here a child writes stdout and stderr to one
//! anonymous in-memory file (so they keep their order), runs in a process group of its own, and is
//! waited for by its exit alone. Once it has exited, and before it is reaped (so its id cannot be
//! reused), whatever is left of its group is killed: no grandchild holds a job open or outlives it.
//! The group is what signals are forwarded to ([`crate::os::interrupt`]) and what a time limit stops
//! ([`Watch`]): SIGTERM, then SIGKILL after [`STOP_GRACE`]. Should dkms-hook itself be killed
//! (SIGKILL), the child dies with it (`PR_SET_PDEATHSIG`) and the rest of its group with the
//! [`crate::os::watchdog`].
//!
//! What the child wrote stays in its file ([`Output`]), as bytes: callers read back what they
//! need (the last lines, the lines that match, a copy into a kept log), never the whole of an
//! output that has no bound of its own.

use crate::os::interrupt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a group told to stop (SIGTERM) at a time limit has before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A started child, leader of its own process group.
#[derive(Debug)]
pub struct Running {
    child: Child,
    output: File,
    /// stderr, when it is kept apart from stdout ([`Running::spawn_split`]).
    errors: Option<File>,
}

/// What a finished child left.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// stdout and stderr, interleaved as written (stdout alone after [`Running::spawn_split`]).
    pub output: Output,
    /// stderr after [`Running::spawn_split`]; empty otherwise.
    pub errors: Output,
    /// Why the child was stopped, if it was stopped for taking too long.
    pub stopped: Option<Limit>,
}

/// What a child wrote to one stream, as bytes, in its anonymous file (or a text of dkms-hook's
/// own): read back as far as asked. Clones share the file.
#[derive(Debug, Clone, Default)]
pub struct Output(Stored);

#[derive(Debug, Clone, Default)]
enum Stored {
    #[default]
    Empty,
    Text(Arc<[u8]>),
    File(Arc<File>),
}

impl Output {
    /// The output's size in bytes.
    pub fn len(&self) -> u64 {
        match &self.0 {
            Stored::Empty => 0,
            Stored::Text(t) => t.len() as u64,
            Stored::File(f) => f.metadata().map_or(0, |m| m.len()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads it from its start.
    pub fn reader(&self) -> Box<dyn Read + Send + '_> {
        match &self.0 {
            Stored::Empty => Box::new(io::empty()),
            Stored::Text(t) => Box::new(&t[..]),
            Stored::File(f) => Box::new(FileReader { file: f, at: 0 }),
        }
    }

    /// The whole output, for outputs that are small by nature (a record stream of dkms-hook's
    /// own evaluator, `modinfo -F`); anything else is read through [`Output::reader`].
    pub fn bytes(&self) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.reader().read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// At most the first `limit` bytes, shown lossily (invalid UTF-8 as U+FFFD).
    pub fn text_up_to(&self, limit: u64) -> String {
        let mut buf = Vec::new();
        let _ = self.reader().take(limit).read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Copies the whole output, byte for byte, into `to`; returns the bytes copied.
    pub fn copy_to(&self, to: &mut dyn Write) -> io::Result<u64> {
        io::copy(&mut self.reader(), to)
    }
}

impl From<String> for Output {
    fn from(text: String) -> Output {
        if text.is_empty() {
            return Output::default();
        }
        Output(Stored::Text(text.into_bytes().into()))
    }
}

impl From<File> for Output {
    fn from(file: File) -> Output {
        Output(Stored::File(Arc::new(file)))
    }
}

/// Reads a shared file from its start by position (no shared seek offset).
struct FileReader<'a> {
    file: &'a File,
    at: u64,
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// The limits a wait puts on a child.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Watch {
    /// Stopped (SIGTERM, then SIGKILL after [`STOP_GRACE`]) when still running at this instant.
    pub deadline: Option<Instant>,
    /// Stopped when its stdout has not grown for this long (a child that reports progress).
    pub stall: Option<Duration>,
}

/// Which limit a child ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Deadline,
    Stalled,
}

impl Running {
    /// Starts `cmd` with stdout and stderr captured together, in a new process group. Refused
    /// (`ErrorKind::Interrupted`) once dkms-hook is told to stop, until its cleanup.
    pub fn spawn(cmd: Command) -> io::Result<Running> {
        Running::start(cmd, false)
    }

    /// Like [`Running::spawn`], with stderr captured apart from stdout.
    pub fn spawn_split(cmd: Command) -> io::Result<Running> {
        Running::start(cmd, true)
    }

    fn start(mut cmd: Command, split: bool) -> io::Result<Running> {
        let stop = interrupt::global();
        if let Err(sig) = stop.may_start() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                format!("not started: dkms-hook got {}", interrupt::name(sig)),
            ));
        }
        let output = anonymous_file()?;
        let errors = if split { Some(anonymous_file()?) } else { None };
        let err_to = match &errors {
            Some(e) => e.try_clone()?,
            None => output.try_clone()?,
        };
        cmd.stdout(output.try_clone()?)
            .stderr(err_to)
            .process_group(0);
        // The child dies with dkms-hook, even killed with SIGKILL (see crate::os::watchdog for its
        // own children). PR_SET_PDEATHSIG follows the thread that forks: each child is waited
        // for by the thread that starts it.
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: prctl, getppid and kill are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    // dkms-hook died before the line above.
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        stop.register(child.id() as i32);
        crate::os::watchdog::track(child.id() as i32);
        Ok(Running {
            child,
            output,
            errors,
        })
    }

    /// The child's process group id (its pid): signal `-group` to reach every process it started.
    pub fn group(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the child to exit, kills what is left of its group, reaps it, returns its output.
    pub fn wait(self) -> io::Result<Finished> {
        self.wait_with(Watch::default())
    }

    /// [`Running::wait`], stopping the child's group when it runs into a limit of `watch`.
    pub fn wait_with(mut self, watch: Watch) -> io::Result<Finished> {
        let pid = self.group();
        let stopped = self.wait_exit(watch);
        // Leftovers (a background `sleep` of dkms's progress loop); ESRCH when there are none.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        interrupt::global().unregister(pid);
        crate::os::watchdog::untrack(pid);
        let stopped = stopped?;
        let status = self.child.wait()?;
        Ok(Finished {
            status,
            output: Output::from(self.output),
            errors: self.errors.map(Output::from).unwrap_or_default(),
            stopped,
        })
    }

    /// Waits for the exit without reaping: while the child is a zombie its id, and so its
    /// group's id, cannot be given to another process.
    fn wait_exit(&mut self, watch: Watch) -> io::Result<Option<Limit>> {
        let pid = self.group();
        if watch == Watch::default() {
            exited(pid, true)?;
            return Ok(None);
        }
        let pidfd = PidFd::open(pid);
        let mut stopped: Option<(Limit, Instant)> = None;
        let mut size = self.output.metadata().map_or(0, |m| m.len());
        let mut grew = Instant::now();
        loop {
            if exited(pid, false)? {
                return Ok(stopped.map(|(l, _)| l));
            }
            let now = Instant::now();
            match stopped {
                None => {
                    let new_size = self.output.metadata().map_or(size, |m| m.len());
                    if new_size != size {
                        (size, grew) = (new_size, now);
                    }
                    let limit = if watch.deadline.is_some_and(|d| now >= d) {
                        Some(Limit::Deadline)
                    } else if watch.stall.is_some_and(|s| now - grew >= s) {
                        Some(Limit::Stalled)
                    } else {
                        None
                    };
                    if let Some(l) = limit {
                        unsafe { libc::kill(-pid, libc::SIGTERM) };
                        stopped = Some((l, now));
                    }
                }
                Some((_, since)) if now - since >= STOP_GRACE => {
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                }
                Some(_) => {}
            }
            pidfd.wait(Duration::from_millis(100));
        }
    }
}

/// Whether `pid` has exited (blocking until it does with `block`), without reaping it.
fn exited(pid: i32, block: bool) -> io::Result<bool> {
    loop {
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOWAIT | if block { 0 } else { libc::WNOHANG };
        let r = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
        if r == 0 {
            // With WNOHANG and no change, waitid returns 0 and leaves si_pid at 0.
            return Ok(unsafe { info.si_pid() } != 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A pidfd, to sleep until a child exits or a tick passes; a plain sleep where there is none.
struct PidFd(Option<OwnedFd>);

impl PidFd {
    fn open(pid: i32) -> PidFd {
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        PidFd((fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    fn wait(&self, tick: Duration) {
        match &self.0 {
            Some(fd) => {
                let mut p = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                unsafe { libc::poll(&mut p, 1, tick.as_millis() as libc::c_int) };
            }
            None => std::thread::sleep(tick),
        }
    }
}

/// Runs `cmd` to its exit (see [`Running`]).
pub fn run(cmd: Command) -> io::Result<Finished> {
    Running::spawn(cmd)?.wait()
}

/// Runs `cmd` to its exit or to the limits of `watch`.
pub fn run_with(cmd: Command, watch: Watch) -> io::Result<Finished> {
    Running::spawn(cmd)?.wait_with(watch)
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
        assert_eq!(f.output.bytes().unwrap(), b"one\ntwo\nthree\n");
    }

    /// Bytes as written, whatever they are: read back whole, in part, or copied.
    #[test]
    fn output_is_kept_as_bytes_and_read_as_far_as_asked() {
        let mut c = Command::new("printf");
        c.arg("caf\\351 au lait\\n");
        let f = run(c).unwrap();
        assert_eq!(f.output.bytes().unwrap(), b"caf\xe9 au lait\n");
        assert_eq!(f.output.len(), 13);
        assert_eq!(f.output.text_up_to(5), "caf\u{fffd} ");
        let mut copy = Vec::new();
        assert_eq!(f.output.copy_to(&mut copy).unwrap(), 13);
        assert_eq!(copy, b"caf\xe9 au lait\n");
        // Clones share the file; each reader starts at the beginning.
        let again = f.output.clone();
        assert_eq!(again.bytes().unwrap(), f.output.bytes().unwrap());
        assert!(f.errors.is_empty());
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
        let text = f.output.text_up_to(u64::MAX);
        let mut lines = text.lines();
        let sleep: i32 = lines.next().unwrap().parse().unwrap();
        assert_eq!(lines.next(), Some("done"));
        let deadline = Instant::now() + Duration::from_secs(2);
        while !gone(sleep) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(gone(sleep), "the sleep {sleep} survived its parent");
    }

    /// A child past its deadline is stopped with its whole group, and says so.
    #[test]
    fn a_deadline_stops_the_whole_group() {
        let mut c = Command::new("sh");
        c.arg("-c").arg("sleep 30 & echo $!; sleep 30");
        let t = Instant::now();
        let watch = Watch {
            deadline: Some(Instant::now() + Duration::from_millis(300)),
            stall: None,
        };
        let f = run_with(c, watch).unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "took {:?}",
            t.elapsed()
        );
        assert_eq!(f.stopped, Some(Limit::Deadline));
        let sleep: i32 = f.output.text_up_to(64).trim().parse().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(gone(sleep), "the background sleep {sleep} survived");
    }

    /// A child whose output stops growing is stopped after the stall limit, not before.
    #[test]
    fn a_stall_is_output_that_stops_growing() {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("for i in 1 2 3 4 5; do echo $i; sleep 0.2; done; sleep 30");
        let t = Instant::now();
        let watch = Watch {
            deadline: None,
            stall: Some(Duration::from_millis(600)),
        };
        let f = run_with(c, watch).unwrap();
        assert_eq!(f.stopped, Some(Limit::Stalled));
        assert_eq!(f.output.bytes().unwrap(), b"1\n2\n3\n4\n5\n");
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
            "{took:?}"
        );
    }
}
