//! Kernels as values: a release, its module directory, its headers and its configuration.
//!
//! A kernel is a directory under the install tree; it can be built for when it has headers
//! (`build/` with a Makefile). Kernels are values, not fixed paths, so that a later preflight can plan
//! against headers extracted into a scratch tree.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// One kernel of the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The release, as `uname -r` prints it and as the directory is named.
    pub release: String,
    /// `install_tree/<release>`.
    pub dir: PathBuf,
    /// The headers (`build/` with a Makefile); `None` when they are missing.
    pub headers: Option<PathBuf>,
    /// The kernel's `.config` from its headers (empty when unknown).
    pub config: KernelConfig,
}

impl Kernel {
    /// Reads one kernel directory.
    pub fn read(dir: &Path) -> Kernel {
        let release = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let build = dir.join("build");
        let headers = build.join("Makefile").is_file().then_some(build);
        let config = headers
            .as_ref()
            .and_then(|b| fs::read_to_string(b.join(".config")).ok())
            .map(|text| KernelConfig::parse(&text))
            .unwrap_or_default();
        Kernel {
            release,
            dir: dir.to_path_buf(),
            headers,
            config,
        }
    }

    /// Every kernel directory under `install_tree`, sorted by release (version order).
    pub fn scan(install_tree: &Path) -> Vec<Kernel> {
        let mut out: Vec<Kernel> = fs::read_dir(install_tree)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| Kernel::read(&e.path()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| crate::system::version::cmp(&a.release, &b.release));
        out
    }
}

/// A kernel's `.config`: `CONFIG_FOO` -> `y`, `m`, or a value. Unset options are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelConfig {
    /// Whether a `.config` was found at all: dkms only checks BUILD_EXCLUSIVE_CONFIG when it was.
    pub known: bool,
    pub options: BTreeMap<String, String>,
}

impl KernelConfig {
    pub fn parse(text: &str) -> KernelConfig {
        let options = text
            .lines()
            .filter(|l| l.starts_with("CONFIG_"))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        KernelConfig {
            known: true,
            options,
        }
    }

    /// Whether `CONFIG_X` is built in or a module (`=y` or `=m`), as dkms checks it.
    pub fn enabled(&self, option: &str) -> bool {
        matches!(
            self.options.get(option).map(String::as_str),
            Some("y" | "m")
        )
    }
}

/// The machine's architecture as `uname -m` names it, which is what dkms uses.
pub fn host_arch() -> String {
    uname(|u| u.machine.as_ptr()).unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The running kernel's release, as `uname -r` prints it (dkms's default kernel).
pub fn running_release() -> String {
    uname(|u| u.release.as_ptr()).unwrap_or_default()
}

/// One field of uname(2).
fn uname(field: impl Fn(&libc::utsname) -> *const libc::c_char) -> Option<String> {
    // SAFETY: uname fills the struct we own; its fields are NUL-terminated strings.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return None;
        }
        let s = std::ffi::CStr::from_ptr(field(&u));
        Some(s.to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headers_and_config() {
        let d = tempfile::tempdir().unwrap();
        let k1 = d.path().join("6.10.2-arch1-1");
        let k2 = d.path().join("6.9.0-arch1-1");
        fs::create_dir_all(k1.join("build")).unwrap();
        fs::write(k1.join("build/Makefile"), "").unwrap();
        fs::write(
            k1.join("build/.config"),
            "# x\nCONFIG_ACPI=y\nCONFIG_USB=m\n# CONFIG_I2C is not set\nCONFIG_LOCALVERSION=\"\"\n",
        )
        .unwrap();
        fs::create_dir_all(k2.join("kernel")).unwrap();
        let ks = Kernel::scan(d.path());
        assert_eq!(ks[0].release, "6.9.0-arch1-1");
        assert!(ks[0].headers.is_none());
        assert!(!ks[0].config.known);
        assert_eq!(ks[1].headers.as_deref(), Some(k1.join("build").as_path()));
        assert!(ks[1].config.enabled("CONFIG_ACPI"));
        assert!(ks[1].config.enabled("CONFIG_USB"));
        assert!(!ks[1].config.enabled("CONFIG_I2C"));
        assert!(!ks[1].config.enabled("CONFIG_LOCALVERSION"));
    }
}
