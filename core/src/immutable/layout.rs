//! The bytes of one immutable share, as Tahoe's `immutable/layout.py` lays them out.
//!
//! ```text
//! header   v1: 9 x u32 (0x24 bytes)  v2: u32 version + 8 x u64 (0x44 bytes)
//!          version, block_size, data_size, then offsets of: data, plaintext tree (unused),
//!          ciphertext tree, block tree, share hashes, extension block
//! data     the share's blocks, segment after segment
//! ...      zeros where the plaintext hash tree once was (same size as the ciphertext tree)
//! ...      full ciphertext hash tree, full block hash tree of this share (32 bytes per node)
//! ...      share hash chain: (u16 node index, 32-byte hash) entries, leaf included
//! ...      u32 (v1) or u64 (v2) length, then the extension block
//! ```
//! v1 is used unless a size or offset does not fit in 32 bits.

use crate::hashtree::{needed_for_leaf, node_count, Hash};
use crate::immutable::params::Geometry;

/// Why share bytes cannot be interpreted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("share is too short to hold its header ({0} bytes)")]
    TooShort(usize),
    #[error("unknown share layout version {0} (expected 1 or 2)")]
    UnknownVersion(u32),
    #[error("share header offsets are inconsistent: {0}")]
    BadOffsets(&'static str),
    #[error("share hash chain is malformed")]
    BadShareHashes,
}

/// Offsets of every region in a share, from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareHeader {
    pub version: u32,
    pub block_size: u64,
    pub data_size: u64,
    pub data: u64,
    pub plaintext_hash_tree: u64,
    pub crypttext_hash_tree: u64,
    pub block_hashes: u64,
    pub share_hashes: u64,
    pub uri_extension: u64,
}

/// Bytes to read to be sure of having a whole header of either version.
pub const MAX_HEADER_LEN: usize = 0x44;

impl ShareHeader {
    pub fn header_len(&self) -> u64 {
        if self.version == 1 {
            0x24
        } else {
            0x44
        }
    }

    /// Width of the extension block's length prefix.
    pub fn ueb_length_field(&self) -> u64 {
        if self.version == 1 {
            4
        } else {
            8
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let fields = [
            self.block_size,
            self.data_size,
            self.data,
            self.plaintext_hash_tree,
            self.crypttext_hash_tree,
            self.block_hashes,
            self.share_hashes,
            self.uri_extension,
        ];
        let mut out = Vec::with_capacity(MAX_HEADER_LEN);
        out.extend_from_slice(&self.version.to_be_bytes());
        for f in fields {
            if self.version == 1 {
                out.extend_from_slice(&(f as u32).to_be_bytes());
            } else {
                out.extend_from_slice(&f.to_be_bytes());
            }
        }
        out
    }

    /// Parse the header at the start of `bytes` (which may hold more of the share).
    pub fn parse(bytes: &[u8]) -> Result<ShareHeader, LayoutError> {
        let word = |at: usize, width: usize| -> Result<u64, LayoutError> {
            let b = bytes
                .get(at..at + width)
                .ok_or(LayoutError::TooShort(bytes.len()))?;
            Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
        };
        let version = word(0, 4)? as u32;
        let width = match version {
            1 => 4,
            2 => 8,
            v => return Err(LayoutError::UnknownVersion(v)),
        };
        let f = |i: usize| word(4 + i * width, width);
        let h = ShareHeader {
            version,
            block_size: f(0)?,
            data_size: f(1)?,
            data: f(2)?,
            plaintext_hash_tree: f(3)?,
            crypttext_hash_tree: f(4)?,
            block_hashes: f(5)?,
            share_hashes: f(6)?,
            uri_extension: f(7)?,
        };
        let ordered = [
            h.header_len(),
            h.data,
            h.plaintext_hash_tree,
            h.crypttext_hash_tree,
            h.block_hashes,
            h.share_hashes,
            h.uri_extension,
        ];
        if ordered.windows(2).any(|w| w[0] > w[1]) {
            return Err(LayoutError::BadOffsets("regions are not in order"));
        }
        if h.data
            .checked_add(h.data_size)
            .is_none_or(|end| end > h.plaintext_hash_tree)
        {
            return Err(LayoutError::BadOffsets(
                "data region overlaps the hash trees",
            ));
        }
        Ok(h)
    }
}

/// The full layout of shares of a file being uploaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareLayout {
    pub header: ShareHeader,
    pub ueb_len: u64,
}

