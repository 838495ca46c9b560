//! pacman's tar archives: package files (`.pkg.tar.zst`, `.xz`, `.gz`, ...) and sync databases
//! (`REPO.db`, a tar of `NAME-VERSION/desc` entries), opened whatever their compression, which is
//! told by the first bytes (a sync database's name says nothing of it), with the ALPM project's
//! decoders (`alpm-compress`). Pure Rust and its own C decoders: no libalpm, no libarchive.
//!
//! Also: a package's file list (its `.MTREE` when it has one, read without decompressing the
//! rest; else every entry), and extracting the entries under given prefixes to a scratch root,
//! with the package's symlinks made to point where they will point after the transaction.

use alpm_compress::decompression::{CompressionDecoder, DecompressionSettings};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// A failure to read an archive, naming it.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    /// Unpacking entry `entry` of package `path` failed where it was being written.
    #[error("{path}: {}: {source}", entry.display())]
    Write {
        path: PathBuf,
        entry: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A stopping signal came while unpacking (its number).
    #[error("{path}: interrupted by {}", crate::os::interrupt::name(*.signal))]
    Interrupted { path: PathBuf, signal: i32 },
}

impl ArchiveError {
    /// What is wrong, without the archive's path (for a message that names it its own way).
    pub fn reason(&self) -> String {
        match self {
            ArchiveError::Io { source, .. } => source.to_string(),
            ArchiveError::Format { message, .. } => message.clone(),
            ArchiveError::Write { entry, source, .. } => format!("{}: {source}", entry.display()),
            ArchiveError::Interrupted { signal, .. } => {
                format!("interrupted by {}", crate::os::interrupt::name(*signal))
            }
        }
    }

    /// Whether a write failed for want of room (ENOSPC).
    pub fn is_no_space(&self) -> bool {
        match self {
            ArchiveError::Io { source, .. } | ArchiveError::Write { source, .. } => {
                source.raw_os_error() == Some(libc::ENOSPC)
            }
            ArchiveError::Format { message, .. } => message.contains("No space left on device"),
            ArchiveError::Interrupted { .. } => false,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The compression of a file, from its magic bytes.
fn sniff(path: &Path) -> Result<DecompressionSettings, ArchiveError> {
    let mut magic = [0u8; 6];
    let mut f = File::open(path).map_err(io_err(path))?;
    let n = f.read(&mut magic).map_err(io_err(path))?;
    let m = &magic[..n];
    Ok(if m.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        DecompressionSettings::Zstd
    } else if m.starts_with(&[0x1f, 0x8b]) {
        DecompressionSettings::Gzip
    } else if m.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        DecompressionSettings::Xz
    } else if m.starts_with(b"BZh") {
        DecompressionSettings::Bzip2
    } else {
        DecompressionSettings::None
    })
}

/// Opens a package file: a (compressed) tar archive, refused when it is empty (a download or a
/// copy cut short), which the tar reader would take for an archive with nothing in it.
fn open_package(path: &Path) -> Result<tar::Archive<CompressionDecoder<'static>>, ArchiveError> {
    let len = fs::metadata(path).map_err(io_err(path))?.len();
    if len == 0 {
        return Err(ArchiveError::Format {
            path: path.to_path_buf(),
            message: "an empty file (0 bytes), not a package".into(),
        });
    }
    open(path)
}

/// Opens a (compressed) tar archive.
pub fn open(path: &Path) -> Result<tar::Archive<CompressionDecoder<'static>>, ArchiveError> {
    let settings = sniff(path)?;
    let file = File::open(path).map_err(io_err(path))?;
    let decoder = CompressionDecoder::new(file, settings).map_err(|e| ArchiveError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(tar::Archive::new(decoder))
}

