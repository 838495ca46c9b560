//! Helpers shared by dkms-hook's integration tests (`crate::common`).
//!
//! Every test works in its own [`TestRoot`], a temporary directory passed as
//! `--root`, with the machine's real kernel headers linked in, module sources
//! copied from `tests/fixtures` or from real Debian `-dkms` packages
//! (extracted by `tests/setup.sh` into `tests/.cache/sources`), and the real
//! `dkms` as the referee of what ended up installed. Nothing here touches the
//! machine's own /usr/src, /var/lib/dkms or /usr/lib/modules.
#![allow(dead_code)] // each helper is used by some of the test modules

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::fs;
use std::hash::Hasher;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

/// The path of the dkms-hook binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_dkms-hook");

/// The repository's root (where Cargo.toml is).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Our own module sources: `tests/fixtures/NAME-VERSION/`.
pub fn fixtures_dir() -> PathBuf {
    repo_dir().join("tests/fixtures")
}

/// Real Debian module sources, extracted by tests/setup.sh.
pub fn real_sources_dir() -> PathBuf {
    repo_dir().join("tests/.cache/sources/usr/src")
}

/// The compiler a kernel was built with, by the name kbuild calls it (`x86_64-linux-gnu-gcc-12`),
/// from the `CONFIG_CC_VERSION_TEXT` of the kernel `.config` at `config`; `gcc` when it has none.
pub fn kernel_cc(config: &Path) -> String {
    let text = std::fs::read_to_string(config).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("CONFIG_CC_VERSION_TEXT=\""))
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or("gcc")
        .to_owned()
}

/// Where Debian installs kernel headers: `/usr/src/linux-headers-K`.
pub fn headers_dir(kernel: &str) -> PathBuf {
    PathBuf::from(format!("/usr/src/linux-headers-{kernel}"))
}

/// The installed Debian kernel releases that have headers (a
/// `/usr/src/linux-headers-*-amd64` directory with a Makefile), oldest first.
/// Panics when there are fewer than two: the tests need two kernels.
pub fn kernels() -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(entries) = fs::read_dir("/usr/src") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(release) = name.strip_prefix("linux-headers-") else {
                continue;
            };
            if release.ends_with("-amd64") && entry.path().join("Makefile").is_file() {
                found.push(release.to_owned());
            }
        }
    }
    found.sort_by(|a, b| version_cmp(a, b));
    assert!(
        found.len() >= 2,
        "the tests need the headers of two kernels in /usr/src/linux-headers-*-amd64, found {found:?}: \
         run tests/setup.sh as root (or the whole suite with tests/run)"
    );
    found
}

/// The two newest of [`kernels`], older first.
pub fn two_newest_kernels() -> (String, String) {
    let mut ks = kernels();
    let k2 = ks.pop().expect("two kernels");
    let k1 = ks.pop().expect("two kernels");
    (k1, k2)
}

/// Version order: dkms-hook's own (`dkms_hook::system::version`), so that the tests and the engine
/// never disagree on which kernel or module version is newer.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    dkms_hook::system::version::cmp(a, b)
}

/// What a finished process left: its exit code and output.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The exit code; -1 when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// stdout and stderr interleaved as they were read. The order across the
    /// two streams is exact only for writes apart in time; use
    /// [`TestRoot::run_merged`] for pacman's exact view (there `stdout` is
    /// the combined output and `stderr` is empty).
    pub combined: String,
}

impl RunOutput {
    /// Everything the process printed, for assertion messages.
    pub fn dump(&self) -> String {
        format!("exit code {}\n--- output ---\n{}", self.code, self.combined)
    }
}

/// Runs `cmd` to the end with `stdin` as its input, capturing its output.
pub fn run_command(cmd: Command, stdin: &str) -> RunOutput {
    run_command_bytes(cmd, stdin.as_bytes())
}

/// [`run_command`] with any bytes as input (pacman's paths are bytes).
pub fn run_command_bytes(cmd: Command, stdin: &[u8]) -> RunOutput {
    run_command_watched(cmd, stdin, |_| ())
}

