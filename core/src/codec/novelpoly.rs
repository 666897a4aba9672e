//! Exact k-of-n erasure coding over GF(2^16) on top of `reed-solomon-novelpoly` v2.
//!
//! The crate only encodes with a power-of-two count of data symbols `K` and a power-of-two
//! transform size `N >= 2K`, and its own `derive_parameters` rounds the caller's k *down*, so a
//! naive wrapper would not honour "any k of n". Every codeword of the crate is the evaluation of
//! one polynomial of degree < K at the points w_0..w_N (w_i depends linearly on the bits of i), so
//! we build an exact code from it in one of three ways, fixed by (k, n) alone:
//!
//! - **identity** (k == n): every share is needed, so share i is input block i.
//! - **shortened** (the common case): K = next power of two >= k, data blocks at positions 0..k,
//!   implicit all-zero data at positions k..K that both sides know, and the n - k parity blocks at
//!   positions K..K+n-k, in a transform of size N = next power of two >= K + n - k. The blocks
//!   are exactly what the crate's `ReedSolomon::encode` yields for those parameters (a test checks
//!   it), computed column by column with the crate's additive FFT: `inverse_afft` once, then
//!   `afft` on only the cosets that hold parity (its `encode_low` does all of them), and without
//!   its per-column allocations. The decoder adds the K - k known zero shards to any k real
//!   shares, giving the crate's erasure recovery (`reconstruct_sub`) the K positions it needs.
//! - **interpolated** (only when K + n - k > 65536, i.e. very wide k): share i is the evaluation at
//!   w_i of the degree < k polynomial through the data at w_0..w_k, in a transform of size
//!   N = next power of two >= n. Both directions use the crate's erasure recovery
//!   (`f2e16::reconstruct_sub`); it only returns positions below N/2, so positions in the upper
//!   half are recovered from the codeword permuted by `i ^ N/2`, which is the same polynomial
//!   shifted by w_{N/2} and so of the same degree.
//!
//! All three are systematic: block i < k is input block i, padded to an even length because the
//! crate works on 2-byte symbols.
//!
//! Panics inside the crate that this module keeps out of reach: `afft`/`inverse_afft` index a
//! table by `offset + size - 2` and need buffers of `size` symbols (offsets stay below
//! N <= 65536); `reconstruct_sub` asserts power-of-two sizes, a span <= N/2 and N-symbol inputs;
//! both hold by construction. (The crate's higher-level `ReedSolomon::encode`/`reconstruct`, not
//! used here, would also reject empty input and panic on `K > N/2` or odd `WrappedShard`
//! lengths.) Share numbers, duplicates and block lengths are checked before any arithmetic, so
//! recovery always has exactly the known positions it needs.

use reed_solomon_novelpoly::f2e16::{
    afft, eval_error_polynomial, inverse_afft, reconstruct_sub, Additive, Multiplier, FIELD_SIZE,
};

use super::{Codec, CodecError};

/// Largest share count: the field has 2^16 evaluation points.
pub const MAX_SHARES: usize = FIELD_SIZE;

/// The `reed-solomon-novelpoly` codec with exact k-of-n semantics (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NovelPoly {
    k: usize,
    n: usize,
    layout: Layout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// k == n: the blocks are the input blocks.
    Identity,
    /// `kp` data positions (k real, the rest implicit zeros) in a transform of size `np`.
    Shortened { kp: usize, np: usize },
    /// Share i is position i of a transform of size `np` (used when `Shortened` would not fit).
    Interpolated { np: usize },
}

impl NovelPoly {
    /// A k-of-n codec; needs 1 <= k <= n <= 65536.
    pub fn new(k: usize, n: usize) -> Result<NovelPoly, CodecError> {
        if k == 0 {
            return Err(CodecError::BadParams {
                k,
                n,
                why: "k must be at least 1",
            });
        }
        if k > n {
            return Err(CodecError::BadParams {
                k,
                n,
                why: "k must not exceed n",
            });
        }
        if n > MAX_SHARES {
            return Err(CodecError::BadParams {
                k,
                n,
                why: "n must not exceed 65536 (the size of GF(2^16))",
            });
        }
        let layout = if k == n {
            Layout::Identity
        } else {
            let kp = k.next_power_of_two();
            let wanted = kp + (n - k);
            // `wanted > kp` (a power of two), so `np >= 2 * kp` as the crate's encoder requires.
            let np = wanted.next_power_of_two();
            if np <= FIELD_SIZE {
                Layout::Shortened { kp, np }
            } else {
                Layout::Interpolated {
                    np: n.next_power_of_two(),
                }
            }
        };
        Ok(NovelPoly { k, n, layout })
    }

