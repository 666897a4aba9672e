//! Every key, index and secret derivation Tahoe defines, with its exact tag.
//!
//! Names follow what each value is for, not Tahoe's function names. Two traps are documented at
//! their functions: the client lease secrets swap tag and value, and the convergent-encryption tag
//! is itself a composite that gets netstring-wrapped as a whole.

use super::hash::{tagged_hash, tagged_pair_hash, truncate16, TaggedHasher};
use crate::netstring;

/// The tag strings of Tahoe's `util/hashutil.py`, byte for byte.
pub mod tags {
    pub const STORAGE_INDEX: &[u8] = b"allmydata_immutable_key_to_storage_index_v1";
    pub const BLOCK: &[u8] = b"allmydata_encoded_subshare_v1";
    pub const UEB: &[u8] = b"allmydata_uri_extension_v1";
    pub const PLAINTEXT: &[u8] = b"allmydata_plaintext_v1";
    pub const CIPHERTEXT: &[u8] = b"allmydata_crypttext_v1";
    pub const CIPHERTEXT_SEGMENT: &[u8] = b"allmydata_crypttext_segment_v1";
    pub const PLAINTEXT_SEGMENT: &[u8] = b"allmydata_plaintext_segment_v1";
    pub const CONVERGENT_ENCRYPTION: &[u8] =
        b"allmydata_immutable_content_to_key_with_added_secret_v1+";
    pub const CLIENT_RENEWAL: &[u8] = b"allmydata_client_renewal_secret_v1";
    pub const CLIENT_CANCEL: &[u8] = b"allmydata_client_cancel_secret_v1";
    pub const FILE_RENEWAL: &[u8] = b"allmydata_file_renewal_secret_v1";
    pub const FILE_CANCEL: &[u8] = b"allmydata_file_cancel_secret_v1";
    pub const BUCKET_RENEWAL: &[u8] = b"allmydata_bucket_renewal_secret_v1";
    pub const BUCKET_CANCEL: &[u8] = b"allmydata_bucket_cancel_secret_v1";
    pub const MUTABLE_WRITEKEY: &[u8] = b"allmydata_mutable_privkey_to_writekey_v1";
    pub const MUTABLE_WRITE_ENABLER_MASTER: &[u8] =
        b"allmydata_mutable_writekey_to_write_enabler_master_v1";
    pub const MUTABLE_WRITE_ENABLER: &[u8] =
        b"allmydata_mutable_write_enabler_master_and_nodeid_to_write_enabler_v1";
    pub const MUTABLE_PUBKEY: &[u8] = b"allmydata_mutable_pubkey_to_fingerprint_v1";
    pub const MUTABLE_READKEY: &[u8] = b"allmydata_mutable_writekey_to_readkey_v1";
    pub const MUTABLE_DATAKEY: &[u8] = b"allmydata_mutable_readkey_to_datakey_v1";
    pub const MUTABLE_STORAGE_INDEX: &[u8] = b"allmydata_mutable_readkey_to_storage_index_v1";
    pub const DIRNODE_CHILD_WRITECAP: &[u8] =
        b"allmydata_mutable_writekey_and_salt_to_dirnode_child_capkey_v1";
    pub const DIRNODE_CHILD_SALT: &[u8] = b"allmydata_dirnode_child_rwcap_to_salt_v1";
    pub const BACKUPDB_DIRHASH: &[u8] = b"allmydata_backupdb_dirhash_v1";
    pub const MERKLE_EMPTY_LEAF: &[u8] = b"Merkle tree empty leaf";
    pub const MERKLE_INTERNAL_NODE: &[u8] = b"Merkle tree internal node";
}

// ---- immutable files ----

/// CHK storage index: where the shares of the file encrypted with `key` are stored.
pub fn storage_index_from_key(key: &[u8; 16]) -> [u8; 16] {
    truncate16(tagged_hash(tags::STORAGE_INDEX, key))
}

