//! Pacing of a pruning pass: how long to rest after each delete batch.
//!
//! This module owns the duty cycle: after a batch that took `d`, the pass
//! rests `d × (1 − duty) / duty` (never less than a floor), so deleting takes
//! at most `duty` of the pass's time, and a primary slowed down by its
//! writers makes the pruner slow down with it. It must never rest less than
//! the floor, and never compute a rest that overflows or runs for ever.

use std::time::Duration;

/// The smallest duty allowed (1 %): below it a batch of a few seconds would
/// mean a rest of many minutes.
pub const MIN_DUTY: f64 = 0.01;

/// Longest rest after one batch, however slow the batch was.
pub const MAX_REST: Duration = Duration::from_secs(300);

/// A duty that cannot be used; the caller names the key.
#[derive(Debug, thiserror::Error)]
#[error("must be a fraction from {MIN_DUTY} to 1 (the share of time spent deleting), got {0}")]
pub struct BadDuty(pub f64);

/// How a pass rests between its batches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    /// Rest per unit of batch time: `(1 − duty) / duty`.
    factor: f64,
    /// Shortest rest, however quick the batch.
    floor: Duration,
}

impl Pacing {
    /// Deleting takes at most `duty` (0.01 – 1) of the time; every rest is
    /// at least `floor`.
    pub fn new(duty: f64, floor: Duration) -> Result<Pacing, BadDuty> {
        if !(MIN_DUTY..=1.0).contains(&duty) {
            return Err(BadDuty(duty));
        }
        Ok(Pacing {
            factor: (1.0 - duty) / duty,
            floor,
        })
    }

    /// The rest after a batch that took `batch`.
    pub fn rest_after(&self, batch: Duration) -> Duration {
        let proportional = Duration::try_from_secs_f64(batch.as_secs_f64() * self.factor)
            .unwrap_or(MAX_REST)
            .min(MAX_REST);
        proportional.max(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_rest_is_proportional_to_the_batch() {
        let pacing = Pacing::new(0.1, Duration::ZERO).unwrap();
        assert_eq!(pacing.rest_after(10 * MS), 90 * MS);
        assert_eq!(pacing.rest_after(250 * MS), 2250 * MS);
        let half = Pacing::new(0.5, Duration::ZERO).unwrap();
        assert_eq!(half.rest_after(40 * MS), 40 * MS);
    }

    #[test]
    fn deleting_takes_at_most_the_duty_of_the_time() {
        for duty in [0.01, 0.1, 0.25, 0.9] {
            let pacing = Pacing::new(duty, Duration::ZERO).unwrap();
            for batch in [MS, 37 * MS, 400 * MS] {
                let rest = pacing.rest_after(batch);
                let share = batch.as_secs_f64() / (batch + rest).as_secs_f64();
                assert!((share - duty).abs() < 1e-6, "{duty} {batch:?}: {share}");
            }
        }
    }

    #[test]
    fn the_floor_holds_after_quick_batches_and_a_full_duty() {
        let pacing = Pacing::new(0.1, 20 * MS).unwrap();
        assert_eq!(pacing.rest_after(MS), 20 * MS);
        assert_eq!(pacing.rest_after(Duration::ZERO), 20 * MS);
        let full = Pacing::new(1.0, 5 * MS).unwrap();
        assert_eq!(full.rest_after(Duration::from_secs(3)), 5 * MS);
    }

    #[test]
    fn a_very_slow_batch_rests_at_most_the_cap() {
        let pacing = Pacing::new(MIN_DUTY, Duration::ZERO).unwrap();
        assert_eq!(pacing.rest_after(Duration::from_secs(3600)), MAX_REST);
        assert_eq!(pacing.rest_after(Duration::MAX), MAX_REST);
    }

    #[test]
    fn duties_outside_the_range_are_refused() {
        for bad in [0.0, -0.5, 0.001, 1.5, f64::NAN, f64::INFINITY] {
            let err = Pacing::new(bad, Duration::ZERO).unwrap_err().to_string();
            assert!(err.starts_with("must be a fraction"), "{bad}: {err}");
        }
    }
}
