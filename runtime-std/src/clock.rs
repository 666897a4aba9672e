//! The std runtime's clock for lafs-core.
//!
//! Convention: a [`lafs_core::time::Instant`] in this runtime is **microseconds since the Unix
//! epoch**. The value is taken from the wall clock once (the first call in the process) and then
//! advanced by the monotonic clock, so it never runs backwards even if the system time is
//! adjusted, and stays close to real Unix time (lease expiries stored by a server are
//! meaningful across restarts).

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use lafs_core::time::Instant;

/// The wall clock at the process's first reading, and the monotonic clock then.
static ANCHOR: OnceLock<(SystemTime, std::time::Instant)> = OnceLock::new();

/// The current time as the core counts it (microseconds since the Unix epoch).
pub fn now() -> Instant {
    let (wall, mono) = ANCHOR.get_or_init(|| (SystemTime::now(), std::time::Instant::now()));
    let since_epoch = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
    Instant::from_unix(since_epoch + mono.elapsed())
}

#[cfg(test)]
mod tests {
    /// After 2020-01-01 and before 2100: the value really is Unix time in microseconds.
    #[test]
    fn now_is_unix_microseconds_and_never_goes_back() {
        let (a, b) = (super::now(), super::now());
        assert!(b >= a && a.0 > 1_577_836_800_000_000 && a.0 < 4_102_444_800_000_000);
    }
}
