//! zfec-compatible k-of-n erasure code: byte-identical to Tahoe's `zfec` (GF(2^8) with the
//! polynomial 0x11D, systematic Vandermonde matrix), so shares interoperate with Tahoe grids.
//!
//! The encoding matrix (spec §3.5): an n×k matrix V with row 0 = (1, 0, …, 0) (evaluation at 0)
//! and row r ≥ 1 = (α^((r-1)·c))_c (evaluation at α^(r-1)); with T the inverse of V's top k×k
//! block, E = V·T. E's top k rows are the identity, so share i < k *is* input block i, and each
//! row r ≥ k gives parity block r, byte position by byte position. Only the n - k parity rows are
//! kept.
//!
//! Decoding uses the k received shares with the lowest share numbers, so as many primaries as
//! possible are plain copies. For the t missing primaries only a t×t system is inverted: with P
//! the present primaries and S the t secondaries, `recv_S = E[S][P]·x_P + E[S][missing]·x_missing`,
//! hence `x_missing = A⁻¹·recv_S + (A⁻¹·E[S][P])·x_P` with `A = E[S][missing]`. A is invertible
//! whenever E is MDS, which a Vandermonde construction guarantees. Every share handed to decode
//! is checked (range, length, duplicates) before any is used, so the result or error never
//! depends on which k were picked.
//!
//! The byte-crunching lives in `kernel` (AVX2 when available, else `reed-solomon-erasure`'s SIMD
//! slice kernels); `gf` holds the field and the small matrix algebra.

mod gf;
mod kernel;

use super::{Codec, CodecError};

/// Largest n: GF(2^8) has 256 evaluation points (0 and the 255 powers of α).
pub const MAX_SHARES: usize = 256;

/// Tahoe's zfec codec for one (k, n).
#[derive(Debug, Clone)]
pub struct Zfec {
    k: usize,
    n: usize,
    /// Rows k..n of E, row-major, (n - k) × k: the parity coefficients, computed once.
    parity: Vec<u8>,
}

impl Zfec {
    /// A k-of-n codec; needs 1 <= k <= n <= 256.
    pub fn new(k: usize, n: usize) -> Result<Zfec, CodecError> {
        let bad = |why| Err(CodecError::BadParams { k, n, why });
        if k == 0 {
            return bad("k must be at least 1");
        }
        if k > n {
            return bad("k must not exceed n");
        }
        if n > MAX_SHARES {
            return bad("n must not exceed 256 (the size of GF(2^8))");
        }
        let parity = parity_matrix(k, n)?;
        Ok(Zfec { k, n, parity })
    }

    /// Row `shnum` of E (shnum < n).
    fn row(&self, shnum: usize) -> RowRef<'_> {
        if shnum < self.k {
            RowRef::Unit(shnum)
        } else {
            let r = shnum - self.k;
            RowRef::Coefs(&self.parity[r * self.k..(r + 1) * self.k])
        }
    }
}

/// A row of E: either a unit vector (primary share) or stored coefficients.
enum RowRef<'a> {
    Unit(usize),
    Coefs(&'a [u8]),
}

impl RowRef<'_> {
    fn at(&self, col: usize) -> u8 {
        match self {
            RowRef::Unit(i) => u8::from(*i == col),
            RowRef::Coefs(c) => c[col],
        }
    }
}

/// V's row r (length k), per spec §3.5.
fn vandermonde_row(r: usize, k: usize) -> Vec<u8> {
    if r == 0 {
        let mut row = vec![0u8; k];
        row[0] = 1;
        row
    } else {
        (0..k).map(|c| gf::exp_alpha((r - 1) * c)).collect()
    }
}

/// Rows k..n of E = V·T, T = inverse of V's top k×k block.
fn parity_matrix(k: usize, n: usize) -> Result<Vec<u8>, CodecError> {
    let top: Vec<u8> = (0..k).flat_map(|r| vandermonde_row(r, k)).collect();
    // Distinct evaluation points make V's top block invertible; this error is unreachable for
    // valid (k, n) but keeps a math slip from becoming a panic.
    let t = gf::invert(&top, k).ok_or(CodecError::BadParams {
        k,
        n,
        why: "Vandermonde matrix is singular",
    })?;
    let bottom: Vec<u8> = (k..n).flat_map(|r| vandermonde_row(r, k)).collect();
    Ok(gf::matmul(&bottom, &t, n - k, k, k))
}

