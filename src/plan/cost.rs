//! What a job costs and how jobs rank: the one place for the scheduling formula.
//!
//! A job's cost is a rough amount of work in bytes of C source: dkms's own fixed cost per call
//! ([`DKMS_CALL`]) plus the C it compiles. A job's priority is its own cost plus the cost of
//! everything that waits on it through dependencies (cargo's `queue_finished`), so long chains start
//! first; its rank among ready jobs adds the work left in its module version's other kernels, which
//! must run one after the other (one shared build directory), a chain like a dependency.
//!
//! What a module's build took last time ([`crate::system::history`]) beats the guess from its
//! sources: [`took`] turns that wall time into the same unit, at the rate the guess assumes
//! ([`PER_SECOND`]), so a job with history and one without still compare.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// What one dkms call costs besides compiling, in bytes of C it could have compiled meanwhile.
/// Measured on 7 real modules (bench/rebuild.sh): a build takes about 1.3 s of dkms's own bash,
/// signing and checks, plus about 1 s per 36 KB of C. Without it, two one-file modules look
/// free and are left for the end, where their kernels' jobs run one after the other on one core.
pub const DKMS_CALL: u64 = 48 * 1024;

/// Bytes of C compiled per second of a build, the rate [`DKMS_CALL`]'s measure found (1 s per
/// 36 KB): what turns a build's wall time from history into a cost.
pub const PER_SECOND: u64 = 36 * 1024;

/// The cost of a build that took `took` last time (at least 1, so that it never looks free).
pub fn took(took: std::time::Duration) -> u64 {
    let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX / PER_SECOND);
    (ms.saturating_mul(PER_SECOND) / 1000).max(1)
}

/// A removal: no compiler, and nothing waits on it.
pub const REMOVE: u64 = 1;

/// The cost of building the module whose sources are in `dir`: one dkms call plus its C files.
pub fn build(dir: &Path) -> u64 {
    fn walk(dir: &Path, depth: u32) -> u64 {
        let Ok(rd) = fs::read_dir(dir) else { return 0 };
        let mut sum = 0;
        for e in rd.flatten() {
            let Ok(t) = e.file_type() else { continue };
            let p = e.path();
            if t.is_dir() && depth < 6 {
                sum += walk(&p, depth + 1);
            } else if t.is_file() && p.extension().is_some_and(|x| x == "c") {
                sum += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        sum
    }
    DKMS_CALL + walk(dir, 0)
}

/// Each node's priority: its own cost plus the cost of everything that needs it, transitively.
pub fn priorities(cost: &[u64], dependents: &[Vec<usize>]) -> Vec<u64> {
    (0..cost.len())
        .map(|i| {
            let mut seen = BTreeSet::new();
            let mut stack = vec![i];
            let mut total = 0;
            while let Some(x) = stack.pop() {
                if seen.insert(x) {
                    total += cost[x];
                    stack.extend(&dependents[x]);
                }
            }
            total
        })
        .collect()
}

/// A ready node's rank: its priority plus the work still to start in its group besides itself.
pub fn rank(priority: u64, group_left: u64, own_cost: u64) -> u64 {
    priority + group_left - own_cost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_counts_everything_waiting_once() {
        // 0 <- 1 <- 3, 0 <- 2 <- 3 (a diamond: 3 counts once for 0)
        let deps = vec![vec![1, 2], vec![3], vec![3], vec![]];
        assert_eq!(
            priorities(&[1, 10, 100, 1000], &deps),
            [1111, 1010, 1100, 1000]
        );
    }

    #[test]
    fn a_time_from_history_costs_at_the_rate_of_the_guess() {
        use std::time::Duration;
        assert_eq!(took(Duration::from_secs(1)), PER_SECOND);
        assert_eq!(took(Duration::from_millis(1500)), PER_SECOND * 3 / 2);
        assert_eq!(took(Duration::ZERO), 1);
    }

    #[test]
    fn a_build_costs_one_dkms_call_plus_its_c() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("src")).unwrap();
        fs::write(d.path().join("src/a.c"), [b'x'; 100]).unwrap();
        fs::write(d.path().join("b.c"), [b'x'; 10]).unwrap();
        fs::write(d.path().join("b.h"), [b'x'; 1000]).unwrap();
        assert_eq!(build(d.path()), DKMS_CALL + 110);
    }
}
