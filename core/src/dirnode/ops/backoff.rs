//! The pause between attempts of a directory edit that lost a test-and-set race.
//!
//! Two writers that conflicted and retried at once would likely conflict again, so each waits a
//! random time first. The window doubles with each attempt up to 64 ms; the randomness comes
//! from the operation's seed, so a simulation replays the same pauses. The pause is a timer
//! (`poll_timeout`), never a sleep.

use rand_core::Rng;

use crate::crypto::drbg::Drbg;
use crate::time::Duration;

/// How many times an edit is tried when other writers keep changing the directory.
pub const MAX_ATTEMPTS: u32 = 16;

/// The widest pause, in microseconds.
pub const MAX_BACKOFF_MICROS: u64 = 64_000;

/// The pause before retry `attempt` (1 for the first retry): uniform in [1 µs, window], the
/// window starting at 2 ms and doubling up to [`MAX_BACKOFF_MICROS`].
pub fn delay(attempt: u32, rng: &mut Drbg) -> Duration {
    let window = (2_000u64 << attempt.saturating_sub(1).min(5)).min(MAX_BACKOFF_MICROS);
    Duration::from_micros(1 + rng.next_u64() % window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_stay_bounded_and_depend_only_on_the_seed() {
        let mut a = Drbg::new([1; 32]);
        let mut b = Drbg::new([1; 32]);
        for attempt in 1..=MAX_ATTEMPTS {
            let d = delay(attempt, &mut a);
            assert_eq!(d, delay(attempt, &mut b));
            let window = (2_000u64 << (attempt - 1).min(5)).min(MAX_BACKOFF_MICROS);
            assert!(
                d.as_micros() >= 1 && d.as_micros() <= window,
                "{attempt}: {d:?}"
            );
        }
        let mut c = Drbg::new([2; 32]);
        let differ = (1..=8).any(|n| delay(n, &mut a) != delay(n, &mut c));
        assert!(differ, "another seed gives other pauses");
    }
}
