//! AES-128 in CTR mode with a big-endian 128-bit counter starting at zero, as Tahoe uses it.
//!
//! An immutable file is one keystream over the whole file, so encrypting segment s means
//! starting at byte offset `s * segment_size`; [`AesCtr::at_offset`] seeks there directly.

use aes::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};

type Ctr = ctr::Ctr128BE<aes::Aes128>;

/// An AES-128-CTR keystream positioned at some byte offset.
pub struct AesCtr {
    cipher: Ctr,
}

impl std::fmt::Debug for AesCtr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesCtr { .. }") // never print key material
    }
}

impl AesCtr {
    /// Keystream for `key` with an all-zero initial counter block.
    pub fn new(key: &[u8; 16]) -> Self {
        AesCtr {
            cipher: Ctr::new(key.into(), &[0u8; 16].into()),
        }
    }

    /// Keystream for `key`, positioned at byte `offset` of the stream.
    pub fn at_offset(key: &[u8; 16], offset: u64) -> Self {
        let mut s = Self::new(key);
        s.cipher.seek(offset);
        s
    }

    /// Encrypt or decrypt `buf` in place (CTR is its own inverse) and advance the stream.
    pub fn apply(&mut self, buf: &mut [u8]) {
        self.cipher.apply_keystream(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_nist_sp800_38a_ctr_vector_with_zero_counter() {
        // With a zero counter the first keystream block is AES-128(key, 0^128); for this key RFC 4493
        // publishes that value as its subkey-generation constant L.
        let key: [u8; 16] = hex::decode("2b7e151628aed2a6abf7158809cf4f3c")
            .unwrap()
            .try_into()
            .unwrap();
        let mut block = [0u8; 16];
        AesCtr::new(&key).apply(&mut block);
        assert_eq!(hex::encode(block), "7df76b0c1ab899b33e42f047b91b546f");
    }

    #[test]
    fn seeking_equals_streaming() {
        let key = [7u8; 16];
        let mut whole = vec![0u8; 1000];
        AesCtr::new(&key).apply(&mut whole);
        for off in [0usize, 1, 15, 16, 17, 500, 999] {
            let mut part = vec![0u8; 1000 - off];
            AesCtr::at_offset(&key, off as u64).apply(&mut part);
            assert_eq!(part, whole[off..]);
        }
    }
}
