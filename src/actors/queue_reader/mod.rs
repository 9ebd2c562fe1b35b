//! QueueReader: claims jobs from Redis and feeds the processor pool.
//!
//! It owns this worker's side of the job lifecycle in Redis: claiming in
//! batches up to its free capacity (`queues.max_in_flight` minus jobs not yet
//! acknowledged), waking without spinning when a queue was empty, putting
//! claimed jobs in the job feed and waking idle processor threads, routing outcomes
//! (final ones to the DbWriter, retries and deferrals back to Redis),
//! acknowledging jobs once their rows are committed, renewing the worker's
//! lease, and the quiet → drain → hand-back sequence of a graceful shutdown.
//!
//! It must never acknowledge a job before its row is committed, and never
//! drop an acknowledgement or reschedule that failed: both are retried until
//! Redis takes them (until then the job is safe in this worker's `wip`).

mod claiming;
mod ledger;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;

use self::ledger::{hand_back_all, write_to_redis, HeldJobs, RedisWriteReport};
use super::db_writer::{Committed, DbWriter, Record};
use super::job_feed::JobFeed;
use super::processor::{Drain, Processor, ProcessorPool};
use crate::config::Settings;
use crate::job::{now_ms, ClaimedJob, FinalStatus, JobHandle, Outcome};
use crate::metrics::Metrics;
use crate::queue_order::QueueOrder;
use crate::redis_queue::{Claimed, RedisQueue, Reschedule};

/// How often failed acknowledgements and reschedules are tried again.
const REDIS_RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// Longest pause between claim attempts while Redis is unreachable.
const MAX_REDIS_BACKOFF: Duration = Duration::from_secs(5);

/// Something may be waiting (a retry came due, jobs were recovered): claim now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// The queues paused now (from the QueueWatch): claim nothing from them,
/// and hand back their jobs that have not started.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PausedQueues(pub HashSet<Arc<str>>);

/// Stop claiming, drain in-flight jobs for up to `timeout`, then hand back
/// the rest. Answers with the number of jobs handed back.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Shutdown {
    pub timeout: Duration,
}

/// What one claim round took from each queue asked, or the error.
type ClaimRound = Result<Vec<Claimed>, String>;

pub struct QueueReader {
    redis: RedisQueue,
    worker: Arc<str>,
    settings: Arc<Settings>,
    queues: Vec<Arc<str>>,
    /// How each claim round is split among the queues.
    order: QueueOrder,
    processors: Addr<Processor>,
    /// Claimed jobs on their way to a processor slot.
    feed: Arc<JobFeed>,
    /// Outcomes from the processors; taken into a stream when the actor starts.
    outcomes: Option<UnboundedReceiver<Vec<Outcome>>>,
    db: Addr<DbWriter>,
    metrics: Arc<Metrics>,
    /// Jobs claimed and not yet acknowledged or rescheduled: the capacity in use.
    held: HeldJobs,
    /// A claim failed in a way that may have moved jobs in Redis anyway (the
    /// reply was lost): before claiming again, hand back what we do not know.
    claim_uncertain: bool,
    /// The lease was found expired: before claiming again, forget the jobs
    /// another worker recovered.
    lease_lost: bool,
    /// A claim round is under way (rounds never overlap).
    claiming: bool,
    /// Queues found empty: not claimed from until their waiter or a Wake says so.
    idle: HashSet<Arc<str>>,
    /// Queues paused in Redis: not claimed from until resumed.
    paused_queues: HashSet<Arc<str>>,
    /// Queues with a blocking wait under way, and their spare connections.
    waiting: HashSet<Arc<str>>,
    waiter_conns: HashMap<Arc<str>, MultiplexedConnection>,
    /// Consecutive failed claim rounds (Redis unreachable); 0 when healthy.
    claim_failures: u32,
    /// Claiming waits out a backoff after a failure.
    paused: bool,
    /// Acknowledgements and reschedules that Redis has not taken yet.
    unsent_acks: Vec<JobHandle>,
    unsent_reschedules: Vec<(Arc<str>, Reschedule)>,
    /// A round of acknowledgements/reschedules is under way.
    writing_to_redis: bool,
    /// Set by Shutdown: claim nothing more.
    quiet: bool,
    drained: Vec<oneshot::Sender<()>>,
}