/// An entry's path as pacman names it: relative, without `./`; `None` for anything climbing out.
pub fn entry_path(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Every `(path, content)` of the archive whose path satisfies `want` (a sync database's
/// `NAME-VERSION/desc` entries, say).
pub fn read_entries(
    path: &Path,
    want: impl Fn(&Path) -> bool,
) -> Result<Vec<(PathBuf, String)>, ArchiveError> {
    let mut ar = open(path)?;
    let mut out = Vec::new();
    for entry in ar.entries().map_err(io_err(path))? {
        let mut entry = entry.map_err(io_err(path))?;
        let Some(p) = entry.path().ok().and_then(|p| entry_path(&p)) else {
            continue;
        };
        if entry.header().entry_type().is_file() && want(&p) {
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(io_err(path))?;
            out.push((p, text));
        }
    }
    Ok(out)
}

/// What a package file says of itself: its name and version and relations (`.PKGINFO`'s
/// `pkgname`, `pkgver`, `depend`, `provides`, `replaces`, `conflict`) and the paths it installs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub name: Option<String>,
    /// `[EPOCH:]PKGVER-PKGREL`.
    pub version: Option<String>,
    pub depends: Vec<String>,
    pub provides: Vec<String>,
    pub replaces: Vec<String>,
    pub conflicts: Vec<String>,
    /// Relative, no trailing `/`; directories included.
    pub paths: Vec<String>,
    /// `.PKGINFO`'s `size`: the bytes it installs (what pacman checks the disk for).
    pub size: Option<u64>,
}

impl Listing {
    /// Takes the fields of a `.PKGINFO` (`key = value` lines).
    fn read_pkginfo(&mut self, text: &str) {
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim().to_owned();
            match k.trim() {
                "pkgname" => self.name = Some(v),
                "pkgver" => self.version = Some(v),
                "depend" => self.depends.push(v),
                "provides" => self.provides.push(v),
                "replaces" => self.replaces.push(v),
                "conflict" => self.conflicts.push(v),
                "size" => self.size = v.parse().ok(),
                _ => {}
            }
        }
    }
}

/// The name and paths of a package. The paths come from its `.MTREE` when it has one among the
/// metadata entries at its start (makepkg puts it there), so that a large package is not
/// decompressed whole; else from the archive's own entries.
pub fn package_listing(path: &Path) -> Result<Listing, ArchiveError> {
    let mut ar = open_package(path)?;
    let mut out = Listing::default();
    let mut from_mtree = false;
    for entry in ar.entries().map_err(io_err(path))? {
        let mut entry = entry.map_err(io_err(path))?;
        let Some(p) = entry.path().ok().and_then(|p| entry_path(&p)) else {
            continue;
        };
        let name = p.to_string_lossy().into_owned();
        if name == ".PKGINFO" {
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(io_err(path))?;
            out.read_pkginfo(&text);
        } else if name == ".MTREE" {
            let mut gz = Vec::new();
            entry.read_to_end(&mut gz).map_err(io_err(path))?;
            let mut text = String::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_string(&mut text)
                .map_err(|e| ArchiveError::Format {
                    path: path.to_path_buf(),
                    message: format!(".MTREE: {e}"),
                })?;
            out.paths = mtree_paths(&text);
            from_mtree = true;
        } else if !name.starts_with('.') {
            if from_mtree {
                // The metadata come first and the .MTREE's list is whole: stop decompressing.
                break;
            }
            out.paths.push(name);
        }
    }
    if out.name.is_none() {
        return Err(ArchiveError::Format {
            path: path.to_path_buf(),
            message: "no .PKGINFO with a pkgname: not a pacman package".into(),
        });
    }
    Ok(out)
}

/// The paths of an mtree(5) listing as makepkg writes it (`./usr/bin/x time=... type=file`,
/// names with `\ooo` octal escapes), metadata entries (`./.PKGINFO`) left out.
fn mtree_paths(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("./"))
        .filter_map(|l| l.split_whitespace().next())
        .map(|p| unescape(&p[2..]))
        .filter(|p| !p.is_empty() && !p.starts_with('.'))
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What [`unpack`] met that it refuses: an entry that would write through a link the same
/// archive made, or over something that is not what the entry says it is.
fn refused(path: &Path, entry: &Path, why: String) -> ArchiveError {
    ArchiveError::Format {
        path: path.to_path_buf(),
        message: format!(
            "{}: {why}",
            crate::os::text::printable(&entry.to_string_lossy())
        ),
    }
}

