//! The view of the system after the transaction: a private mount namespace in which the files of
//! the packages the transaction installs or upgrades lie over the live root at their real paths,
//! and the files it removes are gone. The preflight's trial builds run there, with the system's
//! own dkms, trees, configuration and signing key, as the install hook will run them afterwards;
//! so a Makefile that looks for its kernel at `/lib/modules/$(KVER)/build`, a PRE_BUILD script that
//! reads `/usr/lib/modules/K/...`, a new gcc or dkms in the same transaction are what they will be.
//!
//! How: the incoming packages are unpacked once, whole (but documentation and firmware), into a
//! layer directory laid out as the root ([`crate::pacman::archive::unpack`]). A child process, put in a
//! mount namespace of its own (`unshare(CLONE_NEWNS)` before it execs, every mount made private
//! so that nothing propagates back), mounts an overlay on each directory that matters (`usr`,
//! `etc`, `var/lib`, the dkms trees wherever framework.conf puts them): the layer over the live
//! directory, writes going to an upper directory on disk beside the layer (or, where that
//! filesystem cannot be an overlay's upper layer, to a tmpfs of the namespace). What leaves is
//! gone in the overlays only: a directory that leaves whole (an old kernel's headers, thousands
//! of files) is one whiteout put in the upper layer before the overlay is mounted
//! ([`leaving_whole`]); the rest is deleted through the overlay, file by file. Every write in the view (dkms's tree, the modules it
//! installs) lands in the upper directories and goes with them.
//!
//! The seal: `/tmp` and `/var/tmp` get a tmpfs of the view's own, root's home is overlaid, and
//! every other mount at or below the root (but `/proc`, `/sys`, `/dev`) is made read-only in the
//! namespace ([`seal`]), so that a build's stray writes and dkms's `post_transaction` (emptied by
//! the view's drop-in, [`DROP_IN`]) cannot reach the live system. Only the directories the
//! preflight means to keep ([`Spec::writable`]: the scratch, the build store, the failure logs),
//! bound onto themselves before the seal, are written through.
//! Once the trial is over, the child takes the view down and deletes those writes ([`leave`])
//! before it writes its outcome beside them.
//!
//! Invariant: nothing here mounts or deletes unless it runs in a mount namespace other than the
//! one it was started from ([`Spec::parent_ns`]), and a path that leaves is deleted only below a
//! directory this view overlaid.

use rustix::mount::{
    mount, mount_change, unmount, MountFlags, MountPropagationFlags, UnmountFlags,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The directories of the root that every view overlays: the packages' files (`usr`, `etc`), and
/// where dkms and dkms-hook keep state (`var/lib`: the dkms tree, the kept versions). `opt` and
/// `srv` too, when the layer has something there.
const OVERLAID: &[&str] = &["usr", "etc", "var/lib"];
const OVERLAID_IF_BROUGHT: &[&str] = &["opt", "srv"];

/// Directories of the root overlaid when they are there: the homes, where a build may keep a
/// cache (`~/.cache`, ccache, with HOME as sudo or a login set it): it writes, and the writes
/// vanish.
const OVERLAID_IF_THERE: &[&str] = &["root", "home"];

/// Directories of the root that get a tmpfs of the view's own: the temporary files of dkms
/// (`mktemp` in `/tmp`), make and the compiler, and whatever a script leaves there.
const PRIVATE_TMP: &[&str] = &["tmp", "var/tmp"];

/// Directories of the root left as they are by the seal: the kernel's own filesystems.
const NOT_SEALED: &[&str] = &["proc", "sys", "dev"];

/// The view's dkms drop-in: `post_transaction` emptied (dkms 3.2+ runs it after each install;
/// it is for the system after the transaction, not for a trial), and, when the install hook's
/// dkms would sign, `try_sign_modules=true` (dkms 3.4 takes any private mount namespace for a
/// chroot, and its default `not_in_chroot` would sign nothing). Named to be read last.
pub const DROP_IN: &str = "etc/dkms/framework.conf.d/zz-dkms-hook-preflight.conf";

/// Where dkms reads its configuration under `--root DIR` (it does not look under DIR).
const HOST_DKMS_CONF: &str = "/etc/dkms";

/// What the child needs to make the view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// The system's root, as dkms-hook sees it (`/`, or `--root DIR`).
    pub root: PathBuf,
    /// The unpacked packages, laid out as the root.
    pub layer: PathBuf,
    /// Where the overlays' upper and work directories go.
    pub upper: PathBuf,
    /// The directories overlaid (absolute).
    pub mounts: Vec<PathBuf>,
    /// The paths that leave, relative to the root (a directory with a trailing `/`, deleted
    /// when empty).
    pub leaving: Vec<String>,
    /// Write `try_sign_modules=true` in [`DROP_IN`]: the install hook's dkms would sign.
    pub sign: bool,
    /// The directories below the root whose writes reach the live system (the scratch with the
    /// outcome, the build store, the failure logs); all else outside the overlays and the
    /// private tmpfs is read-only in the view.
    #[serde(default)]
    pub writable: Vec<PathBuf>,
    /// The mount namespace (inode of `/proc/thread-self/ns/mnt`) of the process that asked.
    pub parent_ns: u64,
}

