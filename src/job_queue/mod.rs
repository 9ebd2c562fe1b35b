//! The queue side of one worker, as a trait: what the QueueReader asks of the
//! store that holds its jobs (claim, acknowledge, reschedule, hand back,
//! renew its lease, wait for work), with the Redis implementation here and an
//! in-memory one for unit tests of the actor wiring.
//!
//! This module owns that seam only. It must never decide anything: when to
//! claim, what to acknowledge and what to hand back is the claim core's call;
//! the atomic moves themselves are the Redis scripts'.

#[cfg(test)]
pub(crate) mod memory;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::redis_queue::RedisConn;

use crate::limiters::{Limiter, LimiterBook};
use crate::redis_queue::{
    wait_for_message, wait_for_released_slot, Claimed, QueueError, RedisQueue, Reschedule,
};

/// One worker's view of the queues it consumes. Every method acts on the jobs
/// of the worker the value was made for.
pub(crate) trait JobQueue: Clone + Unpin + 'static {
    /// Claims from several queues in one round trip: up to `max` jobs of
    /// each (queue, max), answering in the same order, and renews the lease
    /// on each to `lease_deadline_ms`.
    fn claim_many(
        &self,
        asks: &[(Arc<str>, usize)],
        lease_deadline_ms: i64,
    ) -> impl Future<Output = Result<Vec<Claimed>, QueueError>>;

    /// Removes committed jobs; returns how many were still held.
    fn ack(
        &self,
        queue: &str,
        tokens: &[String],
    ) -> impl Future<Output = Result<usize, QueueError>>;

    /// Moves held jobs to `scheduled`; returns how many were still held.
    fn reschedule(
        &self,
        queue: &str,
        jobs: &[Reschedule],
    ) -> impl Future<Output = Result<usize, QueueError>>;

    /// The tokens this worker holds on `queue`, according to the store.
    fn held_tokens(&self, queue: &str) -> impl Future<Output = Result<Vec<String>, QueueError>>;

    /// Returns some held jobs to the front of `queue` without counting an
    /// attempt; returns how many were still held.
    fn release(
        &self,
        queue: &str,
        tokens: &[String],
    ) -> impl Future<Output = Result<usize, QueueError>>;

    /// Returns every held job of `queue` to its front and gives up the lease.
    fn hand_back(&self, queue: &str) -> impl Future<Output = Result<usize, QueueError>>;

    /// Sorts one more batch of `queue`'s waiting messages into its per-key
    /// lists (asked for by a claim's [`Claimed::unsorted_backlog`]); returns
    /// how many are still left to sort.
    fn sort_pending(&self, queue: &Arc<str>) -> impl Future<Output = Result<u64, QueueError>>;

    /// Renews the lease; `Ok(false)` when it had expired meanwhile.
    fn renew_lease(
        &self,
        queue: &str,
        lease_deadline_ms: i64,
    ) -> impl Future<Output = Result<bool, QueueError>>;

    /// Waits until a job of `queue` releases limiter slots or `timeout` passes.
    fn wait_for_slot(
        &self,
        queue: &Arc<str>,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), QueueError>>;

    /// Waits until `queue` may have work or `timeout` passes.
    fn wait_for_jobs(
        &self,
        queue: &Arc<str>,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), QueueError>>;
}

/// What a blocking wait waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Wait {
    Message,
    ReleasedSlot,
}

/// Kept blocking connections, by queue and kind of wait.
type Waiters = HashMap<(Arc<str>, Wait), RedisConn>;

/// [`JobQueue`] over Redis, for one worker id.
#[derive(Clone)]
pub(crate) struct RedisJobQueue {
    redis: RedisQueue,
    worker: Arc<str>,
    /// The limiters claims must honour.
    limiters: LimiterBook,
    /// A blocking connection per queue and kind of wait, kept between waits.
    waiters: Arc<Mutex<Waiters>>,
}

impl RedisJobQueue {
    pub(crate) fn new(redis: RedisQueue, worker: Arc<str>, limiters: LimiterBook) -> RedisJobQueue {
        RedisJobQueue {
            redis,
            worker,
            limiters,
            waiters: Arc::default(),
        }
    }

