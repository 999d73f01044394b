//! Time as the core sees it: a millisecond count from an epoch the caller picks.
//!
//! The core never reads a clock. switchd passes the time since it started; the simulator
//! passes a virtual clock it advances by hand.

use std::ops::Add;
use std::time::Duration;

/// A point in time, in milliseconds since the caller's epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Time(u64);

impl Time {
    pub const ZERO: Time = Time(0);

    pub const fn from_millis(ms: u64) -> Time {
        Time(ms)
    }

    pub const fn from_secs(secs: u64) -> Time {
        Time(secs.saturating_mul(1000))
    }

    /// The time `elapsed` after the epoch.
    pub fn from_duration(elapsed: Duration) -> Time {
        Time(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;

    fn add(self, rhs: Duration) -> Time {
        Time(
            self.0
                .saturating_add(u64::try_from(rhs.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Time::from_secs(5);
        assert_eq!(t + Duration::from_millis(250), Time::from_millis(5250));
        assert_eq!(Time::from_secs(1).since(t), Duration::ZERO);
        assert_eq!(t.since(Time::from_secs(1)), Duration::from_secs(4));
        assert_eq!(
            Time::from_millis(u64::MAX) + Duration::from_secs(1),
            Time::from_millis(u64::MAX)
        );
    }
}
