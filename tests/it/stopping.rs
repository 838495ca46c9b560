//! Runs that are stopped, that overlap, and jobs that never end, on real dkms and real headers:
//! a SIGTERM mid-rebuild leaves no process behind and every pair installed or absent (the next
//! run finishes), two runs started together take turns, a hanging PRE_BUILD fails at
//! `--job-timeout` while the other jobs go on, and a dkms.conf that waits holds planning for a
//! bounded time only.

use crate::common::{installed_lines, run_command, status_line, RunOutput, TestRoot};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The environment variable that marks every process of one run (dkms, make, cc inherit it).
pub(crate) const MARK: &str = "DKMSHOOK_TEST_RUN_MARK";

/// Processes whose environment holds `MARK=mark`, with their command lines.
pub(crate) fn marked(mark: &str) -> Vec<String> {
    let want = format!("{MARK}={mark}");
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(env) = fs::read(e.path().join("environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|v| v == want.as_bytes()) {
            let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            out.push(format!("{} {cmd}", e.file_name().to_string_lossy()));
        }
    }
    out
}

/// Waits up to `limit` for no process to bear `mark`; returns those left.
pub(crate) fn wait_until_none(mark: &str, limit: Duration) -> Vec<String> {
    let end = Instant::now() + limit;
    loop {
        let left = marked(mark);
        if left.is_empty() || Instant::now() >= end {
            return left;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `M/V` of a source directory name (`acpi-call-1.2.2` -> `acpi-call/1.2.2`).
fn mv(dir: &str) -> String {
    let (m, v) = dir.rsplit_once('-').unwrap();
    format!("{m}/{v}")
}

/// Five modules (four real Debian ones and our plain fixture) on two kernels.
fn five_modules(root: &TestRoot) -> Vec<String> {
    let mut mvs: Vec<String> = ["acpi-call", "dm-writeboost", "gost-crypto", "vpoll"]
        .iter()
        .map(|p| mv(&root.add_real_source(p)))
        .collect();
    root.add_fixture("dkmshook-plain-1.0");
    mvs.push("dkmshook-plain/1.0".into());
    mvs.sort();
    mvs
}

/// Every pair of `mvs` x `kernels` is installed (with a module file built for its kernel) or
/// absent, per `dkms status`; nothing is only built, and no module file lies there without a
/// pair dkms lists as installed.
fn assert_installed_or_absent(root: &TestRoot, kernels: &[&String]) {
    let status = root.dkms_status();
    for line in &status {
        assert!(
            line.ends_with(": installed") || line.ends_with(": added"),
            "a pair neither installed nor absent: {line} (dkms status: {status:?})"
        );
    }
    // modinfo reads every installed file: a half-copied one fails here.
    root.assert_modules_match_kernels(kernels);
    for k in kernels {
        let installed = status
            .iter()
            .filter(|l| l.contains(&format!(", {k}, ")))
            .count();
        let files = root.installed_kos(k).len();
        // Each of these modules installs exactly one .ko.
        assert_eq!(
            files,
            installed,
            "{k}: {files} module files for {installed} installed pairs: {:?} vs {status:?}",
            root.installed_kos(k)
        );
    }
}

/// dkms-hook started on `root` with `args`, its stdout and stderr merged and read line by line.
pub(crate) struct Started {
    pub(crate) child: std::process::Child,
    lines: mpsc::Receiver<String>,
    all: std::sync::Arc<std::sync::Mutex<String>>,
}

pub(crate) fn start(root: &TestRoot, args: &[&str], mark: &str) -> Started {
    start_with_input(root, args, mark, None)
}

/// [`start`], with `input` written to its standard input (then closed), as pacman writes a
/// hook's targets.
pub(crate) fn start_with_input(
    root: &TestRoot,
    args: &[&str],
    mark: &str,
    input: Option<&str>,
) -> Started {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "exec \"$0\" \"$@\" 2>&1",
        crate::common::BIN,
        "--root",
    ])
    .arg(root.path())
    .args(args)
    .env(MARK, mark)
    .stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped());
    match root.dkms_program() {
        p if p == std::path::Path::new("dkms") => cmd.env_remove("DKMS_HOOK_DKMS"),
        p => cmd.env("DKMS_HOOK_DKMS", p),
    };
    let mut child = cmd.spawn().expect("starting dkms-hook");
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write;
        stdin
            .write_all(text.as_bytes())
            .expect("writing the targets");
    }
    let out = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    let all = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let all2 = all.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            all2.lock().unwrap().push_str(&format!("{line}\n"));
            let _ = tx.send(line);
        }
    });
    Started { child, lines, all }
}

