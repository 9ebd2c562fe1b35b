//! QueueReader: the actor that carries out the claim core's decisions.
//!
//! It owns this worker's side of the job lifecycle in Redis as I/O: it turns
//! the [`claim_core::ClaimCore`]'s effects into calls on the queue side (claim
//! rounds, reconcile, blocking waits, acknowledgements and reschedules, the
//! hand-back), into `Record` messages for the DbWriter and into job-feed
//! pushes for the processors, and turns their replies, the processors'
//! outcomes, `Committed`, `Wake`, heartbeats and `Shutdown` back into events
//! for the core.
//!
//! It must never decide anything itself (what to claim, when to retry, what
//! to acknowledge is the core's call), never acknowledge a job before its
//! row is committed, and never drop an acknowledgement or reschedule that
//! failed (the core keeps it owed until Redis takes it).

mod claim_core;
mod io;
mod ledger;
#[cfg(test)]
mod wiring_tests;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;

use self::claim_core::{ClaimCore, CoreConfig, Effect, Lifecycle, Report, Writes};
use super::db_writer::Record;
use super::job_feed::JobFeed;
use super::processor::{Drain, Processor, ProcessorPool};
use crate::backoff::Backoff;
use crate::config::Settings;
use crate::job::{now_ms, ClaimedJob, FinalStatus, JobHandle, Outcome};
use crate::job_queue::{JobQueue, RedisJobQueue};
use crate::metrics::Metrics;
use crate::queue_order::QueueOrder;

/// Pause before failed acknowledgements and reschedules are tried again (ms).
const REDIS_RETRY_MS: u64 = 250;
/// First and longest pause between claim rounds while Redis fails (ms).
const CLAIM_RETRY_BASE_MS: u64 = 100;
const CLAIM_RETRY_MAX_MS: u64 = 5000;
/// Pause before a queue whose blocking wait failed is looked at again (ms).
const WAIT_RETRY_MS: u64 = 1000;

/// Something may be waiting (a retry came due, jobs were recovered): claim now.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Wake;

/// Sent by the DbWriter: these jobs' rows are committed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Committed(pub Vec<JobHandle>);

/// Sent by the DbWriter when a MySQL problem that needs a person starts
/// (`true`: stop claiming) or ends (`false`: claim again).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct WritesBlocked(pub(crate) bool);

/// The queues paused now (from the QueueWatch): claim nothing from them,
/// and hand back their jobs that have not started.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct PausedQueues(pub HashSet<Arc<str>>);

/// Stop claiming, drain in-flight jobs for up to `timeout`, then hand back
/// the rest. Answers with the number of jobs handed back.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub(crate) struct Shutdown {
    /// How long in-flight jobs may still finish.
    pub timeout: Duration,
}

/// The claim core's actor; see the module documentation.
pub(crate) struct QueueReader<Q: JobQueue = RedisJobQueue> {
    queue_side: Q,
    core: ClaimCore,
    queues: Vec<Arc<str>>,
    heartbeat: Duration,
    lease_ms: u64,
    idle_wait: Duration,
    processors: Addr<Processor>,
    /// Claimed jobs on their way to a processor slot.
    feed: Arc<JobFeed>,
    /// Outcomes from the processors; taken into a stream when the actor starts.
    outcomes: Option<UnboundedReceiver<Vec<Outcome>>>,
    db: Recipient<Record>,
    metrics: Arc<Metrics>,
    /// Who waits for the shutdown's hand-back count.
    shutdown_replies: Vec<oneshot::Sender<usize>>,
    /// Queues whose backlog is being sorted into per-key lists now.
    sorting: HashSet<Arc<str>>,
}

impl<Q: JobQueue> QueueReader<Q> {
    pub(crate) fn new(
        queue_side: Q,
        settings: &Settings,
        pool: ProcessorPool,
        db: Recipient<Record>,
        metrics: Arc<Metrics>,
    ) -> QueueReader<Q> {
        let queues: Vec<Arc<str>> = settings
            .queues
            .names
            .iter()
            .map(|name| Arc::<str>::from(name.as_str()))
            .collect();
        let core = ClaimCore::new(CoreConfig {
            queues: queues.clone(),
            claim_batch: settings.queues.claim_batch,
            order: QueueOrder::new(settings.queues.mode, &settings.queues.weight_list()),
            max_in_flight: settings.queues.max_in_flight,
            lease_ms: settings.recovery.lease_ms,
            claim_backoff: Backoff::exponential(CLAIM_RETRY_BASE_MS, CLAIM_RETRY_MAX_MS),
            write_retry_ms: REDIS_RETRY_MS,
            wait_retry_ms: WAIT_RETRY_MS,
        });
        QueueReader {
            queue_side,
            core,
            queues,
            heartbeat: settings.recovery.heartbeat(),
            lease_ms: settings.recovery.lease_ms,
            idle_wait: Duration::from_millis(settings.queues.idle_wait_ms),
            processors: pool.addr,
            feed: pool.feed,
            outcomes: Some(pool.outcomes),
            db,
            metrics,
            shutdown_replies: Vec::new(),
            sorting: HashSet::new(),
        }
    }

