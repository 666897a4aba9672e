//! The CHK encoder: plaintext segments in, encoded blocks and (at the end) hash trees and the
//! extension block out.
//!
//! It holds one segment at a time plus 32 bytes per segment per share of block hashes (needed
//! for the block trees that end each share).

use std::sync::Arc;

use crate::codec::{Codec, CodecError};
use crate::crypto::{
    block_hash, ciphertext_hasher, ciphertext_segment_hash, ueb_hash, AesCtr, TaggedHasher,
};
use crate::hashtree::{Hash, HashTree};
use crate::immutable::layout::{share_hash_order, ShareLayout};
use crate::immutable::params::Geometry;
use crate::immutable::ueb::Ueb;

/// Why a segment could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("segment {segment} should hold {expected} bytes of plaintext, got {got}")]
    WrongSegmentLength {
        segment: u64,
        expected: u64,
        got: usize,
    },
    #[error("all {0} segments were already encoded")]
    TooManySegments(u64),
    #[error("only {done} of {total} segments were encoded")]
    Incomplete { done: u64, total: u64 },
    #[error("codec {codec} is {ck}-of-{cn} but the file is {k}-of-{n}")]
    CodecMismatch {
        codec: &'static str,
        ck: usize,
        cn: usize,
        k: usize,
        n: usize,
    },
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Params(#[from] crate::immutable::params::ParamsError),
}

/// Streaming CHK encoder for one file.
#[derive(Debug)]
pub struct ChkEncoder {
    geometry: Geometry,
    codec: Arc<dyn Codec>,
    cipher: AesCtr,
    crypttext_hasher: TaggedHasher,
    segment_hashes: Vec<Hash>,
    /// block_hashes[share][segment]
    block_hashes: Vec<Vec<Hash>>,
    next_segment: u64,
    /// Reused buffer for the padded ciphertext of the current segment.
    scratch: Vec<u8>,
}

/// What the encoder knows once every segment went through.
#[derive(Clone, Debug)]
pub struct EncodedFile {
    pub ueb: Ueb,
    pub ueb_bytes: Vec<u8>,
    pub ueb_hash: Hash,
    pub layout: ShareLayout,
    pub crypttext_tree: HashTree,
    pub block_trees: Vec<HashTree>,
    pub share_tree: HashTree,
}

impl EncodedFile {
    /// The share hash chain stored in share `shnum`, in Tahoe's order.
    pub fn share_hash_chain(&self, shnum: usize) -> Vec<(usize, Hash)> {
        share_hash_order(self.ueb.total_shares, shnum)
            .into_iter()
            .map(|i| (i, self.share_tree.nodes()[i]))
            .collect()
    }

    /// Bytes of share `shnum` after its block data (trees, share hashes, extension block).
    pub fn share_trailer(&self, shnum: usize) -> Vec<u8> {
        self.layout.trailer(
            self.crypttext_tree.nodes(),
            self.block_trees[shnum].nodes(),
            &self.share_hash_chain(shnum),
            &self.ueb_bytes,
        )
    }
}