/// Leaf of a share's block hash tree.
pub fn block_hash(block: &[u8]) -> [u8; 32] {
    tagged_hash(tags::BLOCK, block)
}

/// Hash of the URI extension block; the second field of a CHK cap.
pub fn ueb_hash(ueb: &[u8]) -> [u8; 32] {
    tagged_hash(tags::UEB, ueb)
}

/// Leaf of the ciphertext hash tree (over the unpadded ciphertext of one segment).
pub fn ciphertext_segment_hash(segment: &[u8]) -> [u8; 32] {
    tagged_hash(tags::CIPHERTEXT_SEGMENT, segment)
}

/// Streaming hasher for the flat hash of the whole ciphertext (`crypttext_hash` in the UEB).
pub fn ciphertext_hasher() -> TaggedHasher {
    TaggedHasher::new(tags::CIPHERTEXT)
}

/// Streaming hasher for the convergent encryption key of a file.
///
/// The tag is the composite `CONVERGENT_ENCRYPTION || netstring(secret) || netstring("k,n,segsize")`,
/// which `TaggedHasher` then netstring-wraps as a whole. `segment_size` is the file's *effective*
/// segment size, so k, n, the maximum segment size and (for small files) the size change the key.
pub fn convergent_key_hasher(
    convergence_secret: &[u8],
    k: usize,
    n: usize,
    segment_size: u64,
) -> ConvergentKeyHasher {
    let mut tag = tags::CONVERGENT_ENCRYPTION.to_vec();
    netstring::write(&mut tag, convergence_secret);
    netstring::write(&mut tag, format!("{k},{n},{segment_size}").as_bytes());
    ConvergentKeyHasher(TaggedHasher::new(&tag))
}

/// Accumulates plaintext; [`ConvergentKeyHasher::finish`] gives the 16-byte AES key.
#[derive(Clone, Debug)]
pub struct ConvergentKeyHasher(TaggedHasher);

impl ConvergentKeyHasher {
    pub fn update(&mut self, plaintext: &[u8]) {
        self.0.update(plaintext);
    }
    pub fn finish(self) -> [u8; 16] {
        truncate16(self.0.finalize())
    }
}

// ---- lease secrets ----

/// Client-wide renewal secret from the node's lease secret.
///
/// Tahoe swaps tag and value here: the node's secret is the tag and the constant is the value.
pub fn client_renewal_secret(lease_secret: &[u8]) -> [u8; 32] {
    tagged_hash(lease_secret, tags::CLIENT_RENEWAL)
}

/// Client-wide cancel secret (same swapped construction as the renewal secret).
pub fn client_cancel_secret(lease_secret: &[u8]) -> [u8; 32] {
    tagged_hash(lease_secret, tags::CLIENT_CANCEL)
}

pub fn file_renewal_secret(client_renewal: &[u8; 32], storage_index: &[u8; 16]) -> [u8; 32] {
    tagged_pair_hash(tags::FILE_RENEWAL, client_renewal, storage_index)
}

pub fn file_cancel_secret(client_cancel: &[u8; 32], storage_index: &[u8; 16]) -> [u8; 32] {
    tagged_pair_hash(tags::FILE_CANCEL, client_cancel, storage_index)
}

/// The renewal secret a given server sees; `server_id` is Tahoe's 20-byte node (tub) id.
pub fn bucket_renewal_secret(file_renewal: &[u8; 32], server_id: &[u8; 20]) -> [u8; 32] {
    tagged_pair_hash(tags::BUCKET_RENEWAL, file_renewal, server_id)
}

pub fn bucket_cancel_secret(file_cancel: &[u8; 32], server_id: &[u8; 20]) -> [u8; 32] {
    tagged_pair_hash(tags::BUCKET_CANCEL, file_cancel, server_id)
}

// ---- mutable files ----

/// SSK/MDMF write key from the RSA private key in PKCS#8 DER.
pub fn ssk_writekey(private_key_pkcs8_der: &[u8]) -> [u8; 16] {
    truncate16(tagged_hash(tags::MUTABLE_WRITEKEY, private_key_pkcs8_der))
}

