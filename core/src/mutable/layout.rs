//! The bytes of an SDMF or MDMF share (Tahoe's mutable/layout.py), inside the server's container.
//!
//! Both formats start with a signed prefix (what a *version* of the file is) and an offset table.
//! SDMF then packs: verification key, signature, share hash chain, block hash tree, the single
//! block, encrypted private key. MDMF reserves a fixed region after the header for encrypted
//! private key, share hash chain, signature and verification key, so share data always starts at
//! [`MDMF_SHARE_DATA_OFFSET`]; each segment's block there is preceded by its 16-byte salt, and the
//! block hash tree follows the data.

use crate::hashtree::Hash;

pub const SDMF_VERSION: u8 = 0;
pub const MDMF_VERSION: u8 = 1;
pub const SDMF_HEADER_LEN: usize = 107;
pub const MDMF_HEADER_LEN: usize = 123;
/// Bytes of the SDMF prefix covered by the signature (version ... data length).
pub const SDMF_SIGNED_LEN: usize = 75;
/// Bytes of the MDMF prefix covered by the signature (no salt: salts sit beside each block).
pub const MDMF_SIGNED_LEN: usize = 59;
/// Where MDMF share data starts: header + room for key (1220), signature (260), verification
/// key (292) and share hash chain (272), as Tahoe reserves it.
pub const MDMF_SHARE_DATA_OFFSET: u64 = 123 + 1220 + 260 + 292 + 272;
/// Maximum MDMF segment size before rounding up to a multiple of k (Tahoe's default).
pub const MDMF_MAX_SEGMENT_SIZE: u64 = 128 * 1024;
pub const SALT_LEN: usize = 16;
const CHAIN_ENTRY_LEN: usize = 2 + 32;

/// The two mutable share formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MutableFormat {
    /// Small Distributed Mutable File: one segment, the salt in the signed header.
    Sdmf,
    /// Medium: 128 KiB segments, a salt per segment, partial reads and writes.
    Mdmf,
}

impl MutableFormat {
    pub fn header_len(self) -> usize {
        match self {
            MutableFormat::Sdmf => SDMF_HEADER_LEN,
            MutableFormat::Mdmf => MDMF_HEADER_LEN,
        }
    }
    /// Length of the checkstring a test-and-set compares (version, seqnum, root hash, SDMF salt).
    pub fn checkstring_len(self) -> usize {
        match self {
            MutableFormat::Sdmf => 57,
            MutableFormat::Mdmf => 41,
        }
    }
    /// Segment size for a file of `data_length` bytes coded k-of-n.
    pub fn segment_size(self, data_length: u64, k: u8) -> u64 {
        let raw = match self {
            MutableFormat::Sdmf => data_length,
            MutableFormat::Mdmf => MDMF_MAX_SEGMENT_SIZE,
        };
        next_multiple(raw, u64::from(k.max(1)))
    }
}

/// Why share bytes could not be understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("share is {got} bytes, too short for its {needed}-byte header")]
    TooShort { got: usize, needed: usize },
    #[error("unknown mutable share version {0} (0 = SDMF, 1 = MDMF)")]
    UnknownVersion(u8),
    #[error("share header is inconsistent: {0}")]
    BadHeader(&'static str),
    #[error("share hash chain is {0} bytes, not a whole number of 34-byte entries")]
    BadChain(usize),
}

/// The signed prefix of a share: together with the signature it identifies one version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    pub format: MutableFormat,
    pub seqnum: u64,
    /// Root of the share hash tree.
    pub root_hash: Hash,
    /// SDMF's single salt ("IV"); all zero and not stored for MDMF.
    pub salt: [u8; SALT_LEN],
    pub k: u8,
    pub n: u8,
    pub segment_size: u64,
    pub data_length: u64,
}

