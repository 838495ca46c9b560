//! The engine driving a newer dkms than Debian 12's 3.0.10: Debian 13's dkms 3.2.2 (fetched and
//! extracted by tests/setup.sh into tests/.cache/dkms-trixie) and 3.4.3, the series Arch ships
//! (built by tests/setup.sh from its release tarball into tests/.cache/dkms-3.4.3), each chosen
//! through `DKMS_HOOK_DKMS`. dkms changed a lot after 3.0 (terser output, the headers looked up
//! under the install tree, a refusal to build a module whose BUILD_DEPENDS are not installed,
//! other status wording, builds in a temporary directory moved into place), and Arch users run the
//! newest. Each test is written once, as a function of the dkms program, and [`on_newer_dkms`]
//! makes one `#[test]` of it per version (`newer_dkms::dkms_3_2_2::NAME`,
//! `newer_dkms::dkms_3_4_3::NAME`); without 3.4.3 (a plain clone) its tests cannot run: tests/run
//! counts them as skipped, saying why, and .ci/run fails them (`common::skip`). Each
//! test works in its own `--root`, and the same dkms's `status` on the same trees is the referee.
//! The scenarios that must hold on any dkms live in tests/it/scenarios, shared with
//! tests/it/engine.rs; what is particular to the newer dkms stays here.

use std::path::Path;
use std::process::Command;

use crate::common::{installed_lines, run_command, status_line, two_newest_kernels, TestRoot};

/// Makes one `#[test]` per newer dkms of each test function named, run with that dkms's program.
macro_rules! on_newer_dkms {
    ($($test:ident),* $(,)?) => {
        on_newer_dkms!(@version dkms_3_2_2, Some(crate::common::newer_dkms()); $($test),*);
        on_newer_dkms!(@version dkms_3_4_3, crate::common::dkms_343(); $($test),*);
    };
    (@version $version:ident, $program:expr; $($test:ident),*) => {
        mod $version {
            $(
                #[test]
                #[ignore = "needs root, dkms and kernel headers: run tests/run"]
                fn $test() {
                    if let Some(program) = $program {
                        super::$test(&program);
                    }
                }
            )*
        }
    };
}

on_newer_dkms!(
    two_modules_arrive_for_two_kernels_then_a_kernel_and_a_module_leave,
    build_depends_pair_builds_in_order_where_the_newer_dkms_refuses_any_other,
    a_failed_dependency_skips_its_dependent_under_the_newer_dkms,
    a_compile_failure_under_the_newer_dkms_shows_the_compiler_errors,
    a_dependency_upgrade_does_not_race_the_rebuild_the_newer_dkms_starts_itself,
    status_speaks_the_newer_dkms_dialect,
    a_build_exclusive_only_dkms_sees_is_a_skip_exit_77,
    a_dependency_dkms_no_longer_counts_fails_with_exit_13,
    headers_dkms_cannot_use_fail_with_exit_21,
    a_dependency_nobody_provides_fails_at_planning_not_in_dkms,
    post_transaction_runs_once_per_dkms_call,
    an_upgrade_that_fails_on_one_kernel_keeps_the_old_version_there,
    removing_the_package_removes_its_kept_version_too,
    a_disk_that_fills_during_the_build_fails_it_with_the_reason_and_keeps_the_old_module,
    a_swap_stopped_by_the_job_timeout_puts_the_kept_version_back,
    a_swap_stopped_by_sigterm_puts_the_kept_version_back,
    a_swap_cut_short_by_sigkill_is_put_back_by_the_next_run,
    a_latin1_make_log_shows_the_compilers_error_and_is_kept_byte_for_byte,
    two_kernels_of_one_version_build_at_once_and_match_a_serial_run,
    a_sigterm_while_two_kernels_of_one_version_build_leaves_both_pairs_whole,
    a_long_make_takes_the_cores_short_jobs_give_back,
    a_dkms_conf_with_its_own_make_j_joins_the_jobserver,
);

/// See tests/it/kernels.rs.
fn two_kernels_of_one_version_build_at_once_and_match_a_serial_run(dkms: &Path) {
    crate::kernels::two_kernels_of_one_version_build_at_once(&newer_root(dkms));
}

/// See tests/it/kernels.rs.
fn a_sigterm_while_two_kernels_of_one_version_build_leaves_both_pairs_whole(dkms: &Path) {
    let which = dkms.display().to_string().replace('/', "_");
    crate::kernels::sigterm_while_two_kernels_of_one_version_build(&newer_root(dkms), &which);
}

