//! The store of kept copies: what dkms needs to uninstall a kept module version (its dkms.conf
//! and the small files beside it), under `ROOT/var/lib/dkms-hook/kept/NAME-VERSION/`, with
//! dkms's `source` link of that version pointed there, and the queries on it. What to keep, and
//! when a kept version goes, is decided in [`crate::keep`].

use crate::system::dkms_tree::{self, DkmsTree, ModuleVersion};
use crate::system::trees::Trees;
use std::fs;
use std::path::{Path, PathBuf};

/// Where the kept copies live, under the root.
pub const KEPT_DIR: &str = "var/lib/dkms-hook/kept";

/// Files beside dkms.conf larger than this are not copied: what dkms runs on uninstall is small.
const MAX_COPIED: u64 = 1 << 20;

/// The directory of every kept copy.
pub fn dir(trees: &Trees) -> PathBuf {
    trees.root.join(KEPT_DIR)
}

/// The kept copy of `m/v`.
pub fn copy_of(trees: &Trees, m: &str, v: &str) -> PathBuf {
    dir(trees).join(format!("{m}-{v}"))
}

/// Whether `m/v` is kept: dkms's `source` link points at its copy.
pub fn is_kept(trees: &Trees, m: &str, v: &str) -> bool {
    fs::read_link(dkms_tree::source_link(&trees.dkms, m, v))
        .is_ok_and(|t| t.starts_with(dir(trees)))
}

/// The kept version of `m` installed for `kernel`, if the version installed there is kept.
pub fn installed_kept(trees: &Trees, m: &str, kernel: &str, arch: &str) -> Option<String> {
    let link = dkms_tree::install_link(&trees.dkms, m, kernel, arch);
    let target = fs::read_link(link).ok()?;
    let v = target
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    is_kept(trees, m, &v).then_some(v)
}

/// Every kept (module, version), from dkms's tree.
pub fn list(trees: &Trees) -> Vec<ModuleVersion> {
    let tree = DkmsTree::read(&trees.dkms);
    let kept = dir(trees);
    let mut out = Vec::new();
    for (m, entry) in &tree.modules {
        for (v, ver) in &entry.versions {
            if ver.source.as_deref().is_some_and(|s| s.starts_with(&kept)) {
                out.push(ModuleVersion::new(m, v));
            }
        }
    }
    out
}

/// Keeps `m/v`, whose sources are in `source`: copies dkms.conf and the small regular files
/// beside it, then points dkms's `source` link at the copy (each step replaces atomically).
/// No link in the source directory is followed, but for dkms.conf's own (dkms follows it too):
/// what is copied is the package's own files, never a file elsewhere on the system. Each file and
/// directory of the copy is synced before dkms is pointed at it, and the link after: a power loss
/// leaves dkms pointing at the sources or at a whole copy, never at an empty dkms.conf.
pub fn keep(trees: &Trees, m: &str, v: &str, source: &Path) -> Result<PathBuf, String> {
    let copy = copy_of(trees, m, v);
    let shown = |p: &Path| trees.display(p).into_owned();
    fn err<'a>(trees: &'a Trees, p: &'a Path) -> impl Fn(std::io::Error) -> String + 'a {
        move |e| format!("{}: {e}", trees.display(p))
    }
    let tmp = dir(trees).join(format!(".{m}-{v}.tmp"));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(err(trees, &tmp))?;
    let entries = fs::read_dir(source).map_err(err(trees, source))?;
    for e in entries.flatten() {
        let is_conf = e.file_name() == "dkms.conf";
        let md = if is_conf {
            fs::metadata(e.path())
        } else {
            fs::symlink_metadata(e.path())
        };
        let Ok(md) = md else {
            continue;
        };
        if !md.is_file() || (md.len() > MAX_COPIED && !is_conf) {
            continue;
        }
        let to = tmp.join(e.file_name());
        fs::copy(e.path(), &to)
            .and_then(|_| sync(&to))
            .map_err(err(trees, &to))?;
    }
    if !tmp.join("dkms.conf").is_file() {
        let _ = fs::remove_dir_all(&tmp);
        return Err(format!("{}: no dkms.conf to keep", shown(source)));
    }
    sync(&tmp).map_err(err(trees, &tmp))?;
    let _ = fs::remove_dir_all(&copy);
    fs::rename(&tmp, &copy).map_err(err(trees, &copy))?;
    sync(&dir(trees)).map_err(err(trees, &dir(trees)))?;
    repoint(trees, m, v, &copy)?;
    Ok(copy)
}

/// Writes a file's (or a directory's) contents through to the disk.
fn sync(path: &Path) -> std::io::Result<()> {
    fs::File::open(path)?.sync_all()
}

/// Points `m/v`'s `source` link at `to`, replacing it in one rename, synced.
pub fn repoint(trees: &Trees, m: &str, v: &str, to: &Path) -> Result<(), String> {
    let vdir = dkms_tree::version_dir(&trees.dkms, m, v);
    let link = dkms_tree::source_link(&trees.dkms, m, v);
    let tmp = vdir.join(".source.dkms-hook");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(to, &tmp)
        .and_then(|()| fs::rename(&tmp, &link))
        .and_then(|()| sync(&vdir))
        .map_err(|e| format!("{}: {e}", trees.display(&link)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    pub(crate) const K: &str = "6.1.0-1-amd64";

    /// A root with foo 1.0 added and installed for K (a fake kernel with headers).
    pub(crate) fn root_with_foo() -> (tempfile::TempDir, Trees) {
        let dir = tempfile::tempdir().unwrap();
        let trees = Trees::defaults(dir.path());
        let src = trees.source.join("foo-1.0");
        fs::create_dir_all(&src).unwrap();
        fs::write(
            src.join("dkms.conf"),
            "PACKAGE_NAME=foo\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]=foo\nAUTOINSTALL=yes\n",
        )
        .unwrap();
        fs::write(src.join("post-remove.sh"), "#!/bin/sh\n").unwrap();
        fs::write(src.join("big.bin"), vec![0u8; (MAX_COPIED + 1) as usize]).unwrap();
        let kdir = trees.install.join(K);
        fs::create_dir_all(kdir.join("build")).unwrap();
        fs::write(kdir.join("build/Makefile"), "").unwrap();
        let built = trees.dkms.join("foo/1.0").join(K).join("x86_64/module");
        fs::create_dir_all(&built).unwrap();
        fs::write(built.join("foo.ko"), "").unwrap();
        symlink(&src, trees.dkms.join("foo/1.0/source")).unwrap();
        symlink(
            format!("1.0/{K}/x86_64"),
            trees.dkms.join(format!("foo/kernel-{K}-x86_64")),
        )
        .unwrap();
        (dir, trees)
    }

    #[test]
    fn the_kept_copy_follows_no_link() {
        let (_d, trees) = root_with_foo();
        let src = trees.source.join("foo-1.0");
        let outside = trees.root.join("etc/secret");
        fs::create_dir_all(outside.parent().unwrap()).unwrap();
        fs::write(&outside, "not the module's\n").unwrap();
        symlink(&outside, src.join("secret")).unwrap();
        symlink("post-remove.sh", src.join("alias.sh")).unwrap();
        let copy = keep(&trees, "foo", "1.0", &src).unwrap();
        let mut names: Vec<String> = fs::read_dir(&copy)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["dkms.conf", "post-remove.sh"]);
    }
}
