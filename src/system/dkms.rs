//! The dkms runner: one `dkms` process per call, with the trees passed explicitly.
//!
//! dkms owns building, signing, compression and its tree; this module only builds its command lines
//! and captures what it prints (stdout and stderr interleaved, as a user would see them, kept as
//! bytes and read back as far as a report needs; a call ends when dkms exits, see
//! [`crate::os::process`]). Paths are
//! normalised before they reach dkms (see [`crate::system::trees`]). `DKMS_HOOK_DKMS` names another dkms
//! program: tests use it to run a different dkms version, or to inject a fault real dkms cannot be made
//! to produce.

use crate::os::jobserver::Jobserver;
use crate::os::process::{self, Output};
use crate::system::trees::Trees;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// dkms's exit codes that mean something to us.
pub mod exit {
    pub const OK: i32 = 0;
    pub const ALREADY: i32 = 3;
    pub const EXCLUDED: i32 = 77;
}

/// What one dkms call did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Exit code; `None` when killed by a signal or not started.
    pub code: Option<i32>,
    /// stdout and stderr, interleaved.
    pub output: Output,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.code == Some(exit::OK)
    }
}

/// What the dkms calls of one job printed, in the order they ran (and dkms-hook's own lines
/// between them), each as written: read line by line, or copied whole into a kept log.
#[derive(Debug, Clone, Default)]
pub struct Printed(Vec<Output>);

impl Printed {
    /// What one call printed.
    pub fn of(output: &Output) -> Printed {
        Printed(vec![output.clone()])
    }

    /// This, then `output`.
    pub fn and(mut self, output: impl Into<Output>) -> Printed {
        self.0.push(output.into());
        self
    }

    /// Everything, as one stream of bytes.
    fn reader(&self) -> Box<dyn Read + Send + '_> {
        self.0.iter().fold(Box::new(io::empty()), |all, o| {
            Box::new(all.chain(o.reader()))
        })
    }

    /// Its lines, each shown lossily (see [`crate::system::makelog::lines`]).
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        crate::system::makelog::lines(self.reader())
    }

    /// Copies every byte into `to`.
    pub fn copy_to(&self, to: &mut dyn Write) -> io::Result<u64> {
        io::copy(&mut self.reader(), to)
    }
}

impl From<&Output> for Output {
    fn from(o: &Output) -> Output {
        o.clone()
    }
}

impl From<&Output> for Printed {
    fn from(o: &Output) -> Printed {
        Printed::of(o)
    }
}

impl From<&Printed> for Printed {
    fn from(p: &Printed) -> Printed {
        p.clone()
    }
}

/// dkms-hook's own text (`""`: nothing printed).
impl From<&str> for Printed {
    fn from(text: &str) -> Printed {
        Printed::default().and(Output::from(text.to_string()))
    }
}

/// How to call dkms for one set of trees.
#[derive(Debug, Clone)]
pub struct Dkms {
    pub program: PathBuf,
    pub trees: Trees,
    /// Calls still running at this instant are stopped (their process group killed).
    pub deadline: Option<std::time::Instant>,
    /// The run's make jobserver, which the builds' makes join ([`Dkms::share_make`]).
    pub make: Option<std::sync::Arc<Jobserver>>,
}

impl Dkms {
    pub fn new(trees: &Trees) -> Dkms {
        Dkms {
            program: find_program().unwrap_or_else(|| PathBuf::from("dkms")),
            trees: trees.clone(),
            deadline: None,
            make: None,
        }
    }

    /// Makes the builds' makes share one jobserver of `cpus` tokens for the whole run (see
    /// [`crate::os::jobserver`]); its `make` wrapper goes under the root's `run/`. Called with
    /// the run lock held. Without it (the message says why), `-j` is shared instead.
    pub fn share_make(&mut self, cpus: usize) -> Result<(), String> {
        let dir = self.trees.root.join(crate::os::jobserver::WRAPPER_DIR);
        self.share_make_with_wrapper_in(cpus, &dir)
    }