/// Unpacks every entry of package `path` into `dest`, as if `dest` were the system root, but
/// those `skip` takes (paths relative to the root, e.g. `usr/share/doc/x`) and the package's
/// metadata (`.PKGINFO`, `.MTREE`, ...). Files keep their modes and modification times (as pacman
/// keeps them), symlinks their text: they are meant to be seen at their real paths, in the view
/// of the system after the transaction.
///
/// Nothing is written outside `dest`: an entry whose parent is a link (one the archive made
/// before, pointing anywhere) or not a directory is refused with an error naming it, before
/// anything is written for it; an entry that replaces an earlier one removes it first (never
/// writing through it); a hard link must lead to a file the archive unpacked. Returns the number
/// of entries written.
pub fn unpack(
    path: &Path,
    dest: &Path,
    skip: &dyn Fn(&Path) -> bool,
) -> Result<usize, ArchiveError> {
    unpack_until(path, dest, skip, &|| {
        crate::os::interrupt::global().signal()
    })
}

/// [`unpack`], stopping at the entry before which `stop` gives a signal (a kernel's headers are
/// tens of thousands of entries: a run told to stop does not go through them all).
fn unpack_until(
    path: &Path,
    dest: &Path,
    skip: &dyn Fn(&Path) -> bool,
    stop: &dyn Fn() -> Option<i32>,
) -> Result<usize, ArchiveError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut ar = open_package(path)?;
    fs::create_dir_all(dest).map_err(io_err(dest))?;
    let mut n = 0;
    // Directories known to be real directories of ours (no need to look again).
    let mut dirs: std::collections::HashSet<PathBuf> = std::collections::HashSet::new();
    for entry in ar.entries().map_err(io_err(path))? {
        if let Some(signal) = stop() {
            return Err(ArchiveError::Interrupted {
                path: path.to_path_buf(),
                signal,
            });
        }
        let mut entry = entry.map_err(io_err(path))?;
        let Some(p) = entry.path().ok().and_then(|p| entry_path(&p)) else {
            continue;
        };
        if p.components().count() == 1 && p.to_string_lossy().starts_with('.') {
            continue;
        }
        if skip(&p) {
            continue;
        }
        if let Some(parent) = p.parent() {
            ensure_dirs(dest, parent, &mut dirs).map_err(|why| refused(path, &p, why))?;
        }
        let to = dest.join(&p);
        let write_err = |source: io::Error| ArchiveError::Write {
            path: path.to_path_buf(),
            entry: p.clone(),
            source,
        };
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o1777;
        let existing = fs::symlink_metadata(&to).ok();
        let is_dir = existing.as_ref().is_some_and(|m| m.is_dir());
        if kind.is_dir() {
            if !is_dir {
                if existing.is_some() {
                    fs::remove_file(&to).map_err(write_err)?;
                }
                fs::create_dir(&to).map_err(write_err)?;
            }
            fs::set_permissions(&to, fs::Permissions::from_mode(mode)).map_err(write_err)?;
            dirs.insert(p.clone());
            n += 1;
            continue;
        }
        if !(kind.is_symlink() || kind.is_hard_link() || kind.is_file()) {
            continue;
        }
        if is_dir {
            return Err(refused(path, &p, "a directory is there already".into()));
        }
        if existing.is_some() {
            fs::remove_file(&to).map_err(write_err)?;
        }
        if kind.is_symlink() {
            let Some(target) = entry.link_name().ok().flatten().map(|t| t.into_owned()) else {
                continue;
            };
            std::os::unix::fs::symlink(&target, &to).map_err(write_err)?;
        } else if kind.is_hard_link() {
            let Some(target) = entry
                .link_name()
                .ok()
                .flatten()
                .and_then(|t| entry_path(&t))
            else {
                continue;
            };
            // Only to a regular file the archive unpacked, reached through real directories.
            let inside = target
                .parent()
                .is_none_or(|d| d.as_os_str().is_empty() || dirs.contains(d));
            let from = dest.join(&target);
            let regular = fs::symlink_metadata(&from).is_ok_and(|m| m.is_file());
            if !(inside && regular) {
                return Err(refused(
                    path,
                    &p,
                    format!(
                        "a hard link to {}, which the package does not hold",
                        target.display()
                    ),
                ));
            }
            fs::hard_link(&from, &to).map_err(write_err)?;
        } else {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&to)
                .map_err(write_err)?;
            io::copy(&mut entry, &mut file).map_err(write_err)?;
            // The mode as given (the umask took bits from create_new's), and the time as pacman
            // sets it: a build's stamp hashes the headers' sizes and times.
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(write_err)?;
            if let Ok(secs) = entry.header().mtime() {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
                file.set_modified(t).map_err(write_err)?;
            }
        }
        n += 1;
    }
    Ok(n)
}

