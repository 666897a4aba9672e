//! The URI extension block (UEB): the per-file metadata stored at the end of every share, whose
//! hash is the second field of a CHK cap.
//!
//! Serialization: entries sorted by key, each `key ":" netstring(value)`, concatenated; integers
//! as decimal ASCII, hashes as raw bytes. Unknown keys (older Tahoe wrote plaintext hashes) are
//! ignored on parse.

use std::collections::BTreeMap;

use crate::netstring;

/// Tahoe readers refuse extension blocks this long or longer.
pub const MAX_UEB_LEN: usize = 2000;

/// Why bytes are not a usable extension block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UebError {
    #[error("extension block is {0} bytes; at most {max} are allowed", max = MAX_UEB_LEN - 1)]
    TooLong(usize),
    #[error("extension block is malformed near byte {0}")]
    Malformed(usize),
    #[error("extension block lacks the field {0:?}")]
    Missing(&'static str),
    #[error("extension block field {field:?} is invalid: {why}")]
    BadField { field: &'static str, why: String },
}

/// The fields lafs reads and writes (exactly the 11 current Tahoe writes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ueb {
    pub codec_name: String,
    pub segment_size: u64,
    pub needed_shares: usize,
    pub total_shares: usize,
    pub num_segments: u64,
    pub size: u64,
    /// The tail segment as the codec saw it (padded to a multiple of k).
    pub padded_tail_size: u64,
    pub crypttext_hash: [u8; 32],
    pub crypttext_root_hash: [u8; 32],
    pub share_root_hash: [u8; 32],
}

impl Ueb {
    pub fn to_bytes(&self) -> Vec<u8> {
        let (k, n) = (self.needed_shares, self.total_shares);
        let mut fields: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
        fields.insert("codec_name", self.codec_name.as_bytes().to_vec());
        fields.insert(
            "codec_params",
            format!("{}-{k}-{n}", self.segment_size).into_bytes(),
        );
        fields.insert("crypttext_hash", self.crypttext_hash.to_vec());
        fields.insert("crypttext_root_hash", self.crypttext_root_hash.to_vec());
        fields.insert("needed_shares", k.to_string().into_bytes());
        fields.insert("num_segments", self.num_segments.to_string().into_bytes());
        fields.insert("segment_size", self.segment_size.to_string().into_bytes());
        fields.insert("share_root_hash", self.share_root_hash.to_vec());
        fields.insert("size", self.size.to_string().into_bytes());
        fields.insert(
            "tail_codec_params",
            format!("{}-{k}-{n}", self.padded_tail_size).into_bytes(),
        );
        fields.insert("total_shares", n.to_string().into_bytes());
        let mut out = Vec::with_capacity(512);
        for (key, value) in fields {
            out.extend_from_slice(key.as_bytes());
            out.push(b':');
            netstring::write(&mut out, &value);
        }
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<Ueb, UebError> {
        if bytes.len() >= MAX_UEB_LEN {
            return Err(UebError::TooLong(bytes.len()));
        }
        let mut fields: BTreeMap<&[u8], &[u8]> = BTreeMap::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let at = bytes.len() - rest.len();
            let colon = rest
                .iter()
                .position(|&b| b == b':')
                .ok_or(UebError::Malformed(at))?;
            let key = &rest[..colon];
            if key.is_empty()
                || !key
                    .iter()
                    .all(|b| b.is_ascii_alphabetic() || *b == b'_' || *b == b'-')
            {
                return Err(UebError::Malformed(at));
            }
            let (value, tail) =
                netstring::split(&rest[colon + 1..]).map_err(|_| UebError::Malformed(at))?;
            fields.insert(key, value);
            rest = tail;
        }
        let get = |name: &'static str| {
            fields
                .get(name.as_bytes())
                .copied()
                .ok_or(UebError::Missing(name))
        };
        let int = |name: &'static str| -> Result<u64, UebError> {
            let v = get(name)?;
            std::str::from_utf8(v)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| UebError::BadField {
                    field: name,
                    why: "not a decimal number".into(),
                })
        };
        let hash = |name: &'static str| -> Result<[u8; 32], UebError> {
            get(name)?.try_into().map_err(|_| UebError::BadField {
                field: name,
                why: "not a 32-byte hash".into(),
            })
        };
        let codec_name =
            String::from_utf8(get("codec_name")?.to_vec()).map_err(|_| UebError::BadField {
                field: "codec_name",
                why: "not UTF-8".into(),
            })?;
        let k = int("needed_shares")? as usize;
        let n = int("total_shares")? as usize;
        let segment_size = int("segment_size")?;
        let tail = get("tail_codec_params")?;
        let padded_tail_size =
            parse_codec_params(tail, k, n).ok_or_else(|| UebError::BadField {
                field: "tail_codec_params",
                why: "not <size>-<k>-<n>".into(),
            })?;
        if parse_codec_params(get("codec_params")?, k, n) != Some(segment_size) {
            return Err(UebError::BadField {
                field: "codec_params",
                why: "disagrees with segment_size, k or n".into(),
            });
        }
        Ok(Ueb {
            codec_name,
            segment_size,
            needed_shares: k,
            total_shares: n,
            num_segments: int("num_segments")?,
            size: int("size")?,
            padded_tail_size,
            crypttext_hash: hash("crypttext_hash")?,
            crypttext_root_hash: hash("crypttext_root_hash")?,
            share_root_hash: hash("share_root_hash")?,
        })
    }
}

/// Parse `"<size>-<k>-<n>"`, requiring the given k and n; returns the size.
fn parse_codec_params(v: &[u8], k: usize, n: usize) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?;
    let mut parts = s.split('-');
    let size = parts.next()?.parse().ok()?;
    let pk: usize = parts.next()?.parse().ok()?;
    let pn: usize = parts.next()?.parse().ok()?;
    (parts.next().is_none() && pk == k && pn == n).then_some(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Ueb {
        Ueb {
            codec_name: "crs".into(),
            segment_size: 131_073,
            needed_shares: 3,
            total_shares: 10,
            num_segments: 3,
            size: 300_000,
            padded_tail_size: 37_854,
            crypttext_hash: [1; 32],
            crypttext_root_hash: [2; 32],
            share_root_hash: [3; 32],
        }
    }

    #[test]
    fn serializes_sorted_keys_with_netstring_values() {
        let b = sample().to_bytes();
        assert!(b.starts_with(b"codec_name:3:crs,codec_params:11:131073-3-10,crypttext_hash:32:"));
        assert!(b.ends_with(b"tail_codec_params:10:37854-3-10,total_shares:2:10,"));
        assert_eq!(Ueb::parse(&b).unwrap(), sample());
    }

    #[test]
    fn unknown_keys_are_ignored_and_bad_fields_reported() {
        let mut b = b"aaa_extra:1:x,".to_vec();
        b.extend(sample().to_bytes());
        assert_eq!(Ueb::parse(&b).unwrap(), sample());
        assert_eq!(
            Ueb::parse(b"size:2:10,"),
            Err(UebError::Missing("codec_name"))
        );
        assert!(matches!(
            Ueb::parse(&vec![b'a'; 2500]),
            Err(UebError::TooLong(2500))
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Ueb::parse(&input);
        }
    }
}
