//! The repository's fixed RSA test keys (tests/data/rsa-2048-fixture-keys.pem) as a
//! deterministic key source: suites and simulations that create mutable files get the same keys
//! and caps on every run and spend no time on RSA generation. Each source hands out each key
//! once; two sources hand out the same keys, so give one source to everything that must not
//! collide.

use crate::crypto::key_source::FixtureKeys;

/// The fixture file's text, embedded at build time.
pub const FIXTURE_KEYS_PEM: &str = include_str!("../../../tests/data/rsa-2048-fixture-keys.pem");

/// How many keys the fixture file holds: a run creating more mutable files gets
/// `KeySourceError::Exhausted`.
pub const FIXTURE_KEY_COUNT: usize = 64;

/// A fresh source over all fixture keys, in file order.
pub fn fixture_keys() -> FixtureKeys {
    FixtureKeys::from_pem_bundle(FIXTURE_KEYS_PEM)
}