impl QueueReader {
    pub fn new(
        redis: RedisQueue,
        worker: Arc<str>,
        settings: Arc<Settings>,
        pool: ProcessorPool,
        db: Addr<DbWriter>,
        metrics: Arc<Metrics>,
    ) -> QueueReader {
        let queues = settings
            .queues
            .names
            .iter()
            .map(|name| Arc::<str>::from(name.as_str()))
            .collect();
        let order = QueueOrder::new(settings.queues.mode, &settings.queues.weight_list());
        QueueReader {
            redis,
            worker,
            settings,
            queues,
            order,
            processors: pool.addr,
            feed: pool.feed,
            outcomes: Some(pool.outcomes),
            db,
            metrics,
            held: HeldJobs::default(),
            claim_uncertain: false,
            lease_lost: false,
            claiming: false,
            idle: HashSet::new(),
            paused_queues: HashSet::new(),
            waiting: HashSet::new(),
            waiter_conns: HashMap::new(),
            claim_failures: 0,
            paused: false,
            unsent_acks: Vec::new(),
            unsent_reschedules: Vec::new(),
            writing_to_redis: false,
            quiet: false,
            drained: Vec::new(),
        }
    }

    fn lease_deadline(&self) -> i64 {
        now_ms() + self.settings.recovery.lease_ms as i64
    }

    fn room(&self) -> usize {
        self.settings
            .queues
            .max_in_flight
            .saturating_sub(self.held.len())
    }

    /// Puts claimed jobs in the feed and wakes as many idle processor
    /// threads as they need; busy threads take them as slots free up.
    fn dispatch(&mut self, jobs: Vec<ClaimedJob>, ctx: &mut Context<Self>) {
        if jobs.is_empty() {
            return;
        }
        for job in &jobs {
            self.held.add(&job.handle);
        }
        Metrics::add(&self.metrics.claimed_total, jobs.len() as u64);
        self.publish_in_flight();
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
        self.route(requeue_unrun(stranded, error), ctx);
    }

