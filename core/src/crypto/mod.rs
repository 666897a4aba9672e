//! Cryptography exactly as Tahoe does it: tagged SHA-256d hashes, every key and secret derivation,
//! AES-128-CTR, and the RSA key encodings that mutable caps are derived from.
//!
//! Submodules hold one concept each; the common entry points are re-exported here.

pub mod aes_ctr;
pub mod derive;
pub mod drbg;
pub mod hash;
pub mod key_source;
pub mod rsa_keys;

pub use aes_ctr::AesCtr;
pub use derive::*;
pub use hash::{sha256d, tagged_hash, tagged_pair_hash, TaggedHasher};
