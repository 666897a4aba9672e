//! Every integration test of this crate in one binary (one link instead of one per file).

mod cap_roundtrip;
mod dirnode_vectors;
mod zfec_known_outputs;
