//! DbWriter: holds the mysql_async pool and writes final outcomes in batches.
//!
//! It owns: carrying out the [`batcher::Batcher`]'s decisions (a batch when
//! `db.batch_size` rows are ready or every `db.flush_ms`, up to
//! `db.max_concurrent_flushes` batches in flight on different connections),
//! writing each batch until it commits, and telling the QueueReader which
//! jobs are committed so they can leave Redis.
//!
//! It must never drop a batch: a failed write is retried with backoff until
//! it commits. Its buffer stays bounded because the QueueReader claims no
//! more than `queues.max_in_flight` jobs, which only commits release.

mod batcher;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use mysql_async::Pool;

use self::batcher::{Batch, BatchEffect, BatchLimits, Batcher};
use super::queue_reader::Committed;
use crate::backoff::Backoff;
use crate::config::DbSettings;
use crate::job::{JobHandle, Outcome};
use crate::metrics::Metrics;
use crate::store::{self, StoreError};

/// Final outcomes to write (`Finished` and `Malformed` only).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Record(pub Vec<Outcome>);

/// The DbWriter actor; see the module documentation.
pub(crate) struct DbWriter {
    pool: Pool,
    /// This process's worker id, written into every row.
    worker: Arc<str>,
    committed: Recipient<Committed>,
    flush_interval: Duration,
    backoff: Backoff,
    metrics: Arc<Metrics>,
    batcher: Batcher,
}

impl DbWriter {
    pub(crate) fn new(
        pool: Pool,
        worker: Arc<str>,
        committed: Recipient<Committed>,
        settings: DbSettings,
        metrics: Arc<Metrics>,
    ) -> DbWriter {
        DbWriter {
            pool,
            worker,
            committed,
            flush_interval: Duration::from_millis(settings.flush_ms),
            backoff: Backoff::exponential(settings.retry_base_ms, settings.retry_max_ms),
            metrics,
            batcher: Batcher::new(BatchLimits {
                batch_size: settings.batch_size,
                max_concurrent: settings.max_concurrent_flushes,
            }),
        }
    }

    /// Carries out the batcher's decisions.
    fn apply(&mut self, effects: Vec<BatchEffect>, ctx: &mut Context<Self>) {
        for effect in effects {
            match effect {
                BatchEffect::Write(batch) => self.write(batch, ctx),
                BatchEffect::ArmTimer => {
                    ctx.run_later(self.flush_interval, |act, ctx| {
                        let effects = act.batcher.on_timer();
                        act.apply(effects, ctx);
                    });
                }
            }
        }
        self.publish_gauges();
    }

    fn write(&mut self, batch: Batch, ctx: &mut Context<Self>) {
        let (pool, worker, metrics) =
            (self.pool.clone(), self.worker.clone(), self.metrics.clone());
        let backoff = self.backoff;
        let size = batch.len();
        let write = async move {
            let begun = std::time::Instant::now();
            let (pool_ref, worker_ref, batch_ref) = (&pool, &*worker, &batch);
            let attempt = move || {
                store::write_batch(pool_ref, worker_ref, &batch_ref.rows, &batch_ref.letters)
            };
            let on_failure = |failures: u32, error: &StoreError, delay: Duration| {
                Metrics::add(&metrics.db_errors_total, 1);
                log::warn!(
                    target: "conveyor::db_writer",
                    "writing a batch of {size} rows failed (attempt {failures}), retrying in {} ms: {error}",
                    delay.as_millis()
                );
            };
            let failures = write_until_committed(backoff, attempt, on_failure).await;
            if failures > 0 {
                log::info!(target: "conveyor::db_writer", "batch committed after {failures} failed attempts; MySQL is back");
            }
            metrics.record_db_batch(size, begun.elapsed().as_secs_f64());
            Metrics::add(&metrics.db_batches_total, 1);
            Metrics::add(&metrics.committed_total, size as u64);
            handles_of(batch)
        };
        ctx.spawn(write.into_actor(self).map(|handles, act, ctx| {
            act.metrics.reader_mailbox.on_send();
            let committed = act.committed.send(Committed(handles));
            ctx.spawn(committed.into_actor(act).map(|sent, _, _| {
                if let Err(error) = sent {
                    log::error!(target: "conveyor::db_writer", "queue reader unreachable ({error}); its jobs stay in Redis and will run again");
                }
            }));
            let effects = act.batcher.on_written();
            act.apply(effects, ctx);
        }));
    }

    fn publish_gauges(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics
            .db_buffered
            .store(self.batcher.buffered() as u64, Relaxed);
        self.metrics
            .db_flushing
            .store(self.batcher.flushing() as u64, Relaxed);
    }
}

fn handles_of(batch: Batch) -> Vec<JobHandle> {
    batch
        .rows
        .into_iter()
        .map(|row| row.handle)
        .chain(batch.letters.into_iter().map(|letter| letter.handle))
        .collect()
}

/// Tries `attempt` until it succeeds, pausing by `backoff` after each
/// failure (reported through `on_failure`). Returns the failures.
async fn write_until_committed<F, Fut, E>(
    backoff: Backoff,
    mut attempt: F,
    mut on_failure: impl FnMut(u32, &E, Duration),
) -> u32
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut failures = 0;
    while let Err(error) = attempt().await {
        failures += 1;
        let delay = backoff.delay(failures);
        on_failure(failures, &error, delay);
        tokio::time::sleep(delay).await;
    }
    failures
}

impl Actor for DbWriter {
    type Context = Context<Self>;
}

impl Handler<Record> for DbWriter {
    type Result = ();

    fn handle(&mut self, msg: Record, ctx: &mut Self::Context) {
        self.metrics.db_writer_mailbox.on_handle();
        let (mut rows, mut letters) = (Vec::new(), Vec::new());
        for outcome in msg.0 {
            match outcome {
                Outcome::Finished(row) => rows.push(row),
                Outcome::Malformed(letter) => letters.push(letter),
                Outcome::Retry { handle, .. } | Outcome::Defer { handle, .. } => {
                    log::error!(target: "conveyor::db_writer", "job {} sent for writing without a final outcome; left in Redis", handle.token);
                }
            }
        }
        let effects = self.batcher.push(rows, letters);
        self.apply(effects, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_failed_write_is_retried_with_backoff_until_it_commits() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let tries = Cell::new(0);
        let mut delays = Vec::new();
        let failures = runtime.block_on(write_until_committed(
            Backoff::exponential(1, 4),
            || {
                tries.set(tries.get() + 1);
                let fail = tries.get() <= 4;
                async move {
                    if fail {
                        Err("mysql down")
                    } else {
                        Ok(())
                    }
                }
            },
            |n, error: &&str, delay| {
                assert_eq!(*error, "mysql down");
                assert_eq!(n as usize, delays.len() + 1);
                delays.push(delay.as_millis());
            },
        ));
        assert_eq!(failures, 4);
        assert_eq!(tries.get(), 5);
        assert_eq!(delays, [1, 2, 4, 4]);
    }
}