impl Prefix {
    /// The bytes the RSA signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SDMF_SIGNED_LEN);
        self.write_checkstring(&mut out);
        out.push(self.k);
        out.push(self.n);
        out.extend_from_slice(&self.segment_size.to_be_bytes());
        out.extend_from_slice(&self.data_length.to_be_bytes());
        out
    }

    /// The leading bytes a test-and-set write compares: changing version changes them.
    pub fn checkstring(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(57);
        self.write_checkstring(&mut out);
        out
    }

    fn write_checkstring(&self, out: &mut Vec<u8>) {
        out.push(match self.format {
            MutableFormat::Sdmf => SDMF_VERSION,
            MutableFormat::Mdmf => MDMF_VERSION,
        });
        out.extend_from_slice(&self.seqnum.to_be_bytes());
        out.extend_from_slice(&self.root_hash);
        if self.format == MutableFormat::Sdmf {
            out.extend_from_slice(&self.salt);
        }
    }

    pub fn num_segments(&self) -> u64 {
        if self.segment_size == 0 || self.data_length == 0 {
            0
        } else {
            self.data_length.div_ceil(self.segment_size)
        }
    }

    /// Plaintext length of segment `s`.
    pub fn segment_len(&self, s: u64) -> u64 {
        let start = s * self.segment_size;
        self.data_length
            .saturating_sub(start)
            .min(self.segment_size)
    }

    /// Encoded block length of segment `s` (each of the k pieces, zero-padded).
    pub fn block_len(&self, s: u64) -> u64 {
        self.segment_len(s).div_ceil(u64::from(self.k.max(1)))
    }

    /// Checks Tahoe's rules on the fields, so later arithmetic cannot overflow or divide by zero.
    pub fn validate(&self) -> Result<(), LayoutError> {
        if self.k == 0 || self.n == 0 || self.k > self.n {
            return Err(LayoutError::BadHeader("k must be 1..=n"));
        }
        if self.data_length > 0 && self.segment_size == 0 {
            return Err(LayoutError::BadHeader("non-empty file with segment size 0"));
        }
        if self.segment_size % u64::from(self.k) != 0 {
            return Err(LayoutError::BadHeader(
                "segment size is not a multiple of k",
            ));
        }
        if self.format == MutableFormat::Sdmf && self.num_segments() > 1 {
            return Err(LayoutError::BadHeader(
                "SDMF file with more than one segment",
            ));
        }
        // 2^40 segments of 128 KiB is far past any share a server accepts.
        if self.num_segments() > 1 << 40 {
            return Err(LayoutError::BadHeader("absurd segment count"));
        }
        Ok(())
    }
}

/// A byte range inside the share data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub offset: u64,
    pub len: u64,
}

impl Span {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
    /// The bytes of this span within `share`, a read of the share starting at offset 0, if present.
    pub fn slice<'a>(&self, share: &'a [u8]) -> Option<&'a [u8]> {
        let start = usize::try_from(self.offset).ok()?;
        let end = usize::try_from(self.end()).ok()?;
        share.get(start..end)
    }
}

/// Where each part of a share lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offsets {
    pub verification_key: Span,
    pub signature: Span,
    pub share_hash_chain: Span,
    pub block_hash_tree: Span,
    pub share_data: Span,
    pub enc_privkey: Span,
}

impl Offsets {
    pub fn eof(&self) -> u64 {
        [
            self.verification_key,
            self.signature,
            self.share_hash_chain,
            self.block_hash_tree,
            self.share_data,
            self.enc_privkey,
        ]
        .iter()
        .map(Span::end)
        .max()
        .unwrap_or(0)
    }

    /// Where segment `s`'s block (MDMF: salt then block) lies.
    pub fn block(&self, prefix: &Prefix, s: u64) -> Span {
        match prefix.format {
            MutableFormat::Sdmf => self.share_data,
            MutableFormat::Mdmf => {
                let full = prefix.segment_size / u64::from(prefix.k) + SALT_LEN as u64;
                Span {
                    offset: self.share_data.offset + s * full,
                    len: prefix.block_len(s) + SALT_LEN as u64,
                }
            }
        }
    }

