//! The runner's execution of jobs on the real dkms: `--force` rebuilds from the sources as they
//! are now, a pair that fails verification does not stay installed, depmod follows every change to a
//! kernel's modules, and a job ends when dkms exits, whatever its grandchildren do. On the machine's
//! dkms 3.0.10 and on Debian 13's 3.2.2 (their `--force` and `remove -k` differ in detail).

use crate::common::{newer_dkms, status_line, TestRoot};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

const PLAIN: &str = "dkmshook-plain-1.0";
const PLAIN_C: &str = "usr/src/dkmshook-plain-1.0/dkmshook_plain.c";

/// Appends a line of C to the plain fixture's source.
fn append_c(root: &TestRoot, line: &str) {
    let path = root.join(PLAIN_C);
    let mut text = fs::read_to_string(&path).unwrap();
    text.push_str(line);
    text.push('\n');
    fs::write(&path, text).unwrap();
}

fn installed_plain(root: &TestRoot, kernel: &str) -> Vec<u8> {
    let p = root
        .kernel_dir(kernel)
        .join("updates/dkms/dkmshook_plain.ko");
    fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn force_rebuilds_from_the_sources_as_they_are_now() {
    force_rebuilds_from_the_sources_as_they_are_now_on(TestRoot::new());
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn force_rebuilds_from_the_sources_as_they_are_now_on_dkms_3_2() {
    force_rebuilds_from_the_sources_as_they_are_now_on(TestRoot::with_dkms(newer_dkms()));
}

fn force_rebuilds_from_the_sources_as_they_are_now_on(root: TestRoot) {
    let (k1, _) = root.two_kernels();
    root.add_fixture(PLAIN);
    let out = root.run(&["-k", &k1], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(!contains(&installed_plain(&root, &k1), "second-edition"));

    append_c(&root, "MODULE_INFO(dkmshook, \"second-edition\");");
    let out = root.run(&["--force", "-k", &k1], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        contains(&installed_plain(&root, &k1), "second-edition"),
        "--force reinstalled the old build: {}",
        out.dump()
    );
    assert_eq!(
        root.dkms_status(),
        [status_line("dkmshook-plain/1.0", &k1, "installed")]
    );
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_forced_rebuild_that_fails_leaves_the_previous_build_installed() {
    a_forced_rebuild_that_fails_leaves_the_previous_build_installed_on(TestRoot::new());
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_forced_rebuild_that_fails_leaves_the_previous_build_installed_on_dkms_3_2() {
    a_forced_rebuild_that_fails_leaves_the_previous_build_installed_on(TestRoot::with_dkms(
        newer_dkms(),
    ));
}

fn a_forced_rebuild_that_fails_leaves_the_previous_build_installed_on(root: TestRoot) {
    let (k1, _) = root.two_kernels();
    root.add_fixture(PLAIN);
    let out = root.run(&["-k", &k1], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    let before = installed_plain(&root, &k1);

    append_c(&root, "this is not C;");
    let out = root.run_merged(&["--force", "-k", &k1], "");
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.combined.contains("the previous build stays installed"),
        "{}",
        out.dump()
    );
    assert_eq!(installed_plain(&root, &k1), before);
    assert_eq!(
        root.dkms_status(),
        [status_line("dkmshook-plain/1.0", &k1, "installed")]
    );
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_pair_that_fails_verification_is_uninstalled_and_fails_on_every_run() {
    a_pair_that_fails_verification_is_uninstalled_and_fails_on_every_run_on(TestRoot::new());
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_pair_that_fails_verification_is_uninstalled_and_fails_on_every_run_on_dkms_3_2() {
    a_pair_that_fails_verification_is_uninstalled_and_fails_on_every_run_on(TestRoot::with_dkms(
        newer_dkms(),
    ));
}

fn a_pair_that_fails_verification_is_uninstalled_and_fails_on_every_run_on(root: TestRoot) {
    let (k1, k2) = root.two_kernels();
    root.add_fixture("dkmshook-wrongkernel-1.0");
    // Its Makefile always builds against k1's headers, whatever kernel dkms asks for.
    root.write_file("usr/src/dkmshook-wrongkernel-1.0/wrongkernel", &k1);
    for run in ["first", "second"] {
        let out = root.run_merged(&["-k", &k2], "");
        assert_eq!(out.code, 1, "{run} run: {}", out.dump());
        assert!(
            out.combined
                .contains(&format!("was built for kernel \"{k1}\", not {k2}")),
            "{run} run: {}",
            out.dump()
        );
        let status = root.dkms_status();
        assert!(
            !status.iter().any(|l| l.contains("installed")),
            "{run} run: dkms status says {status:?}"
        );
        assert_eq!(root.installed_kos(&k2), Vec::<String>::new(), "{run} run");
    }
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn removing_a_module_runs_depmod_on_a_kernel_without_modules_order() {
    removing_a_module_runs_depmod_on_a_kernel_without_modules_order_on(TestRoot::new());
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn removing_a_module_runs_depmod_on_a_kernel_without_modules_order_on_dkms_3_2() {
    removing_a_module_runs_depmod_on_a_kernel_without_modules_order_on(TestRoot::with_dkms(
        newer_dkms(),
    ));
}

fn removing_a_module_runs_depmod_on_a_kernel_without_modules_order_on(root: TestRoot) {
    let (k1, _) = root.two_kernels();
    fs::remove_file(root.kernel_dir(&k1).join("modules.order")).unwrap();
    root.add_fixture(PLAIN);
    let out = root.run(
        &["install", "-k", &k1],
        "usr/src/dkmshook-plain-1.0/dkms.conf\n",
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    let dep = root.kernel_dir(&k1).join("modules.dep");
    assert!(fs::read_to_string(&dep)
        .unwrap()
        .contains("dkmshook_plain.ko"));

    let out = root.run(&["remove"], "usr/src/dkmshook-plain-1.0/dkms.conf\n");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(root.installed_kos(&k1), Vec::<String>::new());
    let dep = fs::read_to_string(&dep).unwrap();
    assert!(
        !dep.contains("dkmshook_plain"),
        "modules.dep names a deleted module: {dep}"
    );
}

/// Processes whose command line is exactly `argv`.
fn processes(argv: &[&str]) -> Vec<String> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Fault injection: a dkms that, like dkms 3.4's progress loop, leaves a background `sleep` holding
/// its stdout when it exits (real dkms 3.0 does not). It logs each real dkms call's own time.
fn leaky_dkms(dir: &Path, times: &Path) -> std::path::PathBuf {
    let real = dkms_hook::system::dkms::find_program().expect("dkms");
    let script = dir.join("leaky-dkms");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             start=$(date +%s.%N)\n\
             {real} \"$@\"\n\
             rc=$?\n\
             echo \"$start $(date +%s.%N)\" >> {times}\n\
             sleep 31.4159 &\n\
             exit $rc\n",
            real = real.display(),
            times = times.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_job_ends_when_dkms_exits_and_leaves_no_grandchild() {
    let tools = tempfile::tempdir().unwrap();
    let times = tools.path().join("times");
    let root = TestRoot::with_dkms(leaky_dkms(tools.path(), &times));
    let (k1, _) = root.two_kernels();
    root.add_fixture(PLAIN);
    let t = Instant::now();
    let out = root.run(&["-k", &k1], "");
    let wall = t.elapsed();
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        wall < Duration::from_secs(25),
        "the run waited for the leftover sleep: {wall:?}"
    );
    assert_eq!(processes(&["sleep", "31.4159"]), Vec::<String>::new());
    // The job's reported time is its dkms calls' own time (dkms add, then dkms install).
    let dkms_time: f64 = fs::read_to_string(&times)
        .unwrap()
        .lines()
        .map(|l| {
            let t: Vec<f64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
            t[1] - t[0]
        })
        .sum();
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("BUILT") && l.contains("dkmshook-plain"))
        .unwrap_or_else(|| panic!("no BUILT line: {}", out.dump()));
    let reported: f64 = line
        .split('[')
        .nth(1)
        .and_then(|r| r.split("s]").next())
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or_else(|| panic!("no time in {line:?}"));
    // What it must not hold is the leftover sleep (31 s); a loaded machine stretches the
    // wrapper's own start and end, measured by the wrapper but not by the job, by a few percent.
    assert!(
        (reported - dkms_time).abs() <= 0.25 + 0.05 * dkms_time,
        "reported {reported}s for {dkms_time:.2}s of dkms: {line}"
    );
}
