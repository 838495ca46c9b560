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
//! filesystem cannot be an overlay's upper layer, to a tmpfs of the namespace). It then deletes
//! what leaves, in the overlays only. Every write in the view (dkms's tree, the modules it
//! installs) lands in the upper directories and goes with them; only what is not overlaid reaches
//! the live system: the build store and the failure logs, which the preflight means to keep.
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

/// The drop-in that makes dkms 3.4 sign in the view as it will sign outside it (it takes any
/// private mount namespace for a chroot, and its default `not_in_chroot` would sign nothing).
pub const SIGN_DROP_IN: &str = "etc/dkms/framework.conf.d/zz-dkms-hook-preflight.conf";

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
    /// Write [`SIGN_DROP_IN`]: the install hook's dkms would sign.
    pub sign: bool,
    /// The mount namespace (inode of `/proc/self/ns/mnt`) of the process that asked.
    pub parent_ns: u64,
}

/// The mount namespace this process is in.
pub fn current_ns() -> io::Result<u64> {
    Ok(fs::metadata("/proc/self/ns/mnt")?.ino())
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
    let ns = current_ns().map_err(|e| format!("/proc/self/ns/mnt: {e}"))?;
    if ns == spec.parent_ns {
        return Err("not in a mount namespace of its own".into());
    }
    // Nothing mounted here may reach the live system's mounts (systemd makes `/` shared).
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| format!("making the mounts private: {e}"))?;
    if let Err(first) = mount_all(spec) {
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
        mount_all(spec).map_err(|e| format!("{first}; with a tmpfs for its writes: {e}"))?;
    }
    remove_leaving(spec)?;
    if spec.sign {
        let drop_in = spec.root.join(SIGN_DROP_IN);
        let write = || -> io::Result<()> {
            fs::create_dir_all(drop_in.parent().unwrap_or(&spec.root))?;
            fs::write(
                &drop_in,
                "# dkms-hook's preflight view: sign as the install hook will, outside it.\n\
                 try_sign_modules=true\n",
            )
        };
        write().map_err(|e| format!("{}: {e}", drop_in.display()))?;
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
    // The tmpfs of its writes, where there is one.
    let _ = unmount(&spec.upper, UnmountFlags::DETACH);
    let _ = fs::remove_dir_all(&spec.upper);
}

/// One overlay per mount point, the layer's part (if any) over the live directory.
fn mount_all(spec: &Spec) -> Result<(), String> {
    for (i, dir) in spec.mounts.iter().enumerate() {
        let upper = spec.upper.join(format!("{i}/upper"));
        let work = spec.upper.join(format!("{i}/work"));
        for d in [&upper, &work] {
            fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let rel = dir.strip_prefix(&spec.root).unwrap_or(dir);
        let brought = spec.layer.join(rel);
        let mut lower = String::new();
        if brought.is_dir() {
            lower.push_str(&escape(&brought));
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
        .map_err(|e| format!("an overlay on {}: {e}", dir.display()))?;
    }
    Ok(())
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

/// Deletes what leaves, below the overlaid directories only: files first, then the directories
/// left empty, deepest first.
fn remove_leaving(spec: &Spec) -> Result<(), String> {
    let overlaid = |p: &Path| spec.mounts.iter().any(|m| p.starts_with(m) && p != m);
    let mut dirs = BTreeSet::new();
    for rel in &spec.leaving {
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
    fn option_paths_are_escaped() {
        assert_eq!(escape(Path::new("/a,b:c\\d")), "/a\\,b\\:c\\\\d");
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
