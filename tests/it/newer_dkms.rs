//! The engine driving a newer dkms than Debian 12's 3.0.10: Debian 13's dkms 3.2.2 (close to the
//! 3.3/3.4 Arch ships), fetched and extracted by tests/setup.sh into tests/.cache/dkms-trixie and
//! chosen through `DKMS_HOOK_DKMS`. dkms changed a lot between 3.0 and 3.2 (terser output, the
//! headers looked up under the install tree, a refusal to build a module whose BUILD_DEPENDS are
//! not installed, other status wording), and Arch users run the newer one. Each test works in its
//! own `--root`, and the same 3.2.2 script's `status` on the same trees is the referee. The
//! scenarios that must hold on any dkms live in tests/it/scenarios, shared with tests/it/engine.rs; what
//! is particular to 3.2 stays here.

use std::process::Command;

use crate::common::{
    installed_lines, newer_dkms, run_command, status_line, two_newest_kernels, TestRoot,
};

/// What the newer dkms says it is (`dkms-3.2.2`); checked to be newer than Debian 12's 3.0.
fn newer_dkms_version() -> String {
    let mut cmd = Command::new(newer_dkms());
    cmd.arg("--version");
    let out = run_command(cmd, "");
    assert_eq!(out.code, 0, "dkms --version: {}", out.dump());
    let version = out.stdout.trim().to_owned();
    let numbers: Vec<u32> = version
        .strip_prefix("dkms-")
        .unwrap_or_else(|| panic!("dkms --version said {version:?}"))
        .split('.')
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    assert!(
        numbers.as_slice() >= [3, 1].as_slice(),
        "{}: {version} is not newer than Debian 12's dkms 3.0",
        newer_dkms().display()
    );
    version
}

/// A fresh root on which dkms-hook drives the newer dkms (through `DKMS_HOOK_DKMS`), and the same
/// newer dkms is the referee.
fn newer_root() -> TestRoot {
    TestRoot::with_dkms(newer_dkms())
}

