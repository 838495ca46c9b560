//! Never lose a working module on an upgrade (issue 9, items 1 and 7): `dkmshook-keep` 1.0 ->
//! 1.1, in pacman's hook order (`remove` with the old path while its sources are there and a
//! package file brings 1.1, the sources swapped, `install` with the new path), where 1.1 does not
//! compile for one kernel, or where the dkms tree's disk fills during the build. The kernel that
//! 1.1 cannot be built for keeps 1.0 installed and loadable (its file, vermagic and modules.dep),
//! and says so; the real dkms's `status` and the files on disk are the referees. The scenarios
//! take the root, so tests/it/newer_dkms.rs runs them on dkms 3.4.3 too.

use crate::common::{copy_tree, fixtures_dir, status_line, vermagic_release, TestRoot};
use std::path::{Path, PathBuf};
use std::process::Command;

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
