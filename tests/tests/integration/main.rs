//! Every integration test of this crate in one binary (one link instead of one per file).

mod dir_ops;
mod e2e;
mod immutable_ops;
mod mutable_ops;
mod ranged_download;
mod tahoe_vectors;