    /// Like [`NovelPoly::new`] but always using the interpolated layout, so tests can cover it
    /// with small parameters.
    #[cfg(test)]
    fn new_interpolated(k: usize, n: usize) -> NovelPoly {
        assert!(1 <= k && k < n && n <= MAX_SHARES);
        NovelPoly {
            k,
            n,
            layout: Layout::Interpolated {
                np: n.next_power_of_two(),
            },
        }
    }

    /// The layout in use, for tests and diagnostics.
    #[cfg(test)]
    fn layout_name(&self) -> &'static str {
        match self.layout {
            Layout::Identity => "identity",
            Layout::Shortened { .. } => "shortened",
            Layout::Interpolated { .. } => "interpolated",
        }
    }
}

/// The crate returned an error we had ruled out beforehand; report it rather than panic.
fn crate_rejected(k: usize, n: usize) -> CodecError {
    CodecError::BadParams {
        k,
        n,
        why: "reed-solomon-novelpoly rejected the derived parameters",
    }
}

/// The GF(2^16) symbol at `col` of a block, reading past its end as zero.
fn symbol(block: &[u8], col: usize) -> Additive {
    let b0 = block.get(2 * col).copied().unwrap_or(0);
    let b1 = block.get(2 * col + 1).copied().unwrap_or(0);
    Additive(u16::from_be_bytes([b0, b1]))
}

/// Writes column `c` of the recovered data symbols into the k output blocks of `len` bytes.
fn store_column(out: &mut [u8], len: usize, recovered: &[Additive], c: usize) {
    let end = (2 * c + 2).min(len);
    for (block, sym) in out.chunks_exact_mut(len).zip(recovered) {
        block[2 * c..end].copy_from_slice(&sym.0.to_be_bytes()[..end - 2 * c]);
    }
}

/// The crate's error-locator evaluation for one erasure pattern (computed once per call).
fn error_poly(
    erasures: &[bool],
    k: usize,
    n: usize,
) -> Result<Box<[Multiplier; FIELD_SIZE]>, CodecError> {
    let mut poly = vec![Multiplier(0); FIELD_SIZE].into_boxed_slice();
    eval_error_polynomial(erasures, &mut poly, FIELD_SIZE);
    poly.try_into().map_err(|_| crate_rejected(k, n))
}

/// Erasure recovery over a size-`np` codeword of which only `present` positions are known:
/// yields the symbols of positions `0..span` (`span` a power of two <= np/2) when `lower` is
/// set, and of `np/2..np` when `upper` is set (by recovering the codeword permuted by
/// `i ^ np/2`).
struct Recovery {
    np: usize,
    erasures: Vec<bool>,
    lower: Option<(usize, Box<[Multiplier; FIELD_SIZE]>)>,
    upper: Option<(Vec<bool>, Box<[Multiplier; FIELD_SIZE]>)>,
}

impl Recovery {
    fn new(
        np: usize,
        present: &[usize],
        lower_span: Option<usize>,
        want_upper: bool,
        k: usize,
        n: usize,
    ) -> Result<Recovery, CodecError> {
        let mut erasures = vec![true; np];
        for &p in present {
            erasures[p] = false;
        }
        let lower = match lower_span {
            Some(span) => Some((span, error_poly(&erasures, k, n)?)),
            None => None,
        };
        let upper = if want_upper {
            let half = np / 2;
            let permuted: Vec<bool> = (0..np).map(|i| erasures[i ^ half]).collect();
            let poly = error_poly(&permuted, k, n)?;
            Some((permuted, poly))
        } else {
            None
        };
        Ok(Recovery {
            np,
            erasures,
            lower,
            upper,
        })
    }

