//! Module signing, as far as dkms-hook must know it to keep dkms's promise: every build of a
//! module is signed with the key the system's dkms signs with. dkms itself signs (each build
//! runs sign-file with the key and certificate of framework.conf, or its default pair in
//! `/var/lib/dkms`, which it makes on its first signing build); dkms-hook only:
//! - makes that default pair before builds run side by side ([`ensure_key`]), with dkms's own
//!   `generate_mok` where dkms has it: two builds that each make a key (dkms has no lock) would
//!   sign with two keys, and a trial build in the preflight's view would make one that vanishes
//!   with the view;
//! - tells whether dkms will sign outside a chroot, as the install hook runs it
//!   ([`dkms_sees_a_chroot`]): dkms 3.4 takes any private mount namespace for a chroot and signs
//!   nothing there by default, so the preflight's view must say otherwise;
//! - names the certificate in the stamp of a kept build ([`fingerprint`]), so that a build
//!   signed with another key is never installed.

use crate::system::dkms::Dkms;
use crate::system::trees::Trees;
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// The certificate dkms signs with, by content (`sha256:HEX`), or `none` when there is none.
pub fn fingerprint(trees: &Trees) -> String {
    match fs::read(&trees.signing.certificate) {
        Ok(bytes) => {
            let h = Sha256::digest(&bytes);
            let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
            format!("sha256:{hex}")
        }
        Err(_) => "none".into(),
    }
}

/// Whether a kernel's configuration asks dkms 3.1+ to sign its modules.
pub fn kernel_signs(headers: &Path) -> bool {
    fs::read_to_string(headers.join(".config"))
        .is_ok_and(|c| c.lines().any(|l| l.starts_with("CONFIG_MODULE_SIG_HASH=")))
}

/// What [`ensure_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// There already is one, or nothing will be signed, or dkms signs with a `pkcs11:` key.
    Unchanged,
    /// Made now, at the key path dkms will use (shown as on the system).
    Made(String),
}

/// Makes the key and certificate dkms will sign with when they are missing and something will
/// be signed: a build for one of `headers` (a kernel whose configuration asks for signatures),
/// signing not turned off. With `dkms generate_mok` (dkms 3.1+; it makes them where
/// framework.conf says, with its own parameters), else as dkms 3.0 makes them (openssl).
pub fn ensure_key(trees: &Trees, dkms: &Dkms, headers: &[&Path]) -> Result<Key, String> {
    let s = &trees.signing;
    if s.try_sign_modules.as_deref() == Some("false") || s.key.starts_with("pkcs11:") {
        return Ok(Key::Unchanged);
    }
    let key = Path::new(&s.key);
    if (key.is_file() && s.certificate.is_file()) || !headers.iter().any(|h| kernel_signs(h)) {
        return Ok(Key::Unchanged);
    }
    let shown = trees.display(key).into_owned();
    let made = || key.is_file() && s.certificate.is_file();
    let mut cmd = Command::new(&dkms.program);
    cmd.arg("generate_mok")
        .env("LC_ALL", "C")
        .envs(trees.dkms_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    // Like every dkms call: it ends when dkms exits, and nothing of its group outlives it.
    let _ = crate::system::dkms::run(cmd);
    if made() {
        return Ok(Key::Made(shown));
    }
    // dkms 3.0 has no generate_mok: its own command (prepare_signing in dkms 3.0.10).
    if let Some(dir) = key.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("{shown}: {e}"))?;
    }
    let status = Command::new("openssl")
        .args(["req", "-new", "-x509", "-nodes", "-days", "36500"])
        .args([
            "-subj",
            "/CN=DKMS module signing key",
            "-newkey",
            "rsa:2048",
        ])
        .arg("-keyout")
        .arg(key)
        .args(["-outform", "DER", "-out"])
        .arg(&s.certificate)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        _ if made() => Ok(Key::Made(shown)),
        Ok(st) => Err(format!(
            "{shown}: cannot make the module signing key (openssl {st})"
        )),
        Err(e) => Err(format!(
            "{shown}: cannot make the module signing key (openssl: {e})"
        )),
    }
}

/// Whether dkms 3.4 would believe it runs in a chroot, here: its `running_in_chroot` (Debian's
/// ischroot) compares this process's mount table with init's, then its root with init's root.
pub fn dkms_sees_a_chroot() -> bool {
    let ours = fs::read("/proc/self/mountinfo");
    let init = fs::read("/proc/1/mountinfo");
    if let (Ok(a), Ok(b)) = (&ours, &init) {
        if a != b {
            return true;
        }
    }
    match (fs::metadata("/"), fs::metadata("/proc/1/root")) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) != (b.dev(), b.ino()),
        _ => false,
    }
}

/// Whether the install hook's dkms, run here, would sign (unless the kernel does not ask for it):
/// signing is not turned off, and either forced on or not in what dkms takes for a chroot.
pub fn signs_outside_a_chroot(trees: &Trees) -> bool {
    match trees.signing.try_sign_modules.as_deref() {
        Some("false") => false,
        Some("true") => true,
        _ => !dkms_sees_a_chroot(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_known_by_its_content() {
        let t = tempfile::tempdir().unwrap();
        let mut trees = Trees::defaults(t.path());
        assert_eq!(fingerprint(&trees), "none");
        fs::create_dir_all(t.path().join("var/lib/dkms")).unwrap();
        fs::write(t.path().join("var/lib/dkms/mok.pub"), "cert one").unwrap();
        let one = fingerprint(&trees);
        assert!(one.starts_with("sha256:") && one.len() == 7 + 64, "{one}");
        fs::write(t.path().join("other.pub"), "cert two").unwrap();
        trees.signing.certificate = t.path().join("other.pub");
        assert_ne!(fingerprint(&trees), one);
    }

    #[test]
    fn no_key_is_made_when_nothing_will_be_signed() {
        let t = tempfile::tempdir().unwrap();
        let trees = Trees::defaults(t.path());
        let headers = t.path().join("build");
        fs::create_dir_all(&headers).unwrap();
        fs::write(headers.join(".config"), "CONFIG_MODULES=y\n").unwrap();
        let dkms = Dkms::new(&trees);
        assert_eq!(ensure_key(&trees, &dkms, &[&headers]), Ok(Key::Unchanged));
        assert!(!t.path().join("var/lib/dkms/mok.key").exists());
        let mut off = trees.clone();
        off.signing.try_sign_modules = Some("false".into());
        fs::write(
            headers.join(".config"),
            "CONFIG_MODULE_SIG_HASH=\"sha512\"\n",
        )
        .unwrap();
        assert_eq!(ensure_key(&off, &dkms, &[&headers]), Ok(Key::Unchanged));
        assert!(!t.path().join("var/lib/dkms/mok.key").exists());
    }
}
