//! Which seeds to run: `SIM_SEED=N` (one run) or `SIM_SEEDS=A..B` (a sweep).
//!
//! The library never reads the environment (it is as pure as the core); the binary and the sweep
//! test read the variables and hand the strings here.

use std::ops::Range;

/// Why a seed specification could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSpecError(pub String);

impl std::fmt::Display for SeedSpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SeedSpecError {}

/// Parses `A..B` (half-open), `A..=B`, or a single `N` into a range of seeds.
pub fn parse_seed_range(spec: &str) -> Result<Range<u64>, SeedSpecError> {
    let spec = spec.trim();
    let num = |s: &str| {
        s.trim().parse::<u64>().map_err(|_| {
            SeedSpecError(format!(
                "seed range {spec:?}: {s:?} is not a number (expected A..B, A..=B or N)"
            ))
        })
    };
    let range = if let Some((a, b)) = spec.split_once("..=") {
        num(a)?..num(b)?.saturating_add(1)
    } else if let Some((a, b)) = spec.split_once("..") {
        num(a)?..num(b)?
    } else {
        let n = num(spec)?;
        n..n.saturating_add(1)
    };
    if range.is_empty() {
        return Err(SeedSpecError(format!("seed range {spec:?} is empty")));
    }
    Ok(range)
}

/// Parses one seed.
pub fn parse_seed(spec: &str) -> Result<u64, SeedSpecError> {
    spec.trim()
        .parse()
        .map_err(|_| SeedSpecError(format!("seed {spec:?} is not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_seed_range("0..200"), Ok(0..200));
        assert_eq!(parse_seed_range(" 5..=7 "), Ok(5..8));
        assert_eq!(parse_seed_range("42"), Ok(42..43));
        assert!(parse_seed_range("7..7").is_err());
        assert!(parse_seed_range("a..b").is_err());
        assert!(parse_seed_range("").is_err());
        assert_eq!(parse_seed("12"), Ok(12));
        assert!(parse_seed("-1").is_err());
    }
}
