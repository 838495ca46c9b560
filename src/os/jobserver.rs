//! One GNU make jobserver for the whole run: the CPUs, as tokens, shared by every make of every
//! build, so that a long make takes the cores that finished builds give back, and the
//! compilations of all the builds together never outnumber the CPUs.
//!
//! The pool is the `jobserver` crate's (cargo's): a pipe holding `cpus - 1` tokens. Each make that
//! joins runs one recipe on its implicit token and takes a token from the pipe for each further
//! one. The implicit token of every make is its job's: the first job running holds the run's own,
//! and the runner takes a token from the pipe before it starts each further job
//! ([`Jobserver::client`]) and gives it back when the job ends. So at any moment the compilations
//! are at most `jobs running + (cpus - 1 - (jobs running - 1))` = `cpus`.
//!
//! make joins an inherited jobserver (`--jobserver-auth=R,W` in `MAKEFLAGS`, understood by GNU
//! make 4.x) only when its command line has no `-j`: `-jN`, and even a bare `-j`, makes it say
//! "-jN forced in submake: resetting jobserver mode" and run a pool of its own. dkms (3.0.10,
//! 3.2.2, 3.4.3 alike) turns a MAKE that starts with `make` into `make -j$parallel_jobs
//! KERNELRELEASE=K ...` (`-j 0` gives a bare `-j`: unlimited), and a dkms.conf may write its own
//! `make -j$(nproc)`. So [`Jobserver::configure`] also puts a small `make` first in the child's
//! `PATH` ([`WRAPPER`]): when `MAKEFLAGS` carries a jobserver, it drops `-jN`, `-j N`, `-j`,
//! `--jobs=N`, `--jobs N` and a j among other flags (`-sj4`) from its arguments, then `exec`s
//! the real make. It is written, whole or not at all (a rename), to
//! `ROOT/run/dkms-hook/jobserver/make` (root's, emptied at boot, beside the run lock). A MAKE
//! that names make by an absolute path (`/usr/bin/make`) bypasses it: dkms adds no `-j` to such
//! a line, so that make joins all the same, unless the line has its own `-j`, whose make then
//! runs its own pool beside the shared one.
//!
//! The pipe's two descriptors are close-on-exec in dkms-hook: only a child given to
//! [`Jobserver::configure`] inherits them (dkms, and through it make and the compilers), never the
//! watchdog nor the lock's holders ([`crate::os::watchdog`]); each such child's process group is
//! killed when it ends ([`crate::os::process`]), and a process that escaped it holds a pipe end,
//! nothing that blocks another run.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the `make` wrapper goes, relative to the root.
pub const WRAPPER_DIR: &str = "run/dkms-hook/jobserver";

/// The `make` put first in dkms's `PATH`; `@MAKE@` is the real make's path.
pub const WRAPPER: &str = r#"#!/bin/bash
# dkms-hook's make: joins the run's jobserver. make given -j on its command line would run a
# pool of its own; with a jobserver in MAKEFLAGS, every -j is dropped, then the real make runs.
if [[ " $MAKEFLAGS " == *" --jobserver-auth="* ]]; then
    args=()
    while (($#)); do
        # -j, -jN, -j N, and the same after other one-letter flags (-sj4, -kj 8; letters that
        # take an argument, as -C, cannot come before a j).
        if [[ $1 =~ ^-([bBdehikLnpqrRsStvw]*)j([0-9]*)$ ]]; then
            [[ ${BASH_REMATCH[1]} ]] && args+=("-${BASH_REMATCH[1]}")
            [[ -z ${BASH_REMATCH[2]} && ${2-} =~ ^[0-9]+$ ]] && shift
        else
            case $1 in
                --jobs) [[ ${2-} =~ ^[0-9]+$ ]] && shift ;;
                --jobs=*) ;;
                *) args+=("$1") ;;
            esac
        fi
        shift
    done
    set -- "${args[@]}"
fi
exec '@MAKE@' "$@"
"#;

/// The run's pool of CPUs for make.
#[derive(Debug)]
pub struct Jobserver {
    client: jobserver::Client,
    /// The directory of the `make` wrapper; `None` when no make was found (nothing to wrap).
    wrapper: Option<PathBuf>,
}

impl Jobserver {
    /// A pool of `cpus` compilations at once (at least one) for the run on `root`, its `make`
    /// wrapper written under [`WRAPPER_DIR`] there, wrapping the first `make` of `path`.
    pub fn new(cpus: usize, root: &Path, path: Option<&OsString>) -> io::Result<Jobserver> {
        Jobserver::with_wrapper_in(cpus, &root.join(WRAPPER_DIR), path)
    }

    /// [`Jobserver::new`], the `make` wrapper written in `dir` (the preflight's view, where
    /// `/run` is sealed read-only, has it in its scratch).
    pub fn with_wrapper_in(
        cpus: usize,
        dir: &Path,
        path: Option<&OsString>,
    ) -> io::Result<Jobserver> {
        let client = jobserver::Client::new(cpus.max(1) - 1)?;
        let dir = dir.to_path_buf();
        let real = path.and_then(|p| {
            std::env::split_paths(p)
                .filter(|d| d != &dir)
                .map(|d| d.join("make"))
                .find(|m| is_executable(m))
        });
        let wrapper = match real {
            Some(real) => {
                write_wrapper(&dir, &real)?;
                Some(dir)
            }
            None => None,
        };
        Ok(Jobserver { client, wrapper })
    }

