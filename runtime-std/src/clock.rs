//! The std runtime's clock for lafs-core.
//!
//! Convention: a [`lafs_core::time::Instant`] in this runtime is **microseconds since the Unix
//! epoch**. The value is taken from the wall clock once (the first call in the process) and then
//! advanced by the monotonic clock, so it never runs backwards even if the system time is
//! adjusted, and stays close to real Unix time (lease expiries stored by a server are
//! meaningful across restarts).

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use lafs_core::time::{Duration as CoreDuration, Instant as CoreInstant};

/// Wall-clock microseconds at the process's first reading, and the monotonic instant then.
static ANCHOR: OnceLock<(u64, std::time::Instant)> = OnceLock::new();

/// The current time as the core counts it (microseconds since the Unix epoch).
pub fn now() -> CoreInstant {
    let (epoch_us, mono) = *ANCHOR.get_or_init(|| {
        let us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        (us, std::time::Instant::now())
    });
    let since = u64::try_from(mono.elapsed().as_micros()).unwrap_or(u64::MAX);
    CoreInstant(epoch_us.saturating_add(since))
}

/// How long from `now` until `deadline`, as a std duration (zero if it has passed).
pub fn until(now: CoreInstant, deadline: CoreInstant) -> std::time::Duration {
    deadline.saturating_since(now).into()
}

/// A std duration as the core's duration (saturating at `u64::MAX` microseconds).
pub fn to_core(d: std::time::Duration) -> CoreDuration {
    d.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_unix_microseconds_and_never_goes_back() {
        let a = now();
        let b = now();
        assert!(b >= a);
        // After 2020-01-01 and before 2100: the value really is Unix time in microseconds.
        assert!(a.0 > 1_577_836_800_000_000 && a.0 < 4_102_444_800_000_000);
    }

    #[test]
    fn until_is_zero_for_past_deadlines() {
        assert_eq!(
            until(CoreInstant(10), CoreInstant(5)),
            std::time::Duration::ZERO
        );
        assert_eq!(
            until(CoreInstant(10), CoreInstant(1_010)),
            std::time::Duration::from_millis(1)
        );
    }
}
