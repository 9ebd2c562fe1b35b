//! The QueueReader's claiming: claim rounds up to the free capacity, the
//! blocking wait on an empty queue, backoff while Redis fails, and the
//! reconcile that hands back jobs claimed by a request whose reply was lost
//! and forgets jobs recovered by another worker after a lost lease.
//!
//! It must never claim while the reader is quiet (shutting down), paused
//! after a failure, or at its in-flight limit.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::{ClaimRound, QueueReader, CLAIM_RETRY_BASE, MAX_REDIS_BACKOFF};
use crate::job::JobHandle;
use crate::redis_queue::{wait_for_message, Claimed, QueueError};

impl QueueReader {
    /// Starts a claim round over every queue not known to be empty.
    pub(super) fn claim(&mut self, ctx: &mut Context<Self>) {
        if self.claiming || self.paused {
            return;
        }
        if self.claim_uncertain || self.lease_lost {
            self.claiming = true;
            self.reconcile(ctx);
            return;
        }
        // While MySQL needs a person nothing commits: claim nothing more,
        // so the jobs wait in Redis rather than in this worker's hold.
        if self.quiet || self.room() == 0 || self.metrics.blocker.is_blocked() {
            return;
        }
        let active: Vec<Arc<str>> = self
            .queues
            .iter()
            .filter(|q| !self.idle.contains(*q))
            .cloned()
            .collect();
        if active.is_empty() {
            return;
        }
        self.claiming = true;
        let redis = self.redis.clone();
        let worker = self.worker.clone();
        let mut room = self.room();
        let batch = self.settings.queues.claim_batch;
        let deadline = self.lease_deadline();
        let round = async move {
            let mut results: ClaimRound = Vec::with_capacity(active.len());
            for queue in active {
                let asked = room.min(batch);
                if asked == 0 {
                    break;
                }
                let claimed = redis.claim(&queue, &worker, asked, deadline).await;
                if let Ok(claimed) = &claimed {
                    room -= claimed.jobs.len();
                }
                results.push((queue, asked, claimed.map_err(|e| e.to_string())));
            }
            results
        };
        ctx.spawn(round.into_actor(self).map(|results, act, ctx| {
            act.claiming = false;
            act.finish_claim_round(results, ctx);
            act.notify_if_drained();
        }));
    }

    fn finish_claim_round(&mut self, results: ClaimRound, ctx: &mut Context<Self>) {
        let mut claimed_any = false;
        for (queue, asked, result) in results {
            match result {
                Ok(Claimed {
                    jobs,
                    lease_was_held,
                }) => {
                    if !lease_was_held && !self.held.is_empty() {
                        log::error!(target: "conveyor::queue_reader", "lease on queue {queue} had expired: another worker may have recovered this worker's jobs; checking which are still held");
                        self.lease_lost = true;
                    }
                    if self.claim_failures > 0 {
                        log::info!(target: "conveyor::queue_reader", "redis is reachable again; claiming resumed");
                        self.claim_failures = 0;
                    }
                    if jobs.len() < asked {
                        self.idle.insert(queue.clone());
                        self.wait_for_jobs(queue, ctx);
                    }
                    claimed_any |= !jobs.is_empty();
                    self.dispatch(jobs, ctx);
                }
                Err(error) => {
                    self.redis_failed(&error, ctx);
                    return;
                }
            }
        }
        if claimed_any {
            self.claim(ctx);
        }
    }