/// See tests/it/jobserver.rs.
fn a_long_make_takes_the_cores_short_jobs_give_back(dkms: &Path) {
    crate::jobserver::long_make_takes_the_freed_cores(&newer_root(dkms));
}

/// See tests/it/jobserver.rs.
fn a_dkms_conf_with_its_own_make_j_joins_the_jobserver(dkms: &Path) {
    crate::jobserver::a_make_with_its_own_j_joins_the_jobserver(&newer_root(dkms));
}

/// See tests/it/logs.rs.
fn a_latin1_make_log_shows_the_compilers_error_and_is_kept_byte_for_byte(dkms: &Path) {
    crate::logs::latin1_make_log(&newer_root(dkms));
}

/// See tests/it/keep.rs.
fn a_swap_stopped_by_the_job_timeout_puts_the_kept_version_back(dkms: &Path) {
    crate::keep::swap_stopped_by_the_job_timeout(&newer_root(dkms));
}

/// See tests/it/keep.rs.
fn a_swap_stopped_by_sigterm_puts_the_kept_version_back(dkms: &Path) {
    crate::keep::swap_stopped_by_sigterm(&newer_root(dkms));
}

/// See tests/it/keep.rs.
fn a_swap_cut_short_by_sigkill_is_put_back_by_the_next_run(dkms: &Path) {
    crate::keep::swap_cut_short_by_sigkill(&newer_root(dkms));
}

/// See tests/it/keep.rs.
fn an_upgrade_that_fails_on_one_kernel_keeps_the_old_version_there(dkms: &Path) {
    crate::keep::upgrade_failing_on_one_kernel_keeps_the_old_version(&newer_root(dkms));
}

/// See tests/it/keep.rs.
fn removing_the_package_removes_its_kept_version_too(dkms: &Path) {
    crate::keep::plain_removal_takes_the_kept_version_along(&newer_root(dkms));
}

/// See tests/it/keep.rs.
fn a_disk_that_fills_during_the_build_fails_it_with_the_reason_and_keeps_the_old_module(
    dkms: &Path,
) {
    crate::keep::disk_full_keeps_the_old_module(&newer_root(dkms));
}

/// What a dkms program says it is (`dkms-3.2.2`); checked to be newer than Debian 12's 3.0.
fn dkms_version(program: &Path) -> String {
    let mut cmd = Command::new(program);
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
        program.display()
    );
    version
}

/// A fresh root on which dkms-hook drives `dkms` (through `DKMS_HOOK_DKMS`), and the same dkms is
/// the referee.
fn newer_root(dkms: &Path) -> TestRoot {
    TestRoot::with_dkms(dkms)
}

/// Proves the module was built by the root's newer dkms, not by the machine's nor another one:
/// dkms 3.1+ names itself, with its version, in the first line of make.log (3.0.10 writes
/// `DKMS make.log for ...`).
fn assert_built_by_newer_dkms(root: &TestRoot, module: &str, version: &str, kernel: &str) {
    let log = root.make_log(module, version, kernel);
    let want = format!(
        "DKMS ({}) make.log for {module}/{version}",
        dkms_version(root.dkms_program())
    );
    assert!(
        log.lines().next().unwrap_or_default().starts_with(&want),
        "{module}/{version} for {kernel}: not built by {}: make.log begins {:?}",
        root.dkms_program().display(),
        log.lines().next()
    );
}

fn two_modules_arrive_for_two_kernels_then_a_kernel_and_a_module_leave(dkms: &Path) {
    let root = newer_root(dkms);
    root.add_fixture("dkmshook-plain-1.0");
    crate::scenarios::two_packages_arrive_then_a_kernel_and_a_package_leave(
        &root,
        "dkmshook-plain-1.0",
        "dkmshook_plain.ko",
        assert_built_by_newer_dkms,
    );
}

fn build_depends_pair_builds_in_order_where_the_newer_dkms_refuses_any_other(dkms: &Path) {
    // The premise: the newer dkms itself refuses the importer while the exporter is not installed.
    let bare = newer_root(dkms);
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

    crate::scenarios::build_depends_pair_builds_in_order(
        &newer_root(dkms),
        assert_built_by_newer_dkms,
    );
}

fn a_failed_dependency_skips_its_dependent_under_the_newer_dkms(dkms: &Path) {
    crate::scenarios::a_failed_dependency_skips_its_dependent(&newer_root(dkms));
}

fn a_compile_failure_under_the_newer_dkms_shows_the_compiler_errors(dkms: &Path) {
    crate::scenarios::a_compile_failure_fails_loudly_and_alone(&newer_root(dkms));
}