    /// Carries out the core's effects.
    fn apply(&mut self, effects: Vec<Effect>, ctx: &mut Context<Self>) {
        for effect in effects {
            match effect {
                Effect::Claim(request) => self.claim_round(request, ctx),
                Effect::Reconcile(known) => self.reconcile(known, ctx),
                Effect::WaitForJobs(queue) => self.wait_for_jobs(queue, ctx),
                Effect::WaitForSlot(queue) => self.wait_for_slot(queue, ctx),
                Effect::Record(finals) => self.record(finals, ctx),
                Effect::Write { acks, reschedules } => self.write(acks, reschedules, ctx),
                Effect::TickAt(at_ms) => {
                    let wait = Duration::from_millis(at_ms.saturating_sub(now_ms()).max(0) as u64);
                    ctx.run_later(wait, move |act, ctx| {
                        // The time asked for has come, even if the wall
                        // clock (not the timer's) says a millisecond less.
                        let effects = act.core.on_tick(now_ms().max(at_ms));
                        act.apply(effects, ctx);
                    });
                }
                Effect::HandBack => self.hand_back(ctx),
                Effect::HoldBack(queue) => self.hold_back(&queue, ctx),
                Effect::Report(report) => self.report(report),
            }
        }
        self.metrics.in_flight.store(
            self.core.held() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Puts claimed jobs in the feed and wakes as many idle processor
    /// threads as they need; busy threads take them as slots free up.
    fn dispatch(&mut self, jobs: Vec<ClaimedJob>, ctx: &mut Context<Self>) {
        if jobs.is_empty() {
            return;
        }
        Metrics::add(&self.metrics.claimed_total, jobs.len() as u64);
        let wakes = self.feed.push(jobs);
        for _ in 0..wakes {
            self.metrics.processor_mailbox.on_send();
            if let Err(error) = self.processors.try_send(Drain) {
                self.metrics.processor_mailbox.on_handle();
                self.pool_unavailable(&error.to_string(), ctx);
                return;
            }
        }
    }

    /// The processor pool cannot take work: retry what waits in the feed.
    fn pool_unavailable(&mut self, error: &str, ctx: &mut Context<Self>) {
        let stranded: Vec<JobHandle> = self
            .feed
            .take(usize::MAX)
            .into_iter()
            .map(|job| job.handle)
            .collect();
        log::error!(target: "conveyor::queue_reader", "processor pool unavailable ({error}); {} jobs will run again", stranded.len());
        let effects = self.core.on_outcomes(requeue_unrun(stranded, error));
        self.apply(effects, ctx);
    }

    /// `queue` was paused: its claimed jobs that have not started go back to
    /// Redis without counting an attempt (due at once; claimed on resume).
    fn hold_back(&mut self, queue: &str, ctx: &mut Context<Self>) {
        let now = now_ms();
        let unstarted: Vec<Outcome> = self
            .feed
            .take_queue(queue)
            .into_iter()
            .map(|job| Outcome::Defer {
                handle: job.handle,
                due_ms: now,
            })
            .collect();
        if unstarted.is_empty() {
            return;
        }
        log::info!(target: "conveyor::queue_reader", "queue {queue} paused: {} claimed jobs that had not started go back", unstarted.len());
        let effects = self.core.on_outcomes(unstarted);
        self.apply(effects, ctx);
    }

    /// Final outcomes go to the DbWriter.
    fn record(&mut self, finals: Vec<Outcome>, ctx: &mut Context<Self>) {
        self.count_outcomes(&finals);
        self.metrics.db_writer_mailbox.on_send();
        let send = self.db.send(Record(finals));
        ctx.spawn(send.into_actor(self).map(|sent, _, _| {
            if let Err(error) = sent {
                log::error!(target: "conveyor::queue_reader", "db writer unreachable ({error}); its jobs stay in redis and will run again");
            }
        }));
    }

    fn count_outcomes(&self, finals: &[Outcome]) {
        for outcome in finals {
            let counter = match outcome {
                Outcome::Finished(row) if row.status == FinalStatus::Succeeded => {
                    &self.metrics.succeeded_total
                }
                Outcome::Finished(row) if row.status == FinalStatus::Cancelled => {
                    &self.metrics.cancelled_total
                }
                Outcome::Finished(_) => &self.metrics.dead_total,
                _ => &self.metrics.dead_letters_total,
            };
            Metrics::add(counter, 1);
            match outcome {
                Outcome::Finished(row) => self.metrics.record_final(row),
                other => self.metrics.record_dead_letter(&other.handle().queue),
            }
        }
    }

    /// Says what the core reports: log lines and counters.
    fn report(&self, report: Report) {
        const TARGET: &str = "conveyor::queue_reader";
        match report {
            Report::LeaseLost(queue) => {
                log::error!(target: TARGET, "lease on queue {queue} had expired: another worker may have recovered this worker's jobs; checking which are still held")
            }
            Report::RedisBack => {
                log::info!(target: TARGET, "redis is reachable again; claiming resumed")
            }
            Report::ClaimFailed {
                delay_ms,
                held,
                error,
            } => {
                log::warn!(target: TARGET, "claiming failed, retrying in {delay_ms} ms ({held} jobs in flight are safe): {error}")
            }
            Report::Released(n) => {
                log::warn!(target: TARGET, "{n} jobs claimed while the connection failed were handed back to their queue")
            }
            Report::Forgotten(n) => {
                log::error!(target: TARGET, "{n} jobs this worker held were recovered by another worker (its lease had expired); their results here will be discarded")
            }
            Report::Fenced(n) => {
                log::warn!(target: TARGET, "discarded the outcomes of {n} jobs recovered by another worker")
            }
            Report::Retried(n) => Metrics::add(&self.metrics.retried_total, n as u64),
            Report::NotHeld(n) => {
                log::error!(target: TARGET, "{n} jobs were no longer held by this worker (recovered by another worker after its lease expired, or already moved by an earlier try); left as they are")
            }
            Report::Acked(n) => Metrics::add(&self.metrics.acked_total, n as u64),
            Report::WriteFailed { retry_ms, error } => {
                log::warn!(target: TARGET, "writing job states to redis failed, will retry in {retry_ms} ms: {error}")
            }
        }
    }

    fn lease_deadline(&self) -> i64 {
        now_ms() + self.lease_ms as i64
    }
}

/// Jobs a processor never ran go back to Redis without counting an attempt.
fn requeue_unrun(handles: Vec<JobHandle>, reason: &str) -> Vec<Outcome> {
    handles
        .into_iter()
        .map(|handle| Outcome::Retry {
            handle,
            due_ms: now_ms() + CLAIM_RETRY_BASE_MS as i64,
            attempts: 0,
            error: format!("processor unavailable: {reason}"),
        })
        .collect()
}

impl<Q: JobQueue> Actor for QueueReader<Q> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(mut outcomes) = self.outcomes.take() {
            ctx.add_stream(futures::stream::poll_fn(move |cx| outcomes.poll_recv(cx)));
        }
        self.renew_lease(ctx);
        ctx.run_interval(self.heartbeat, |act, ctx| act.renew_lease(ctx));
        let effects = self.core.start(now_ms());
        self.apply(effects, ctx);
    }
}