/// Makes `rel` (relative to `dest`) a chain of real directories under `dest`, creating what is
/// missing; a component that is a link or a file is refused, named.
fn ensure_dirs(
    dest: &Path,
    rel: &Path,
    known: &mut std::collections::HashSet<PathBuf>,
) -> Result<(), String> {
    if rel.as_os_str().is_empty() || known.contains(rel) {
        return Ok(());
    }
    let mut cur = PathBuf::new();
    for c in rel.components() {
        cur.push(c);
        if known.contains(&cur) {
            continue;
        }
        let at = dest.join(&cur);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "writes through {}, a link the package made",
                    cur.display()
                ))
            }
            Ok(_) => return Err(format!("{} is not a directory", cur.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&at).map_err(|e| format!("{}: {e}", cur.display()))?;
            }
            Err(e) => return Err(format!("{}: {e}", cur.display())),
        }
        known.insert(cur.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtree_lists_paths_and_skips_metadata() {
        let text = "#mtree\n/set type=file uid=0 gid=0 mode=644\n\
            ./.BUILDINFO time=1.0 size=10 sha256digest=x\n\
            ./.PKGINFO time=1.0 size=10\n\
            ./usr time=1.0 mode=755 type=dir\n\
            ./usr/src/foo-1.0/dkms.conf time=1.0 size=3\n\
            ./usr/src/foo-1.0/with\\040space.c time=1.0 size=3\n";
        assert_eq!(
            mtree_paths(text),
            [
                "usr",
                "usr/src/foo-1.0/dkms.conf",
                "usr/src/foo-1.0/with space.c"
            ]
        );
    }

    /// A signal while unpacking stops it at the next entry.
    #[test]
    fn unpacking_stops_at_the_entry_after_a_signal() {
        let t = tempfile::tempdir().unwrap();
        let pkg = t.path().join("p.pkg.tar");
        let mut b = tar::Builder::new(File::create(&pkg).unwrap());
        for name in ["usr/a", "usr/b", "usr/c", "usr/d"] {
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, &b"x"[..]).unwrap();
        }
        b.finish().unwrap();
        drop(b);
        let asked = std::cell::Cell::new(0);
        let stop = || {
            asked.set(asked.get() + 1);
            (asked.get() > 2).then_some(libc::SIGINT)
        };
        let dest = t.path().join("layer");
        let r = unpack_until(&pkg, &dest, &|_| false, &stop);
        assert!(
            matches!(r, Err(ArchiveError::Interrupted { signal, .. }) if signal == libc::SIGINT),
            "{r:?}"
        );
        assert!(dest.join("usr/b").is_file());
        assert!(!dest.join("usr/c").exists());
    }

    #[test]
    fn entry_paths_never_climb_out() {
        assert_eq!(
            entry_path(Path::new("./usr/x")),
            Some(PathBuf::from("usr/x"))
        );
        assert_eq!(entry_path(Path::new("usr/../../etc")), None);
        assert_eq!(entry_path(Path::new("/etc/passwd")), None);
        assert_eq!(entry_path(Path::new("./")), None);
    }
}
