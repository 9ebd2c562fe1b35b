//! The order in which a worker serves its queues (`queues.mode`): weighted
//! by `[queues.weights]`, or strict in the order of `queues.names`.
//!
//! This module owns how one claim round's capacity is split among the
//! queues that have jobs and are not paused: smooth weighted round robin (the
//! algorithm of nginx's upstream balancer) for `weighted`, the first such
//! queue alone for `strict`. The rotation state lives in the value, one per
//! worker, so the shares hold across rounds of any size. It must never do
//! I/O or read the clock: callers say which queues are eligible.

use serde::Deserialize;

/// `queues.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueMode {
    /// While every queue has jobs waiting, each gets a share of the started
    /// jobs proportional to its weight.
    #[default]
    Weighted,
    /// A queue is served only while every queue listed before it is empty.
    Strict,
}

/// One worker's rotation over its queues (indexes into `queues.names`).
#[derive(Debug, Clone)]
pub struct QueueOrder {
    mode: QueueMode,
    weights: Vec<i64>,
    /// Smooth weighted round robin: each queue's running credit.
    credit: Vec<i64>,
}

impl QueueOrder {
    /// `weights[i]` is the weight of queue `i` (each at least 1).
    pub fn new(mode: QueueMode, weights: &[u32]) -> QueueOrder {
        QueueOrder {
            mode,
            weights: weights.iter().map(|w| i64::from((*w).max(1))).collect(),
            credit: vec![0; weights.len()],
        }
    }

    /// Weighted or strict.
    pub fn mode(&self) -> QueueMode {
        self.mode
    }

    /// The queues, in the order their next `slots` jobs should start:
    /// `eligible[i]` says whether queue `i` may be claimed from now (it has
    /// jobs and is not paused). Empty when no queue is eligible.
    pub fn picks(&mut self, eligible: &[bool], slots: usize) -> Vec<usize> {
        let candidates: Vec<usize> = (0..self.weights.len())
            .filter(|i| eligible.get(*i).copied().unwrap_or(false))
            .collect();
        match (self.mode, candidates.as_slice()) {
            (_, []) => Vec::new(),
            (QueueMode::Strict, [first, ..]) | (QueueMode::Weighted, [first]) => {
                vec![*first; slots]
            }
            (QueueMode::Weighted, _) => (0..slots).map(|_| self.next(&candidates)).collect(),
        }
    }

    /// How many jobs to ask of each queue (by index) for these picks.
    pub fn counts(&self, picks: &[usize]) -> Vec<usize> {
        let mut counts = vec![0; self.weights.len()];
        for pick in picks {
            counts[*pick] += 1;
        }
        counts
    }

    /// One step of smooth weighted round robin among `candidates`.
    fn next(&mut self, candidates: &[usize]) -> usize {
        let mut best = candidates[0];
        let mut total = 0;
        for &i in candidates {
            self.credit[i] += self.weights[i];
            total += self.weights[i];
            if self.credit[i] > self.credit[best] {
                best = i;
            }
        }
        self.credit[best] -= total;
        best
    }
}

/// Deals out the jobs claimed per queue (`claimed[i]` from queue `i`) in
/// the order of `picks`, so the queues' jobs interleave in the feed by
/// weight; jobs beyond the picks (none, when every queue gave what it was
/// asked) follow in queue order.
pub fn interleave<T>(picks: &[usize], claimed: Vec<Vec<T>>) -> Vec<T> {
    let total = claimed.iter().map(Vec::len).sum();
    let mut queues: Vec<std::vec::IntoIter<T>> = claimed.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::with_capacity(total);
    for pick in picks {
        if let Some(job) = queues.get_mut(*pick).and_then(Iterator::next) {
            out.push(job);
        }
    }
    for rest in queues {
        out.extend(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(picks: &[usize], queues: usize) -> Vec<usize> {
        let mut counts = vec![0; queues];
        for pick in picks {
            counts[*pick] += 1;
        }
        counts
    }

    #[test]
    fn weights_three_to_one_hold_over_any_thousand_starts() {
        let mut order = QueueOrder::new(QueueMode::Weighted, &[3, 1]);
        let mut picks = Vec::new();
        // Rounds of uneven sizes, as capacity frees up.
        for size in [7, 500, 1, 33, 250, 209, 1000, 3] {
            picks.extend(order.picks(&[true, true], size));
        }
        for window in picks.windows(1000) {
            let counts = shares(window, 2);
            assert!((749..=751).contains(&counts[0]), "{counts:?}");
        }
    }

    #[test]
    fn weighted_picks_are_smooth() {
        let mut order = QueueOrder::new(QueueMode::Weighted, &[5, 1, 1]);
        assert_eq!(order.picks(&[true; 3], 7), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn equal_weights_alternate() {
        let mut order = QueueOrder::new(QueueMode::Weighted, &[1, 1, 1]);
        assert_eq!(order.picks(&[true; 3], 6), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn empty_or_paused_queues_get_nothing() {
        let mut order = QueueOrder::new(QueueMode::Weighted, &[3, 1, 2]);
        let picks = order.picks(&[false, true, true], 300);
        assert_eq!(shares(&picks, 3), [0, 100, 200]);
        assert!(order.picks(&[false, false, false], 10).is_empty());
        assert_eq!(order.picks(&[false, true, false], 4), [1, 1, 1, 1]);
    }

    #[test]
    fn strict_serves_the_first_eligible_queue_alone() {
        let mut order = QueueOrder::new(QueueMode::Strict, &[1, 5, 1]);
        assert_eq!(order.picks(&[true, true, true], 3), [0, 0, 0]);
        assert_eq!(order.picks(&[false, true, true], 2), [1, 1]);
        assert_eq!(order.picks(&[false, false, true], 2), [2, 2]);
    }

    #[test]
    fn counts_follow_the_picks() {
        let mut order = QueueOrder::new(QueueMode::Weighted, &[3, 1]);
        let picks = order.picks(&[true, true], 8);
        assert_eq!(order.counts(&picks), [6, 2]);
    }

    #[test]
    fn interleave_deals_jobs_in_pick_order_and_keeps_the_rest() {
        let picks = [0, 0, 1, 0, 1];
        let claimed = vec![vec!["a1", "a2"], vec!["b1", "b2", "b3"]];
        assert_eq!(interleave(&picks, claimed), ["a1", "a2", "b1", "b2", "b3"]);
        let claimed = vec![vec!["a1", "a2", "a3"], vec!["b1", "b2"]];
        assert_eq!(interleave(&picks, claimed), ["a1", "a2", "b1", "a3", "b2"]);
    }
}