    /// The offsets of an MDMF share with these parts' sizes. Fails if the key, signature,
    /// verification key and chain do not fit the fixed region before share data.
    pub fn mdmf(
        prefix: &Prefix,
        enc_privkey_len: u64,
        chain_len: u64,
        signature_len: u64,
        verification_key_len: u64,
    ) -> Result<Offsets, LayoutError> {
        let enc_privkey = Span {
            offset: MDMF_HEADER_LEN as u64,
            len: enc_privkey_len,
        };
        let share_hash_chain = Span {
            offset: enc_privkey.end(),
            len: chain_len,
        };
        let signature = Span {
            offset: share_hash_chain.end(),
            len: signature_len,
        };
        let verification_key = Span {
            offset: signature.end(),
            len: verification_key_len,
        };
        if verification_key.end() > MDMF_SHARE_DATA_OFFSET {
            return Err(LayoutError::BadHeader(
                "key, chain, signature and verification key overflow the reserved region",
            ));
        }
        let segments = prefix.num_segments();
        let data_len = if segments == 0 {
            0
        } else {
            let full = prefix.segment_size / u64::from(prefix.k) + SALT_LEN as u64;
            full * (segments - 1) + prefix.block_len(segments - 1) + SALT_LEN as u64
        };
        let share_data = Span {
            offset: MDMF_SHARE_DATA_OFFSET,
            len: data_len,
        };
        let block_hash_tree = Span {
            offset: share_data.end(),
            len: 32 * crate::hashtree::node_count(segments as usize) as u64,
        };
        Ok(Offsets {
            verification_key,
            signature,
            share_hash_chain,
            block_hash_tree,
            share_data,
            enc_privkey,
        })
    }

    /// The offsets of an SDMF share with these parts' sizes (tightly packed).
    pub fn sdmf(
        prefix: &Prefix,
        verification_key_len: u64,
        signature_len: u64,
        chain_len: u64,
        enc_privkey_len: u64,
    ) -> Offsets {
        let verification_key = Span {
            offset: SDMF_HEADER_LEN as u64,
            len: verification_key_len,
        };
        let signature = Span {
            offset: verification_key.end(),
            len: signature_len,
        };
        let share_hash_chain = Span {
            offset: signature.end(),
            len: chain_len,
        };
        let segments = prefix.num_segments();
        let block_hash_tree = Span {
            offset: share_hash_chain.end(),
            len: 32 * crate::hashtree::node_count(segments as usize) as u64,
        };
        let share_data = Span {
            offset: block_hash_tree.end(),
            len: if segments == 0 {
                0
            } else {
                prefix.block_len(0)
            },
        };
        let enc_privkey = Span {
            offset: share_data.end(),
            len: enc_privkey_len,
        };
        Offsets {
            verification_key,
            signature,
            share_hash_chain,
            block_hash_tree,
            share_data,
            enc_privkey,
        }
    }

    /// The header bytes (prefix, then this offset table) as Tahoe writes them.
    pub fn header_bytes(&self, prefix: &Prefix) -> Vec<u8> {
        let mut out = prefix.signed_bytes();
        match prefix.format {
            MutableFormat::Sdmf => {
                for off in [
                    self.signature.offset,
                    self.share_hash_chain.offset,
                    self.block_hash_tree.offset,
                    self.share_data.offset,
                ] {
                    out.extend_from_slice(&(off as u32).to_be_bytes());
                }
                out.extend_from_slice(&self.enc_privkey.offset.to_be_bytes());
                out.extend_from_slice(&self.eof().to_be_bytes());
            }
            MutableFormat::Mdmf => {
                for off in [
                    self.enc_privkey.offset,
                    self.share_hash_chain.offset,
                    self.signature.offset,
                    self.verification_key.offset,
                    self.verification_key.end(),
                    self.share_data.offset,
                    self.block_hash_tree.offset,
                    self.block_hash_tree.end(),
                ] {
                    out.extend_from_slice(&off.to_be_bytes());
                }
            }
        }
        out
    }
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

fn be_u32(b: &[u8]) -> u64 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u64::from(u32::from_be_bytes(a))
}

