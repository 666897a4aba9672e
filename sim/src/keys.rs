//! Mutable-file keys for simulated clients: the repository's fixed RSA test keys
//! (tests/data/rsa-2048-fixture-keys.pem), handed out in order, so a seed replays with the same
//! keys and caps and no simulated time is spent on RSA generation.

pub use lafs_core::testing::keys::{fixture_keys, FIXTURE_KEYS_PEM, FIXTURE_KEY_COUNT};

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
