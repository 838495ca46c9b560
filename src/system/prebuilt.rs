//! Builds the preflight made, kept for the post-transaction install, so that a kernel upgrade
//! compiles each module once: the preflight trial-builds before pacman changes any file, and the
//! install hook installs those builds instead of compiling again.
//!
//! A kept build is used only when everything it was compiled from is the same after the
//! transaction: each kept build carries a stamp (the module source's content, the kernel headers'
//! files, the toolchain's binaries), and the install hook takes it only when the stamp it computes
//! on the installed system is the same. So the builds of an aborted transaction never pass for the
//! build of anything else, and when the same transaction upgrades gcc, binutils or clang the
//! modules are compiled again with the new compiler. The store is emptied when a preflight starts
//! and when an install run ends: it never outlives one transaction.

use sha2::{Digest, Sha256};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The store, relative to the root: beside the preflight's scratch root (same filesystem, so a
/// build moves in and out without a copy).
pub const STORE_DIR: &str = "var/cache/dkms-hook/prebuilt";

/// Where [`Store::remember_notes`] keeps the notes, in the store (a name no module can have:
/// dkms module names have no `.` first).
const NOTES_FILE: &str = ".notes";

/// The programs a module build runs whose upgrade makes a kept build stale: the compilers and
/// linkers of GCC and LLVM kernels, make, and dkms itself (it strips, signs and compresses).
const TOOLS: &[&str] = &["gcc", "cc", "as", "ld", "clang", "ld.lld", "make"];

/// What a build was compiled from.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub module: &'a str,
    pub version: &'a str,
    pub kernel: &'a str,
    pub arch: &'a str,
    /// The module's source directory.
    pub source: &'a Path,
    /// The kernel's headers (`.../build`).
    pub headers: &'a Path,
    /// The dkms program.
    pub dkms: &'a Path,
    /// The system's trees: where dkms's signing key is.
    pub trees: &'a crate::system::trees::Trees,
}

/// The files of a kernel's headers that carry its ABI, hashed by content.
const HEADERS_ABI: &[&str] = &[
    ".config",
    "Module.symvers",
    "include/generated/autoconf.h",
    "include/generated/utsrelease.h",
    "include/config/kernel.release",
];

/// The stamp of a build: one `key value` line each. The source is hashed by content (it is
/// small); the headers by each file's path, size and modification time (in seconds: what both
/// pacman and the preflight's unpacking take from the package, where makepkg set them to the
/// package's build time), and the files that carry the ABI by content: hashing every header's
/// content would cost a second per kernel. The tools by their resolved path, size and time.
pub fn stamp(i: &Inputs) -> String {
    let mut s = format!(
        "dkms-hook prebuilt 2\nmodule {}\nversion {}\nkernel {}\narch {}\n",
        i.module, i.version, i.kernel, i.arch
    );
    s.push_str(&format!("source {}\n", tree_hash(i.source, &|_| true)));
    let abi = |rel: &Path| HEADERS_ABI.iter().any(|f| rel == Path::new(f));
    s.push_str(&format!("headers {}\n", tree_hash(i.headers, &abi)));
    // The compiler the kernel was built with, as its configuration names it (Debian's `gcc-12`).
    let cc = kernel_cc(i.headers);
    let tools = TOOLS.iter().copied().chain(cc.as_deref());
    for tool in tools.map(|t| find_in_path(Path::new(t))) {
        if let Some(line) = tool.and_then(|t| identity(&t)) {
            s.push_str(&format!("tool {line}\n"));
        }
    }
    let dkms = find_in_path(i.dkms).and_then(|d| identity(&d));
    s.push_str(&format!("dkms {}\n", dkms.unwrap_or_default()));
    // The certificate of the key dkms signs with: a build signed with another is not this one.
    s.push_str(&format!(
        "signing {}\n",
        crate::system::signing::fingerprint(i.trees)
    ));
    s
}

/// The store of kept builds under a root.
#[derive(Debug, Clone)]
pub struct Store {
    pub dir: PathBuf,
}

impl Store {
    pub fn at(root: &Path) -> Store {
        Store {
            dir: root.join(STORE_DIR),
        }
    }

    fn entry(&self, m: &str, v: &str, kernel: &str, arch: &str) -> PathBuf {
        self.dir.join(m).join(v).join(kernel).join(arch)
    }