impl Codec for Zfec {
    fn name(&self) -> &'static str {
        "crs"
    }

    fn k(&self) -> usize {
        self.k
    }

    fn n(&self) -> usize {
        self.n
    }

    fn encoded_block_len(&self, input_block_len: usize) -> usize {
        input_block_len
    }

    fn encode(&self, segment: &[u8]) -> Result<Vec<Vec<u8>>, CodecError> {
        let mut blocks = Vec::new();
        self.encode_into(segment, &mut blocks)?;
        Ok(blocks)
    }

    fn decode(
        &self,
        input_block_len: usize,
        shares: &[(usize, &[u8])],
    ) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        self.decode_into(input_block_len, shares, &mut out)?;
        Ok(out)
    }
}

impl Zfec {
    /// [`Codec::encode`] into caller-owned buffers: `blocks` becomes the n encoded blocks, reusing
    /// the allocations already in it. An uploader that keeps `blocks` across segments of one size
    /// avoids allocating (and the page faults of fresh large allocations) on every segment.
    pub fn encode_into(&self, segment: &[u8], blocks: &mut Vec<Vec<u8>>) -> Result<(), CodecError> {
        let k = self.k;
        if segment.len() % k != 0 {
            return Err(CodecError::InputNotMultipleOfK {
                len: segment.len(),
                k,
            });
        }
        let block_len = segment.len() / k;
        blocks.resize_with(self.n, Vec::new);
        if block_len == 0 {
            blocks.iter_mut().for_each(Vec::clear);
            return Ok(());
        }
        let inputs: Vec<&[u8]> = segment.chunks_exact(block_len).collect();
        let (primary, parity) = blocks.split_at_mut(k);
        for (dst, src) in primary.iter_mut().zip(&inputs) {
            dst.clear();
            dst.extend_from_slice(src);
        }
        for p in parity.iter_mut() {
            // The kernel overwrites every byte, so a buffer of the right length needs no clearing.
            if p.len() != block_len {
                p.clear();
                p.resize(block_len, 0);
            }
        }
        let mut outs: Vec<&mut [u8]> = parity.iter_mut().map(|p| p.as_mut_slice()).collect();
        kernel::mul_matrix(&self.parity, &inputs, &mut outs);
        Ok(())
    }

    /// [`Codec::decode`] into a caller-owned buffer: `out` is cleared and receives the segment,
    /// reusing its allocation.
    pub fn decode_into(
        &self,
        input_block_len: usize,
        shares: &[(usize, &[u8])],
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let (k, n) = (self.k, self.n);
        // Validate every share given, not only the ones used, so the outcome does not depend on
        // which shares happen to be picked.
        let mut by_shnum: [Option<&[u8]>; MAX_SHARES] = [None; MAX_SHARES];
        for &(shnum, block) in shares {
            if shnum >= n {
                return Err(CodecError::ShareNumberOutOfRange { shnum, n });
            }
            if block.len() != input_block_len {
                return Err(CodecError::WrongBlockLength {
                    shnum,
                    got: block.len(),
                    expected: input_block_len,
                });
            }
            if by_shnum[shnum].replace(block).is_some() {
                return Err(CodecError::DuplicateShare { shnum });
            }
        }
        if shares.len() < k {
            return Err(CodecError::NotEnoughShares {
                needed: k,
                got: shares.len(),
            });
        }
        // The k lowest share numbers: every primary present, then the fewest secondaries.
        let chosen: Vec<(usize, &[u8])> = by_shnum[..n]
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.map(|b| (i, b)))
            .take(k)
            .collect();
        let secondaries: Vec<(usize, &[u8])> =
            chosen.iter().copied().filter(|&(i, _)| i >= k).collect();
        let present: Vec<(usize, &[u8])> = chosen.iter().copied().filter(|&(i, _)| i < k).collect();
        let missing: Vec<usize> = (0..k).filter(|&c| by_shnum[c].is_none()).collect();
        debug_assert_eq!(missing.len(), secondaries.len());

