//! Builds the preflight made, kept for the post-transaction install, so that a kernel upgrade
//! compiles each module once: the preflight trial-builds before pacman changes any file, and the
//! install hook installs those builds instead of compiling again.
//!
//! A kept build is used only when everything it was compiled from is the same after the
//! transaction: each kept build carries a stamp (the module source's content, the kernel headers'
//! files, the toolchain's binaries, the signing certificate), and the install hook takes it only
//! when the stamp it computes on the installed system is the same. So a build never passes for
//! the build of anything else, whenever it was made: the store outlives a transaction, so that
//! `dkms-hook prebuild` can build ahead for the kernel the repositories offer, and the preflight
//! and install hook of the later `pacman -Syu` take those builds. It also remembers a build that
//! failed, with its failure and log, under the stamp of what it failed with: the preflight says
//! that failure again without compiling while nothing changed.
//!
//! Bounded: one build per module and kernel release (keeping one forgets the module's other
//! versions there), what the install hook installed is forgotten, and [`Store::prune`] drops the
//! kernels that are neither installed nor offered, then the oldest entries beyond
//! [`MAX_BYTES`].

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

/// What the store may hold, at most, before [`Store::prune`] drops the oldest entries.
pub const MAX_BYTES: u64 = 4 << 30;

/// A build that failed, as the store remembers it: the failure's words, the compiler's error
/// lines, dkms's last lines, and a copy of the whole log beside it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    pub what: String,
    pub errors: Vec<String>,
    pub output: Vec<String>,
    /// The copy of the whole log, in the store.
    pub log: Option<PathBuf>,
    /// When it failed, as `YYYY-MM-DD HH:MM` UTC.
    pub when: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct FailureRecord {
    stamp: String,
    failure: Failure,
}

/// One pair the store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub module: String,
    pub version: String,
    pub kernel: String,
    pub arch: String,
    /// A remembered failure (no build).
    pub failed: bool,
    /// When it was kept.
    pub modified: std::time::SystemTime,
    pub bytes: u64,
}

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
    stamp_with(&mut StampCache::default(), i)
}

/// What the stamps of one run share: the part that depends on the kernel, the tools and the key
/// only (the headers' walk, thousands of files, is the dear part), once per kernel instead of
/// once per pair. For one pass over the pairs (a plan's lookups, a trial's keeping): a cache
/// kept longer would miss a change of the headers or the tools.
#[derive(Debug, Default)]
pub struct StampCache {
    tails: std::collections::HashMap<(PathBuf, PathBuf, PathBuf), String>,
}

/// [`stamp`], the kernel's part taken from `cache` when it has it.
pub fn stamp_with(cache: &mut StampCache, i: &Inputs) -> String {
    let mut s = format!(
        "dkms-hook prebuilt 2\nmodule {}\nversion {}\nkernel {}\narch {}\n",
        i.module, i.version, i.kernel, i.arch
    );
    s.push_str(&format!("source {}\n", tree_hash(i.source, &|_| true)));
    let key = (
        i.headers.to_path_buf(),
        i.dkms.to_path_buf(),
        i.trees.root.clone(),
    );
    let tail = cache.tails.entry(key).or_insert_with(|| stamp_tail(i));
    s.push_str(tail);
    s
}