impl Started {
    /// Waits for a line containing `text`.
    pub(crate) fn wait_for(&self, text: &str, limit: Duration) {
        let end = Instant::now() + limit;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(text) => return,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no line with {text:?} within {limit:?}: {}", self.output());
    }

    pub(crate) fn output(&self) -> String {
        self.all.lock().unwrap().clone()
    }

    pub(crate) fn finish(mut self) -> RunOutput {
        let status = self.child.wait().unwrap();
        // The reader thread ends with the pipe.
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end && self.lines.recv_timeout(Duration::from_millis(100)).is_ok() {}
        let out = self.output();
        RunOutput {
            code: status.code().unwrap_or(-1),
            stdout: out.clone(),
            stderr: String::new(),
            combined: out,
        }
    }
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn sigterm_mid_rebuild_leaves_no_process_and_every_pair_whole() {
    sigterm_mid_rebuild_on(TestRoot::new(), "3.0");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn sigterm_mid_rebuild_leaves_no_process_and_every_pair_whole_on_dkms_3_4_3() {
    if let Some(dkms) = crate::common::dkms_343() {
        sigterm_mid_rebuild_on(TestRoot::with_dkms(dkms), "3.4.3");
    }
}

fn sigterm_mid_rebuild_on(root: TestRoot, which: &str) {
    let (k1, k2) = root.two_kernels();
    let mvs = five_modules(&root);
    let mark = format!("sigterm-{which}-{}", std::process::id());
    let run = start(&root, &["-j", "2"], &mark);
    // A few seconds in: the first pair is built, others are mid-build.
    run.wait_for("BUILT", Duration::from_secs(300));
    std::thread::sleep(Duration::from_millis(1500));
    let pid = run.child.id() as i32;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let t = Instant::now();
    let out = run.finish();
    assert_eq!(out.code, 143, "{}", out.dump());
    assert!(
        out.combined.contains("SIGTERM: no job starts any more"),
        "{}",
        out.dump()
    );
    assert!(
        out.combined.contains("==> ERROR: interrupted by SIGTERM"),
        "{}",
        out.dump()
    );
    let left = wait_until_none(&mark, Duration::from_secs(15).saturating_sub(t.elapsed()));
    assert_eq!(left, Vec::<String>::new(), "alive 15 s after SIGTERM");
    let status = root.dkms_status();
    assert!(
        status.iter().filter(|l| l.ends_with("installed")).count() < 10,
        "the signal came after everything was done, nothing was tested: {status:?}"
    );
    assert_installed_or_absent(&root, &[&k1, &k2]);

    let again = root.run(&[], "");
    assert_eq!(again.code, 0, "the re-run: {}", again.dump());
    assert_eq!(root.dkms_status(), installed_lines(&mvs, &[&k1, &k2]));
    root.assert_modules_match_kernels(&[&k1, &k2]);
}

/// Waits up to `limit` for a process bearing `mark` whose command line contains `text`.
pub(crate) fn wait_for_process(mark: &str, text: &str, limit: Duration) {
    let end = Instant::now() + limit;
    while !marked(mark).iter().any(|p| p.contains(text)) {
        assert!(Instant::now() < end, "no process {text:?} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Makes the PRE_BUILD of the source `dir` (`usr/src/NAME-VERSION`) wait (`sleep 1000.5`)
/// while the returned file exists: real dkms, held in its build step.
pub(crate) fn hold_pre_build(root: &TestRoot, dir: &str) -> std::path::PathBuf {
    let hold = root.join("hold-build");
    fs::write(&hold, "").unwrap();
    let script = root.write_file(
        format!("usr/src/{dir}/hold.sh"),
        format!(
            "#!/bin/sh\n# Test hook: waits while {} exists.\n[ -e '{}' ] && exec sleep 1000.5\nexit 0\n",
            hold.display(),
            hold.display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let conf = root.join(format!("usr/src/{dir}/dkms.conf"));
    let mut text = fs::read_to_string(&conf).unwrap();
    text.push_str("PRE_BUILD=\"hold.sh\"\n");
    fs::write(&conf, text).unwrap();
    hold
}

/// Issue 16, item 5: a run killed with SIGKILL (the OOM killer, `kill -9`) can forward nothing;
/// its dkms children must die with it all the same (else they go on building in the build
/// directory the next run uses), and the next run finds every pair whole. A PRE_BUILD held
/// (real dkms, see [`hold_pre_build`]) makes sure a job is mid-build when the kill comes.
#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn sigkill_mid_rebuild_leaves_no_process_and_the_next_run_finds_every_pair_whole() {
    sigkill_mid_rebuild_on(TestRoot::new(), "3.0");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn sigkill_mid_rebuild_leaves_no_process_and_the_next_run_finds_every_pair_whole_on_dkms_3_4_3() {
    if let Some(dkms) = crate::common::dkms_343() {
        sigkill_mid_rebuild_on(TestRoot::with_dkms(dkms), "3.4.3");
    }
}

fn sigkill_mid_rebuild_on(root: TestRoot, which: &str) {
    let (k1, k2) = root.two_kernels();
    let mvs = five_modules(&root);
    let hold = hold_pre_build(&root, "dkmshook-plain-1.0");
    let mark = format!("sigkill-{which}-{}", std::process::id());
    let run = start(&root, &["-j", "2"], &mark);
    run.wait_for("BUILT", Duration::from_secs(300));
    wait_for_process(&mark, "sleep 1000.5", Duration::from_secs(300));
    unsafe { libc::kill(run.child.id() as i32, libc::SIGKILL) };
    let out = run.finish();
    assert_eq!(out.code, -1, "killed: {}", out.dump());
    let left = wait_until_none(&mark, Duration::from_secs(5));
    assert_eq!(
        left,
        Vec::<String>::new(),
        "alive 5 s after the run was killed"
    );

    fs::remove_file(&hold).unwrap();
    let again = root.run_merged(&[], "");
    assert_eq!(again.code, 0, "the next run: {}", again.dump());
    assert_eq!(root.dkms_status(), installed_lines(&mvs, &[&k1, &k2]));
    root.assert_modules_match_kernels(&[&k1, &k2]);
}

/// Issue 16, item 8: a `--force` rebuild stopped by SIGINT left the previous build installed
/// (as it should) but counted it as built, and the next run took it for done. It is left
/// undone, and the next run rebuilds it.
#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn sigint_during_a_forced_rebuild_is_not_counted_as_built_and_the_next_run_redoes_it() {
    let root = TestRoot::new();
    let (k1, _) = root.two_kernels();
    root.add_fixture("dkmshook-plain-1.0");
    let out = root.run_merged(&["-k", &k1], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    let ko = |root: &TestRoot| root.kernel_dir(&k1).join("updates/dkms/dkmshook_plain.ko");
    let first = fs::metadata(ko(&root)).unwrap().modified().unwrap();

    let hold = hold_pre_build(&root, "dkmshook-plain-1.0");
    let mark = format!("force-sigint-{}", std::process::id());
    let run = start(
        &root,
        &["--force", "-k", &k1, "install", "dkmshook-plain"],
        &mark,
    );
    wait_for_process(&mark, "sleep 1000.5", Duration::from_secs(120));
    unsafe { libc::kill(run.child.id() as i32, libc::SIGINT) };
    let out = run.finish();
    assert_eq!(out.code, 130, "{}", out.dump());
    let summary = out
        .combined
        .lines()
        .find(|l| l.contains("Summary ["))
        .unwrap_or_default()
        .to_string();
    assert!(!summary.contains(" built"), "{summary}: {}", out.dump());
    let undone = out
        .combined
        .split("left undone, for the next run:")
        .nth(1)
        .unwrap_or_default();
    assert!(
        undone.contains(&format!("dkmshook-plain/1.0 for {k1}")),
        "{}",
        out.dump()
    );
    // The previous build stays installed, whole.
    assert_eq!(
        root.dkms_status(),
        [status_line("dkmshook-plain/1.0", &k1, "installed")]
    );
    root.assert_modules_match_kernels(&[&k1]);

    fs::remove_file(&hold).unwrap();
    let again = root.run_merged(&["-k", &k1], "");
    assert_eq!(again.code, 0, "{}", again.dump());
    assert!(
        again
            .combined
            .lines()
            .any(|l| l.contains("BUILT") && l.contains(&format!("dkmshook-plain/1.0 for {k1}"))),
        "the next run did not rebuild it: {}",
        again.dump()
    );
    assert!(fs::metadata(ko(&root)).unwrap().modified().unwrap() > first);
    assert_eq!(
        root.dkms_status(),
        [status_line("dkmshook-plain/1.0", &k1, "installed")]
    );
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn two_runs_started_together_take_turns() {
    let root = TestRoot::new();
    let (k1, k2) = root.two_kernels();
    for f in [
        "dkmshook-plain-1.0",
        "dkmshook-exporter-1.0",
        "dkmshook-importer-1.0",
    ] {
        root.add_fixture(f);
    }
    let first = start(&root, &[], "first");
    std::thread::sleep(Duration::from_millis(300));
    let second = start(&root, &[], "second");
    let pid = first.child.id();
    let (first, second) = (first.finish(), second.finish());
    let both = format!("first: {}\nsecond: {}", first.dump(), second.dump());
    assert_eq!((first.code, second.code), (0, 0), "{both}");
    assert!(
        second.combined.contains(&format!(
            "dkms-hook: waiting for another dkms-hook run (pid {pid}) to finish: it holds /run/dkms-hook.lock"
        )),
        "second: {}",
        second.dump()
    );
    assert_eq!(
        root.dkms_status(),
        installed_lines(
            &[
                "dkmshook-exporter/1.0",
                "dkmshook-importer/1.0",
                "dkmshook-plain/1.0"
            ],
            &[&k1, &k2]
        )
    );
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_hanging_pre_build_fails_at_the_job_timeout_and_the_others_are_built() {
    let root = TestRoot::new();
    let (k1, _) = root.two_kernels();
    root.add_fixture("dkmshook-plain-1.0");
    root.add_fixture("dkmshook-exporter-1.0");
    // A PRE_BUILD script that waits forever (as one waiting for a network or a terminal does).
    let script = root.write_file(
        "usr/src/dkmshook-plain-1.0/hang.sh",
        "#!/bin/sh\nexec sleep 1000.25\n",
    );
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let conf = root.join("usr/src/dkmshook-plain-1.0/dkms.conf");
    let mut text = fs::read_to_string(&conf).unwrap();
    text.push_str("PRE_BUILD=\"hang.sh\"\n");
    fs::write(&conf, text).unwrap();

    // The exporter is built beforehand, so that its job (an install) ends well within 5 s even
    // on a busy machine.
    for args in [
        &["add", "-m", "dkmshook-exporter", "-v", "1.0"][..],
        &["build", "-m", "dkmshook-exporter", "-v", "1.0", "-k", &k1],
    ] {
        let out = root.dkms(args);
        assert_eq!(out.code, 0, "dkms {args:?}: {}", out.dump());
    }
    let t = Instant::now();
    let out = root.run_merged(&["--job-timeout", "5", "-k", &k1], "");
    let took = t.elapsed();
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        took < Duration::from_secs(60),
        "took {took:?}: {}",
        out.dump()
    );
    assert!(
        out.combined.contains(&format!(
            "error: dkmshook-plain/1.0 for {k1}: timed out: still running after 5 s (--job-timeout 5)"
        )),
        "{}",
        out.dump()
    );
    assert!(
        out.combined
            .lines()
            .any(|l| l.contains("BUILT") && l.contains(&format!("dkmshook-exporter/1.0 for {k1}"))),
        "{}",
        out.dump()
    );
    let status = root.dkms_status();
    assert!(
        status.contains(&status_line("dkmshook-exporter/1.0", &k1, "installed")),
        "{status:?}"
    );
    assert!(
        !status.iter().any(|l| l.starts_with("dkmshook-plain/1.0, ")),
        "the timed-out pair is left half there: {status:?}"
    );
    let sleeps: Vec<String> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
        .filter(|c| c.starts_with(b"sleep\x001000.25"))
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .collect();
    assert_eq!(sleeps, Vec::<String>::new(), "the hung PRE_BUILD lives on");
}

/// Needs no root: a dry run plans on fake kernels.
#[test]
fn a_dkms_conf_that_waits_holds_a_dry_run_for_a_bounded_time() {
    let root = TestRoot::new();
    for k in ["6.1.0-1-amd64", "6.1.0-2-amd64"] {
        root.add_fake_kernel(k);
    }
    root.write_file(
        "usr/src/waits-1.0/dkms.conf",
        "PACKAGE_NAME=waits\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]=waits\nAUTOINSTALL=yes\n\
         sleep 100.25\n",
    );
    root.add_fixture("dkmshook-plain-1.0");
    let mut cmd = root.command();
    cmd.args(["--dry-run"]).env(MARK, "dry-run-waits");
    let t = Instant::now();
    let out = run_command(cmd, "");
    let took = t.elapsed();
    // 10 s for the file, once: not once per kernel, not 100 s.
    assert!(
        took < Duration::from_secs(18),
        "took {took:?}: {}",
        out.dump()
    );
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.stdout.contains(
            "/usr/src/waits-1.0/dkms.conf for 6.1.0-1-amd64: sourcing it did not end within 10 s"
        ),
        "{}",
        out.dump()
    );
    assert!(
        out.stdout
            .contains("build  dkmshook-plain/1.0 for 6.1.0-2-amd64"),
        "the other module is still planned: {}",
        out.dump()
    );
    assert_eq!(
        wait_until_none("dry-run-waits", Duration::from_secs(2)),
        Vec::<String>::new()
    );
}

/// Needs no root: a SIGTERM while dkms.conf files are evaluated leaves no bash behind.
#[test]
fn sigterm_while_evaluating_leaves_no_evaluator_behind() {
    let root = TestRoot::new();
    root.add_fake_kernel("6.1.0-1-amd64");
    root.write_file(
        "usr/src/waits-1.0/dkms.conf",
        "PACKAGE_NAME=waits\nPACKAGE_VERSION=1.0\nsleep 100.5\n",
    );
    let mut cmd = root.command();
    cmd.arg("--dry-run")
        .env(MARK, "eval-sigterm")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // The evaluator's sleep is running.
    let end = Instant::now() + Duration::from_secs(10);
    while !marked("eval-sigterm")
        .iter()
        .any(|p| p.contains("sleep 100.5"))
    {
        assert!(Instant::now() < end, "the dkms.conf's sleep never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t = Instant::now();
    let status = child.wait().unwrap();
    // Forwarded at once, not killed at the end of the grace period.
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
    assert_eq!(
        wait_until_none("eval-sigterm", Duration::from_secs(2)),
        Vec::<String>::new()
    );
}

/// Needs no root: the lock is not taken by a dry run (it would wait behind a running build).
#[test]
fn a_dry_run_takes_no_lock() {
    let root = TestRoot::new();
    root.add_fake_kernel("6.1.0-1-amd64");
    root.add_fixture("dkmshook-plain-1.0");
    let lock = root.mkdir("run").join("dkms-hook.lock");
    let f = fs::File::create(&lock).unwrap();
    use std::os::fd::AsRawFd;
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    let out = root.run(&["--dry-run"], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(!out.combined.contains("waiting"), "{}", out.dump());
    let out = root.run(&["status"], "");
    assert_eq!(out.code, 0, "{}", out.dump());
}
