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

use redis::aio::MultiplexedConnection;

use crate::redis_queue::{wait_for_message, Claimed, QueueError, RedisQueue, Reschedule};

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

    /// Renews the lease; `Ok(false)` when it had expired meanwhile.
    fn renew_lease(
        &self,
        queue: &str,
        lease_deadline_ms: i64,
    ) -> impl Future<Output = Result<bool, QueueError>>;

    /// Waits until `queue` may have work or `timeout` passes.
    fn wait_for_jobs(
        &self,
        queue: &Arc<str>,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), QueueError>>;
}

/// [`JobQueue`] over Redis, for one worker id.
#[derive(Clone)]
pub(crate) struct RedisJobQueue {
    redis: RedisQueue,
    worker: Arc<str>,
    /// A blocking connection per queue, kept between waits.
    waiters: Arc<Mutex<HashMap<Arc<str>, MultiplexedConnection>>>,
}

impl RedisJobQueue {
    pub(crate) fn new(redis: RedisQueue, worker: Arc<str>) -> RedisJobQueue {
        RedisJobQueue {
            redis,
            worker,
            waiters: Arc::default(),
        }
    }

    fn spare_waiter(&self, queue: &str) -> Option<MultiplexedConnection> {
        self.waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(queue)
    }

    fn keep_waiter(&self, queue: &Arc<str>, conn: MultiplexedConnection) {
        self.waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(queue.clone(), conn);
    }
}

impl JobQueue for RedisJobQueue {
    async fn claim_many(
        &self,
        asks: &[(Arc<str>, usize)],
        lease_deadline_ms: i64,
    ) -> Result<Vec<Claimed>, QueueError> {
        self.redis
            .claim_many(asks, &self.worker, lease_deadline_ms)
            .await
    }

    async fn ack(&self, queue: &str, tokens: &[String]) -> Result<usize, QueueError> {
        self.redis.ack(queue, &self.worker, tokens).await
    }

    async fn reschedule(&self, queue: &str, jobs: &[Reschedule]) -> Result<usize, QueueError> {
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

    async fn renew_lease(&self, queue: &str, lease_deadline_ms: i64) -> Result<bool, QueueError> {
        self.redis
            .heartbeat(queue, &self.worker, lease_deadline_ms)
            .await
    }

    /// Blocks on the queue's own connection (never the shared one, whose
    /// response timeout would cut the wait off); the connection is kept for
    /// the next wait when this one ends well.
    async fn wait_for_jobs(&self, queue: &Arc<str>, timeout: Duration) -> Result<(), QueueError> {
        let mut conn = match self.spare_waiter(queue) {
            Some(conn) => conn,
            None => self.redis.waiter().await?,
        };
        wait_for_message(&mut conn, &self.redis.keys(queue), timeout).await?;
        self.keep_waiter(queue, conn);
        Ok(())
    }
}
