//! Pruner: deletes results past their retention (`results.retention`,
//! `results.dead_retention`) every `results.prune_interval`.
//!
//! Every worker runs one when a retention is set; the prune lock in Redis
//! lets only one of them delete at a time, and the others skip that round.
//! It owns the timing of passes and their end at shutdown: [`StopPruning`]
//! ends the pass under way after its current batch and answers once the
//! prune lock is released, so another worker takes over at once. It must
//! never start a pass while one is under way or after [`StopPruning`], and
//! never let a failed pass stop the next one.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::job::now_ms;
use crate::redis_queue::RedisQueue;
use crate::retention::{prune, PruneError, PruneOptions, PruneReport, RetentionPolicy};

/// Ends pruning for good: the pass under way stops after its current batch
/// and releases the prune lock; answered once it has.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct StopPruning;

#[derive(Debug)]
pub(crate) struct Pruner {
    pool: mysql_async::Pool,
    redis: RedisQueue,
    policy: RetentionPolicy,
    options: PruneOptions,
    interval: Duration,
    worker: Arc<str>,
    /// Held by the pass under way (one at a time); [`StopPruning`] waits for it.
    running: Arc<Mutex<()>>,
    stop: CancellationToken,
}

impl Pruner {
    pub(crate) fn new(
        pool: mysql_async::Pool,
        redis: RedisQueue,
        policy: RetentionPolicy,
        options: PruneOptions,
        interval: Duration,
        worker: Arc<str>,
    ) -> Pruner {
        Pruner {
            pool,
            redis,
            policy,
            options,
            interval,
            worker,
            running: Arc::new(Mutex::new(())),
            stop: CancellationToken::new(),
        }
    }

    fn pass(&mut self, ctx: &mut Context<Self>) {
        if self.stop.is_cancelled() {
            return;
        }
        let Ok(guard) = self.running.clone().try_lock_owned() else {
            return; // the previous pass is still under way
        };
        let (pool, redis, policy, options, worker, stop) = (
            self.pool.clone(),
            self.redis.clone(),
            self.policy,
            self.options,
            self.worker.clone(),
            self.stop.clone(),
        );
        let interval = self.interval;
        let pass = async move {
            let result = prune(&pool, &redis, &policy, &options, &worker, now_ms(), &stop).await;
            drop(guard);
            log_pass(result, interval);
        };
        ctx.spawn(pass.into_actor(self));
    }
}

fn log_pass(result: Result<PruneReport, PruneError>, interval: Duration) {
    match result {
        Ok(report) if report.stopped => log::info!(
            target: "conveyor::pruner",
            "pruning stopped for shutdown after {} result rows and {} dead letters; the prune lock is released",
            report.results,
            report.dead_letters
        ),
        Ok(report) if report.total() > 0 => log::info!(
            target: "conveyor::pruner",
            "pruned {} result rows and {} dead letters past their retention",
            report.results,
            report.dead_letters
        ),
        Ok(_) => {}
        Err(PruneError::Busy(holder)) => {
            log::debug!(target: "conveyor::pruner", "{holder} is pruning; skipping this round");
        }
        Err(error) => log::warn!(
            target: "conveyor::pruner",
            "pruning stopped early, retrying in {} s: {error}",
            interval.as_secs()
        ),
    }
}

impl Actor for Pruner {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.pass(ctx);
        ctx.run_interval(self.interval, |act, ctx| act.pass(ctx));
    }
}

impl Handler<StopPruning> for Pruner {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: StopPruning, _: &mut Context<Self>) -> Self::Result {
        self.stop.cancel();
        let running = self.running.clone();
        Box::pin(async move {
            // Free once the pass under way has released the prune lock.
            let _idle = running.lock().await;
        })
    }
}