fn span(start: u64, end: u64) -> Result<Span, LayoutError> {
    if end < start {
        return Err(LayoutError::BadHeader("offsets out of order"));
    }
    Ok(Span {
        offset: start,
        len: end - start,
    })
}

/// Parses the prefix and offset table from the first bytes of a share.
pub fn parse_header(share: &[u8]) -> Result<(Prefix, Offsets), LayoutError> {
    let version = *share.first().ok_or(LayoutError::TooShort {
        got: 0,
        needed: SDMF_HEADER_LEN,
    })?;
    let format = match version {
        SDMF_VERSION => MutableFormat::Sdmf,
        MDMF_VERSION => MutableFormat::Mdmf,
        v => return Err(LayoutError::UnknownVersion(v)),
    };
    let needed = format.header_len();
    if share.len() < needed {
        return Err(LayoutError::TooShort {
            got: share.len(),
            needed,
        });
    }
    let seqnum = be_u64(&share[1..9]);
    let mut root_hash = [0u8; 32];
    root_hash.copy_from_slice(&share[9..41]);
    let (prefix, offsets) = match format {
        MutableFormat::Sdmf => {
            let mut salt = [0u8; 16];
            salt.copy_from_slice(&share[41..57]);
            let prefix = Prefix {
                format,
                seqnum,
                root_hash,
                salt,
                k: share[57],
                n: share[58],
                segment_size: be_u64(&share[59..67]),
                data_length: be_u64(&share[67..75]),
            };
            let sig = be_u32(&share[75..79]);
            let chain = be_u32(&share[79..83]);
            let bht = be_u32(&share[83..87]);
            let data = be_u32(&share[87..91]);
            let key = be_u64(&share[91..99]);
            let eof = be_u64(&share[99..107]);
            let offsets = Offsets {
                verification_key: span(SDMF_HEADER_LEN as u64, sig)?,
                signature: span(sig, chain)?,
                share_hash_chain: span(chain, bht)?,
                block_hash_tree: span(bht, data)?,
                share_data: span(data, key)?,
                enc_privkey: span(key, eof)?,
            };
            (prefix, offsets)
        }
        MutableFormat::Mdmf => {
            let prefix = Prefix {
                format,
                seqnum,
                root_hash,
                salt: [0; 16],
                k: share[41],
                n: share[42],
                segment_size: be_u64(&share[43..51]),
                data_length: be_u64(&share[51..59]),
            };
            let o: Vec<u64> = (0..8)
                .map(|i| be_u64(&share[59 + 8 * i..67 + 8 * i]))
                .collect();
            let (key, chain, sig, vk, vk_end, data, bht, eof) =
                (o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]);
            if key < MDMF_HEADER_LEN as u64 || vk_end > data {
                return Err(LayoutError::BadHeader("MDMF offsets overlap"));
            }
            let offsets = Offsets {
                enc_privkey: span(key, chain)?,
                share_hash_chain: span(chain, sig)?,
                signature: span(sig, vk)?,
                verification_key: span(vk, vk_end)?,
                share_data: span(data, bht)?,
                block_hash_tree: span(bht, eof)?,
            };
            (prefix, offsets)
        }
    };
    prefix.validate()?;
    Ok((prefix, offsets))
}

/// Encodes a share hash chain: `(node index u16, hash)` entries in ascending index order.
pub fn encode_chain(chain: &[(usize, Hash)]) -> Vec<u8> {
    let mut sorted: Vec<&(usize, Hash)> = chain.iter().collect();
    sorted.sort_by_key(|(i, _)| *i);
    let mut out = Vec::with_capacity(chain.len() * CHAIN_ENTRY_LEN);
    for (i, h) in sorted {
        out.extend_from_slice(&(*i as u16).to_be_bytes());
        out.extend_from_slice(h);
    }
    out
}

