//! What dkms-hook does when told to stop: SIGTERM, SIGINT or SIGHUP.
//!
//! Every child runs in a process group of its own ([`crate::os::process`]), so a signal sent to
//! dkms-hook (pacman's, a terminal's Ctrl-C, systemd's) never reaches dkms or make by itself: left
//! alone they would go on writing into the trees after dkms-hook is gone. Here the first such
//! signal is recorded and forwarded to every process group that is running, every child started
//! later is refused (or, started in the same instant, signalled at once), and the groups still
//! alive [`GRACE`] later are killed. The runner sees the signal ([`Interrupt::signal`]), starts
//! nothing more, waits for its jobs, then enters the cleanup ([`Interrupt::clean_up`]): from then
//! on children start normally, so that the interrupted pairs can be made whole, and a further
//! signal is only recorded. The exit status is 128 + the signal, as a shell reports it.
//!
//! The signal handler itself is signal-hook's: it only writes to a pipe, and a thread of ours
//! reads it and does the rest, so nothing async-signal-unsafe runs in a handler.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How long the running groups have, after the signal is forwarded, before they are killed.
pub const GRACE: Duration = Duration::from_secs(10);

/// The signals that stop a run.
pub const SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// The state of one run's interruption: the signal received and the process groups to forward
/// it to. Production uses [`global`]; tests make their own.
#[derive(Debug, Default)]
pub struct Interrupt {
    signal: AtomicI32,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Process groups whose leader is not reaped yet (so their ids cannot be reused).
    groups: BTreeSet<i32>,
    /// The cleanup has begun: children start and are left alone.
    cleaning: bool,
}

static GLOBAL: Interrupt = Interrupt::new();

/// Set while the run only waits for its input: nothing has started that a signal would have to
/// stop or make whole.
static ONLY_WAITING: AtomicBool = AtomicBool::new(false);

/// Runs `read` (a read of pacman's targets from stdin) so that a signal during it ends the run
/// at once, saying so: the handler restarts the read, and someone at a terminal pressing Ctrl-C
/// would otherwise wait on. A signal that came before it ends the run before it reads.
pub fn only_waiting<T>(read: impl FnOnce() -> T) -> T {
    ONLY_WAITING.store(true, Ordering::SeqCst);
    if let Some(sig) = global().signal() {
        end_while_waiting(sig);
    }
    let r = read();
    ONLY_WAITING.store(false, Ordering::SeqCst);
    r
}

fn end_while_waiting(sig: i32) -> ! {
    eprintln!(
        "dkms-hook: interrupted by {} while waiting for the targets on stdin: nothing done",
        name(sig)
    );
    std::process::exit(exit_code(sig).into())
}

/// The process's own interruption state, the one [`install`] feeds.
pub fn global() -> &'static Interrupt {
    &GLOBAL
}

impl Interrupt {
    pub const fn new() -> Interrupt {
        Interrupt {
            signal: AtomicI32::new(0),
            state: Mutex::new(State {
                groups: BTreeSet::new(),
                cleaning: false,
            }),
        }
    }

    /// The first stopping signal received, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `sig`; the first one is forwarded to every running group. Returns whether it was
    /// the first.
    pub fn raise(&self, sig: i32) -> bool {
        let st = self.state();
        let first = self
            .signal
            .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if first && !st.cleaning {
            for g in &st.groups {
                unsafe { libc::kill(-g, sig) };
            }
        }
        first
    }

    /// Forgets a stop the process asked of itself with [`Interrupt::raise`] once it is over (a
    /// prebuild that gave way to pacman): the exit status is then the mode's own, and children
    /// may start again.
    pub fn withdraw(&self) {
        let mut st = self.state();
        self.signal.store(0, Ordering::SeqCst);
        st.cleaning = false;
    }

    /// Kills every group still running, unless the cleanup has begun.
    pub fn kill_remaining(&self) {
        let st = self.state();
        if !st.cleaning {
            for g in &st.groups {
                unsafe { libc::kill(-g, libc::SIGKILL) };
            }
        }
    }

    /// The jobs are over: children started from now on serve the cleanup and are left alone.
    pub fn clean_up(&self) {
        self.state().cleaning = true;
    }

    /// Whether a child may start now: not between a signal and the cleanup.
    pub fn may_start(&self) -> Result<(), i32> {
        let st = self.state();
        match self.signal() {
            Some(sig) if !st.cleaning => Err(sig),
            _ => Ok(()),
        }
    }

    /// Tracks a started group; a signal that came while it started is sent to it at once.
    pub fn register(&self, group: i32) {
        let mut st = self.state();
        st.groups.insert(group);
        if let (Some(sig), false) = (self.signal(), st.cleaning) {
            unsafe { libc::kill(-group, sig) };
        }
    }

    /// Forgets a group, before its leader is reaped.
    pub fn unregister(&self, group: i32) {
        self.state().groups.remove(&group);
    }
}

/// Installs the handler of [`SIGNALS`]: the first one is forwarded to the running groups, and
/// those still running [`GRACE`] later are killed.
pub fn install() -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new(SIGNALS)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if ONLY_WAITING.load(Ordering::SeqCst) {
                    end_while_waiting(sig);
                }
                if global().raise(sig) {
                    std::thread::spawn(|| {
                        std::thread::sleep(GRACE);
                        global().kill_remaining();
                    });
                }
            }
        })?;
    Ok(())
}

/// `SIGTERM`, `SIGINT`, `SIGHUP`, or the number.
pub fn name(sig: i32) -> String {
    match sig {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

/// The exit status after `sig`: 128 + its number (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP).
pub fn exit_code(sig: i32) -> u8 {
    (128 + sig).clamp(0, 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_shells() {
        assert_eq!(exit_code(libc::SIGINT), 130);
        assert_eq!(exit_code(libc::SIGTERM), 143);
        assert_eq!(exit_code(libc::SIGHUP), 129);
    }

    #[test]
    fn children_are_refused_between_the_signal_and_the_cleanup() {
        let i = Interrupt::new();
        assert_eq!(i.may_start(), Ok(()));
        assert!(i.raise(libc::SIGTERM));
        assert!(!i.raise(libc::SIGINT), "only the first signal counts");
        assert_eq!(i.signal(), Some(libc::SIGTERM));
        assert_eq!(i.may_start(), Err(libc::SIGTERM));
        i.clean_up();
        assert_eq!(i.may_start(), Ok(()));
    }
}
