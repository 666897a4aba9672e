//! One seed, one independent random stream per concern.
//!
//! Each concern (network timing, faults, workload, file contents) draws from its own ChaCha
//! stream derived from the run's seed, so adding a draw in one concern never shifts the numbers
//! another concern sees: a change to the fault model does not silently change the workload of
//! every seed.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The random streams of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Concern {
    /// Latency jitter and per-seed link parameters.
    Network = 1,
    /// Which faults happen, when, and to whom.
    Faults = 2,
    /// Which operations run, when, on what sizes.
    Workload = 3,
    /// The bytes of each file (one further stream per file).
    Data = 4,
    /// The shape of the grid: servers, link latencies, bandwidths, capacities.
    Grid = 5,
    /// Which mutable-file operations run, when, on what sizes (apart from `Workload`, so adding
    /// them left every seed's immutable workload as it was).
    Mutable = 6,
    /// Which directory operations run, when, on which names (its own stream, so adding them
    /// left every seed's file workload as it was).
    Directory = 7,
    /// Ranged downloads, in-place modifies, status queries, lookups and renames (apart from
    /// the others, so adding them left every seed's other workloads as they were).
    More = 8,
}

/// The RNG of `concern` for the run with this `seed`.
pub fn sub_rng(seed: u64, concern: Concern) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(concern as u64);
    rng
}

/// Deterministic contents of file number `file` of the run with `seed`.
pub fn file_bytes(seed: u64, file: u64, len: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ file.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.set_stream(Concern::Data as u64);
    let mut out = vec![0u8; len];
    rng.fill_bytes(&mut out);
    out
}

/// A draw from the exponential distribution with the given mean.
pub fn exponential(rng: &mut impl Rng, mean: f64) -> f64 {
    // 1 - u lies in (0, 1], so the logarithm is finite.
    let u: f64 = rng.gen();
    -mean * (1.0 - u).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concerns_are_independent_and_reproducible() {
        let a: u64 = sub_rng(7, Concern::Network).gen();
        let b: u64 = sub_rng(7, Concern::Faults).gen();
        assert_ne!(a, b);
        assert_eq!(a, sub_rng(7, Concern::Network).gen::<u64>());
        assert_ne!(a, sub_rng(8, Concern::Network).gen::<u64>());
        assert_eq!(file_bytes(3, 1, 100), file_bytes(3, 1, 100));
        assert_ne!(file_bytes(3, 1, 100), file_bytes(3, 2, 100));
    }

    #[test]
    fn exponential_mean_is_close() {
        let mut rng = sub_rng(1, Concern::Workload);
        let n = 20_000;
        let sum: f64 = (0..n).map(|_| exponential(&mut rng, 100.0)).sum();
        let mean = sum / f64::from(n);
        assert!((90.0..110.0).contains(&mean), "mean {mean}");
    }
}
