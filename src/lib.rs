//! dkms-hook: the engine behind pacman's DKMS hooks.
//!
//! The pipeline, one module per stage:
//! targets (what pacman sent) -> inventory (kernels, module sources, the dkms tree)
//! -> plan (pure: which jobs, in which order, what is skipped and why)
//! -> queue + runner (parallel scheduling) -> execute (one `dkms` process per job, then verify)
//! -> report (what the user sees, from runner events only).

pub mod arriving;
pub mod config;
pub mod cost;
pub mod dkms;
pub mod dkms_tree;
pub mod dkmsconf;
pub mod events;
pub mod execute;
pub mod interrupt;
pub mod inventory;
pub mod journal;
pub mod json;
pub mod kept;
pub mod kernel;
pub mod lint;
pub mod lock;
pub mod makelog;
pub mod orphans;
pub mod plan;
pub mod prebuilt;
pub mod preflight;
pub mod process;
pub mod queue;
pub mod report;
pub mod runner;
pub mod settle;
pub mod signing;
pub mod status;
pub mod targets;
pub mod timings;
pub mod trees;
pub mod verify;
pub mod version;
pub mod watchdog;

/// Sort key that orders kernel releases by version inside tuples.
pub(crate) fn version_key(s: &str) -> VersionKey<'_> {
    VersionKey(s)
}

/// A string ordered by [`version::cmp`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct VersionKey<'a>(&'a str);

impl PartialOrd for VersionKey<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for VersionKey<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        version::cmp(self.0, other.0)
    }
}

/// A small seeded generator (xorshift64) for the fuzz loops of the tests: the same inputs on
/// every run, no crate needed.
#[cfg(test)]
pub(crate) mod test_rng {
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// A number below `n`.
        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        /// One of `from`.
        pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            from[self.below(from.len())]
        }
    }
}