    /// [`Dkms::share_make`], the `make` wrapper written in `dir`.
    pub fn share_make_with_wrapper_in(&mut self, cpus: usize, dir: &Path) -> Result<(), String> {
        let path = std::env::var_os("PATH");
        match Jobserver::with_wrapper_in(cpus, dir, path.as_ref()) {
            Ok(js) => {
                self.make = Some(std::sync::Arc::new(js));
                Ok(())
            }
            Err(e) => Err(format!(
                "no make jobserver, make's -j is shared instead: {e}"
            )),
        }
    }

    /// The same dkms, with calls stopped `limit` from now (`None`: no limit).
    pub fn until(&self, limit: Option<std::time::Duration>) -> Dkms {
        Dkms {
            deadline: limit.map(|l| std::time::Instant::now() + l),
            ..self.clone()
        }
    }

    /// Whether the dkms program can be run: an executable file (`DKMS_HOOK_DKMS`, or the one
    /// found in `PATH`); the message names it and says where it came from.
    pub fn check(&self) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let from = match std::env::var_os("DKMS_HOOK_DKMS").filter(|p| !p.is_empty()) {
            Some(_) => "DKMS_HOOK_DKMS=",
            None if self.program.components().count() == 1 => {
                return Err("dkms: not found in PATH (install dkms, or name one with \
                            DKMS_HOOK_DKMS=/path/to/dkms)"
                    .to_string())
            }
            None => "",
        };
        let shown = format!("{from}{}", self.program.display());
        match std::fs::metadata(&self.program) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
            Ok(_) => Err(format!("{shown}: not an executable file")),
            Err(e) => Err(format!("{shown}: {e}")),
        }
    }

    fn command(&self, action: &str, module: &str, version: &str) -> Command {
        let mut c = Command::new(&self.program);
        c.arg(action)
            .arg("-m")
            .arg(module)
            .arg("-v")
            .arg(version)
            .arg("--sourcetree")
            .arg(&self.trees.source)
            .arg("--dkmstree")
            .arg(&self.trees.dkms)
            .arg("--installtree")
            .arg(&self.trees.install)
            .env("LC_ALL", "C")
            // The kernel's Makefile unexports LC_ALL: the compiler would speak the user's
            // language, and the failure block finds its error lines by their English words.
            .env("LC_MESSAGES", "C")
            .env_remove("LANGUAGE")
            .envs(self.trees.dkms_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        c
    }

    /// `dkms add`: registers a version from `source_tree/NAME-VERSION`.
    pub fn add(&self, module: &str, version: &str) -> Outcome {
        self.run(self.command("add", module, version))
    }

    /// `dkms install --no-depmod` for one kernel (builds first when needed; an installed pair is
    /// left as it is).
    pub fn install(
        &self,
        module: &str,
        version: &str,
        kernel: &str,
        headers: &Path,
        make_jobs: usize,
    ) -> Outcome {
        self.run(self.for_kernel("install", module, version, kernel, headers, make_jobs))
    }

    /// `dkms build` for one kernel: builds without installing (a version installed there stays).
    pub fn build(
        &self,
        module: &str,
        version: &str,
        kernel: &str,
        headers: &Path,
        make_jobs: usize,
    ) -> Outcome {
        self.run(self.for_kernel("build", module, version, kernel, headers, make_jobs))
    }

    /// `dkms uninstall --no-depmod` from one kernel: its build stays, to install again.
    pub fn uninstall(&self, module: &str, version: &str, kernel: &str) -> Outcome {
        let mut c = self.command("uninstall", module, version);
        c.arg("-k").arg(kernel).arg("--no-depmod");
        self.run(c)
    }

    /// `dkms build --force` for one kernel: unbuilds what is built and builds from the sources as
    /// they are now (dkms 3.0 and 3.2 alike; `install --force` would reinstall the old build).
    pub fn rebuild(
        &self,
        module: &str,
        version: &str,
        kernel: &str,
        headers: &Path,
        make_jobs: usize,
    ) -> Outcome {
        let mut c = self.for_kernel("build", module, version, kernel, headers, make_jobs);
        c.arg("--force");
        self.run(c)
    }

    /// `dkms install --force --no-depmod`: installs what is built, replacing an installed copy.
    pub fn reinstall(
        &self,
        module: &str,
        version: &str,
        kernel: &str,
        headers: &Path,
        make_jobs: usize,
    ) -> Outcome {
        let mut c = self.for_kernel("install", module, version, kernel, headers, make_jobs);
        c.arg("--force");
        self.run(c)
    }

    fn for_kernel(
        &self,
        action: &str,
        module: &str,
        version: &str,
        kernel: &str,
        headers: &Path,
        make_jobs: usize,
    ) -> Command {
        let mut c = self.command(action, module, version);
        c.arg("-k")
            .arg(kernel)
            .arg("--kernelsourcedir")
            .arg(headers)
            .arg("-j")
            .arg(make_jobs.to_string())
            .arg("--no-depmod");
        if let Some(js) = &self.make {
            js.configure(&mut c);
        }
        c
    }

    /// `dkms remove --no-depmod` from one kernel, or from all with `kernel = None`.
    pub fn remove(&self, module: &str, version: &str, kernel: Option<&str>) -> Outcome {
        let mut c = self.command("remove", module, version);
        match kernel {
            Some(k) => c.arg("-k").arg(k),
            None => c.arg("--all"),
        };
        c.arg("--no-depmod");
        self.run(c)
    }

    fn run(&self, cmd: Command) -> Outcome {
        run_until(cmd, self.deadline)
    }
}

