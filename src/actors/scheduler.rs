//! Scheduler: moves retries and `run_at` jobs that came due back into line.
//!
//! It owns the clock side of the queue: every `scheduler.tick_ms` it promotes
//! due jobs from each queue's scheduled set to its ready list (any worker may
//! promote any job; the script is atomic) and wakes the QueueReader. It must
//! never run or claim jobs itself.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::queue_reader::Wake;
use crate::job::now_ms;
use crate::metrics::Metrics;
use crate::redis_queue::RedisQueue;

/// Most jobs promoted per queue per tick; the rest go next tick.
const PROMOTE_LIMIT: usize = 1000;

pub(crate) struct Scheduler {
    redis: RedisQueue,
    queues: Vec<Arc<str>>,
    tick: Duration,
    reader: Recipient<Wake>,
    metrics: Arc<Metrics>,
    /// A promotion round is under way (slow Redis must not pile rounds up).
    busy: bool,
}

impl Scheduler {
    pub(crate) fn new(
        redis: RedisQueue,
        queues: Vec<Arc<str>>,
        tick: Duration,
        reader: Recipient<Wake>,
        metrics: Arc<Metrics>,
    ) -> Scheduler {
        Scheduler {
            redis,
            queues,
            tick,
            reader,
            metrics,
            busy: false,
        }
    }

    fn promote(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let redis = self.redis.clone();
        let queues = self.queues.clone();
        let round = async move {
            let mut promoted = 0;
            for queue in &queues {
                match redis.promote_due(queue, now_ms(), PROMOTE_LIMIT).await {
                    Ok(n) => promoted += n,
                    Err(error) => {
                        log::debug!(target: "conveyor::scheduler", "promoting due jobs of {queue} failed: {error}");
                        break;
                    }
                }
            }
            promoted
        };
        ctx.spawn(round.into_actor(self).map(|promoted, act, _| {
            act.busy = false;
            if promoted > 0 {
                act.wake_reader();
            }
        }));
    }
}

impl Scheduler {
    /// A lost wake-up only delays the claim to the reader's next look.
    fn wake_reader(&self) {
        if self.reader.try_send(Wake).is_ok() {
            self.metrics.reader_mailbox.on_send();
        }
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.tick, |act, ctx| act.promote(ctx));
    }
}
