//! This runtime's clock for lafs-core: a core [`Instant`] is **microseconds since the Unix
//! epoch**, the same convention as lafs-runtime-std, so a server's stored lease expiries mean the
//! same thing whichever runtime wrote them.
//!
//! The wall clock is read once (first call in the process); after that time advances by the
//! monotonic clock, so it never runs backwards.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use lafs_core::time::Instant;

static ANCHOR: OnceLock<(u64, std::time::Instant)> = OnceLock::new();

/// The current time as the core counts it.
pub fn now() -> Instant {
    let (epoch_us, mono) = *ANCHOR.get_or_init(|| {
        let us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        (us, std::time::Instant::now())
    });
    let since = u64::try_from(mono.elapsed().as_micros()).unwrap_or(u64::MAX);
    Instant(epoch_us.saturating_add(since))
}

/// How long from `now` until `deadline` (zero if it has passed).
pub fn until(now: Instant, deadline: Instant) -> std::time::Duration {
    deadline.saturating_since(now).into()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn unix_microseconds_that_never_go_back() {
        let a = now();
        let b = now();
        assert!(b >= a);
        assert!(a.0 > 1_577_836_800_000_000 && a.0 < 4_102_444_800_000_000);
        assert_eq!(until(Instant(10), Instant(5)), std::time::Duration::ZERO);
        assert_eq!(
            until(Instant(0), Instant(1_500)),
            std::time::Duration::from_micros(1_500)
        );
    }
}
