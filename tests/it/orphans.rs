//! `dkms-hook orphans` on the ArchWiki's case: modules installed by real dkms builds, then the
//! dkms tree deleted (as when the dkms package goes and its tree with it) and one kernel's package
//! removed, leaving only dkms's files in its directory.

use crate::common::{status_line, two_newest_kernels, TestRoot};
use std::fs;
use std::time::Duration;

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn orphans_after_the_dkms_tree_is_deleted() {
    let root = TestRoot::new();
    let (k1, k2) = two_newest_kernels();
    root.add_kernel(&k1);
    root.add_kernel(&k2);
    root.add_fixture("dkmshook-plain-1.0");
    root.add_real_source("acpi-call");
    let out = root.run(&[], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    let installed = |k: &str| root.installed_ko_paths(k);
    assert_eq!(installed(&k1).len(), 2, "two modules built: {}", out.dump());
    assert_eq!(installed(&k1), installed(&k2));

    // Files that are no orphans: a vendor module in the kernel's own tree (a real module, so that
    // depmod indexes it), and one in updates/ that no dkms.conf names.
    let k1_dir = root.kernel_dir(&k1);
    let built = k1_dir.join(&installed(&k1)[0]);
    fs::create_dir_all(k1_dir.join("kernel/drivers/misc")).unwrap();
    fs::copy(&built, k1_dir.join("kernel/drivers/misc/vendor_mod.ko")).unwrap();
    fs::copy(&built, k1_dir.join("updates/not_dkms.ko")).unwrap();

    // While the dkms tree is there, every file has its owner.
    let out = root.run(&["orphans"], "");
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.dump());

    // k2's package is removed: its headers link and modules.order go, dkms's files stay.
    let k2_dir = root.kernel_dir(&k2);
    fs::remove_file(k2_dir.join("build")).unwrap();
    fs::remove_file(k2_dir.join("modules.order")).unwrap();
    fs::remove_dir_all(root.dkms_tree()).unwrap();

    let mut want: Vec<String> = Vec::new();
    for k in [&k1, &k2] {
        for p in installed(k)
            .iter()
            .filter(|p| p.starts_with("updates/dkms/"))
        {
            want.push(format!("/usr/lib/modules/{k}/{p}"));
        }
    }
    want.sort();
    want.push(format!("/usr/lib/modules/{k2}/"));
    let out = root.run(&["orphans"], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        want,
        "{}",
        out.dump()
    );

    let dep = || fs::read_to_string(k1_dir.join("modules.dep")).unwrap();
    assert!(
        dep().contains("updates/dkms/"),
        "depmod indexed them: {}",
        dep()
    );
    let out = root.run(&["orphans", "--remove"], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.stdout.contains(&format!("depmod {k1}\n")),
        "{}",
        out.dump()
    );
    assert!(!k2_dir.exists(), "the left-over kernel directory is gone");
    assert_eq!(
        installed(&k1),
        ["kernel/drivers/misc/vendor_mod.ko", "updates/not_dkms.ko"],
        "only dkms's files are gone"
    );
    assert!(k1_dir.join("modules.order").is_file());
    assert!(k1_dir.join("build/Makefile").is_file());
    let dep = dep();
    assert!(!dep.contains("updates/dkms/"), "{dep}");
    assert!(dep.contains("kernel/drivers/misc/vendor_mod.ko:"), "{dep}");

    let out = root.run(&["orphans"], "");
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.dump());
}

/// Without root or dkms: a file in updates/dkms that no record owns is listed as on the system,
/// a vendor module is not, and listing changes nothing.
#[test]
fn orphans_lists_without_changing_anything() {
    let root = TestRoot::new();
    let k = "6.1.0-1-amd64";
    root.add_fake_kernel(k);
    root.write_file(format!("usr/lib/modules/{k}/updates/dkms/gone.ko.zst"), "x");
    root.write_file(format!("usr/lib/modules/{k}/kernel/vendor.ko"), "x");
    let before = root.snapshot();
    let out = root.run(&["orphans"], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(
        out.stdout,
        format!("/usr/lib/modules/{k}/updates/dkms/gone.ko.zst\n")
    );
    assert!(crate::common::snapshot_diff(&before, &root.snapshot()).is_empty());
    // -k: only that kernel's; --dry-run lists what --remove would delete, and deletes nothing.
    root.add_fake_kernel("6.1.0-2-amd64");
    root.write_file("usr/lib/modules/6.1.0-2-amd64/updates/dkms/other.ko", "x");
    let before = root.snapshot();
    let out = root.run(&["orphans", "--remove", "--dry-run", "-k", k], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(
        out.stdout,
        format!("/usr/lib/modules/{k}/updates/dkms/gone.ko.zst\n")
    );
    assert!(crate::common::snapshot_diff(&before, &root.snapshot()).is_empty());
    let out = root.run(&["orphans", "-k", "nonsense"], "");
    assert_eq!(out.code, 2, "{}", out.dump());
}

/// Issue 16, item 4: `orphans --remove` took no lock, and deleted what it had listed without
/// looking again, so a module an install run was just putting back (the dkms tree lost, the
/// module reinstalled by hand) could be deleted under dkms's new record. It waits for the run,
/// then lists again: the module is dkms's again and stays.
#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn orphans_remove_waits_for_a_running_install_and_spares_what_it_put_back() {
    let root = TestRoot::new();
    let (k1, _) = two_newest_kernels();
    root.add_kernel(&k1);
    root.add_fixture("dkmshook-plain-1.0");
    let out = root.run(&[], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    let ko = root.kernel_dir(&k1).join("updates/dkms/dkmshook_plain.ko");
    fs::remove_dir_all(root.dkms_tree().join("dkmshook-plain")).unwrap();
    let out = root.run(&["orphans"], "");
    assert_eq!(
        out.stdout,
        format!("/usr/lib/modules/{k1}/updates/dkms/dkmshook_plain.ko\n"),
        "{}",
        out.dump()
    );

    let mark = format!("orphans-race-{}", std::process::id());
    let install = crate::stopping::start(&root, &["install", "dkmshook-plain"], &mark);
    install.wait_for("START", Duration::from_secs(120));
    let orphans = root.run(&["orphans", "--remove"], "");
    let install = install.finish();
    assert_eq!(install.code, 0, "{}", install.dump());
    assert_eq!(orphans.code, 0, "{}", orphans.dump());
    assert!(
        orphans
            .stderr
            .contains("dkms-hook: waiting for another dkms-hook run"),
        "{}",
        orphans.dump()
    );
    assert_eq!(orphans.stdout, "", "{}", orphans.dump());
    assert!(ko.is_file());
    assert_eq!(
        root.dkms_status(),
        [status_line("dkmshook-plain/1.0", &k1, "installed")]
    );
}