/// The mount namespace this thread is in (a thread may have unshared its own).
pub fn current_ns() -> io::Result<u64> {
    Ok(fs::metadata("/proc/thread-self/ns/mnt")?.ino())
}

/// The directories a view of `root` overlays: [`OVERLAID`], those of [`OVERLAID_IF_BROUGHT`]
/// the layer has, and each of `trees` that none of these holds. None holds another.
pub fn mount_points(root: &Path, layer: &Path, trees: &[&Path]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = OVERLAID.iter().map(|d| root.join(d)).collect();
    out.extend(
        OVERLAID_IF_BROUGHT
            .iter()
            .filter(|d| layer.join(d).is_dir())
            .map(|d| root.join(d)),
    );
    let there: Vec<PathBuf> = OVERLAID_IF_THERE
        .iter()
        .map(|d| root.join(d))
        .filter(|d| d.is_dir() && !out.contains(d))
        .collect();
    out.extend(there);
    for t in trees {
        if !out.iter().any(|m| t.starts_with(m)) {
            out.retain(|m| !m.starts_with(t));
            out.push(t.to_path_buf());
        }
    }
    out
}

/// Makes the view: run in the child, in its own mount namespace, before anything else.
/// The error says what could not be done, for the one warning line the preflight then prints.
pub fn enter(spec: &Spec) -> Result<(), String> {
    let ns = current_ns().map_err(|e| format!("/proc/thread-self/ns/mnt: {e}"))?;
    if ns == spec.parent_ns {
        return Err("not in a mount namespace of its own".into());
    }
    // Nothing mounted here may reach the live system's mounts (systemd makes `/` shared).
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| format!("making the mounts private: {e}"))?;
    let top = spec.root == Path::new("/");
    if !top {
        // A root below `/` gets a mount of its own, for the seal to make read-only.
        bind(&spec.root, true)?;
    }
    // Bound onto themselves before anything is made read-only: they stay writable. With the
    // mounts below them: a read-only store mounted there must refuse the trial's writes as it
    // refuses the install hook's, not let them into the directory it hides.
    for w in &spec.writable {
        fs::create_dir_all(w).map_err(|e| format!("{}: {e}", w.display()))?;
        bind(w, true)?;
    }
    // What leaves whole, found on the live directories before any overlay hides them: one
    // whiteout each in the upper layers instead of a deletion per file.
    let whole = leaving_whole(spec);
    if let Err(first) = mount_all(spec, &whole) {
        // The upper directory's filesystem may not take it (an overlay, ZFS before 2.2): a tmpfs
        // of this namespace holds the writes instead.
        mount(
            "dkms-hook-view",
            &spec.upper,
            "tmpfs",
            MountFlags::empty(),
            None,
        )
        .map_err(|e| format!("{first}; a tmpfs for its writes: {e}"))?;
        mount_all(spec, &whole)
            .map_err(|e| format!("{first}; with a tmpfs for its writes: {e}"))?;
    }
    let mut open: Vec<PathBuf> = spec.mounts.clone();
    // Under `--root DIR`, dkms reads the running system's /etc/dkms: the drop-in goes there too,
    // in an overlay of the view.
    let host_conf = Path::new(HOST_DKMS_CONF);
    if !top && host_conf.is_dir() {
        overlay(host_conf, None, &spec.upper.join("host-dkms-conf"))?;
    }
    let mut tmps: Vec<PathBuf> = Vec::new();
    for d in PRIVATE_TMP {
        let dir = spec.root.join(d);
        if dir.is_dir() && !open.iter().any(|m| dir.starts_with(m)) {
            let mode = c"mode=1777";
            mount(
                "dkms-hook-view",
                &dir,
                "tmpfs",
                MountFlags::empty(),
                Some(mode),
            )
            .map_err(|e| format!("a tmpfs on {}: {e}", dir.display()))?;
            tmps.push(dir);
        }
    }
    // A TMPDIR there (pam_tmpdir's /tmp/user/0) is made again in the tmpfs: dkms's mktemp
    // needs it.
    if let Some(tmpdir) = std::env::var_os("TMPDIR").map(PathBuf::from) {
        if tmpdir.is_absolute() && tmps.iter().any(|d| tmpdir.starts_with(d)) {
            fs::create_dir_all(&tmpdir).map_err(|e| format!("{}: {e}", tmpdir.display()))?;
        }
    }
    remove_leaving(spec, &whole)?;
    let mut text = String::from(
        "# dkms-hook's preflight view: post_transaction is for the system after the \
         transaction, not for a trial.\npost_transaction=\"\"\n",
    );
    if !top && host_conf.is_dir() {
        write_drop_in(
            &host_conf.join("framework.conf.d").join(file_name(DROP_IN)),
            &text,
        )?;
    }
    if spec.sign {
        text.push_str("# Sign as the install hook will, outside it.\ntry_sign_modules=true\n");
    }
    write_drop_in(&spec.root.join(DROP_IN), &text)?;
    open.extend(tmps);
    open.extend(spec.writable.iter().cloned());
    open.push(spec.upper.clone());
    open.extend(NOT_SEALED.iter().map(|d| spec.root.join(d)));
    if let Err(e) = seal(&spec.root, &open) {
        // A view that is not sealed still answers: said, not fatal.
        println!("warning: preflight: the view is not read-only outside its overlays: {e}");
    }
    Ok(())
}