    /// Final outcomes go to the DbWriter; the others back to Redis.
    /// Outcomes of jobs this worker no longer holds (its lease was lost and
    /// they were recovered elsewhere) are discarded.
    fn route(&mut self, outcomes: Vec<Outcome>, ctx: &mut Context<Self>) {
        let (ours, fenced): (Vec<Outcome>, Vec<Outcome>) = outcomes
            .into_iter()
            .partition(|outcome| self.held.contains(outcome.handle()));
        if !fenced.is_empty() {
            log::warn!(target: "conveyor::queue_reader", "discarded the outcomes of {} jobs recovered by another worker", fenced.len());
        }
        let (finals, rest): (Vec<Outcome>, Vec<Outcome>) =
            ours.into_iter().partition(Outcome::is_final);
        self.count_outcomes(&finals);
        if !finals.is_empty() {
            self.metrics.db_writer_mailbox.on_send();
            let send = self.db.send(Record(finals));
            ctx.spawn(send.into_actor(self).map(|sent, _, _| {
                if let Err(error) = sent {
                    log::error!(target: "conveyor::queue_reader", "db writer unreachable ({error}); its jobs stay in redis and will run again");
                }
            }));
        }
        for outcome in rest {
            let queue = outcome.handle().queue.clone();
            let reschedule = match outcome {
                Outcome::Retry {
                    handle,
                    due_ms,
                    attempts,
                    error,
                } => {
                    Metrics::add(&self.metrics.retried_total, 1);
                    Reschedule {
                        token: handle.token,
                        due_ms,
                        failure: (attempts > 0).then_some((attempts, error)),
                    }
                }
                Outcome::Defer { handle, due_ms } => Reschedule {
                    token: handle.token,
                    due_ms,
                    failure: None,
                },
                Outcome::Finished(_) | Outcome::Malformed(_) => continue,
            };
            self.unsent_reschedules.push((queue, reschedule));
        }
        self.flush_redis_writes(ctx);
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

    /// Sends every owed acknowledgement and reschedule to Redis; what fails
    /// stays owed and is tried again shortly. One write round at a time.
    fn flush_redis_writes(&mut self, ctx: &mut Context<Self>) {
        if self.writing_to_redis
            || (self.unsent_acks.is_empty() && self.unsent_reschedules.is_empty())
        {
            return;
        }
        self.writing_to_redis = true;
        let acks = std::mem::take(&mut self.unsent_acks);
        let reschedules = std::mem::take(&mut self.unsent_reschedules);
        let redis = self.redis.clone();
        let worker = self.worker.clone();
        let write = async move { write_to_redis(&redis, &worker, acks, reschedules).await };
        ctx.spawn(write.into_actor(self).map(|report, act, ctx| {
            act.writing_to_redis = false;
            act.after_redis_writes(report, ctx);
        }));
    }

    fn after_redis_writes(&mut self, report: RedisWriteReport, ctx: &mut Context<Self>) {
        if report.lease_lost > 0 {
            log::error!(
                target: "conveyor::queue_reader",
                "{} jobs were no longer held by this worker (recovered by another worker after its lease expired, or already moved by an earlier try); left as they are",
                report.lease_lost
            );
        }
        Metrics::add(&self.metrics.acked_total, report.acked as u64);
        for handle in &report.done {
            self.held.remove(handle);
        }
        self.publish_in_flight();
        let failed = !report.unsent_acks.is_empty() || !report.unsent_reschedules.is_empty();
        self.unsent_acks.extend(report.unsent_acks);
        self.unsent_reschedules.extend(report.unsent_reschedules);
        if let Some(error) = report.error {
            log::warn!(target: "conveyor::queue_reader", "writing job states to redis failed, will retry in {} ms: {error}", REDIS_RETRY_INTERVAL.as_millis());
        }
        if failed {
            ctx.run_later(REDIS_RETRY_INTERVAL, |act, ctx| act.flush_redis_writes(ctx));
        } else {
            self.flush_redis_writes(ctx);
        }
        self.after_capacity_freed(ctx);
    }

    /// `queue` is paused: claim nothing more from it, and hand back its
    /// claimed jobs that have not started.
    pub(super) fn queue_paused(&mut self, queue: Arc<str>, ctx: &mut Context<Self>) {
        if !self.paused_queues.insert(queue.clone()) {
            return;
        }
        let unstarted: Vec<JobHandle> = self
            .feed
            .take_queue(&queue)
            .into_iter()
            .map(|job| job.handle)
            .collect();
        if !unstarted.is_empty() {
            log::info!(target: "conveyor::queue_reader", "queue {queue} paused: {} claimed jobs that had not started go back", unstarted.len());
            self.route(requeue_unrun(unstarted, "queue paused"), ctx);
        }
    }

    fn publish_in_flight(&self) {
        self.metrics
            .in_flight
            .store(self.held.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Renews this worker's lease on every queue.
    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let redis = self.redis.clone();
        let worker = self.worker.clone();
        let queues = self.queues.clone();
        let deadline = self.lease_deadline();
        let beat = async move {
            let mut lost = Vec::new();
            for queue in queues {
                match redis.heartbeat(&queue, &worker, deadline).await {
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
                act.lease_lost(&queue, ctx);
            }
        }));
    }

    /// This worker was presumed dead on `queue`, so another worker may have
    /// recovered its jobs there: reconcile before the next claim.
    fn lease_lost(&mut self, queue: &Arc<str>, ctx: &mut Context<Self>) {
        if self.held.is_empty() {
            return;
        }
        log::error!(
            target: "conveyor::queue_reader",
            "lease on queue {queue} had expired: another worker may have recovered this worker's jobs; checking which are still held"
        );
        self.lease_lost = true;
        self.claim(ctx);
    }

    /// Wakes a pending shutdown once nothing is held, and claims again.
    fn after_capacity_freed(&mut self, ctx: &mut Context<Self>) {
        self.notify_if_drained();
        self.claim(ctx);
    }

    /// Drained: nothing held and no claim round under way (a round's reply
    /// may still bring jobs that Redis already moved to this worker's hold).
    fn is_drained(&self) -> bool {
        self.held.is_empty() && !self.claiming
    }

    /// Wakes a pending shutdown when drained.
    pub(super) fn notify_if_drained(&mut self) {
        if self.is_drained() {
            for waiter in self.drained.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

/// First pause after a failed claim; doubles up to `MAX_REDIS_BACKOFF`.
const CLAIM_RETRY_BASE: Duration = Duration::from_millis(100);

/// Jobs a processor never ran go back to Redis without counting an attempt.
fn requeue_unrun(handles: Vec<JobHandle>, reason: &str) -> Vec<Outcome> {
    handles
        .into_iter()
        .map(|handle| Outcome::Retry {
            handle,
            due_ms: now_ms() + CLAIM_RETRY_BASE.as_millis() as i64,
            attempts: 0,
            error: format!("processor unavailable: {reason}"),
        })
        .collect()
}

impl Actor for QueueReader {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(mut outcomes) = self.outcomes.take() {
            ctx.add_stream(futures::stream::poll_fn(move |cx| outcomes.poll_recv(cx)));
        }
        let heartbeat = Duration::from_millis(self.settings.recovery.heartbeat_ms);
        self.heartbeat(ctx);
        ctx.run_interval(heartbeat, |act, ctx| act.heartbeat(ctx));
        self.claim(ctx);
    }
}

/// Outcomes of finished jobs, from the processor threads.
impl StreamHandler<Vec<Outcome>> for QueueReader {
    fn handle(&mut self, outcomes: Vec<Outcome>, ctx: &mut Self::Context) {
        self.route(outcomes, ctx);
    }

    /// The processors are gone (the system is stopping); the reader goes on
    /// until its shutdown sequence ends.
    fn finished(&mut self, _: &mut Self::Context) {}
}

impl Handler<Wake> for QueueReader {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        self.metrics.reader_mailbox.on_handle();
        self.idle.clear();
        self.claim(ctx);
    }
}

impl Handler<PausedQueues> for QueueReader {
    type Result = ();

    fn handle(&mut self, msg: PausedQueues, ctx: &mut Self::Context) {
        self.metrics.reader_mailbox.on_handle();
        self.paused_queues.retain(|queue| msg.0.contains(queue));
        for queue in msg.0 {
            self.queue_paused(queue, ctx);
        }
        self.idle.clear();
        self.claim(ctx);
    }
}

impl Handler<Committed> for QueueReader {
    type Result = ();

    fn handle(&mut self, msg: Committed, ctx: &mut Self::Context) {
        self.metrics.reader_mailbox.on_handle();
        self.unsent_acks.extend(msg.0);
        self.flush_redis_writes(ctx);
    }
}

impl Handler<Shutdown> for QueueReader {
    type Result = ResponseActFuture<Self, usize>;

    fn handle(&mut self, msg: Shutdown, _: &mut Self::Context) -> Self::Result {
        self.metrics.reader_mailbox.on_handle();
        self.quiet = true;
        log::info!(
            target: "conveyor::queue_reader",
            "shutting down: claiming stopped; waiting up to {} ms for {} in-flight jobs",
            msg.timeout.as_millis(),
            self.held.len()
        );
        let (tx, rx) = oneshot::channel();
        if self.is_drained() {
            let _ = tx.send(());
        } else {
            self.drained.push(tx);
        }
        let drain = async move {
            let _ = tokio::time::timeout(msg.timeout, rx).await;
        };
        Box::pin(drain.into_actor(self).then(|_, act, _| {
            // Jobs still waiting for a slot go back with the rest, in Redis.
            act.feed.clear();
            let redis = act.redis.clone();
            let worker = act.worker.clone();
            let queues = act.queues.clone();
            async move { hand_back_all(&redis, &worker, &queues).await }.into_actor(act)
        }))
    }
}