/// Proves the module was built by the newer dkms, not by the machine's: dkms 3.1+ names itself,
/// with its version, in the first line of make.log (3.0.10 writes `DKMS make.log for ...`).
fn assert_built_by_newer_dkms(root: &TestRoot, module: &str, version: &str, kernel: &str) {
    let log = root.make_log(module, version, kernel);
    let want = format!(
        "DKMS ({}) make.log for {module}/{version}",
        newer_dkms_version()
    );
    assert!(
        log.lines().next().unwrap_or_default().starts_with(&want),
        "{module}/{version} for {kernel}: not built by the newer dkms: make.log begins {:?}",
        log.lines().next()
    );
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn two_modules_arrive_for_two_kernels_then_a_kernel_and_a_module_leave() {
    let root = newer_root();
    root.add_fixture("dkmshook-plain-1.0");
    crate::scenarios::two_packages_arrive_then_a_kernel_and_a_package_leave(
        &root,
        "dkmshook-plain-1.0",
        "dkmshook_plain.ko",
        assert_built_by_newer_dkms,
    );
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn build_depends_pair_builds_in_order_where_the_newer_dkms_refuses_any_other() {
    // The premise: the newer dkms itself refuses the importer while the exporter is not installed.
    let bare = newer_root();
    let (k1, _) = bare.two_kernels();
    bare.add_fixture("dkmshook-importer-1.0");
    let add = bare.dkms(&["add", "-m", "dkmshook-importer", "-v", "1.0"]);
    assert_eq!(add.code, 0, "{}", add.dump());
    let refused = bare.dkms(&["install", "-m", "dkmshook-importer", "-v", "1.0", "-k", &k1]);
    assert_eq!(refused.code, 13, "{}", refused.dump());
    assert!(
        refused.combined.contains("missing BUILD_DEPENDS"),
        "{}",
        refused.dump()
    );

    crate::scenarios::build_depends_pair_builds_in_order(&newer_root(), assert_built_by_newer_dkms);
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_failed_dependency_skips_its_dependent_under_the_newer_dkms() {
    crate::scenarios::a_failed_dependency_skips_its_dependent(&newer_root());
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_compile_failure_under_the_newer_dkms_shows_the_compiler_errors() {
    crate::scenarios::a_compile_failure_fails_loudly_and_alone(&newer_root());
}

/// dkms 3.2 added BUILD_DEPENDS_REBUILD: at the end of every successful `dkms install` of D for K,
/// dkms itself rebuilds and reinstalls, for K, every installed module that lists D in BUILD_DEPENDS
/// and sets BUILD_DEPENDS_REBUILD="yes" (its check_and_rebuild_dependent_modules). That hidden
/// build uses the dependent's one shared build directory, so the engine must not build that
/// dependent for another kernel meanwhile. Here: the importer (slow to build, and rebuilt on
/// dependency upgrades) is installed for k1; in one transaction a new kernel k2 arrives and the
/// exporter goes from 1.0 to 1.1, so the engine installs exporter/1.1 for k1 and k2 and the importer
/// for k2, while dkms rebuilds the importer for k1 inside the exporter's job.
#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_dependency_upgrade_does_not_race_the_rebuild_the_newer_dkms_starts_itself() {
    let root = newer_root();
    let (k1, k2) = two_newest_kernels();
    root.add_kernel(&k1);
    root.add_fixture("dkmshook-exporter-1.0");
    root.add_fixture("dkmshook-importer-1.0");
    let conf = root.join("usr/src/dkmshook-importer-1.0/dkms.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    // A dependent that takes a few seconds to build, as real ones do, widens the window.
    let slow = text.replace("MAKE[0]=\"make ", "MAKE[0]=\"sleep 4; make ");
    assert_ne!(slow, text, "the importer's MAKE changed: update this test");
    std::fs::write(&conf, format!("{slow}BUILD_DEPENDS_REBUILD=\"yes\"\n")).unwrap();
    let out = root.run_merged(
        &["install"],
        "usr/src/dkmshook-exporter-1.0/dkms.conf\nusr/src/dkmshook-importer-1.0/dkms.conf\n",
    );
    assert_eq!(out.code, 0, "{}", out.dump());

    // The transaction: k2 arrives, dkmshook-exporter 1.0 -> 1.1.
    root.add_kernel(&k2);
    let v11 = root.source_tree().join("dkmshook-exporter-1.1");
    crate::common::copy_tree(&root.source_tree().join("dkmshook-exporter-1.0"), &v11);
    let text = std::fs::read_to_string(v11.join("dkms.conf")).unwrap();
    std::fs::write(
        v11.join("dkms.conf"),
        text.replace("PACKAGE_VERSION=\"1.0\"", "PACKAGE_VERSION=\"1.1\""),
    )
    .unwrap();
    let out = root.run_merged(&["remove"], "usr/src/dkmshook-exporter-1.0/dkms.conf\n");
    assert_eq!(out.code, 0, "{}", out.dump());
    std::fs::remove_dir_all(root.source_tree().join("dkmshook-exporter-1.0")).unwrap();
    let out = root.run_merged(
        &["-j", "2", "install"],
        &format!(
            "usr/lib/modules/{k2}/build/include/\nusr/lib/modules/{k2}/modules.order\n\
             usr/src/dkmshook-exporter-1.1/dkms.conf\n"
        ),
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(
        root.dkms_status(),
        installed_lines(
            &["dkmshook-exporter/1.1", "dkmshook-importer/1.0"],
            &[&k1, &k2]
        )
    );
    for k in [&k1, &k2] {
        assert_eq!(
            root.installed_kos(k),
            ["dkmshook_exporter.ko", "dkmshook_importer.ko"],
            "{k}"
        );
    }
    root.assert_modules_match_kernels(&[&k1, &k2]);
}

/// `dkms-hook status` speaks the dialect of the dkms it drives: 3.1.3 reworded status's warnings,
/// so a modified installed module reads differently under 3.0.10 and 3.2.2.
#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn status_speaks_the_newer_dkms_dialect() {
    let root = newer_root();
    let (k1, k2) = root.two_kernels();
    root.add_fixture("dkmshook-plain-1.0");
    let out = root.run_merged(&["install"], "usr/src/dkmshook-plain-1.0/dkms.conf\n");
    assert_eq!(out.code, 0, "{}", out.dump());
    // The installed copy for k1 no longer matches what dkms built.
    let installed = root.kernel_dir(&k1).join(&root.installed_ko_paths(&k1)[0]);
    std::fs::remove_file(&installed).unwrap();
    let mut want = vec![
        status_line(
            "dkmshook-plain/1.0",
            &k1,
            "installed (Differences between built and installed modules)",
        ),
        status_line("dkmshook-plain/1.0", &k2, "installed"),
    ];
    want.sort();
    assert_eq!(root.dkms_status(), want);
    root.assert_status_matches_dkms();
}
