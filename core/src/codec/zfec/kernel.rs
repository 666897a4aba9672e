//! The data path: `out[r] = XOR_c coef[r][c] · in[c]` over whole blocks, byte by byte.
//!
//! On x86-64 with AVX2 (checked at run time) a hand-written kernel keeps up to four output
//! accumulators in registers, so each input vector is loaded and split into nibbles once per
//! group of outputs and each output is stored once, instead of once per input as a
//! slice-at-a-time `mul_slice_xor` loop would. The columns are walked in stripes so that the
//! inputs of one stripe are still in cache when the next group of outputs reads them.
//! Elsewhere the slice kernels of `reed-solomon-erasure` (SIMD in C on x86-64 and aarch64) do
//! the work, one coefficient at a time over the same stripes.

use reed_solomon_erasure::galois_8;

/// Bytes of every input read per stripe, summed over inputs: one stripe's inputs are read once
/// per group of four outputs, so they should stay in L1 (measured: 32 KiB beats 128 and 512 KiB
/// on 25-of-50 by ~10-20 %).
const STRIPE_BUDGET: usize = 32 * 1024;
/// Upper bound on a stripe's width, to keep write streams short.
const MAX_STRIPE: usize = 32 * 1024;
/// Lower bound, so very wide k still processes long runs per call.
const MIN_STRIPE: usize = 1024;

/// Width of a column stripe for `inputs` inputs: a multiple of 64 (the AVX2 kernel's step).
fn stripe_width(inputs: usize) -> usize {
    let w = (STRIPE_BUDGET / inputs.max(1)).clamp(MIN_STRIPE, MAX_STRIPE);
    w & !63
}

/// Writes `outputs[r][j] = XOR_c coefs[r * inputs.len() + c] · inputs[c][j]` for every j.
///
/// Every input and output must have the same length and `coefs` must hold
/// `outputs.len() * inputs.len()` entries; callers guarantee both (a mismatch is a bug here, so
/// it panics).
pub(super) fn mul_matrix(coefs: &[u8], inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
    let k = inputs.len();
    assert_eq!(coefs.len(), k * outputs.len(), "coefficient matrix shape");
    let Some(len) = outputs.first().map(|o| o.len()) else {
        return;
    };
    assert!(
        inputs.iter().all(|i| i.len() == len) && outputs.iter().all(|o| o.len() == len),
        "all blocks must have the same length"
    );
    if len == 0 {
        return;
    }
    if k == 0 {
        for o in outputs.iter_mut() {
            o.fill(0);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            avx2::mul_matrix(coefs, inputs, outputs, len);
            return;
        }
    }
    mul_matrix_portable(coefs, inputs, outputs, len);
}

