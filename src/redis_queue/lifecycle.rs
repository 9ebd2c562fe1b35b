//! Every call that moves a job between a queue's keys: producers' pushes,
//! claims, acknowledgements, reschedules, promotions, lease renewal,
//! recovery of dead workers' jobs and hand-back.
//!
//! This module owns the Rust side of those moves. It must never move a job
//! except through one atomic script or pipeline (a job is always in exactly
//! one place), and never remove a job but in [`RedisQueue::ack`], which comes
//! after its row is committed.

use std::sync::Arc;

use redis::{ErrorKind, ScriptInvocation, ServerErrorKind};

use super::scripts::{
    ACK, CLAIM, HAND_BACK, HEARTBEAT, PROMOTE, REAP, RELEASE, RESCHEDULE, SORT_PENDING,
};
use super::Claimed;
use super::{QueueError, RedisQueue, Reschedule, MAX_SCRIPT_BATCH};
use crate::job::{ClaimedJob, JobHandle};

impl RedisQueue {
    /// Claims up to `max` jobs of `queue` for `worker`, renewing its lease to `lease_deadline_ms`.
    pub async fn claim(
        &self,
        queue: &Arc<str>,
        worker: &str,
        max: usize,
        lease_deadline_ms: i64,
    ) -> Result<Claimed, QueueError> {
        let nonce = claim_nonce();
        let reply: Vec<Vec<u8>> = self
            .claim_invocation(queue, worker, max, &nonce, lease_deadline_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        parse_claim(queue, reply)
    }

    /// Claims from several queues in one round trip: the claim script once
    /// per queue (each on its own hash tag, so this works on Redis Cluster),
    /// sent as one pipeline. `asks` are (queue, most jobs to take); the
    /// answers come in the same order.
    pub async fn claim_many(
        &self,
        asks: &[(Arc<str>, usize)],
        worker: &str,
        lease_deadline_ms: i64,
    ) -> Result<Vec<Claimed>, QueueError> {
        if let [(queue, max)] = asks {
            return Ok(vec![
                self.claim(queue, worker, *max, lease_deadline_ms).await?,
            ]);
        }
        if self.is_cluster() {
            // Queues live on different masters, and a script unknown to one
            // of them must not send the claims of the others twice: one
            // claim per queue, all at once, each loading its script itself.
            let claims = asks
                .iter()
                .map(|(queue, max)| self.claim(queue, worker, *max, lease_deadline_ms));
            return futures::future::join_all(claims)
                .await
                .into_iter()
                .collect();
        }
        let nonces: Vec<String> = asks.iter().map(|_| claim_nonce()).collect();
        let invocations: Vec<ScriptInvocation<'_>> = asks
            .iter()
            .zip(&nonces)
            .map(|((queue, max), nonce)| {
                self.claim_invocation(queue, worker, *max, nonce, lease_deadline_ms)
            })
            .collect();
        let mut pipe = redis::pipe();
        for invocation in &invocations {
            pipe.invoke_script(invocation);
        }
        let mut conn = self.conn.clone();
        let replies: Vec<Vec<Vec<u8>>> = match pipe.query_async(&mut conn).await {
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                // Not run anywhere (the script is the same for every queue):
                // load it and send the round again.
                CLAIM.prepare_invoke().load_async(&mut conn).await?;
                pipe.query_async(&mut conn).await?
            }
            other => other?,
        };
        asks.iter()
            .zip(replies)
            .map(|((queue, _), reply)| parse_claim(queue, reply))
            .collect()
    }