    /// Makes this worker's view of what it holds agree with its `wip` in
    /// Redis, after an uncertain claim or a lost lease. Runs in place of a
    /// claim round, so no claim result can land in between.
    /// - In `wip` but unknown here: claimed by a request whose reply was lost;
    ///   handed back (no attempt counted) instead of sitting there until this
    ///   worker dies.
    /// - Known here but gone from `wip`: recovered by another worker after
    ///   this worker's lease expired (or already acknowledged); forgotten, so
    ///   their outcomes still to come are discarded (fencing).
    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let redis = self.redis.clone();
        let worker = self.worker.clone();
        let known: Vec<(Arc<str>, HashSet<String>)> = self
            .queues
            .iter()
            .map(|q| (q.clone(), self.held.tokens_of(q)))
            .collect();
        let round = async move {
            let mut released = 0;
            let mut gone = Vec::new();
            for (queue, known) in known {
                let in_redis: HashSet<String> = redis
                    .held_tokens(&queue, &worker)
                    .await?
                    .into_iter()
                    .collect();
                let unknown: Vec<String> = in_redis.difference(&known).cloned().collect();
                released += redis.release(&queue, &worker, &unknown).await?;
                gone.extend(known.difference(&in_redis).map(|token| JobHandle {
                    queue: queue.clone(),
                    token: token.clone(),
                }));
            }
            Ok::<_, QueueError>((released, gone))
        };
        ctx.spawn(round.into_actor(self).map(|result, act, ctx| {
            act.claiming = false;
            match result {
                Ok((released, gone)) => {
                    act.claim_uncertain = false;
                    act.lease_lost = false;
                    if released > 0 {
                        log::warn!(target: "conveyor::queue_reader", "{released} jobs claimed while the connection failed were handed back to their queue");
                    }
                    if !gone.is_empty() {
                        log::error!(target: "conveyor::queue_reader", "{} jobs this worker held were recovered by another worker (its lease had expired); their results here will be discarded", gone.len());
                        for handle in &gone {
                            act.held.remove(handle);
                        }
                        act.publish_in_flight();
                    }
                    act.after_capacity_freed(ctx);
                }
                Err(error) => act.redis_failed(&error.to_string(), ctx),
            }
        }));
    }

    /// Pauses claiming after a Redis error, doubling the pause each time.
    fn redis_failed(&mut self, error: &str, ctx: &mut Context<Self>) {
        self.claim_uncertain = true;
        self.claim_failures += 1;
        let doublings = self.claim_failures.min(16) - 1;
        let delay = (CLAIM_RETRY_BASE * 2u32.pow(doublings)).min(MAX_REDIS_BACKOFF);
        log::warn!(
            target: "conveyor::queue_reader",
            "claiming failed, retrying in {} ms ({} jobs in flight are safe): {error}",
            delay.as_millis(),
            self.held.len()
        );
        self.paused = true;
        ctx.run_later(delay, |act, ctx| {
            act.paused = false;
            act.claim(ctx);
        });
    }

    /// Blocks on `queue`'s own connection until a message arrives (or
    /// `queues.idle_wait_ms` passes), then claims again.
    fn wait_for_jobs(&mut self, queue: Arc<str>, ctx: &mut Context<Self>) {
        if self.quiet || !self.waiting.insert(queue.clone()) {
            return;
        }
        let spare = self.waiter_conns.remove(&queue);
        let redis = self.redis.clone();
        let keys = redis.keys(&queue);
        let timeout = Duration::from_millis(self.settings.queues.idle_wait_ms);
        let wait = async move {
            let mut conn = match spare {
                Some(conn) => conn,
                None => redis.waiter().await?,
            };
            wait_for_message(&mut conn, &keys, timeout).await?;
            Ok::<_, QueueError>(conn)
        };
        ctx.spawn(wait.into_actor(self).map(move |result, act, ctx| {
            act.waiting.remove(&queue);
            match result {
                Ok(conn) => {
                    act.waiter_conns.insert(queue.clone(), conn);
                    act.idle.remove(&queue);
                    act.claim(ctx);
                }
                Err(error) => {
                    log::debug!(target: "conveyor::queue_reader", "waiting on queue {queue} failed: {error}");
                    // The claim path reports Redis trouble and backs off; look again soon.
                    ctx.run_later(MAX_REDIS_BACKOFF / 5, move |act, ctx| {
                        act.idle.remove(&queue);
                        act.claim(ctx);
                    });
                }
            }
        }));
    }
}