/// The lines of a stamp after the source's: the headers, the tools, dkms, the signing key.
fn stamp_tail(i: &Inputs) -> String {
    let abi = |rel: &Path| HEADERS_ABI.iter().any(|f| rel == Path::new(f));
    let mut s = format!("headers {}\n", tree_hash(i.headers, &abi));
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
    /// What the store held for this module on this kernel (another version, a failure) goes.
    pub fn keep(&self, built: &Path, i: &Inputs, stamp: &str, origin: &str) -> io::Result<()> {
        self.forget_module_on(i.module, i.kernel, i.arch);
        let to = self.entry(i.module, i.version, i.kernel, i.arch);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        move_dir(built, &to)?;
        fs::write(to.with_extension("origin"), origin)?;
        // The stamp last: an entry without one is never taken.
        write_synced(&to.with_extension("stamp"), stamp.as_bytes())
    }

    /// Remembers that the build of these inputs failed, with the log it left at `log` (copied).
    /// What the store held for this module on this kernel goes.
    pub fn remember_failure(
        &self,
        i: &Inputs,
        stamp: &str,
        mut failure: Failure,
        log: Option<&Path>,
    ) -> io::Result<()> {
        self.forget_module_on(i.module, i.kernel, i.arch);
        let at = self.entry(i.module, i.version, i.kernel, i.arch);
        if let Some(parent) = at.parent() {
            fs::create_dir_all(parent)?;
        }
        failure.log = None;
        if let Some(log) = log {
            let copy = at.with_extension("log");
            if fs::copy(log, &copy).is_ok() {
                failure.log = Some(copy);
            }
        }
        let record = FailureRecord {
            stamp: stamp.to_owned(),
            failure,
        };
        let text = serde_json::to_vec(&record).map_err(io::Error::other)?;
        write_synced(&at.with_extension("failed"), &text)
    }

    /// The failure remembered for these inputs, when their stamp is what they give now.
    pub fn failure(&self, i: &Inputs) -> Option<Failure> {
        let at = self.entry(i.module, i.version, i.kernel, i.arch);
        let bytes = fs::read(at.with_extension("failed")).ok()?;
        let record: FailureRecord = serde_json::from_slice(&bytes).ok()?;
        (record.stamp == stamp(i)).then_some(record.failure)
    }

    /// Forgets one pair: its build, its stamp, its remembered failure.
    pub fn forget(&self, m: &str, v: &str, kernel: &str, arch: &str) {
        let at = self.entry(m, v, kernel, arch);
        let _ = fs::remove_dir_all(&at);
        for ext in ["stamp", "failed", "log", "origin"] {
            let _ = fs::remove_file(at.with_extension(ext));
        }
        // The empty directories above it.
        let mut dir = at.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            if d == self.dir || fs::remove_dir(&d).is_err() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
    }

    /// Forgets every version of module `m` on `kernel`.
    fn forget_module_on(&self, m: &str, kernel: &str, arch: &str) {
        for e in self.entries() {
            if e.module == m && e.kernel == kernel && e.arch == arch {
                self.forget(&e.module, &e.version, &e.kernel, &e.arch);
            }
        }
    }

    /// Every pair the store holds, oldest first.
    pub fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        for (m, mdir) in subdirs(&self.dir) {
            for (v, vdir) in subdirs(&mdir) {
                for (k, kdir) in subdirs(&vdir) {
                    let Ok(rd) = fs::read_dir(&kdir) else {
                        continue;
                    };
                    for e in rd.flatten() {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let (arch, failed) = match name.rsplit_once('.') {
                            Some((a, "stamp")) => (a.to_owned(), false),
                            Some((a, "failed")) => (a.to_owned(), true),
                            _ => continue,
                        };
                        let modified = e
                            .metadata()
                            .and_then(|m| m.modified())
                            .unwrap_or(std::time::UNIX_EPOCH);
                        let at = kdir.join(&arch);
                        let bytes = dir_bytes(&at) + dir_bytes(&at.with_extension("log"));
                        out.push(Entry {
                            module: m.clone(),
                            version: v.clone(),
                            kernel: k.clone(),
                            arch,
                            failed,
                            modified,
                            bytes,
                        });
                    }
                }
            }
        }
        out.sort_by_key(|e| e.modified);
        out
    }

    /// Drops what can no longer serve: the entries of kernels `wanted` does not take (neither
    /// installed nor offered), then the oldest ones while the store holds more than `max_bytes`.
    /// Returns what it dropped.
    pub fn prune(&self, wanted: &dyn Fn(&str) -> bool, max_bytes: u64) -> Vec<Entry> {
        let mut dropped = Vec::new();
        let mut kept = Vec::new();
        for e in self.entries() {
            if wanted(&e.kernel) {
                kept.push(e);
            } else {
                self.forget(&e.module, &e.version, &e.kernel, &e.arch);
                dropped.push(e);
            }
        }
        let mut total: u64 = kept.iter().map(|e| e.bytes).sum();
        for e in kept {
            if total <= max_bytes {
                break;
            }
            total -= e.bytes;
            self.forget(&e.module, &e.version, &e.kernel, &e.arch);
            dropped.push(e);
        }
        dropped
    }

    /// At the end of an install run: what the store held for the kernels now installed goes
    /// (the run installed it, or built there without it); what it holds for kernels that are
    /// not installed (a prebuild's, for a kernel the repositories offer) stays, within bounds.
    pub fn after_install(&self, install_tree: &Path) {
        let installed = installed_kernels(install_tree);
        self.forget_notes();
        self.prune(&|k| !installed.contains(k), MAX_BYTES);
    }

    /// What the store holds for kernels not installed (what a prebuild made for a kernel the
    /// repositories offer), one line per kernel, for `status` and `--dry-run`.
    pub fn ready_for_kernels_not_installed(&self, install_tree: &Path) -> Vec<String> {
        let installed = installed_kernels(install_tree);
        let mut by_kernel: std::collections::BTreeMap<String, (Vec<String>, Vec<String>)> =
            Default::default();
        for e in self.entries() {
            if installed.contains(&e.kernel) {
                continue;
            }
            let slot = by_kernel.entry(e.kernel.clone()).or_default();
            let mv = format!("{}/{}", e.module, e.version);
            if e.failed {
                slot.1.push(mv);
            } else {
                slot.0.push(mv);
            }
        }
        by_kernel
            .into_iter()
            .map(|(k, (ready, failed))| {
                let mut line = format!(
                    "built ahead for kernel {k} (not installed yet): {}",
                    if ready.is_empty() {
                        "nothing".to_string()
                    } else {
                        ready.join(", ")
                    }
                );
                if !failed.is_empty() {
                    line.push_str(&format!("; would not build: {}", failed.join(", ")));
                }
                line
            })
            .collect()
    }

    /// Forgets the notes of an earlier transaction ([`Store::remember_notes`]).
    pub fn forget_notes(&self) {
        let _ = fs::remove_file(self.dir.join(NOTES_FILE));
    }

    /// The kept build of these inputs, when there is one and its stamp is what the inputs give
    /// now. Cheap when the store is empty (one failed stat).
    pub fn usable(&self, i: &Inputs) -> Option<PathBuf> {
        self.usable_with(&mut StampCache::default(), i)
    }

    /// [`Store::usable`], sharing `cache` with the other lookups of the same pass.
    pub fn usable_with(&self, cache: &mut StampCache, i: &Inputs) -> Option<PathBuf> {
        let dir = self.entry(i.module, i.version, i.kernel, i.arch);
        let kept = fs::read_to_string(dir.with_extension("stamp")).ok()?;
        (dir.join("module").is_dir() && kept == stamp_with(cache, i)).then_some(dir)
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

/// Who made a kept build (`dir`, as [`Store::usable`] gives it): `preflight`, or `prebuild` and
/// when; `preflight` when it does not say.
pub fn origin_of(dir: &Path) -> String {
    fs::read_to_string(dir.with_extension("origin"))
        .map(|t| t.trim().to_owned())
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "preflight".into())
}

