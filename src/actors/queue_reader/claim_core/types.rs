//! The claim core's vocabulary: its settings, its states, the events'
//! payloads and the effects it asks for.
//!
//! This module owns those types only. It must never hold logic beyond
//! trivial accessors: the decisions are in the parent module.

use std::collections::HashSet;
use std::sync::Arc;

use crate::backoff::Backoff;
use crate::job::{JobHandle, Outcome};
use crate::queue_order::QueueOrder;
use crate::redis_queue::Reschedule;

/// What the core needs to know of the settings.
#[derive(Debug, Clone)]
pub(crate) struct CoreConfig {
    /// Queues this worker consumes, in claim order.
    pub(crate) queues: Vec<Arc<str>>,
    /// Most jobs one claim of one queue takes.
    pub(crate) claim_batch: usize,
    /// How a round's capacity is split among the queues (weights or strict).
    pub(crate) order: QueueOrder,
    /// Most jobs held at once.
    pub(crate) max_in_flight: usize,
    /// Lease length, for the deadline a claim renews the lease to.
    pub(crate) lease_ms: u64,
    /// Pause between claims while Redis fails.
    pub(crate) claim_backoff: Backoff,
    /// Pause before owed acknowledgements and reschedules are tried again.
    pub(crate) write_retry_ms: u64,
    /// Pause before a queue whose blocking wait failed is claimed from again.
    pub(crate) wait_retry_ms: u64,
}

/// Whether results can be written. While a MySQL problem that needs a
/// person blocks the writer nothing commits, so nothing more is claimed:
/// the jobs wait in Redis, not in this worker's hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writes {
    Flowing,
    Blocked,
}

/// The claim side: at most one round (claim or reconcile) is out at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Round {
    /// Nothing out: a claim may start.
    Idle,
    /// A claim round is out; its reply may bring jobs Redis already moved.
    Claiming,
    /// A reconcile round is out (it takes the place of a claim).
    Reconciling,
    /// Redis failed: nothing starts before `until_ms`.
    BackingOff {
        /// When the next round may start.
        until_ms: i64,
    },
}

/// Whether this worker's idea of what it holds can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trust {
    /// It matches Redis.
    Trusted,
    /// A claim failed after it may have moved jobs (the reply was lost):
    /// Redis may hold jobs for this worker that it does not know of.
    ClaimUncertain,
    /// The lease had expired: another worker may have recovered held jobs.
    LeaseLost,
}

/// Where the worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Claiming as capacity allows.
    Running,
    /// Shutting down: claim nothing more; wait for held jobs to finish.
    Draining {
        /// When what is still held is handed back regardless.
        deadline_ms: i64,
    },
    /// Handing every held job back.
    HandingBack,
    /// Done.
    Stopped,
}

/// A claim round: claim from these queues at once, at most `count` each,
/// and at most `budget` jobs in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimRequest {
    /// (queue, most jobs to take from it).
    pub(crate) asks: Vec<(Arc<str>, usize)>,
    /// The order the claimed jobs should start in, as indexes into `asks`
    /// (the weighted rotation); empty when there is one queue.
    pub(crate) start_order: Vec<usize>,
    /// Most jobs the whole round may take (the free capacity).
    pub(crate) budget: usize,
    /// The lease deadline each claim renews.
    pub(crate) lease_deadline_ms: i64,
}

/// What one queue's claim in a round brought.
#[derive(Debug, Clone)]
pub(crate) struct QueueClaim {
    /// The queue.
    pub(crate) queue: Arc<str>,
    /// How many jobs were asked for.
    pub(crate) asked: usize,
    /// The jobs claimed.
    pub(crate) handles: Vec<JobHandle>,
    /// Whether the lease was held before this claim.
    pub(crate) lease_was_held: bool,
    /// The queue is paused: nothing but cancelled jobs was taken.
    pub(crate) paused: bool,
    /// When a limiter held jobs back: after how long they may pass.
    pub(crate) held_back_for_ms: Option<u64>,
    /// A full concurrency limit held jobs back: a released slot may let
    /// them pass sooner.
    pub(crate) slot_full: bool,
}

/// What a reconcile round found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reconciled {
    /// Jobs in `wip` unknown here, handed back.
    pub(crate) released: usize,
    /// Jobs known here but gone from `wip` (recovered elsewhere).
    pub(crate) gone: Vec<JobHandle>,
}

/// Something worth a log line or a counter; the actor decides how to say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    /// The lease on a queue had expired while jobs were held.
    LeaseLost(Arc<str>),
    /// Claiming works again after failures.
    RedisBack,
    /// A claim or reconcile failed; claiming pauses for `delay_ms`.
    ClaimFailed {
        /// The pause.
        delay_ms: u64,
        /// Jobs held meanwhile (safe in Redis).
        held: usize,
        /// What failed.
        error: String,
    },
    /// Jobs claimed by a lost reply were handed back.
    Released(usize),
    /// Held jobs were recovered by another worker and are forgotten.
    Forgotten(usize),
    /// Outcomes of jobs no longer held were discarded.
    Fenced(usize),
    /// Retries sent back to Redis.
    Retried(usize),
    /// Acknowledgements or reschedules of jobs no longer held.
    NotHeld(usize),
    /// Jobs acknowledged.
    Acked(usize),
    /// Writing acknowledgements or reschedules failed; retried at `retry_ms`.
    WriteFailed {
        /// The pause before the next try.
        retry_ms: u64,
        /// What failed.
        error: String,
    },
}

/// What the actor must do.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Run a claim round.
    Claim(ClaimRequest),
    /// Compare the held tokens with Redis: hand back what Redis holds and
    /// this list lacks, report what it lacks.
    Reconcile(Vec<(Arc<str>, HashSet<String>)>),
    /// Block on this queue until it has work, then send `WaitEnded`.
    WaitForJobs(Arc<str>),
    /// Block until a job of this queue releases limiter slots (or the
    /// recheck time passes), then call `on_slot_released`.
    WaitForSlot(Arc<str>),
    /// Final outcomes for the DbWriter.
    Record(Vec<Outcome>),
    /// Acknowledge and reschedule in Redis, then send `Written`.
    Write {
        /// Jobs whose rows are committed.
        acks: Vec<JobHandle>,
        /// Retries and deferrals.
        reschedules: Vec<(Arc<str>, Reschedule)>,
    },
    /// Send a `Tick` at this time.
    TickAt(i64),
    /// Hand every held job back (the jobs waiting in the feed go too), then
    /// send `HandedBack`.
    HandBack,
    /// This queue was paused: take its jobs that have not started out of the
    /// feed and report them as not run (they go back to Redis).
    HoldBack(Arc<str>),
    /// Say something.
    Report(Report),
}