        // Cannot overflow for blocks that exist in memory, but stay panic-free regardless.
        let total = k
            .checked_mul(input_block_len)
            .ok_or(CodecError::BadParams {
                k,
                n,
                why: "segment length overflows usize",
            })?;
        out.clear();
        out.reserve(total);
        for block in &by_shnum[..k] {
            match block {
                Some(b) => out.extend_from_slice(b),
                None => out.resize(out.len() + input_block_len, 0),
            }
        }
        if missing.is_empty() || input_block_len == 0 {
            return Ok(());
        }

        let coefs = self.recovery_matrix(&missing, &secondaries, &present)?;
        let inputs: Vec<&[u8]> = secondaries
            .iter()
            .chain(present.iter())
            .map(|&(_, b)| b)
            .collect();
        let mut outs: Vec<&mut [u8]> = out
            .chunks_exact_mut(input_block_len)
            .enumerate()
            .filter(|(c, _)| by_shnum[*c].is_none())
            .map(|(_, b)| b)
            .collect();
        kernel::mul_matrix(&coefs, &inputs, &mut outs);
        Ok(())
    }

    /// Coefficients (t × k, row-major) giving each missing primary from the inputs ordered
    /// `secondaries` then `present` (see the module docs for the algebra).
    fn recovery_matrix(
        &self,
        missing: &[usize],
        secondaries: &[(usize, &[u8])],
        present: &[(usize, &[u8])],
    ) -> Result<Vec<u8>, CodecError> {
        let t = missing.len();
        let p = present.len();
        let a: Vec<u8> = secondaries
            .iter()
            .flat_map(|&(s, _)| {
                let row = self.row(s);
                missing.iter().map(move |&m| row.at(m))
            })
            .collect();
        // E is MDS, so A is invertible; an error here would mean a bug, not bad input.
        let a_inv = gf::invert(&a, t).ok_or(CodecError::BadParams {
            k: self.k,
            n: self.n,
            why: "decoding matrix is singular",
        })?;
        let e_sp: Vec<u8> = secondaries
            .iter()
            .flat_map(|&(s, _)| {
                let row = self.row(s);
                present.iter().map(move |&(c, _)| row.at(c))
            })
            .collect();
        let via_present = gf::matmul(&a_inv, &e_sp, t, t, p);
        let mut coefs = Vec::with_capacity(t * self.k);
        for m in 0..t {
            coefs.extend_from_slice(&a_inv[m * t..(m + 1) * t]);
            coefs.extend_from_slice(&via_present[m * p..(m + 1) * p]);
        }
        Ok(coefs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn segment(rng: &mut ChaCha8Rng, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        rng.fill_bytes(&mut v);
        v
    }

    /// A random k-subset of 0..n in random order (Fisher-Yates prefix).
    fn subset(rng: &mut ChaCha8Rng, k: usize, n: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..k {
            let j = i + (rng.next_u32() as usize) % (n - i);
            all.swap(i, j);
        }
        all.truncate(k);
        all
    }

    fn pick<'a>(blocks: &'a [Vec<u8>], which: &[usize]) -> Vec<(usize, &'a [u8])> {
        which.iter().map(|&i| (i, blocks[i].as_slice())).collect()
    }

    #[test]
    fn bad_params_are_rejected() {
        for (k, n) in [(0, 0), (0, 5), (4, 3), (1, 257), (257, 257), (300, 10)] {
            assert!(
                matches!(Zfec::new(k, n), Err(CodecError::BadParams { .. })),
                "{k}-of-{n}"
            );
        }
        assert!(Zfec::new(256, 256).is_ok());
        assert!(Zfec::new(1, 256).is_ok());
    }

    #[test]
    fn metadata() {
        let z = Zfec::new(3, 10).unwrap();
        assert_eq!(z.name(), "crs");
        assert_eq!((z.k(), z.n()), (3, 10));
        assert_eq!(z.encoded_block_len(12345), 12345);
    }

    #[test]
    fn known_3_of_10_output() {
        // zfec.Encoder(3, 10).encode([b"abc", b"def", b"ghi"]) from zfec 1.6.0.0.
        let z = Zfec::new(3, 10).unwrap();
        let blocks = z.encode(b"abcdefghi").unwrap();
        let want: [&[u8]; 10] = [
            b"abc",
            b"def",
            b"ghi",
            b"]fw",
            b"\xd9*K",
            b"+\xef3",
            b"i\x11\xc3",
            b";I>",
            b"\xe0'\xd9",
            b"\xaa\xa4\n",
        ];
        assert_eq!(blocks, want.map(|b| b.to_vec()).to_vec());
    }

    #[test]
    fn k_one_makes_copies() {
        let z = Zfec::new(1, 7).unwrap();
        let blocks = z.encode(b"hello").unwrap();
        assert_eq!(blocks, vec![b"hello".to_vec(); 7]);
        for i in 0..7 {
            assert_eq!(z.decode(5, &pick(&blocks, &[i])).unwrap(), b"hello");
        }
    }

    #[test]
    fn k_equals_n_is_the_identity() {
        let z = Zfec::new(4, 4).unwrap();
        let blocks = z.encode(b"0123456789ab").unwrap();
        assert_eq!(
            blocks,
            vec![
                b"012".to_vec(),
                b"345".to_vec(),
                b"678".to_vec(),
                b"9ab".to_vec()
            ]
        );
        assert_eq!(
            z.decode(3, &pick(&blocks, &[3, 1, 0, 2])).unwrap(),
            b"0123456789ab"
        );
    }

    #[test]
    fn n_256_decodes_from_the_top_shares() {
        let mut rng = ChaCha8Rng::seed_from_u64(256);
        for k in [1, 2, 128, 255, 256] {
            let z = Zfec::new(k, 256).unwrap();
            let seg = segment(&mut rng, k * 33);
            let blocks = z.encode(&seg).unwrap();
            assert_eq!(blocks.len(), 256);
            let top: Vec<usize> = (256 - k..256).rev().collect();
            assert_eq!(z.decode(33, &pick(&blocks, &top)).unwrap(), seg, "k={k}");
            let which = subset(&mut rng, k, 256);
            assert_eq!(z.decode(33, &pick(&blocks, &which)).unwrap(), seg, "k={k}");
        }
    }

    #[test]
    fn empty_segment_gives_empty_blocks() {
        let z = Zfec::new(3, 10).unwrap();
        let blocks = z.encode(&[]).unwrap();
        assert_eq!(blocks, vec![Vec::<u8>::new(); 10]);
        assert_eq!(z.decode(0, &pick(&blocks, &[9, 8, 7])).unwrap(), b"");
    }

    #[test]
    fn segment_not_a_multiple_of_k_is_rejected() {
        let z = Zfec::new(3, 10).unwrap();
        assert_eq!(
            z.encode(&[0u8; 10]),
            Err(CodecError::InputNotMultipleOfK { len: 10, k: 3 })
        );
    }

    #[test]
    fn bad_share_sets_get_typed_errors() {
        let z = Zfec::new(3, 5).unwrap();
        let blocks = z.encode(b"abcdefghi").unwrap();
        let b = |i: usize| blocks[i].as_slice();
        assert_eq!(
            z.decode(3, &[(0, b(0)), (4, b(4))]),
            Err(CodecError::NotEnoughShares { needed: 3, got: 2 })
        );
        assert_eq!(
            z.decode(3, &[(0, b(0)), (5, b(4)), (1, b(1))]),
            Err(CodecError::ShareNumberOutOfRange { shnum: 5, n: 5 })
        );
        assert_eq!(
            z.decode(3, &[(0, b(0)), (usize::MAX, b(4))]),
            Err(CodecError::ShareNumberOutOfRange {
                shnum: usize::MAX,
                n: 5
            })
        );
        assert_eq!(
            z.decode(3, &[(0, b(0)), (4, b(4)), (0, b(0))]),
            Err(CodecError::DuplicateShare { shnum: 0 })
        );
        assert_eq!(
            z.decode(3, &[(0, b(0)), (4, &b(4)[..2]), (1, b(1))]),
            Err(CodecError::WrongBlockLength {
                shnum: 4,
                got: 2,
                expected: 3
            })
        );
        assert_eq!(
            z.decode(4, &[(0, b(0)), (4, b(4)), (1, b(1))]),
            Err(CodecError::WrongBlockLength {
                shnum: 0,
                got: 3,
                expected: 4
            })
        );
        // Extra shares are fine.
        assert_eq!(
            z.decode(3, &pick(&blocks, &[4, 3, 2, 1, 0])).unwrap(),
            b"abcdefghi"
        );
    }

    #[test]
    fn reused_buffers_give_the_same_results_as_fresh_ones() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let z = Zfec::new(3, 10).unwrap();
        // Stale contents and a wrong count of buffers must not leak into the result.
        let mut blocks = vec![vec![0xEEu8; 500]; 12];
        let mut out = vec![0xEEu8; 5000];
        for len in [300, 300, 3 * 97, 0, 3 * 1000] {
            let seg = segment(&mut rng, len);
            z.encode_into(&seg, &mut blocks).unwrap();
            assert_eq!(blocks, z.encode(&seg).unwrap(), "encode_into, len {len}");
            let which = pick(&blocks, &[9, 1, 5]);
            z.decode_into(len / 3, &which, &mut out).unwrap();
            assert_eq!(out, seg, "decode_into, len {len}");
        }
    }

    #[test]
    fn every_small_geometry_round_trips_from_random_subsets() {
        let mut rng = ChaCha8Rng::seed_from_u64(0x2fec);
        for n in 1..=12 {
            for k in 1..=n {
                let z = Zfec::new(k, n).unwrap();
                for _ in 0..4 {
                    let block_len = (rng.next_u32() % 70) as usize;
                    let seg = segment(&mut rng, k * block_len);
                    let blocks = z.encode(&seg).unwrap();
                    assert_eq!(blocks.len(), n);
                    for (i, chunk) in seg.chunks(block_len.max(1)).enumerate() {
                        assert_eq!(blocks[i], chunk, "primary {i} of {k}-of-{n}");
                    }
                    let which = subset(&mut rng, k, n);
                    assert_eq!(
                        z.decode(block_len, &pick(&blocks, &which)).unwrap(),
                        seg,
                        "{k}-of-{n} from {which:?}"
                    );
                }
            }
        }
    }

    fn geometry() -> impl Strategy<Value = (usize, usize, Vec<u8>, Vec<usize>)> {
        (1usize..=12)
            .prop_flat_map(|n| (1..=n, Just(n)))
            .prop_flat_map(|(k, n)| {
                (
                    Just(k),
                    Just(n),
                    (0usize..100)
                        .prop_flat_map(move |bl| proptest::collection::vec(any::<u8>(), k * bl)),
                    Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
                )
            })
    }

    fn wide_geometry() -> impl Strategy<Value = (usize, usize, Vec<u8>, Vec<usize>)> {
        (1usize..=256)
            .prop_flat_map(|n| (1..=n, Just(n)))
            .prop_flat_map(|(k, n)| {
                (
                    Just(k),
                    Just(n),
                    (0usize..8)
                        .prop_flat_map(move |bl| proptest::collection::vec(any::<u8>(), k * bl)),
                    Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn wide_codes_decode_from_random_subsets((k, n, seg, order) in wide_geometry()) {
            let z = Zfec::new(k, n).unwrap();
            let blocks = z.encode(&seg).unwrap();
            let bl = seg.len() / k;
            prop_assert_eq!(z.decode(bl, &pick(&blocks, &order[..k])).unwrap(), seg);
        }
    }

    proptest! {
        #[test]
        fn decode_inverts_encode((k, n, seg, order) in geometry()) {
            let z = Zfec::new(k, n).unwrap();
            let blocks = z.encode(&seg).unwrap();
            let bl = seg.len() / k;
            for i in 0..k {
                prop_assert_eq!(&blocks[i][..], &seg[i * bl..(i + 1) * bl]);
            }
            prop_assert_eq!(z.decode(bl, &pick(&blocks, &order[..k])).unwrap(), seg.clone());
            // Handing over every share decodes too (extras ignored).
            prop_assert_eq!(z.decode(bl, &pick(&blocks, &order)).unwrap(), seg);
        }
    }
}
