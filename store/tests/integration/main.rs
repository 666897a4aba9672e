//! Every integration test of this crate in one binary (one link instead of one per file).

mod crash_steps;
mod disk_full;
mod disk_store;
mod migration;
mod small_shares;
mod support;
