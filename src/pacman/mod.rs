//! pacman's files, read without libalpm: package files ([`archive`]), the package databases
//! ([`pkgdb`]), the pacman process that runs the hook ([`caller`]), where a transaction's package
//! files are ([`locate`]), and what a transaction changes ([`transaction`]). Shared by the
//! preflight and by the remove hook's keeping of an upgraded module.
//!
//! Invariants: never links libalpm (a hook runs after pacman itself may have been upgraded to a
//! new libalpm soname); never changes a pacman file; nothing here knows dkms.

pub mod archive;
pub mod caller;
pub mod locate;
pub mod pkgdb;
pub mod transaction;
