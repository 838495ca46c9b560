//! `dkms-hook status` against real `dkms status`: real modules built and installed by real dkms
//! into a private root for two kernels, in every state status reports (installed, built but not
//! installed, added only, several versions of one module, a tampered installed copy, a saved
//! original module, a built directory missing its module, a dangling source link), then both
//! outputs compared line for line, order included. The `status` of every newer dkms tests/setup.sh
//! made available (Debian 13's 3.2.2, and 3.4.3 when built from its tarball), or of the one
//! `DKMSHOOK_NEWER_DKMS` names, is held to as well, each in its own dialect.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::TestRoot;
use dkms_hook::status;
use dkms_hook::system::trees::Trees;

/// Copies the `dkmshook-plain-1.0` fixture to `NAME-VERSION` with PACKAGE_NAME and
/// PACKAGE_VERSION changed (the built module keeps its name, dkmshook_plain).
fn add_variant(root: &TestRoot, name: &str, version: &str) {
    let from = crate::common::fixtures_dir().join("dkmshook-plain-1.0");
    let to = root.source_tree().join(format!("{name}-{version}"));
    crate::common::copy_tree(&from, &to);
    let conf = fs::read_to_string(to.join("dkms.conf")).unwrap();
    let conf = conf
        .replace(
            "PACKAGE_NAME=\"dkmshook-plain\"",
            &format!("PACKAGE_NAME=\"{name}\""),
        )
        .replace(
            "PACKAGE_VERSION=\"1.0\"",
            &format!("PACKAGE_VERSION=\"{version}\""),
        );
    fs::write(to.join("dkms.conf"), conf).unwrap();
}

fn dkms_ok(root: &TestRoot, args: &[&str]) {
    let out = root.dkms(args);
    assert_eq!(out.code, 0, "dkms {args:?}: {}", out.dump());
}

fn ours(root: &TestRoot) -> Vec<String> {
    let trees = Trees::load(root.path()).unwrap();
    status::lines(&trees)
}

/// The binary's `status`, once main.rs dispatches it (`--help` lists it).
fn binary_status(root: &TestRoot) -> Option<Vec<String>> {
    let help = std::process::Command::new(crate::common::BIN)
        .arg("--help")
        .output()
        .ok()?;
    if !String::from_utf8_lossy(&help.stdout).contains("status") {
        return None;
    }
    let out = root.run(&["status"], "");
    assert_eq!(out.code, 0, "dkms-hook status: {}", out.dump());
    Some(out.stdout.lines().map(str::to_owned).collect())
}

/// The newer dkms versions to hold the output to as well, whose format differs from 3.0.10's: the
/// one `DKMSHOOK_NEWER_DKMS` names, else every one tests/setup.sh made available.
fn newer_dkms() -> Vec<PathBuf> {
    match std::env::var_os("DKMSHOOK_NEWER_DKMS") {
        Some(path) => vec![path.into()],
        None => crate::common::newer_dkms_programs(),
    }
}