/// Fingerprint of the RSA public key in SubjectPublicKeyInfo DER.
pub fn ssk_pubkey_fingerprint(public_key_spki_der: &[u8]) -> [u8; 32] {
    tagged_hash(tags::MUTABLE_PUBKEY, public_key_spki_der)
}

pub fn ssk_readkey(writekey: &[u8; 16]) -> [u8; 16] {
    truncate16(tagged_hash(tags::MUTABLE_READKEY, writekey))
}

pub fn ssk_storage_index(readkey: &[u8; 16]) -> [u8; 16] {
    truncate16(tagged_hash(tags::MUTABLE_STORAGE_INDEX, readkey))
}

/// Per-segment data key from the segment's salt and the read key.
pub fn ssk_datakey(salt: &[u8; 16], readkey: &[u8; 16]) -> [u8; 16] {
    truncate16(tagged_pair_hash(tags::MUTABLE_DATAKEY, salt, readkey))
}

pub fn ssk_write_enabler_master(writekey: &[u8; 16]) -> [u8; 32] {
    tagged_hash(tags::MUTABLE_WRITE_ENABLER_MASTER, writekey)
}

/// The write enabler a given server records for a mutable slot.
pub fn ssk_write_enabler(writekey: &[u8; 16], server_id: &[u8; 20]) -> [u8; 32] {
    tagged_pair_hash(
        tags::MUTABLE_WRITE_ENABLER,
        &ssk_write_enabler_master(writekey),
        server_id,
    )
}

// ---- directories ----

/// Key that encrypts a child's write cap inside a directory.
pub fn dirnode_child_capkey(salt: &[u8; 16], dir_writekey: &[u8; 16]) -> [u8; 16] {
    truncate16(tagged_pair_hash(
        tags::DIRNODE_CHILD_WRITECAP,
        salt,
        dir_writekey,
    ))
}

/// Deterministic salt for a child's write cap (a hash of the cap itself).
pub fn dirnode_child_salt(child_write_cap: &[u8]) -> [u8; 16] {
    truncate16(tagged_hash(tags::DIRNODE_CHILD_SALT, child_write_cap))
}

/// Tahoe's legacy directory-entry MAC: SHA-256 over key-XOR-pads without padding the key to
/// the block size. Not RFC 2104 HMAC; nobody verifies it, but writers must produce it.
pub fn legacy_dirnode_hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let ipad: Vec<u8> = key.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = key.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hash::sha256d;

    #[test]
    fn convergence_tag_is_netstring_wrapped_composite() {
        let mut expected_input = Vec::new();
        let mut tag = tags::CONVERGENT_ENCRYPTION.to_vec();
        tag.extend_from_slice(b"2:ab,");
        tag.extend_from_slice(b"11:3,10,131073,");
        netstring::write(&mut expected_input, &tag);
        expected_input.extend_from_slice(b"plain");
        let mut h = convergent_key_hasher(b"ab", 3, 10, 131073);
        h.update(b"pl");
        h.update(b"ain");
        assert_eq!(h.finish()[..], sha256d(&expected_input)[..16]);
    }

    #[test]
    fn client_lease_secrets_use_the_secret_as_tag() {
        assert_eq!(
            client_renewal_secret(b"s"),
            sha256d(b"1:s,allmydata_client_renewal_secret_v1")
        );
        assert_ne!(client_renewal_secret(b"s"), client_cancel_secret(b"s"));
    }

    #[test]
    fn derivation_chain_is_deterministic_and_distinct() {
        let wk = [1u8; 16];
        let rk = ssk_readkey(&wk);
        let si = ssk_storage_index(&rk);
        assert_ne!(rk, wk);
        assert_ne!(si, rk);
        assert_ne!(
            ssk_write_enabler(&wk, &[0; 20]),
            ssk_write_enabler(&wk, &[1; 20])
        );
    }
}
