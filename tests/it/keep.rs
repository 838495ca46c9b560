//! Never lose a working module on an upgrade (issue 9, items 1 and 7): `dkmshook-keep` 1.0 ->
//! 1.1, in pacman's hook order (`remove` with the old path while its sources are there and a
//! package file brings 1.1, the sources swapped, `install` with the new path), where 1.1 does not
//! compile for one kernel, or where the dkms tree's disk fills during the build. The kernel that
//! 1.1 cannot be built for keeps 1.0 installed and loadable (its file, vermagic and modules.dep),
//! and says so; the real dkms's `status` and the files on disk are the referees. The scenarios
//! take the root, so tests/it/newer_dkms.rs runs them on dkms 3.4.3 too.

use crate::common::{copy_tree, fixtures_dir, status_line, vermagic_release, RunOutput, TestRoot};
use crate::stopping::{start, wait_for_process, wait_until_none};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const M: &str = "dkmshook-keep";
const KO: &str = "dkmshook_keep.ko";

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn an_upgrade_that_fails_on_one_kernel_keeps_the_old_version_there() {
    upgrade_failing_on_one_kernel_keeps_the_old_version(&TestRoot::new());
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn removing_the_package_removes_its_kept_version_too() {
    plain_removal_takes_the_kept_version_along(&TestRoot::new());
}

#[test]
#[ignore = "needs root, dkms, a tmpfs mount and kernel headers: run tests/run"]
fn a_disk_that_fills_during_the_build_fails_it_with_the_reason_and_keeps_the_old_module() {
    disk_full_keeps_the_old_module(&TestRoot::new());
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_swap_stopped_by_the_job_timeout_puts_the_kept_version_back() {
    swap_stopped_by_the_job_timeout(&TestRoot::new());
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_swap_stopped_by_sigterm_puts_the_kept_version_back() {
    swap_stopped_by_sigterm(&TestRoot::new());
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_swap_cut_short_by_sigkill_is_put_back_by_the_next_run() {
    swap_cut_short_by_sigkill(&TestRoot::new());
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn removing_one_version_directly_leaves_the_other_versions_files() {
    direct_removal_leaves_the_other_versions_files(&TestRoot::new());
}

/// A package file that brings `usr/src/NAME-VERSION` (a `.PKGINFO` and the fixture's files), as
/// pacman would have downloaded it before its hooks run.
pub fn package_of(root: &TestRoot, fixture: &str) -> PathBuf {
    let work = root.mkdir(format!("pkgwork/{fixture}"));
    root.mkdir(work.join("usr/src"));
    copy_tree(
        &fixtures_dir().join(fixture),
        &work.join("usr/src").join(fixture),
    );
    std::fs::write(
        work.join(".PKGINFO"),
        "pkgname = dkmshook-keep-dkms\npkgver = 1-1\narch = any\nsize = 1\n",
    )
    .unwrap();
    let file = root.join(format!("pkgwork/{fixture}-1-any.pkg.tar.zst"));
    let out = Command::new("bsdtar")
        .arg("--zstd")
        .arg("-cf")
        .arg(&file)
        .arg("-C")
        .arg(&work)
        .args([".PKGINFO", "usr"])
        .output()
        .expect("bsdtar: cannot start");
    assert!(out.status.success(), "bsdtar: {out:?}");
    file
}

/// The `version:` of a module file (its MODULE_VERSION).
fn module_version(path: &Path) -> String {
    let out = Command::new("modinfo")
        .args(["-F", "version"])
        .arg(path)
        .output()
        .expect("modinfo: cannot start");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The kernel has exactly one dkmshook-keep module installed, of `version`, built for it, and
/// its modules.dep names it.
fn assert_installed_on(root: &TestRoot, kernel: &str, version: &str) {
    let paths: Vec<String> = root
        .installed_ko_paths(kernel)
        .into_iter()
        .filter(|p| p.ends_with(KO))
        .collect();
    assert_eq!(paths.len(), 1, "{kernel}: {paths:?}");
    let file = root.kernel_dir(kernel).join(&paths[0]);
    assert_eq!(module_version(&file), version, "{}", file.display());
    assert_eq!(vermagic_release(&file), kernel, "{}", file.display());
    let dep = root.read_file(root.kernel_dir(kernel).join("modules.dep"));
    assert!(dep.contains(&paths[0]), "{kernel}: modules.dep: {dep}");
}

/// 1.0 installed on both kernels, then the remove hook's turn with a package bringing 1.1: 1.0
/// stays, and what dkms needs to remove it is kept. Returns the kernels, older first.
fn installed_then_upgrading(root: &TestRoot) -> (String, String) {
    let (k1, k2) = root.two_kernels();
    root.add_fixture("dkmshook-keep-1.0");
    let out = root.run_merged(&["install"], "usr/src/dkmshook-keep-1.0/dkms.conf\n");
    assert_eq!(out.code, 0, "{}", out.dump());

    let pkg = package_of(root, "dkmshook-keep-1.1");
    let pkg = pkg.to_string_lossy().into_owned();
    let out = root.run_merged(
        &["remove", "--package", &pkg],
        "usr/src/dkmshook-keep-1.0/dkms.conf\n",
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.combined.contains("dkmshook-keep/1.0 stays installed"),
        "{}",
        out.combined
    );
    let mut want = vec![
        status_line("dkmshook-keep/1.0", &k1, "installed"),
        status_line("dkmshook-keep/1.0", &k2, "installed"),
    ];
    want.sort();
    assert_eq!(root.dkms_status(), want);
    assert!(root
        .join("var/lib/dkms-hook/kept/dkmshook-keep-1.0/dkms.conf")
        .is_file());

    // pacman swaps the sources.
    std::fs::remove_dir_all(root.source_tree().join("dkmshook-keep-1.0")).unwrap();
    root.add_fixture("dkmshook-keep-1.1");
    (k1, k2)
}

/// The upgrade fails for the older kernel: 1.0 stays there, 1.1 replaces it on the newer one.
fn failed_upgrade(root: &TestRoot) -> (String, String) {
    let (k1, k2) = installed_then_upgrading(root);
    root.write_file("usr/src/dkmshook-keep-1.1/fails-on", format!("{k1}\n"));
    let out = root.run_merged(&["install"], "usr/src/dkmshook-keep-1.1/dkms.conf\n");
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.combined
            .contains(&format!("kept dkmshook-keep 1.0 on {k1}")),
        "{}",
        out.combined
    );
    assert!(
        out.combined.contains("dkmshook_keep_no_such_symbol"),
        "the compiler's error is in the block: {}",
        out.combined
    );
    let mut want = vec![
        status_line("dkmshook-keep/1.0", &k1, "installed"),
        status_line("dkmshook-keep/1.1", &k2, "installed"),
    ];
    want.sort();
    assert_eq!(root.dkms_status(), want);
    root.assert_status_matches_dkms();
    assert_installed_on(root, &k1, "1.0");
    assert_installed_on(root, &k2, "1.1");
    // Nothing of 1.0 is left for the newer kernel.
    assert!(!root.dkms_tree().join(M).join("1.0").join(&k2).exists());
    (k1, k2)
}

pub fn upgrade_failing_on_one_kernel_keeps_the_old_version(root: &TestRoot) {
    let (k1, k2) = failed_upgrade(root);

    // A later run in which it builds (here: the cause fixed) replaces the kept version, and
    // nothing of it is left.
    std::fs::remove_file(root.source_tree().join("dkmshook-keep-1.1/fails-on")).unwrap();
    let out = root.run_merged(&[], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    let mut want = vec![
        status_line("dkmshook-keep/1.1", &k1, "installed"),
        status_line("dkmshook-keep/1.1", &k2, "installed"),
    ];
    want.sort();
    assert_eq!(root.dkms_status(), want);
    root.assert_status_matches_dkms();
    assert_installed_on(root, &k1, "1.1");
    assert_installed_on(root, &k2, "1.1");
    assert!(!root.dkms_tree().join(M).join("1.0").exists());
    assert!(!root
        .join("var/lib/dkms-hook/kept/dkmshook-keep-1.0")
        .exists());
}

pub fn plain_removal_takes_the_kept_version_along(root: &TestRoot) {
    let (k1, k2) = failed_upgrade(root);
    // The package is removed: nothing of the module arrives.
    let out = root.run_merged(&["remove"], "usr/src/dkmshook-keep-1.1/dkms.conf\n");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(root.dkms_status(), Vec::<String>::new());
    for k in [&k1, &k2] {
        let left: Vec<String> = root
            .installed_ko_paths(k)
            .into_iter()
            .filter(|p| p.ends_with(KO))
            .collect();
        assert!(left.is_empty(), "{k}: {left:?}");
        let dep = root.read_file(root.kernel_dir(k).join("modules.dep"));
        assert!(!dep.contains(KO), "{k}: modules.dep: {dep}");
    }
    assert!(!root.dkms_tree().join(M).exists());
    assert!(!root
        .join("var/lib/dkms-hook/kept/dkmshook-keep-1.0")
        .exists());
}

/// A tmpfs mounted on a directory for as long as it lives (the tests run in a private mount
/// namespace, see tests/run).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount: cannot start");
        assert!(
            out.status.success(),
            "mount tmpfs on {}: {out:?}",
            dir.display()
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` until less than `left` KiB are free.
fn fill(dir: &Path, left_kib: u64) {
    let out = Command::new("df")
        .args(["--output=avail", "-k"])
        .arg(dir)
        .output()
        .expect("df: cannot start");
    let avail: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df's avail column");
    let kib = avail.saturating_sub(left_kib);
    let out = Command::new("dd")
        .args(["if=/dev/zero", "bs=1024"])
        .arg(format!("of={}", dir.join("filler").display()))
        .arg(format!("count={kib}"))
        .output()
        .expect("dd: cannot start");
    assert!(out.status.success(), "dd: {out:?}");
}

pub fn disk_full_keeps_the_old_module(root: &TestRoot) {
    let _tmpfs = Tmpfs::mount(&root.dkms_tree(), "64m");
    let (k1, k2) = installed_then_upgrading(root);
    fill(&root.dkms_tree(), 48);
    let out = root.run_merged(&["install"], "usr/src/dkmshook-keep-1.1/dkms.conf\n");
    assert_eq!(out.code, 1, "{}", out.dump());
    for k in [&k1, &k2] {
        assert!(
            out.combined
                .contains(&format!("kept dkmshook-keep 1.0 on {k}")),
            "{}",
            out.combined
        );
    }
    assert_eq!(
        out.combined
            .matches("the disk is full (No space left on device)")
            .count(),
        4,
        "said in each failure line, and again after the summary: {}",
        out.combined
    );
    assert!(
        out.combined.matches("No space left on device").count() >= 6,
        "each failure block says why: {}",
        out.combined
    );
    // Nothing of 1.1 is installed or half-installed; 1.0 is in place and loadable.
    let status = root.dkms_status();
    for k in [&k1, &k2] {
        let line = status_line("dkmshook-keep/1.0", k, "installed");
        assert!(status.contains(&line), "{status:?}");
    }
    assert!(
        !status.iter().any(|l| l.starts_with("dkmshook-keep/1.1,")),
        "1.1 is neither built nor installed anywhere: {status:?}"
    );
    assert_installed_on(root, &k1, "1.0");
    assert_installed_on(root, &k2, "1.0");
}

/// The moment of the swap, held (issue 16, item 1). [`failed_upgrade`] leaves 1.0 kept on the
/// older kernel (1.1 did not compile there) and 1.1 on the newer one; now 1.1 compiles there
/// too, and is built for it beforehand, so that the job comes to its swap at once: dkms-hook
/// uninstalls the kept 1.0, then runs `dkms install` of 1.1, whose PRE_INSTALL script (real
/// dkms, run by `dkms install` before it copies anything) waits while the returned hold file
/// exists, and refuses the install while a file `refuse-install` beside it exists. Returns the
/// kernels and the hold file.
fn swap_held(root: &TestRoot) -> (String, String, PathBuf) {
    let (k1, k2) = failed_upgrade(root);
    let src = root.source_tree().join("dkmshook-keep-1.1");
    fs::remove_file(src.join("fails-on")).unwrap();
    let hold = root.join("hold-install");
    fs::write(&hold, "").unwrap();
    let refuse = root.join("refuse-install");
    let script = src.join("hold-install.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n# Test hook: refuses the install while {r} exists, waits while {h} does.\n\
             [ -e '{r}' ] && exit 1\n[ -e '{h}' ] && exec sleep 1000.75\nexit 0\n",
            r = refuse.display(),
            h = hold.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let conf = src.join("dkms.conf");
    let mut text = fs::read_to_string(&conf).unwrap();
    text.push_str("PRE_INSTALL=\"hold-install.sh\"\n");
    fs::write(&conf, text).unwrap();
    let out = root.dkms(&["build", "-m", M, "-v", "1.1", "-k", &k1]);
    assert_eq!(out.code, 0, "dkms build: {}", out.dump());
    (k1, k2, hold)
}

/// The PRE_INSTALL hold of [`swap_held`] on this root is no longer running (dkms runs the script
/// in the source directory; other tests hold their own roots' installs at the same time).
fn assert_no_hold_left(root: &TestRoot) {
    let sleeps: Vec<String> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| fs::read_link(e.path().join("cwd")).is_ok_and(|d| d.starts_with(root.path())))
        .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
        .filter(|c| c.starts_with(b"sleep\x001000.75"))
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .collect();
    assert_eq!(
        sleeps,
        Vec::<String>::new(),
        "the held PRE_INSTALL lives on"
    );
}

/// After a swap cut short on the older kernel: 1.0 is back there, installed and verified (its
/// file, vermagic and modules.dep), and still registered and kept (never settled as replaced);
/// 1.1 stays on the newer kernel; nothing of 1.1 is left on the older one.
fn assert_the_kept_version_is_back(root: &TestRoot, k1: &str, k2: &str, out: &RunOutput) {
    assert!(
        out.combined
            .contains(&format!("kept dkmshook-keep 1.0 on {k1}")),
        "{}",
        out.dump()
    );
    let mut want = vec![
        status_line("dkmshook-keep/1.0", k1, "installed"),
        status_line("dkmshook-keep/1.1", k2, "installed"),
    ];
    want.sort();
    assert_eq!(root.dkms_status(), want, "{}", out.dump());
    root.assert_status_matches_dkms();
    assert_installed_on(root, k1, "1.0");
    assert_installed_on(root, k2, "1.1");
    let copy = root.join("var/lib/dkms-hook/kept/dkmshook-keep-1.0");
    assert!(copy.join("dkms.conf").is_file(), "{}", out.dump());
    assert_eq!(
        fs::read_link(root.dkms_tree().join(M).join("1.0/source")).unwrap(),
        copy
    );
    assert_no_hold_left(root);
}

pub fn swap_stopped_by_the_job_timeout(root: &TestRoot) {
    let (k1, k2, hold) = swap_held(root);
    let out = root.run_merged(&["--job-timeout", "20"], "");
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.combined.contains(&format!(
            "error: dkmshook-keep/1.1 for {k1}: timed out: still running after 20 s"
        )),
        "{}",
        out.dump()
    );
    assert_the_kept_version_is_back(root, &k1, &k2, &out);

    // The next run, with nothing holding it, swaps.
    fs::remove_file(&hold).unwrap();
    let out = root.run_merged(&[], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    let mut want = vec![
        status_line("dkmshook-keep/1.1", &k1, "installed"),
        status_line("dkmshook-keep/1.1", &k2, "installed"),
    ];
    want.sort();
    assert_eq!(root.dkms_status(), want);
    assert_installed_on(root, &k1, "1.1");
    assert!(!root.dkms_tree().join(M).join("1.0").exists());
}

pub fn swap_stopped_by_sigterm(root: &TestRoot) {
    let (k1, k2, _hold) = swap_held(root);
    let mark = format!("swap-sigterm-{}", std::process::id());
    let run = start(root, &[], &mark);
    wait_for_process(&mark, "sleep 1000.75", Duration::from_secs(300));
    unsafe { libc::kill(run.child.id() as i32, libc::SIGTERM) };
    let out = run.finish();
    assert_eq!(out.code, 143, "{}", out.dump());
    assert_eq!(
        wait_until_none(&mark, Duration::from_secs(15)),
        Vec::<String>::new()
    );
    assert_the_kept_version_is_back(root, &k1, &k2, &out);
}

/// Issue 16, items 1 and 5: a run killed with SIGKILL in the middle of the swap can put nothing
/// back itself; its children die with it, and the next run puts the kept version back before
/// it plans (here the new version's install is then refused, so that the kept one must be
/// there for the kernel to have the module).
pub fn swap_cut_short_by_sigkill(root: &TestRoot) {
    let (k1, k2, hold) = swap_held(root);
    let mark = format!("swap-sigkill-{}", std::process::id());
    let run = start(root, &[], &mark);
    wait_for_process(&mark, "sleep 1000.75", Duration::from_secs(300));
    unsafe { libc::kill(run.child.id() as i32, libc::SIGKILL) };
    let _ = run.finish();
    assert_eq!(
        wait_until_none(&mark, Duration::from_secs(5)),
        Vec::<String>::new(),
        "alive 5 s after the run was killed"
    );
    // Until a run puts it back, `status` says what the killed run left (issue 16's trial).
    let status = root.run_merged(&["status"], "");
    assert_eq!(status.code, 0, "{}", status.dump());
    assert!(
        status.combined.contains(&format!(
            "was killed while it swapped {M} 1.0 for 1.1 on {k1}: 1.0 is not installed there"
        )),
        "status says nothing of the swap cut short: {}",
        status.dump()
    );
    fs::remove_file(&hold).unwrap();
    fs::write(root.join("refuse-install"), "").unwrap();
    let out = root.run_merged(&[], "");
    assert_eq!(out.code, 1, "{}", out.dump());
    assert_the_kept_version_is_back(root, &k1, &k2, &out);
    let status = root.run_merged(&["status"], "");
    assert!(
        !status.combined.contains("was killed"),
        "status still speaks of the settled swap: {}",
        status.dump()
    );
}

/// Issue 16, item 2: removing a version directly (its kernel's headers are gone, so dkms cannot)
/// removed every installed file named like one of its modules, whichever version installed it:
/// 1.0, only built for the kernel, took 1.1's installed module with it.
pub fn direct_removal_leaves_the_other_versions_files(root: &TestRoot) {
    let (k1, _) = crate::common::two_newest_kernels();
    root.add_kernel(&k1);
    root.add_fixture("dkmshook-keep-1.0");
    root.add_fixture("dkmshook-keep-1.1");
    for args in [
        &["add", "-m", M, "-v", "1.0"][..],
        &["build", "-m", M, "-v", "1.0", "-k", &k1],
        &["add", "-m", M, "-v", "1.1"],
        &["install", "-m", M, "-v", "1.1", "-k", &k1],
    ] {
        let out = root.dkms(args);
        assert_eq!(out.code, 0, "dkms {args:?}: {}", out.dump());
    }
    // The kernel's headers package goes: what leaves it now is removed directly.
    fs::remove_file(root.kernel_dir(&k1).join("build")).unwrap();
    let out = root.run_merged(&["-k", &k1, "remove", "dkmshook-keep/1.0"], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.combined
            .contains("removed dkms's files for it directly"),
        "the fallback did not run: {}",
        out.dump()
    );
    let file = root.kernel_dir(&k1).join("updates/dkms").join(KO);
    assert!(
        file.is_file(),
        "1.1's module was removed with 1.0: {}",
        out.dump()
    );
    assert_eq!(module_version(&file), "1.1");
    assert!(!root.dkms_tree().join(M).join("1.0").join(&k1).exists());
    assert_eq!(
        fs::read_link(root.dkms_tree().join(M).join(format!("kernel-{k1}-x86_64"))).unwrap(),
        Path::new("1.1").join(&k1).join("x86_64")
    );
}

/// Issue 16, item 7: the kept copy (its dkms.conf above all) is on disk, synced, before dkms's
/// `source` link is pointed at it: after a power loss dkms must not find an empty dkms.conf
/// there. The remove hook's system calls, seen by strace, on a dkms tree that says 1.0 is
/// installed for a kernel that stays (nothing is built: the keep is all that this run does).
#[test]
#[ignore = "needs root and strace: run tests/run"]
fn the_kept_copy_is_synced_before_dkms_is_pointed_at_it() {
    let root = TestRoot::new();
    let k = "6.1.0-1-amd64";
    root.add_fake_kernel(k);
    root.add_fixture("dkmshook-keep-1.0");
    let v = root.dkms_tree().join(M).join("1.0");
    root.write_file(v.join(k).join("x86_64/module").join(KO), "");
    std::os::unix::fs::symlink(
        root.source_tree().join("dkmshook-keep-1.0"),
        v.join("source"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        format!("1.0/{k}/x86_64"),
        root.dkms_tree().join(M).join(format!("kernel-{k}-x86_64")),
    )
    .unwrap();
    let pkg = package_of(&root, "dkmshook-keep-1.1");
    let log = root.join("strace.log");
    let mut cmd = Command::new("strace");
    cmd.args([
        "-f",
        "-y",
        "-qq",
        "-e",
        "trace=fsync,fdatasync,rename,renameat,renameat2",
    ])
    .arg("-o")
    .arg(&log)
    .arg(crate::common::BIN)
    .arg("--root")
    .arg(root.path())
    .arg("remove")
    .arg("--package")
    .arg(&pkg)
    .env_remove("DKMS_HOOK_DKMS");
    let out = crate::common::run_command(cmd, "usr/src/dkmshook-keep-1.0/dkms.conf\n");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.combined.contains("dkmshook-keep/1.0 stays installed"),
        "{}",
        out.dump()
    );
    let calls = fs::read_to_string(&log).unwrap();
    let repoint = calls
        .lines()
        .position(|l| l.contains("rename") && l.contains("/1.0/source\""))
        .unwrap_or_else(|| panic!("no rename of the source link:\n{calls}"));
    let before = &calls.lines().take(repoint).collect::<Vec<_>>();
    let kept = root.join("var/lib/dkms-hook/kept");
    for want in ["/dkms.conf>".to_string(), format!("{}>", kept.display())] {
        assert!(
            before
                .iter()
                .any(|l| (l.contains("fsync(") || l.contains("fdatasync("))
                    && l.contains(&want)
                    && l.contains(&kept.display().to_string())),
            "no fsync of {want} before the source link is pointed at the copy:\n{calls}"
        );
    }
}

/// Issue 16, item 7: a line printed after the summary (a kept version settled) panicked when
/// nobody read stdout any more (`dkms-hook | head -1`).
#[test]
#[ignore = "needs root and dkms: run tests/run"]
fn a_closed_stdout_ends_the_lines_after_the_summary_quietly() {
    let root = TestRoot::new();
    // A kept version whose module has no sources left: the end of the run removes it, saying so.
    let copy = root.join("var/lib/dkms-hook/kept/foo-1.0");
    root.write_file(
        copy.join("dkms.conf"),
        "PACKAGE_NAME=foo\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]=foo\n",
    );
    let v = root.mkdir(root.dkms_tree().join("foo/1.0"));
    std::os::unix::fs::symlink(&copy, v.join("source")).unwrap();
    let mut cmd = root.command();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{:?}: {stderr}",
        out.status
    );
    assert!(!root.dkms_tree().join("foo/1.0").exists(), "{stderr}");
}
