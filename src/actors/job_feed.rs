//! JobFeed: the claimed jobs waiting for a processor slot, shared by the
//! QueueReader (which fills it) and the processor threads (which take from it).
//!
//! It owns the hand-over between the two and the bookkeeping that decides how
//! many idle processor threads need a `Drain` message. A thread that is
//! already running jobs takes new ones as soon as a slot frees up or the feed
//! grows (it is notified), so one slow job never holds a whole batch of slots.
//!
//! It must never lose a job: a job leaves it only through `take` (to a
//! thread, which reports an outcome for it) or `clear` (at shutdown, when
//! the QueueReader hands every held job back to Redis).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::job::ClaimedJob;
use crate::metrics::Metrics;

struct FeedState {
    jobs: VecDeque<ClaimedJob>,
    /// Threads inside a `Drain` handler (running jobs or about to).
    active: usize,
    /// `Drain` messages sent and not yet started by a thread.
    wakes_queued: usize,
}

pub(crate) struct JobFeed {
    state: Mutex<FeedState>,
    notify: Notify,
    threads: usize,
    per_thread: usize,
    metrics: Arc<Metrics>,
}

impl JobFeed {
    pub(crate) fn new(threads: usize, per_thread: usize, metrics: Arc<Metrics>) -> JobFeed {
        JobFeed {
            state: Mutex::new(FeedState {
                jobs: VecDeque::new(),
                active: 0,
                wakes_queued: 0,
            }),
            notify: Notify::new(),
            threads,
            per_thread: per_thread.max(1),
            metrics,
        }
    }

    /// The state; a panic elsewhere cannot leave it inconsistent (every
    /// critical section is a few plain field updates), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds jobs and wakes the busy threads. Returns how many idle threads
    /// the caller must send a `Drain` message to.
    pub(crate) fn push(&self, jobs: Vec<ClaimedJob>) -> usize {
        let wakes = {
            let mut state = self.lock();
            state.jobs.extend(jobs);
            let idle = self
                .threads
                .saturating_sub(state.active + state.wakes_queued);
            let wanted = state.jobs.len().div_ceil(self.per_thread);
            let wakes = idle.min(wanted);
            state.wakes_queued += wakes;
            self.publish(&state);
            wakes
        };
        self.notify.notify_waiters();
        wakes
    }

    /// A thread starts handling a `Drain` message.
    pub(crate) fn begin(&self) {
        let mut state = self.lock();
        state.wakes_queued = state.wakes_queued.saturating_sub(1);
        state.active += 1;
    }

    /// Takes up to `max` jobs for the calling thread.
    pub(crate) fn take(&self, max: usize) -> Vec<ClaimedJob> {
        let mut state = self.lock();
        let count = max.min(state.jobs.len());
        let jobs: Vec<ClaimedJob> = state.jobs.drain(..count).collect();
        self.publish(&state);
        jobs
    }

    /// Takes every waiting job of `queue` (the queue was paused: they must
    /// not start). Cancelled jobs stay: they never start, they only get
    /// their `cancelled` row, paused queue or not.
    pub(crate) fn take_queue(&self, queue: &str) -> Vec<ClaimedJob> {
        let mut state = self.lock();
        let (taken, kept): (VecDeque<ClaimedJob>, VecDeque<ClaimedJob>) =
            std::mem::take(&mut state.jobs)
                .into_iter()
                .partition(|job| &*job.handle.queue == queue && !job.cancelled);
        state.jobs = kept;
        self.publish(&state);
        taken.into_iter().collect()
    }

    /// The calling thread has nothing running: it leaves (returns true)
    /// unless jobs arrived meanwhile. Checked under the lock that `push`
    /// takes, so a job pushed now either is seen here or wakes a thread.
    pub(crate) fn leave_if_empty(&self) -> bool {
        let mut state = self.lock();
        if state.jobs.is_empty() {
            state.active = state.active.saturating_sub(1);
            true
        } else {
            false
        }
    }

    /// A thread left without `leave_if_empty` (its handler failed).
    pub(crate) fn abandon(&self) {
        let mut state = self.lock();
        state.active = state.active.saturating_sub(1);
    }

    /// Drops every waiting job (shutdown: they are handed back in Redis).
    pub(crate) fn clear(&self) -> usize {
        let mut state = self.lock();
        let dropped = state.jobs.len();
        state.jobs.clear();
        self.publish(&state);
        dropped
    }

    /// A future that resolves on the next `push` (create it, then check the
    /// feed, then await it, so no push is missed).
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    fn publish(&self, state: &FeedState) {
        self.metrics.feed_depth.store(
            state.jobs.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobHandle;

    fn jobs(n: usize) -> Vec<ClaimedJob> {
        (0..n)
            .map(|i| ClaimedJob {
                handle: JobHandle {
                    queue: "q".into(),
                    token: format!("t{i}"),
                },
                raw: Vec::new(),
                attempts_made: 0,
                duplicate_of: None,
                last_error: None,
                claimed_at_ms: 0,
                cancelled: false,
            })
            .collect()
    }

    #[test]
    fn wakes_only_as_many_idle_threads_as_the_jobs_need() {
        let feed = JobFeed::new(4, 10, Arc::new(Metrics::default()));
        assert_eq!(feed.push(jobs(15)), 2);
        assert_eq!(feed.push(jobs(100)), 2, "two wakes are still queued");
        feed.begin();
        feed.begin();
        assert_eq!(feed.take(10).len(), 10);
        assert_eq!(
            feed.push(jobs(1)),
            0,
            "all four threads are active or woken"
        );
    }

    #[test]
    fn a_thread_leaves_only_when_the_feed_is_empty() {
        let feed = JobFeed::new(1, 10, Arc::new(Metrics::default()));
        assert_eq!(feed.push(jobs(3)), 1);
        feed.begin();
        assert!(!feed.leave_if_empty());
        assert_eq!(feed.take(10).len(), 3);
        assert!(feed.leave_if_empty());
        assert_eq!(feed.push(jobs(1)), 1, "the thread is idle again");
    }
}