    fn claim_invocation<'a>(
        &self,
        queue: &str,
        worker: &str,
        max: usize,
        nonce: &str,
        lease_deadline_ms: i64,
    ) -> ScriptInvocation<'a> {
        let mut invocation = CLAIM.prepare_invoke();
        self.claim_keys_and_args(
            &mut invocation,
            queue,
            worker,
            max,
            nonce,
            lease_deadline_ms,
        );
        invocation
    }

    /// The KEYS and ARGV every claim script starts with (the limited claim
    /// adds its own after them).
    pub(super) fn claim_keys_and_args(
        &self,
        invocation: &mut ScriptInvocation<'_>,
        queue: &str,
        worker: &str,
        max: usize,
        nonce: &str,
        lease_deadline_ms: i64,
    ) {
        let keys = self.keys(queue);
        invocation
            .key(&keys.pending)
            .key(&keys.ready)
            .key(&keys.jobs)
            .key(&keys.attempts)
            .key(&keys.errors)
            .key(keys.wip(worker))
            .key(&keys.workers)
            .key(&keys.ids)
            .key(&keys.paused)
            .key(&keys.cancel)
            .key(&keys.cancelled)
            .key(self.unique_registry(queue))
            .key(&keys.ring)
            .key(&keys.keyed)
            .arg(max)
            .arg(nonce)
            .arg(worker)
            .arg(lease_deadline_ms)
            .arg(self.unique_prefix(queue))
            .arg(crate::job::now_ms())
            .arg(&keys.key_prefix)
            .arg(SORT_BATCH);
    }

    /// Sorts one more batch of `queue`'s `pending` messages into its key
    /// lists (see [`Claimed::unsorted_backlog`]); returns how many messages
    /// are still left to sort (0 when done, paused, or no key is in play).
    pub async fn sort_pending(&self, queue: &str, worker: &str) -> Result<u64, QueueError> {
        let nonce = claim_nonce();
        let mut invocation = SORT_PENDING.prepare_invoke();
        self.claim_keys_and_args(&mut invocation, queue, worker, 0, &nonce, 0);
        invocation.arg(BACKLOG_SORT_BATCH);
        Ok(invocation.invoke_async(&mut self.conn.clone()).await?)
    }

    /// Removes committed jobs from `worker`'s hold. Returns how many were
    /// still held; the rest had been recovered by another worker (lease lost).
    pub async fn ack(
        &self,
        queue: &str,
        worker: &str,
        tokens: &[String],
    ) -> Result<usize, QueueError> {
        if tokens.is_empty() {
            return Ok(0);
        }
        let keys = self.keys(queue);
        let mut acked = 0;
        for chunk in tokens.chunks(MAX_SCRIPT_BATCH) {
            let mut invocation = ACK.prepare_invoke();
            invocation
                .key(keys.wip(worker))
                .key(&keys.attempts)
                .key(&keys.errors)
                .key(&keys.ids)
                .key(&keys.accepted)
                .key(&keys.cancel)
                .key(keys.signal(worker))
                .key(self.unique_registry(queue))
                .key(&keys.slotted)
                .key(&keys.freed);
            for token in chunk {
                invocation.arg(token);
            }
            let held: usize = invocation.invoke_async(&mut self.conn.clone()).await?;
            acked += held;
        }
        Ok(acked)
    }

    /// Moves jobs from `worker`'s hold to `scheduled`. Returns how many moved.
    pub async fn reschedule(
        &self,
        queue: &str,
        worker: &str,
        jobs: &[Reschedule],
    ) -> Result<usize, QueueError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let keys = self.keys(queue);
        let mut invocation = RESCHEDULE.prepare_invoke();
        invocation
            .key(keys.wip(worker))
            .key(&keys.jobs)
            .key(&keys.scheduled)
            .key(&keys.attempts)
            .key(&keys.errors)
            .key(&keys.cancel)
            .key(&keys.cancelled)
            .key(keys.signal(worker))
            .key(&keys.slotted)
            .key(&keys.freed);
        for job in jobs {
            let (attempts, error) = match &job.failure {
                Some((attempts, error)) => (attempts.to_string(), error.as_str()),
                None => (String::new(), ""),
            };
            invocation
                .arg(&job.token)
                .arg(job.due_ms)
                .arg(attempts)
                .arg(error);
        }
        Ok(invocation.invoke_async(&mut self.conn.clone()).await?)
    }

    /// Moves up to `limit` jobs due by `now_ms` from `scheduled` to `ready`.
    pub async fn promote_due(
        &self,
        queue: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<usize, QueueError> {
        let keys = self.keys(queue);
        Ok(PROMOTE
            .key(&keys.scheduled)
            .key(&keys.ready)
            .arg(now_ms)
            .arg(limit)
            .invoke_async(&mut self.conn.clone())
            .await?)
    }

    /// Renews `worker`'s lease on `queue`. `Ok(false)`: the lease had been
    /// lost and its jobs recovered by another worker.
    pub async fn heartbeat(
        &self,
        queue: &str,
        worker: &str,
        lease_deadline_ms: i64,
    ) -> Result<bool, QueueError> {
        let keys = self.keys(queue);
        let had: i64 = HEARTBEAT
            .key(&keys.workers)
            .arg(worker)
            .arg(lease_deadline_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(had == 1)
    }

    /// Recovers the jobs of workers whose lease ended before `now_ms`.
    /// Returns (worker, jobs recovered) for each.
    pub async fn reap_expired(
        &self,
        queue: &str,
        now_ms: i64,
    ) -> Result<Vec<(String, u64)>, QueueError> {
        let keys = self.keys(queue);
        let reply: Vec<String> = REAP
            .key(&keys.workers)
            .key(&keys.jobs)
            .key(&keys.attempts)
            .key(&keys.errors)
            .key(&keys.ready)
            .key(&keys.cancel)
            .key(&keys.cancelled)
            .key(&keys.slotted)
            .key(&keys.freed)
            .arg(now_ms)
            .arg(&keys.wip_prefix)
            .arg(&keys.signal_prefix)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(reply
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), pair[1].parse().unwrap_or(0)))
            .collect())
    }

    /// Claim tokens `worker` holds on `queue` according to Redis.
    pub async fn held_tokens(&self, queue: &str, worker: &str) -> Result<Vec<String>, QueueError> {
        let keys = self.keys(queue);
        let tokens: Vec<String> = redis::cmd("HKEYS")
            .arg(keys.wip(worker))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(tokens)
    }

    /// Returns `tokens` held by `worker` to the front of `queue` without
    /// counting an attempt. Returns how many were still held.
    pub async fn release(
        &self,
        queue: &str,
        worker: &str,
        tokens: &[String],
    ) -> Result<usize, QueueError> {
        if tokens.is_empty() {
            return Ok(0);
        }
        let keys = self.keys(queue);
        let mut invocation = RELEASE.prepare_invoke();
        invocation
            .key(keys.wip(worker))
            .key(&keys.jobs)
            .key(&keys.ready)
            .key(&keys.cancel)
            .key(&keys.cancelled)
            .key(keys.signal(worker))
            .key(&keys.slotted)
            .key(&keys.freed);
        for token in tokens {
            invocation.arg(token);
        }
        Ok(invocation.invoke_async(&mut self.conn.clone()).await?)
    }

    /// Hands all of `worker`'s jobs on `queue` back, first in line. Returns how many.
    pub async fn hand_back(&self, queue: &str, worker: &str) -> Result<usize, QueueError> {
        let keys = self.keys(queue);
        Ok(HAND_BACK
            .key(keys.wip(worker))
            .key(&keys.jobs)
            .key(&keys.ready)
            .key(&keys.workers)
            .key(&keys.cancel)
            .key(&keys.cancelled)
            .key(keys.signal(worker))
            .key(&keys.slotted)
            .key(&keys.freed)
            .arg(worker)
            .invoke_async(&mut self.conn.clone())
            .await?)
    }

    /// Enqueues jobs taken by the HTTP API: pushes them and records them as
    /// accepted, atomically, so their status reads `queued` at once.
    /// `jobs` are (id, message) pairs.
    pub async fn accept(&self, queue: &str, jobs: &[(String, Vec<u8>)]) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let keys = self.keys(queue);
        let now = crate::job::now_ms();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (id, message) in jobs {
            pipe.hset(&keys.accepted, id, now).ignore();
            pipe.lpush(&keys.pending, message).ignore();
        }
        let () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Pushes messages onto `queue` as any producer would (`LPUSH`).
    pub async fn push(&self, queue: &str, messages: &[Vec<u8>]) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        let keys = self.keys(queue);
        let _: () = redis::cmd("LPUSH")
            .arg(&keys.pending)
            .arg(messages)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

