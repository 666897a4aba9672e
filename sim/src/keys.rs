//! Mutable-file keys for simulated clients: the repository's fixed RSA test keys
//! (tests/data/rsa-2048-fixture-keys.pem), handed out in order, so a seed replays with the same
//! keys and caps and no simulated time is spent on RSA generation.

use lafs_core::crypto::key_source::FixtureKeys;

/// The fixture file's text, embedded at build time.
pub const FIXTURE_KEYS_PEM: &str = include_str!("../../tests/data/rsa-2048-fixture-keys.pem");

/// How many keys the fixture file holds: a run creating more mutable files gets
/// `KeySourceError::Exhausted`.
pub const FIXTURE_KEY_COUNT: usize = 64;

/// A fresh source over all fixture keys, in file order; one per simulation run.
pub fn fixture_keys() -> FixtureKeys {
    FixtureKeys::from_pem_bundle(FIXTURE_KEYS_PEM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lafs_core::crypto::key_source::KeySource;

    #[test]
    fn the_simulator_gets_all_fixture_keys_in_order() {
        let mut keys = fixture_keys();
        assert_eq!(keys.remaining(), FIXTURE_KEY_COUNT);
        let first = keys.next_key().unwrap().fingerprint();
        assert_eq!(fixture_keys().next_key().unwrap().fingerprint(), first);
        assert_ne!(keys.next_key().unwrap().fingerprint(), first);
    }
}
