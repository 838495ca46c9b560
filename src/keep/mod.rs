//! Kept module versions: the old version of an upgraded module stays installed until the new one
//! is installed, kernel by kernel.
//!
//! pacman's remove hook runs before the transaction, when `usr/src/foo-1.0` is still there and
//! `usr/src/foo-1.1` is not yet. Removing 1.0 then (as the stock hooks do) leaves a kernel without
//! foo when 1.1 fails to build for it. So when a new version of the same module arrives in the
//! transaction ([`crate::keep::arriving`]), the remove hook keeps 1.0 installed instead: it copies what
//! dkms needs to uninstall it later (its dkms.conf and the small files beside it, such as a
//! POST_REMOVE script) to `ROOT/var/lib/dkms-hook/kept/foo-1.0/`, and points dkms's
//! `foo/1.0/source` link there. dkms's own record (the build results, the `kernel-K-ARCH` links,
//! the installed files) stays dkms's, untouched: `dkms status` shows 1.0 installed, and
//! `dkms remove -m foo -v 1.0` works once `/usr/src/foo-1.0` is gone (dkms 3.4 refuses to touch a
//! version whose source link dangles, "broken").
//!
//! After the transaction, a build of foo for kernel K that finds a kept version installed there
//! builds first, and swaps only when the build succeeded (see `Worker::replace_kept` in `execute/work.rs`); when
//! it fails, the kept version stays installed and the failure says so; when the swap is cut short
//! (a time limit, a signal, a run killed), the kept version is put back, installed and verified
//! (see [`crate::execute::journal`] and [`crate::execute::settle`]). [`after::settle`] then unregisters
//! the kept versions installed nowhere any more, or whose module has no source left at all, and
//! removes their copies. A plain removal of the module (nothing of it arrives) removes its kept
//! versions with it ([`before::before_removal`]).

pub mod after;
pub mod arriving;
pub mod before;