/// Most `pending` messages one script call (a claim, or a sort of the
/// backlog) sorts into key lists: enough to keep up with any claim rate,
/// few enough that one call holds Redis for a few milliseconds only.
const SORT_BATCH: usize = 5000;

/// Most messages one call that sorts a backlog (and claims nothing) sorts:
/// a few milliseconds of Redis time, so a long backlog is sorted in a few
/// round trips while other clients' commands wait at most that long.
const BACKLOG_SORT_BATCH: usize = 20_000;

/// Names the messages one claim takes from `pending` (`<nonce>-<i>`).
pub(super) fn claim_nonce() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Reads a claim script's reply: the lease and pause flags, the number of
/// cancelled jobs (they come first), then (token, message, attempts, error,
/// unique key holder).
pub(super) fn parse_claim(queue: &Arc<str>, reply: Vec<Vec<u8>>) -> Result<Claimed, QueueError> {
    let mut fields = reply.into_iter();
    let header = claim_header(&mut fields)?;
    Ok(Claimed {
        jobs: claimed_jobs(queue, header.cancelled, fields)?,
        lease_was_held: header.lease_was_held,
        paused: header.paused,
        unsorted_backlog: header.unsorted_backlog,
        held_back: None,
    })
}

/// The head of every claim's reply.
pub(super) struct ClaimHeader {
    pub(super) lease_was_held: bool,
    pub(super) paused: bool,
    /// How many of the jobs that follow are cancelled ones (they come first).
    pub(super) cancelled: usize,
    pub(super) unsorted_backlog: bool,
}

