//! dkms-hook: the engine behind pacman's DKMS hooks.
//!
//! One folder per stage of the pipeline, declared here in the order imports flow: a module may
//! use those declared before its own folder, never one declared after it (tests/it/layers.rs
//! checks it, and that no module imports one that imports it back):
//! `os` (processes, signals, the lock) -> `system` (the trees, kernels, dkms's tree, the dkms
//! program) -> `dkmsconf` (what a dkms.conf says) -> `pacman` (pacman's files) -> `plan` (pure:
//! from what pacman sent to the jobs, in order) -> `run` (the loop, its events) -> `execute` (one
//! job on the real system) -> `keep` (an upgraded module's old version kept until the new one
//! builds) -> `report` (what the user reads) -> `preflight`, `status`, `lint` (the other modes).

pub mod dkmsconf;
pub mod execute;
pub mod keep;
pub mod lint;
pub mod os;
pub mod pacman;
pub mod plan;
pub mod preflight;
pub mod report;
pub mod run;
pub mod status;
pub mod system;

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