/// The dkms program: `DKMS_HOOK_DKMS` when set, else the first `dkms` in `PATH` or the usual
/// places. One lookup for every caller, so `status` speaks the dialect of the dkms that builds.
pub fn find_program() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DKMS_HOOK_DKMS").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("dkms"))
        .find(|p| p.is_file())
}

/// Runs a command to its exit, stdout and stderr together in the order written (see
/// [`crate::os::process`]).
pub fn run(cmd: Command) -> Outcome {
    run_until(cmd, None)
}

/// [`run`], stopping the command's process group when it is still running at `deadline`.
pub fn run_until(cmd: Command, deadline: Option<std::time::Instant>) -> Outcome {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let watch = process::Watch {
        deadline,
        stall: None,
    };
    match process::run_with(cmd, watch) {
        Ok(f) => Outcome {
            code: f.status.code(),
            output: f.output,
        },
        Err(e) => Outcome {
            code: None,
            output: Output::from(format!("cannot run {program}: {e}\n")),
        },
    }
}

/// The lines of a signing step that failed, from what dkms printed; empty when none failed.
/// dkms exits 0 and installs the module unsigned when `sign-file` fails: 3.4 says `Failed to sign
/// module '...'!`, 3.0 says nothing of its own; both pass on sign-file's `At main.c:N:`,
/// `- SSL error:...` and `sign-file: KEY` lines.
pub fn signing_failure<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> Vec<String> {
    lines
        .into_iter()
        .filter_map(|l| {
            let l = l.as_ref().trim();
            (l.contains("Failed to sign module")
                || l.starts_with("sign-file: ")
                || (l.starts_with("At main.c:") && l.ends_with(':'))
                || l.starts_with("- SSL error:"))
            .then(|| l.to_string())
        })
        .take(MAX_SIGNING_LINES)
        .collect()
}

/// At most this many lines of a failed signing step are shown.
const MAX_SIGNING_LINES: usize = 40;

