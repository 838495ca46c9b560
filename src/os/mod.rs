//! The process-level machinery, nothing of dkms: children that end when they exit with their
//! output in a file ([`process`]), the stopping signals and their forwarding to the children's
//! process groups ([`interrupt`]), the children that die with a killed run ([`watchdog`]), one
//! run at a time ([`lock`]), one make jobserver for the whole run ([`jobserver`]), text from
//! outside made safe to print ([`text`]).
//!
//! Invariants: nothing here knows dkms, pacman, a module or a kernel; a child is finished when it
//! exits and is reaped, never when its pipes close; every child runs in a process group of its own.

pub mod interrupt;
pub mod jobserver;
pub mod lock;
pub mod process;
pub mod text;
pub mod watchdog;
