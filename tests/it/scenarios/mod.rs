//! Engine scenarios that must hold whichever dkms the engine drives: tests/it/engine.rs runs them
//! on Debian 12's dkms 3.0.10, tests/it/newer_dkms.rs on
//! Debian 13's 3.2.2 (through `DKMS_HOOK_DKMS`). Each takes a fresh [`TestRoot`] set up for its dkms
//! (see [`TestRoot::with_dkms`]), whose same dkms is the referee, and a [`BuiltBy`] check that a
//! module version was built by that dkms and not by another one, so one scenario cannot pass on
//! the wrong engine. What only one dkms does stays in that dkms's test file.

use crate::common::{installed_lines, kernels, status_line, TestRoot};

/// Asserts that `module`/`version` for `kernel` on the root was built by the root's dkms (from
/// its make.log): `(root, module, version, kernel)`.
pub type BuiltBy = fn(&TestRoot, &str, &str, &str);

/// Splits a source directory name, `NAME-VERSION`, at its last dash.
fn name_and_version(dir: &str) -> (&str, &str) {
    dir.rsplit_once('-')
        .unwrap_or_else(|| panic!("{dir}: not NAME-VERSION"))
}

/// Two module packages arrive for two kernels: real Debian vpoll and `other`, a source directory
/// already in the root's usr/src whose module file is `other_ko`. Installing again changes
/// nothing; then the newer kernel goes away, then vpoll does.
pub fn two_packages_arrive_then_a_kernel_and_a_package_leave(
    root: &TestRoot,
    other: &str,
    other_ko: &str,
    built_by: BuiltBy,
) {
    let (k1, k2) = root.two_kernels();
    let vpoll = root.add_real_source("vpoll");
    let (_, vv) = name_and_version(&vpoll);
    let (on, ov) = name_and_version(other);
    let targets = format!("usr/src/{vpoll}/dkms.conf\nusr/src/{other}/dkms.conf\n");

    let out = root.run_merged(&["install"], &targets);
    assert_eq!(out.code, 0, "{}", out.dump());
    // Every job has a start and an end line, under pacman's plain output.
    assert_eq!(out.combined.matches("START").count(), 4, "{}", out.combined);
    let mut want = installed_lines(&[format!("{on}/{ov}"), format!("vpoll/{vv}")], &[&k1, &k2]);
    assert_eq!(root.dkms_status(), want);
    let mut kos = vec![other_ko.to_owned(), "vpoll.ko".to_owned()];
    kos.sort();
    for k in [&k1, &k2] {
        assert_eq!(root.installed_kos(k), kos, "{k}");
        built_by(root, "vpoll", vv, k);
        built_by(root, on, ov, k);
        // depmod ran for the kernel, and knows the modules.
        let dep = root.read_file(root.kernel_dir(k).join("modules.dep"));
        assert!(dep.contains("vpoll.ko"), "{k}: {dep}");
    }
    root.assert_modules_match_kernels(&[&k1, &k2]);
    root.assert_status_matches_dkms();

    // Running again changes nothing: every pair is already installed.
    let again = root.run_merged(&["install"], &targets);
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
    for m in [format!("vpoll/{vv}"), format!("{on}/{ov}")] {
        assert!(
            !root.dkms_tree().join(&m).join(&k2).exists(),
            "{m}: its {k2} directory stays in the dkms tree"
        );
    }
    want.retain(|l| !l.contains(&k2));
    assert_eq!(root.dkms_status(), want);

    // The vpoll package goes away: removed from every kernel and unregistered.
    let out = root.run_merged(&["remove"], &format!("usr/src/{vpoll}/dkms.conf\n"));
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(!root.dkms_tree().join("vpoll").join(vv).exists());
    assert_eq!(root.installed_kos(&k1), [other_ko]);
    let dep = root.read_file(root.kernel_dir(&k1).join("modules.dep"));
    assert!(!dep.contains("vpoll.ko"), "depmod did not run: {dep}");
    want.retain(|l| !l.starts_with("vpoll/"));
    assert_eq!(root.dkms_status(), want);
    root.assert_status_matches_dkms();
}

/// A BUILD_DEPENDS pair arrives for two kernels, the dependent (importer) listed first and two
/// jobs allowed at once: the engine installs the exporter for a kernel before it starts the
/// importer for that kernel, so the importer links against the exporter's symbol. Then both
/// packages go at once.
pub fn build_depends_pair_builds_in_order(root: &TestRoot, built_by: BuiltBy) {
    let (k1, k2) = root.two_kernels();
    root.add_fixture("dkmshook-exporter-1.0");
    root.add_fixture("dkmshook-importer-1.0");
    // Started first without its BUILD_DEPENDS, the importer's modpost fails on the exporter's
    // undefined symbol (and dkms 3.2 refuses to build it at all).
    let out = root.run_merged(
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
        built_by(root, "dkmshook-importer", "1.0", k);
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
    root.assert_modules_match_kernels(&[&k1, &k2]);
    assert_eq!(
        root.dkms_status(),
        installed_lines(
            &["dkmshook-exporter/1.0", "dkmshook-importer/1.0"],
            &[&k1, &k2]
        )
    );
    root.assert_status_matches_dkms();

    // Both packages go at once: removed everywhere and unregistered.
    let out = root.run_merged(
        &["remove"],
        "usr/src/dkmshook-exporter-1.0/dkms.conf\nusr/src/dkmshook-importer-1.0/dkms.conf\n",
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    for k in [&k1, &k2] {
        assert_eq!(root.installed_kos(k), Vec::<String>::new(), "{k}");
    }
    assert_eq!(root.dkms_status(), Vec::<String>::new());
}

/// The exporter of a BUILD_DEPENDS pair fails to compile: the engine skips the importer (not
/// built, not attempted, and so not refused by dkms 3.2's own check, exit 13) and names the
/// dependency, while an unrelated module installs.
pub fn a_failed_dependency_skips_its_dependent(root: &TestRoot) {
    let k = kernels().last().unwrap().clone();
    root.add_kernel(&k);
    root.add_fixture("dkmshook-exporter-1.0");
    root.add_fixture("dkmshook-importer-1.0");
    root.add_fixture("dkmshook-plain-1.0");
    // Break the exporter's code.
    let c = root.join("usr/src/dkmshook-exporter-1.0");
    let src = std::fs::read_dir(&c)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "c"))
        .unwrap();
    std::fs::write(&src, "this is not C;\n").unwrap();
    let out = root.run_merged(
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

/// A module that fails to compile, on two kernels, next to one that builds: the failure is loud
/// (gcc's own error line from make.log, whatever dkms itself printed, and the path of the whole
/// log kept where the next run will not delete it) and alone (the other module installs).
pub fn a_compile_failure_fails_loudly_and_alone(root: &TestRoot) {
    let (k1, k2) = root.two_kernels();
    root.add_fixture("dkmshook-broken-1.0");
    root.add_fixture("dkmshook-plain-1.0");
    let out = root.run_merged(&[], "");
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
    // dkms 3.2 prints only "Building module(s)...(bad exit status: 2)" and a pointer to the log.
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
    assert!(log.contains("error:"), "{log}");
    assert!(log.contains("dkmshook_no_such_symbol"), "{log}");
    assert_eq!(
        root.dkms_status(),
        [
            "dkmshook-broken/1.0: added".to_owned(),
            status_line("dkmshook-plain/1.0", &k1, "installed"),
            status_line("dkmshook-plain/1.0", &k2, "installed"),
        ]
    );
    root.assert_status_matches_dkms();
}
