//! How many jobs limiters hold back, as this worker last saw them: per
//! queue, from each claim's reply, summed per limiter for the
//! `conveyor_limited_jobs` gauge and the mailbox log line.
//!
//! This module owns that bookkeeping only. It must never count anything
//! itself: the claim script reports, this keeps the latest report per queue.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// (limiter, jobs it holds back) pairs of one claim.
pub type HeldBackBy = Vec<(String, u64)>;

/// The latest held-back counts, per queue and limiter.
#[derive(Debug, Default)]
pub struct LimitedJobs(Mutex<BTreeMap<String, HeldBackBy>>);

impl LimitedJobs {
    /// A claim of `queue` reported these (limiter, jobs held back) pairs;
    /// an empty list means nothing of the queue is held back any more.
    pub fn record(&self, queue: &str, by: &[(String, u64)]) {
        let mut latest = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if by.is_empty() {
            latest.remove(queue);
        } else {
            latest.insert(queue.to_string(), by.to_vec());
        }
    }

    /// Jobs held back per limiter, over all queues, by name.
    pub fn by_limiter(&self) -> BTreeMap<String, u64> {
        let latest = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut sums = BTreeMap::new();
        for (limiter, n) in latest.values().flatten() {
            *sums.entry(limiter.clone()).or_default() += n;
        }
        sums
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_report_per_queue_counts_and_an_empty_one_clears() {
        let limited = LimitedJobs::default();
        limited.record("a", &[("api".into(), 5), ("mail".into(), 1)]);
        limited.record("b", &[("api".into(), 2)]);
        limited.record("a", &[("api".into(), 3)]);
        assert_eq!(limited.by_limiter(), BTreeMap::from([("api".into(), 5)]));
        limited.record("b", &[]);
        assert_eq!(limited.by_limiter(), BTreeMap::from([("api".into(), 3)]));
    }
}
