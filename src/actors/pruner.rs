//! Pruner: deletes results past their retention (`results.retention`,
//! `results.dead_retention`) every `results.prune_interval`.
//!
//! Every worker runs one when a retention is set; the prune lock in Redis
//! lets only one of them delete at a time, and the others skip that round.
//! It owns the pacing of passes. It must never start a pass while one is
//! under way, and never let a failed pass stop the next one.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::job::now_ms;
use crate::redis_queue::RedisQueue;
use crate::retention::{prune, PruneError, PruneOptions, RetentionPolicy};

#[derive(Debug)]
pub(crate) struct Pruner {
    pool: mysql_async::Pool,
    redis: RedisQueue,
    policy: RetentionPolicy,
    options: PruneOptions,
    interval: Duration,
    worker: Arc<str>,
    busy: bool,
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
            busy: false,
        }
    }

    fn pass(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let (pool, redis, policy, options, worker) = (
            self.pool.clone(),
            self.redis.clone(),
            self.policy,
            self.options,
            self.worker.clone(),
        );
        let pass = async move { prune(&pool, &redis, &policy, &options, &worker, now_ms()).await };
        ctx.spawn(pass.into_actor(self).map(|result, act, _| {
            act.busy = false;
            match result {
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
                    act.interval.as_secs()
                ),
            }
        }));
    }
}

impl Actor for Pruner {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.pass(ctx);
        ctx.run_interval(self.interval, |act, ctx| act.pass(ctx));
    }
}