/// Outcomes of finished jobs, from the processor threads.
impl<Q: JobQueue> StreamHandler<Vec<Outcome>> for QueueReader<Q> {
    fn handle(&mut self, outcomes: Vec<Outcome>, ctx: &mut Self::Context) {
        let effects = self.core.on_outcomes(outcomes);
        self.apply(effects, ctx);
    }

    /// The processors are gone (the system is stopping); the reader goes on
    /// until its shutdown sequence ends.
    fn finished(&mut self, _: &mut Self::Context) {}
}

impl<Q: JobQueue> Handler<Wake> for QueueReader<Q> {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        self.metrics.reader_mailbox.on_handle();
        let effects = self.core.on_wake(now_ms());
        self.apply(effects, ctx);
    }
}

impl<Q: JobQueue> Handler<PausedQueues> for QueueReader<Q> {
    type Result = ();

    fn handle(&mut self, msg: PausedQueues, ctx: &mut Self::Context) {
        self.metrics.reader_mailbox.on_handle();
        let effects = self.core.on_paused(now_ms(), msg.0);
        self.apply(effects, ctx);
    }
}

impl<Q: JobQueue> Handler<Committed> for QueueReader<Q> {
    type Result = ();

    fn handle(&mut self, msg: Committed, ctx: &mut Self::Context) {
        self.metrics.reader_mailbox.on_handle();
        let effects = self.core.on_committed(msg.0);
        self.apply(effects, ctx);
    }
}

impl<Q: JobQueue> Handler<WritesBlocked> for QueueReader<Q> {
    type Result = ();

    fn handle(&mut self, msg: WritesBlocked, ctx: &mut Self::Context) {
        self.metrics.reader_mailbox.on_handle();
        let writes = if msg.0 {
            Writes::Blocked
        } else {
            Writes::Flowing
        };
        let effects = self.core.on_writes(now_ms(), writes);
        self.apply(effects, ctx);
    }
}

impl<Q: JobQueue> Handler<Shutdown> for QueueReader<Q> {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, msg: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        self.metrics.reader_mailbox.on_handle();
        if self.core.lifecycle() == Lifecycle::Stopped {
            return Box::pin(async { 0 });
        }
        log::info!(
            target: "conveyor::queue_reader",
            "shutting down: claiming stopped; waiting up to {} ms for {} in-flight jobs",
            msg.timeout.as_millis(),
            self.core.held()
        );
        let (tx, rx) = oneshot::channel();
        self.shutdown_replies.push(tx);
        let timeout_ms = u64::try_from(msg.timeout.as_millis()).unwrap_or(u64::MAX);
        let effects = self.core.on_shutdown(now_ms(), timeout_ms);
        self.apply(effects, ctx);
        Box::pin(async move { rx.await.unwrap_or(0) })
    }
}
