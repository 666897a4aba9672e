//! This runtime's clock for lafs-core: a core [`Instant`] is **microseconds since the Unix
//! epoch**, the same convention as lafs-runtime-std, so a server's stored lease expiries mean the
//! same thing whichever runtime wrote them.
//!
//! The wall clock is read once (first call in the process); after that time advances by the
//! monotonic clock, so it never runs backwards.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use lafs_core::time::Instant;

static ANCHOR: OnceLock<(SystemTime, std::time::Instant)> = OnceLock::new();

/// The current time as the core counts it.
pub fn now() -> Instant {
    let (wall, mono) = ANCHOR.get_or_init(|| (SystemTime::now(), std::time::Instant::now()));
    Instant::from_unix(wall.duration_since(UNIX_EPOCH).unwrap_or_default() + mono.elapsed())
}

#[cfg(test)]
mod tests {
    #[test]
    fn unix_microseconds_that_never_go_back() {
        let (a, b) = (super::now(), super::now());
        assert!(b >= a);
        assert!(a.0 > 1_577_836_800_000_000 && a.0 < 4_102_444_800_000_000);
    }
}
