//! A deterministic random bit generator for the core: SHA-256 in counter mode over a 32-byte seed
//! the caller supplies.
//!
//! The core takes no randomness from the OS. Operations that need random bytes (mutable-file
//! salts, RSA-PSS signature salts) take one seed from their caller and expand it here, so a
//! simulator seed reproduces every byte while a runtime seeding from the OS gets unpredictable
//! output.

use sha2::{Digest, Sha256};

/// Expands a seed into a stream of bytes: block i = SHA-256("lafs-drbg-v1" ‖ seed ‖ i).
#[derive(Clone)]
pub struct Drbg {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl std::fmt::Debug for Drbg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drbg")
            .field("counter", &self.counter)
            .finish()
    }
}

impl Drbg {
    pub fn new(seed: [u8; 32]) -> Drbg {
        Drbg {
            seed,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }

    /// An independent stream for one purpose, so adding a use of one stream never shifts another.
    pub fn fork(&mut self, purpose: &[u8]) -> Drbg {
        let mut h = Sha256::new();
        h.update(b"lafs-drbg-fork-v1");
        h.update(self.seed);
        h.update((purpose.len() as u64).to_be_bytes());
        h.update(purpose);
        Drbg::new(h.finalize().into())
    }

    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        self.fill(&mut out);
        out
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for byte in out {
            if self.used == 32 {
                let mut h = Sha256::new();
                h.update(b"lafs-drbg-v1");
                h.update(self.seed);
                h.update(self.counter.to_be_bytes());
                self.block = h.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
    }
}

// Infallible, so it is also a `rand_core::Rng` / `CryptoRng`.
impl rand_core::TryRng for Drbg {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(u32::from_be_bytes(self.array()))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(u64::from_be_bytes(self.array()))
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Self::Error> {
        self.fill(dest);
        Ok(())
    }
}

// Unpredictable exactly when the seed is; callers outside tests seed from the OS.
impl rand_core::TryCryptoRng for Drbg {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_forks_differ() {
        let mut a = Drbg::new([7; 32]);
        let mut b = Drbg::new([7; 32]);
        let x: [u8; 100] = a.array();
        let y: [u8; 100] = b.array();
        assert_eq!(x, y);
        let mut c = Drbg::new([8; 32]);
        assert_ne!(x, c.array::<100>());
        let f1: [u8; 16] = a.fork(b"salts").array();
        let f2: [u8; 16] = a.fork(b"pss").array();
        assert_ne!(f1, f2);
    }
}
