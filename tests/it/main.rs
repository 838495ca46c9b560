//! dkms-hook's integration tests, in one test binary (one link, one run): the engine on real dkms
//! and real kernel headers, the same scenarios on newer dkms versions, `status` against `dkms status`,
//! the fixtures alone, and whole transactions under a real pacman. The tests that need root, dkms,
//! headers or pacman are `#[ignore]`d; `tests/run` runs them all.

mod cli;
mod common;
mod dkmsconf_rules;
mod docs;
mod engine;
mod fixtures_smoke;
mod history;
mod jobserver;
mod keep;
mod kernels;
mod layers;
mod lint;
mod logs;
mod newer_dkms;
mod orphans;
mod pacman;
mod preflight;
mod preflight_stopping;
mod runner;
mod scenarios;
mod signing;
mod status;
mod stopping;
mod suite;
mod timings;
