//! The repository's fixed RSA test keys (tests/data/rsa-2048-fixture-keys.pem) as a
//! deterministic key source, so suites creating mutable files get the same caps on every run
//! without spending time on RSA generation. The simulator embeds the same file; this module
//! re-exports its loader so there is one. Each source hands out each key once; two sources hand
//! out the same keys, so give one source to everything that must not collide.

pub use lafs_sim::keys::{fixture_keys, FIXTURE_KEYS_PEM, FIXTURE_KEY_COUNT};

#[cfg(test)]
mod tests {
    use super::*;
    use lafs_core::crypto::key_source::{KeySource, KeySourceError};
    use std::collections::BTreeSet;

    #[test]
    fn all_fixture_keys_load_are_distinct_and_then_run_out() {
        let mut keys = fixture_keys();
        assert_eq!(keys.remaining(), FIXTURE_KEY_COUNT);
        let mut seen = BTreeSet::new();
        for i in 0..FIXTURE_KEY_COUNT {
            let key = keys
                .next_key()
                .unwrap_or_else(|e| panic!("fixture key {i}: {e}"));
            assert!(seen.insert(key.fingerprint()), "fixture key {i} repeats");
        }
        assert_eq!(
            keys.next_key().unwrap_err(),
            KeySourceError::Exhausted {
                handed_out: FIXTURE_KEY_COUNT
            }
        );
    }

    #[test]
    fn two_sources_give_the_same_sequence() {
        let (mut a, mut b) = (fixture_keys(), fixture_keys());
        for _ in 0..3 {
            assert_eq!(
                a.next_key().unwrap().fingerprint(),
                b.next_key().unwrap().fingerprint()
            );
        }
    }
}
