//! The QueueReader's claiming: claim rounds up to the free capacity, the
//! blocking wait on an empty queue, backoff while Redis fails, and the
//! reconcile that hands back jobs claimed by a request whose reply was lost.
//!
//! It must never claim while the reader is quiet (shutting down), paused
//! after a failure, or at its in-flight limit.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::{ClaimRound, QueueReader, CLAIM_RETRY_BASE, MAX_REDIS_BACKOFF};
use crate::redis_queue::{wait_for_message, QueueError};

impl QueueReader {
    /// Starts a claim round over every queue not known to be empty.
    pub(super) fn claim(&mut self, ctx: &mut Context<Self>) {
        if self.quiet || self.claiming || self.paused || self.room() == 0 {
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
        if self.claim_uncertain {
            self.reconcile(ctx);
            return;
        }
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
                if let Ok(jobs) = &claimed {
                    room -= jobs.len();
                }
                results.push((queue, asked, claimed.map_err(|e| e.to_string())));
            }
            results
        };
        ctx.spawn(round.into_actor(self).map(|results, act, ctx| {
            act.claiming = false;
            act.finish_claim_round(results, ctx);
        }));
    }

    fn finish_claim_round(&mut self, results: ClaimRound, ctx: &mut Context<Self>) {
        let mut claimed_any = false;
        for (queue, asked, result) in results {
            match result {
                Ok(jobs) => {
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

    /// After an uncertain claim: jobs in this worker's `wip` that it does not
    /// know were claimed by a request whose reply was lost. Hand them back
    /// (no attempt counted) so they do not sit there until this worker dies.
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
            for (queue, known) in known {
                let unknown: Vec<String> = redis
                    .held_tokens(&queue, &worker)
                    .await?
                    .into_iter()
                    .filter(|token| !known.contains(token))
                    .collect();
                released += redis.release(&queue, &worker, &unknown).await?;
            }
            Ok::<usize, QueueError>(released)
        };
        ctx.spawn(round.into_actor(self).map(|result, act, ctx| {
            act.claiming = false;
            match result {
                Ok(released) => {
                    act.claim_uncertain = false;
                    if released > 0 {
                        log::warn!(target: "conveyor::queue_reader", "{released} jobs claimed while the connection failed were handed back to their queue");
                    }
                    act.claim(ctx);
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
