//! RSA keys of mutable files: loading, the DER encodings Tahoe hashes, and the cap keys derived
//! from them.
//!
//! Tahoe hashes the private key as PKCS#8 DER and the public key as SubjectPublicKeyInfo DER; keys
//! often arrive as PKCS#1 PEM (the test vectors), so loading accepts PEM or DER in either form and
//! re-encodes before hashing. Only 2048-bit keys with e = 65537 are valid, as in Tahoe.

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::PrivateKey as RsaPrivateKey;

use super::derive::{ssk_pubkey_fingerprint, ssk_writekey};

/// Why a private key could not be used for a mutable file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not an RSA private key in PKCS#1 or PKCS#8, PEM or DER")]
    Unparseable,
    #[error("RSA key is {0} bits; Tahoe mutable files use 2048-bit keys only")]
    WrongSize(usize),
    #[error("RSA public exponent must be 65537")]
    WrongExponent,
    #[error("could not encode the key: {0}")]
    Encoding(String),
}

/// A mutable file's signing key with the encodings Tahoe hashes.
#[derive(Clone)]
pub struct MutableKey {
    private: RsaPrivateKey,
    private_pkcs8_der: Vec<u8>,
    public_spki_der: Vec<u8>,
}

impl std::fmt::Debug for MutableKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MutableKey {{ fingerprint: {:02x?}.. }}",
            &self.fingerprint()[..4]
        )
    }
}

impl MutableKey {
    /// Load from PEM (`RSA PRIVATE KEY` or `PRIVATE KEY`) or DER (PKCS#1 or PKCS#8) bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let private = if let Ok(text) = std::str::from_utf8(bytes) {
            RsaPrivateKey::from_pkcs1_pem(text).or_else(|_| RsaPrivateKey::from_pkcs8_pem(text))
        } else {
            RsaPrivateKey::from_pkcs1_der(bytes).or_else(|_| RsaPrivateKey::from_pkcs8_der(bytes))
        }
        .map_err(|_| KeyError::Unparseable)?;
        Self::from_private(private)
    }

    /// Wrap a key, checking Tahoe's size and exponent rules.
    pub fn from_private(private: RsaPrivateKey) -> Result<Self, KeyError> {
        let bits = private.size() * 8;
        if bits != 2048 {
            return Err(KeyError::WrongSize(bits));
        }
        if *private.e_bytes() != [0x01, 0x00, 0x01] {
            return Err(KeyError::WrongExponent);
        }
        let private_pkcs8_der = private
            .to_pkcs8_der()
            .map_err(|e| KeyError::Encoding(e.to_string()))?
            .as_bytes()
            .to_vec();
        let public_spki_der = private
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| KeyError::Encoding(e.to_string()))?
            .as_bytes()
            .to_vec();
        Ok(MutableKey {
            private,
            private_pkcs8_der,
            public_spki_der,
        })
    }

    pub fn private_key(&self) -> &RsaPrivateKey {
        &self.private
    }
    pub fn private_pkcs8_der(&self) -> &[u8] {
        &self.private_pkcs8_der
    }
    pub fn public_spki_der(&self) -> &[u8] {
        &self.public_spki_der
    }
    /// The write key of `URI:SSK:`/`URI:MDMF:` caps.
    pub fn writekey(&self) -> [u8; 16] {
        ssk_writekey(&self.private_pkcs8_der)
    }
    /// The public-key fingerprint of the caps.
    pub fn fingerprint(&self) -> [u8; 32] {
        ssk_pubkey_fingerprint(&self.public_spki_der)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_clear_error() {
        assert_eq!(
            MutableKey::from_bytes(b"not a key").unwrap_err(),
            KeyError::Unparseable
        );
        assert_eq!(
            MutableKey::from_bytes(&[0x30, 0x82, 0xff]).unwrap_err(),
            KeyError::Unparseable
        );
    }
}
