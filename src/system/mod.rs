//! What is on the machine, read, and the few file operations on dkms's layout: where the trees
//! are ([`trees`]), kernels ([`kernel`]), version order ([`version`]), dkms's own tree
//! ([`dkms_tree`]), how to call the installed dkms ([`dkms`]), what a build left ([`makelog`]),
//! module signing ([`signing`]), the preflight's builds ([`prebuilt`]), the kept versions of upgraded
//! modules ([`kept`]), depmod ([`depmod`]), dkms-hook's settings
//! ([`config`]).
//!
//! Invariants: nothing here decides what to build or remove; every path is normalised and
//! joined under the root before it reaches dkms; inside the folder, no file imports one that
//! imports it.

pub mod config;
pub mod depmod;
pub mod dkms;
pub mod dkms_tree;
pub mod history;
pub mod kept;
pub mod kernel;
pub mod makelog;
pub mod prebuilt;
pub mod signing;
pub mod trees;
pub mod version;