/// Reads the head of every claim's reply: lease flag, pause flag, cancelled
/// jobs, unsorted-backlog flag.
pub(super) fn claim_header(
    fields: &mut impl Iterator<Item = Vec<u8>>,
) -> Result<ClaimHeader, QueueError> {
    let lease_was_held = fields.next().is_some_and(|flag| flag == b"1");
    let paused = fields.next().is_some_and(|flag| flag == b"1");
    let cancelled = match fields.next() {
        Some(count) => utf8(count)?.parse().unwrap_or(0),
        None => 0,
    };
    let unsorted_backlog = fields.next().is_some_and(|flag| flag == b"1");
    Ok(ClaimHeader {
        lease_was_held,
        paused,
        cancelled,
        unsorted_backlog,
    })
}

/// The (token, message, attempts, last error, unique holder) groups of a
/// claim's reply, the first `cancelled` of them cancelled jobs.
pub(super) fn claimed_jobs(
    queue: &Arc<str>,
    mut cancelled: usize,
    mut fields: impl Iterator<Item = Vec<u8>>,
) -> Result<Vec<ClaimedJob>, QueueError> {
    let claimed_at_ms = crate::job::now_ms();
    let mut jobs = Vec::new();
    while let (Some(token), Some(raw), Some(attempts), Some(error), Some(holder)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) {
        jobs.push(ClaimedJob {
            handle: JobHandle {
                queue: queue.clone(),
                token: utf8(token)?,
            },
            raw,
            attempts_made: utf8(attempts)?.parse().unwrap_or(0),
            last_error: Some(utf8(error)?).filter(|e| !e.is_empty()),
            claimed_at_ms,
            cancelled: cancelled > 0,
            duplicate_of: Some(utf8(holder)?).filter(|h| !h.is_empty()),
        });
        cancelled = cancelled.saturating_sub(1);
    }
    Ok(jobs)
}

pub(super) fn utf8(bytes: Vec<u8>) -> Result<String, QueueError> {
    String::from_utf8(bytes).map_err(|e| QueueError::Protocol(e.to_string()))
}
