//! Where mutable files get their RSA signing keys.
//!
//! Generating a 2048-bit key takes tens to hundreds of milliseconds, far longer than anything
//! else in creating a mutable file, and it needs randomness the core may not gather itself. So
//! the core asks a [`KeySource`] and never learns whether the key came from a background pool
//! (the std runtime), a fixed list (the simulator and tests: [`FixtureKeys`]), or a seeded RNG
//! ([`RngKeys`]). Every source hands out each key at most once: two files sharing a key would
//! share a write cap.

use rand_core::TryCryptoRng;
use rsa::PrivateKey as RsaPrivateKey;

use super::rsa_keys::{KeyError, MutableKey};

/// Why a key source could not provide a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySourceError {
    #[error(
        "no keys left: all {handed_out} fixture keys were handed out and keys are never reused; \
         give the source more keys"
    )]
    Exhausted { handed_out: usize },
    #[error("fixture key {index} is unusable: {source}")]
    BadKey { index: usize, source: KeyError },
    #[error("the key source was shut down while a key was being requested")]
    Closed,
    #[error("key generation failed: {0}")]
    Generation(String),
}

/// A supply of fresh mutable-file keys, each handed out once.
pub trait KeySource {
    /// The next key; never one handed out before.
    fn next_key(&mut self) -> Result<MutableKey, KeySourceError>;

    /// A key at once, or `None` when [`KeySource::next_key`] would wait for a generation (a
    /// pool that ran dry): a caller that can make keys itself then makes its own, so a burst
    /// of creations is not queued behind one generator. The default never says `None`.
    fn ready_key(&mut self) -> Option<Result<MutableKey, KeySourceError>> {
        Some(self.next_key())
    }
}

impl<K: KeySource + ?Sized> KeySource for &mut K {
    fn next_key(&mut self) -> Result<MutableKey, KeySourceError> {
        (**self).next_key()
    }

    fn ready_key(&mut self) -> Option<Result<MutableKey, KeySourceError>> {
        (**self).ready_key()
    }
}

impl<K: KeySource + ?Sized> KeySource for Box<K> {
    fn next_key(&mut self) -> Result<MutableKey, KeySourceError> {
        (**self).next_key()
    }

    fn ready_key(&mut self) -> Option<Result<MutableKey, KeySourceError>> {
        (**self).ready_key()
    }
}

/// A deterministic source over a fixed list of PEM or DER keys, handed out in order and never
/// twice, so a simulation seed or a test always gets the same keys (and so the same caps).
/// Deliberately not `Clone`: a copy would hand out the same keys again.
pub struct FixtureKeys {
    blobs: Vec<Vec<u8>>,
    next: usize,
}

impl std::fmt::Debug for FixtureKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key material stays out of logs.
        write!(
            f,
            "FixtureKeys {{ handed_out: {}, remaining: {} }}",
            self.next,
            self.remaining()
        )
    }
}

impl FixtureKeys {
    /// A source over these keys, each in any form [`MutableKey::from_bytes`] accepts. Keys are
    /// parsed when handed out, so a bad one is reported by [`KeySource::next_key`] with its index.
    pub fn new(blobs: Vec<Vec<u8>>) -> FixtureKeys {
        FixtureKeys { blobs, next: 0 }
    }

    /// A source over the PEM blocks of a concatenated PEM file, in file order. Text outside
    /// `-----BEGIN ...-----` / `-----END ...-----` blocks (comments) is ignored.
    pub fn from_pem_bundle(text: &str) -> FixtureKeys {
        FixtureKeys::new(split_pem_blocks(text))
    }

    /// Keys not yet handed out.
    pub fn remaining(&self) -> usize {
        self.blobs.len() - self.next
    }

    /// Keys handed out so far.
    pub fn handed_out(&self) -> usize {
        self.next
    }
}

impl KeySource for FixtureKeys {
    fn next_key(&mut self) -> Result<MutableKey, KeySourceError> {
        let index = self.next;
        let blob = self
            .blobs
            .get_mut(index)
            .ok_or(KeySourceError::Exhausted { handed_out: index })?;
        // The bytes are not needed again: a key is handed out once.
        let bytes = std::mem::take(blob);
        self.next += 1;
        MutableKey::from_bytes(&bytes).map_err(|source| KeySourceError::BadKey { index, source })
    }
}

