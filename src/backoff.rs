//! The one exponential backoff conveyor uses: between a job's attempts, between
//! tries of a database write, between claims while Redis fails, and between
//! connection tries at start-up.
//!
//! This module owns the delay arithmetic only. It must never sleep or read a
//! clock: callers pass the attempt number and wait themselves.

use std::time::Duration;

use rand::Rng;

/// How much of a delay is random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Jitter {
    /// The delay is exactly `base · 2^(n−1)`, capped.
    None,
    /// Half of the delay is fixed and half random ("equal jitter"): retries of
    /// many jobs spread out, yet none comes sooner than half its delay.
    Equal,
}

/// Delay after failure *n* (1-based): `min(max, base · 2^(n−1))`, with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// Delay after the first failure, before jitter.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
    /// How much of each delay is random.
    pub jitter: Jitter,
}

impl Backoff {
    /// Doubling from `base_ms` up to `max_ms`, without jitter.
    pub(crate) fn exponential(base_ms: u64, max_ms: u64) -> Backoff {
        Backoff {
            base: Duration::from_millis(base_ms),
            max: Duration::from_millis(max_ms),
            jitter: Jitter::None,
        }
    }

    /// The same backoff with equal jitter.
    pub(crate) fn with_equal_jitter(self) -> Backoff {
        Backoff {
            jitter: Jitter::Equal,
            ..self
        }
    }

    /// The capped delay after failure `failures` (1-based), before jitter.
    pub(crate) fn ceiling(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(32);
        self.base
            .saturating_mul(1u32 << exponent.min(31))
            .min(self.max)
    }

    /// The delay after failure `failures` (1-based; 0 counts as 1).
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        let ceiling = self.ceiling(failures);
        match self.jitter {
            Jitter::None => ceiling,
            Jitter::Equal => {
                let half = ceiling / 2;
                half + rand::rng().random_range(Duration::ZERO..=ceiling - half)
            }
        }
    }

    /// [`Backoff::delay`] in whole milliseconds.
    pub(crate) fn delay_ms(&self, failures: u32) -> u64 {
        u64::try_from(self.delay(failures).as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_base_and_stops_at_max() {
        let backoff = Backoff::exponential(100, 5000);
        let delays: Vec<u64> = (1..=8).map(|n| backoff.delay_ms(n)).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff.delay_ms(0), 100, "0 counts as the first failure");
        assert_eq!(backoff.delay_ms(u32::MAX), 5000, "no overflow");
    }

    #[test]
    fn equal_jitter_keeps_half_fixed() {
        let backoff = Backoff::exponential(100, 1000).with_equal_jitter();
        for _ in 0..200 {
            assert!((50..=100).contains(&backoff.delay_ms(1)));
            assert!((200..=400).contains(&backoff.delay_ms(3)));
            assert!((500..=1000).contains(&backoff.delay_ms(30)));
        }
        let spread: std::collections::HashSet<u64> =
            (0..200).map(|_| backoff.delay_ms(5)).collect();
        assert!(spread.len() > 10, "the random half varies: {spread:?}");
    }
}
