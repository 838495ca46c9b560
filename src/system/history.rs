//! What each module's build took last time, per kernel series: so that the build that takes
//! longest starts first, even when its cost cannot be guessed from its sources (a long serial
//! `configure`, a source tree that is mostly not compiled).
//!
//! One small text file, `ROOT/var/lib/dkms-hook/build-times`: a header line, then one line per
//! module and kernel series, `MODULE<TAB>SERIES<TAB>SECONDS`, the wall time of that module's last
//! build that compiled and succeeded there (a failed, interrupted, excluded or prebuilt job
//! teaches nothing). A kernel's series is its version without the last release number, and its
//! flavour ([`series`]): `6.1.0-56-amd64` and `6.1.0-57-amd64` are one series, so what a module
//! took for the kernel being replaced is what it is expected to take for the new one. The module
//! version is not part of the key: a new version of a module builds about as long as the old.
//!
//! Read with the inventory ([`History::load`]), written after a run ([`History::save`]), in one
//! rename, synced. A file that does not read (another program's, a newer format, garbage) is
//! ignored with a warning naming it ([`History::warning`]), never fatal: the costs are then
//! guessed from the sources, as without history, and the next run writes a good file in its
//! place.

use crate::system::trees::Trees;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file, relative to the root.
pub const FILE: &str = "var/lib/dkms-hook/build-times";

/// The first line of the file: names it and its format's version.
const HEADER: &str = "# dkms-hook build-times 1: module, kernel series, seconds of its last build";

/// A file larger than this is not ours (a module and series per line, a few dozen bytes each).
const MAX_BYTES: u64 = 1 << 20;

/// The kernel series of a release: the first two numbers of its version, then its flavour (the
/// last `-` part, when it starts with a letter). `6.1.0-56-amd64` -> `6.1-amd64`,
/// `6.6.72-1-lts` -> `6.6-lts`, `6.12.10-arch1-1` -> `6.12`, `6.12.10-zen1-1-zen` -> `6.12-zen`.
pub fn series(kernel: &str) -> String {
    let (version, rest) = kernel.split_once('-').unwrap_or((kernel, ""));
    let mut numbers = version.split('.');
    let major_minor = match (numbers.next(), numbers.next()) {
        (Some(a), Some(b)) => format!("{a}.{b}"),
        _ => version.to_string(),
    };
    match rest.rsplit('-').next() {
        Some(f) if f.starts_with(|c: char| c.is_ascii_alphabetic()) => format!("{major_minor}-{f}"),
        _ => major_minor,
    }
}

/// The build times kept from earlier runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// (module, series) -> milliseconds.
    times: BTreeMap<(String, String), u64>,
    /// Why the file on disk was ignored, naming it.
    pub warning: Option<String>,
}

impl History {
    /// The history kept under `trees`' root: empty when there is none, or (with a warning)
    /// when its file does not read.
    pub fn load(trees: &Trees) -> History {
        let path = trees.root.join(FILE);
        let shown = trees.display(&path).into_owned();
        let text = match fs::metadata(&path) {
            Err(_) => return History::default(),
            Ok(md) if !md.is_file() || md.len() > MAX_BYTES => {
                Err("not a dkms-hook build-times file".to_string())
            }
            Ok(_) => fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| String::from_utf8(b).map_err(|_| "not UTF-8".to_string())),
        };
        match text.and_then(|t| History::parse(&t)) {
            Ok(h) => h,
            Err(e) => History {
                times: BTreeMap::new(),
                warning: Some(format!(
                    "{shown}: {e}: ignored (build costs are guessed from the sources)"
                )),
            },
        }
    }

    /// The history in `text`, the file's contents.
    pub fn parse(text: &str) -> Result<History, String> {
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err("not a dkms-hook build-times file".to_string());
        }
        let mut times = BTreeMap::new();
        for (n, line) in lines.enumerate() {
            let bad = || format!("line {}: not MODULE<TAB>SERIES<TAB>SECONDS", n + 2);
            let mut f = line.split('\t');
            let (Some(m), Some(s), Some(secs), None) = (f.next(), f.next(), f.next(), f.next())
            else {
                return Err(bad());
            };
            let secs: f64 = secs.parse().map_err(|_| bad())?;
            if m.is_empty() || s.is_empty() || !secs.is_finite() || secs < 0.0 {
                return Err(bad());
            }
            times.insert(
                (m.to_string(), s.to_string()),
                (secs * 1000.0).round() as u64,
            );
        }
        Ok(History {
            times,
            warning: None,
        })
    }

    /// What `module`'s last build took on `kernel`'s series; on another series when it never
    /// built on that one (the longest of them): a module that is slow on one kernel is slow on
    /// all.
    pub fn took(&self, module: &str, kernel: &str) -> Option<Duration> {
        let own = self.times.get(&(module.to_string(), series(kernel)));
        let any = || {
            self.times
                .range((module.to_string(), String::new())..)
                .take_while(|((m, _), _)| m == module)
                .map(|(_, &ms)| ms)
                .max()
        };
        own.copied().or_else(any).map(Duration::from_millis)
    }

    /// Records that `module`'s build for `kernel` took `took`.
    pub fn learn(&mut self, module: &str, kernel: &str, took: Duration) {
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        self.times.insert((module.to_string(), series(kernel)), ms);
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The file's contents.
    pub fn text(&self) -> String {
        let mut out = format!("{HEADER}\n");
        for ((m, s), ms) in &self.times {
            out.push_str(&format!("{m}\t{s}\t{}.{:03}\n", ms / 1000, ms % 1000));
        }
        out
    }

    /// Writes the history under `trees`' root, in one rename, synced. The error names the file.
    pub fn save(&self, trees: &Trees) -> Result<(), String> {
        let path = trees.root.join(FILE);
        write(&path, &self.text()).map_err(|e| format!("{}: {e}", trees.display(&path)))
    }
}