    /// Recover one column; `out[p]` is set for every position p the recovery covers.
    fn column(
        &self,
        codeword: &[Option<Additive>],
        out: &mut [Additive],
        k: usize,
        n: usize,
    ) -> Result<(), CodecError> {
        let half = self.np / 2;
        let store = |bytes: Vec<u8>, out: &mut [Additive], flip: usize| {
            for (i, pair) in bytes.chunks_exact(2).enumerate() {
                out[i ^ flip] = Additive(u16::from_be_bytes([pair[0], pair[1]]));
            }
        };
        if let Some((span, poly)) = &self.lower {
            let bytes = reconstruct_sub(codeword, &self.erasures, self.np, *span, poly)
                .map_err(|_| crate_rejected(k, n))?;
            store(bytes, out, 0);
        }
        if let Some((permuted_erasures, poly)) = &self.upper {
            let permuted: Vec<Option<Additive>> =
                (0..self.np).map(|i| codeword[i ^ half]).collect();
            let bytes = reconstruct_sub(&permuted, permuted_erasures, self.np, half, poly)
                .map_err(|_| crate_rejected(k, n))?;
            store(bytes, out, half);
        }
        Ok(())
    }
}

impl NovelPoly {
    /// Position in the crate's codeword that carries share `shnum`.
    fn position(&self, shnum: usize) -> usize {
        match self.layout {
            Layout::Shortened { kp, .. } if shnum >= self.k => kp + (shnum - self.k),
            _ => shnum,
        }
    }

