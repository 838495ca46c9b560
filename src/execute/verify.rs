//! Verification after dkms said it succeeded: did it really install modules for the target kernel?
//!
//! Every module the dkms.conf names must have been built, every built `.ko` of the pair must carry
//! the target kernel's release in its vermagic, and an installed copy must exist under the kernel's
//! module directory. This catches Makefiles that build
//! for `uname -r` instead of `$kernelver` (dkms happily installs those, and the module then fails to
//! load in the kernel the user reboots into).

use crate::system::dkms_tree;
use crate::system::trees::Trees;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Checks the installed modules of `module/version` for `kernel`; `expect` are the module names
/// (without `.ko`) its dkms.conf says it builds.
pub fn check_install(
    trees: &Trees,
    module: &str,
    version: &str,
    kernel: &str,
    arch: &str,
    expect: &[String],
) -> Result<(), String> {
    let link = dkms_tree::install_link(&trees.dkms, module, kernel, arch);
    match fs::read_link(&link) {
        Ok(t) if t == dkms_tree::install_target(version, kernel, arch) => {}
        _ => {
            return Err(format!(
                "dkms reported success but {module}/{version} is not installed for {kernel} ({} is missing)",
                trees.display(&link)
            ))
        }
    }
    let built_dir = dkms_tree::built_dir(&trees.dkms, module, version, kernel, arch);
    let built = dkms_tree::ko_files(&built_dir);
    if built.is_empty() {
        return Err(format!(
            "dkms reported success but no module was built in {}",
            trees.display(&built_dir)
        ));
    }
    for name in expect {
        let stem = |p: &PathBuf| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.split(".ko").next().unwrap_or_default() == name
        };
        if !built.iter().any(stem) {
            return Err(format!(
                "dkms reported success but {name}.ko, which {module}/{version}'s dkms.conf names, \
                 was not built in {}",
                trees.display(&built_dir)
            ));
        }
    }
    let installed = dkms_tree::installed_kos(&trees.kernel_dir(kernel));
    for b in &built {
        let file = b.file_name().unwrap_or_default();
        let Some(inst) = installed.iter().find(|p| p.file_name() == Some(file)) else {
            return Err(format!(
                "{} was built but is not installed under {}",
                file.to_string_lossy(),
                trees.display(&trees.kernel_dir(kernel))
            ));
        };
        let magic = vermagic(inst)?;
        let release = magic.split_whitespace().next().unwrap_or_default();
        if release != kernel {
            return Err(format!(
                "{} was built for kernel {release:?}, not {kernel} (vermagic \"{magic}\"): its Makefile \
                 probably builds for `uname -r` instead of $kernelver",
                trees.display(inst)
            ));
        }
    }
    Ok(())
}

/// A module's vermagic: read from the file when uncompressed, through `modinfo` otherwise.
pub fn vermagic(path: &Path) -> Result<String, String> {
    let name = path.to_string_lossy();
    if name.ends_with(".ko") {
        let bytes = fs::read(path).map_err(|e| format!("{name}: {e}"))?;
        let key = b"vermagic=";
        if let Some(pos) = bytes.windows(key.len()).position(|w| w == key) {
            let rest = &bytes[pos + key.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            return Ok(String::from_utf8_lossy(&rest[..end]).into_owned());
        }
        return Err(format!("{name}: no vermagic in the module"));
    }
    let mut c = Command::new("modinfo");
    c.args(["-F", "vermagic"]).arg(path);
    let out = crate::os::process::run(c).map_err(|e| format!("modinfo {name}: {e}"))?;
    let s = out.output.text_up_to(4096).trim().to_string();
    if out.status.success() && !s.is_empty() && !s.contains('\n') {
        Ok(s)
    } else {
        Err(format!("modinfo {name}: {s}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vermagic_from_module_info() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.ko");
        fs::write(
            &p,
            b"\x7fELF....license=GPL\0vermagic=6.1.0-55-amd64 SMP mod_unload \0name=x\0",
        )
        .unwrap();
        assert_eq!(vermagic(&p).unwrap(), "6.1.0-55-amd64 SMP mod_unload ");
        fs::write(&p, b"nothing").unwrap();
        assert!(vermagic(&p).unwrap_err().contains("no vermagic"));
    }
}
