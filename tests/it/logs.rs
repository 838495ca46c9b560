//! A failed build's logs, whatever their size and bytes (issue 16, item 6): the failure block
//! shows the compiler's own error line and the kept log holds dkms's make.log whole, byte for
//! byte, when make.log is 200 MB of warnings (dkms-hook's own memory stays under 100 MB) and
//! when it is not UTF-8 (gcc quoting a Latin-1 source line). Real dkms builds the fixtures
//! `dkmshook-noisy` (its MAKE prints 200 MB of warnings before the compiler fails) and
//! `dkmshook-latin1` (a Latin-1 source that does not compile); dkms's own make.log, still in the
//! version's build directory after the failure, is the referee of what the kept log must hold.

use crate::common::{kernels, run_command_peak_rss, RunOutput, TestRoot};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// The most memory dkms-hook may hold at once for a 200 MB make.log: generous (it reads the log
/// in bounded pieces), and far below the log's size.
const MAX_RSS_KIB: u64 = 100 * 1024;

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_200_mb_make_log_shows_its_error_and_is_kept_whole_in_under_100_mb_of_memory() {
    let root = TestRoot::new();
    let k = kernels().last().unwrap().clone();
    root.add_kernel(&k);
    root.add_fixture("dkmshook-noisy-1.0");
    let mut cmd = root.command();
    cmd.arg("install");
    let (out, peak_kib) = run_command_peak_rss(cmd, "usr/src/dkmshook-noisy-1.0/dkms.conf\n");
    assert_eq!(out.code, 1, "{}", out.dump());
    let make_log = root.join("var/lib/dkms/dkmshook-noisy/1.0/build/make.log");
    let size = std::fs::metadata(&make_log).unwrap().len();
    assert!(size > 200_000_000, "make.log has only {size} bytes");
    assert!(
        out.combined
            .lines()
            .any(|l| l.contains("dkmshook_noisy.c:7:16: error: ")
                && l.contains("dkmshook_noisy_undeclared")),
        "the compiler's error is not shown: {}",
        out.dump()
    );
    assert!(
        !out.combined.contains("warning: unused variable"),
        "warnings are shown: {}",
        out.dump()
    );
    assert_kept_whole(&root, &out, "dkmshook-noisy-1.0", &make_log);
    assert!(
        peak_kib < MAX_RSS_KIB,
        "dkms-hook held {} MiB at its peak for a {} MB make.log (bound: {} MiB)",
        peak_kib / 1024,
        size / 1_000_000,
        MAX_RSS_KIB / 1024
    );
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_latin1_make_log_shows_the_compilers_error_and_is_kept_byte_for_byte() {
    latin1_make_log(&TestRoot::new());
}

/// The Latin-1 case on any dkms (tests/it/newer_dkms.rs runs it on 3.2.2 and 3.4.3 too).
pub fn latin1_make_log(root: &TestRoot) {
    let k = kernels().last().unwrap().clone();
    root.add_kernel(&k);
    root.add_fixture("dkmshook-latin1-1.0");
    let out = root.run_merged(&["install"], "usr/src/dkmshook-latin1-1.0/dkms.conf\n");
    assert_eq!(out.code, 1, "{}", out.dump());
    let make_log = root.join("var/lib/dkms/dkmshook-latin1/1.0/build/make.log");
    let bytes = std::fs::read(&make_log).unwrap();
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "the premise: make.log is not UTF-8"
    );
    let text = &out.combined;
    assert!(
        text.lines()
            .any(|l| l.contains("dkmshook_latin1.c:7:16: error: ")
                && l.contains("dkmshook_latin1_undeclared")),
        "the compiler's error is not shown: {}",
        out.dump()
    );
    // gcc's quote of the line, its Latin-1 bytes shown as U+FFFD.
    assert!(
        text.lines().any(|l| l.contains(
            "7 |         return dkmshook_latin1_undeclared; /* d\u{fffd}j\u{fffd} vu, na\u{fffd}ve */"
        )),
        "the source line is not shown: {}",
        out.dump()
    );
    assert_kept_whole(root, &out, "dkmshook-latin1-1.0", &make_log);
}

/// The kept log that the failure block names holds what dkms printed, then `==> make.log` and
/// dkms's make.log byte for byte, to its end.
fn assert_kept_whole(root: &TestRoot, out: &RunOutput, mv: &str, make_log: &Path) {
    let line = out
        .combined
        .lines()
        .find(|l| l.trim_start().starts_with("full log: ") && l.contains(mv))
        .unwrap_or_else(|| panic!("no log path in the failure block: {}", out.dump()));
    let kept = root.join(line.split_whitespace().last().unwrap());
    let marker = b"\n==> make.log\n";
    let head = read_prefix(&kept, 1 << 16);
    assert!(
        head.starts_with(b"==> dkms output ("),
        "{}: {:?}",
        kept.display(),
        String::from_utf8_lossy(&head[..head.len().min(200)])
    );
    let at = head
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap_or_else(|| panic!("{}: no make.log in the kept log", kept.display()))
        + marker.len();
    let kept_len = std::fs::metadata(&kept).unwrap().len();
    let log_len = std::fs::metadata(make_log).unwrap().len();
    assert_eq!(
        kept_len - at as u64,
        log_len,
        "{}: the kept make.log is not as long as {}",
        kept.display(),
        make_log.display()
    );
    assert!(
        same_bytes(&kept, at as u64, make_log),
        "{}: the kept make.log differs from {}",
        kept.display(),
        make_log.display()
    );
}

/// The first `n` bytes of a file (fewer if it is shorter).
fn read_prefix(path: &PathBuf, n: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    File::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .take(n)
        .read_to_end(&mut buf)
        .unwrap();
    buf
}

/// Whether `a` from byte `offset` on holds exactly `b`'s bytes, compared piece by piece.
fn same_bytes(a: &Path, offset: u64, b: &Path) -> bool {
    use std::io::{Seek, SeekFrom};
    let mut fa = File::open(a).unwrap();
    fa.seek(SeekFrom::Start(offset)).unwrap();
    let mut ra = BufReader::new(fa);
    let mut rb = BufReader::new(File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let na = read_full(&mut ra, &mut ba);
        let nb = read_full(&mut rb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

/// Fills `buf` as far as the reader goes; the number of bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).unwrap() {
            0 => break,
            got => n += got,
        }
    }
    n
}
