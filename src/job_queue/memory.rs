//! An in-memory [`JobQueue`] for unit tests of the actor wiring: the same
//! moves as the Redis scripts (pending → held → acknowledged, rescheduled or
//! handed back), a lease per queue, and faults on demand.
//!
//! It must never be used outside tests: it is one process's memory, so it
//! keeps nothing across a crash.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::JobQueue;
use crate::job::{ClaimedJob, JobHandle};
use crate::redis_queue::{Claimed, QueueError, Reschedule};

/// What the fake holds; tests read and change it through [`MemoryQueue::with`].
#[derive(Debug, Default)]
pub(crate) struct MemoryState {
    /// Producers' messages per queue, oldest first.
    pub(crate) pending: HashMap<String, VecDeque<Vec<u8>>>,
    /// Tokens due again per queue, first in line first.
    pub(crate) ready: HashMap<String, VecDeque<String>>,
    /// token → message for jobs in `ready` or `scheduled`.
    pub(crate) jobs: HashMap<String, Vec<u8>>,
    /// token → due time.
    pub(crate) scheduled: HashMap<String, i64>,
    /// token → attempts made.
    pub(crate) attempts: HashMap<String, u32>,
    /// Jobs this worker holds, per queue.
    pub(crate) held: HashMap<String, BTreeMap<String, Vec<u8>>>,
    /// Lease deadline per queue.
    pub(crate) leases: HashMap<String, i64>,
    /// Tokens acknowledged, in order.
    pub(crate) acked: Vec<String>,
    /// The next this many calls fail as if Redis were unreachable.
    pub(crate) fail_next: usize,
    /// The next this many claims move jobs and then fail (the reply is lost).
    pub(crate) lose_next_claim_replies: usize,
    /// Batches of messages "left to sort" per queue, as the Redis claim
    /// reports them while per-key lists are in use; each `sort_pending`
    /// call sorts one.
    pub(crate) unsorted_batches: HashMap<String, u64>,
    /// `sort_pending` calls made (failed ones too), per queue.
    pub(crate) sort_calls: HashMap<String, u64>,
    /// The next this many `sort_pending` calls fail.
    pub(crate) fail_next_sorts: usize,
    next_token: u64,
}

impl MemoryState {
    fn fault(&mut self) -> Result<(), QueueError> {
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return Err(QueueError::Protocol("injected fault".to_string()));
        }
        Ok(())
    }

    /// Jobs held on `queue`.
    pub(crate) fn held_on(&self, queue: &str) -> usize {
        self.held.get(queue).map_or(0, BTreeMap::len)
    }

    /// What another worker's reaper does after this worker's lease expired:
    /// every held job of `queue` goes back to `ready` with an attempt counted.
    pub(crate) fn reap(&mut self, queue: &str) {
        self.leases.remove(queue);
        for (token, raw) in self.held.remove(queue).unwrap_or_default() {
            *self.attempts.entry(token.clone()).or_default() += 1;
            self.jobs.insert(token.clone(), raw);
            self.ready
                .entry(queue.to_string())
                .or_default()
                .push_front(token);
        }
    }

    fn take(&mut self, queue: &Arc<str>, max: usize, now_ms: i64) -> Vec<ClaimedJob> {
        let mut taken = Vec::new();
        while taken.len() < max {
            let ready = self.ready.entry(queue.to_string()).or_default();
            let (token, raw) = if let Some(token) = ready.pop_back() {
                let Some(raw) = self.jobs.remove(&token) else {
                    continue;
                };
                (token, raw)
            } else if let Some(raw) = self
                .pending
                .entry(queue.to_string())
                .or_default()
                .pop_front()
            {
                self.next_token += 1;
                (format!("mem-{}", self.next_token), raw)
            } else {
                break;
            };
            self.held
                .entry(queue.to_string())
                .or_default()
                .insert(token.clone(), raw.clone());
            taken.push(ClaimedJob {
                handle: JobHandle {
                    queue: queue.clone(),
                    token: token.clone(),
                },
                raw,
                attempts_made: self.attempts.get(&token).copied().unwrap_or(0),
                last_error: None,
                claimed_at_ms: now_ms,
                cancelled: false,
                duplicate_of: None,
            });
        }
        taken
    }
}

/// An in-memory [`JobQueue`] for one worker; clones share the state.
#[derive(Clone, Default)]
pub(crate) struct MemoryQueue {
    state: Arc<Mutex<MemoryState>>,
    pushed: Arc<Notify>,
}

impl MemoryQueue {
    /// Claims up to `max` jobs of one queue, renewing the lease.
    async fn claim_one(
        &self,
        queue: &Arc<str>,
        max: usize,
        lease_deadline_ms: i64,
    ) -> Result<Claimed, QueueError> {
        let mut state = self.lock();
        state.fault()?;
        let lease_was_held = state.leases.contains_key(&**queue);
        state.leases.insert(queue.to_string(), lease_deadline_ms);
        let jobs = state.take(queue, max, crate::job::now_ms());
        if state.lose_next_claim_replies > 0 {
            state.lose_next_claim_replies -= 1;
            return Err(QueueError::Protocol("reply lost".to_string()));
        }
        Ok(Claimed {
            jobs,
            lease_was_held,
            paused: false,
            held_back: None,
            unsorted_backlog: state.unsorted_batches.get(&**queue).is_some_and(|n| *n > 0),
        })
    }

