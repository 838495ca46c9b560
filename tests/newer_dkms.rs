//! The engine driving a newer dkms than Debian 12's 3.0.10: Debian 13's dkms 3.2.2 (close to the
//! 3.3/3.4 Arch ships), fetched and extracted by tests/setup.sh into tests/.cache/dkms-trixie and
//! chosen through `DKMS_HOOK_DKMS`. dkms changed a lot between 3.0 and 3.2 (terser output, the
//! headers looked up under the install tree, a refusal to build a module whose BUILD_DEPENDS are
//! not installed, other status wording), and Arch users run the newer one. Each test works in its
//! own `--root`, and the same 3.2.2 script's `status` on the same trees is the referee.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{kernels, repo_dir, run_command, vermagic_release, RunOutput, TestRoot};

/// The dkms script of Debian 13's package, extracted by tests/setup.sh.
fn newer_dkms() -> PathBuf {
    let path = repo_dir().join("tests/.cache/dkms-trixie/usr/sbin/dkms");
    assert!(
        path.is_file(),
        "{}: missing: run tests/setup.sh as root (or the whole suite with tests/run)",
        path.display()
    );
    path
}

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

/// dkms-hook on `root` with `DKMS_HOOK_DKMS` set to the newer dkms, stdout and stderr on one pipe
/// as under pacman (`combined` is what pacman would show).
fn hook(root: &TestRoot, args: &[&str], stdin: &str) -> RunOutput {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exec \"$0\" \"$@\" 2>&1", common::BIN, "--root"])
        .arg(root.path())
        .args(args)
        .env("DKMS_HOOK_DKMS", newer_dkms());
    run_command(cmd, stdin)
}

/// The newer dkms itself on `root`'s trees. With `-k K` among `args`, K's headers in the root are
/// passed as --kernelsourcedir, as the engine does.
fn newer(root: &TestRoot, args: &[&str]) -> RunOutput {
    let mut cmd = Command::new(newer_dkms());
    cmd.args(args);
    cmd.arg("--sourcetree").arg(root.source_tree());
    cmd.arg("--dkmstree").arg(root.dkms_tree());
    cmd.arg("--installtree").arg(root.install_tree());
    if let Some(i) = args.iter().position(|a| *a == "-k") {
        if let Some(kernel) = args.get(i + 1) {
            cmd.arg("--kernelsourcedir")
                .arg(root.kernel_dir(kernel).join("build"));
        }
    }
    run_command(cmd, "")
}