fn assert_same(root: &TestRoot, what: &str) -> Vec<String> {
    let want = root.dkms_status_lines();
    let got = ours(root);
    assert_eq!(got, want, "{what}: status::lines differs from dkms status");
    for program in newer_dkms() {
        let newer = root.dkms_status_lines_as(&program);
        let version = status::script_version(&program).expect("version of the newer dkms");
        let trees = Trees::load(root.path()).unwrap();
        let got = status::report(&trees, &status::Flavour::new(version)).lines;
        assert_eq!(got, newer, "{what}: status differs from dkms {version:?}");
    }
    if let Some(bin) = binary_status(root) {
        assert_eq!(
            bin, want,
            "{what}: dkms-hook status differs from dkms status"
        );
    }
    want
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn status_matches_real_dkms_in_every_state() {
    let kernels = crate::common::kernels();
    let (k1, k2) = (kernels[0].as_str(), kernels[1].as_str());
    let root = TestRoot::new();
    root.add_kernel(k1);
    root.add_kernel(k2);

    // An empty tree prints nothing, in both.
    assert!(assert_same(&root, "empty tree").is_empty());

    root.add_fixture("dkmshook-plain-1.0");
    root.add_fixture("dkmshook-exporter-1.0");
    add_variant(&root, "dkmshook-plain", "2.0");
    add_variant(&root, "dkmshook-plain", "10.0");
    // Names that sort differently as names and as paths ('-' < '/').
    add_variant(&root, "dkmshook-plain-b", "1.0");
    add_variant(&root, "dkmshook-plai", "1.0");

    // Installed on one kernel, built but not installed on the other.
    dkms_ok(&root, &["install", "dkmshook-plain/1.0", "-k", k1]);
    dkms_ok(&root, &["build", "dkmshook-plain/1.0", "-k", k2]);
    // A second version of the same module: added only; another one built for k2 only.
    dkms_ok(&root, &["add", "dkmshook-plain/2.0"]);
    dkms_ok(&root, &["build", "dkmshook-plain/10.0", "-k", k2]);
    dkms_ok(&root, &["add", "dkmshook-plain-b/1.0"]);
    dkms_ok(&root, &["add", "dkmshook-plai/1.0"]);
    // Installed on both kernels.
    dkms_ok(&root, &["install", "dkmshook-exporter/1.0", "-k", k1]);
    dkms_ok(&root, &["install", "dkmshook-exporter/1.0", "-k", k2]);

    let lines = assert_same(&root, "built, installed and added");
    let mut states: Vec<&str> = lines.iter().filter_map(|l| l.rsplit(": ").next()).collect();
    states.sort();
    states.dedup();
    assert_eq!(states, ["added", "built", "installed"], "{lines:#?}");

    // The installed copy no longer matches the built module (a byte appended).
    let installed = root
        .kernel_dir(k2)
        .join("updates/dkms/dkmshook_exporter.ko");
    let mut bytes = fs::read(&installed).unwrap();
    bytes.push(0);
    fs::write(&installed, &bytes).unwrap();
    // An in-tree module was saved by dkms for k1.
    fs::create_dir_all(
        root.dkms_tree()
            .join("dkmshook-exporter/original_module")
            .join(k1)
            .join("x86_64"),
    )
    .unwrap();
    let lines = assert_same(&root, "tampered copy and original module");
    assert!(
        lines.iter().any(|l| l.contains('(')),
        "no warning shown: {lines:#?}"
    );

    // The installed copy is gone altogether.
    fs::remove_file(&installed).unwrap();
    assert_same(&root, "installed copy removed");

    // A built directory whose module file was deleted.
    let built = root
        .dkms_tree()
        .join("dkmshook-plain/10.0")
        .join(k2)
        .join("x86_64/module/dkmshook_plain.ko");
    fs::remove_file(&built).unwrap();
    assert_same(&root, "built module deleted");

    // A version whose source link dangles (its sources were deleted).
    fs::remove_dir_all(root.source_tree().join("dkmshook-plain-b-1.0")).unwrap();
    assert_same(&root, "dangling source link");

    // dkms 3.1.7+ builds into M/V/K/.tmp_ARCH_XXXXXX and moves it into place at the end: a build
    // interrupted there (the machine lost power, the job was killed) leaves it behind.
    fs::create_dir_all(
        root.dkms_tree()
            .join("dkmshook-plain/2.0")
            .join(k1)
            .join(".tmp_x86_64_Ab12Cd/module"),
    )
    .unwrap();
    fs::write(
        root.dkms_tree()
            .join("dkmshook-plain/2.0")
            .join(k1)
            .join(".tmp_x86_64_Ab12Cd/module/dkmshook_plain.ko"),
        b"",
    )
    .unwrap();
    assert_same(&root, "an interrupted build's temporary directory");

    // The install link points at another version's directory than the one listed.
    let link = root
        .dkms_tree()
        .join(format!("dkmshook-plain/kernel-{k1}-x86_64"));
    assert!(fs::symlink_metadata(&link).is_ok());
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(Path::new("2.0").join(k1).join("x86_64"), &link).unwrap();
    assert_same(&root, "install link to another version");

    // dkms.conf decides which files make "built": with BUILT_MODULE_NAME gone, the module is
    // named after the package, a file that was never built.
    let conf_path = root.source_tree().join("dkmshook-plain-1.0/dkms.conf");
    let conf = fs::read_to_string(&conf_path).unwrap();
    fs::write(
        &conf_path,
        conf.replace("BUILT_MODULE_NAME[0]=\"dkmshook_plain\"", ""),
    )
    .unwrap();
    assert_same(&root, "dkms.conf names a module that was not built");

    // A dkms.conf that dkms rejects (before 3.1.8 this ends the listing).
    fs::write(
        &conf_path,
        conf.replace(
            "DEST_MODULE_LOCATION[0]=\"/updates/dkms\"",
            "DEST_MODULE_LOCATION[0]=\"/bogus\"",
        ),
    )
    .unwrap();
    assert_same(&root, "invalid dkms.conf");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn status_matches_real_dkms_for_real_modules() {
    let kernels = crate::common::kernels();
    let root = TestRoot::new();
    for k in &kernels[..2] {
        root.add_kernel(k);
    }
    // Real Debian sources, one of which (v4l2loopback) decides things from the kernel's config.
    let mut mvs = Vec::new();
    for prefix in ["vpoll", "acpi-call", "v4l2loopback"] {
        let dir = root.add_real_source(prefix);
        let conf = fs::read_to_string(root.source_tree().join(&dir).join("dkms.conf")).unwrap();
        let field = |key: &str| {
            conf.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(|v| v.trim_matches('"').to_string())
                .unwrap()
        };
        mvs.push(format!(
            "{}/{}",
            field("PACKAGE_NAME"),
            field("PACKAGE_VERSION")
        ));
    }
    dkms_ok(&root, &["install", &mvs[0], "-k", &kernels[0]]);
    dkms_ok(&root, &["install", &mvs[0], "-k", &kernels[1]]);
    dkms_ok(&root, &["build", &mvs[1], "-k", &kernels[1]]);
    dkms_ok(&root, &["add", &mvs[2]]);
    let lines = assert_same(&root, "real modules");
    assert_eq!(lines.len(), 4, "{lines:#?}");
}
