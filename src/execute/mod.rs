//! One job on the real system: the record of what a run is in the middle of ([`journal`]), the
//! check that what dkms said it installed is there and built for its kernel ([`verify`]), the
//! making whole of a pair whose job was stopped midway ([`settle`]), and the executor the runner
//! drives in production ([`executor`]).
//!
//! Invariants: a pair a job ends is installed and verified, or absent (or, for a swap cut short,
//! the kept version back); a job's failure carries what the user needs to fix it.

pub mod executor;
pub mod journal;
pub mod settle;
pub mod verify;
pub mod work;
