//! The engine on the real thing: real dkms, the real headers of two kernels, real module sources from
//! Debian's `-dkms` packages and fixtures of our own, each test in its own `--root`. `dkms status` on
//! the same trees is the referee.

mod common;

use common::{kernels, vermagic_release, TestRoot};

const NEEDS: &str = "needs root, dkms and kernel headers: run tests/run";

fn two_kernels(root: &TestRoot) -> (String, String) {
    let ks = kernels();
    let (k1, k2) = (ks[ks.len() - 2].clone(), ks[ks.len() - 1].clone());
    root.add_kernel(&k1);
    root.add_kernel(&k2);
    (k1, k2)
}

fn status_line(m: &str, k: &str, state: &str) -> String {
    format!("{m}, {k}, x86_64: {state}")
}

/// `dkms-hook status` must print what `dkms status` prints, line for line.
fn assert_status_matches_dkms(root: &TestRoot) {
    let ours = root.run(&["status"], "");
    assert_eq!(ours.code, 0, "{}", ours.dump());
    assert_eq!(
        ours.stdout.lines().map(str::to_owned).collect::<Vec<_>>(),
        root.dkms(&["status"])
            .stdout
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>(),
        "dkms-hook status differs from dkms status"
    );
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn two_module_packages_arrive_then_a_kernel_and_a_module_leave() {
    let _ = NEEDS;
    let root = TestRoot::new();
    let (k1, k2) = two_kernels(&root);
    let vpoll = root.add_real_source("vpoll");
    let acpi = root.add_real_source("acpi-call");
    let targets = format!("usr/src/{vpoll}/dkms.conf\nusr/src/{acpi}/dkms.conf\n");

    let out = root.run_merged(&["install"], &targets);
    assert_eq!(out.code, 0, "{}", out.dump());
    let vv = vpoll.trim_start_matches("vpoll-");
    let av = acpi.trim_start_matches("acpi-call-");
    let mut want = vec![
        status_line(&format!("acpi-call/{av}"), &k1, "installed"),
        status_line(&format!("acpi-call/{av}"), &k2, "installed"),
        status_line(&format!("vpoll/{vv}"), &k1, "installed"),
        status_line(&format!("vpoll/{vv}"), &k2, "installed"),
    ];
    want.sort();
    assert_eq!(root.dkms_status(), want);
    for k in [&k1, &k2] {
        assert_eq!(root.installed_kos(k), ["acpi_call.ko", "vpoll.ko"], "{k}");
        for p in root.installed_ko_paths(k) {
            assert_eq!(&vermagic_release(root.kernel_dir(k).join(&p)), k, "{p}");
        }
        // depmod ran for the kernel, and knows the modules.
        let dep = root.read_file(root.kernel_dir(k).join("modules.dep"));
        assert!(dep.contains("vpoll.ko"), "{k}: {dep}");
    }
    // Every job has a start and an end line, under pacman's plain output.
    assert_eq!(out.combined.matches("START").count(), 4, "{}", out.combined);
    assert_status_matches_dkms(&root);

    // Running again changes nothing: every pair is already installed.
    let again = root.run(&["install"], &targets);
    assert_eq!(again.code, 0, "{}", again.dump());
    assert_eq!(
        again.combined.matches("START").count(),
        0,
        "{}",
        again.combined
    );
    assert!(
        again.combined.contains("already installed"),
        "{}",
        again.combined
    );

    // The newer kernel goes away: everything built for it goes, the other kernel is untouched.
    let k1_before = root.installed_ko_paths(&k1);
    let out = root.run_merged(
        &["remove"],
        &format!("usr/lib/modules/{k2}/modules.order\n"),
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(root.installed_kos(&k2), Vec::<String>::new());
    assert_eq!(root.installed_ko_paths(&k1), k1_before);
    assert!(
        !root.kernel_dir(&k2).join("updates").exists(),
        "dkms's empty directories stay behind"
    );
    want.retain(|l| !l.contains(&k2));
    assert_eq!(root.dkms_status(), want);

    // The vpoll package goes away: removed from every kernel and unregistered.
    let out = root.run_merged(&["remove"], &format!("usr/src/{vpoll}/dkms.conf\n"));
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(!root.dkms_tree().join("vpoll").join(vv).exists());
    assert_eq!(root.installed_kos(&k1), ["acpi_call.ko"]);
    want.retain(|l| !l.starts_with("vpoll/"));
    assert_eq!(root.dkms_status(), want);
    assert_status_matches_dkms(&root);
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_new_kernel_gets_every_autoinstall_module() {
    let root = TestRoot::new();
    let ks = kernels();
    let (k1, k2) = (ks[ks.len() - 2].clone(), ks[ks.len() - 1].clone());
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
    assert_status_matches_dkms(&root);
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn build_depends_order_lets_a_module_link_against_another() {
    let root = TestRoot::new();
    let (k1, k2) = two_kernels(&root);
    root.add_fixture("dkmshook-exporter-1.0");
    root.add_fixture("dkmshook-importer-1.0");
    // The importer is listed first and would start first without its BUILD_DEPENDS: its modpost
    // then fails on the exporter's undefined symbol.
    let out = root.run_merged(
        &["-j", "2", "install"],
        "usr/src/dkmshook-importer-1.0/dkms.conf\nusr/src/dkmshook-exporter-1.0/dkms.conf\n",
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    for k in [&k1, &k2] {
        assert_eq!(
            root.installed_kos(k),
            ["dkmshook_exporter.ko", "dkmshook_importer.ko"],
            "{k}"
        );
    }
    // The importer really uses the exporter's symbol.
    let dep = root.read_file(root.kernel_dir(&k1).join("modules.dep"));
    let line = dep
        .lines()
        .find(|l| l.contains("dkmshook_importer.ko:"))
        .unwrap_or_default();
    assert!(line.contains("dkmshook_exporter.ko"), "modules.dep: {dep}");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_failed_dependency_skips_its_dependent_and_names_it() {
    let root = TestRoot::new();
    let ks = kernels();
    let k = ks.last().unwrap().clone();
    root.add_kernel(&k);
    root.add_fixture("dkmshook-exporter-1.0");
    root.add_fixture("dkmshook-importer-1.0");
    root.add_fixture("dkmshook-plain-1.0");
    // Break the exporter's code: the importer must be skipped, not built and not attempted.
    let c = root.join("usr/src/dkmshook-exporter-1.0");
    let src = std::fs::read_dir(&c)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "c"))
        .unwrap();
    std::fs::write(&src, "this is not C;\n").unwrap();
    let out = root.run_merged(&["install"], "usr/src/dkmshook-importer-1.0/dkms.conf\nusr/src/dkmshook-exporter-1.0/dkms.conf\nusr/src/dkmshook-plain-1.0/dkms.conf\n");
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.combined.contains("needs dkmshook-exporter/1.0"),
        "{}",
        out.combined
    );
    assert_eq!(root.installed_kos(&k), ["dkmshook_plain.ko"]);
    assert!(
        !root
            .dkms_tree()
            .join("dkmshook-importer/1.0")
            .join(&k)
            .exists(),
        "the importer was attempted"
    );
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_module_that_fails_to_compile_fails_loudly_and_alone() {
    let root = TestRoot::new();
    let (k1, k2) = two_kernels(&root);
    root.add_fixture("dkmshook-broken-1.0");
    root.add_fixture("dkmshook-plain-1.0");
    let out = root.run_merged(&[], "");
    assert_eq!(out.code, 1, "{}", out.dump());
    for k in [&k1, &k2] {
        assert_eq!(root.installed_kos(k), ["dkmshook_plain.ko"], "{k}");
    }
    let text = &out.combined;
    // The compiler's own error line, and the whole log kept where the next run will not delete it.
    assert!(text.contains("error:"), "{text}");
    assert!(text.contains("dkmshook-broken/1.0"), "{text}");
    assert!(text.contains("make failed (dkms exit 10)"), "{text}");
    let log_line = text
        .lines()
        .find(|l| l.contains("dkms-hook/dkmshook-broken-1.0_"))
        .unwrap_or_else(|| panic!("no log path: {text}"));
    let log_path = log_line.split_whitespace().last().unwrap();
    let log = root.read_file(log_path);
    assert!(log.contains("error:"), "{log}");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_dkms_conf_with_a_syntax_error_fails_that_module_alone() {
    let root = TestRoot::new();
    let (k1, _k2) = two_kernels(&root);
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
    let (k1, k2) = two_kernels(&root);
    root.add_fixture("dkmshook-plain-1.0");
    let conf = root.join("usr/src/dkmshook-plain-1.0/dkms.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "BUILD_EXCLUSIVE_KERNEL=\"^{}$\"\n",
        regex_escape(&k1)
    ));
    std::fs::write(&conf, text).unwrap();
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
    let (k1, k2) = two_kernels(&root);
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
    let (k1, k2) = two_kernels(&root);
    root.add_fixture("dkmshook-exporter-1.0");
    root.add_fixture("dkmshook-importer-1.0");
    root.add_fixture("dkmshook-badconf-1.0");
    let plain = root.join("usr/src/dkmshook-plain-1.0");
    root.add_fixture("dkmshook-plain-1.0");
    let conf = plain.join("dkms.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "BUILD_EXCLUSIVE_KERNEL=\"^{}$\"\n",
        regex_escape(&k1)
    ));
    std::fs::write(&conf, text).unwrap();
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
        common::snapshot_diff(&before, &root.snapshot()),
        Vec::<String>::new()
    );
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn removing_a_kernel_whose_headers_and_modules_dep_are_gone_still_cleans_up() {
    let root = TestRoot::new();
    let (k1, k2) = two_kernels(&root);
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
    let (_k1, _k2) = two_kernels(&root);
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
    let out = common::run_command(drop, "usr/src/dkmshook-plain-1.0/dkms.conf\n");
    assert_eq!(out.code, 2, "{}", out.dump());
    assert!(out.stderr.contains("needs root"), "{}", out.dump());
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        common::BIN,
        "--root",
    ])
    .arg(root.path())
    .args(["--dry-run", "install"]);
    let out = common::run_command(cmd, "usr/src/dkmshook-plain-1.0/dkms.conf\n");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.stdout.contains("build  dkmshook-plain/1.0"),
        "{}",
        out.dump()
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
