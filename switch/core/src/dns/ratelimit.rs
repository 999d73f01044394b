//! The per-source token bucket in front of the responder.
//!
//! Each source IPv4 address has a bucket of `burst` tokens that refills at `per_second`;
//! a query takes one, and a query finding the bucket empty is refused. Tokens are kept
//! in thousandths, so refilling is exact in whole milliseconds. At most `max_sources`
//! buckets exist: a new source beyond that evicts the least recently heard one (whose
//! bucket has had the longest to refill, so forgetting it costs the least). Time going
//! backwards refills nothing.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::time::Time;

/// One token, in the thousandths buckets count in.
const TOKEN: u64 = 1000;

/// The rate limit of a [`super::Responder`], per source address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimit {
    /// Queries a second a source may keep sending; 0 turns the limit off.
    pub per_second: u32,
    /// Queries a source may send at once after a quiet spell (at least 1 is used).
    pub burst: u32,
    /// Sources tracked at once (at least 1 is used).
    pub max_sources: usize,
}

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit {
            per_second: 500,
            burst: 1000,
            max_sources: 4096,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Thousandths of a token.
    tokens: u64,
    /// When it was last refilled: the latest time this source was heard from.
    last: Time,
}

#[derive(Clone, Debug)]
pub(crate) struct RateLimiter {
    config: RateLimit,
    buckets: HashMap<Ipv4Addr, Bucket>,
    /// Every bucket by `last`, oldest first: the eviction order.
    by_last: BTreeSet<(Time, Ipv4Addr)>,
}

impl RateLimiter {
    pub(crate) fn new(config: RateLimit) -> RateLimiter {
        RateLimiter {
            config,
            buckets: HashMap::new(),
            by_last: BTreeSet::new(),
        }
    }

    fn capacity(&self) -> u64 {
        u64::from(self.config.burst.max(1)) * TOKEN
    }

    /// Whether `source` may send one more query at `now`; takes its token if so.
    pub(crate) fn allow(&mut self, now: Time, source: Ipv4Addr) -> bool {
        if self.config.per_second == 0 {
            return true;
        }
        let capacity = self.capacity();
        if !self.buckets.contains_key(&source) {
            if self.buckets.len() >= self.config.max_sources.max(1) {
                if let Some((_, oldest)) = self.by_last.pop_first() {
                    self.buckets.remove(&oldest);
                }
            }
            self.by_last.insert((now, source));
            self.buckets.insert(
                source,
                Bucket {
                    tokens: capacity,
                    last: now,
                },
            );
        }
        let Some(bucket) = self.buckets.get_mut(&source) else {
            return false;
        };
        if now > bucket.last {
            let elapsed = u64::try_from(now.since(bucket.last).as_millis()).unwrap_or(u64::MAX);
            let refill = elapsed.saturating_mul(u64::from(self.config.per_second));
            bucket.tokens = bucket.tokens.saturating_add(refill).min(capacity);
            self.by_last.remove(&(bucket.last, source));
            bucket.last = now;
            self.by_last.insert((now, source));
        }
        if bucket.tokens >= TOKEN {
            bucket.tokens -= TOKEN;
            true
        } else {
            false
        }
    }

    /// Sources with a bucket.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32, burst: u32, max_sources: usize) -> RateLimiter {
        RateLimiter::new(RateLimit {
            per_second,
            burst,
            max_sources,
        })
    }

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);

    #[test]
    fn burst_then_refill_at_the_rate() {
        let mut rl = limiter(10, 5, 16);
        let t0 = Time::from_secs(100);
        for _ in 0..5 {
            assert!(rl.allow(t0, A));
        }
        assert!(!rl.allow(t0, A), "the burst is spent");
        // 10 a second: one token every 100 ms.
        assert!(!rl.allow(Time::from_millis(100_099), A));
        assert!(rl.allow(Time::from_millis(100_100), A));
        assert!(!rl.allow(Time::from_millis(100_100), A));
        // Half a second later, five tokens; never more than the burst.
        let later = Time::from_millis(100_600);
        for _ in 0..5 {
            assert!(rl.allow(later, A));
        }
        assert!(!rl.allow(later, A));
        let much_later = Time::from_secs(10_000);
        for _ in 0..5 {
            assert!(rl.allow(much_later, A));
        }
        assert!(!rl.allow(much_later, A));
    }

    #[test]
    fn sources_have_their_own_buckets() {
        let mut rl = limiter(1, 2, 16);
        let t = Time::from_secs(1);
        assert!(rl.allow(t, A) && rl.allow(t, A));
        assert!(!rl.allow(t, A));
        assert!(rl.allow(t, B), "B is not held back by A");
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let mut rl = limiter(1000, 1, 16);
        assert!(rl.allow(Time::from_secs(50), A));
        assert!(!rl.allow(Time::from_secs(10), A));
        assert!(!rl.allow(Time::from_secs(50), A));
        assert!(rl.allow(Time::from_millis(50_001), A));
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_quietest() {
        let mut rl = limiter(1, 1, 3);
        let source = |n: u8| Ipv4Addr::new(10, 0, 1, n);
        for n in 1..=3 {
            assert!(rl.allow(Time::from_millis(u64::from(n)), source(n)));
        }
        // Source 1 keeps asking (refused, but heard): it is the most recent now.
        assert!(!rl.allow(Time::from_millis(10), source(1)));
        assert!(rl.allow(Time::from_millis(11), source(4)));
        assert_eq!(rl.len(), 3);
        // Source 2, the quietest, was evicted: it comes back with a full bucket.
        assert!(rl.allow(Time::from_millis(12), source(2)));
        // Source 1 was kept, still empty.
        assert!(!rl.allow(Time::from_millis(13), source(1)));
        assert_eq!(rl.len(), 3);
    }

    #[test]
    fn zero_rate_turns_it_off() {
        let mut rl = limiter(0, 0, 1);
        for _ in 0..10_000 {
            assert!(rl.allow(Time::ZERO, A));
        }
        assert_eq!(rl.len(), 0);
    }
}