    /// Removes every kept build.
    pub fn clear(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Keeps `built` (dkms's `MODULE/VERSION/KERNEL/ARCH` directory of a build) with its stamp.
    pub fn keep(&self, built: &Path, i: &Inputs, stamp: &str) -> io::Result<()> {
        let to = self.entry(i.module, i.version, i.kernel, i.arch);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        let _ = fs::remove_dir_all(&to);
        move_dir(built, &to)?;
        fs::write(to.with_extension("stamp"), stamp)
    }

    /// The kept build of these inputs, when there is one and its stamp is what the inputs give
    /// now. Cheap when the store is empty (one failed stat).
    pub fn usable(&self, i: &Inputs) -> Option<PathBuf> {
        let dir = self.entry(i.module, i.version, i.kernel, i.arch);
        let kept = fs::read_to_string(dir.with_extension("stamp")).ok()?;
        (dir.join("module").is_dir() && kept == stamp(i)).then_some(dir)
    }

    /// Remembers the planner's notes the preflight said, so the install hook of the same
    /// transaction does not say them again ([`Store::said_notes`]).
    pub fn remember_notes(&self, notes: &[String]) -> io::Result<()> {
        if notes.is_empty() {
            return Ok(());
        }
        fs::create_dir_all(&self.dir)?;
        let text: String = notes
            .iter()
            .map(|n| format!("{}\n", n.replace('\n', " ")))
            .collect();
        fs::write(self.dir.join(NOTES_FILE), text)
    }

    /// The notes the preflight of this transaction said.
    pub fn said_notes(&self) -> std::collections::BTreeSet<String> {
        fs::read_to_string(self.dir.join(NOTES_FILE))
            .map(|t| t.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Whether anything is kept (so callers skip computing stamps otherwise).
    pub fn is_empty(&self) -> bool {
        fs::read_dir(&self.dir).map_or(true, |mut d| {
            !d.any(|e| e.is_ok_and(|e| e.file_name() != NOTES_FILE))
        })
    }
}

/// Moves a directory; across filesystems, copies it (links kept as links) and removes the original.
pub fn move_dir(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            copy_dir(from, to)?;
            fs::remove_dir_all(from)
        }
        r => r,
    }
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let t = e.file_type()?;
        if t.is_dir() {
            copy_dir(&src, &dst)?;
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else {
            fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// A hash of a directory tree, links inside it not followed (nor their text hashed): the
/// sorted relative paths with, for each file, its content (those `by_content` takes) or its size
/// and time. The top is resolved first (a kernel's `build` is often a link).
fn tree_hash(top: &Path, by_content: &dyn Fn(&Path) -> bool) -> String {
    let mut h = Sha256::new();
    let top = fs::canonicalize(top).unwrap_or_else(|_| top.to_path_buf());
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(rd) = fs::read_dir(top.join(&rel)) else {
            continue;
        };
        let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
        names.sort();
        // Pushed in reverse, so subdirectories are walked in order.
        let mut dirs = Vec::new();
        for name in names {
            let rel = rel.join(&name);
            let path = top.join(&rel);
            let Ok(md) = fs::symlink_metadata(&path) else {
                continue;
            };
            h.update(rel.as_os_str().as_encoded_bytes());
            h.update([0]);
            if md.is_dir() {
                h.update(b"d\0");
                dirs.push(rel);
            } else if md.file_type().is_symlink() {
                // By name only: the preflight's unpacking points links where they will lead
                // after the transaction, from its scratch root, so their text differs.
                h.update(b"l\0");
            } else if by_content(&rel) {
                h.update(b"f");
                match fs::read(&path) {
                    Ok(bytes) => h.update(&bytes),
                    Err(_) => h.update(b"\xffunreadable"),
                }
                h.update([0]);
            } else {
                h.update(format!("f{} {}\0", md.len(), md.mtime()));
            }
        }
        stack.extend(dirs.into_iter().rev());
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The compiler's name in the headers' `.config`: `CONFIG_CC_VERSION_TEXT="gcc-12 (Debian ...`.
fn kernel_cc(headers: &Path) -> Option<String> {
    let config = fs::read_to_string(headers.join(".config")).ok()?;
    let text = config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_CC_VERSION_TEXT=\""))?;
    let name = text.split_whitespace().next()?;
    (!name.contains('/') && !TOOLS.contains(&name)).then(|| name.to_owned())
}

/// A program as the shell would find it (a path with a `/` is taken as it is).
fn find_in_path(p: &Path) -> Option<PathBuf> {
    if p.components().count() > 1 {
        return Some(p.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(p))
        .find(|c| c.is_file())
}

/// `NAME RESOLVED SIZE MTIME` of a program (links resolved: `cc` -> `gcc-14`).
fn identity(p: &Path) -> Option<String> {
    let real = fs::canonicalize(p).ok()?;
    let md = fs::metadata(&real).ok()?;
    Some(format!(
        "{} {} {} {}.{}",
        p.file_name()?.to_string_lossy(),
        real.display(),
        md.len(),
        md.mtime(),
        md.mtime_nsec()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::trees::Trees;

    fn built_again(dir: &Path) -> PathBuf {
        let built = dir.join("built4");
        fs::create_dir_all(built.join("module")).unwrap();
        built
    }

    fn inputs<'a>(source: &'a Path, headers: &'a Path, trees: &'a Trees) -> Inputs<'a> {
        Inputs {
            module: "foo",
            version: "1.0",
            kernel: "6.1.0-1",
            arch: "x86_64",
            source,
            headers,
            dkms: Path::new("/bin/sh"),
            trees,
        }
    }

    #[test]
    fn a_kept_build_is_usable_only_while_its_inputs_are_the_same() {
        let t = tempfile::tempdir().unwrap();
        let (src, hdr) = (t.path().join("src"), t.path().join("hdr"));
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(hdr.join("include")).unwrap();
        fs::write(src.join("foo.c"), "int x;").unwrap();
        fs::write(hdr.join("include/a.h"), "#define A 1").unwrap();
        let built = t.path().join("built");
        fs::create_dir_all(built.join("module")).unwrap();
        fs::write(built.join("module/foo.ko"), "ko").unwrap();

        let store = Store::at(&t.path().join("root"));
        assert!(store.is_empty());
        let trees = Trees::defaults(&t.path().join("root"));
        let i = inputs(&src, &hdr, &trees);
        store.keep(&built, &i, &stamp(&i)).unwrap();
        assert!(!built.exists(), "moved, not copied");
        assert!(!store.is_empty());
        let kept = store.usable(&i).expect("usable with the same inputs");
        assert!(kept.join("module/foo.ko").is_file());

        // Another version, kernel or arch: not this build.
        assert_eq!(
            store.usable(&Inputs {
                version: "1.1",
                ..i.clone()
            }),
            None
        );
        assert_eq!(
            store.usable(&Inputs {
                kernel: "6.1.0-2",
                ..i.clone()
            }),
            None
        );

        // The same bytes elsewhere: still usable (the preflight built from a scratch copy).
        let src2 = t.path().join("src2");
        copy_dir(&src, &src2).unwrap();
        assert!(store.usable(&inputs(&src2, &hdr, &trees)).is_some());

        // A source edited: stale.
        fs::write(src.join("foo.c"), "int y;").unwrap();
        assert_eq!(store.usable(&i), None);
        fs::write(src.join("foo.c"), "int x;").unwrap();
        assert!(store.usable(&i).is_some());

        // Headers from another build (another time, another ABI file): stale.
        fs::write(hdr.join("Module.symvers"), "0x1 a vmlinux EXPORT_SYMBOL\n").unwrap();
        let built = t.path().join("built2");
        fs::create_dir_all(built.join("module")).unwrap();
        store.keep(&built, &i, &stamp(&i)).unwrap();
        assert!(store.usable(&i).is_some());
        fs::write(hdr.join("Module.symvers"), "0x2 a vmlinux EXPORT_SYMBOL\n").unwrap();
        assert_eq!(store.usable(&i), None);
        let f = fs::File::options()
            .write(true)
            .open(hdr.join("include/a.h"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(store.usable(&i), None);

        // Signed with another key: stale. A key made after the build, too.
        let built = t.path().join("built3");
        fs::create_dir_all(built.join("module")).unwrap();
        store.keep(&built, &i, &stamp(&i)).unwrap();
        assert!(store.usable(&i).is_some());
        fs::create_dir_all(t.path().join("root/var/lib/dkms")).unwrap();
        fs::write(t.path().join("root/var/lib/dkms/mok.pub"), "a certificate").unwrap();
        assert_eq!(store.usable(&i), None, "a key made since");
        store.keep(&built_again(t.path()), &i, &stamp(&i)).unwrap();
        assert!(store.usable(&i).is_some());
        fs::write(t.path().join("root/var/lib/dkms/mok.pub"), "another one").unwrap();
        assert_eq!(store.usable(&i), None, "another key");

        store.clear().unwrap();
        assert!(store.is_empty());
        store.clear().unwrap();
    }
}
