//! The engine on the real thing: real dkms (the machine's, Debian 12's 3.0.10), the real headers
//! of two kernels, real module sources from Debian's `-dkms` packages and fixtures of our own, each
//! test in its own `--root`. `dkms status` on the same trees is the referee. The scenarios that
//! must hold on any dkms live in tests/it/scenarios, shared with tests/it/newer_dkms.rs.

use crate::common::{status_line, two_newest_kernels, vermagic_release, TestRoot};

/// Proves a module version was built by the machine's dkms 3.0.10, not by another dkms leaking in
/// through `DKMS_HOOK_DKMS`: 3.0.10's make.log begins `DKMS make.log for M-V for kernel K`, newer
/// ones name themselves (`DKMS (dkms-3.2.2) make.log for M/V ...`).
fn assert_built_by_machine_dkms(root: &TestRoot, module: &str, version: &str, kernel: &str) {
    let log = root.make_log(module, version, kernel);
    let want = format!("DKMS make.log for {module}-{version} for kernel {kernel} ");
    assert!(
        log.lines().next().unwrap_or_default().starts_with(&want),
        "{module}/{version} for {kernel}: not built by the machine's dkms: make.log begins {:?}",
        log.lines().next()
    );
}

/// Appends BUILD_EXCLUSIVE_KERNEL to a source's dkms.conf so that only `kernel` builds it.
fn exclusive_to(root: &TestRoot, source: &str, kernel: &str) {
    let conf = root.source_tree().join(source).join("dkms.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "BUILD_EXCLUSIVE_KERNEL=\"^{}$\"\n",
        regex_escape(kernel)
    ));
    std::fs::write(&conf, text).unwrap();
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn two_module_packages_arrive_then_a_kernel_and_a_module_leave() {
    let root = TestRoot::new();
    let acpi = root.add_real_source("acpi-call");
    crate::scenarios::two_packages_arrive_then_a_kernel_and_a_package_leave(
        &root,
        &acpi,
        "acpi_call.ko",
        assert_built_by_machine_dkms,
    );
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_new_kernel_gets_every_autoinstall_module() {
    let root = TestRoot::new();
    let (k1, k2) = two_newest_kernels();
    root.add_kernel(&k1);
    // v4l2loopback's dkms.conf reads the kernel's .config to decide: real logic, evaluated per kernel.
    let v4l2 = root.add_real_source("v4l2loopback");
    let out = root.run(&["install"], &format!("usr/src/{v4l2}/dkms.conf\n"));
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(root.installed_kos(&k1), ["v4l2loopback.ko"]);

    root.add_kernel(&k2);
    let out = root.run_merged(
        &["install"],
        &format!("usr/lib/modules/{k2}/build/include/\nusr/lib/modules/{k2}/modules.order\n"),
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(
        out.combined.matches("START").count(),
        1,
        "only the new kernel: {}",
        out.combined
    );
    assert_eq!(root.installed_kos(&k2), ["v4l2loopback.ko"]);
    assert_eq!(
        vermagic_release(root.kernel_dir(&k2).join(&root.installed_ko_paths(&k2)[0])),
        k2
    );
    root.assert_status_matches_dkms();
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn build_depends_order_lets_a_module_link_against_another() {
    crate::scenarios::build_depends_pair_builds_in_order(
        &TestRoot::new(),
        assert_built_by_machine_dkms,
    );
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_failed_dependency_skips_its_dependent_and_names_it() {
    crate::scenarios::a_failed_dependency_skips_its_dependent(&TestRoot::new());
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_module_that_fails_to_compile_fails_loudly_and_alone() {
    crate::scenarios::a_compile_failure_fails_loudly_and_alone(&TestRoot::new());
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_dkms_conf_with_a_syntax_error_fails_that_module_alone() {
    let root = TestRoot::new();
    let (k1, _k2) = root.two_kernels();
    root.add_fixture("dkmshook-badconf-1.0");
    root.add_fixture("dkmshook-plain-1.0");
    let out = root.run_merged(
        &["install"],
        "usr/src/dkmshook-badconf-1.0/dkms.conf\nusr/src/dkmshook-plain-1.0/dkms.conf\n",
    );
    assert_eq!(out.code, 1, "{}", out.dump());
    let text = &out.combined;
    assert!(
        text.contains("/usr/src/dkmshook-badconf-1.0/dkms.conf"),
        "{text}"
    );
    assert!(text.contains("syntax error"), "{text}");
    assert!(text.contains("line "), "{text}");
    assert_eq!(root.installed_kos(&k1), ["dkmshook_plain.ko"]);
    assert!(!root.dkms_tree().join("dkmshook-badconf").exists());
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_module_excluded_on_one_kernel_is_a_skip_not_a_failure() {
    let root = TestRoot::new();
    let (k1, k2) = root.two_kernels();
    root.add_fixture("dkmshook-plain-1.0");
    exclusive_to(&root, "dkmshook-plain-1.0", &k1);
    let out = root.run_merged(&["install"], "usr/src/dkmshook-plain-1.0/dkms.conf\n");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(root.installed_kos(&k1), ["dkmshook_plain.ko"]);
    assert_eq!(root.installed_kos(&k2), Vec::<String>::new());
    assert!(
        out.combined.contains("BUILD_EXCLUSIVE_KERNEL"),
        "{}",
        out.combined
    );
    assert_eq!(
        root.dkms_status(),
        [status_line("dkmshook-plain/1.0", &k1, "installed")]
    );
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_module_built_for_the_wrong_kernel_fails_verification() {
    let root = TestRoot::new();
    let (k1, k2) = root.two_kernels();
    root.add_fixture("dkmshook-wrongkernel-1.0");
    // Its Makefile always builds against k1's headers, whatever kernel dkms asks for.
    root.write_file("usr/src/dkmshook-wrongkernel-1.0/wrongkernel", &k1);
    let out = root.run_merged(&["install"], "usr/src/dkmshook-wrongkernel-1.0/dkms.conf\n");
    assert_eq!(out.code, 1, "{}", out.dump());
    let text = &out.combined;
    assert!(
        text.contains(&format!("was built for kernel \"{k1}\", not {k2}")),
        "{text}"
    );
    assert!(!text.contains(&format!("not {k1}")), "{text}");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let root = TestRoot::new();
    let (k1, k2) = root.two_kernels();
    root.add_fixture("dkmshook-exporter-1.0");
    root.add_fixture("dkmshook-importer-1.0");
    root.add_fixture("dkmshook-badconf-1.0");
    root.add_fixture("dkmshook-plain-1.0");
    exclusive_to(&root, "dkmshook-plain-1.0", &k1);
    // Some installed state too, so removal plans have something to read.
    let out = root.run(&["install"], "usr/src/dkmshook-plain-1.0/dkms.conf\n");
    assert_eq!(out.code, 0, "{}", out.dump());

    let before = root.snapshot();
    let out = root.run(&["--dry-run"], "");
    assert_eq!(
        out.code,
        1,
        "the broken dkms.conf is a failure: {}",
        out.dump()
    );
    let plan = &out.stdout;
    let pos = |s: &str| {
        plan.find(s)
            .unwrap_or_else(|| panic!("{s:?} not in:\n{plan}"))
    };
    for k in [&k1, &k2] {
        assert!(
            pos(&format!("dkmshook-exporter/1.0 for {k}"))
                < pos(&format!("dkmshook-importer/1.0 for {k}"))
        );
    }
    pos(&format!("dkmshook-plain/1.0 for {k1}: already installed"));
    pos(&format!(
        "dkmshook-plain/1.0 for {k2}: BUILD_EXCLUSIVE_KERNEL"
    ));
    pos("dkmshook-badconf-1.0/dkms.conf");
    let out = root.run(
        &["--dry-run", "remove"],
        &format!("usr/lib/modules/{k1}/modules.order\n"),
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.stdout
            .contains(&format!("remove dkmshook-plain/1.0 for {k1}")),
        "{}",
        out.stdout
    );
    assert_eq!(
        crate::common::snapshot_diff(&before, &root.snapshot()),
        Vec::<String>::new()
    );
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn removing_a_kernel_whose_headers_and_modules_dep_are_gone_still_cleans_up() {
    let root = TestRoot::new();
    let (k1, k2) = root.two_kernels();
    root.add_fixture("dkmshook-plain-1.0");
    let out = root.run(&[], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    // The headers package went first, and kmod's hook already removed modules.dep.
    std::fs::remove_file(root.kernel_dir(&k2).join("build")).unwrap();
    for f in std::fs::read_dir(root.kernel_dir(&k2)).unwrap().flatten() {
        if f.file_name().to_string_lossy().starts_with("modules.")
            && f.file_name() != "modules.order"
        {
            std::fs::remove_file(f.path()).unwrap();
        }
    }
    let out = root.run_merged(
        &["remove"],
        &format!("usr/lib/modules/{k2}/modules.order\n"),
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.combined.contains("directly"),
        "says it removed the files itself: {}",
        out.combined
    );
    assert_eq!(root.installed_kos(&k2), Vec::<String>::new());
    assert!(!root
        .dkms_tree()
        .join("dkmshook-plain/1.0")
        .join(&k2)
        .exists());
    assert_eq!(
        root.dkms_status(),
        [status_line("dkmshook-plain/1.0", &k1, "installed")]
    );
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn refuses_to_change_anything_without_root_but_dry_run_works() {
    let root = TestRoot::new();
    let (_k1, _k2) = root.two_kernels();
    root.add_fixture("dkmshook-plain-1.0");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = root.command();
    cmd.args(["install"]);
    // setpriv drops to an unprivileged user for this one command.
    let mut drop = std::process::Command::new("setpriv");
    drop.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    let out = crate::common::run_command(drop, "usr/src/dkmshook-plain-1.0/dkms.conf\n");
    assert_eq!(out.code, 2, "{}", out.dump());
    assert!(out.stderr.contains("needs root"), "{}", out.dump());
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        crate::common::BIN,
        "--root",
    ])
    .arg(root.path())
    .args(["--dry-run", "install"]);
    let out = crate::common::run_command(cmd, "usr/src/dkmshook-plain-1.0/dkms.conf\n");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.stdout.contains("build  dkmshook-plain/1.0"),
        "{}",
        out.dump()
    );
}

/// A dkms that cannot run is one configuration error before anything starts (exit 2), not a
/// failure of every job (it was: each job `FAILED`, exit 1).
#[test]
#[ignore = "needs root: run tests/run"]
fn a_dkms_that_cannot_run_is_a_configuration_error() {
    let root = TestRoot::new();
    let (_k1, _k2) = root.two_kernels();
    root.add_fixture("dkmshook-plain-1.0");
    let mut cmd = root.command();
    cmd.env("DKMS_HOOK_DKMS", "/nonexistent/dkms")
        .arg("install");
    let out = crate::common::run_command(cmd, "usr/src/dkmshook-plain-1.0/dkms.conf\n");
    assert_eq!(out.code, 2, "{}", out.dump());
    assert!(
        out.stderr
            .contains("DKMS_HOOK_DKMS=/nonexistent/dkms: No such file"),
        "{}",
        out.dump()
    );
    assert!(!out.stdout.contains("START"), "{}", out.dump());
}

/// The ArchWiki's manual commands, the dkms-hook way: `install MODULE[/VERSION]...` builds what is
/// named for the `-k` kernels or every kernel (two modules at once here, a real one and a
/// fixture), leaving what is already installed alone; `remove MODULE/VERSION` removes it from
/// the `-k` kernels, or everywhere and from dkms. dkms's own `status` is the referee at each step.
#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn modules_named_by_hand_are_installed_and_removed_where_asked() {
    let root = TestRoot::new();
    let (k1, k2) = root.two_kernels();
    let acpi = root.add_real_source("acpi-call");
    let acpi_version = acpi.strip_prefix("acpi-call-").unwrap();
    root.add_fixture("dkmshook-plain-1.0");
    // A source that does not build: named by nobody, it must not be touched.
    root.add_fixture("dkmshook-broken-1.0");
    let acpi_mv = format!("acpi-call/{acpi_version}");

    let out = root.run_merged(
        &["-k", &k1, "install", "acpi-call", "dkmshook-plain/1.0"],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(
        root.installed_kos(&k1),
        ["acpi_call.ko", "dkmshook_plain.ko"]
    );
    assert_eq!(root.installed_kos(&k2), Vec::<String>::new());
    assert!(
        !out.combined.contains("dkmshook-broken"),
        "{}",
        out.combined
    );

    // Every kernel: only what is missing is built.
    let out = root.run_merged(&["install", "dkmshook-plain"], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(out.combined.matches("START").count(), 1, "{}", out.combined);
    assert_eq!(root.installed_kos(&k2), ["dkmshook_plain.ko"]);
    root.assert_modules_match_kernels(&[&k1, &k2]);
    let mut want = vec![
        status_line(&acpi_mv, &k1, "installed"),
        status_line("dkmshook-plain/1.0", &k1, "installed"),
        status_line("dkmshook-plain/1.0", &k2, "installed"),
    ];
    want.sort();
    assert_eq!(root.dkms_status(), want);
    root.assert_status_matches_dkms();

    let out = root.run_merged(&["-k", &k1, "remove", "dkmshook-plain/1.0"], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(root.installed_kos(&k1), ["acpi_call.ko"]);
    assert_eq!(root.installed_kos(&k2), ["dkmshook_plain.ko"]);

    let out = root.run_merged(&["remove", "dkmshook-plain/1.0"], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(root.installed_kos(&k2), Vec::<String>::new());
    assert_eq!(
        root.dkms_status(),
        [status_line(&acpi_mv, &k1, "installed")]
    );
    assert!(!root.dkms_tree().join("dkmshook-plain").join("1.0").exists());

    // Once gone, the name is refused, saying what dkms still has.
    let out = root.run(&["remove", "dkmshook-plain/1.0"], "");
    assert_eq!(out.code, 2, "{}", out.dump());
    assert!(
        out.stderr
            .contains("dkmshook-plain/1.0: not registered with dkms"),
        "{}",
        out.dump()
    );
}

/// Issue 16, item 8: removing a module version that another installed module BUILD_DEPENDS on
/// left the dependent installed without a word; it stays (dkms-hook removes only what it is
/// told to, as dkms does), and the removal says so, naming how to remove it too.
#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn removing_a_dependency_says_which_dependents_stay_installed_without_it() {
    let root = TestRoot::new();
    let (k1, _) = two_newest_kernels();
    root.add_kernel(&k1);
    root.add_fixture("dkmshook-exporter-1.0");
    root.add_fixture("dkmshook-importer-1.0");
    let out = root.run_merged(&[], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    let out = root.run_merged(&["remove", "dkmshook-exporter/1.0"], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.combined.contains(&format!(
            "note: dkmshook-importer/1.0 stays installed for {k1}, but it BUILD_DEPENDS on \
             dkmshook-exporter, removed there: it may not load without it \
             (`dkms-hook remove dkmshook-importer/1.0` removes it too)"
        )),
        "{}",
        out.dump()
    );
    assert_eq!(
        root.dkms_status(),
        [status_line("dkmshook-importer/1.0", &k1, "installed")]
    );
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if ".+*?()[]{}|^$\\".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// The compiler speaks English whatever the user's language: the failure block finds gcc's error
/// lines by their English words (`error:`), and the kernel's Makefile unexports `LC_ALL`, so
/// dkms's `LC_ALL=C` alone never reaches gcc. `LC_MESSAGES=C` does (and `LANGUAGE` is dropped,
/// which gettext would read before it). Seen by a compiler wrapper first in PATH.
#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn the_compiler_speaks_english_whatever_the_users_language() {
    let root = TestRoot::new();
    let (k1, _) = root.two_kernels();
    root.add_fixture("dkmshook-plain-1.0");
    let tools = tempfile::tempdir().unwrap();
    let log = tools.path().join("locale");
    let cc = crate::common::kernel_cc(&root.kernel_dir(&k1).join("build/.config"));
    for name in ["gcc".to_owned(), cc] {
        let script = tools.path().join(&name);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"LC_MESSAGES=$LC_MESSAGES LANGUAGE=${{LANGUAGE-unset}} LC_ALL=$LC_ALL\" >>'{}'\nexec /usr/bin/{name} \"$@\"\n",
                log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cmd = root.command();
    cmd.env("LANG", "de_DE.UTF-8")
        .env("LANGUAGE", "de")
        .env(
            "PATH",
            format!(
                "{}:{}",
                tools.path().display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .args(["-k", &k1]);
    let out = crate::common::run_command(cmd, "");
    assert_eq!(out.code, 0, "{}", out.dump());
    let seen = std::fs::read_to_string(&log).expect("the compiler wrapper never ran");
    assert!(!seen.is_empty());
    for line in seen.lines() {
        assert!(
            line.starts_with("LC_MESSAGES=C LANGUAGE=unset"),
            "the compiler ran with {line}"
        );
    }
}
