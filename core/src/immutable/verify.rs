//! Integrity checks for downloads: nothing from a server is trusted until it chains up to the
//! extension-block hash in the cap.
//!
//! Order of trust: the cap holds the UEB hash → the UEB holds the share-tree root and the
//! ciphertext-tree root → a share's hash chain proves its block-tree root → the block tree
//! proves each block. After decoding, the ciphertext tree proves each segment before any
//! plaintext is released.

use crate::crypto::{block_hash, ciphertext_segment_hash, ueb_hash};
use crate::hashtree::{Hash, HashTreeError, PartialHashTree};
use crate::immutable::layout::LayoutError;
use crate::immutable::ueb::{Ueb, UebError};

/// A share (or a segment) that failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntegrityError {
    #[error("extension block does not match the cap's hash")]
    UebHashMismatch,
    #[error("extension block is unreadable: {0}")]
    Ueb(#[from] UebError),
    #[error("extension block disagrees with the cap about {0}")]
    UebDisagreesWithCap(&'static str),
    #[error("share {shnum}: its hash chain does not lead to the file's share root ({source})")]
    BadShareHashes { shnum: usize, source: HashTreeError },
    #[error("share {shnum}: block for segment {segment} is corrupt ({source})")]
    BadBlock {
        shnum: usize,
        segment: u64,
        source: HashTreeError,
    },
    #[error("segment {segment}: decoded ciphertext does not match the file's ciphertext tree ({source})")]
    BadSegment { segment: u64, source: HashTreeError },
    #[error("share {shnum}: layout is invalid ({source})")]
    Layout { shnum: usize, source: LayoutError },
    #[error("share {shnum}: {what} is shorter than its layout says")]
    Truncated { shnum: usize, what: &'static str },
}

/// Check an extension block against the cap's hash and fields.
pub fn verify_ueb(
    bytes: &[u8],
    expected_hash: &Hash,
    k: usize,
    n: usize,
    size: u64,
) -> Result<Ueb, IntegrityError> {
    if ueb_hash(bytes) != *expected_hash {
        return Err(IntegrityError::UebHashMismatch);
    }
    let ueb = Ueb::parse(bytes)?;
    // The hash already binds these; a mismatch means a buggy writer, not an attacker.
    if ueb.needed_shares != k || ueb.total_shares != n {
        return Err(IntegrityError::UebDisagreesWithCap("k-of-n"));
    }
    if ueb.size != size {
        return Err(IntegrityError::UebDisagreesWithCap("size"));
    }
    if ueb.segment_size == 0 || ueb.num_segments != size.div_ceil(ueb.segment_size) {
        return Err(IntegrityError::UebDisagreesWithCap("segment count"));
    }
    Ok(ueb)
}

/// File-wide verification state: the share tree and ciphertext tree, seeded from the UEB.
#[derive(Clone, Debug)]
pub struct FileVerifier {
    share_tree: PartialHashTree,
    crypttext_tree: PartialHashTree,
}

/// Per-share state: the share's block tree, rooted at its proven block-tree root.
#[derive(Clone, Debug)]
pub struct ShareVerifier {
    shnum: usize,
    block_tree: PartialHashTree,
}

impl FileVerifier {
    pub fn new(ueb: &Ueb) -> Self {
        FileVerifier {
            share_tree: PartialHashTree::new(ueb.total_shares, ueb.share_root_hash),
            crypttext_tree: PartialHashTree::new(
                ueb.num_segments as usize,
                ueb.crypttext_root_hash,
            ),
        }
    }

    /// Accept share `shnum` if its hash chain proves `block_tree_root` (the root of the block tree
    /// it stores) as leaf `shnum` of the share tree.
    pub fn verify_share(
        &mut self,
        shnum: usize,
        num_segments: u64,
        block_tree_root: Hash,
        chain: &[(usize, Hash)],
    ) -> Result<ShareVerifier, IntegrityError> {
        let leaf = self.share_tree.leaf_node(shnum);
        // The chain includes the leaf itself; what matters is that the leaf we use is the block
        // tree's root, so drop any stored copy and offer ours.
        let proof: Vec<(usize, Hash)> = chain.iter().copied().filter(|(i, _)| *i != leaf).collect();
        self.share_tree
            .add_leaf(shnum, block_tree_root, &proof)
            .map_err(|source| IntegrityError::BadShareHashes { shnum, source })?;
        Ok(ShareVerifier {
            shnum,
            block_tree: PartialHashTree::new(num_segments as usize, block_tree_root),
        })
    }

    /// Check a decoded segment's (unpadded) ciphertext; `stored_tree` is any share's full
    /// ciphertext tree (only the needed nodes are used, and they must chain to the UEB root).
    pub fn verify_segment(
        &mut self,
        segment: u64,
        ciphertext: &[u8],
        stored_tree: &[Hash],
    ) -> Result<(), IntegrityError> {
        let s = segment as usize;
        let proof: Vec<(usize, Hash)> = self
            .crypttext_tree
            .missing_for_leaf(s, false)
            .into_iter()
            .filter_map(|i| stored_tree.get(i).map(|h| (i, *h)))
            .collect();
        self.crypttext_tree
            .add_leaf(s, ciphertext_segment_hash(ciphertext), &proof)
            .map_err(|source| IntegrityError::BadSegment { segment, source })
    }

    /// Nodes of the ciphertext tree still needed to check `segment`.
    pub fn crypttext_nodes_needed(&self, segment: u64) -> Vec<usize> {
        self.crypttext_tree
            .missing_for_leaf(segment as usize, false)
    }
}

impl ShareVerifier {
    pub fn shnum(&self) -> usize {
        self.shnum
    }

    /// Check one block of this share; `stored_tree` is the share's full block tree.
    pub fn verify_block(
        &mut self,
        segment: u64,
        block: &[u8],
        stored_tree: &[Hash],
    ) -> Result<(), IntegrityError> {
        let s = segment as usize;
        let proof: Vec<(usize, Hash)> = self
            .block_tree
            .missing_for_leaf(s, false)
            .into_iter()
            .filter_map(|i| stored_tree.get(i).map(|h| (i, *h)))
            .collect();
        self.block_tree
            .add_leaf(s, block_hash(block), &proof)
            .map_err(|source| IntegrityError::BadBlock {
                shnum: self.shnum,
                segment,
                source,
            })
    }
}

/// What [`check_share`] found in a good share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareCheckReport {
    pub shnum: usize,
    pub segments: u64,
    pub codec: String,
}

/// Check one whole share (its stored bytes) with only what a verify cap holds: every block
/// against the share's block tree, the share's place in the share tree, the stored ciphertext
/// tree against the extension block, and the extension block against the cap. No key is needed
/// and nothing is decrypted.
pub fn check_share(
    ueb_hash: &Hash,
    k: usize,
    n: usize,
    size: u64,
    shnum: usize,
    bytes: &[u8],
) -> Result<ShareCheckReport, IntegrityError> {
    use crate::codec::CodecKind;
    use crate::hashtree::HashTree;
    use crate::immutable::params::Geometry;
    use crate::immutable::share::{ShareRegions, SparseShare};

    let layout = |source| IntegrityError::Layout { shnum, source };
    let truncated = |what| IntegrityError::Truncated { shnum, what };
    let share = SparseShare::whole(bytes.to_vec());
    let regions = ShareRegions::from_sparse(&share)
        .map_err(layout)?
        .ok_or(truncated("header"))?;
    let ueb_range = regions
        .ueb(&share)
        .ok_or(truncated("extension block length"))?;
    let ueb_bytes = share
        .get(ueb_range)
        .filter(|b| b.len() as u64 == ueb_range.length)
        .ok_or(truncated("extension block"))?;
    let ueb = verify_ueb(ueb_bytes, ueb_hash, k, n, size)?;
    let codec = CodecKind::from_name(&ueb.codec_name)
        .map_err(|_| IntegrityError::UebDisagreesWithCap("codec (unknown codec name)"))?
        .build(k, n)
        .map_err(|_| IntegrityError::UebDisagreesWithCap("k-of-n"))?;
    let g = Geometry::new(size, k, n, ueb.segment_size, codec.as_ref())
        .map_err(|_| IntegrityError::UebDisagreesWithCap("segment size"))?;
    if regions.header.block_size != g.block_size || regions.header.data_size != g.share_data_size()
    {
        return Err(layout(LayoutError::BadOffsets(
            "block or data size disagrees with the file",
        )));
    }
    let crypttext = ShareRegions::parse_tree(
        share
            .get(regions.crypttext_tree())
            .ok_or(truncated("ciphertext tree"))?,
    );
    let leaves = crate::hashtree::padded_leaf_count(g.num_segments as usize);
    if crypttext.len() != 2 * leaves - 1
        || HashTree::new(&crypttext[leaves - 1..]).root() != ueb.crypttext_root_hash
        || crypttext[0] != ueb.crypttext_root_hash
    {
        return Err(IntegrityError::BadSegment {
            segment: 0,
            source: crate::hashtree::HashTreeError::BadHash { node: 0 },
        });
    }
    let tree = ShareRegions::parse_tree(
        share
            .get(regions.block_tree())
            .ok_or(truncated("block hash tree"))?,
    );
    let chain = ShareRegions::parse_share_hashes(
        share
            .get(regions.share_hashes())
            .ok_or(truncated("share hashes"))?,
    )
    .map_err(layout)?;
    let root = *tree.first().ok_or(truncated("block hash tree"))?;
    let mut verifier = FileVerifier::new(&ueb).verify_share(shnum, g.num_segments, root, &chain)?;
    for s in 0..g.num_segments {
        let block = share
            .get(regions.block(s, g.block_len(s)))
            .ok_or(truncated("block"))?;
        if block.len() as u64 != g.block_len(s) {
            return Err(truncated("block"));
        }
        verifier.verify_block(s, block, &tree)?;
    }
    Ok(ShareCheckReport {
        shnum,
        segments: g.num_segments,
        codec: ueb.codec_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Codec, CodecKind};
    use crate::immutable::encode::encode_in_memory;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn sample() -> (Hash, Vec<Vec<u8>>) {
        let codec: Arc<dyn Codec> = CodecKind::Zfec.build(3, 5).unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let (file, shares) = encode_in_memory(&[9; 16], &data, 1024, &codec).unwrap();
        (file.ueb_hash, shares)
    }

    #[test]
    fn every_share_of_a_fresh_encoding_checks_out() {
        let (ueb_hash, shares) = sample();
        for (i, share) in shares.iter().enumerate() {
            let report = check_share(&ueb_hash, 3, 5, 5000, i, share).unwrap();
            assert_eq!(report.segments, 5);
        }
        assert!(
            check_share(&ueb_hash, 3, 5, 5001, 0, &shares[0]).is_err(),
            "wrong size in cap"
        );
    }

    proptest! {
        #[test]
        fn damaged_or_arbitrary_bytes_never_panic(
            cut in 0usize..3000, flip in 0usize..3000, garbage in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let (ueb_hash, shares) = sample();
            let share = &shares[1];
            let mut bad = share[..cut.min(share.len())].to_vec();
            if !bad.is_empty() {
                let at = flip % bad.len();
                bad[at] ^= 1;
            }
            let _ = check_share(&ueb_hash, 3, 5, 5000, 1, &bad);
            let _ = check_share(&ueb_hash, 3, 5, 5000, 1, &garbage);
            let _ = crate::immutable::ShareHeader::parse(&garbage);
        }
    }
}