/// [`run_command`], also returning the most memory the process itself (not its children) held
/// at once: its peak resident set (`VmHWM` of /proc/PID/status, in KiB), read every 10 ms while
/// it runs. A high-water mark: a reading after the peak sees it, however briefly it lasted.
pub fn run_command_peak_rss(cmd: Command, stdin: &str) -> (RunOutput, u64) {
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = Arc::clone(&peak);
    let out = run_command_watched(cmd, stdin.as_bytes(), move |pid| {
        let status = format!("/proc/{pid}/status");
        // Gone, or a zombie (no memory, no VmHWM line any more): the run is over.
        while let Some(kib) = fs::read_to_string(&status).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            seen.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
            thread::sleep(std::time::Duration::from_millis(10));
        }
    });
    (out, peak.load(std::sync::atomic::Ordering::Relaxed))
}

/// Runs `cmd` as [`run_command_bytes`] does, with `watch` called in a thread of its own with the
/// child's pid as soon as it started; the run ends when both the child and `watch` are done.
fn run_command_watched(
    mut cmd: Command,
    stdin: &[u8],
    watch: impl FnOnce(u32) + Send + 'static,
) -> RunOutput {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{:?}: cannot start: {e}", cmd.get_program()));
    let pid = child.id();
    let watcher = thread::spawn(move || watch(pid));
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    let writer = thread::spawn(move || {
        // The process may exit without reading its input: ignore EPIPE.
        let _ = input.write_all(&stdin);
    });
    let combined = Arc::new(Mutex::new(Vec::new()));
    let out = read_in_thread(child.stdout.take().expect("stdout"), &combined);
    let err = read_in_thread(child.stderr.take().expect("stderr"), &combined);
    let status = child.wait().expect("waiting for a child");
    let stdout = out.join().expect("output reader panicked");
    let stderr = err.join().expect("output reader panicked");
    writer.join().expect("input writer panicked");
    watcher.join().expect("the watcher panicked");
    let combined = String::from_utf8_lossy(&combined.lock().unwrap()).into_owned();
    RunOutput {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        combined,
    }
}

/// Reads a stream to its end in a thread, appending each chunk to
/// `combined` as it comes; the thread returns the stream's own bytes.
fn read_in_thread(
    mut reader: impl Read + Send + 'static,
    combined: &Arc<Mutex<Vec<u8>>>,
) -> thread::JoinHandle<Vec<u8>> {
    let combined = Arc::clone(combined);
    thread::spawn(move || {
        let mut own = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    combined.lock().unwrap().extend_from_slice(&buf[..n]);
                    own.extend_from_slice(&buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("reading a child's output: {e}"),
            }
        }
        own
    })
}

/// Copies a directory tree with `cp -a` (modes, links and times kept).
pub fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp: cannot start");
    assert!(
        status.success(),
        "cp -a {} {}: failed",
        from.display(),
        to.display()
    );
}

/// The vermagic a module file was built with, e.g.
/// `6.1.0-55-amd64 SMP preempt mod_unload modversions`.
pub fn vermagic(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    let out = Command::new("modinfo")
        .args(["-F", "vermagic"])
        .arg(path)
        .output()
        .expect("modinfo: cannot start");
    assert!(
        out.status.success(),
        "modinfo {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The kernel release a module file was built for (vermagic's first word).
pub fn vermagic_release(path: impl AsRef<Path>) -> String {
    vermagic(path)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// One entry of a [`Snapshot`]: enough to tell any change apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    File {
        mode: u32,
        uid: u32,
        gid: u32,
        mtime_ns: i128,
        len: u64,
        hash: u64,
    },
    Symlink {
        target: PathBuf,
    },
    Other {
        mode: u32,
    },
}

/// Every path under a root (relative to it), symlinks not followed.
pub type Snapshot = BTreeMap<PathBuf, Node>;

/// The differences between two snapshots, one line each, for assertions.
pub fn snapshot_diff(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (path, node) in before {
        match after.get(path) {
            None => out.push(format!("removed {}", path.display())),
            Some(new) if new != node => {
                out.push(format!("changed {}: {node:?} -> {new:?}", path.display()))
            }
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push(format!("added {}", path.display()));
    }
    out
}

fn snapshot_into(root: &Path, dir: &Path, out: &mut Snapshot) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = entry.path();
        let meta =
            fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let rel = path
            .strip_prefix(root)
            .expect("under the root")
            .to_path_buf();
        let mode = meta.permissions().mode();
        let node = if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Node::Symlink { target }
        } else if meta.is_dir() {
            snapshot_into(root, &path, out);
            Node::Dir {
                mode,
                uid: meta.uid(),
                gid: meta.gid(),
            }
        } else if meta.is_file() {
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut hasher = DefaultHasher::new();
            hasher.write(&bytes);
            Node::File {
                mode,
                uid: meta.uid(),
                gid: meta.gid(),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
                len: meta.len(),
                hash: hasher.finish(),
            }
        } else {
            Node::Other { mode }
        };
        out.insert(rel, node);
    }
}

