//! Proves that the test fixtures and helpers do what the engine's tests rely
//! on, using real dkms alone (no dkms-hook): the importer's build fails until
//! the exporter is installed for the same kernel, the broken module fails
//! with gcc errors and exit 10, the bad dkms.conf is rejected, exclusion and
//! the wrong-kernel build behave, and `dkms status` works as the referee.
//! The helpers that need nothing installed are tested without root.

use crate::common::{kernels, snapshot_diff, vermagic_release, RunOutput, TestRoot};

const ARCH: &str = "x86_64";

/// A root with every kernel the machine has headers for (oldest first) and
/// the given fixtures.
fn root_with(fixtures: &[&str]) -> (TestRoot, Vec<String>) {
    let root = TestRoot::new();
    let ks = kernels();
    for k in &ks {
        root.add_kernel(k);
    }
    for f in fixtures {
        root.add_fixture(f);
    }
    (root, ks)
}

fn assert_ok(out: &RunOutput, what: &str) {
    assert_eq!(out.code, 0, "{what}: {}", out.dump());
}

fn installed_line(module: &str, kernel: &str) -> String {
    format!("{module}, {kernel}, {ARCH}: installed")
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn importer_fails_before_exporter_is_installed_and_builds_after() {
    let (root, ks) = root_with(&["dkmshook-exporter-1.0", "dkmshook-importer-1.0"]);
    let k = &ks[0];

    let out = root.dkms(&["build", "-m", "dkmshook-importer", "-v", "1.0", "-k", k]);
    assert_eq!(out.code, 10, "importer without exporter: {}", out.dump());
    let log = root.read_file("var/lib/dkms/dkmshook-importer/1.0/build/make.log");
    assert!(
        log.contains("\"dkmshook_exported_answer\"") && log.contains("undefined!"),
        "make.log does not name the undefined symbol:\n{log}"
    );

    // Built but not installed is not enough: the importer reads the
    // exporter's symbols through its kernel-K-ARCH link.
    let out = root.dkms(&["build", "-m", "dkmshook-exporter", "-v", "1.0", "-k", k]);
    assert_ok(&out, "exporter build");
    let symvers = format!("var/lib/dkms/dkmshook-exporter/1.0/{k}/{ARCH}/Module.symvers");
    assert!(
        root.read_file(&symvers)
            .contains("dkmshook_exported_answer"),
        "POST_BUILD did not publish the exporter's Module.symvers"
    );
    let out = root.dkms(&["build", "-m", "dkmshook-importer", "-v", "1.0", "-k", k]);
    assert_eq!(
        out.code,
        10,
        "importer with exporter only built: {}",
        out.dump()
    );

    let out = root.dkms(&["install", "-m", "dkmshook-exporter", "-v", "1.0", "-k", k]);
    assert_ok(&out, "exporter install");
    let out = root.dkms(&["install", "-m", "dkmshook-importer", "-v", "1.0", "-k", k]);
    assert_ok(&out, "importer install after exporter");

    assert_eq!(
        root.dkms_status(),
        vec![
            installed_line("dkmshook-exporter/1.0", k),
            installed_line("dkmshook-importer/1.0", k),
        ]
    );
    assert_eq!(
        root.installed_kos(k),
        vec!["dkmshook_exporter.ko", "dkmshook_importer.ko"]
    );
    assert_eq!(
        root.installed_ko_paths(k),
        vec![
            "updates/dkms/dkmshook_exporter.ko",
            "updates/dkms/dkmshook_importer.ko"
        ]
    );
    // The other kernel has nothing: "installed" is per kernel.
    assert!(root.installed_kos(&ks[1]).is_empty());
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn broken_fails_with_exit_10_and_compiler_errors_in_make_log() {
    let (root, ks) = root_with(&["dkmshook-broken-1.0"]);
    let out = root.dkms(&[
        "install",
        "-m",
        "dkmshook-broken",
        "-v",
        "1.0",
        "-k",
        &ks[0],
    ]);
    assert_eq!(out.code, 10, "{}", out.dump());
    let log = root.read_file("var/lib/dkms/dkmshook-broken/1.0/build/make.log");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("error:")).collect();
    assert!(
        errors.iter().any(|l| l.contains("dkmshook_broken.c")),
        "no gcc error: lines in make.log:\n{log}"
    );
    assert_eq!(root.dkms_status(), vec!["dkmshook-broken/1.0: added"]);
    assert!(root.installed_kos(&ks[0]).is_empty());
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn badconf_is_not_valid_bash_and_dkms_rejects_it() {
    let (root, ks) = root_with(&["dkmshook-badconf-1.0"]);
    let conf = root.join("usr/src/dkmshook-badconf-1.0/dkms.conf");
    let out = crate::common::run_command(
        {
            let mut cmd = std::process::Command::new("bash");
            cmd.arg("-n").arg(&conf);
            cmd
        },
        "",
    );
    assert_ne!(out.code, 0, "bash -n accepted the bad dkms.conf");
    assert!(out.stderr.contains("syntax error"), "{}", out.dump());

    let out = root.dkms(&[
        "install",
        "-m",
        "dkmshook-badconf",
        "-v",
        "1.0",
        "-k",
        &ks[0],
    ]);
    assert_eq!(out.code, 8, "{}", out.dump());
    assert!(root.installed_kos(&ks[0]).is_empty());
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn dkms_status_referee_sees_plain_on_every_kernel() {
    let (root, ks) = root_with(&["dkmshook-plain-1.0"]);
    assert_eq!(root.dkms_status(), Vec::<String>::new());
    for k in &ks {
        let out = root.dkms(&["install", "-m", "dkmshook-plain", "-v", "1.0", "-k", k]);
        assert_ok(&out, "plain install");
        let ko = root.kernel_dir(k).join("updates/dkms/dkmshook_plain.ko");
        assert_eq!(&vermagic_release(&ko), k);
    }
    let mut want: Vec<String> = ks
        .iter()
        .map(|k| installed_line("dkmshook-plain/1.0", k))
        .collect();
    want.sort();
    assert_eq!(root.dkms_status(), want);

    let out = root.dkms(&["remove", "-m", "dkmshook-plain", "-v", "1.0", "-k", &ks[0]]);
    assert_ok(&out, "plain remove");
    assert!(root.installed_kos(&ks[0]).is_empty());
    assert_eq!(root.installed_kos(&ks[1]), vec!["dkmshook_plain.ko"]);
    assert!(!root
        .dkms_status()
        .contains(&installed_line("dkmshook-plain/1.0", &ks[0])));
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn plain_with_build_exclusive_kernel_is_skipped_with_77() {
    let (root, ks) = root_with(&["dkmshook-plain-1.0"]);
    let conf = "usr/src/dkmshook-plain-1.0/dkms.conf";
    let text = root.read_file(conf);
    root.write_file(
        conf,
        format!(
            "{text}BUILD_EXCLUSIVE_KERNEL=\"^{}$\"\n",
            regex_escape(&ks[0])
        ),
    );
    let out = root.dkms(&["install", "-m", "dkmshook-plain", "-v", "1.0", "-k", &ks[1]]);
    assert_eq!(out.code, 77, "{}", out.dump());
    let out = root.dkms(&["install", "-m", "dkmshook-plain", "-v", "1.0", "-k", &ks[0]]);
    assert_ok(&out, "plain install on the allowed kernel");
    assert_eq!(
        root.dkms_status(),
        vec![installed_line("dkmshook-plain/1.0", &ks[0])]
    );
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = ".^$*+?()[]{}|\\".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn wrongkernel_module_carries_the_other_kernels_vermagic() {
    let (root, ks) = root_with(&["dkmshook-wrongkernel-1.0"]);
    let (target, wrong) = (&ks[1], &ks[0]);
    root.write_file("usr/src/dkmshook-wrongkernel-1.0/wrongkernel", wrong);
    let out = root.dkms(&[
        "install",
        "-m",
        "dkmshook-wrongkernel",
        "-v",
        "1.0",
        "-k",
        target,
    ]);
    // dkms itself does not notice.
    assert_ok(&out, "wrongkernel install");
    let ko = root
        .kernel_dir(target)
        .join("updates/dkms/dkmshook_wrongkernel.ko");
    assert_eq!(&vermagic_release(&ko), wrong);
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn real_debian_source_builds_on_both_kernels() {
    let (root, ks) = root_with(&[]);
    let name = root.add_real_source("acpi-call");
    let version = name.strip_prefix("acpi-call-").expect("acpi-call-VERSION");
    for k in &ks {
        let out = root.dkms(&["install", "-m", "acpi-call", "-v", version, "-k", k]);
        assert_ok(&out, "acpi-call install");
        assert_eq!(root.installed_kos(k), vec!["acpi_call.ko"]);
    }
    assert_eq!(root.dkms_status().len(), ks.len());
}

#[test]
#[ignore = "needs tests/setup.sh's downloads: run tests/run"]
fn setup_extracted_every_real_source() {
    let root = TestRoot::new();
    for prefix in [
        "acpi-call",
        "v4l2loopback",
        "vpoll",
        "gost-crypto",
        "tp_smapi",
        "dm-writeboost",
        "ddcci",
        "digimend",
        "openrazer-driver",
    ] {
        let name = root.add_real_source(prefix);
        assert!(
            root.join("usr/src").join(&name).join("dkms.conf").is_file(),
            "{name}: no dkms.conf"
        );
    }
}

// The helpers below need nothing installed: plain `cargo test` runs them.

#[test]
fn snapshot_sees_every_kind_of_change() {
    let root = TestRoot::new();
    root.write_file("usr/src/a-1.0/dkms.conf", "PACKAGE_NAME=a\n");
    std::os::unix::fs::symlink("/nonexistent", root.join("usr/lib/modules/link")).unwrap();
    let before = root.snapshot();
    assert!(snapshot_diff(&before, &root.snapshot()).is_empty());
    assert!(before.contains_key(std::path::Path::new("usr/lib/modules/link")));

    // Same length, other content.
    root.write_file("usr/src/a-1.0/dkms.conf", "PACKAGE_NAME=b\n");
    let changed = root.snapshot();
    assert_eq!(snapshot_diff(&before, &changed).len(), 1);

    root.write_file("var/lib/dkms/new", "");
    std::fs::remove_file(root.join("usr/lib/modules/link")).unwrap();
    let diff = snapshot_diff(&changed, &root.snapshot());
    assert_eq!(
        diff,
        vec!["removed usr/lib/modules/link", "added var/lib/dkms/new"],
        "{diff:#?}"
    );
}

#[test]
fn run_command_keeps_streams_apart_and_passes_stdin() {
    let mut cmd = std::process::Command::new("sh");
    cmd.args([
        "-c",
        "read line; echo \"out $line\"; sleep 0.2; echo err >&2; exit 3",
    ]);
    let out = crate::common::run_command(cmd, "hello\n");
    assert_eq!(out.code, 3);
    assert_eq!(out.stdout, "out hello\n");
    assert_eq!(out.stderr, "err\n");
    assert_eq!(out.combined, "out hello\nerr\n");
}

#[test]
fn version_order_is_numeric() {
    let mut v = vec![
        "6.1.0-56-amd64",
        "6.1.0-9-amd64",
        "6.1.0-55-amd64",
        "6.10.0-1-amd64",
    ];
    v.sort_by(|a, b| crate::common::version_cmp(a, b));
    assert_eq!(
        v,
        [
            "6.1.0-9-amd64",
            "6.1.0-55-amd64",
            "6.1.0-56-amd64",
            "6.10.0-1-amd64"
        ]
    );
}
