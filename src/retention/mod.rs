//! Result retention: how old a `job_results` row (or dead letter) may grow
//! before it is deleted, and one pruning pass that deletes the older ones.
//!
//! This module owns the retention rules (which rows are due, by their
//! `finished_at`, computed from a clock passed in) and the order of one pass:
//! take the prune lock in Redis, delete in small batches with a rest after
//! each one in proportion to its duration ([`pacing`]), renew the lock, stop
//! between two batches when asked to, release the lock. It must never delete
//! a row that is not past its retention, never prune without holding the
//! lock (only one process prunes at a time), never release a lock another
//! process holds, and never hold a MySQL lock for longer than one small
//! batch.

pub mod pacing;

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub use pacing::{BadDuty, Pacing};

use crate::redis_queue::{QueueError, RedisQueue};
use crate::store::{self, PruneClass, StoreError};

/// A retention string that cannot be used; the caller names the key.
#[derive(Debug, thiserror::Error)]
#[error("must be a duration such as \"30d\", \"12h\" or \"90m\" (empty = keep forever), got {given:?}: {reason}")]
pub struct BadDuration {
    given: String,
    reason: String,
}

/// Parses `"30d"`, `"12h"`, `"1h 30m"`...; empty means "not set".
pub fn parse_duration(text: &str) -> Result<Option<Duration>, BadDuration> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let bad = |reason: String| BadDuration {
        given: text.to_string(),
        reason,
    };
    let duration = humantime::parse_duration(trimmed).map_err(|e| bad(e.to_string()))?;
    if duration < Duration::from_secs(1) {
        return Err(bad("shorter than one second".to_string()));
    }
    // Keeps `now - duration` far inside the range of unix milliseconds.
    if duration > Duration::from_secs(100 * 366 * 24 * 3600) {
        return Err(bad("longer than 100 years".to_string()));
    }
    Ok(Some(duration))
}

/// Longest pause between two pruning passes when `results.prune_interval` is unset.
pub const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Which results are kept how long. `None` keeps them forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionPolicy {
    /// Rows of every status but `dead`.
    pub retention: Option<Duration>,
    /// `dead` rows and dead letters; unset means the same as `retention`.
    pub dead_retention: Option<Duration>,
}

/// Rows finished before these unix-millisecond times are due for deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// For rows of every status but `dead`.
    pub others: Option<i64>,
    /// For `dead` rows and dead letters.
    pub dead: Option<i64>,
}

impl RetentionPolicy {
    /// Whether anything is ever pruned.
    pub fn is_active(&self) -> bool {
        self.retention.is_some() || self.dead_retention.is_some()
    }

    fn dead(&self) -> Option<Duration> {
        self.dead_retention.or(self.retention)
    }

    /// The cutoffs at `now_ms`.
    pub fn cutoffs(&self, now_ms: i64) -> Cutoffs {
        let before = |keep: Option<Duration>| {
            keep.map(|d| now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
        };
        Cutoffs {
            others: before(self.retention),
            dead: before(self.dead()),
        }
    }

    /// The pause between passes: `configured`, or else the shorter of the
    /// retentions and one minute.
    pub fn interval(&self, configured: Option<Duration>) -> Duration {
        configured.unwrap_or_else(|| {
            [self.retention, self.dead_retention]
                .into_iter()
                .flatten()
                .fold(DEFAULT_PRUNE_INTERVAL, Duration::min)
        })
    }
}

impl Cutoffs {
    /// The DELETEs one pass runs, each with the time its rows must precede.
    /// When both cutoffs are equal one statement serves every status.
    pub fn classes(&self) -> Vec<(PruneClass, i64)> {
        match (self.others, self.dead) {
            (Some(others), Some(dead)) if others == dead => vec![
                (PruneClass::AllResults, others),
                (PruneClass::DeadLetters, dead),
            ],
            (others, dead) => {
                let mut classes = Vec::new();
                if let Some(others) = others {
                    classes.push((PruneClass::NotDead, others));
                }
                if let Some(dead) = dead {
                    classes.push((PruneClass::Dead, dead));
                    classes.push((PruneClass::DeadLetters, dead));
                }
                classes
            }
        }
    }
}

/// How a pass deletes.
#[derive(Debug, Clone, Copy)]
pub struct PruneOptions {
    /// Rows per DELETE.
    pub batch: usize,
    /// The rest after each DELETE, in proportion to its duration, so the
    /// writers get the primary most of the time.
    pub pacing: Pacing,
    /// How long the prune lock lives unless renewed (after every batch).
    pub lock_ttl: Duration,
}

/// What one pass did (or, dry, would do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// `job_results` rows deleted (or due).
    pub results: u64,
    /// `dead_letters` rows deleted (or due).
    pub dead_letters: u64,
    /// The pass was asked to stop (shutdown) and left the rest for later.
    pub stopped: bool,
}

