//! Every integration test of this crate in one binary (one link instead of one per file): formats
//! against Tahoe's vectors, and every client operation on the in-memory grid of
//! `lafs_core::testing` (uploads, ranged and whole downloads, mutable create, update, in-place
//! modify and read, directory operations).

mod cap_roundtrip;
mod dir_ops;
mod dirnode_vectors;
mod immutable_ops;
mod mutable_ops;
mod ranged_download;
mod zfec_known_outputs;