/// The same product through `galois_8`'s slice kernels, one coefficient at a time.
pub(super) fn mul_matrix_portable(
    coefs: &[u8],
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
    len: usize,
) {
    let k = inputs.len();
    let stripe = stripe_width(k);
    let mut start = 0;
    while start < len {
        let end = (start + stripe).min(len);
        for (r, out) in outputs.iter_mut().enumerate() {
            let out = &mut out[start..end];
            let row = &coefs[r * k..(r + 1) * k];
            galois_8::mul_slice(row[0], &inputs[0][start..end], out);
            for (c, &coef) in row.iter().enumerate().skip(1) {
                if coef != 0 {
                    galois_8::mul_slice_xor(coef, &inputs[c][start..end], out);
                }
            }
        }
        start = end;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::gf::{mul, MUL_HI, MUL_LO};
    use super::stripe_width;
    use std::arch::x86_64::*;

    /// Most outputs accumulated in registers at once: with two 32-byte columns per step that is
    /// 8 accumulators + 4 nibble vectors + mask + 2 tables = 15 of the 16 YMM registers.
    const GROUP: usize = 4;
    /// Bytes per step of the vector loop: two YMM columns, so each table load serves 64 bytes.
    const STEP: usize = 64;

    /// Caller has checked that AVX2 is available and the shapes (see `super::mul_matrix`).
    pub(super) fn mul_matrix(
        coefs: &[u8],
        inputs: &[&[u8]],
        outputs: &mut [&mut [u8]],
        len: usize,
    ) {
        let k = inputs.len();
        let in_ptrs: Vec<*const u8> = inputs.iter().map(|i| i.as_ptr()).collect();
        // Shuffle tables laid out in the order the kernel reads them: per group of outputs, per
        // input, per output in the group, the 16-byte low-nibble then high-nibble table.
        let mut tables: Vec<[u8; 32]> = Vec::with_capacity(coefs.len());
        let mut r = 0;
        while r < outputs.len() {
            let g = (outputs.len() - r).min(GROUP);
            for c in 0..k {
                for row in r..r + g {
                    let coef = coefs[row * k + c] as usize;
                    let mut t = [0u8; 32];
                    t[..16].copy_from_slice(&MUL_LO[coef]);
                    t[16..].copy_from_slice(&MUL_HI[coef]);
                    tables.push(t);
                }
            }
            r += g;
        }
        let vec_len = len - len % STEP;
        let stripe = stripe_width(k);
        let mut start = 0;
        while start < vec_len {
            let end = (start + stripe).min(vec_len);
            let mut r = 0;
            while r < outputs.len() {
                let g = (outputs.len() - r).min(GROUP);
                let tabs = &tables[r * k..(r + g) * k];
                let outs = &mut outputs[r..r + g];
                // SAFETY: AVX2 was detected by the caller; every input and output is `len >= end`
                // bytes long, `end - start` is a multiple of STEP, and `tabs` holds g·k entries.
                unsafe {
                    match g {
                        1 => stripe_group::<1>(tabs, &in_ptrs, outs, start, end),
                        2 => stripe_group::<2>(tabs, &in_ptrs, outs, start, end),
                        3 => stripe_group::<3>(tabs, &in_ptrs, outs, start, end),
                        _ => stripe_group::<4>(tabs, &in_ptrs, outs, start, end),
                    }
                }
                r += g;
            }
            start = end;
        }
        // The last len % STEP bytes, scalar.
        for (r, out) in outputs.iter_mut().enumerate() {
            let row = &coefs[r * k..(r + 1) * k];
            for (j, o) in out.iter_mut().enumerate().skip(vec_len) {
                *o = row
                    .iter()
                    .zip(inputs)
                    .fold(0u8, |acc, (&c, input)| acc ^ mul(c, input[j]));
            }
        }
    }

    /// One stripe `[start, end)` of G outputs.
    ///
    /// # Safety
    /// AVX2 must be available; `outs` has G entries and `tabs` G·k (input-major); every pointer
    /// in `inputs` and every output is valid for `end` bytes; `end - start` is a multiple of
    /// STEP.
    #[target_feature(enable = "avx2")]
    unsafe fn stripe_group<const G: usize>(
        tabs: &[[u8; 32]],
        inputs: &[*const u8],
        outs: &mut [&mut [u8]],
        start: usize,
        end: usize,
    ) {
        debug_assert_eq!(outs.len(), G);
        debug_assert_eq!(tabs.len(), G * inputs.len());
        let mut out_ptrs = [std::ptr::null_mut::<u8>(); G];
        for (p, o) in out_ptrs.iter_mut().zip(outs.iter_mut()) {
            debug_assert!(o.len() >= end);
            *p = o.as_mut_ptr();
        }
        let mask = _mm256_set1_epi8(0x0f);
        let mut j = start;
        while j < end {
            let mut acc0 = [_mm256_setzero_si256(); G];
            let mut acc1 = [_mm256_setzero_si256(); G];
            for (&inp, tab) in inputs.iter().zip(tabs.chunks_exact(G)) {
                // SAFETY: `inp` is valid for `end` bytes and j + 64 <= end.
                let (x0, x1) = unsafe {
                    (
                        _mm256_loadu_si256(inp.add(j) as *const __m256i),
                        _mm256_loadu_si256(inp.add(j + 32) as *const __m256i),
                    )
                };
                let lo0 = _mm256_and_si256(x0, mask);
                let hi0 = _mm256_and_si256(_mm256_srli_epi64::<4>(x0), mask);
                let lo1 = _mm256_and_si256(x1, mask);
                let hi1 = _mm256_and_si256(_mm256_srli_epi64::<4>(x1), mask);
                for g in 0..G {
                    // SAFETY: each table entry is 32 bytes, two 16-byte halves.
                    let (tl, th) = unsafe {
                        let t = tab.get_unchecked(g).as_ptr();
                        (
                            _mm256_broadcastsi128_si256(_mm_loadu_si128(t as *const __m128i)),
                            _mm256_broadcastsi128_si256(_mm_loadu_si128(
                                t.add(16) as *const __m128i
                            )),
                        )
                    };
                    acc0[g] = _mm256_xor_si256(acc0[g], _mm256_shuffle_epi8(tl, lo0));
                    acc0[g] = _mm256_xor_si256(acc0[g], _mm256_shuffle_epi8(th, hi0));
                    acc1[g] = _mm256_xor_si256(acc1[g], _mm256_shuffle_epi8(tl, lo1));
                    acc1[g] = _mm256_xor_si256(acc1[g], _mm256_shuffle_epi8(th, hi1));
                }
            }
            for g in 0..G {
                // SAFETY: every output is valid for `end` bytes and j + 64 <= end.
                unsafe {
                    _mm256_storeu_si256(out_ptrs[g].add(j) as *mut __m256i, acc0[g]);
                    _mm256_storeu_si256(out_ptrs[g].add(j + 32) as *mut __m256i, acc1[g]);
                }
            }
            j += STEP;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::gf::mul;
    use super::*;

    fn reference(coefs: &[u8], inputs: &[&[u8]], rows: usize, len: usize) -> Vec<Vec<u8>> {
        let k = inputs.len();
        (0..rows)
            .map(|r| {
                (0..len)
                    .map(|j| (0..k).fold(0, |a, c| a ^ mul(coefs[r * k + c], inputs[c][j])))
                    .collect()
            })
            .collect()
    }

    fn filler(seed: usize, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| ((i * 131 + seed * 7919) ^ (i >> 5)) as u8)
            .collect()
    }

    #[test]
    fn kernels_agree_with_scalar_reference() {
        // Lengths around the 32-byte vector and the stripe width; row counts around GROUP.
        for &(k, rows, len) in &[
            (1, 1, 1),
            (3, 7, 31),
            (3, 7, 32),
            (3, 7, 33),
            (3, 7, 64),
            (4, 9, 127),
            (6, 8, 129),
            (5, 9, 1000),
            (2, 4, 70_001),
            (40, 5, 5000),
        ] {
            let data: Vec<Vec<u8>> = (0..k).map(|c| filler(c, len)).collect();
            let inputs: Vec<&[u8]> = data.iter().map(|d| d.as_slice()).collect();
            let coefs: Vec<u8> = (0..rows * k).map(|i| (i * 37 + 1) as u8).collect();
            let want = reference(&coefs, &inputs, rows, len);
            let mut a = vec![vec![0xAAu8; len]; rows];
            let mut outs: Vec<&mut [u8]> = a.iter_mut().map(|o| o.as_mut_slice()).collect();
            mul_matrix(&coefs, &inputs, &mut outs);
            assert_eq!(a, want, "dispatching kernel, k={k} rows={rows} len={len}");
            let mut b = vec![vec![0x55u8; len]; rows];
            let mut outs: Vec<&mut [u8]> = b.iter_mut().map(|o| o.as_mut_slice()).collect();
            mul_matrix_portable(&coefs, &inputs, &mut outs, len);
            assert_eq!(b, want, "portable kernel, k={k} rows={rows} len={len}");
        }
    }
}
