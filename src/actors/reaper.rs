//! Reaper: recovers the jobs of workers that stopped renewing their lease.
//!
//! It owns crash recovery: every `recovery.heartbeat_ms` it returns the jobs
//! of any worker whose lease (`recovery.lease_ms`) has expired to the front
//! of their queue, counting the lost attempt, so a job that kills its worker
//! every time ends `dead` instead of looping. Every worker runs one; the
//! script is atomic, so two reapers never recover the same job twice.
//!
//! It must never reap right after its own Redis trouble: leases may have run
//! out while nobody could renew them, so it first gives every live worker two
//! heartbeats to renew.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::queue_reader::Wake;
use crate::job::now_ms;
use crate::metrics::Metrics;
use crate::redis_queue::RedisQueue;

pub(crate) struct Reaper {
    redis: RedisQueue,
    queues: Vec<Arc<str>>,
    tick: Duration,
    reader: Recipient<Wake>,
    metrics: Arc<Metrics>,
    /// Since when Redis has answered without error; `None` after an error.
    healthy_since: Option<Instant>,
    busy: bool,
}

impl Reaper {
    pub(crate) fn new(
        redis: RedisQueue,
        queues: Vec<Arc<str>>,
        tick: Duration,
        reader: Recipient<Wake>,
        metrics: Arc<Metrics>,
    ) -> Reaper {
        Reaper {
            redis,
            queues,
            tick,
            reader,
            metrics,
            healthy_since: Some(Instant::now()),
            busy: false,
        }
    }

    fn reap(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let settled = self
            .healthy_since
            .is_some_and(|since| since.elapsed() >= self.tick * 2);
        self.busy = true;
        let redis = self.redis.clone();
        let queues = self.queues.clone();
        let round = async move {
            let mut recovered = 0;
            for queue in &queues {
                if !settled {
                    redis.depths(queue).await?;
                    continue;
                }
                for (worker, jobs) in redis.reap_expired(queue, now_ms()).await? {
                    log::warn!(
                        target: "conveyor::reaper",
                        "worker {worker} stopped renewing its lease; {jobs} of its jobs on queue {queue} returned to the queue (attempt counted)"
                    );
                    recovered += jobs;
                }
            }
            Ok::<u64, crate::redis_queue::QueueError>(recovered)
        };
        ctx.spawn(round.into_actor(self).map(|result, act, _| {
            act.busy = false;
            match result {
                Ok(recovered) => {
                    act.healthy_since.get_or_insert_with(Instant::now);
                    if recovered > 0 && act.reader.try_send(Wake).is_ok() {
                        act.metrics.reader_mailbox.on_send();
                    }
                }
                Err(error) => {
                    log::debug!(target: "conveyor::reaper", "lease check failed: {error}");
                    act.healthy_since = None;
                }
            }
        }));
    }
}

impl Actor for Reaper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.tick, |act, ctx| act.reap(ctx));
    }
}
