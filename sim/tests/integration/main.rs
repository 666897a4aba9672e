//! Every integration test of this crate in one binary (one link instead of one per file).

mod common;
mod directories;
mod dsl;
mod mutable;
mod regressions;
mod scenarios;
mod sweep;
