//! What the user reads of a run: the live lines ([`reporter`]), the `--json` plan ([`json`]),
//! the `--timings` page ([`timings`]).
//!
//! Invariants: fed by events and plans only: nothing here runs a process or reads the system.

pub mod json;
pub mod reporter;
pub mod timings;