impl ChkEncoder {
    pub fn new(
        key: &[u8; 16],
        geometry: Geometry,
        codec: Arc<dyn Codec>,
    ) -> Result<Self, EncodeError> {
        if codec.k() != geometry.k || codec.n() != geometry.n {
            return Err(EncodeError::CodecMismatch {
                codec: codec.name(),
                ck: codec.k(),
                cn: codec.n(),
                k: geometry.k,
                n: geometry.n,
            });
        }
        Ok(ChkEncoder {
            geometry,
            codec,
            cipher: AesCtr::new(key),
            crypttext_hasher: ciphertext_hasher(),
            segment_hashes: Vec::new(),
            block_hashes: vec![Vec::new(); geometry.n],
            next_segment: 0,
            scratch: Vec::new(),
        })
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Bytes held: the segment buffer and the per-segment hash lists.
    pub fn bytes_held(&self) -> usize {
        self.scratch.capacity()
            + 32 * (self.segment_hashes.len()
                + self.block_hashes.iter().map(Vec::len).sum::<usize>())
    }

    /// Index of the next segment `encode_segment` expects.
    pub fn next_segment(&self) -> u64 {
        self.next_segment
    }

    /// The layout every share will have (known before any data: the extension block's length
    /// does not depend on its hash values).
    pub fn layout(&self) -> ShareLayout {
        ShareLayout::new(&self.geometry, self.ueb_template().to_bytes().len())
    }

    fn ueb_template(&self) -> Ueb {
        let g = &self.geometry;
        Ueb {
            codec_name: self.codec.name().to_string(),
            segment_size: g.segment_size,
            needed_shares: g.k,
            total_shares: g.n,
            num_segments: g.num_segments,
            size: g.size,
            padded_tail_size: g.padded_tail_size,
            crypttext_hash: [0; 32],
            crypttext_root_hash: [0; 32],
            share_root_hash: [0; 32],
        }
    }

    /// Encrypt and encode the next segment of plaintext; returns the n blocks (block i for
    /// share i).
    pub fn encode_segment(&mut self, plaintext: &[u8]) -> Result<Vec<Vec<u8>>, EncodeError> {
        let g = self.geometry;
        let s = self.next_segment;
        if s >= g.num_segments {
            return Err(EncodeError::TooManySegments(g.num_segments));
        }
        if plaintext.len() as u64 != g.segment_len(s) {
            return Err(EncodeError::WrongSegmentLength {
                segment: s,
                expected: g.segment_len(s),
                got: plaintext.len(),
            });
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(plaintext);
        self.cipher.apply(&mut self.scratch);
        self.crypttext_hasher.update(&self.scratch);
        self.segment_hashes
            .push(ciphertext_segment_hash(&self.scratch));
        self.scratch.resize(g.padded_segment_len(s) as usize, 0);
        let blocks = self.codec.encode(&self.scratch)?;
        for (share, block) in blocks.iter().enumerate() {
            self.block_hashes[share].push(block_hash(block));
        }
        self.next_segment += 1;
        Ok(blocks)
    }

    /// Build the trees and the extension block once every segment is encoded.
    pub fn finish(self) -> Result<EncodedFile, EncodeError> {
        let total = self.geometry.num_segments;
        if self.next_segment != total {
            return Err(EncodeError::Incomplete {
                done: self.next_segment,
                total,
            });
        }
        let layout = self.layout();
        let crypttext_tree = HashTree::new(&self.segment_hashes);
        let block_trees: Vec<HashTree> = self
            .block_hashes
            .iter()
            .map(|leaves| HashTree::new(leaves))
            .collect();
        let roots: Vec<Hash> = block_trees.iter().map(HashTree::root).collect();
        let share_tree = HashTree::new(&roots);
        let mut ueb = self.ueb_template();
        ueb.crypttext_hash = self.crypttext_hasher.finalize();
        ueb.crypttext_root_hash = crypttext_tree.root();
        ueb.share_root_hash = share_tree.root();
        let ueb_bytes = ueb.to_bytes();
        let ueb_hash = ueb_hash(&ueb_bytes);
        Ok(EncodedFile {
            ueb,
            ueb_bytes,
            ueb_hash,
            layout,
            crypttext_tree,
            block_trees,
            share_tree,
        })
    }
}

/// The convergent encryption key of a whole in-memory plaintext (streaming callers use
/// [`crate::crypto::convergent_key_hasher`] directly).
pub fn convergent_key(
    plaintext: &[u8],
    convergence_secret: &[u8],
    k: usize,
    n: usize,
    max_segment_size: u64,
) -> [u8; 16] {
    let segsize = crate::immutable::params::effective_segment_size(
        plaintext.len() as u64,
        k,
        max_segment_size,
    );
    let mut h = crate::crypto::convergent_key_hasher(convergence_secret, k, n, segsize);
    h.update(plaintext);
    h.finish()
}

/// Encode a whole in-memory file into complete share bytes (header, blocks, trailer) — for tests,
/// tools and benchmarks; uploads stream segment by segment instead.
pub fn encode_in_memory(
    key: &[u8; 16],
    plaintext: &[u8],
    max_segment_size: u64,
    codec: &Arc<dyn Codec>,
) -> Result<(EncodedFile, Vec<Vec<u8>>), EncodeError> {
    let g = Geometry::new(
        plaintext.len() as u64,
        codec.k(),
        codec.n(),
        max_segment_size,
        codec.as_ref(),
    )?;
    let mut enc = ChkEncoder::new(key, g, codec.clone())?;
    let header = enc.layout().header.to_bytes();
    let mut shares: Vec<Vec<u8>> = vec![header; g.n];
    for s in 0..g.num_segments {
        let start = g.segment_offset(s) as usize;
        let blocks = enc.encode_segment(&plaintext[start..start + g.segment_len(s) as usize])?;
        for (share, block) in shares.iter_mut().zip(blocks) {
            share.extend_from_slice(&block);
        }
    }
    let file = enc.finish()?;
    for (i, share) in shares.iter_mut().enumerate() {
        share.extend_from_slice(&file.share_trailer(i));
    }
    Ok((file, shares))
}
