//! What the user reads of a run: the live lines ([`reporter`]), the `--dry-run` text ([`dry_run`]), the `--json` plan ([`json`]),
//! the `--timings` page ([`timings`]).
//!
//! Invariants: fed by events and plans only: nothing here runs a process or reads the system.

pub mod dry_run;
pub mod json;
pub mod reporter;
pub mod timings;
