//! depmod, once a kernel's modules changed: `depmod -a -b BASE KERNEL`, so that modprobe (and
//! the initramfs generator after the hooks) finds the modules dkms installed.

use crate::system::dkms::{self, Printed};
use crate::system::trees::Trees;
use std::path::Path;
use std::process::Command;

/// depmod failed for a kernel: what it said (or why it could not run).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("depmod {kernel}: {said}")]
pub struct DepmodError {
    pub kernel: String,
    /// depmod's last lines, or why it was not run.
    pub said: String,
}

/// `depmod -a -b BASE KERNEL`, once a kernel's jobs are done.
pub fn depmod(trees: &Trees, kernel: &str) -> Result<(), DepmodError> {
    let failed = |said: String| DepmodError {
        kernel: kernel.to_string(),
        said,
    };
    let mut c = Command::new("depmod");
    c.arg("-a");
    match trees.depmod_base() {
        Some(base) if base != Path::new("/") => {
            c.arg("-b").arg(base);
        }
        Some(_) => {}
        None => {
            return Err(failed(format!(
                "the install tree {} does not end in lib/modules",
                trees.display(&trees.install)
            )))
        }
    }
    c.arg(kernel);
    let out = dkms::run(c);
    if out.ok() {
        Ok(())
    } else {
        let said = dkms::tail(Printed::of(&out.output).lines(), 15).join("\n");
        Err(failed(said.trim().to_string()))
    }
}
