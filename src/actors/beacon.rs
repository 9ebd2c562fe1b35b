//! Beacon: folds this worker's counters into the throughput history in
//! Redis about once a second, and renews the worker's beacon (what it is,
//! how busy it is) for the dashboard.
//!
//! It owns the "last folded" snapshot: a fold that fails is repeated with
//! the growth since the last fold that succeeded, so no finished job is
//! lost from the history and none is counted twice. It must never touch a
//! job, and never add work to the hot path: it only reads the counters the
//! pipeline keeps anyway.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::config::Settings;
use crate::job::now_ms;
use crate::metrics::Metrics;
use crate::redis_queue::{RedisQueue, Throughput, WorkerBeacon};

/// How often the counters are folded into Redis.
pub(crate) const FOLD_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) struct Beacon {
    redis: RedisQueue,
    metrics: Arc<Metrics>,
    /// The fixed part of the beacon (identity and sizes).
    identity: WorkerBeacon,
    /// Counters as of the last fold that succeeded.
    folded: Throughput,
    /// A fold is in flight: the next tick waits for it.
    busy: bool,
}

impl Beacon {
    pub(crate) fn new(
        redis: RedisQueue,
        worker: &str,
        metrics: Arc<Metrics>,
        settings: &Settings,
    ) -> Beacon {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        Beacon {
            redis,
            metrics,
            identity: WorkerBeacon {
                worker: worker.to_string(),
                host,
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                started_at_ms: now_ms(),
                queues: settings.queues.names.clone(),
                processors: settings.processors.count,
                concurrency: settings.processors.concurrency,
                max_in_flight: settings.queues.max_in_flight,
                ..WorkerBeacon::default()
            },
            folded: Throughput::default(),
            busy: false,
        }
    }

    fn counters(&self) -> Throughput {
        let m = &self.metrics;
        Throughput {
            succeeded: Metrics::get(&m.succeeded_total),
            dead: Metrics::get(&m.dead_total),
            retried: Metrics::get(&m.retried_total),
            dead_letters: Metrics::get(&m.dead_letters_total),
        }
    }

    fn beacon(&self, now: i64) -> WorkerBeacon {
        let m = &self.metrics;
        WorkerBeacon {
            seen_at_ms: now,
            in_flight: Metrics::get(&m.in_flight),
            running: Metrics::get(&m.running),
            feed: Metrics::get(&m.feed_depth),
            mailbox_reader: m.reader_mailbox.depth(),
            mailbox_processors: m.processor_mailbox.depth(),
            mailbox_db_writer: m.db_writer_mailbox.depth(),
            db_buffered: Metrics::get(&m.db_buffered),
            ..self.identity.clone()
        }
    }

    fn fold(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let now = now_ms();
        let counters = self.counters();
        let delta = counters.since(&self.folded);
        let beacon = self.beacon(now);
        let redis = self.redis.clone();
        let work = async move { redis.fold_stats(now, &delta, &beacon).await };
        ctx.spawn(work.into_actor(self).map(move |result, act, _| {
            act.busy = false;
            match result {
                Ok(()) => act.folded = counters,
                Err(error) => {
                    log::debug!(target: "conveyor::beacon", "throughput fold failed, retrying: {error}")
                }
            }
        }));
    }
}

impl Actor for Beacon {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(FOLD_INTERVAL, |act, ctx| act.fold(ctx));
    }
}