/// dkms 3.2 added BUILD_DEPENDS_REBUILD: at the end of every successful `dkms install` of D for K,
/// dkms itself rebuilds and reinstalls, for K, every installed module that lists D in BUILD_DEPENDS
/// and sets BUILD_DEPENDS_REBUILD="yes" (its check_and_rebuild_dependent_modules). That hidden
/// build uses the dependent's one shared build directory, so the engine must not build that
/// dependent for another kernel meanwhile. Here: the importer (slow to build, and rebuilt on
/// dependency upgrades) is installed for k1; in one transaction a new kernel k2 arrives and the
/// exporter goes from 1.0 to 1.1, so the engine installs exporter/1.1 for k1 and k2 and the importer
/// for k2, while dkms rebuilds the importer for k1 inside the exporter's job.
fn a_dependency_upgrade_does_not_race_the_rebuild_the_newer_dkms_starts_itself(dkms: &Path) {
    let root = newer_root(dkms);
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
fn status_speaks_the_newer_dkms_dialect(dkms: &Path) {
    let root = newer_root(dkms);
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

/// dkms's own BUILD_EXCLUSIVE verdict, exit 77, is a skip through dkms-hook too. The engine keeps
/// off the kernels a dkms.conf excludes before it calls dkms; to reach dkms's own check, this
/// dkms.conf excludes the newer kernel only once the module is registered (its logic reads the
/// dkms tree, as real ones read the kernel's config), so the plan includes the pair and dkms, at
/// install time, refuses it.
fn a_build_exclusive_only_dkms_sees_is_a_skip_exit_77(dkms: &Path) {
    let root = newer_root(dkms);
    let (k1, k2) = root.two_kernels();
    root.add_fixture("dkmshook-plain-1.0");
    let conf = root.join("usr/src/dkmshook-plain-1.0/dkms.conf");
    let text = root.read_file(&conf);
    std::fs::write(
        &conf,
        format!(
            "{text}[[ -L $dkms_tree/$PACKAGE_NAME/$PACKAGE_VERSION/source ]] && \
             BUILD_EXCLUSIVE_KERNEL=\"^{}$\"\n",
            k1.replace('.', "\\.")
        ),
    )
    .unwrap();
    let out = root.run_merged(&["install"], "usr/src/dkmshook-plain-1.0/dkms.conf\n");
    assert_eq!(out.code, 0, "{}", out.dump());
    let line = out
        .combined
        .lines()
        .find(|l| l.contains("EXCLUDED"))
        .unwrap_or_else(|| panic!("no EXCLUDED line: {}", out.combined));
    assert!(
        line.contains(&format!("for {k2}: dkms: BUILD_EXCLUSIVE")),
        "{}",
        out.combined
    );
    assert_eq!(root.installed_kos(&k1), ["dkmshook_plain.ko"]);
    assert_eq!(root.installed_kos(&k2), Vec::<String>::new());
    // The premise: dkms itself says 77 for that pair.
    let again = root.dkms(&["install", "-m", "dkmshook-plain", "-v", "1.0", "-k", &k2]);
    assert_eq!(again.code, 77, "{}", again.dump());
}

/// dkms's own BUILD_DEPENDS check, exit 13, through dkms-hook: the exporter is installed as far as
/// the dkms tree's links go, so the engine builds the importer, but its sources were deleted
/// behind dkms's back and dkms no longer counts it as installed. The failure is the importer's,
/// in its block, in dkms's words.
fn a_dependency_dkms_no_longer_counts_fails_with_exit_13(dkms: &Path) {
    let root = newer_root(dkms);
    let k = crate::common::kernels().last().unwrap().clone();
    root.add_kernel(&k);
    root.add_fixture("dkmshook-exporter-1.0");
    root.add_fixture("dkmshook-importer-1.0");
    let out = root.run_merged(&["install"], "usr/src/dkmshook-exporter-1.0/dkms.conf\n");
    assert_eq!(out.code, 0, "{}", out.dump());
    std::fs::remove_dir_all(root.source_tree().join("dkmshook-exporter-1.0")).unwrap();
    let out = root.run_merged(&["install"], "usr/src/dkmshook-importer-1.0/dkms.conf\n");
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.combined.contains(&format!(
            "dkmshook-importer/1.0 for {k}: missing BUILD_DEPENDS (dkms exit 13)"
        )),
        "{}",
        out.combined
    );
    assert!(
        out.combined.contains("due to missing BUILD_DEPENDS"),
        "dkms's own words are not shown: {}",
        out.combined
    );
    assert_eq!(root.installed_kos(&k), ["dkmshook_exporter.ko"]);
}

/// A kernel whose build/ has a Makefile but no include/ (a headers package half removed): the
/// engine counts it as having headers and plans the build; dkms refuses, exit 21 (3.0.10 said 1),
/// and dkms-hook names the kernel and the reason.
fn headers_dkms_cannot_use_fail_with_exit_21(dkms: &Path) {
    let root = newer_root(dkms);
    let k = crate::common::kernels().last().unwrap().clone();
    let fake = "9.9.9-dkmshook-halfheaders";
    root.add_kernel(&k);
    root.write_file(
        root.kernel_dir(fake).join("build/Makefile"),
        std::fs::read(crate::common::headers_dir(&k).join("Makefile")).unwrap(),
    );
    root.write_file(root.kernel_dir(fake).join("modules.order"), "");
    root.add_fixture("dkmshook-plain-1.0");
    let out = root.run_merged(&["install"], "usr/src/dkmshook-plain-1.0/dkms.conf\n");
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.combined.contains(&format!(
            "dkmshook-plain/1.0 for {fake}: kernel headers missing (dkms exit 21)"
        )),
        "{}",
        out.combined
    );
    assert!(
        out.combined.contains("Your kernel headers for kernel"),
        "{}",
        out.combined
    );
    assert_eq!(root.installed_kos(&k), ["dkmshook_plain.ko"]);
}

