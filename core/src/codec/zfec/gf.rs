//! GF(2^8) with zfec's reduction polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11D), generator α = 0x02:
//! scalar arithmetic, the 4-bit split multiplication tables the SIMD kernel shuffles with, and
//! small dense matrices (row-major `Vec<u8>`) for building and inverting coding matrices.
//!
//! The field is the same one `reed-solomon-erasure`'s `galois_8` uses, so its SIMD slice kernels
//! serve for the row operations here.

use reed_solomon_erasure::galois_8;

/// Reduction polynomial with the x^8 term.
const POLY: u16 = 0x11D;

/// `EXP[i] = α^i`, doubled so `EXP[log a + log b]` needs no reduction mod 255.
static EXP: [u8; 510] = build_exp();
/// `LOG[α^i] = i`; `LOG[0]` is unused (0 has no logarithm).
static LOG: [u8; 256] = build_log();

/// `MUL_LO[c][x] = c · x` for x < 16: the low-nibble shuffle table for multiplying by c.
pub(super) static MUL_LO: [[u8; 16]; 256] = build_nibble_table(0);
/// `MUL_HI[c][x] = c · (x << 4)` for x < 16: the high-nibble shuffle table for multiplying by c.
pub(super) static MUL_HI: [[u8; 16]; 256] = build_nibble_table(4);

const fn build_exp() -> [u8; 510] {
    let mut t = [0u8; 510];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        t[i] = x as u8;
        t[i + 255] = x as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= POLY;
        }
        i += 1;
    }
    t
}

const fn build_log() -> [u8; 256] {
    let exp = build_exp();
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        t[exp[i] as usize] = i as u8;
        i += 1;
    }
    t
}

/// Shift-and-add multiplication, for building tables at compile time.
const fn mul_slow(a: u8, b: u8) -> u8 {
    let mut a = a as u16;
    let mut b = b;
    let mut r: u16 = 0;
    while b != 0 {
        if b & 1 != 0 {
            r ^= a;
        }
        a <<= 1;
        if a & 0x100 != 0 {
            a ^= POLY;
        }
        b >>= 1;
    }
    r as u8
}

const fn build_nibble_table(shift: u32) -> [[u8; 16]; 256] {
    let mut t = [[0u8; 16]; 256];
    let mut c = 0;
    while c < 256 {
        let mut x = 0;
        while x < 16 {
            t[c][x] = mul_slow(c as u8, (x as u8) << shift);
            x += 1;
        }
        c += 1;
    }
    t
}

/// α^e.
pub(super) fn exp_alpha(e: usize) -> u8 {
    EXP[e % 255]
}

/// Field product.
pub(super) fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        0
    } else {
        EXP[LOG[a as usize] as usize + LOG[b as usize] as usize]
    }
}

/// Multiplicative inverse; `None` for 0.
pub(super) fn inv(a: u8) -> Option<u8> {
    if a == 0 {
        None
    } else {
        Some(EXP[255 - LOG[a as usize] as usize])
    }
}

/// `dst ^= c · src`, element-wise (SIMD through `galois_8`, which rejects empty slices).
pub(super) fn mul_add_row(c: u8, src: &[u8], dst: &mut [u8]) {
    if c != 0 && !src.is_empty() {
        galois_8::mul_slice_xor(c, src, dst);
    }
}

/// `row = c · row`, element-wise.
fn scale_row(c: u8, row: &mut [u8]) {
    for x in row.iter_mut() {
        *x = mul(c, *x);
    }
}

/// The product of an `r×m` matrix `a` and an `m×c` matrix `b`, both row-major.
pub(super) fn matmul(a: &[u8], b: &[u8], r: usize, m: usize, c: usize) -> Vec<u8> {
    debug_assert_eq!(a.len(), r * m);
    debug_assert_eq!(b.len(), m * c);
    let mut out = vec![0u8; r * c];
    if c == 0 {
        return out;
    }
    for (a_row, out_row) in a.chunks_exact(m.max(1)).zip(out.chunks_exact_mut(c)) {
        for (&coef, b_row) in a_row.iter().zip(b.chunks_exact(c)) {
            mul_add_row(coef, b_row, out_row);
        }
    }
    out
}

/// The inverse of the `n×n` matrix `m` (row-major) by Gauss-Jordan elimination, or `None` if it
/// is singular.
pub(super) fn invert(m: &[u8], n: usize) -> Option<Vec<u8>> {
    debug_assert_eq!(m.len(), n * n);
    if n == 0 {
        return Some(Vec::new());
    }
    // Augmented rows [m | I], so one row operation updates both halves.
    let w = 2 * n;
    let mut aug = vec![0u8; n * w];
    for (i, row) in aug.chunks_exact_mut(w).enumerate() {
        row[..n].copy_from_slice(&m[i * n..(i + 1) * n]);
        row[n + i] = 1;
    }
    let mut pivot_row = vec![0u8; w];
    for col in 0..n {
        let p = (col..n).find(|&r| aug[r * w + col] != 0)?;
        if p != col {
            for j in 0..w {
                aug.swap(p * w + j, col * w + j);
            }
        }
        let pinv = inv(aug[col * w + col])?;
        scale_row(pinv, &mut aug[col * w..(col + 1) * w]);
        pivot_row.copy_from_slice(&aug[col * w..(col + 1) * w]);
        for (r, row) in aug.chunks_exact_mut(w).enumerate() {
            if r != col {
                let f = row[col];
                mul_add_row(f, &pivot_row, row);
            }
        }
    }
    let mut out = Vec::with_capacity(n * n);
    for row in aug.chunks_exact(w) {
        out.extend_from_slice(&row[n..]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_the_spec() {
        assert_eq!(EXP[0], 1);
        assert_eq!(EXP[1], 2);
        assert_eq!(EXP[8], 0x1D);
        // α generates the whole multiplicative group.
        let mut seen = [false; 256];
        for &e in &EXP[..255] {
            assert!(!seen[e as usize]);
            seen[e as usize] = true;
        }
        assert!(!seen[0]);
    }

    #[test]
    fn mul_agrees_with_shift_and_add_and_galois_8() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let m = mul(a, b);
                assert_eq!(m, mul_slow(a, b));
                assert_eq!(m, galois_8::mul(a, b));
                assert_eq!(
                    m,
                    MUL_LO[a as usize][(b & 15) as usize] ^ MUL_HI[a as usize][(b >> 4) as usize]
                );
            }
        }
    }

    #[test]
    fn inverse_is_inverse() {
        assert_eq!(inv(0), None);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a).unwrap()), 1);
        }
    }

    #[test]
    fn matrix_inverse_round_trips_and_detects_singular() {
        // A Vandermonde matrix over distinct points is invertible.
        let n = 17;
        let m: Vec<u8> = (0..n * n).map(|i| exp_alpha((i / n) * (i % n))).collect();
        let mi = invert(&m, n).unwrap();
        let id = matmul(&m, &mi, n, n, n);
        for r in 0..n {
            for c in 0..n {
                assert_eq!(id[r * n + c], u8::from(r == c));
            }
        }
        let singular = [1u8, 2, 2, 4];
        assert_eq!(invert(&singular, 2), None);
    }
}
