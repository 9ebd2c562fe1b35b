//! The QueueReader's round trips: each turns one effect of the claim core
//! into calls on the queue side and its reply into the next event.
//!
//! This module owns the async plumbing only. It must never decide: every
//! reply, success or error, goes back to the core as an event.

use std::collections::HashSet;
use std::sync::Arc;

use actix::prelude::*;

use super::claim_core::{ClaimRequest, QueueClaim, Reconciled};
use super::ledger::{hand_back_all, write_to_redis};
use super::QueueReader;
use crate::job::{now_ms, ClaimedJob, JobHandle};
use crate::job_queue::JobQueue;
use crate::limiters::waiting::HeldBackBy;
use crate::queue_order::interleave;
use crate::redis_queue::{QueueError, Reschedule, LIMIT_RECHECK_MS};

/// A claim round's replies: per queue, then the error that ended it early.
struct RoundReply {
    claims: Vec<QueueClaim>,
    jobs: Vec<ClaimedJob>,
    error: Option<QueueError>,
    /// (queue, jobs held back per limiter) of each claim.
    limited: Vec<(Arc<str>, HeldBackBy)>,
    /// Queues whose claim left messages to sort into per-key lists.
    unsorted: Vec<Arc<str>>,
}

/// Claims from every queue asked at once (one round trip), never more than
/// the budget in all; the jobs come back in the request's start order.
async fn run_claim_round(queue_side: impl JobQueue, request: ClaimRequest) -> RoundReply {
    let mut budget = request.budget;
    let asks: Vec<(Arc<str>, usize)> = request
        .asks
        .into_iter()
        .map(|(queue, count)| {
            let asked = count.min(budget);
            budget -= asked;
            (queue, asked)
        })
        .filter(|(_, asked)| *asked > 0)
        .collect();
    let claimed = match queue_side
        .claim_many(&asks, request.lease_deadline_ms)
        .await
    {
        Ok(claimed) => claimed,
        Err(error) => {
            return RoundReply {
                claims: Vec::new(),
                jobs: Vec::new(),
                error: Some(error),
                limited: Vec::new(),
                unsorted: Vec::new(),
            }
        }
    };
    let mut claims = Vec::with_capacity(asks.len());
    let mut per_queue = Vec::with_capacity(asks.len());
    let mut limited = Vec::with_capacity(asks.len());
    let mut unsorted = Vec::new();
    for ((queue, asked), claimed) in asks.into_iter().zip(claimed) {
        if claimed.unsorted_backlog {
            unsorted.push(queue.clone());
        }
        let held_back = claimed.held_back.as_ref();
        limited.push((
            queue.clone(),
            held_back.map(|h| h.by.clone()).unwrap_or_default(),
        ));
        claims.push(QueueClaim {
            queue,
            asked,
            handles: claimed.jobs.iter().map(|job| job.handle.clone()).collect(),
            lease_was_held: claimed.lease_was_held,
            paused: claimed.paused,
            held_back_for_ms: held_back.map(|h| h.retry_in_ms),
            slot_full: held_back.is_some_and(|h| h.slot_full),
        });
        per_queue.push(claimed.jobs);
    }
    RoundReply {
        claims,
        jobs: interleave(&request.start_order, per_queue),
        error: None,
        limited,
        unsorted,
    }
}

/// Sorts `queue`'s backlog into its per-key lists, one batch per call, until
/// nothing is left to sort; returns the batches sorted.
async fn run_sort_backlog(queue_side: impl JobQueue, queue: Arc<str>) -> Result<u64, QueueError> {
    let mut batches = 0;
    loop {
        let left = queue_side.sort_pending(&queue).await?;
        batches += 1;
        if left == 0 {
            return Ok(batches);
        }
    }
}

/// Makes this worker's view of what it holds agree with the queue side:
/// - held there but unknown here: claimed by a request whose reply was lost;
///   handed back (no attempt counted);
/// - known here but gone there: recovered by another worker after this
///   worker's lease expired (or already acknowledged); reported as gone.
async fn run_reconcile(
    queue_side: impl JobQueue,
    known: Vec<(Arc<str>, HashSet<String>)>,
) -> Result<Reconciled, QueueError> {
    let mut found = Reconciled::default();
    for (queue, known) in known {
        let held: HashSet<String> = queue_side.held_tokens(&queue).await?.into_iter().collect();
        let unknown: Vec<String> = held.difference(&known).cloned().collect();
        found.released += queue_side.release(&queue, &unknown).await?;
        found
            .gone
            .extend(known.difference(&held).map(|token| JobHandle {
                queue: queue.clone(),
                token: token.clone(),
            }));
    }
    Ok(found)
}

impl<Q: JobQueue> QueueReader<Q> {
    pub(super) fn claim_round(&mut self, request: ClaimRequest, ctx: &mut Context<Self>) {
        let round = run_claim_round(self.queue_side.clone(), request);
        ctx.spawn(round.into_actor(self).map(|reply, act, ctx| {
            for (queue, by) in &reply.limited {
                act.metrics.limited.record(queue, by);
            }
            for queue in reply.unsorted {
                act.sort_backlog(queue, ctx);
            }
            let effects = act.core.on_claimed(now_ms(), reply.claims, reply.error);
            act.dispatch(reply.jobs, ctx);
            act.apply(effects, ctx);
        }));
    }