/// Takes the view down, in the child once the trial is over: the overlays unmounted (lazily:
/// a straggler of dkms may still be in one) and their writes deleted, so that they no longer
/// take room where the child writes its outcome. Nothing, in the namespace it was asked from.
pub fn leave(spec: &Spec) {
    if current_ns().map_or(true, |ns| ns == spec.parent_ns) {
        return;
    }
    for dir in spec.mounts.iter().rev() {
        let _ = unmount(dir, UnmountFlags::DETACH);
    }
    // The overlay of the running system's dkms configuration, under `--root`.
    if spec.root != Path::new("/") {
        let _ = unmount(Path::new(HOST_DKMS_CONF), UnmountFlags::DETACH);
    }
    // The tmpfs of its writes, where there is one.
    let _ = unmount(&spec.upper, UnmountFlags::DETACH);
    let _ = fs::remove_dir_all(&spec.upper);
}

fn file_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

fn write_drop_in(path: &Path, text: &str) -> Result<(), String> {
    let write = || -> io::Result<()> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(path, text)
    };
    write().map_err(|e| format!("{}: {e}", path.display()))
}

/// Binds `dir` onto itself (with the mounts below it when `recursive`).
fn bind(dir: &Path, recursive: bool) -> Result<(), String> {
    let flags = match recursive {
        true => MountFlags::BIND | MountFlags::REC,
        false => MountFlags::BIND,
    };
    mount(dir, dir, "", flags, None).map_err(|e| format!("binding {}: {e}", dir.display()))
}

/// Makes every mount at or below `root` read-only in the view, but those at or below `open`.
/// The mounts are this namespace's copies: the live system's stay as they are. A kernel without
/// `mount_setattr` (before 5.12) leaves them writable: an error, which the view says and goes on.
fn seal(root: &Path, open: &[PathBuf]) -> Result<(), String> {
    let info = fs::read_to_string("/proc/thread-self/mountinfo")
        .map_err(|e| format!("/proc/thread-self/mountinfo: {e}"))?;
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with(root) && !open.iter().any(|o| p.starts_with(o)))
        .collect();
    points.dedup();
    for p in points {
        match read_only(&p) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                return Err("this kernel has no mount_setattr (5.12+)".into())
            }
            // Not a mount's root from here: one mounted over it hides it.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(format!("{}: {e}", p.display())),
        }
    }
    Ok(())
}

