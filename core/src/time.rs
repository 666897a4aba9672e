//! The core's notion of time: plain microsecond counts supplied by the caller.
//!
//! Runtimes convert their clock (std, async-io, or the simulator's virtual clock) into these
//! values; the core only compares and adds them, so the same code runs in real and virtual time.
//! The real-time runtimes count from the Unix epoch ([`Instant::from_unix`]) and sleep for
//! [`Instant::until`] a deadline.

use std::ops::{Add, Sub};

/// A point in time, in microseconds since an arbitrary epoch chosen by the runtime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub u64);

/// A span of time in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub u64);

impl Duration {
    pub const ZERO: Duration = Duration(0);

    pub const fn from_micros(us: u64) -> Self {
        Duration(us)
    }
    pub const fn from_millis(ms: u64) -> Self {
        Duration(ms.saturating_mul(1_000))
    }
    pub const fn from_secs(s: u64) -> Self {
        Duration(s.saturating_mul(1_000_000))
    }
    pub const fn as_micros(self) -> u64 {
        self.0
    }
}

impl Instant {
    pub const fn from_micros(us: u64) -> Self {
        Instant(us)
    }
    pub const fn as_micros(self) -> u64 {
        self.0
    }
    /// The instant `since_epoch` after the Unix epoch (saturating): the real-time runtimes'
    /// convention, so a lease expiry a server stores means the same whichever runtime wrote it.
    pub fn from_unix(since_epoch: std::time::Duration) -> Instant {
        Instant(Duration::from(since_epoch).0)
    }
    /// How long to sleep from `self` until `deadline` (zero if it has passed).
    pub fn until(self, deadline: Instant) -> std::time::Duration {
        deadline.saturating_since(self).into()
    }
    /// Time elapsed since `earlier`, or zero if `earlier` is in the future.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
}

impl From<std::time::Duration> for Duration {
    /// Saturating at `u64::MAX` microseconds.
    fn from(d: std::time::Duration) -> Duration {
        Duration(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> std::time::Duration {
        std::time::Duration::from_micros(d.0)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d.0))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_since(earlier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let t = Instant(5);
        assert_eq!(t + Duration::from_millis(1), Instant(1_005));
        assert_eq!(Instant(3) - Instant(10), Duration::ZERO);
        assert_eq!(Instant(u64::MAX) + Duration(1), Instant(u64::MAX));
    }

    #[test]
    fn unix_time_and_sleeps_convert_from_and_to_std() {
        let t = Instant::from_unix(std::time::Duration::from_millis(3));
        assert_eq!(t, Instant(3_000));
        assert_eq!(
            t.until(Instant(4_500)),
            std::time::Duration::from_micros(1_500)
        );
        assert_eq!(t.until(Instant(10)), std::time::Duration::ZERO);
        assert_eq!(
            Instant::from_unix(std::time::Duration::MAX),
            Instant(u64::MAX)
        );
    }
}