pub fn decode_chain(bytes: &[u8]) -> Result<Vec<(usize, Hash)>, LayoutError> {
    if bytes.len() % CHAIN_ENTRY_LEN != 0 {
        return Err(LayoutError::BadChain(bytes.len()));
    }
    Ok(bytes
        .chunks_exact(CHAIN_ENTRY_LEN)
        .map(|e| {
            let mut h = [0u8; 32];
            h.copy_from_slice(&e[2..]);
            (usize::from(u16::from_be_bytes([e[0], e[1]])), h)
        })
        .collect())
}

/// Splits a full stored tree (2P-1 hashes, root first) into hashes.
pub fn decode_tree(bytes: &[u8]) -> Option<Vec<Hash>> {
    if bytes.len() % 32 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect(),
    )
}

pub fn next_multiple(x: u64, m: u64) -> u64 {
    x.div_ceil(m) * m
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read Tahoe's share files; the library does no I/O
mod tests {
    use super::*;

    fn tahoe_share(case: &str, server: &str, shnum: u16) -> Vec<u8> {
        let path = format!(
            "{}/../tests/vectors/tahoe-shares/{case}/{server}/{shnum}",
            env!("CARGO_MANIFEST_DIR")
        );
        let container = std::fs::read(path).unwrap();
        let len = be_u64(&container[84..92]) as usize;
        container[468..468 + len].to_vec()
    }

    #[test]
    fn tahoe_sdmf_header_parses_and_rebuilds() {
        let share = tahoe_share("sdmf-2000-b", "s1", 1);
        let (prefix, offsets) = parse_header(&share).unwrap();
        assert_eq!(prefix.format, MutableFormat::Sdmf);
        assert_eq!((prefix.k, prefix.n), (3, 10));
        assert_eq!((prefix.segment_size, prefix.data_length), (2001, 2000));
        assert_eq!(offsets.eof(), share.len() as u64);
        assert_eq!(offsets.verification_key.len, 294);
        let again = Offsets::sdmf(&prefix, 294, 256, offsets.share_hash_chain.len, 1217);
        assert_eq!(again, offsets);
        assert_eq!(again.header_bytes(&prefix), share[..SDMF_HEADER_LEN]);
        let chain = decode_chain(offsets.share_hash_chain.slice(&share).unwrap()).unwrap();
        assert_eq!(
            encode_chain(&chain),
            offsets.share_hash_chain.slice(&share).unwrap()
        );
    }

    #[test]
    fn tahoe_mdmf_header_parses_and_rebuilds() {
        let share = tahoe_share("mdmf-300000-bar", "s1", 3);
        let (prefix, offsets) = parse_header(&share).unwrap();
        assert_eq!(prefix.format, MutableFormat::Mdmf);
        assert_eq!(prefix.num_segments(), 3);
        assert_eq!(offsets.share_data.offset, MDMF_SHARE_DATA_OFFSET);
        assert_eq!(offsets.eof(), share.len() as u64);
        let again = Offsets::mdmf(
            &prefix,
            offsets.enc_privkey.len,
            offsets.share_hash_chain.len,
            offsets.signature.len,
            offsets.verification_key.len,
        )
        .unwrap();
        assert_eq!(again, offsets);
        assert_eq!(again.header_bytes(&prefix), share[..MDMF_HEADER_LEN]);
        assert_eq!(
            offsets.block(&prefix, 2).end(),
            offsets.block_hash_tree.offset
        );
    }

    #[test]
    fn garbage_headers_are_errors_not_panics() {
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = parse_header(&bytes);
            let mut sdmf = bytes.clone();
            if let Some(b) = sdmf.first_mut() {
                *b = 0;
            }
            let _ = parse_header(&sdmf);
            let mut mdmf = bytes;
            if let Some(b) = mdmf.first_mut() {
                *b = 1;
            }
            let _ = parse_header(&mdmf);
        }
    }
}
