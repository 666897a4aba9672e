//! One directory entry on the wire: four netstrings (name, read cap, encrypted write cap,
//! metadata JSON), and the write-cap encryption that keeps write caps from read-only holders.
//!
//! `enc_rw = salt || AES-CTR(key, rw) || mac` with `salt = H(rw)[..16]` (deterministic), `key =
//! H(salt, dir_writekey)[..16]` and Tahoe's legacy MAC over `salt || ct` (written, never checked).

use super::access::Access;
use super::child::{ChildCap, ALLEGED_IMMUTABLE_PREFIX, ALLEGED_READONLY_PREFIX};
use super::metadata::Metadata;
use crate::crypto::{dirnode_child_capkey, dirnode_child_salt, legacy_dirnode_hmac, AesCtr};
use crate::netstring::{self, NetstringError};

/// Salt before, MAC after the encrypted write cap.
pub const RW_OVERHEAD: usize = 16 + 32;

/// The fields of one entry, still raw.
#[derive(Debug)]
pub struct RawEntry<'a> {
    pub name: &'a [u8],
    pub ro_uri: &'a [u8],
    pub rw_data: &'a [u8],
    pub metadata: &'a [u8],
}

/// What is wrong with one entry's framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("field {field} of 4: {source}")]
    Field {
        field: usize,
        #[source]
        source: NetstringError,
    },
    #[error("has {found} fields, expected 4 (name, read cap, write cap, metadata)")]
    TooFewFields { found: usize },
}

/// Splits an entry into its four fields. Bytes after the fourth field are ignored (room for a
/// future field, as in Tahoe) but kept when the entry is re-packed unchanged.
pub fn split_entry(entry: &[u8]) -> Result<RawEntry<'_>, FramingError> {
    let mut fields = [&[][..]; 4];
    let mut rest = entry;
    for (i, slot) in fields.iter_mut().enumerate() {
        if rest.is_empty() {
            return Err(FramingError::TooFewFields { found: i });
        }
        let (value, tail) = netstring::split(rest).map_err(|source| FramingError::Field {
            field: i + 1,
            source,
        })?;
        *slot = value;
        rest = tail;
    }
    Ok(RawEntry {
        name: fields[0],
        ro_uri: fields[1],
        rw_data: fields[2],
        metadata: fields[3],
    })
}

/// Encrypts a child's write cap (empty for read-only children) under the directory writekey.
pub fn encrypt_rw_uri(writekey: &[u8; 16], rw_uri: &[u8]) -> Vec<u8> {
    let salt = dirnode_child_salt(rw_uri);
    let key = dirnode_child_capkey(&salt, writekey);
    let mut out = Vec::with_capacity(rw_uri.len() + RW_OVERHEAD);
    out.extend_from_slice(&salt);
    out.extend_from_slice(rw_uri);
    AesCtr::new(&key).apply(&mut out[16..]);
    let mac = legacy_dirnode_hmac(&key, &out);
    out.extend_from_slice(&mac);
    out
}

/// Decrypts an encrypted write cap; `None` if `data` is too short to hold salt and MAC.
pub fn decrypt_rw_uri(writekey: &[u8; 16], data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < RW_OVERHEAD {
        return None;
    }
    let salt: [u8; 16] = data[..16].try_into().ok()?;
    let key = dirnode_child_capkey(&salt, writekey);
    let mut plain = data[16..data.len() - 32].to_vec();
    AesCtr::new(&key).apply(&mut plain);
    Some(plain)
}

/// Tahoe's `strip_prefix_for_ro`: the context implies `ro.` (always) and `imm.` (in immutable
/// directories), so those prefixes are not stored.
fn strip_prefix_for_ro(ro: &[u8], deep_immutable: bool) -> &[u8] {
    if let Some(rest) = ro.strip_prefix(ALLEGED_IMMUTABLE_PREFIX) {
        if deep_immutable {
            rest
        } else {
            ro
        }
    } else {
        ro.strip_prefix(ALLEGED_READONLY_PREFIX).unwrap_or(ro)
    }
}

/// Serializes one entry (without its outer netstring).
pub fn pack_entry(name: &str, cap: &ChildCap, metadata: &Metadata, access: &Access) -> Vec<u8> {
    let ro = cap.read_uri().unwrap_or_default();
    let ro = strip_prefix_for_ro(&ro, access.is_deep_immutable());
    let meta = metadata.to_python_json();
    let rw = match access.writekey() {
        Some(wk) => encrypt_rw_uri(wk, &cap.write_uri().unwrap_or_default()),
        None => Vec::new(),
    };
    let mut out = Vec::with_capacity(name.len() + ro.len() + rw.len() + meta.len() + 24);
    netstring::write(&mut out, name.as_bytes());
    netstring::write(&mut out, ro);
    netstring::write(&mut out, &rw);
    netstring::write(&mut out, meta.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rw_cap_encryption_round_trips_and_has_overhead() {
        let wk = [7u8; 16];
        let enc = encrypt_rw_uri(&wk, b"URI:SSK:abc");
        assert_eq!(enc.len(), 11 + RW_OVERHEAD);
        assert_eq!(&enc[..16], &dirnode_child_salt(b"URI:SSK:abc"));
        assert_eq!(decrypt_rw_uri(&wk, &enc).unwrap(), b"URI:SSK:abc");
        assert_eq!(encrypt_rw_uri(&wk, b"").len(), RW_OVERHEAD);
        assert_eq!(decrypt_rw_uri(&wk, &[0; 47]), None);
    }

    #[test]
    fn split_entry_names_the_bad_field() {
        assert_eq!(
            split_entry(b"1:a,0:,").unwrap_err(),
            FramingError::TooFewFields { found: 2 }
        );
        assert!(matches!(
            split_entry(b"1:a,0:,x:,").unwrap_err(),
            FramingError::Field { field: 3, .. }
        ));
        let e = split_entry(b"1:a,0:,0:,2:{},future").unwrap();
        assert_eq!(e.metadata, b"{}");
    }

    #[test]
    fn prefixes_implied_by_context_are_stripped() {
        assert_eq!(strip_prefix_for_ro(b"ro.x", false), b"x");
        assert_eq!(strip_prefix_for_ro(b"imm.x", false), b"imm.x");
        assert_eq!(strip_prefix_for_ro(b"imm.x", true), b"x");
        assert_eq!(strip_prefix_for_ro(b"ro.x", true), b"x");
    }
}
