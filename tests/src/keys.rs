//! The repository's fixed RSA test keys, from lafs-core's `testing` module (one loader for the
//! suites, the simulator and lafs-core's own tests).

pub use lafs_core::testing::keys::{fixture_keys, FIXTURE_KEYS_PEM, FIXTURE_KEY_COUNT};

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