/// Writes `text` to `path` through a temporary file beside it, synced, then the directory.
fn write(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    fs::create_dir_all(&dir)?;
    let tmp = dir.join(".build-times.tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    fs::File::open(&dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_the_version_without_its_last_numbers_and_the_flavour() {
        assert_eq!(series("6.1.0-56-amd64"), "6.1-amd64");
        assert_eq!(series("6.1.0-57-cloud-amd64"), "6.1-amd64");
        assert_eq!(series("6.6.72-1-lts"), "6.6-lts");
        assert_eq!(series("6.12.10-arch1-1"), "6.12");
        assert_eq!(series("6.12.10-zen1-1-zen"), "6.12-zen");
        assert_eq!(series("6.13"), "6.13");
    }

    #[test]
    fn what_is_learned_reads_back_and_serves_the_series() {
        let mut h = History::default();
        h.learn("nvidia", "6.1.0-56-amd64", Duration::from_millis(312_400));
        h.learn("zfs", "6.6.72-1-lts", Duration::from_millis(90_000));
        let back = History::parse(&h.text()).unwrap();
        assert_eq!(back, h);
        // A newer kernel of the series; zfs never built on 6.1-amd64: its time on another series.
        assert_eq!(
            back.took("nvidia", "6.1.0-57-amd64"),
            Some(Duration::from_millis(312_400))
        );
        assert_eq!(
            back.took("zfs", "6.1.0-57-amd64"),
            Some(Duration::from_secs(90))
        );
        assert_eq!(back.took("evdi", "6.1.0-57-amd64"), None);
        assert_eq!(back.took("nvidi", "6.1.0-57-amd64"), None);
    }

    #[test]
    fn a_foreign_or_corrupt_file_does_not_read() {
        assert!(History::parse("").is_err());
        assert!(History::parse("nvidia\t6.1-amd64\t3.0\n").is_err());
        let bad = format!("{HEADER}\nnvidia\t6.1-amd64\tlong\n");
        assert_eq!(
            History::parse(&bad).unwrap_err(),
            "line 2: not MODULE<TAB>SERIES<TAB>SECONDS"
        );
        assert!(History::parse(&format!("{HEADER}\nnvidia\t6.1\t-1\n")).is_err());
        assert!(History::parse(&format!("{HEADER}\nnvidia\t6.1\tNaN\n")).is_err());
    }

    #[test]
    fn a_file_that_does_not_read_is_ignored_with_a_warning_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let trees = Trees::defaults(d.path());
        assert_eq!(History::load(&trees), History::default(), "no file");
        fs::create_dir_all(d.path().join("var/lib/dkms-hook")).unwrap();
        fs::write(d.path().join(FILE), b"\xff\xfe").unwrap();
        let h = History::load(&trees);
        assert!(h.is_empty());
        let w = h.warning.unwrap();
        assert!(
            w.contains("var/lib/dkms-hook/build-times") && w.contains("ignored"),
            "{w}"
        );

        let mut h = History::default();
        h.learn("evdi", "6.1.0-56-amd64", Duration::from_millis(16_400));
        h.save(&trees).unwrap();
        assert_eq!(History::load(&trees), h);
    }
}