    /// Checks every given share and returns the k chosen for decoding, by ascending share
    /// number (so primary shares are preferred).
    fn select<'a>(
        &self,
        block_len: usize,
        shares: &[(usize, &'a [u8])],
    ) -> Result<Vec<(usize, &'a [u8])>, CodecError> {
        let mut seen = vec![false; self.n];
        for &(shnum, block) in shares {
            if shnum >= self.n {
                return Err(CodecError::ShareNumberOutOfRange { shnum, n: self.n });
            }
            if seen[shnum] {
                return Err(CodecError::DuplicateShare { shnum });
            }
            seen[shnum] = true;
            if block.len() != block_len {
                return Err(CodecError::WrongBlockLength {
                    shnum,
                    got: block.len(),
                    expected: block_len,
                });
            }
        }
        if shares.len() < self.k {
            return Err(CodecError::NotEnoughShares {
                needed: self.k,
                got: shares.len(),
            });
        }
        let mut chosen = shares.to_vec();
        chosen.sort_unstable_by_key(|&(shnum, _)| shnum);
        chosen.truncate(self.k);
        Ok(chosen)
    }

    /// Systematic blocks plus parity from the crate's encoder, one 2-byte column at a time:
    /// the same codewords `ReedSolomon::encode` computes, without its per-column allocations or
    /// an interleaved copy of the segment.
    fn encode_shortened(&self, kp: usize, segment: &[u8], len: usize) -> Vec<Vec<u8>> {
        let (k, n) = (self.k, self.n);
        let syms = len.div_ceil(2);
        let mut blocks: Vec<Vec<u8>> = segment
            .chunks_exact(len)
            .map(|b| {
                let mut v = b.to_vec();
                v.resize(2 * syms, 0);
                v
            })
            .collect();
        let mut parity = vec![vec![0u8; 2 * syms]; n - k];
        let mut coeffs = vec![Additive(0); kp];
        let mut coset = vec![Additive(0); kp];
        for c in 0..syms {
            for (slot, block) in coeffs.iter_mut().zip(&blocks) {
                *slot = Additive(u16::from_be_bytes([block[2 * c], block[2 * c + 1]]));
            }
            // Positions k..kp: the implicit zero shards both sides know.
            coeffs[k..].fill(Additive(0));
            inverse_afft(&mut coeffs, kp, 0);
            // Parity position kp + j lies in the coset starting at kp * (1 + j / kp).
            for (i, blocks) in parity.chunks_mut(kp).enumerate() {
                coset.copy_from_slice(&coeffs);
                afft(&mut coset, kp, kp * (i + 1));
                for (block, sym) in blocks.iter_mut().zip(&coset) {
                    block[2 * c..2 * c + 2].copy_from_slice(&sym.0.to_be_bytes());
                }
            }
        }
        blocks.extend(parity);
        blocks
    }

    /// Erasure recovery by the crate with the K - k implicit zero shards added as present.
    fn decode_shortened(
        &self,
        kp: usize,
        np: usize,
        len: usize,
        chosen: &[(usize, &[u8])],
    ) -> Result<Vec<u8>, CodecError> {
        let (k, n) = (self.k, self.n);
        let mut present: Vec<usize> = chosen.iter().map(|&(s, _)| self.position(s)).collect();
        present.extend(k..kp);
        let recovery = Recovery::new(np, &present, Some(kp), false, k, n)?;
        let mut codeword = vec![None; np];
        for slot in &mut codeword[k..kp] {
            *slot = Some(Additive(0));
        }
        let mut recovered = vec![Additive(0); np];
        let mut out = vec![0u8; k * len];
        for c in 0..len.div_ceil(2) {
            for &(shnum, block) in chosen {
                codeword[self.position(shnum)] = Some(symbol(block, c));
            }
            recovery.column(&codeword, &mut recovered, k, n)?;
            store_column(&mut out, len, &recovered, c);
        }
        Ok(out)
    }

    fn encode_interpolated(
        &self,
        np: usize,
        segment: &[u8],
        len: usize,
    ) -> Result<Vec<Vec<u8>>, CodecError> {
        let (k, n) = (self.k, self.n);
        let half = np / 2;
        let syms = len.div_ceil(2);
        let data: Vec<usize> = (0..k).collect();
        // Parity positions k..n; some lie below half only when k < half, some above always.
        let recovery = Recovery::new(np, &data, (k < half).then_some(half), n > half, k, n)?;
        let mut blocks: Vec<Vec<u8>> = segment
            .chunks_exact(len)
            .map(|b| {
                let mut v = b.to_vec();
                v.resize(2 * syms, 0);
                v
            })
            .collect();
        blocks.resize(n, vec![0u8; 2 * syms]);
        let mut codeword = vec![None; np];
        let mut out = vec![Additive(0); np];
        for c in 0..syms {
            for (p, slot) in codeword.iter_mut().enumerate().take(k) {
                *slot = Some(symbol(&blocks[p], c));
            }
            recovery.column(&codeword, &mut out, k, n)?;
            for (p, block) in blocks.iter_mut().enumerate().skip(k) {
                block[2 * c..2 * c + 2].copy_from_slice(&out[p].0.to_be_bytes());
            }
        }
        Ok(blocks)
    }

    fn decode_interpolated(
        &self,
        np: usize,
        len: usize,
        chosen: &[(usize, &[u8])],
    ) -> Result<Vec<u8>, CodecError> {
        let (k, n) = (self.k, self.n);
        let half = np / 2;
        let present: Vec<usize> = chosen.iter().map(|&(s, _)| s).collect();
        // Data positions 0..k: the lower half always, the upper half only when k > half.
        let recovery = Recovery::new(np, &present, Some(half), k > half, k, n)?;
        let mut codeword = vec![None; np];
        let mut recovered = vec![Additive(0); np];
        let mut out = vec![0u8; k * len];
        for c in 0..len.div_ceil(2) {
            for &(shnum, block) in chosen {
                codeword[shnum] = Some(symbol(block, c));
            }
            recovery.column(&codeword, &mut recovered, k, n)?;
            store_column(&mut out, len, &recovered, c);
        }
        Ok(out)
    }
}

impl Codec for NovelPoly {
    fn name(&self) -> &'static str {
        "novelpoly-v2"
    }

    fn k(&self) -> usize {
        self.k
    }

    fn n(&self) -> usize {
        self.n
    }

    /// Blocks are whole 2-byte symbols: odd lengths gain one zero byte.
    fn encoded_block_len(&self, input_block_len: usize) -> usize {
        input_block_len.saturating_add(input_block_len & 1)
    }

