//! What a downloader knows of one share: byte ranges read so far, and the regions its layout
//! says it still needs.

use std::collections::BTreeMap;

use crate::hashtree::Hash;
use crate::immutable::layout::{
    parse_hashes, parse_share_hashes, LayoutError, ShareHeader, MAX_HEADER_LEN,
};

/// A byte range `[offset, offset + length)` of a share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub offset: u64,
    pub length: u64,
}

impl Range {
    pub fn new(offset: u64, length: u64) -> Self {
        Range { offset, length }
    }
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.length)
    }
}

/// Bytes of a share received so far, merged into disjoint chunks.
#[derive(Clone, Debug, Default)]
pub struct SparseShare {
    chunks: BTreeMap<u64, Vec<u8>>,
    /// The share's full length, when a server told us.
    pub share_len: Option<u64>,
}

impl SparseShare {
    pub fn new() -> Self {
        Self::default()
    }

    /// A share held whole in memory.
    pub fn whole(bytes: Vec<u8>) -> Self {
        let len = bytes.len() as u64;
        let mut s = Self::new();
        s.insert(0, bytes);
        s.share_len = Some(len);
        s
    }

    /// Record bytes read at `offset`, merging with touching or overlapping chunks.
    pub fn insert(&mut self, offset: u64, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        let (mut start, mut data) = (offset, bytes);
        // absorb a chunk that starts before and reaches us
        if let Some((&s, prev)) = self.chunks.range(..=start).next_back() {
            if s + prev.len() as u64 >= start {
                let mut merged = prev.clone();
                let keep = (start - s) as usize;
                merged.truncate(keep);
                merged.extend_from_slice(&data);
                let prev_end = s + prev.len() as u64;
                let new_end = start + data.len() as u64;
                if prev_end > new_end {
                    merged.extend_from_slice(&prev[(new_end - s) as usize..]);
                }
                self.chunks.remove(&s);
                start = s;
                data = merged;
            }
        }
        // absorb chunks that start inside or right after us
        loop {
            let end = start + data.len() as u64;
            let next = self.chunks.range(start + 1..=end).next().map(|(&s, _)| s);
            let Some(s) = next else { break };
            let chunk = self.chunks.remove(&s).unwrap_or_default();
            let chunk_end = s + chunk.len() as u64;
            if chunk_end > end {
                data.extend_from_slice(&chunk[(end - s) as usize..]);
            }
        }
        self.chunks.insert(start, data);
    }

    /// The bytes of `range`, if all of them are known. A range reaching past the share's known
    /// end is clipped to it.
    pub fn get(&self, range: Range) -> Option<&[u8]> {
        let end = match self.share_len {
            Some(len) => range.end().min(len),
            None => range.end(),
        };
        let (&s, chunk) = self.chunks.range(..=range.offset).next_back()?;
        let chunk_end = s + chunk.len() as u64;
        (chunk_end >= end && end >= range.offset)
            .then(|| &chunk[(range.offset - s) as usize..(end - s) as usize])
    }

    /// Bytes held, for memory accounting.
    pub fn bytes_held(&self) -> usize {
        self.chunks.values().map(Vec::len).sum()
    }

    /// Forget everything in `range` (blocks already used), keeping the rest.
    pub fn forget(&mut self, range: Range) {
        let affected: Vec<u64> = self.chunks.range(..range.end()).map(|(&s, _)| s).collect();
        for s in affected {
            let chunk = &self.chunks[&s];
            let chunk_end = s + chunk.len() as u64;
            if chunk_end <= range.offset {
                continue;
            }
            let chunk = self.chunks.remove(&s).unwrap_or_default();
            if s < range.offset {
                self.chunks
                    .insert(s, chunk[..(range.offset - s) as usize].to_vec());
            }
            if chunk_end > range.end() {
                self.chunks
                    .insert(range.end(), chunk[(range.end() - s) as usize..].to_vec());
            }
        }
    }
}

/// The parts of a share a downloader uses, located by its header.
#[derive(Clone, Copy, Debug)]
pub struct ShareRegions {
    pub header: ShareHeader,
}

