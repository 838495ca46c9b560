//! Module signing for Secure Boot through dkms-hook, on Debian 12's dkms 3.0.10 and on 3.4.3 (the
//! series Arch ships; counted as skipped by tests/run, saying why, and failed by .ci/run, when
//! tests/setup.sh could not build it). The kernels'
//! headers are Debian's, whose config has CONFIG_MODULE_SIG_HASH as Arch's does, so dkms signs what
//! it builds when it has a key. dkms reads its signing settings from the running system's
//! /etc/dkms only; dkms-hook hands the root's to it (see dkms_hook::system::trees), so each test
//! names its own key in its root's framework.conf, made with openssl, and reads the signer back
//! from the installed module with modinfo. dkms 3.4 signs nothing in a chroot unless
//! `try_sign_modules=true`, and tests/run's private mount namespace counts as one for it.

use std::path::Path;
use std::process::Command;

use crate::common::{kernels, TestRoot};

/// Makes one `#[test]` per dkms (the machine's 3.0.10, and 3.4.3) of each test function named.
macro_rules! on_each_dkms {
    ($($test:ident),* $(,)?) => {
        mod dkms_3_0_10 {
            $(
                #[test]
                #[ignore = "needs root, dkms and kernel headers: run tests/run"]
                fn $test() {
                    super::$test(crate::common::TestRoot::new());
                }
            )*
        }
        mod dkms_3_4_3 {
            $(
                #[test]
                #[ignore = "needs root, dkms and kernel headers: run tests/run"]
                fn $test() {
                    if let Some(program) = crate::common::dkms_343() {
                        super::$test(crate::common::TestRoot::with_dkms(program));
                    }
                }
            )*
        }
    };
}

on_each_dkms!(
    a_key_named_in_the_roots_framework_conf_signs_the_installed_module,
    without_a_named_key_dkms_makes_its_key_inside_the_root,
    a_signing_step_that_fails_leaves_dkms_exit_0_and_an_unsigned_module,
);