/// A private `--root` in a temporary directory, with the trees dkms-hook and
/// dkms use: usr/src, var/lib/dkms, usr/lib/modules. Removed when dropped,
/// unless DKMSHOOK_KEEP_ROOT is set in the environment (then its path is
/// printed, for a look after a failure).
pub struct TestRoot {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    /// The dkms program dkms-hook drives (through `DKMS_HOOK_DKMS`) and the
    /// referee runs; `None` is the machine's `dkms`.
    dkms: Option<PathBuf>,
}

impl Default for TestRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        if std::env::var_os("DKMSHOOK_KEEP_ROOT").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("test root kept: {}", dir.keep().display());
            }
        }
    }
}

impl TestRoot {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("dkms-hook-test.")
            .tempdir()
            .expect("creating a temporary directory");
        let path = dir.path().to_path_buf();
        let root = TestRoot {
            dir: Some(dir),
            path,
            dkms: None,
        };
        for tree in ["usr/src", "var/lib/dkms", "usr/lib/modules"] {
            root.mkdir(tree);
        }
        root
    }

    /// A root on which dkms-hook drives `program` (through `DKMS_HOOK_DKMS`)
    /// instead of the machine's `dkms`, and on which [`TestRoot::dkms`], the
    /// referee, runs that same program.
    pub fn with_dkms(program: impl Into<PathBuf>) -> Self {
        let mut root = Self::new();
        root.dkms = Some(program.into());
        root
    }

    /// The dkms program of this root: the one given to
    /// [`TestRoot::with_dkms`], else the machine's `dkms`.
    pub fn dkms_program(&self) -> &Path {
        self.dkms.as_deref().unwrap_or(Path::new("dkms"))
    }

    /// Points `cmd`, a dkms-hook command line, at this root's dkms program.
    /// Without one, `DKMS_HOOK_DKMS` is removed from the environment, so
    /// dkms-hook drives the machine's `dkms`, the referee's.
    fn set_dkms_env(&self, cmd: &mut Command) {
        match &self.dkms {
            Some(program) => cmd.env("DKMS_HOOK_DKMS", program),
            None => cmd.env_remove("DKMS_HOOK_DKMS"),
        };
    }

    /// The root directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the root: `rel` is relative to it (a leading `/` is
    /// ignored), unless it already is a path under the root.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = rel.as_ref();
        if rel.starts_with(&self.path) {
            return rel.to_path_buf();
        }
        self.path.join(rel.strip_prefix("/").unwrap_or(rel))
    }

    pub fn source_tree(&self) -> PathBuf {
        self.join("usr/src")
    }

    pub fn dkms_tree(&self) -> PathBuf {
        self.join("var/lib/dkms")
    }

    pub fn install_tree(&self) -> PathBuf {
        self.join("usr/lib/modules")
    }

    /// The kernel's directory: `usr/lib/modules/K`.
    pub fn kernel_dir(&self, kernel: &str) -> PathBuf {
        self.install_tree().join(kernel)
    }

    pub fn mkdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let path = self.join(rel);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    /// Writes a file inside the root, creating its parent directories.
    pub fn write_file(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    pub fn read_file(&self, rel: impl AsRef<Path>) -> String {
        let path = self.join(rel);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Makes `usr/lib/modules/K` a kernel with headers: `build` links to the
    /// machine's Debian headers (cheap), and an empty `modules.order` stands
    /// for the kernel package's files.
    pub fn add_kernel(&self, kernel: &str) {
        let headers = headers_dir(kernel);
        assert!(
            headers.join("Makefile").is_file(),
            "{}: no kernel headers: run tests/setup.sh",
            headers.display()
        );
        let dir = self.mkdir(self.kernel_dir(kernel));
        std::os::unix::fs::symlink(&headers, dir.join("build"))
            .unwrap_or_else(|e| panic!("{}/build: {e}", dir.display()));
        self.write_file(dir.join("modules.order"), "");
    }

    /// Makes `usr/lib/modules/K` a kernel that counts as having headers without any: an empty
    /// `build/Makefile` and an empty `modules.order`. Enough to plan and to read status, never
    /// to build; for the tests that need no root and no headers.
    pub fn add_fake_kernel(&self, kernel: &str) {
        let dir = self.kernel_dir(kernel);
        self.write_file(dir.join("build/Makefile"), "");
        self.write_file(dir.join("modules.order"), "");
    }

    /// Copies a real Debian module source (from tests/.cache/sources) into
    /// usr/src; `prefix` is its name without the version, e.g. `acpi-call`
    /// or `tp_smapi`. Returns the directory name, e.g. `acpi-call-1.2.2`.
    pub fn add_real_source(&self, prefix: &str) -> String {
        let dir = real_sources_dir();
        let entries = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}: run tests/setup.sh", dir.display()));
        let mut matches: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| {
                name.strip_prefix(prefix)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|version| version.starts_with(|c: char| c.is_ascii_digit()))
            })
            .collect();
        matches.sort_by(|a, b| version_cmp(a, b));
        let name = matches.pop().unwrap_or_else(|| {
            panic!("{}: no {prefix}-VERSION: run tests/setup.sh", dir.display())
        });
        copy_tree(&dir.join(&name), &self.source_tree().join(&name));
        name
    }

    /// Copies one of our fixtures (`tests/fixtures/NAME-VERSION`) into usr/src.
    pub fn add_fixture(&self, name: &str) {
        let from = fixtures_dir().join(name);
        assert!(
            from.join("dkms.conf").is_file(),
            "{}: no such fixture",
            from.display()
        );
        copy_tree(&from, &self.source_tree().join(name));
    }

    /// The command line of dkms-hook on this root, without arguments yet,
    /// driving this root's dkms program.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--root").arg(&self.path);
        self.set_dkms_env(&mut cmd);
        cmd
    }

    /// Runs dkms-hook with `--root <root>` and `args`, `stdin` as input.
    pub fn run(&self, args: &[&str], stdin: &str) -> RunOutput {
        let mut cmd = self.command();
        cmd.args(args);
        run_command(cmd, stdin)
    }

    /// Like [`TestRoot::run`], but stdout and stderr share one pipe as under
    /// pacman: `combined` is exactly what pacman would show.
    pub fn run_merged(&self, args: &[&str], stdin: &str) -> RunOutput {
        self.run_merged_bytes(args, stdin.as_bytes())
    }

    /// [`TestRoot::run_merged`] with any bytes as input.
    pub fn run_merged_bytes(&self, args: &[&str], stdin: &[u8]) -> RunOutput {
        // The shell only joins stderr to stdout's pipe, then becomes dkms-hook.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exec \"$0\" \"$@\" 2>&1", BIN, "--root"]);
        cmd.arg(&self.path).args(args);
        self.set_dkms_env(&mut cmd);
        run_command_bytes(cmd, stdin)
    }

    /// This root's dkms program (see [`TestRoot::with_dkms`]) on this root's
    /// trees: see [`TestRoot::dkms_as`].
    pub fn dkms(&self, args: &[&str]) -> RunOutput {
        self.dkms_as(self.dkms_program(), args)
    }

    /// The dkms `program` on this root's trees, with --no-depmod (dkms 3.0.10
    /// runs depmod on the machine's /lib/modules otherwise). With `-k K` among
    /// `args`, K's headers in the root are passed as --kernelsourcedir (dkms
    /// 3.0.10 looks in /lib/modules/K/build otherwise), as the engine does.
    pub fn dkms_as(&self, program: &Path, args: &[&str]) -> RunOutput {
        let mut cmd = Command::new(program);
        cmd.args(args).arg("--no-depmod");
        cmd.arg("--sourcetree").arg(self.source_tree());
        cmd.arg("--dkmstree").arg(self.dkms_tree());
        cmd.arg("--installtree").arg(self.install_tree());
        if let Some(i) = args.iter().position(|a| *a == "-k") {
            if let Some(kernel) = args.get(i + 1) {
                cmd.arg("--kernelsourcedir")
                    .arg(self.kernel_dir(kernel).join("build"));
            }
        }
        run_command(cmd, "")
    }

    /// The referee: `status` of this root's dkms program on this root's
    /// trees, every line as printed, in its own order.
    pub fn dkms_status_lines(&self) -> Vec<String> {
        self.dkms_status_lines_as(self.dkms_program())
    }

    /// `status` of the dkms `program` on this root's trees, every line as
    /// printed, in its own order.
    pub fn dkms_status_lines_as(&self, program: &Path) -> Vec<String> {
        let out = self.dkms_as(program, &["status"]);
        assert_eq!(
            out.code,
            0,
            "{} status failed: {}",
            program.display(),
            out.dump()
        );
        out.stdout.lines().map(str::to_owned).collect()
    }

    /// The referee's lines ([`TestRoot::dkms_status_lines`]) sorted, to
    /// compare with an expected set.
    pub fn dkms_status(&self) -> Vec<String> {
        let mut lines = self.dkms_status_lines();
        lines.sort();
        lines
    }

    /// `dkms-hook status` must print what the referee's `status` prints,
    /// line for line and in the same order (it speaks the dialect of the
    /// dkms it drives).
    pub fn assert_status_matches_dkms(&self) {
        let ours = self.run(&["status"], "");
        assert_eq!(ours.code, 0, "{}", ours.dump());
        assert_eq!(
            ours.stdout.lines().map(str::to_owned).collect::<Vec<_>>(),
            self.dkms_status_lines(),
            "dkms-hook status differs from {} status",
            self.dkms_program().display()
        );
    }

    /// The make.log dkms kept for a module version it built for `kernel`
    /// (`M/V/K/x86_64/log/make.log` in the dkms tree).
    pub fn make_log(&self, module: &str, version: &str, kernel: &str) -> String {
        self.read_file(
            self.dkms_tree()
                .join(module)
                .join(version)
                .join(kernel)
                .join("x86_64/log/make.log"),
        )
    }

    /// Adds the headers of the two newest installed kernels: returns them,
    /// older first.
    pub fn two_kernels(&self) -> (String, String) {
        let (k1, k2) = two_newest_kernels();
        self.add_kernel(&k1);
        self.add_kernel(&k2);
        (k1, k2)
    }

    /// Every module file installed for each of `kernels` was built for
    /// that kernel (its vermagic's release).
    pub fn assert_modules_match_kernels(&self, kernels: &[&String]) {
        for k in kernels {
            for p in self.installed_ko_paths(k) {
                assert_eq!(&vermagic_release(self.kernel_dir(k).join(&p)), *k, "{p}");
            }
        }
    }

    /// Module files (`*.ko`, `*.ko.xz`, ...) under usr/lib/modules/K (not in
    /// build/), as paths relative to that directory, sorted.
    pub fn installed_ko_paths(&self, kernel: &str) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(ft) = entry.file_type() else { continue };
                if ft.is_dir() {
                    if dir == base && entry.file_name() == "build" {
                        continue;
                    }
                    walk(base, &path, out);
                } else if is_module_file(&entry.file_name().to_string_lossy()) {
                    let rel = path.strip_prefix(base).expect("under the base");
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        let base = self.kernel_dir(kernel);
        let mut out = Vec::new();
        walk(&base, &base, &mut out);
        out.sort();
        out
    }

    /// The file names of [`TestRoot::installed_ko_paths`], sorted.
    pub fn installed_kos(&self, kernel: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .installed_ko_paths(kernel)
            .into_iter()
            .map(|p| p.rsplit('/').next().unwrap_or_default().to_owned())
            .collect();
        names.sort();
        names
    }

    /// Every path of the root with its metadata and a content hash, to
    /// prove that a run changed nothing (compare with [`snapshot_diff`]).
    pub fn snapshot(&self) -> Snapshot {
        let mut out = Snapshot::new();
        snapshot_into(&self.path, &self.path, &mut out);
        out
    }
}

