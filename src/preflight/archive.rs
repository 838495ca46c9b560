//! pacman's tar archives: package files (`.pkg.tar.zst`, `.xz`, `.gz`, ...) and sync databases
//! (`REPO.db`, a tar of `NAME-VERSION/desc` entries), opened whatever their compression, which is
//! told by the first bytes (a sync database's name says nothing of it), with the ALPM project's
//! decoders (`alpm-compress`). Pure Rust and its own C decoders: no libalpm, no libarchive.
//!
//! Also: a package's file list (its `.MTREE` when it has one, read without decompressing the
//! rest; else every entry), and extracting the entries under given prefixes to a scratch root,
//! with the package's symlinks made to point where they will point after the transaction.

use alpm_compress::decompression::{CompressionDecoder, DecompressionSettings};
use std::fs::File;
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

/// What a package file says of itself: its name (`.PKGINFO`'s `pkgname`) and the paths it
/// installs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub name: Option<String>,
    /// Relative, no trailing `/`; directories included.
    pub paths: Vec<String>,
}

/// The name and paths of a package. The paths come from its `.MTREE` when it has one among the
/// metadata entries at its start (makepkg puts it there), so that a large package is not
/// decompressed whole; else from the archive's own entries.
pub fn package_listing(path: &Path) -> Result<Listing, ArchiveError> {
    let mut ar = open(path)?;
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
            out.name = text.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == "pkgname").then(|| v.trim().to_owned())
            });
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

/// Extracts the entries of package `path` under any of `prefixes` (relative paths like
/// `usr/lib/modules/K/build`) into `dest`, as if `dest` were the system root. Regular files and
/// directories keep their modes. A symlink is made absolute and pointed where it will lead after
/// the transaction: into `dest` when it leads into an extracted prefix (the package's own
/// files), else to the same place under `system_root` (what stays on the system). Returns the
/// number of entries written.
pub fn extract(
    path: &Path,
    prefixes: &[PathBuf],
    dest: &Path,
    system_root: &Path,
) -> Result<usize, ArchiveError> {
    let mut ar = open(path)?;
    let mut n = 0;
    let under = |p: &Path| prefixes.iter().any(|pre| p.starts_with(pre));
    for entry in ar.entries().map_err(io_err(path))? {
        let mut entry = entry.map_err(io_err(path))?;
        let Some(p) = entry.path().ok().and_then(|p| entry_path(&p)) else {
            continue;
        };
        if !under(&p) {
            continue;
        }
        let to = dest.join(&p);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(&to))?;
        }
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            let Some(target) = entry.link_name().ok().flatten().map(|t| t.into_owned()) else {
                continue;
            };
            let mapped = map_link(&p, &target, &under, dest, system_root);
            let _ = std::fs::remove_file(&to);
            std::os::unix::fs::symlink(&mapped, &to).map_err(io_err(&to))?;
        } else if kind.is_hard_link() {
            let Some(target) = entry
                .link_name()
                .ok()
                .flatten()
                .and_then(|t| entry_path(&t))
            else {
                continue;
            };
            let _ = std::fs::remove_file(&to);
            // A hard link to a file outside the prefixes has nothing to link to: left out.
            if std::fs::hard_link(dest.join(target), &to).is_err() {
                continue;
            }
        } else if kind.is_dir() {
            std::fs::create_dir_all(&to).map_err(io_err(&to))?;
        } else if kind.is_file() {
            entry.unpack(&to).map_err(io_err(&to))?;
        } else {
            continue;
        }
        n += 1;
    }
    Ok(n)
}

/// Where the symlink at system path `link` (relative to the root) with `target` should point in
/// the scratch root: see [`extract`].
fn map_link(
    link: &Path,
    target: &Path,
    extracted: &impl Fn(&Path) -> bool,
    dest: &Path,
    system_root: &Path,
) -> PathBuf {
    let from_root = if target.is_absolute() {
        target.to_path_buf()
    } else {
        Path::new("/")
            .join(link.parent().unwrap_or(Path::new("")))
            .join(target)
    };
    let rel = crate::trees::normalize(&from_root);
    let rel = rel.strip_prefix("/").unwrap_or(&rel).to_path_buf();
    if extracted(&rel) {
        dest.join(rel)
    } else {
        system_root.join(rel)
    }
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

    #[test]
    fn links_into_the_package_go_to_scratch_the_others_to_the_system() {
        let pre = [PathBuf::from("usr/lib/modules/K/build")];
        let under = |p: &Path| pre.iter().any(|x| p.starts_with(x));
        let link = Path::new("usr/lib/modules/K/build/scripts");
        let m = |t: &str| map_link(link, Path::new(t), &under, Path::new("/s"), Path::new("/"));
        // Relative, inside the package.
        assert_eq!(
            m("arch/x86/x"),
            Path::new("/s/usr/lib/modules/K/build/arch/x86/x")
        );
        // Absolute, inside the package.
        assert_eq!(
            m("/usr/lib/modules/K/build/tools"),
            Path::new("/s/usr/lib/modules/K/build/tools")
        );
        // Relative and absolute, outside: what is on the system.
        assert_eq!(
            m("../../../../src/common/scripts"),
            Path::new("/usr/src/common/scripts")
        );
        assert_eq!(
            m("/usr/src/common/scripts"),
            Path::new("/usr/src/common/scripts")
        );
        let m2 = map_link(
            link,
            Path::new("/usr/src/c"),
            &under,
            Path::new("/s"),
            Path::new("/r"),
        );
        assert_eq!(m2, Path::new("/r/usr/src/c"));
    }
}