    /// Reads or changes the state.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut MemoryState) -> T) -> T {
        f(&mut self.lock())
    }

    /// Pushes messages onto `queue` as a producer would.
    pub(crate) fn push(&self, queue: &str, messages: impl IntoIterator<Item = String>) {
        self.with(|state| {
            let list = state.pending.entry(queue.to_string()).or_default();
            list.extend(messages.into_iter().map(String::into_bytes));
        });
        self.pushed.notify_waiters();
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn remove_held(&self, queue: &str, token: &str) -> Option<Vec<u8>> {
        self.lock().held.get_mut(queue)?.remove(token)
    }
}

impl JobQueue for MemoryQueue {
    /// One queue after another; a fault ends the round with an error, as a
    /// failed pipeline does.
    async fn claim_many(
        &self,
        asks: &[(Arc<str>, usize)],
        lease_deadline_ms: i64,
    ) -> Result<Vec<Claimed>, QueueError> {
        let mut claimed = Vec::with_capacity(asks.len());
        for (queue, max) in asks {
            claimed.push(self.claim_one(queue, *max, lease_deadline_ms).await?);
        }
        Ok(claimed)
    }

    async fn ack(&self, queue: &str, tokens: &[String]) -> Result<usize, QueueError> {
        self.lock().fault()?;
        let mut held = 0;
        for token in tokens {
            if self.remove_held(queue, token).is_some() {
                held += 1;
                let mut state = self.lock();
                state.attempts.remove(token);
                state.acked.push(token.clone());
            }
        }
        Ok(held)
    }

    async fn reschedule(&self, queue: &str, jobs: &[Reschedule]) -> Result<usize, QueueError> {
        self.lock().fault()?;
        let mut moved = 0;
        for job in jobs {
            if let Some(raw) = self.remove_held(queue, &job.token) {
                moved += 1;
                let mut state = self.lock();
                state.jobs.insert(job.token.clone(), raw);
                state.scheduled.insert(job.token.clone(), job.due_ms);
                if let Some((attempts, _)) = &job.failure {
                    state.attempts.insert(job.token.clone(), *attempts);
                }
            }
        }
        Ok(moved)
    }

    async fn held_tokens(&self, queue: &str) -> Result<Vec<String>, QueueError> {
        let mut state = self.lock();
        state.fault()?;
        Ok(state
            .held
            .get(queue)
            .map(|held| held.keys().cloned().collect())
            .unwrap_or_default())
    }

    async fn release(&self, queue: &str, tokens: &[String]) -> Result<usize, QueueError> {
        let mut state = self.lock();
        state.fault()?;
        let mut moved = 0;
        for token in tokens {
            let Some(raw) = state.held.get_mut(queue).and_then(|h| h.remove(token)) else {
                continue;
            };
            moved += 1;
            state.jobs.insert(token.clone(), raw);
            state
                .ready
                .entry(queue.to_string())
                .or_default()
                .push_back(token.clone());
        }
        Ok(moved)
    }

    async fn hand_back(&self, queue: &str) -> Result<usize, QueueError> {
        let tokens = self.held_tokens(queue).await?;
        let moved = self.release(queue, &tokens).await?;
        self.lock().leases.remove(queue);
        Ok(moved)
    }

    async fn sort_pending(&self, queue: &Arc<str>) -> Result<u64, QueueError> {
        let mut state = self.lock();
        *state.sort_calls.entry(queue.to_string()).or_default() += 1;
        if state.fail_next_sorts > 0 {
            state.fail_next_sorts -= 1;
            return Err(QueueError::Protocol("injected sort fault".to_string()));
        }
        let left = state.unsorted_batches.entry(queue.to_string()).or_default();
        *left = left.saturating_sub(1);
        Ok(*left)
    }

    async fn renew_lease(&self, queue: &str, lease_deadline_ms: i64) -> Result<bool, QueueError> {
        let mut state = self.lock();
        state.fault()?;
        Ok(state
            .leases
            .insert(queue.to_string(), lease_deadline_ms)
            .is_some())
    }

    /// No limiters in memory: nothing is ever held back.
    async fn wait_for_slot(&self, _: &Arc<str>, timeout: Duration) -> Result<(), QueueError> {
        tokio::time::sleep(timeout).await;
        Ok(())
    }

    async fn wait_for_jobs(&self, queue: &Arc<str>, timeout: Duration) -> Result<(), QueueError> {
        let pushed = self.pushed.notified();
        tokio::pin!(pushed);
        pushed.as_mut().enable();
        let empty = self
            .lock()
            .pending
            .get(&**queue)
            .is_none_or(VecDeque::is_empty);
        if empty {
            let _ = tokio::time::timeout(timeout, pushed).await;
        }
        Ok(())
    }
}