/// A BUILD_DEPENDS on a module in neither the source nor the dkms tree. dkms 3.4.1+ `autoinstall`
/// defers such a module (not registered yet: under dpkg its package may be configured later) and
/// succeeds; `dkms install` refuses it (exit 13). Under pacman every package of the transaction is
/// on disk when the hook runs, so nothing can register it later in this run: dkms-hook fails that
/// module alone, at planning time, naming the dependency, never calling dkms for it; the next
/// transaction that brings the dependency builds both.
fn a_dependency_nobody_provides_fails_at_planning_not_in_dkms(dkms: &Path) {
    let root = newer_root(dkms);
    let k = crate::common::kernels().last().unwrap().clone();
    root.add_kernel(&k);
    root.add_fixture("dkmshook-plain-1.0");
    let conf = root.join("usr/src/dkmshook-plain-1.0/dkms.conf");
    let text = root.read_file(&conf);
    std::fs::write(&conf, format!("{text}BUILD_DEPENDS=\"dkmshook-nosuch\"\n")).unwrap();

    let since_3_4_1 =
        crate::common::version_cmp(&dkms_version(dkms), "dkms-3.4.1") != std::cmp::Ordering::Less;
    if since_3_4_1 {
        // The premise: dkms's own autoinstall defers it, and succeeds.
        let add = root.dkms(&["add", "-m", "dkmshook-plain", "-v", "1.0"]);
        assert_eq!(add.code, 0, "{}", add.dump());
        let auto = root.dkms(&["autoinstall", "-k", &k]);
        assert_eq!(auto.code, 0, "{}", auto.dump());
        assert!(auto.combined.contains("deferred"), "{}", auto.dump());
    }
    let out = root.run_merged(&["install"], "usr/src/dkmshook-plain-1.0/dkms.conf\n");
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.combined
            .contains("unknown dependency dkmshook-nosuch (BUILD_DEPENDS)"),
        "{}",
        out.combined
    );
    assert!(!out.combined.contains("dkms exit 13"), "{}", out.combined);
    assert!(!out.combined.contains("START"), "{}", out.combined);
    assert_eq!(root.installed_kos(&k), Vec::<String>::new());
}

/// `post_transaction` (dkms 3.2.0+) runs after every successful `dkms install` and `remove`: under
/// dkms-hook that is once per job, not once per transaction, and its log is the root's. dkms reads
/// it from the running system's framework.conf; under `--root` that is not the root's, so the
/// test hands the same variable to dkms through the environment, which dkms honours alike.
fn post_transaction_runs_once_per_dkms_call(dkms: &Path) {
    let root = newer_root(dkms);
    let (k1, k2) = root.two_kernels();
    root.add_fixture("dkmshook-plain-1.0");
    let mark = root.join("post-transaction.marks");
    let mut cmd = root.command();
    cmd.env(
        "post_transaction",
        format!("sh -c 'echo ran >>{}'", mark.display()),
    )
    .arg("install");
    let out = run_command(cmd, "usr/src/dkmshook-plain-1.0/dkms.conf\n");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(root.installed_kos(&k1), ["dkmshook_plain.ko"]);
    assert_eq!(root.installed_kos(&k2), ["dkmshook_plain.ko"]);
    // One run per install job (two kernels), none for `dkms add`.
    assert_eq!(root.read_file(&mark), "ran\nran\n");
    assert!(root.dkms_tree().join("post_transaction.log").is_file());
}