impl ShareLayout {
    /// Layout for shares of a file with geometry `g` and an extension block of `ueb_len` bytes.
    pub fn new(g: &Geometry, ueb_len: usize) -> ShareLayout {
        let tree = node_count(g.num_segments as usize) as u64 * 32;
        let share_hashes_len = share_hash_count(g.n) as u64 * 34;
        let build = |version: u32| {
            let data = if version == 1 { 0x24 } else { 0x44 };
            let data_size = g.share_data_size();
            let plaintext_hash_tree = data + data_size;
            let crypttext_hash_tree = plaintext_hash_tree + tree;
            let block_hashes = crypttext_hash_tree + tree;
            let share_hashes = block_hashes + tree;
            let uri_extension = share_hashes + share_hashes_len;
            ShareHeader {
                version,
                block_size: g.block_size,
                data_size,
                data,
                plaintext_hash_tree,
                crypttext_hash_tree,
                block_hashes,
                share_hashes,
                uri_extension,
            }
        };
        let v1 = build(1);
        let fits = v1.block_size < 1 << 32 && v1.data_size < 1 << 32 && v1.uri_extension < 1 << 32;
        ShareLayout {
            header: if fits { v1 } else { build(2) },
            ueb_len: ueb_len as u64,
        }
    }

    /// Total bytes of a share: what the uploader asks each server to allocate.
    pub fn share_size(&self) -> u64 {
        self.header.uri_extension + self.header.ueb_length_field() + self.ueb_len
    }

    /// Offset of segment `s`'s block within the share.
    pub fn block_offset(&self, s: u64) -> u64 {
        self.header.data + s * self.header.block_size
    }

    /// Everything after the block data: plaintext-tree zeros, ciphertext tree, this share's block
    /// tree, its share hash chain and the length-prefixed extension block.
    pub fn trailer(
        &self,
        crypttext_tree: &[Hash],
        block_tree: &[Hash],
        share_hashes: &[(usize, Hash)],
        ueb: &[u8],
    ) -> Vec<u8> {
        let h = &self.header;
        let mut out = Vec::with_capacity((self.share_size() - h.plaintext_hash_tree) as usize);
        out.resize((h.crypttext_hash_tree - h.plaintext_hash_tree) as usize, 0);
        crypttext_tree.iter().for_each(|x| out.extend_from_slice(x));
        block_tree.iter().for_each(|x| out.extend_from_slice(x));
        for (i, hash) in share_hashes {
            out.extend_from_slice(&(*i as u16).to_be_bytes());
            out.extend_from_slice(hash);
        }
        if h.version == 1 {
            out.extend_from_slice(&(ueb.len() as u32).to_be_bytes());
        } else {
            out.extend_from_slice(&(ueb.len() as u64).to_be_bytes());
        }
        out.extend_from_slice(ueb);
        out
    }
}

/// Entries in each share's hash chain for n shares: the proof of leaf 0 with the leaf.
pub fn share_hash_count(n: usize) -> usize {
    needed_for_leaf(n, 0, true).len()
}

/// Parse a share hash chain region: `(u16 index, 32-byte hash)` entries.
pub fn parse_share_hashes(bytes: &[u8]) -> Result<Vec<(usize, Hash)>, LayoutError> {
    if bytes.len() % 34 != 0 {
        return Err(LayoutError::BadShareHashes);
    }
    Ok(bytes
        .chunks_exact(34)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(&c[2..]);
            (usize::from(u16::from_be_bytes([c[0], c[1]])), h)
        })
        .collect())
}

/// Parse a region of concatenated 32-byte hashes.
pub fn parse_hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap_or([0; 32]))
        .collect()
}

