//! dkms-hook: the engine behind pacman's DKMS hooks.
//!
//! One folder per stage of the pipeline, declared here in the order imports flow: a module may
//! use those declared before its own folder, never one declared after it (tests/it/layers.rs
//! checks it, and that no module imports one that imports it back):
//! `os` (processes, signals, the lock) -> `system` (the trees, kernels, dkms's tree, the dkms
//! program) -> `dkmsconf` (what a dkms.conf says) -> `pacman` (pacman's files) -> `plan` (pure:
//! from what pacman sent to the jobs, in order) -> `run` (the loop, its events) -> `execute` (one
//! job on the real system) -> `keep` (an upgraded module's old version kept until the new one
//! builds) -> `report` (what the user reads) -> `preflight`, `status`, `lint` (the other modes)
//! -> `commands` (one file per mode of the command line; the binary's main.rs dispatches to them).

// The stages, in the order imports flow (each line may use those above it).
pub mod os;
// What is on the machine.
pub mod system;
// What a dkms.conf says.
pub mod dkmsconf;
// pacman's files.
pub mod pacman;
// From what pacman sent to the jobs.
pub mod plan;
// The loop that runs them.
pub mod run;
// One job on the real system.
pub mod execute;
// An upgraded module's old version, kept until the new one builds.
pub mod keep;
// What the user reads.
pub mod report;
// The other modes: the trial before a transaction,
pub mod preflight;
// dkms status's lines, and what dkms left behind,
pub mod status;
// a package's dkms.conf checked.
pub mod lint;
// One file per mode of the command line, at the top.
pub mod commands;

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
