//! Version order as dkms sees it.
//!
//! dkms picks "the newest version" and checks BUILD_EXCLUSIVE_KERNEL_MIN/MAX with `sort -V`, whose
//! core is Debian's version comparison (`verrevcmp`): runs of non-digits compare character by
//! character (`~` before everything, even the end; letters before other characters), runs of digits
//! compare as numbers. No crate mirrors exactly that order, so it is written here, in a few lines.

use std::cmp::Ordering;

/// Compares two versions the way `sort -V` orders them.
pub fn cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // Non-digit prefix.
        loop {
            let ca = a.first().copied().filter(|c| !c.is_ascii_digit());
            let cb = b.first().copied().filter(|c| !c.is_ascii_digit());
            if ca.is_none() && cb.is_none() {
                break;
            }
            let (oa, ob) = (order(ca), order(cb));
            if oa != ob {
                return oa.cmp(&ob);
            }
            a = &a[1..];
            b = &b[1..];
        }
        // Digit run, as a number (leading zeros ignored, no overflow).
        let da = digits(&mut a);
        let db = digits(&mut b);
        let o = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn digits<'a>(s: &mut &'a [u8]) -> &'a [u8] {
    let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let (run, rest) = s.split_at(n);
    *s = rest;
    let z = run.iter().take_while(|&&c| c == b'0').count();
    &run[z..]
}

fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

/// The greatest of several versions, by [`cmp`].
pub fn newest<'a, I: IntoIterator<Item = &'a str>>(versions: I) -> Option<&'a str> {
    versions.into_iter().max_by(|a, b| cmp(a, b))
}

/// Sort key that orders kernel releases by version inside tuples.
pub(crate) fn key(s: &str) -> Key<'_> {
    Key(s)
}

/// A string ordered by [`cmp`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Key<'a>(&'a str);

impl PartialOrd for Key<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        cmp(self.0, other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn orders_like_sort_v() {
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.2", "1.10", Less),
            ("6.1.0-55-amd64", "6.1.0-56-amd64", Less),
            ("6.9.0", "6.10.1-arch1-1", Less),
            ("1.0~rc1", "1.0", Less),
            ("1.0", "1.0a", Less),
            ("0.12.7", "0.12.7-2", Less),
            ("5.18", "6.1.0-55-amd64", Less),
            ("3.9", "3.10", Less),
            ("007", "7", Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(cmp(a, b), want, "{a} vs {b}");
            assert_eq!(cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn newest_picks_numeric_max() {
        assert_eq!(newest(["1.9", "1.10", "1.2"]), Some("1.10"));
        assert_eq!(newest(Vec::<&str>::new()), None);
    }
}
