//! Every integration test of this crate in one binary (one link instead of one per file).

mod browser;
mod cli;
mod dirs;
mod gateway;
mod load;
mod mutable_net;