    /// Makes `cmd` a member of the pool: `MAKEFLAGS` (and `MFLAGS`, `CARGO_MAKEFLAGS`) name the
    /// pipe, its descriptors are inherited, and the `make` wrapper comes first in its `PATH`
    /// (the one `cmd` is given, else this process's).
    pub fn configure(&self, cmd: &mut Command) {
        self.client.configure_make(cmd);
        if let Some(dir) = &self.wrapper {
            let given = cmd
                .get_envs()
                .find(|(k, _)| *k == "PATH")
                .and_then(|(_, v)| v.map(|v| v.to_os_string()));
            let path = given
                .or_else(|| std::env::var_os("PATH"))
                .unwrap_or_default();
            let mut dirs = vec![dir.clone()];
            dirs.extend(std::env::split_paths(&path).filter(|d| d != dir));
            if let Ok(joined) = std::env::join_paths(dirs) {
                cmd.env("PATH", joined);
            }
        }
    }

    /// The pool's client, for the runner's tokens (one per job beyond the first running).
    pub fn client(&self) -> &jobserver::Client {
        &self.client
    }
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Writes the wrapper for `real` into `dir`, whole or not at all.
fn write_wrapper(dir: &Path, real: &Path) -> io::Result<()> {
    let shown = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(shown)?;
    // A path with a quote cannot be put between quotes: no wrapper rather than a broken one.
    let real = real.to_str().filter(|r| !r.contains('\'')).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: a path make cannot be wrapped with", real.display()),
        )
    })?;
    let tmp = dir.join(format!("make.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(shown)?;
    f.write_all(WRAPPER.replace("@MAKE@", real).as_bytes())
        .map_err(shown)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o755))
        .map_err(shown)?;
    drop(f);
    std::fs::rename(&tmp, dir.join("make")).map_err(shown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A Makefile of `n` recipes that each log their start and end and sleep.
    fn makefile(dir: &Path, n: usize) -> PathBuf {
        let targets: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        let mk = dir.join("Makefile");
        std::fs::write(
            &mk,
            format!(
                "all: {t}\n{t}:\n\t@echo start >>log; sleep 0.3; echo end >>log\n",
                t = targets.join(" ")
            ),
        )
        .unwrap();
        mk
    }

    /// How many recipes ran at once at most, from the log's start and end lines.
    fn most_at_once(dir: &Path) -> usize {
        let log = std::fs::read_to_string(dir.join("log")).unwrap();
        let (mut now, mut most) = (0i32, 0i32);
        for l in log.lines() {
            now += if l == "start" { 1 } else { -1 };
            most = most.max(now);
        }
        most as usize
    }

    fn make_in(js: &Jobserver, dir: &Path, args: &[&str]) -> (Duration, String) {
        let mut c = Command::new("make");
        c.arg("-C").arg(dir).args(args);
        js.configure(&mut c);
        let t = Instant::now();
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        (
            t.elapsed(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// make given `-jN`, `-j N`, `--jobs=N`, a bare `-j` or `-sj8` on its command line keeps to
    /// the pool (here 2): the wrapper dropped the `-j`, so make joined instead of resetting the
    /// jobserver.
    #[test]
    fn a_make_given_its_own_j_keeps_to_the_pool() {
        if !is_executable(Path::new("/usr/bin/make")) {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let js = Jobserver::new(2, root.path(), std::env::var_os("PATH").as_ref()).unwrap();
        for args in [
            &["-j8"][..],
            &["-j", "8"],
            &["--jobs=8"],
            &["-j"],
            &["-sj8"],
            &["-skj", "8"],
            &[],
        ] {
            let work = tempfile::tempdir().unwrap();
            makefile(work.path(), 6);
            let (_, err) = make_in(&js, work.path(), args);
            assert!(!err.contains("resetting jobserver"), "{args:?}: {err}");
            assert_eq!(most_at_once(work.path()), 2, "{args:?}");
        }
    }

    /// The wrapper is the child's first `make`, before the PATH it was given, and wraps the real
    /// one, not itself.
    #[test]
    fn the_wrapper_comes_first_and_wraps_the_real_make() {
        let root = tempfile::tempdir().unwrap();
        let bin = tempfile::tempdir().unwrap();
        let real = bin.path().join("make");
        std::fs::write(&real, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = root.path().join(WRAPPER_DIR);
        let path = std::env::join_paths([dir.clone(), bin.path().to_path_buf()]).unwrap();
        let js = Jobserver::new(3, root.path(), Some(&path)).unwrap();
        let text = std::fs::read_to_string(dir.join("make")).unwrap();
        assert!(
            text.contains(&format!("exec '{}' \"$@\"", real.display())),
            "{text}"
        );
        let mut c = Command::new("true");
        c.env("PATH", "/usr/bin:/bin");
        js.configure(&mut c);
        let env: Vec<_> = c.get_envs().collect();
        let path = env.iter().find(|(k, _)| *k == "PATH").unwrap().1.unwrap();
        assert_eq!(
            path.to_str().unwrap(),
            format!("{}:/usr/bin:/bin", dir.display())
        );
        let flags = env
            .iter()
            .find(|(k, _)| *k == "MAKEFLAGS")
            .unwrap()
            .1
            .unwrap();
        assert!(flags.to_str().unwrap().contains("--jobserver-auth="));
        // cpus - 1 tokens in the pipe: the first job holds the implicit one.
        assert_eq!(js.client().available().unwrap(), 2);
    }
}