/// `mount_setattr(2)`'s `struct mount_attr`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// Sets the read-only flag of the mount at `dir`, and only that flag.
fn read_only(dir: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path and the struct live through the call, which only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A mount point as /proc/self/mountinfo writes it: space, tab, newline and backslash as octal
/// escapes (`\040`).
fn unescape_mountinfo(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// One overlay per mount point, the layer's part (if any) over the live directory, with a
/// whiteout in its upper layer for each directory of `whole` below it.
fn mount_all(spec: &Spec, whole: &BTreeSet<String>) -> Result<(), String> {
    for (i, dir) in spec.mounts.iter().enumerate() {
        let Ok(rel) = dir.strip_prefix(&spec.root) else {
            continue;
        };
        let brought = Some(spec.layer.join(rel)).filter(|b| b.is_dir());
        let scratch = spec.upper.join(i.to_string());
        let prefix = format!("{}/", rel.display());
        for w in whole.iter().filter_map(|w| w.strip_prefix(&prefix)) {
            whiteout(spec, rel, &scratch.join("upper"), w.trim_end_matches('/'))?;
        }
        overlay(dir, brought.as_deref(), &scratch)?;
    }
    Ok(())
}

/// The directories that leave whole (relative to the root, with a trailing `/`): each leaves
/// itself, no incoming package brings it, and everything in it, at any depth, leaves too (so
/// that nothing that stays, a file of another package or one no package owns, is hidden).
/// Only the topmost of such directories, each below a mount point. Read from the live
/// directories (their names, and the layer's for each directory).
fn leaving_whole(spec: &Spec) -> BTreeSet<String> {
    let leaving: std::collections::HashSet<&str> =
        spec.leaving.iter().map(String::as_str).collect();
    let mut known = std::collections::HashMap::new();
    let mut out = BTreeSet::new();
    let overlaid = |rel: &str| {
        let p = spec.root.join(rel.trim_end_matches('/'));
        spec.mounts.iter().any(|m| p.starts_with(m) && &p != m)
    };
    // Sorted, a directory comes before what is in it.
    let mut dirs: Vec<&String> = spec.leaving.iter().filter(|l| l.ends_with('/')).collect();
    dirs.sort();
    for d in dirs {
        if out.iter().any(|w: &String| d.starts_with(w.as_str())) || !overlaid(d) {
            continue;
        }
        if leaves_whole(spec, &leaving, d, &mut known) {
            out.insert(d.clone());
        }
    }
    out
}

/// Whether the directory `rel` (with a trailing `/`) leaves whole (see [`leaving_whole`]);
/// `known` remembers the answers.
fn leaves_whole(
    spec: &Spec,
    leaving: &std::collections::HashSet<&str>,
    rel: &str,
    known: &mut std::collections::HashMap<String, bool>,
) -> bool {
    if let Some(&k) = known.get(rel) {
        return k;
    }
    let bare = rel.trim_end_matches('/');
    let live = spec.root.join(bare);
    let whole = leaving.contains(rel)
        && fs::symlink_metadata(spec.layer.join(bare)).is_err()
        && fs::symlink_metadata(&live).is_ok_and(|m| m.is_dir())
        && match fs::read_dir(&live) {
            Err(_) => false,
            Ok(rd) => rd.into_iter().all(|e| {
                let Ok(e) = e else { return false };
                let name = e.file_name();
                let Some(name) = name.to_str() else {
                    return false;
                };
                match e.file_type() {
                    Ok(t) if t.is_dir() => {
                        leaves_whole(spec, leaving, &format!("{rel}{name}/"), known)
                    }
                    Ok(_) => leaving.contains(format!("{rel}{name}").as_str()),
                    Err(_) => false,
                }
            }),
        };
    known.insert(rel.to_owned(), whole);
    whole
}

/// Puts a whiteout (a character device 0/0, overlayfs's mark of a deletion) for `inside` (a
/// path below the mount point `rel`) in the overlay's `upper` directory before it is mounted,
/// with the directories above it made there as the lower layers have them (mode, owner, times:
/// an upper directory's are what the view shows).
fn whiteout(spec: &Spec, rel: &Path, upper: &Path, inside: &str) -> Result<(), String> {
    let fail = |p: &Path, e: io::Error| format!("a whiteout for {}: {e}", p.display());
    fs::create_dir_all(upper).map_err(|e| fail(upper, e))?;
    let inside = Path::new(inside);
    let mut at = PathBuf::new();
    for c in inside.parent().into_iter().flat_map(Path::components) {
        at.push(c);
        let up = upper.join(&at);
        if up.is_dir() {
            continue;
        }
        let lower = [&spec.layer, &spec.root]
            .iter()
            .map(|top| top.join(rel).join(&at))
            .find_map(|p| fs::symlink_metadata(p).ok().filter(|m| m.is_dir()));
        fs::create_dir(&up).map_err(|e| fail(&up, e))?;
        if let Some(m) = lower {
            use std::os::unix::fs::PermissionsExt;
            let same = || -> io::Result<()> {
                std::os::unix::fs::chown(&up, Some(m.uid()), Some(m.gid()))?;
                fs::set_permissions(&up, fs::Permissions::from_mode(m.mode() & 0o7777))?;
                let times = fs::FileTimes::new()
                    .set_accessed(m.accessed()?)
                    .set_modified(m.modified()?);
                fs::File::open(&up)?.set_times(times)
            };
            same().map_err(|e| fail(&up, e))?;
        }
    }
    let path = upper.join(inside);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .map_err(|e| fail(&path, e.into()))
}

/// An overlay on `dir`: `brought` (if any) over it, its writes in `scratch/upper`.
fn overlay(dir: &Path, brought: Option<&Path>, scratch: &Path) -> Result<(), String> {
    let upper = scratch.join("upper");
    let work = scratch.join("work");
    for d in [&upper, &work] {
        fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let mut lower = String::new();
    if let Some(b) = brought {
        lower.push_str(&escape(b));
        lower.push(':');
    }
    lower.push_str(&escape(dir));
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        escape(&upper),
        escape(&work)
    );
    let data = std::ffi::CString::new(data).map_err(|e| e.to_string())?;
    mount(
        "dkms-hook-view",
        dir,
        "overlay",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .map_err(|e| format!("an overlay on {}: {e}", dir.display()))
}

/// overlayfs's option syntax: `,` and `:` (and `\`) escaped with a backslash.
fn escape(p: &Path) -> String {
    let mut out = String::new();
    for c in p.to_string_lossy().chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Deletes what leaves, below the overlaid directories only, but what a whiteout of `whole`
/// hides already: files first, then the directories left empty, deepest first.
fn remove_leaving(spec: &Spec, whole: &BTreeSet<String>) -> Result<(), String> {
    let overlaid = |p: &Path| spec.mounts.iter().any(|m| p.starts_with(m) && p != m);
    let mut dirs = BTreeSet::new();
    for rel in &spec.leaving {
        if whole.iter().any(|w| rel.starts_with(w.as_str())) {
            continue;
        }
        let p = crate::system::trees::join_under(&spec.root, rel);
        if !overlaid(&p) {
            continue;
        }
        if rel.ends_with('/') {
            dirs.insert(p);
            continue;
        }
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                dirs.insert(p);
            }
            Ok(_) => fs::remove_file(&p).map_err(|e| format!("{}: {e}", p.display()))?,
            Err(_) => {}
        }
    }
    for d in dirs.iter().rev() {
        let _ = fs::remove_dir(d);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trees_are_overlaid_wherever_they_are_once() {
        let t = tempfile::tempdir().unwrap();
        let (root, layer) = (t.path().join("r"), t.path().join("l"));
        fs::create_dir_all(layer.join("opt/x")).unwrap();
        let dkms = root.join("srv/dkms");
        let usr_src = root.join("usr/src");
        let m = mount_points(&root, &layer, &[&dkms, &usr_src]);
        assert_eq!(
            m,
            ["usr", "etc", "var/lib", "opt", "srv/dkms"].map(|d| root.join(d))
        );
        // A tree above an overlaid directory takes its place.
        let m = mount_points(&root, &layer, &[&root.join("var")]);
        assert_eq!(m, ["usr", "etc", "opt", "var"].map(|d| root.join(d)));
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(
            unescape_mountinfo("/mnt/a\\040b\\134c\\01"),
            Path::new("/mnt/a b\\c\\01")
        );
    }

    #[test]
    fn option_paths_are_escaped() {
        assert_eq!(escape(Path::new("/a,b:c\\d")), "/a\\,b\\:c\\\\d");
    }

    #[test]
    #[ignore = "needs root (a mount namespace, overlays): run tests/run"]
    fn a_directory_that_leaves_whole_is_one_whiteout_and_what_stays_is_seen() {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let t = tempfile::tempdir().unwrap();
        let (root, layer) = (t.path().join("root"), t.path().join("layer"));
        let old = root.join("usr/lib/modules/1.0-old");
        for (f, text) in [
            ("build/Makefile", "all:"),
            ("build/include/a/b.h", "#define B"),
            ("build/include/c.h", "#define C"),
            ("modules.dep", "depmod's, owned by no package"),
        ] {
            let p = old.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        fs::set_permissions(&old, fs::Permissions::from_mode(0o750)).unwrap();
        for f in [
            "usr/share/x/gone",
            "usr/share/x/stays",
            "etc/keep",
            "var/lib/keep",
        ] {
            let p = root.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, f).unwrap();
        }
        let brought = layer.join("usr/lib/modules/1.1-new/build/Makefile");
        fs::create_dir_all(brought.parent().unwrap()).unwrap();
        fs::write(&brought, "all:").unwrap();
        let leaving: Vec<String> = [
            "usr/lib/modules/1.0-old/",
            "usr/lib/modules/1.0-old/build/",
            "usr/lib/modules/1.0-old/build/Makefile",
            "usr/lib/modules/1.0-old/build/include/",
            "usr/lib/modules/1.0-old/build/include/a/",
            "usr/lib/modules/1.0-old/build/include/a/b.h",
            "usr/lib/modules/1.0-old/build/include/c.h",
            "usr/share/x/",
            "usr/share/x/gone",
        ]
        .map(String::from)
        .to_vec();
        let spec = Spec {
            root: root.clone(),
            layer: layer.clone(),
            upper: t.path().join("upper"),
            mounts: mount_points(&root, &layer, &[]),
            leaving,
            sign: false,
            writable: vec![],
            parent_ns: current_ns().unwrap(),
        };
        // What leaves whole: the old headers, not their kernel's directory (depmod's file stays).
        assert_eq!(
            leaving_whole(&spec),
            BTreeSet::from(["usr/lib/modules/1.0-old/build/".to_string()])
        );
        // The view in a thread of its own namespace: the test's stays as it is.
        let seen = std::thread::spawn({
            let (spec, old, root) = (spec.clone(), old.clone(), root.clone());
            move || {
                // SAFETY: NEWNS only (which takes CLONE_FS along): this thread gets its own
                // mount namespace and filesystem context; it shares no file table change.
                unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
                    .unwrap();
                enter(&spec).unwrap();
                let seen = (
                    old.join("build").exists(),
                    fs::read_to_string(old.join("modules.dep")).ok(),
                    fs::metadata(&old).map(|m| m.mode() & 0o7777).ok(),
                    root.join("usr/lib/modules/1.1-new/build/Makefile")
                        .is_file(),
                    root.join("usr/share/x/gone").exists(),
                    root.join("usr/share/x/stays").is_file(),
                );
                // The upper layer, before leave() deletes it.
                let upper = spec.upper.join("0/upper");
                let marks: Vec<String> = walk(&upper)
                    .into_iter()
                    .filter(|p| {
                        fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device())
                    })
                    .map(|p| p.strip_prefix(&upper).unwrap().display().to_string())
                    .collect();
                leave(&spec);
                (seen, marks)
            }
        })
        .join()
        .unwrap();
        let (seen, mut marks) = seen;
        assert_eq!(
            seen,
            (
                false,
                Some("depmod's, owned by no package".into()),
                Some(0o750),
                true,
                false,
                true
            )
        );
        // The headers that leave: one whiteout for their directory, not one per file.
        marks.sort();
        assert_eq!(marks, ["lib/modules/1.0-old/build", "share/x/gone"]);
        // And nothing of it reached the live tree.
        assert!(old.join("build/include/a/b.h").is_file());
        assert!(root.join("usr/share/x/gone").is_file());
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&p));
            }
            out.push(p);
        }
        out
    }

    #[test]
    fn nothing_is_mounted_or_deleted_in_the_namespace_it_was_asked_from() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("usr/x");
        fs::create_dir_all(victim.parent().unwrap()).unwrap();
        fs::write(&victim, "stays").unwrap();
        let spec = Spec {
            root: t.path().to_path_buf(),
            layer: t.path().join("layer"),
            upper: t.path().join("upper"),
            mounts: vec![t.path().join("usr")],
            leaving: vec!["usr/x".into()],
            sign: false,
            writable: vec![],
            parent_ns: current_ns().unwrap(),
        };
        assert_eq!(
            enter(&spec),
            Err("not in a mount namespace of its own".into())
        );
        assert!(victim.exists());
        fs::create_dir_all(spec.upper.join("0/upper")).unwrap();
        leave(&spec);
        assert!(spec.upper.join("0/upper").is_dir());
    }
}