/// The words of a job line for a build that [`origin_of`] names.
pub fn made_by(origin: &str) -> String {
    match origin.strip_prefix("prebuild") {
        Some(when) if !when.trim().is_empty() => {
            format!("built ahead by the prebuild of {} UTC", when.trim())
        }
        Some(_) => "built ahead by the prebuild".into(),
        None => "built in the preflight".into(),
    }
}

/// The kernels installed in `install_tree`: the directories with a kernel's own files
/// (`modules.order`, `vmlinuz`) or headers (`build`).
pub fn installed_kernels(install_tree: &Path) -> std::collections::BTreeSet<String> {
    fs::read_dir(install_tree)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let p = e.path();
            ["modules.order", "vmlinuz", "build"]
                .iter()
                .any(|f| fs::symlink_metadata(p.join(f)).is_ok())
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Writes a file and syncs it to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The subdirectories of `dir` by name.
fn subdirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    out.sort();
    out
}

/// The bytes of the files under `path` (a file's own size; nothing for what is not there).
fn dir_bytes(path: &Path) -> u64 {
    let Ok(md) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !md.is_dir() {
        return md.len();
    }
    fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| dir_bytes(&e.path()))
        .sum()
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
    fn stamps_sharing_a_cache_are_the_stamps_each_pair_gets_alone() {
        let t = tempfile::tempdir().unwrap();
        let trees = Trees::defaults(&t.path().join("root"));
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        let (h1, h2) = (t.path().join("h1"), t.path().join("h2"));
        for (d, text) in [(&a, "int a;"), (&b, "int b;"), (&h1, "1"), (&h2, "2")] {
            fs::create_dir_all(d).unwrap();
            fs::write(d.join("x.h"), text).unwrap();
        }
        fs::write(h2.join(".config"), "CONFIG_X=y").unwrap();
        let mut cache = StampCache::default();
        let mut seen = std::collections::BTreeSet::new();
        for (src, hdr) in [(&a, &h1), (&b, &h1), (&a, &h2), (&b, &h2), (&a, &h1)] {
            let i = inputs(src, hdr, &trees);
            let alone = stamp(&i);
            assert_eq!(stamp_with(&mut cache, &i), alone);
            seen.insert(alone);
        }
        // Each source and each kernel's headers give stamps of their own.
        assert_eq!(seen.len(), 4);
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
        store.keep(&built, &i, &stamp(&i), "preflight").unwrap();
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
        store.keep(&built, &i, &stamp(&i), "preflight").unwrap();
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
        store.keep(&built, &i, &stamp(&i), "preflight").unwrap();
        assert!(store.usable(&i).is_some());
        fs::create_dir_all(t.path().join("root/var/lib/dkms")).unwrap();
        fs::write(t.path().join("root/var/lib/dkms/mok.pub"), "a certificate").unwrap();
        assert_eq!(store.usable(&i), None, "a key made since");
        store
            .keep(&built_again(t.path()), &i, &stamp(&i), "preflight")
            .unwrap();
        assert!(store.usable(&i).is_some());
        fs::write(t.path().join("root/var/lib/dkms/mok.pub"), "another one").unwrap();
        assert_eq!(store.usable(&i), None, "another key");

        store.clear().unwrap();
        assert!(store.is_empty());
        store.clear().unwrap();
    }

    #[test]
    fn one_build_a_module_a_kernel_failures_remembered_under_their_stamp_and_pruned() {
        let t = tempfile::tempdir().unwrap();
        let (src, hdr) = (t.path().join("src"), t.path().join("hdr"));
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&hdr).unwrap();
        fs::write(src.join("foo.c"), "int x;").unwrap();
        let root = t.path().join("root");
        let trees = Trees::defaults(&root);
        let store = Store::at(&root);
        let i = inputs(&src, &hdr, &trees);
        let built = |name: &str| {
            let b = t.path().join(name);
            fs::create_dir_all(b.join("module")).unwrap();
            fs::write(b.join("module/foo.ko"), vec![0u8; 1000]).unwrap();
            b
        };
        store
            .keep(&built("b1"), &i, &stamp(&i), "prebuild 2026-12-01 04:12")
            .unwrap();
        let dir = store.usable(&i).unwrap();
        assert_eq!(origin_of(&dir), "prebuild 2026-12-01 04:12");
        assert_eq!(
            made_by(&origin_of(&dir)),
            "built ahead by the prebuild of 2026-12-01 04:12 UTC"
        );
        // Another version of the module for the same kernel takes its place.
        let i11 = Inputs {
            version: "1.1",
            ..i.clone()
        };
        store
            .keep(&built("b2"), &i11, &stamp(&i11), "preflight")
            .unwrap();
        assert_eq!(store.usable(&i), None);
        assert!(store.usable(&i11).is_some());
        assert_eq!(
            made_by(&origin_of(&store.usable(&i11).unwrap())),
            "built in the preflight"
        );
        // A failure, remembered with its log under the stamp of what it failed with.
        let log = t.path().join("make.log");
        fs::write(&log, "foo.c:1: error: no\n").unwrap();
        let f = Failure {
            what: "make failed (dkms exit 10)".into(),
            errors: vec!["foo.c:1: error: no".into()],
            output: vec![],
            log: None,
            when: "2026-12-01 04:13".into(),
        };
        store
            .remember_failure(&i, &stamp(&i), f.clone(), Some(&log))
            .unwrap();
        assert_eq!(
            store.usable(&i11),
            None,
            "the failure took the module's place"
        );
        let got = store.failure(&i).expect("remembered");
        assert_eq!(got.errors, f.errors);
        assert_eq!(
            fs::read_to_string(got.log.unwrap()).unwrap(),
            "foo.c:1: error: no\n"
        );
        fs::write(src.join("foo.c"), "int y;").unwrap();
        assert_eq!(store.failure(&i), None, "the sources changed since");
        fs::write(src.join("foo.c"), "int x;").unwrap();
        // Listed, and said for a kernel not installed.
        let other = Inputs {
            module: "bar",
            kernel: "6.1.0-2",
            ..i.clone()
        };
        store
            .keep(&built("b3"), &other, &stamp(&other), "preflight")
            .unwrap();
        let entries = store.entries();
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert_eq!(
            store.ready_for_kernels_not_installed(&trees.install),
            [
                "built ahead for kernel 6.1.0-1 (not installed yet): nothing; would not build: foo/1.0",
                "built ahead for kernel 6.1.0-2 (not installed yet): bar/1.0",
            ]
        );
        // Pruned: a kernel nobody wants, then the oldest beyond the bound.
        let dropped = store.prune(&|k| k != "6.1.0-2", MAX_BYTES);
        assert_eq!(dropped.len(), 1);
        assert_eq!(store.usable(&other), None);
        assert!(store.failure(&i).is_some());
        store
            .keep(&built("b4"), &other, &stamp(&other), "preflight")
            .unwrap();
        let dropped = store.prune(&|_| true, 500);
        assert_eq!(dropped.len(), 2, "{dropped:?}");
        assert!(store.entries().is_empty());
        // After an install, what served an installed kernel goes; the others stay.
        store
            .keep(&built("b5"), &other, &stamp(&other), "preflight")
            .unwrap();
        store
            .keep(&built("b6"), &i, &stamp(&i), "preflight")
            .unwrap();
        fs::create_dir_all(trees.install.join("6.1.0-1")).unwrap();
        fs::write(trees.install.join("6.1.0-1/modules.order"), "").unwrap();
        store.after_install(&trees.install);
        assert_eq!(store.usable(&i), None);
        assert!(store.usable(&other).is_some());
    }
}