impl ShareRegions {
    /// Parse the header from what is known; `Ok(None)` if the header bytes have not arrived.
    pub fn from_sparse(share: &SparseShare) -> Result<Option<ShareRegions>, LayoutError> {
        let Some(first) = share.get(Range::new(0, 4)) else {
            return Ok(None);
        };
        if first.len() < 4 {
            return Err(LayoutError::TooShort(first.len()));
        }
        let version = u32::from_be_bytes([first[0], first[1], first[2], first[3]]);
        let len = if version == 1 {
            0x24
        } else {
            MAX_HEADER_LEN as u64
        };
        match share.get(Range::new(0, len)) {
            Some(bytes) if bytes.len() as u64 == len => Ok(Some(ShareRegions {
                header: ShareHeader::parse(bytes)?,
            })),
            Some(bytes) => Err(LayoutError::TooShort(bytes.len())),
            None => Ok(None),
        }
    }

    pub fn ueb_length_field(&self) -> Range {
        Range::new(self.header.uri_extension, self.header.ueb_length_field())
    }

    /// The extension block's range, once its length prefix is known.
    pub fn ueb(&self, share: &SparseShare) -> Option<Range> {
        let field = share.get(self.ueb_length_field())?;
        if field.len() as u64 != self.header.ueb_length_field() {
            return None;
        }
        let len = field.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        Some(Range::new(
            self.header.uri_extension + self.header.ueb_length_field(),
            len,
        ))
    }

    pub fn share_hashes(&self) -> Range {
        Range::new(
            self.header.share_hashes,
            self.header.uri_extension - self.header.share_hashes,
        )
    }

    pub fn block_tree(&self) -> Range {
        Range::new(
            self.header.block_hashes,
            self.header.share_hashes - self.header.block_hashes,
        )
    }

    pub fn crypttext_tree(&self) -> Range {
        Range::new(
            self.header.crypttext_hash_tree,
            self.header.block_hashes - self.header.crypttext_hash_tree,
        )
    }

    /// Range of segment `s`'s block, given the verified geometry's block lengths.
    pub fn block(&self, s: u64, block_len: u64) -> Range {
        Range::new(self.header.data + s * self.header.block_size, block_len)
    }

    pub fn parse_share_hashes(bytes: &[u8]) -> Result<Vec<(usize, Hash)>, LayoutError> {
        parse_share_hashes(bytes)
    }

    pub fn parse_tree(bytes: &[u8]) -> Vec<Hash> {
        parse_hashes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn get_needs_full_coverage() {
        let mut s = SparseShare::new();
        s.insert(10, vec![1; 10]);
        assert_eq!(s.get(Range::new(12, 3)), Some(&[1u8, 1, 1][..]));
        assert_eq!(s.get(Range::new(5, 10)), None);
        assert_eq!(s.get(Range::new(15, 10)), None);
        s.insert(20, vec![2; 5]);
        assert_eq!(s.get(Range::new(18, 4)), Some(&[1u8, 1, 2, 2][..]));
        s.share_len = Some(25);
        assert_eq!(s.get(Range::new(22, 100)), Some(&[2u8, 2, 2][..]));
    }

    proptest! {
        #[test]
        fn inserts_in_any_order_reassemble_the_share(
            data in proptest::collection::vec(any::<u8>(), 1..200),
            cuts in proptest::collection::vec((0usize..200, 0usize..60), 1..20),
        ) {
            let mut s = SparseShare::new();
            for (start, len) in &cuts {
                let start = start % data.len();
                let end = (start + len).min(data.len());
                s.insert(start as u64, data[start..end].to_vec());
            }
            s.insert(0, data.clone());
            prop_assert_eq!(s.get(Range::new(0, data.len() as u64)), Some(&data[..]));
            s.forget(Range::new(3, 5));
            if data.len() > 8 {
                prop_assert_eq!(s.get(Range::new(8, (data.len() - 8) as u64)), Some(&data[8..]));
                prop_assert_eq!(s.get(Range::new(2, 3)), None);
            }
        }
    }
}
