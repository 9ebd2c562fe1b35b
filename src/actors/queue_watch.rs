//! QueueWatch: follows the control state of this worker's queues in Redis.
//!
//! Every `queues.control_poll_ms` it reads, in one pipelined round trip, each
//! queue's pause flag and the cancel signals of the jobs this worker holds.
//! Cancel signals go straight to the processors ([`CancelSignals`]); the set
//! of paused queues goes to the QueueReader at every read ([`PausedQueues`]),
//! which stops claiming from them and hands back their jobs that have not
//! started. A paused queue whose cancelled jobs wait for their row is left
//! out of that set until they are claimed, so their `cancelled` rows are
//! written while the queue stays paused. It must never claim, run or move a job itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::cancel_signals::CancelSignals;
use super::queue_reader::PausedQueues;
use crate::metrics::Metrics;
use crate::redis_queue::RedisQueue;

pub(crate) struct QueueWatch {
    redis: RedisQueue,
    worker: Arc<str>,
    queues: Vec<Arc<str>>,
    every: Duration,
    reader: Recipient<PausedQueues>,
    cancels: Arc<CancelSignals>,
    metrics: Arc<Metrics>,
    /// The queues seen paused at the last read; `None` before the first.
    paused: Option<HashSet<Arc<str>>>,
    /// A read is under way (slow Redis must not pile reads up).
    busy: bool,
}

impl QueueWatch {
    pub(crate) fn new(
        redis: RedisQueue,
        worker: Arc<str>,
        queues: Vec<Arc<str>>,
        every: Duration,
        reader: Recipient<PausedQueues>,
        cancels: Arc<CancelSignals>,
        metrics: Arc<Metrics>,
    ) -> QueueWatch {
        QueueWatch {
            redis,
            worker,
            queues,
            every,
            reader,
            cancels,
            metrics,
            paused: None,
            busy: false,
        }
    }

    fn look(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let redis = self.redis.clone();
        let queues = self.queues.clone();
        let worker = self.worker.clone();
        let read = async move { redis.control_state(&queues, &worker).await };
        ctx.spawn(read.into_actor(self).map(|result, act, _| {
            act.busy = false;
            match result {
                Ok(states) => act.apply(states),
                Err(error) => {
                    log::debug!(target: "conveyor::queue_watch", "reading pause flags and cancel signals failed: {error}");
                }
            }
        }));
    }

    fn apply(&mut self, states: Vec<crate::redis_queue::QueueControl>) {
        let mut paused = HashSet::new();
        let mut held = HashSet::new();
        for (queue, state) in self.queues.iter().zip(states) {
            self.cancels.set_signalled(queue, state.cancelled_tokens);
            if state.paused {
                paused.insert(queue.clone());
                // A paused queue with cancelled jobs waiting for their row is
                // let through: the claim script takes nothing else from a
                // paused queue, and its reply pauses the queue again in the
                // reader.
                if state.cancelled_waiting == 0 {
                    held.insert(queue.clone());
                }
            }
        }
        self.log_changes(paused);
        // Told at every look, changed or not: the reader also pauses a
        // queue on its own when a claim's reply says it is paused, and must
        // hear of a resume even if this watch never saw that pause. (If the
        // mailbox is full, the next look tells it.)
        if self.reader.try_send(PausedQueues(held)).is_ok() {
            self.metrics.reader_mailbox.on_send();
        }
    }

    fn log_changes(&mut self, paused: HashSet<Arc<str>>) {
        if self.paused.as_ref() == Some(&paused) {
            return;
        }
        let before = self.paused.replace(paused.clone()).unwrap_or_default();
        for queue in paused.difference(&before) {
            log::info!(target: "conveyor::queue_watch", "queue {queue} is paused: no new jobs start here until it is resumed");
        }
        for queue in before.difference(&paused) {
            log::info!(target: "conveyor::queue_watch", "queue {queue} resumed");
        }
    }
}

impl Actor for QueueWatch {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.look(ctx);
        ctx.run_interval(self.every, |act, ctx| act.look(ctx));
    }
}
