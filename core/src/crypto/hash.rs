//! SHA-256d and Tahoe's tagged hashes.
//!
//! `tagged_hash(tag, v) = SHA256(SHA256(netstring(tag) || v))`; the pair form netstring-wraps both
//! values. Tahoe never uses a single SHA-256 for a tagged value.

use sha2::{Digest, Sha256};

use crate::netstring;

/// SHA256(SHA256(data)).
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    let inner = Sha256::digest(data);
    Sha256::digest(inner).into()
}

/// `SHA256d(netstring(tag) || value)`.
pub fn tagged_hash(tag: &[u8], value: &[u8]) -> [u8; 32] {
    let mut h = TaggedHasher::new(tag);
    h.update(value);
    h.finalize()
}

/// `SHA256d(netstring(tag) || netstring(a) || netstring(b))`: Merkle inner nodes and the
/// two-input derivations.
pub fn tagged_pair_hash(tag: &[u8], a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut h = TaggedHasher::new(tag);
    h.update(&netstring::encode(a));
    h.update(&netstring::encode(b));
    h.finalize()
}

/// Incremental tagged hash, for values too large to hold at once (a whole file's plaintext or
/// ciphertext streamed one segment at a time).
#[derive(Clone, Debug)]
pub struct TaggedHasher {
    inner: Sha256,
}

impl TaggedHasher {
    pub fn new(tag: &[u8]) -> Self {
        let mut inner = Sha256::new();
        inner.update(netstring::encode(tag));
        TaggedHasher { inner }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    pub fn finalize(self) -> [u8; 32] {
        Sha256::digest(self.inner.finalize()).into()
    }
}

/// First 16 bytes of a 32-byte hash (keys and storage indexes are truncated hashes).
pub fn truncate16(h: [u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&h[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256d_of_empty_matches_known_value() {
        // SHA256(SHA256("")), a widely published constant.
        assert_eq!(
            hex::encode(sha256d(b"")),
            "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456"
        );
    }

    #[test]
    fn tagged_hash_prefixes_a_netstring_of_the_tag() {
        assert_eq!(tagged_hash(b"tag", b"value"), sha256d(b"3:tag,value"));
        assert_eq!(tagged_pair_hash(b"t", b"ab", b""), sha256d(b"1:t,2:ab,0:,"));
    }

    #[test]
    fn streaming_equals_one_shot() {
        let mut h = TaggedHasher::new(b"x");
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finalize(), tagged_hash(b"x", b"hello world"));
    }
}