impl PruneReport {
    fn add(&mut self, class: PruneClass, rows: u64) {
        match class {
            PruneClass::DeadLetters => self.dead_letters += rows,
            _ => self.results += rows,
        }
    }

    /// Rows of both tables.
    pub fn total(&self) -> u64 {
        self.results + self.dead_letters
    }
}

/// Why a pass stopped early; rows it deleted stay deleted, the rest wait
/// for the next pass.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// MySQL failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis (the lock) failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Another process holds the prune lock (its id).
    #[error("another process is pruning (it holds the prune lock: {0})")]
    Busy(String),
    /// The lock ran out between two batches.
    #[error("the prune lock expired during the pass (another process may prune now)")]
    LockLost,
}

/// Redis key of the prune lock (one per key prefix).
const LOCK_NAME: &str = "prune";

/// Counts the rows a pass would delete at `now_ms`, deleting nothing.
pub async fn count_due(
    pool: &mysql_async::Pool,
    policy: &RetentionPolicy,
    now_ms: i64,
) -> Result<PruneReport, PruneError> {
    let mut report = PruneReport::default();
    for (class, cutoff) in policy.cutoffs(now_ms).classes() {
        report.add(class, store::count_prunable(pool, class, cutoff).await?);
    }
    Ok(report)
}

/// One pass: takes the prune lock as `owner`, deletes every row due at
/// `now_ms` in batches, and releases the lock. [`PruneError::Busy`] when
/// another process holds it. When `stop` is cancelled the pass ends after
/// the batch under way (rows deleted so far stay deleted, the report says
/// `stopped`) and releases the lock at once, so another process may go on.
pub async fn prune(
    pool: &mysql_async::Pool,
    redis: &RedisQueue,
    policy: &RetentionPolicy,
    options: &PruneOptions,
    owner: &str,
    now_ms: i64,
    stop: &CancellationToken,
) -> Result<PruneReport, PruneError> {
    if let Some(holder) = redis.try_lock(LOCK_NAME, owner, options.lock_ttl).await? {
        return Err(PruneError::Busy(holder));
    }
    let pass = Pass {
        pool,
        redis,
        options,
        owner,
        stop,
    };
    let result = pass.delete_due(policy, now_ms).await;
    // Released only if `owner` still holds it (the script checks).
    if let Err(error) = redis.unlock(LOCK_NAME, owner).await {
        log::debug!(target: "conveyor::retention", "releasing the prune lock failed (it expires by itself): {error}");
    }
    result
}

/// One pass under the lock.
struct Pass<'a> {
    pool: &'a mysql_async::Pool,
    redis: &'a RedisQueue,
    options: &'a PruneOptions,
    owner: &'a str,
    stop: &'a CancellationToken,
}

