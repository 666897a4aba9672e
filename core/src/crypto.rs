//! Tagged SHA-256d hashes, AES-128-CTR, and every Tahoe key/secret derivation.