/// dkms's exit code in words, as dkms 3.0 to 3.4 use them (`die N` and `report_build_problem N`
/// in its script; 5 and 6 cover the patch steps too, 12 is not signing).
pub fn exit_words(code: Option<i32>) -> String {
    let words = match code {
        None => return "killed, or could not start (no exit status)".to_string(),
        Some(0) => "succeeded",
        Some(1) => "failed",
        Some(2) => "invalid arguments",
        Some(3) => "already added or built",
        Some(4) => "module broken (in the dkms tree)",
        Some(5) => "missing or bad module source, or a patch that climbs or is missing",
        Some(6) => "install failed, or a patch did not apply",
        Some(7) => "built module missing after make",
        Some(8) => "bad dkms.conf, or no module source beside it",
        Some(9) => "cannot make or load a dkms archive",
        Some(10) => "make failed",
        Some(11) => "autoinstall failed",
        Some(12) => "could not determine the architecture",
        Some(13) => "missing BUILD_DEPENDS",
        Some(21) => "kernel headers missing",
        Some(77) => "excluded by BUILD_EXCLUSIVE",
        Some(101) => "PRE_INSTALL script refused the install",
        Some(_) => "failed",
    };
    format!("{words} (dkms exit {})", code.unwrap_or_default())
}

/// The last `n` non-empty lines of dkms's output.
pub fn tail<S: AsRef<str>>(lines: impl IntoIterator<Item = S>, n: usize) -> Vec<String> {
    let mut last: VecDeque<String> = VecDeque::new();
    for l in lines {
        let l = l.as_ref();
        if n == 0 || l.trim().is_empty() {
            continue;
        }
        if last.len() == n {
            last.pop_front();
        }
        last.push_back(l.to_string());
    }
    last.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_interleaves_stdout_and_stderr() {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("echo one; echo two >&2; echo three; exit 10");
        let o = run(c);
        assert_eq!(o.code, Some(10));
        assert_eq!(o.output.bytes().unwrap(), b"one\ntwo\nthree\n");
    }

    /// What several calls printed reads as one text, lossily, and copies as the bytes written.
    #[test]
    fn printed_outputs_read_in_order_and_copy_byte_for_byte() {
        let mut c = Command::new("printf");
        c.arg("Building module:\\ncaf\\351 failed\\n");
        let first = run(c);
        let p = Printed::of(&first.output)
            .and(Output::from("==> dkms remove\n".to_string()))
            .and(&run(Command::new("true")).output);
        assert_eq!(
            p.lines().collect::<Vec<_>>(),
            ["Building module:", "caf\u{fffd} failed", "==> dkms remove"]
        );
        let mut copy = Vec::new();
        p.copy_to(&mut copy).unwrap();
        assert_eq!(copy, b"Building module:\ncaf\xe9 failed\n==> dkms remove\n");
        assert_eq!(
            tail(p.lines(), 2),
            ["caf\u{fffd} failed", "==> dkms remove"]
        );
    }

    #[test]
    fn a_failed_signing_step_is_found_in_either_dialect() {
        let v3_0 = "Signing module /var/lib/dkms/m/1/build/m.ko\nAt main.c:174:\n\
                    - SSL error:1E08010C:DECODER routines::unsupported: decoder_lib.c:101\n\
                    sign-file: /etc/keys/db.key\nInstalling /lib/modules/k/updates/dkms/m.ko\n";
        assert_eq!(signing_failure(v3_0.lines()).len(), 3);
        let v3_4 = "Signing module /x/m.ko\nWarning: Failed to sign module '/x/m.ko'!\n\
                    At main.c:170:\nsign-file: /etc/keys/db.key\n";
        assert_eq!(
            signing_failure(v3_4.lines())[0],
            "Warning: Failed to sign module '/x/m.ko'!"
        );
        assert!(signing_failure("Signing module /x/m.ko\nInstalling ...\n".lines()).is_empty());
    }

    #[test]
    fn exit_codes_in_words() {
        assert_eq!(exit_words(Some(10)), "make failed (dkms exit 10)");
        // dkms exits 8 for a bad dkms.conf and for a source directory with nothing but it.
        assert_eq!(
            exit_words(Some(8)),
            "bad dkms.conf, or no module source beside it (dkms exit 8)"
        );
        assert_eq!(exit_words(Some(250)), "failed (dkms exit 250)");
        // Defect: "dkms add dkms was killed or could not start" said dkms twice.
        assert_eq!(
            format!("dkms add: {}", exit_words(None)),
            "dkms add: killed, or could not start (no exit status)"
        );
    }
}
