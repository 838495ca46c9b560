//! The DKMS modules loaded right now: the essential ones when `/etc/dkms-hook.conf` names none.
//!
//! A module that is loaded is in use: the machine needs it to boot or to work (a GPU driver, a
//! filesystem). Its name as the kernel knows it (`/proc/modules`, `-` written `_`) is matched
//! against the module files dkms installed for the running kernel: the dkms tree's
//! `M/kernel-K-ARCH` link names the installed version, whose `M/V/K/ARCH/module/*.ko*` are the
//! files. The result is dkms module names (PACKAGE_NAME), as `essential =` takes them.

use crate::system::dkms_tree::DkmsTree;
use std::collections::BTreeSet;
use std::path::Path;

/// Where the kernel lists its loaded modules.
pub const PROC_MODULES: &str = "/proc/modules";

/// The dkms modules (by PACKAGE_NAME) of which a module file is loaded now. `proc_modules` is
/// the text of `/proc/modules`; `kernel` and `arch` the running kernel (`uname -r`, `uname -m`).
pub fn loaded_dkms_modules(
    proc_modules: &str,
    tree: &DkmsTree,
    kernel: &str,
    arch: &str,
) -> BTreeSet<String> {
    let loaded: BTreeSet<String> = proc_modules
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(kernel_name)
        .collect();
    let mut out = BTreeSet::new();
    for (name, entry) in &tree.modules {
        let key = (kernel.to_string(), arch.to_string());
        let Some(version) = entry.installed.get(&key) else {
            continue;
        };
        let Some(files) = entry.versions.get(version).and_then(|v| v.built.get(&key)) else {
            continue;
        };
        let hit = files.iter().any(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .and_then(module_file_stem)
                .is_some_and(|stem| loaded.contains(&kernel_name(stem)))
        });
        if hit {
            out.insert(name.clone());
        }
    }
    out
}

/// Reads `proc_modules` (normally [`PROC_MODULES`]); an unreadable file is no module loaded.
pub fn read_proc_modules(proc_modules: &Path) -> String {
    std::fs::read_to_string(proc_modules).unwrap_or_default()
}

/// `foo.ko`, `foo.ko.zst`, `foo.ko.xz`, `foo.ko.gz` -> `foo`.
fn module_file_stem(file: &str) -> Option<&str> {
    let (stem, rest) = file.split_once(".ko")?;
    matches!(rest, "" | ".zst" | ".xz" | ".gz").then_some(stem)
}

/// The kernel writes module names with `_` where the file may have `-`.
fn kernel_name(s: &str) -> String {
    s.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A dkms tree where `M/V` is installed for (K, x86_64) with module files `kos`.
    fn install(root: &Path, m: &str, v: &str, k: &str, kos: &[&str]) {
        let dir = root.join(m).join(v).join(k).join("x86_64/module");
        std::fs::create_dir_all(&dir).unwrap();
        for ko in kos {
            std::fs::write(dir.join(ko), b"").unwrap();
        }
        symlink(
            format!("{v}/{k}/x86_64"),
            root.join(m).join(format!("kernel-{k}-x86_64")),
        )
        .unwrap();
    }

    #[test]
    fn loaded_files_of_installed_versions_name_their_dkms_module() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        install(
            t,
            "nvidia",
            "550.1",
            "6.9.1-arch1",
            &["nvidia.ko.zst", "nvidia-drm.ko.zst"],
        );
        install(t, "zfs", "2.2.4", "6.9.1-arch1", &["zfs.ko", "spl.ko"]);
        install(
            t,
            "v4l2loopback",
            "0.13",
            "6.9.1-arch1",
            &["v4l2loopback.ko"],
        );
        // Built only for another kernel: not what runs now.
        install(t, "acpi_call", "1.2", "6.8.0-arch1", &["acpi_call.ko"]);
        // Built but not installed for the running kernel.
        std::fs::create_dir_all(t.join("vpoll/0.1/6.9.1-arch1/x86_64/module")).unwrap();
        std::fs::write(t.join("vpoll/0.1/6.9.1-arch1/x86_64/module/vpoll.ko"), b"").unwrap();
        let proc = "nvidia_drm 126976 4 - Live 0x0000000000000000 (POE)\n\
                    spl 135168 1 zfs, Live 0x0000000000000000 (POE)\n\
                    acpi_call 16384 0 - Live 0x0000000000000000 (OE)\n\
                    vpoll 16384 0 - Live 0x0000000000000000 (OE)\n\
                    ext4 1064960 1 - Live 0x0000000000000000\n";
        let tree = DkmsTree::read(t);
        let got = loaded_dkms_modules(proc, &tree, "6.9.1-arch1", "x86_64");
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            ["nvidia", "zfs"],
            "v4l2loopback is not loaded; acpi_call is for another kernel; vpoll is not installed"
        );
    }

    #[test]
    fn nothing_loaded_or_no_proc_means_none() {
        let dir = tempfile::tempdir().unwrap();
        install(dir.path(), "zfs", "2.2.4", "6.9.1", &["zfs.ko"]);
        let tree = DkmsTree::read(dir.path());
        assert!(loaded_dkms_modules("", &tree, "6.9.1", "x86_64").is_empty());
        assert_eq!(read_proc_modules(&dir.path().join("no-such-file")), "");
    }

    #[test]
    fn module_file_names() {
        assert_eq!(module_file_stem("a-b.ko.zst"), Some("a-b"));
        assert_eq!(module_file_stem("a.ko"), Some("a"));
        assert_eq!(module_file_stem("a.ko.bak"), None);
        assert_eq!(module_file_stem("Makefile"), None);
    }
}