/// The share-hash node indices for share `shnum`, in the order Tahoe writes them.
///
/// Tahoe iterates a Python `set` of the indices (built from the sibling list, then the leaf
/// added), so the order is CPython's hash-table slot order for small ints: ascending for n = 10
/// but not for every n. Reproducing it keeps share bytes identical to Tahoe's.
pub fn share_hash_order(n: usize, shnum: usize) -> Vec<usize> {
    let mut insertion = needed_for_leaf(n, shnum, false);
    insertion.push(hashtree_leaf_node(n, shnum));
    cpython_small_int_set_order(&insertion)
}

fn hashtree_leaf_node(n: usize, leaf: usize) -> usize {
    crate::hashtree::padded_leaf_count(n) - 1 + leaf
}

/// Iteration order of a CPython (3.x) set built by adding these non-negative small ints in turn:
/// open addressing over a power-of-two table (hash of an int is itself), 9 linear probes then
/// perturbed jumps, and a resize to 4 x used when the table is 3/5 full.
fn cpython_small_int_set_order(insertion: &[usize]) -> Vec<usize> {
    const LINEAR_PROBES: usize = 9;
    const PERTURB_SHIFT: u32 = 5;
    fn insert(table: &mut [Option<usize>], key: usize) -> bool {
        let mask = table.len() - 1;
        let mut perturb = key;
        let mut i = key & mask;
        loop {
            let probes = if i + LINEAR_PROBES <= mask {
                LINEAR_PROBES
            } else {
                0
            };
            for j in 0..=probes {
                match table[i + j] {
                    None => {
                        table[i + j] = Some(key);
                        return true;
                    }
                    Some(k) if k == key => return false,
                    Some(_) => {}
                }
            }
            perturb >>= PERTURB_SHIFT;
            i = (i * 5 + 1 + perturb) & mask;
        }
    }
    let mut table: Vec<Option<usize>> = vec![None; 8];
    let mut used = 0usize;
    for &key in insertion {
        if !insert(&mut table, key) {
            continue;
        }
        used += 1;
        let mask = table.len() - 1;
        if used * 5 >= mask * 3 {
            let mut size = 8;
            while size <= used * 4 {
                size <<= 1;
            }
            let old = std::mem::replace(&mut table, vec![None; size]);
            for k in old.into_iter().flatten() {
                insert(&mut table, k);
            }
        }
    }
    table.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_hash_order_matches_cpython_sets() {
        // n = 10: five entries, the table grows to 32 slots and iteration is ascending.
        assert_eq!(share_hash_order(10, 0), vec![2, 4, 8, 15, 16]);
        // n = 5: {8, 4, 2, 7} in an 8-slot table iterates by slot: 8 (slot 0), 2, 4, 7.
        assert_eq!(share_hash_order(5, 0), vec![8, 2, 4, 7]);
        // n = 1: the only entry is the root, as Tahoe stores it.
        assert_eq!(share_hash_order(1, 0), vec![0]);
    }

    #[test]
    fn header_round_trips_and_rejects_garbage() {
        let h = ShareHeader {
            version: 1,
            block_size: 10,
            data_size: 30,
            data: 0x24,
            plaintext_hash_tree: 0x24 + 30,
            crypttext_hash_tree: 0x24 + 62,
            block_hashes: 0x24 + 94,
            share_hashes: 0x24 + 126,
            uri_extension: 0x24 + 160,
        };
        assert_eq!(ShareHeader::parse(&h.to_bytes()).unwrap(), h);
        let v2 = ShareHeader {
            version: 2,
            data: 0x44,
            ..h
        };
        assert_eq!(
            ShareHeader::parse(&v2.to_bytes()).unwrap_err(),
            LayoutError::BadOffsets("regions are not in order")
        );
        assert_eq!(
            ShareHeader::parse(&[0, 0, 0, 3]).unwrap_err(),
            LayoutError::UnknownVersion(3)
        );
        assert!(matches!(
            ShareHeader::parse(&[0, 0, 0, 1, 0]),
            Err(LayoutError::TooShort(_))
        ));
    }
}
