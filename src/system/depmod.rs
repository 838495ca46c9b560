//! depmod, once a kernel's modules changed: `depmod -a -b BASE KERNEL`, so that modprobe (and
//! the initramfs generator after the hooks) finds the modules dkms installed.

use crate::system::dkms::{self, Printed};
use crate::system::trees::Trees;
use std::path::Path;
use std::process::Command;

/// `depmod -a -b BASE KERNEL`, once a kernel's jobs are done.
pub fn depmod(trees: &Trees, kernel: &str) -> Result<(), String> {
    let mut c = Command::new("depmod");
    c.arg("-a");
    match trees.depmod_base() {
        Some(base) if base != Path::new("/") => {
            c.arg("-b").arg(base);
        }
        Some(_) => {}
        None => {
            return Err(format!(
                "depmod {kernel}: the install tree {} does not end in lib/modules",
                trees.display(&trees.install)
            ))
        }
    }
    c.arg(kernel);
    let out = dkms::run(c);
    if out.ok() {
        Ok(())
    } else {
        let said = dkms::tail(Printed::of(&out.output).lines(), 15).join("\n");
        Err(format!("depmod {kernel}: {}", said.trim()))
    }
}
