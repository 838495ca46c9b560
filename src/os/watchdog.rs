//! Children that die with the run, however it dies.
//!
//! A run told to stop (SIGTERM, SIGINT, SIGHUP) forwards the signal to its children's process
//! groups ([`crate::os::interrupt`]). A run killed with SIGKILL (`kill -9`, the OOM killer) can do
//! nothing: left alone, dkms, make and the compiler would go on writing into the build directory
//! that the next run uses, with the lock already free. Two things stop them:
//!
//! - every child is started with `PR_SET_PDEATHSIG` = SIGKILL ([`crate::os::process`]), so the
//!   process dkms-hook started (dkms itself) dies with it; that signal reaches no grandchild;
//! - a watchdog, a small bash started when the run takes its lock, in a process group of its own
//!   and deaf to the stopping signals, learns each child's process group through a pipe (`+G`,
//!   `-G` before the leader is reaped, so a group id is never reused while it is listed). When
//!   the pipe closes without a word (dkms-hook is gone), it kills every group still listed. It
//!   holds the run lock's file too, so the lock is free only once they are dead: the next run
//!   never builds beside them. At a normal end the run says so (`.`) before the pipe closes, and
//!   waits for the watchdog to exit before its lock goes ([`stop`]): an orderly end kills
//!   nothing, even a group listed by another user of the library in the same process (the
//!   lock's unit tests run beside tests whose children are listed).
//!
//! Only the watchdog gets the lock's descriptor: a child that outlives its group (a daemon a
//! Makefile starts) must not hold the lock forever. The one exception is dkms-hook's own child
//! that starts children of its own, the preflight's view ([`lock_fd`]): it inherits the
//! descriptor, closes it on exec for its own children, and hands it to a watchdog of its own, so
//! that when dkms-hook is killed (its watchdog kills the view's group), the view's watchdog kills
//! the view's dkms groups, and the lock is free only once they are gone. Each watchdog waits (a
//! bounded time) for the groups it killed to be gone before it exits.

use std::io::Write;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

/// The watchdog's program: reads `+G`/`-G` lines, kills the groups left when its input ends.
const SCRIPT: &str = r#"
trap '' INT TERM HUP PIPE
declare -A live
while read -r op group; do
    case $op in
        +) live[$group]=1 ;;
        -) unset "live[$group]" ;;
        .) exit 0 ;;
    esac
done
for group in "${!live[@]}"; do
    kill -KILL -- "-$group" 2>/dev/null
done
# The lock goes with this process: not before the groups are gone (5 s at most each).
for group in "${!live[@]}"; do
    for _ in {1..100}; do
        kill -0 -- "-$group" 2>/dev/null || break
        sleep 0.05
    done
done
"#;

struct Watchdog {
    child: Child,
    input: ChildStdin,
    /// The run lock's descriptor it holds.
    lock_fd: RawFd,
}

static WATCHDOG: Mutex<Option<Watchdog>> = Mutex::new(None);

fn state() -> std::sync::MutexGuard<'static, Option<Watchdog>> {
    WATCHDOG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the watchdog, holding `lock_fd` (the run lock's file) for as long as it lives. Without
/// bash, there is none (each child still dies with dkms-hook, not its own children).
pub fn start(lock_fd: RawFd) {
    let mut st = state();
    if st.is_some() {
        return;
    }
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // SAFETY: fcntl is async-signal-safe; the descriptor is the lock's, open in the parent.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(lock_fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    if let Ok(mut child) = cmd.spawn() {
        if let Some(input) = child.stdin.take() {
            *st = Some(Watchdog {
                child,
                input,
                lock_fd,
            });
        }
    }
}

/// The run lock's descriptor the watchdog holds, when there is one: a child of dkms-hook's own
/// that starts children of its own (the preflight's view) inherits it and starts its own
/// watchdog with it, so that the lock stays held until that child's groups are gone too.
pub fn lock_fd() -> Option<RawFd> {
    state().as_ref().map(|w| w.lock_fd)
}

fn say(line: String) {
    if let Some(w) = state().as_mut() {
        let _ = w.input.write_all(line.as_bytes());
    }
}

/// A child's process group started: killed if dkms-hook dies while it runs.
pub fn track(group: i32) {
    say(format!("+ {group}\n"));
}

/// A child's process group ended (its leader not yet reaped).
pub fn untrack(group: i32) {
    say(format!("- {group}\n"));
}

/// The run ends: the watchdog is told so (its input closes with no group listed) and waited for.
pub fn stop() {
    let w = state().take();
    if let Some(Watchdog {
        mut child,
        mut input,
        ..
    }) = w
    {
        let _ = input.write_all(b".\n");
        drop(input);
        let _ = child.wait();
    }
}