/// One line of `dkms status` for a module version on a kernel:
/// `M/V, K, x86_64: STATE`.
pub fn status_line(mv: &str, kernel: &str, state: &str) -> String {
    format!("{mv}, {kernel}, x86_64: {state}")
}

/// The `dkms status` lines, sorted, of every module version in `mvs`
/// (`M/V`) installed on every kernel in `kernels`.
pub fn installed_lines(mvs: &[impl AsRef<str>], kernels: &[impl AsRef<str>]) -> Vec<String> {
    let mut lines: Vec<String> = mvs
        .iter()
        .flat_map(|mv| {
            kernels
                .iter()
                .map(move |k| status_line(mv.as_ref(), k.as_ref(), "installed"))
        })
        .collect();
    lines.sort();
    lines
}

/// Debian 13's dkms script (3.2.2), extracted by tests/setup.sh: a newer
/// engine than Debian 12's 3.0.10, close to the one Arch ships.
pub fn newer_dkms() -> PathBuf {
    let path = newer_dkms_path();
    assert!(
        path.is_file(),
        "{}: missing: run tests/setup.sh as root (or the whole suite with tests/run)",
        path.display()
    );
    path
}

/// Where tests/setup.sh puts [`newer_dkms`], whether or not it is there.
pub fn newer_dkms_path() -> PathBuf {
    repo_dir().join("tests/.cache/dkms-trixie/usr/sbin/dkms")
}