impl Pass<'_> {
    async fn delete_due(
        &self,
        policy: &RetentionPolicy,
        now_ms: i64,
    ) -> Result<PruneReport, PruneError> {
        let mut report = PruneReport::default();
        for (class, cutoff) in policy.cutoffs(now_ms).classes() {
            loop {
                if self.stop.is_cancelled() {
                    report.stopped = true;
                    return Ok(report);
                }
                let started = Instant::now();
                let deleted =
                    store::prune_batch(self.pool, class, cutoff, self.options.batch).await?;
                let took = started.elapsed();
                report.add(class, deleted);
                self.renew().await?;
                if deleted < self.options.batch as u64 {
                    break;
                }
                let rest = self.options.pacing.rest_after(took);
                log::debug!(
                    target: "conveyor::retention",
                    "deleted {deleted} rows in {} ms; resting {} ms",
                    took.as_millis(),
                    rest.as_millis()
                );
                self.rest(rest).await?;
            }
        }
        Ok(report)
    }

    /// Sleeps `rest` (ending early on stop), renewing the lock at least
    /// every third of its TTL so a long rest never lets it expire.
    async fn rest(&self, rest: Duration) -> Result<(), PruneError> {
        let step = (self.options.lock_ttl / 3).max(Duration::from_millis(1));
        let mut left = rest;
        while !left.is_zero() {
            let nap = left.min(step);
            tokio::select! {
                () = tokio::time::sleep(nap) => {}
                () = self.stop.cancelled() => return Ok(()),
            }
            left -= nap;
            if !left.is_zero() {
                self.renew().await?;
            }
        }
        Ok(())
    }

    async fn renew(&self) -> Result<(), PruneError> {
        if self
            .redis
            .renew_lock(LOCK_NAME, self.owner, self.options.lock_ttl)
            .await?
        {
            Ok(())
        } else {
            Err(PruneError::LockLost)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn durations_parse_and_empty_means_unset() {
        assert_eq!(parse_duration("30d").unwrap(), Some(30 * DAY));
        assert_eq!(
            parse_duration(" 1h 30m ").unwrap(),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(parse_duration("").unwrap(), None);
        assert_eq!(parse_duration("  ").unwrap(), None);
    }

    #[test]
    fn bad_durations_say_what_is_expected() {
        for bad in ["30", "thirty days", "-1d", "500ms", "1000y"] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(err.starts_with("must be a duration"), "{bad}: {err}");
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn dead_retention_defaults_to_retention() {
        let policy = RetentionPolicy {
            retention: Some(DAY),
            dead_retention: None,
        };
        let now = 10 * DAY.as_millis() as i64;
        let cutoffs = policy.cutoffs(now);
        assert_eq!(cutoffs.others, Some(now - DAY.as_millis() as i64));
        assert_eq!(cutoffs.dead, cutoffs.others);
        assert_eq!(
            cutoffs.classes(),
            vec![
                (PruneClass::AllResults, now - DAY.as_millis() as i64),
                (PruneClass::DeadLetters, now - DAY.as_millis() as i64)
            ]
        );
    }

    #[test]
    fn separate_dead_retention_prunes_each_status_by_its_own_cutoff() {
        let policy = RetentionPolicy {
            retention: Some(DAY),
            dead_retention: Some(7 * DAY),
        };
        let now = 10 * DAY.as_millis() as i64;
        let day = DAY.as_millis() as i64;
        assert_eq!(
            policy.cutoffs(now).classes(),
            vec![
                (PruneClass::NotDead, now - day),
                (PruneClass::Dead, now - 7 * day),
                (PruneClass::DeadLetters, now - 7 * day)
            ]
        );
    }

    #[test]
    fn only_dead_retention_keeps_other_rows_forever() {
        let policy = RetentionPolicy {
            retention: None,
            dead_retention: Some(DAY),
        };
        assert!(policy.is_active());
        let classes = policy.cutoffs(5 * DAY.as_millis() as i64).classes();
        assert!(classes
            .iter()
            .all(|(c, _)| *c != PruneClass::NotDead && *c != PruneClass::AllResults));
        assert_eq!(classes.len(), 2);
    }

    #[test]
    fn no_retention_prunes_nothing() {
        let policy = RetentionPolicy::default();
        assert!(!policy.is_active());
        assert!(policy.cutoffs(1_000_000).classes().is_empty());
    }

    #[test]
    fn interval_defaults_to_the_shorter_of_retention_and_a_minute() {
        let long = RetentionPolicy {
            retention: Some(30 * DAY),
            dead_retention: None,
        };
        assert_eq!(long.interval(None), DEFAULT_PRUNE_INTERVAL);
        let short = RetentionPolicy {
            retention: Some(30 * DAY),
            dead_retention: Some(Duration::from_secs(10)),
        };
        assert_eq!(short.interval(None), Duration::from_secs(10));
        assert_eq!(
            short.interval(Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
    }
}