/// Makes a signing key and certificate (DER) at `key` and `cert`, paths inside the root, whose
/// certificate's common name is `cn`.
fn make_key(root: &TestRoot, key: &str, cert: &str, cn: &str) {
    root.mkdir(Path::new(key).parent().unwrap());
    let out = Command::new("openssl")
        .args([
            "req", "-new", "-x509", "-nodes", "-days", "36500", "-newkey", "rsa:2048",
        ])
        .arg("-subj")
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(root.join(key))
        .args(["-outform", "DER", "-out"])
        .arg(root.join(cert))
        .output()
        .expect("openssl: cannot start");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `modinfo -F FIELD` of a module file.
fn modinfo(path: &Path, field: &str) -> String {
    let out = Command::new("modinfo")
        .args(["-F", field])
        .arg(path)
        .output()
        .expect("modinfo: cannot start");
    assert!(out.status.success(), "modinfo {}", path.display());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A certificate's serial number as modinfo's sig_key prints it (hex, upper case, no colons).
fn serial(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-serial", "-in"])
        .arg(cert)
        .output()
        .expect("openssl: cannot start");
    assert!(out.status.success(), "openssl x509 {}", cert.display());
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .trim_start_matches("serial=")
        .trim_start_matches('0')
        .to_uppercase()
}

/// The one module file installed for the newest kernel, after one install of dkmshook-plain.
fn install_plain(root: &TestRoot) -> (String, std::path::PathBuf, String) {
    let k = kernels().last().unwrap().clone();
    root.add_kernel(&k);
    root.add_fixture("dkmshook-plain-1.0");
    let out = root.run_merged(&["install"], "usr/src/dkmshook-plain-1.0/dkms.conf\n");
    assert_eq!(out.code, 0, "{}", out.dump());
    let paths = root.installed_ko_paths(&k);
    assert_eq!(paths.len(), 1, "{paths:?}");
    let ko = root.kernel_dir(&k).join(&paths[0]);
    (k, ko, out.combined)
}

/// A key and certificate named in the root's framework.conf sign the module dkms installs. (The
/// serial is random: modinfo prints a leading zero byte that openssl leaves out, so both are
/// compared without leading zeros.)
fn a_key_named_in_the_roots_framework_conf_signs_the_installed_module(root: TestRoot) {
    let cn = format!("dkms-hook test key {}", std::process::id());
    make_key(&root, "etc/keys/db.key", "etc/keys/db.der", &cn);
    root.write_file(
        "etc/dkms/framework.conf",
        "mok_signing_key=/etc/keys/db.key\nmok_certificate=/etc/keys/db.der\n\
         try_sign_modules=true\n",
    );
    let (_, ko, output) = install_plain(&root);
    assert_eq!(modinfo(&ko, "signer"), cn, "{output}");
    assert_eq!(
        modinfo(&ko, "sig_key")
            .replace(':', "")
            .trim_start_matches('0')
            .to_uppercase(),
        serial(&root.join("etc/keys/db.der")),
        "{output}"
    );
    // dkms made no key of its own in the root.
    assert!(!root.dkms_tree().join("mok.key").exists());
}

/// With no key named, dkms makes its default one, mok.key and mok.pub, in the root's
/// /var/lib/dkms (never on the host, whatever the running system's /var/lib/dkms holds: tests/run
/// puts a key there), and signs with it.
fn without_a_named_key_dkms_makes_its_key_inside_the_root(root: TestRoot) {
    root.write_file("etc/dkms/framework.conf", "try_sign_modules=true\n");
    let (_, ko, output) = install_plain(&root);
    let cert = root.dkms_tree().join("mok.pub");
    assert!(root.dkms_tree().join("mok.key").is_file(), "{output}");
    assert!(cert.is_file(), "{output}");
    assert_eq!(
        modinfo(&ko, "signer"),
        "DKMS module signing key",
        "{output}"
    );
    assert_eq!(
        modinfo(&ko, "sig_key")
            .replace(':', "")
            .trim_start_matches('0')
            .to_uppercase(),
        serial(&cert),
        "signed with another key than the root's: {output}"
    );
}

/// A signing step that fails (the key named is not a key): neither dkms fails for it. 3.0.10 runs
/// sign-file without checking it; 3.4.3 warns "Failed to sign module"; both exit 0 and install the
/// module unsigned. dkms-hook, which shows dkms's output only for a failed job, says nothing of it
/// (see `a_failed_signing_step_is_reported_in_the_job_block`).
fn a_signing_step_that_fails_leaves_dkms_exit_0_and_an_unsigned_module(root: TestRoot) {
    make_key(&root, "etc/keys/db.key", "etc/keys/db.der", "unused");
    root.write_file("etc/keys/db.key", "not a key\n");
    root.write_file(
        "etc/dkms/framework.conf",
        "mok_signing_key=/etc/keys/db.key\nmok_certificate=/etc/keys/db.der\n\
         try_sign_modules=true\n",
    );
    let k = kernels().last().unwrap().clone();
    root.add_kernel(&k);
    root.add_fixture("dkmshook-plain-1.0");
    // dkms alone, with the settings dkms-hook hands it.
    let mut cmd = dkms_install(&root, &k);
    cmd.env("try_sign_modules", "true");
    let out = crate::common::run_command(cmd, "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.combined.contains("Signing module"),
        "no signing step: {}",
        out.dump()
    );
    let ko = root.kernel_dir(&k).join(&root.installed_ko_paths(&k)[0]);
    assert_eq!(modinfo(&ko, "signer"), "", "{}", out.dump());
}

/// What dkms-hook should do with a signing step that fails: report it in the job's block, with
/// dkms's (3.4: "Failed to sign module ...") or sign-file's own message, since the module it
/// installed will not load under Secure Boot.
#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_failed_signing_step_is_reported_in_the_job_block() {
    let root = TestRoot::new();
    make_key(&root, "etc/keys/db.key", "etc/keys/db.der", "unused");
    root.write_file("etc/keys/db.key", "not a key\n");
    root.write_file(
        "etc/dkms/framework.conf",
        "mok_signing_key=/etc/keys/db.key\nmok_certificate=/etc/keys/db.der\n",
    );
    let k = kernels().last().unwrap().clone();
    root.add_kernel(&k);
    root.add_fixture("dkmshook-plain-1.0");
    let out = root.run_merged(&["install"], "usr/src/dkmshook-plain-1.0/dkms.conf\n");
    assert_eq!(out.code, 1, "{}", out.dump());
    // The job is named, and sign-file's own last line (`sign-file: KEY`, printed by both dkms
    // versions) is shown under it.
    let text = &out.combined;
    let job = text
        .find(&format!("dkmshook-plain/1.0 for {k}:"))
        .unwrap_or_else(|| panic!("the job's failure is not named: {text}"));
    assert!(
        text[job..].contains("sign-file: "),
        "sign-file's message is not shown: {text}"
    );
}

/// dkms 3.4 signs nothing in a chroot unless told (`try_sign_modules`, default `not_in_chroot`):
/// it compares its /proc/self/mountinfo with init's, so tests/run's private mount namespace, like
/// an arch-chroot or a pacstrap, counts as a chroot. With a key named and no `try_sign_modules`,
/// the module is installed unsigned and dkms says why.
#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn dkms_3_4_signs_nothing_in_a_chroot_unless_told() {
    let Some(program) = crate::common::dkms_343() else {
        return;
    };
    let root = TestRoot::with_dkms(program);
    make_key(&root, "etc/keys/db.key", "etc/keys/db.der", "unused");
    root.write_file(
        "etc/dkms/framework.conf",
        "mok_signing_key=/etc/keys/db.key\nmok_certificate=/etc/keys/db.der\n",
    );
    let (_, ko, _) = install_plain(&root);
    assert_eq!(modinfo(&ko, "signer"), "");
    // dkms's reason, from the same dkms building for the other kernel, as dkms-hook runs it.
    let k1 = kernels()[kernels().len() - 2].clone();
    root.add_kernel(&k1);
    let cmd = dkms_install(&root, &k1);
    let out = crate::common::run_command(cmd, "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.combined
            .contains("Running in chroot, modules won't be signed"),
        "{}",
        out.dump()
    );
}

/// `dkms install` of the plain fixture for `kernel`, run by hand on the root's trees, with the
/// root's key and certificate named in dkms's environment as dkms-hook hands them over.
fn dkms_install(root: &TestRoot, kernel: &str) -> Command {
    let mut cmd = Command::new(root.dkms_program());
    cmd.args(["install", "-m", "dkmshook-plain", "-v", "1.0", "-k", kernel])
        .arg("--no-depmod")
        .arg("--sourcetree")
        .arg(root.source_tree())
        .arg("--dkmstree")
        .arg(root.dkms_tree())
        .arg("--installtree")
        .arg(root.install_tree())
        .arg("--kernelsourcedir")
        .arg(root.kernel_dir(kernel).join("build"))
        .env("mok_signing_key", root.join("etc/keys/db.key"))
        .env("mok_certificate", root.join("etc/keys/db.der"));
    cmd
}
