//! DbWriter: holds the mysql_async pool and writes final outcomes in batches.
//!
//! It owns: carrying out the [`batcher::Batcher`]'s decisions (a batch when
//! `db.batch_size` rows are ready; a partial one at once while fewer than
//! `db.eager_flushes` batches are being written, else after `db.flush_ms`;
//! up to `db.max_concurrent_flushes` batches in flight on different
//! connections),
//! writing each batch until it commits, and telling the QueueReader which
//! jobs are committed so they can leave Redis.
//!
//! It must never drop a batch: a failed write is retried with backoff until
//! it commits. A missing table or column is repaired by re-running the
//! schema steps; a failure that needs a person (access denied, a schema
//! that does not match) is reported at ERROR and through the worker's
//! blocker (`/ready`, the mailbox line), the QueueReader is told to stop
//! claiming ([`WritesBlocked`]), and the write is retried until someone
//! fixes it. Its buffer stays bounded because the QueueReader claims no
//! more than `queues.max_in_flight` jobs, which only commits release.

mod batcher;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use mysql_async::Pool;

use self::batcher::{Batch, BatchEffect, BatchLimits, Batcher};
use super::queue_reader::{Committed, WritesBlocked};
use crate::backoff::Backoff;
use crate::config::DbSettings;
use crate::health::WriteTrouble;
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
    /// The URL of `pool`, for messages (only its address is ever shown).
    mysql_url: Arc<str>,
    /// This process's worker id, written into every row.
    worker: Arc<str>,
    committed: Recipient<Committed>,
    blocked: Recipient<WritesBlocked>,
    flush_interval: Duration,
    backoff: Backoff,
    /// Pause between attempts while a MySQL problem needs a person.
    blocked_retry: Duration,
    metrics: Arc<Metrics>,
    batcher: Batcher,
}

impl DbWriter {
    pub(crate) fn new(
        (pool, mysql_url): (Pool, &str),
        worker: Arc<str>,
        committed: Recipient<Committed>,
        blocked: Recipient<WritesBlocked>,
        settings: DbSettings,
        metrics: Arc<Metrics>,
    ) -> DbWriter {
        DbWriter {
            pool,
            mysql_url: mysql_url.into(),
            worker,
            committed,
            blocked,
            flush_interval: Duration::from_millis(settings.flush_ms),
            backoff: Backoff::exponential(settings.retry_base_ms, settings.retry_max_ms),
            blocked_retry: Duration::from_millis(settings.retry_max_ms),
            metrics,
            batcher: Batcher::new(BatchLimits {
                batch_size: settings.batch_size,
                max_concurrent: settings.max_concurrent_flushes,
                eager_below: settings.eager_flushes,
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
        let blocked = self.blocked.clone();
        let trouble = WriteTrouble::new(
            &self.mysql_url,
            self.blocked_retry,
            Box::new(move |is_blocked| blocked.do_send(WritesBlocked(is_blocked))),
        );
        let write = async move {
            let begun = std::time::Instant::now();
            let (pool_ref, worker_ref, batch_ref) = (&pool, &*worker, &batch);
            let attempt = move || {
                store::write_batch(pool_ref, worker_ref, &batch_ref.rows, &batch_ref.letters)
            };
            let (trouble_ref, metrics_ref) = (&trouble, &*metrics);
            let on_failure = move |failures: u32, error: StoreError, delay: Duration| {
                Metrics::add(&metrics_ref.db_errors_total, 1);
                async move {
                    let what = format!("a batch of {size} rows (attempt {failures})");
                    trouble_ref
                        .after_failure(pool_ref, &error, &what, delay, &metrics_ref.blocker)
                        .await
                }
            };
            let failures = write_until_committed(backoff, attempt, on_failure).await;
            trouble.after_success(&metrics.blocker, failures);
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

/// Tries `attempt` until it succeeds. After each failure `on_failure` gets
/// the failure count, the error and the `backoff` delay, and answers how
/// long to pause (the delay, or another: none after a repair, longer while
/// a person must act). Returns the failures.
async fn write_until_committed<F, Fut, E, G, Wait>(
    backoff: Backoff,
    mut attempt: F,
    mut on_failure: G,
) -> u32
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    G: FnMut(u32, E, Duration) -> Wait,
    Wait: Future<Output = Duration>,
{
    let mut failures = 0;
    while let Err(error) = attempt().await {
        failures += 1;
        let pause = on_failure(failures, error, backoff.delay(failures)).await;
        tokio::time::sleep(pause).await;
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
                Outcome::Retry { handle, .. }
                | Outcome::Defer { handle, .. }
                | Outcome::RateLimited { handle, .. } => {
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
            |n, error: &str, delay| {
                assert_eq!(error, "mysql down");
                assert_eq!(n as usize, delays.len() + 1);
                delays.push(delay.as_millis());
                std::future::ready(delay)
            },
        ));
        assert_eq!(failures, 4);
        assert_eq!(tries.get(), 5);
        assert_eq!(delays, [1, 2, 4, 4]);
    }
}