/// Whether a file name is a kernel module (`x.ko`, `x.ko.xz`, `x.ko.zst`, `x.ko.gz`).
pub fn is_module_file(name: &str) -> bool {
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// dkms 3.4.3, the series Arch ships, built by tests/setup.sh from its release tarball when the
/// repository sits beside `shared/dkms`. In a plain clone it is missing: the test cannot run
/// ([`skip`]: counted as skipped under tests/run, a failure anywhere else) and `None` comes back,
/// for the caller to return.
pub fn dkms_343() -> Option<PathBuf> {
    let path = dkms_343_path();
    if path.is_file() {
        return Some(path);
    }
    skip(&dkms_343_missing());
    None
}

/// Why there is no dkms 3.4.3.
fn dkms_343_missing() -> String {
    format!(
        "dkms 3.4.3: {}: missing (no shared/dkms/dkms-3.4.3.tar.gz beside the repository for \
         tests/setup.sh to build it from)",
        dkms_343_path().display()
    )
}

/// The file tests/run names in this variable collects the tests that could not run here, one
/// line each (`skipped` or `partly`, the test, the reason, tab-separated), to count them in its
/// closing line. Without it (`cargo test` by hand, `.ci/run`), a test that cannot run fails.
pub const SKIPPED_ENV: &str = "DKMSHOOK_SKIPPED";

/// This test cannot run here (a dkms version it needs is missing, say): under tests/run it is
/// recorded with `reason`, and counted as skipped, not passed, in tests/run's closing line; the
/// caller then returns. Anywhere else it fails with the reason: a test that did nothing never
/// passes.
pub fn skip(reason: &str) {
    record_skip("skipped", reason);
}

/// Part of this test cannot run here (one of the dkms versions it goes through): recorded as
/// [`skip`] does, while the test goes on with the rest; tests/run names it as run in part.
/// Anywhere else it fails with the reason.
pub fn skip_part(reason: &str) {
    record_skip("partly", reason);
}

fn record_skip(kind: &str, reason: &str) {
    let test = thread::current()
        .name()
        .unwrap_or("(a test in the main thread)")
        .to_owned();
    let Some(file) = std::env::var_os(SKIPPED_ENV).filter(|f| !f.is_empty()) else {
        panic!(
            "cannot run: {reason} (tests/run counts a test that cannot run as skipped; \
             elsewhere, and under .ci/run, it fails)"
        );
    };
    eprintln!("{kind}: {reason}");
    let line = format!("{kind}\t{test}\t{}\n", reason.replace(['\t', '\n'], " "));
    // One short append per line: lines of tests running at once do not interleave.
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .unwrap_or_else(|e| panic!("{}: {e}", Path::new(&file).display()));
}

/// Where tests/setup.sh builds [`dkms_343`], whether or not it is there.
pub fn dkms_343_path() -> PathBuf {
    repo_dir().join("tests/.cache/dkms-3.4.3/dkms")
}

/// Every dkms newer than the machine's 3.0.10 that tests/setup.sh made available: Debian 13's
/// 3.2.2 and, when built, 3.4.3. One that is missing makes the test run in part
/// ([`skip_part`]: said under tests/run, a failure anywhere else).
pub fn newer_dkms_programs() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in [newer_dkms_path(), dkms_343_path()] {
        if p.is_file() {
            out.push(p);
        } else if p == dkms_343_path() {
            skip_part(&dkms_343_missing());
        } else {
            skip_part(&format!(
                "dkms 3.2.2: {}: missing (run tests/setup.sh)",
                p.display()
            ));
        }
    }
    out
}
