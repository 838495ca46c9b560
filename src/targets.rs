//! What pacman sent: the NeedsTargets paths on stdin, sorted into module sources and kernels.
//!
//! pacman gives paths relative to its root, one per line (`usr/src/foo-1.0/dkms.conf`,
//! `usr/lib/modules/6.9.1-arch1-1/modules.order`). Anything that is not a module source or a kernel
//! path is ignored: the hooks' triggers may match more than we act on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// One kernel named by the targets, with what of it the paths touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelTarget {
    /// Only paths under `build/` (the headers package) were named: on removal, the kernel itself
    /// stays and may still boot.
    pub headers_only: bool,
}

/// The targets of one hook run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// Module source directories (relative to the root), e.g. `usr/src/foo-1.0`.
    pub sources: BTreeSet<PathBuf>,
    /// Kernel releases named by `usr/lib/modules/<kver>/...` paths.
    pub kernels: BTreeMap<String, KernelTarget>,
}

impl Targets {
    /// Parses NeedsTargets text. `source_prefix` and `modules_prefix` are the source and install
    /// trees relative to the root (`usr/src`, `usr/lib/modules` by default).
    pub fn parse(text: &str, source_prefix: &Path, modules_prefix: &Path) -> Targets {
        let mut t = Targets::default();
        for line in text.lines() {
            let line = line.trim().trim_start_matches('/');
            if line.is_empty() {
                continue;
            }
            let path = Path::new(line);
            if path
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
            {
                continue; // `..`, `.` or anything odd: never act on it
            }
            if let Ok(rest) = path.strip_prefix(source_prefix) {
                let parts: Vec<_> = rest.components().collect();
                if parts.len() == 2 && parts[1].as_os_str() == "dkms.conf" {
                    t.sources.insert(source_prefix.join(parts[0].as_os_str()));
                }
                continue;
            }
            if let Ok(rest) = path.strip_prefix(modules_prefix) {
                let mut parts = rest.components();
                let Some(kver) = parts.next() else { continue };
                let Some(second) = parts.next() else { continue };
                let kver = kver.as_os_str().to_string_lossy().into_owned();
                let in_build = second.as_os_str() == "build";
                let entry = t
                    .kernels
                    .entry(kver)
                    .or_insert(KernelTarget { headers_only: true });
                entry.headers_only &= in_build;
            }
        }
        t
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.kernels.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Targets {
        Targets::parse(s, Path::new("usr/src"), Path::new("usr/lib/modules"))
    }

    #[test]
    fn sorts_sources_and_kernels() {
        let t = parse(
            "usr/src/foo-bar-1.2-rc3-7/dkms.conf\n\
             usr/lib/modules/6.9.1-arch1-1/build/include/\n\
             usr/lib/modules/6.9.1-arch1-1/modules.order\n\
             usr/lib/modules/6.8.0-1/build/include/\n",
        );
        assert_eq!(
            t.sources.iter().collect::<Vec<_>>(),
            [Path::new("usr/src/foo-bar-1.2-rc3-7")]
        );
        assert!(!t.kernels["6.9.1-arch1-1"].headers_only);
        assert!(t.kernels["6.8.0-1"].headers_only);
    }

    #[test]
    fn ignores_everything_else() {
        let t = parse(
            "\n   \nusr/src/\nusr/src/foo-1/Makefile\nusr/src/../etc/dkms.conf\n\
             usr/src/a/../b/dkms.conf\netc/passwd\nusr/lib/modules/\nusr/lib/modules/6.1\n\
             usr/src/x/y/dkms.conf\n",
        );
        assert!(t.is_empty(), "{t:?}");
    }

    #[test]
    fn honours_moved_trees() {
        let t = Targets::parse(
            "opt/src/foo-1/dkms.conf\nusr/src/bar-1/dkms.conf\n",
            Path::new("opt/src"),
            Path::new("usr/lib/modules"),
        );
        assert_eq!(t.sources.len(), 1);
    }
}