/// Each `-----BEGIN`...`-----END ...-----` block of `text`, with its delimiters.
fn split_pem_blocks(text: &str) -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN ") {
            current = Some(String::new());
        }
        if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
            if line.starts_with("-----END ") {
                blocks.extend(current.take().map(String::into_bytes));
            }
        }
    }
    blocks
}

/// Keys generated from a caller-supplied RNG: deterministic with a seeded RNG (such as
/// [`Drbg`](super::drbg::Drbg)), but as slow as any RSA generation. For when a fixed list is too
/// short. The RNG may be fallible (`getrandom::SysRng`): a failure is
/// [`KeySourceError::Generation`].
#[derive(Debug)]
pub struct RngKeys<R> {
    rng: R,
}

impl<R: TryCryptoRng> RngKeys<R> {
    pub fn new(rng: R) -> RngKeys<R> {
        RngKeys { rng }
    }
}

impl<R: TryCryptoRng> KeySource for RngKeys<R> {
    fn next_key(&mut self) -> Result<MutableKey, KeySourceError> {
        generate_key(&mut self.rng)
    }
}

/// A fresh 2048-bit, e = 65537 mutable-file key from `rng`; an RNG failure is
/// [`KeySourceError::Generation`].
pub fn generate_key<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<MutableKey, KeySourceError> {
    let private =
        RsaPrivateKey::new(rng, 2048).map_err(|e| KeySourceError::Generation(e.to_string()))?;
    MutableKey::from_private(private).map_err(|e| KeySourceError::Generation(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::drbg::Drbg;

    fn key_pem(seed: u8) -> String {
        use rsa::pkcs8::EncodePrivateKey;
        let mut rng = Drbg::new([seed; 32]);
        let key = RsaPrivateKey::new(&mut rng, 2048).unwrap();
        key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap()
            .to_string()
    }

    #[test]
    fn fixture_hands_out_keys_in_order_once_then_says_exhausted() {
        let (a, b) = (key_pem(1), key_pem(2));
        let bundle = format!("# test keys\n{a}\n{b}");
        let expected_a = MutableKey::from_bytes(a.as_bytes()).unwrap();
        let expected_b = MutableKey::from_bytes(b.as_bytes()).unwrap();

        let mut keys = FixtureKeys::from_pem_bundle(&bundle);
        assert_eq!(keys.remaining(), 2);
        assert_eq!(
            keys.next_key().unwrap().fingerprint(),
            expected_a.fingerprint()
        );
        assert_eq!(
            keys.next_key().unwrap().fingerprint(),
            expected_b.fingerprint()
        );
        assert_eq!(
            keys.next_key().unwrap_err(),
            KeySourceError::Exhausted { handed_out: 2 }
        );
        assert_eq!(keys.remaining(), 0);
    }

    #[test]
    fn a_bad_fixture_key_is_named_by_index_and_skipped() {
        let good = key_pem(3);
        let mut keys = FixtureKeys::new(vec![b"junk".to_vec(), good.into_bytes()]);
        assert_eq!(
            keys.next_key().unwrap_err(),
            KeySourceError::BadKey {
                index: 0,
                source: KeyError::Unparseable
            }
        );
        assert!(keys.next_key().is_ok());
    }

    #[test]
    fn seeded_rng_source_is_deterministic_and_never_repeats() {
        let mut one = RngKeys::new(Drbg::new([7; 32]));
        let mut two = RngKeys::new(Drbg::new([7; 32]));
        let first = one.next_key().unwrap();
        assert_eq!(first.fingerprint(), two.next_key().unwrap().fingerprint());
        assert_ne!(first.fingerprint(), one.next_key().unwrap().fingerprint());
    }

    #[test]
    fn boxed_and_borrowed_sources_work_as_sources() {
        fn first(mut source: impl KeySource) -> Result<MutableKey, KeySourceError> {
            source.next_key()
        }
        let mut boxed: Box<dyn KeySource> = Box::new(FixtureKeys::new(Vec::new()));
        assert!(matches!(
            first(&mut boxed),
            Err(KeySourceError::Exhausted { handed_out: 0 })
        ));
    }
}