    /// Sorts the rest of `queue`'s backlog into its per-key lists right away,
    /// beside the claims (one such loop per queue): a job of a light key
    /// pushed behind a long backlog then joins the round-robin as soon as
    /// Redis has looked at the messages ahead of it, not one claim per sort
    /// batch later. Sorting takes no job, so stopping at any point is safe;
    /// after an error the next claim that finds a backlog starts it again.
    fn sort_backlog(&mut self, queue: Arc<str>, ctx: &mut Context<Self>) {
        if !self.sorting.insert(queue.clone()) {
            return;
        }
        let started = std::time::Instant::now();
        let sorting = run_sort_backlog(self.queue_side.clone(), queue.clone());
        ctx.spawn(sorting.into_actor(self).map(move |result, act, _| {
            act.sorting.remove(&queue);
            match result {
                Ok(batches) => log::debug!(target: "conveyor::queue_reader", "sorted the backlog of queue {queue} by key: {batches} batches in {} ms", started.elapsed().as_millis()),
                Err(error) => log::warn!(target: "conveyor::queue_reader", "sorting the backlog of queue {queue} by key failed: {error}; the next claim sorts on"),
            }
        }));
    }

    pub(super) fn reconcile(
        &mut self,
        known: Vec<(Arc<str>, HashSet<String>)>,
        ctx: &mut Context<Self>,
    ) {
        let round = run_reconcile(self.queue_side.clone(), known);
        ctx.spawn(round.into_actor(self).map(|result, act, ctx| {
            let effects = act.core.on_reconciled(now_ms(), result);
            act.apply(effects, ctx);
        }));
    }

    /// Blocks until `queue` may have work (or `queues.idle_wait_ms` passes).
    pub(super) fn wait_for_jobs(&mut self, queue: Arc<str>, ctx: &mut Context<Self>) {
        let queue_side = self.queue_side.clone();
        let timeout = self.idle_wait;
        let waited = queue.clone();
        let wait = async move { queue_side.wait_for_jobs(&waited, timeout).await };
        ctx.spawn(wait.into_actor(self).map(move |result, act, ctx| {
            if let Err(error) = &result {
                // The claim path reports Redis trouble and backs off.
                log::debug!(target: "conveyor::queue_reader", "waiting on queue {queue} failed: {error}");
            }
            let effects = act.core.on_wait_ended(now_ms(), queue, result.is_ok());
            act.apply(effects, ctx);
        }));
    }

    /// Blocks until a job of `queue` releases limiter slots (or the recheck
    /// time passes).
    pub(super) fn wait_for_slot(&mut self, queue: Arc<str>, ctx: &mut Context<Self>) {
        let queue_side = self.queue_side.clone();
        let timeout = std::time::Duration::from_millis(LIMIT_RECHECK_MS);
        let waited = queue.clone();
        let wait = async move { queue_side.wait_for_slot(&waited, timeout).await };
        ctx.spawn(wait.into_actor(self).map(move |result, act, ctx| {
            if let Err(error) = &result {
                log::debug!(target: "conveyor::queue_reader", "waiting for a limiter slot on queue {queue} failed: {error}");
            }
            let effects = act.core.on_slot_released(now_ms(), queue);
            act.apply(effects, ctx);
        }));
    }

    /// Sends owed acknowledgements and reschedules.
    pub(super) fn write(
        &mut self,
        acks: Vec<JobHandle>,
        reschedules: Vec<(Arc<str>, Reschedule)>,
        ctx: &mut Context<Self>,
    ) {
        let queue_side = self.queue_side.clone();
        let write = async move { write_to_redis(&queue_side, acks, reschedules).await };
        ctx.spawn(write.into_actor(self).map(|report, act, ctx| {
            let effects = act.core.on_written(now_ms(), report);
            act.apply(effects, ctx);
        }));
    }

    /// Hands every held job back (those waiting in the feed too) and answers
    /// the shutdown.
    pub(super) fn hand_back(&mut self, ctx: &mut Context<Self>) {
        self.feed.clear();
        let queue_side = self.queue_side.clone();
        let queues = self.queues.clone();
        let hand_back = async move { hand_back_all(&queue_side, &queues).await };
        ctx.spawn(hand_back.into_actor(self).map(|handed_back, act, _| {
            act.core.on_handed_back();
            for reply in act.shutdown_replies.drain(..) {
                let _ = reply.send(handed_back);
            }
        }));
    }

    /// Renews this worker's lease on every queue; a lease found expired is
    /// an event for the core.
    pub(super) fn renew_lease(&mut self, ctx: &mut Context<Self>) {
        let queue_side = self.queue_side.clone();
        let queues = self.queues.clone();
        let deadline = self.lease_deadline();
        let beat = async move {
            let mut lost = Vec::new();
            for queue in queues {
                match queue_side.renew_lease(&queue, deadline).await {
                    Ok(true) => {}
                    Ok(false) => lost.push(queue),
                    Err(error) => {
                        log::warn!(target: "conveyor::queue_reader", "lease renewal failed: {error}");
                        break;
                    }
                }
            }
            lost
        };
        ctx.spawn(beat.into_actor(self).map(|lost, act, ctx| {
            for queue in lost {
                let effects = act.core.on_lease_lost(now_ms(), queue);
                act.apply(effects, ctx);
            }
        }));
    }
}