    /// The kept connection for this wait, or a new one.
    async fn waiter(&self, queue: &Arc<str>, wait: Wait) -> Result<RedisConn, QueueError> {
        let spare = self
            .waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&(queue.clone(), wait));
        match spare {
            Some(conn) => Ok(conn),
            None => self.redis.waiter().await,
        }
    }

    fn keep_waiter(&self, queue: &Arc<str>, wait: Wait, conn: RedisConn) {
        self.waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert((queue.clone(), wait), conn);
    }
}

impl JobQueue for RedisJobQueue {
    async fn claim_many(
        &self,
        asks: &[(Arc<str>, usize)],
        lease_deadline_ms: i64,
    ) -> Result<Vec<Claimed>, QueueError> {
        let limiters = self.limiters.current();
        let covering = |queue: &str| -> Vec<&Limiter> {
            limiters.iter().filter(|l| l.covers_queue(queue)).collect()
        };
        if asks.iter().all(|(queue, _)| covering(queue).is_empty()) {
            return self
                .redis
                .claim_many(asks, &self.worker, lease_deadline_ms)
                .await;
        }
        // Queues under limiters take the limited claim, one round trip each;
        // the rest still go in one pipeline.
        let plain: Vec<(Arc<str>, usize)> = asks
            .iter()
            .filter(|(queue, _)| covering(queue).is_empty())
            .cloned()
            .collect();
        let plain_claims = if plain.is_empty() {
            Vec::new()
        } else {
            self.redis
                .claim_many(&plain, &self.worker, lease_deadline_ms)
                .await?
        };
        let mut plain_claims = plain_claims.into_iter();
        let mut claims = Vec::with_capacity(asks.len());
        for (queue, max) in asks {
            let limits = covering(queue);
            let claimed = if limits.is_empty() {
                plain_claims.next().ok_or_else(|| {
                    QueueError::Protocol("a claim round answered too few queues".to_string())
                })?
            } else {
                self.redis
                    .claim_limited(queue, &self.worker, *max, lease_deadline_ms, &limits)
                    .await?
            };
            claims.push(claimed);
        }
        Ok(claims)
    }

    async fn ack(&self, queue: &str, tokens: &[String]) -> Result<usize, QueueError> {
        self.redis.ack(queue, &self.worker, tokens).await
    }

    /// Writes the holds of rate-limited jobs first, so that no job of their
    /// limiters starts between a job's return and its hold.
    async fn reschedule(&self, queue: &str, jobs: &[Reschedule]) -> Result<usize, QueueError> {
        let holds: Vec<_> = jobs.iter().filter_map(|job| job.hold.as_ref()).collect();
        if !holds.is_empty() {
            let limiters = self.limiters.current();
            for hold in holds {
                self.redis.hold_limiters(queue, &limiters, hold).await?;
            }
        }
        self.redis.reschedule(queue, &self.worker, jobs).await
    }

    async fn held_tokens(&self, queue: &str) -> Result<Vec<String>, QueueError> {
        self.redis.held_tokens(queue, &self.worker).await
    }

    async fn release(&self, queue: &str, tokens: &[String]) -> Result<usize, QueueError> {
        self.redis.release(queue, &self.worker, tokens).await
    }

    async fn hand_back(&self, queue: &str) -> Result<usize, QueueError> {
        self.redis.hand_back(queue, &self.worker).await
    }

    async fn sort_pending(&self, queue: &Arc<str>) -> Result<u64, QueueError> {
        self.redis.sort_pending(queue, &self.worker).await
    }

    async fn renew_lease(&self, queue: &str, lease_deadline_ms: i64) -> Result<bool, QueueError> {
        self.redis
            .heartbeat(queue, &self.worker, lease_deadline_ms)
            .await
    }

    /// Blocks on the queue's own connection (never the shared one, whose
    /// response timeout would cut the wait off); the connection is kept for
    /// the next wait when this one ends well.
    async fn wait_for_jobs(&self, queue: &Arc<str>, timeout: Duration) -> Result<(), QueueError> {
        let mut conn = self.waiter(queue, Wait::Message).await?;
        wait_for_message(&mut conn, &self.redis.keys(queue), timeout).await?;
        self.keep_waiter(queue, Wait::Message, conn);
        Ok(())
    }

    async fn wait_for_slot(&self, queue: &Arc<str>, timeout: Duration) -> Result<(), QueueError> {
        let mut conn = self.waiter(queue, Wait::ReleasedSlot).await?;
        wait_for_released_slot(&mut conn, &self.redis.keys(queue), timeout).await?;
        self.keep_waiter(queue, Wait::ReleasedSlot, conn);
        Ok(())
    }
}
