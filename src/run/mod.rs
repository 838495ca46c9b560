//! Running a plan: the loop that starts jobs from the queue with up to N at once and tells
//! the reporter ([`runner`]), through the one contract between the two ([`events`], where the
//! outcomes are counted once: `Tally`).
//!
//! Invariants: the runner knows nothing of dkms nor of display: it takes an `Executor` and emits
//! events; it never leaves its loop while a job runs; a job that panics is a failed job.

pub mod events;
pub mod runner;