    fn encode(&self, segment: &[u8]) -> Result<Vec<Vec<u8>>, CodecError> {
        if segment.len() % self.k != 0 {
            return Err(CodecError::InputNotMultipleOfK {
                len: segment.len(),
                k: self.k,
            });
        }
        let len = segment.len() / self.k;
        if len == 0 {
            return Ok(vec![Vec::new(); self.n]);
        }
        match &self.layout {
            Layout::Identity => Ok(segment
                .chunks_exact(len)
                .map(|b| {
                    let mut v = b.to_vec();
                    v.resize(self.encoded_block_len(len), 0);
                    v
                })
                .collect()),
            Layout::Shortened { kp, .. } => Ok(self.encode_shortened(*kp, segment, len)),
            Layout::Interpolated { np } => self.encode_interpolated(*np, segment, len),
        }
    }

    /// Every given share is checked (range, duplicates, length), then the k lowest-numbered are
    /// used; when those are exactly the primary shares no arithmetic is done.
    fn decode(
        &self,
        input_block_len: usize,
        shares: &[(usize, &[u8])],
    ) -> Result<Vec<u8>, CodecError> {
        let len = input_block_len;
        let chosen = self.select(self.encoded_block_len(len), shares)?;
        let total = self.k.checked_mul(len).ok_or(CodecError::BadParams {
            k: self.k,
            n: self.n,
            why: "decoded segment length overflows usize",
        })?;
        if len == 0 {
            return Ok(Vec::new());
        }
        if chosen.iter().enumerate().all(|(i, &(shnum, _))| i == shnum) {
            let mut out = Vec::with_capacity(total);
            for (_, block) in &chosen {
                out.extend_from_slice(&block[..len]);
            }
            return Ok(out);
        }
        match &self.layout {
            // Identity needs all n == k shares, so the fast path above always applies.
            Layout::Identity => Err(CodecError::NotEnoughShares {
                needed: self.k,
                got: chosen.len(),
            }),
            Layout::Shortened { kp, np } => self.decode_shortened(*kp, *np, len, &chosen),
            Layout::Interpolated { np } => self.decode_interpolated(*np, len, &chosen),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut v = vec![0u8; len];
        rng.fill_bytes(&mut v);
        v
    }

    /// A pseudo-random choice of `count` distinct indices below `n`, in shuffled order.
    fn subset(n: usize, count: usize, seed: u64) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut all: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            all.swap(i, j);
        }
        all.truncate(count);
        all
    }

    fn decode_from(codec: &NovelPoly, len: usize, blocks: &[Vec<u8>], which: &[usize]) -> Vec<u8> {
        let shares: Vec<(usize, &[u8])> = which.iter().map(|&s| (s, &blocks[s][..])).collect();
        codec.decode(len, &shares).unwrap()
    }

    /// Encode, check the block shape and the systematic property, then decode from `which`.
    fn roundtrip(codec: &NovelPoly, segment: &[u8], which: &[usize]) {
        let (k, n) = (codec.k(), codec.n());
        let len = segment.len() / k;
        let blocks = codec.encode(segment).unwrap();
        assert_eq!(blocks.len(), n);
        for b in &blocks {
            assert_eq!(b.len(), codec.encoded_block_len(len));
        }
        for (i, block) in segment.chunks(len.max(1)).enumerate().take(k) {
            assert_eq!(&blocks[i][..len], block, "share {i} is not systematic");
        }
        assert_eq!(
            decode_from(codec, len, &blocks, which),
            segment,
            "{k}-of-{n} from {which:?}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn any_k_shares_decode(
            n in 1usize..=12,
            k_frac in 0.0f64..1.0,
            len in 0usize..9,
            seed in any::<u64>(),
        ) {
            let k = 1 + ((k_frac * n as f64) as usize).min(n - 1);
            let codec = NovelPoly::new(k, n).unwrap();
            let segment = data(k * len, seed);
            roundtrip(&codec, &segment, &subset(n, k, seed ^ 1));
            // Every extra share beyond k is accepted and ignored.
            roundtrip(&codec, &segment, &subset(n, n, seed ^ 2));
            if k < n {
                let interp = NovelPoly::new_interpolated(k, n);
                roundtrip(&interp, &segment, &subset(n, k, seed ^ 3));
            }
        }

        #[test]
        fn fewer_than_k_shares_fail(n in 2usize..=12, seed in any::<u64>()) {
            let k = 2 + (seed as usize) % (n - 1);
            let codec = NovelPoly::new(k, n).unwrap();
            let blocks = codec.encode(&data(k * 4, seed)).unwrap();
            let which = subset(n, k - 1, seed);
            let shares: Vec<(usize, &[u8])> = which.iter().map(|&s| (s, &blocks[s][..])).collect();
            prop_assert_eq!(
                codec.decode(4, &shares),
                Err(CodecError::NotEnoughShares { needed: k, got: k - 1 })
            );
        }
    }

    /// All k-subsets of every (k, n) with n <= 8: exhaustive proof for small codes.
    #[test]
    fn every_subset_small_codes() {
        for n in 1..=8usize {
            for k in 1..=n {
                let segment = data(k * 5, (k * 100 + n) as u64);
                let codecs = if k < n {
                    vec![
                        NovelPoly::new(k, n).unwrap(),
                        NovelPoly::new_interpolated(k, n),
                    ]
                } else {
                    vec![NovelPoly::new(k, n).unwrap()]
                };
                for codec in codecs {
                    let blocks = codec.encode(&segment).unwrap();
                    for mask in 0u32..(1 << n) {
                        if mask.count_ones() as usize != k {
                            continue;
                        }
                        let mut which: Vec<usize> =
                            (0..n).filter(|i| mask & (1 << i) != 0).collect();
                        which.reverse();
                        assert_eq!(decode_from(&codec, 5, &blocks, &which), segment);
                    }
                }
            }
        }
    }

    #[test]
    fn edge_parameters() {
        let one = NovelPoly::new(1, 1).unwrap();
        assert_eq!(one.layout_name(), "identity");
        roundtrip(&one, b"abc", &[0]);

        let rep = NovelPoly::new(1, 5).unwrap();
        let seg = data(7, 1);
        for s in 0..5 {
            roundtrip(&rep, &seg, &[s]);
        }

        let all = NovelPoly::new(7, 7).unwrap();
        roundtrip(&all, &data(7 * 3, 2), &[6, 0, 5, 1, 4, 2, 3]);

        for (k, n) in [(3, 10), (5, 7), (6, 9), (9, 17), (13, 29), (2, 3)] {
            let codec = NovelPoly::new(k, n).unwrap();
            assert_eq!(codec.layout_name(), "shortened");
            let seg = data(k * 11, (k * n) as u64);
            roundtrip(&codec, &seg, &subset(n, k, 7));
            let parity_first: Vec<usize> = (0..k).map(|i| n - 1 - i).collect();
            roundtrip(&codec, &seg, &parity_first);
        }
    }

    /// The shortened layout is the crate's own code: its blocks equal what `ReedSolomon::encode`
    /// produces for K data shards (k real, K - k zero) and K + n - k outputs.
    #[test]
    fn shortened_blocks_match_crate_encoder() {
        use reed_solomon_novelpoly::{CodeParams, WrappedShard};
        for (k, n, len) in [(3, 10, 8), (5, 7, 5), (25, 50, 6), (1, 4, 3), (100, 300, 4)] {
            let codec = NovelPoly::new(k, n).unwrap();
            let seg = data(k * len, k as u64);
            let ours = codec.encode(&seg).unwrap();
            let kp = k.next_power_of_two();
            let mut payload = vec![0u8; 2 * len.div_ceil(2) * kp];
            for (i, block) in seg.chunks_exact(len).enumerate() {
                for (c, pair) in block.chunks(2).enumerate() {
                    let at = 2 * (c * kp + i);
                    payload[at..at + pair.len()].copy_from_slice(pair);
                }
            }
            let params = CodeParams::derive_parameters(kp + n - k, kp).unwrap();
            let theirs = params
                .make_encoder()
                .encode::<WrappedShard>(&payload)
                .unwrap();
            for (s, block) in ours.iter().enumerate() {
                let pos = if s < k { s } else { kp + s - k };
                assert_eq!(
                    block,
                    &theirs[pos].clone().into_inner(),
                    "{k}-of-{n} share {s}"
                );
            }
        }
    }

    #[test]
    fn wide_codes() {
        let codec = NovelPoly::new(100, 300).unwrap();
        let seg = data(100 * 6, 3);
        roundtrip(&codec, &seg, &subset(300, 100, 4));
        roundtrip(&codec, &seg, &(200..300).rev().collect::<Vec<_>>());

        let codec = NovelPoly::new(10, 1000).unwrap();
        let seg = data(10 * 4, 5);
        roundtrip(&codec, &seg, &subset(1000, 10, 6));
        roundtrip(&codec, &seg, &(990..1000).collect::<Vec<_>>());
    }

    /// The largest codes: the interpolated layout kicks in where the shortened one cannot fit.
    #[test]
    fn widest_codes() {
        for (k, n) in [(20_000, 65_536), (40_000, 50_000), (65_535, 65_536)] {
            let codec = NovelPoly::new(k, n).unwrap();
            assert_eq!(codec.layout_name(), "interpolated", "{k}-of-{n}");
            let seg = data(k * 3, k as u64);
            roundtrip(&codec, &seg, &subset(n, k, n as u64));
        }
        let codec = NovelPoly::new(32_768, 65_536).unwrap();
        assert_eq!(codec.layout_name(), "shortened");
        roundtrip(&codec, &data(32_768 * 2, 9), &subset(65_536, 32_768, 10));
        let codec = NovelPoly::new(65_536, 65_536).unwrap();
        assert_eq!(codec.layout_name(), "identity");
        roundtrip(&codec, &data(65_536, 11), &subset(65_536, 65_536, 12));
    }

    #[test]
    fn bad_parameters() {
        assert!(matches!(
            NovelPoly::new(0, 3),
            Err(CodecError::BadParams { .. })
        ));
        assert!(matches!(
            NovelPoly::new(4, 3),
            Err(CodecError::BadParams { .. })
        ));
        assert!(matches!(
            NovelPoly::new(1, 65_537),
            Err(CodecError::BadParams { .. })
        ));
        assert!(NovelPoly::new(1, 65_536).is_ok());
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let codec = NovelPoly::new(3, 10).unwrap();
        assert_eq!(codec.name(), "novelpoly-v2");
        assert_eq!(
            codec.encode(&[0u8; 10]),
            Err(CodecError::InputNotMultipleOfK { len: 10, k: 3 })
        );
        let blocks = codec.encode(&data(9, 1)).unwrap();
        assert_eq!(codec.encoded_block_len(3), 4);
        let s = |i: usize| (i, &blocks[i][..]);
        assert_eq!(
            codec.decode(3, &[s(1), (10, &blocks[0][..]), s(2)]),
            Err(CodecError::ShareNumberOutOfRange { shnum: 10, n: 10 })
        );
        assert_eq!(
            codec.decode(3, &[s(1), s(4), s(1)]),
            Err(CodecError::DuplicateShare { shnum: 1 })
        );
        assert_eq!(
            codec.decode(3, &[s(1), s(4)]),
            Err(CodecError::NotEnoughShares { needed: 3, got: 2 })
        );
        assert_eq!(
            codec.decode(3, &[s(1), (4, &blocks[4][..3]), s(5)]),
            Err(CodecError::WrongBlockLength {
                shnum: 4,
                got: 3,
                expected: 4
            })
        );
        assert_eq!(
            codec.decode(5, &[s(1), s(4), s(5)]),
            Err(CodecError::WrongBlockLength {
                shnum: 1,
                got: 4,
                expected: 6
            })
        );
        assert_eq!(
            codec.decode(usize::MAX - 1, &[s(1), s(4), s(5)]),
            Err(CodecError::WrongBlockLength {
                shnum: 1,
                got: 4,
                expected: usize::MAX - 1
            })
        );
        assert_eq!(codec.encoded_block_len(usize::MAX), usize::MAX);
    }

    #[test]
    fn empty_segment() {
        let codec = NovelPoly::new(3, 10).unwrap();
        let blocks = codec.encode(&[]).unwrap();
        assert_eq!(blocks, vec![Vec::<u8>::new(); 10]);
        assert_eq!(
            decode_from(&codec, 0, &blocks, &[9, 4, 7]),
            Vec::<u8>::new()
        );
    }
}