/// The newer dkms's `status` on `root`'s trees: its lines in its own order.
fn newer_status_lines(root: &TestRoot) -> Vec<String> {
    let out = newer(root, &["status"]);
    assert_eq!(out.code, 0, "dkms status (newer): {}", out.dump());
    out.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// The referee: the newer dkms's `status` on `root`'s trees, lines sorted.
fn newer_status(root: &TestRoot) -> Vec<String> {
    let mut lines = newer_status_lines(root);
    lines.sort();
    lines
}

/// `dkms-hook status`, with `DKMS_HOOK_DKMS` naming the newer dkms, must print what that dkms's
/// `status` prints, line for line and in the same order.
fn assert_status_matches_newer_dkms(root: &TestRoot) {
    let ours = hook(root, &["status"], "");
    assert_eq!(ours.code, 0, "{}", ours.dump());
    assert_eq!(
        ours.stdout.lines().map(str::to_owned).collect::<Vec<_>>(),
        newer_status_lines(root),
        "dkms-hook status (DKMS_HOOK_DKMS={}) differs from that dkms's status",
        newer_dkms().display()
    );
}

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

/// The make.log dkms kept for a built module (`M/V/K/ARCH/log/make.log`).
fn make_log(root: &TestRoot, module: &str, version: &str, kernel: &str) -> String {
    root.read_file(
        root.dkms_tree()
            .join(module)
            .join(version)
            .join(kernel)
            .join("x86_64/log/make.log"),
    )
}

/// Proves the module was built by the newer dkms, not by the machine's: dkms 3.1+ names itself,
/// with its version, in the first line of make.log (3.0.10 writes `DKMS make.log for ...`).
fn assert_built_by_newer_dkms(root: &TestRoot, module: &str, version: &str, kernel: &str) {
    let log = make_log(root, module, version, kernel);
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

fn assert_modules_match_kernels(root: &TestRoot, kernels: &[&String]) {
    for k in kernels {
        for p in root.installed_ko_paths(k) {
            assert_eq!(&vermagic_release(root.kernel_dir(k).join(&p)), *k, "{p}");
        }
    }
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn two_modules_arrive_for_two_kernels_then_a_kernel_and_a_module_leave() {
    let root = TestRoot::new();
    let (k1, k2) = two_kernels(&root);
    let vpoll = root.add_real_source("vpoll");
    root.add_fixture("dkmshook-plain-1.0");
    let vv = vpoll.trim_start_matches("vpoll-").to_owned();
    let targets = format!("usr/src/{vpoll}/dkms.conf\nusr/src/dkmshook-plain-1.0/dkms.conf\n");

    let out = hook(&root, &["install"], &targets);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(out.combined.matches("START").count(), 4, "{}", out.combined);
    let mut want = vec![
        status_line("dkmshook-plain/1.0", &k1, "installed"),
        status_line("dkmshook-plain/1.0", &k2, "installed"),
        status_line(&format!("vpoll/{vv}"), &k1, "installed"),
        status_line(&format!("vpoll/{vv}"), &k2, "installed"),
    ];
    want.sort();
    assert_eq!(newer_status(&root), want);
    for k in [&k1, &k2] {
        assert_eq!(
            root.installed_kos(k),
            ["dkmshook_plain.ko", "vpoll.ko"],
            "{k}"
        );
        assert_built_by_newer_dkms(&root, "vpoll", &vv, k);
        assert_built_by_newer_dkms(&root, "dkmshook-plain", "1.0", k);
        let dep = root.read_file(root.kernel_dir(k).join("modules.dep"));
        assert!(dep.contains("vpoll.ko"), "{k}: {dep}");
    }
    assert_modules_match_kernels(&root, &[&k1, &k2]);
    assert_status_matches_newer_dkms(&root);

    // Again: every pair is already installed, nothing is rebuilt.
    let again = hook(&root, &["install"], &targets);
    assert_eq!(again.code, 0, "{}", again.dump());
    assert_eq!(
        again.combined.matches("START").count(),
        0,
        "{}",
        again.combined
    );

    // The newer kernel goes away: everything built for it goes, the other kernel is untouched.
    let k1_before = root.installed_ko_paths(&k1);
    let out = hook(
        &root,
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
    for m in [format!("vpoll/{vv}"), "dkmshook-plain/1.0".to_owned()] {
        assert!(
            !root.dkms_tree().join(&m).join(&k2).exists(),
            "{m}: its {k2} directory stays in the dkms tree"
        );
    }
    want.retain(|l| !l.contains(&k2));
    assert_eq!(newer_status(&root), want);

    // The vpoll package goes away: removed from every kernel and unregistered.
    let out = hook(&root, &["remove"], &format!("usr/src/{vpoll}/dkms.conf\n"));
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(!root.dkms_tree().join("vpoll").join(&vv).exists());
    assert_eq!(root.installed_kos(&k1), ["dkmshook_plain.ko"]);
    let dep = root.read_file(root.kernel_dir(&k1).join("modules.dep"));
    assert!(!dep.contains("vpoll.ko"), "depmod did not run: {dep}");
    want.retain(|l| !l.starts_with("vpoll/"));
    assert_eq!(newer_status(&root), want);
    assert_status_matches_newer_dkms(&root);
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn build_depends_pair_builds_in_order_where_the_newer_dkms_refuses_any_other() {
    let root = TestRoot::new();
    let (k1, k2) = two_kernels(&root);
    root.add_fixture("dkmshook-exporter-1.0");
    root.add_fixture("dkmshook-importer-1.0");

    // The premise: the newer dkms itself refuses the importer while the exporter is not installed.
    let bare = TestRoot::new();
    bare.add_kernel(&k1);
    bare.add_fixture("dkmshook-importer-1.0");
    let add = newer(&bare, &["add", "-m", "dkmshook-importer", "-v", "1.0"]);
    assert_eq!(add.code, 0, "{}", add.dump());
    let refused = newer(
        &bare,
        &[
            "install",
            "-m",
            "dkmshook-importer",
            "-v",
            "1.0",
            "-k",
            &k1,
            "--no-depmod",
        ],
    );
    assert_eq!(refused.code, 13, "{}", refused.dump());
    assert!(
        refused.combined.contains("missing BUILD_DEPENDS"),
        "{}",
        refused.dump()
    );

    // The importer is listed first and two jobs may run at once: the engine must still install the
    // exporter for a kernel before it starts the importer for that kernel.
    let out = hook(
        &root,
        &["-j", "2", "install"],
        "usr/src/dkmshook-importer-1.0/dkms.conf\nusr/src/dkmshook-exporter-1.0/dkms.conf\n",
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(!out.combined.contains("BUILD_DEPENDS"), "{}", out.combined);
    for k in [&k1, &k2] {
        assert_eq!(
            root.installed_kos(k),
            ["dkmshook_exporter.ko", "dkmshook_importer.ko"],
            "{k}"
        );
        assert_built_by_newer_dkms(&root, "dkmshook-importer", "1.0", k);
        // The importer really links against the exporter's symbol.
        let dep = root.read_file(root.kernel_dir(k).join("modules.dep"));
        let line = dep
            .lines()
            .find(|l| l.contains("dkmshook_importer.ko:"))
            .unwrap_or_default();
        assert!(
            line.contains("dkmshook_exporter.ko"),
            "{k}: modules.dep: {dep}"
        );
    }
    assert_modules_match_kernels(&root, &[&k1, &k2]);
    let mut want = vec![
        status_line("dkmshook-exporter/1.0", &k1, "installed"),
        status_line("dkmshook-exporter/1.0", &k2, "installed"),
        status_line("dkmshook-importer/1.0", &k1, "installed"),
        status_line("dkmshook-importer/1.0", &k2, "installed"),
    ];
    want.sort();
    assert_eq!(newer_status(&root), want);
    assert_status_matches_newer_dkms(&root);

    // Both packages go at once: removed everywhere and unregistered.
    let out = hook(
        &root,
        &["remove"],
        "usr/src/dkmshook-exporter-1.0/dkms.conf\nusr/src/dkmshook-importer-1.0/dkms.conf\n",
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    for k in [&k1, &k2] {
        assert_eq!(root.installed_kos(k), Vec::<String>::new(), "{k}");
    }
    assert_eq!(newer_status(&root), Vec::<String>::new());
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_failed_dependency_skips_its_dependent_under_the_newer_dkms() {
    let root = TestRoot::new();
    let k = kernels().last().unwrap().clone();
    root.add_kernel(&k);
    root.add_fixture("dkmshook-exporter-1.0");
    root.add_fixture("dkmshook-importer-1.0");
    root.add_fixture("dkmshook-plain-1.0");
    std::fs::write(
        root.join("usr/src/dkmshook-exporter-1.0/dkmshook_exporter.c"),
        "this is not C;\n",
    )
    .unwrap();
    let out = hook(
        &root,
        &["install"],
        "usr/src/dkmshook-importer-1.0/dkms.conf\nusr/src/dkmshook-exporter-1.0/dkms.conf\n\
         usr/src/dkmshook-plain-1.0/dkms.conf\n",
    );
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.combined.contains("needs dkmshook-exporter/1.0"),
        "{}",
        out.combined
    );
    // Skipped by the engine, not refused by dkms (exit 13).
    assert!(!out.combined.contains("dkms exit 13"), "{}", out.combined);
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
fn a_compile_failure_under_the_newer_dkms_shows_the_compiler_errors() {
    let root = TestRoot::new();
    let (k1, k2) = two_kernels(&root);
    root.add_fixture("dkmshook-broken-1.0");
    root.add_fixture("dkmshook-plain-1.0");
    let out = hook(&root, &[], "");
    assert_eq!(out.code, 1, "{}", out.dump());
    for k in [&k1, &k2] {
        assert_eq!(root.installed_kos(k), ["dkmshook_plain.ko"], "{k}");
    }
    let text = &out.combined;
    for k in [&k1, &k2] {
        assert!(
            text.contains(&format!(
                "dkmshook-broken/1.0 for {k}: make failed (dkms exit 10)"
            )),
            "{text}"
        );
    }
    // gcc's own error line, from make.log: the newer dkms prints only "Building module(s)...(bad
    // exit status: 2)" and a pointer to the log.
    assert!(
        text.lines()
            .any(|l| l.contains("error:") && l.contains("dkmshook_no_such_symbol")),
        "{text}"
    );
    let log_line = text
        .lines()
        .find(|l| l.contains("dkms-hook/dkmshook-broken-1.0_"))
        .unwrap_or_else(|| panic!("no log path: {text}"));
    let log_path = log_line.split_whitespace().last().unwrap();
    let log = root.read_file(log_path);
    assert!(log.contains("dkmshook_no_such_symbol"), "{log}");
    assert_eq!(
        newer_status(&root),
        [
            "dkmshook-broken/1.0: added".to_owned(),
            status_line("dkmshook-plain/1.0", &k1, "installed"),
            status_line("dkmshook-plain/1.0", &k2, "installed"),
        ]
    );
    assert_status_matches_newer_dkms(&root);
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
    let root = TestRoot::new();
    let ks = kernels();
    let (k1, k2) = (ks[ks.len() - 2].clone(), ks[ks.len() - 1].clone());
    root.add_kernel(&k1);
    root.add_fixture("dkmshook-exporter-1.0");
    root.add_fixture("dkmshook-importer-1.0");
    let conf = root.join("usr/src/dkmshook-importer-1.0/dkms.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    // A dependent that takes a few seconds to build, as real ones do, widens the window.
    let slow = text.replace("MAKE[0]=\"make ", "MAKE[0]=\"sleep 4; make ");
    assert_ne!(slow, text, "the importer's MAKE changed: update this test");
    std::fs::write(&conf, format!("{slow}BUILD_DEPENDS_REBUILD=\"yes\"\n")).unwrap();
    let out = hook(
        &root,
        &["install"],
        "usr/src/dkmshook-exporter-1.0/dkms.conf\nusr/src/dkmshook-importer-1.0/dkms.conf\n",
    );
    assert_eq!(out.code, 0, "{}", out.dump());

    // The transaction: k2 arrives, dkmshook-exporter 1.0 -> 1.1.
    root.add_kernel(&k2);
    let v11 = root.source_tree().join("dkmshook-exporter-1.1");
    common::copy_tree(&root.source_tree().join("dkmshook-exporter-1.0"), &v11);
    let text = std::fs::read_to_string(v11.join("dkms.conf")).unwrap();
    std::fs::write(
        v11.join("dkms.conf"),
        text.replace("PACKAGE_VERSION=\"1.0\"", "PACKAGE_VERSION=\"1.1\""),
    )
    .unwrap();
    let out = hook(
        &root,
        &["remove"],
        "usr/src/dkmshook-exporter-1.0/dkms.conf\n",
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    std::fs::remove_dir_all(root.source_tree().join("dkmshook-exporter-1.0")).unwrap();
    let out = hook(
        &root,
        &["-j", "2", "install"],
        &format!(
            "usr/lib/modules/{k2}/build/include/\nusr/lib/modules/{k2}/modules.order\n\
             usr/src/dkmshook-exporter-1.1/dkms.conf\n"
        ),
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    let mut want = vec![
        status_line("dkmshook-exporter/1.1", &k1, "installed"),
        status_line("dkmshook-exporter/1.1", &k2, "installed"),
        status_line("dkmshook-importer/1.0", &k1, "installed"),
        status_line("dkmshook-importer/1.0", &k2, "installed"),
    ];
    want.sort();
    assert_eq!(newer_status(&root), want);
    for k in [&k1, &k2] {
        assert_eq!(
            root.installed_kos(k),
            ["dkmshook_exporter.ko", "dkmshook_importer.ko"],
            "{k}"
        );
    }
    assert_modules_match_kernels(&root, &[&k1, &k2]);
}

/// `dkms-hook status` speaks the dialect of the dkms it drives: 3.1.3 reworded status's warnings,
/// so a modified installed module reads differently under 3.0.10 and 3.2.2.
#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn status_speaks_the_newer_dkms_dialect() {
    let root = TestRoot::new();
    let (k1, k2) = two_kernels(&root);
    root.add_fixture("dkmshook-plain-1.0");
    let out = hook(
        &root,
        &["install"],
        "usr/src/dkmshook-plain-1.0/dkms.conf\n",
    );
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
    assert_eq!(newer_status(&root), want);
    assert_status_matches_newer_dkms(&root);
}
