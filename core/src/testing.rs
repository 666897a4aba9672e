//! Test support, compiled only with the `testing` feature (lafs-core's own tests turn it on;
//! lafs-tests and lafs-sim use it): an in-memory grid that pumps one operation's messages to
//! storage servers and counts round trips ([`grid`]), the fixed RSA test keys ([`keys`]) and
//! deterministic test data ([`grid::test_data`]). Pure like the rest of the crate.

pub mod grid;
pub mod keys;
