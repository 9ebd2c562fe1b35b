//! DbWriter: holds the mysql_async pool and writes final outcomes in batches.
//!
//! It owns: buffering result rows and dead letters, flushing a batch when
//! `db.batch_size` rows are ready or every `db.flush_ms`, with up to
//! `db.max_concurrent_flushes` batches in flight on different connections,
//! and telling the QueueReader which jobs are committed so they can leave Redis.
//!
//! It must never drop a batch: a failed write is retried with backoff until
//! it commits. A missing table or column is repaired by re-running the
//! schema steps; a failure that needs a person (access denied, a schema
//! that does not match) is reported at ERROR and through the worker's
//! blocker (`/ready`, the mailbox line, claiming paused), and the write is
//! retried until someone fixes it. Its buffer stays bounded because the
//! QueueReader claims no more than `queues.max_in_flight` jobs, which only
//! commits release.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use mysql_async::Pool;

use crate::config::DbSettings;
use crate::health::WriteTrouble;
use crate::job::{DeadLetter, JobHandle, Outcome, ResultRow};
use crate::metrics::Metrics;
use crate::store;

/// Final outcomes to write (`Finished` and `Malformed` only).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Record(pub Vec<Outcome>);

/// Sent to the QueueReader: these jobs' rows are committed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Committed(pub Vec<JobHandle>);

pub struct DbWriter {
    pool: Pool,
    /// The URL of `pool`, for messages (its address only is ever shown).
    mysql_url: Arc<str>,
    /// This process's worker id, written into every row.
    worker: Arc<str>,
    committed: Recipient<Committed>,
    settings: DbSettings,
    metrics: Arc<Metrics>,
    rows: Vec<ResultRow>,
    letters: Vec<DeadLetter>,
    /// Batches being written now.
    flushing: usize,
    /// The pending flush of a partial batch, armed while rows wait (an idle
    /// writer sets no timers, so an idle worker costs no CPU).
    flush_timer: Option<SpawnHandle>,
}

impl DbWriter {
    pub fn new(
        pool: Pool,
        mysql_url: &str,
        worker: Arc<str>,
        committed: Recipient<Committed>,
        settings: DbSettings,
        metrics: Arc<Metrics>,
    ) -> DbWriter {
        DbWriter {
            pool,
            mysql_url: mysql_url.into(),
            worker,
            committed,
            settings,
            metrics,
            rows: Vec::new(),
            letters: Vec::new(),
            flushing: 0,
            flush_timer: None,
        }
    }

    fn buffered(&self) -> usize {
        self.rows.len() + self.letters.len()
    }

    /// Starts as many batch writes as the limits allow; with `partial`, a
    /// batch smaller than `db.batch_size` goes too (the flush timer). Rows
    /// left waiting arm the timer.
    fn flush(&mut self, ctx: &mut Context<Self>, partial: bool) {
        self.start_writes(ctx, partial);
        if self.buffered() > 0 && self.flush_timer.is_none() {
            let wait = Duration::from_millis(self.settings.flush_ms);
            self.flush_timer = Some(ctx.run_later(wait, |act, ctx| {
                act.flush_timer = None;
                act.flush(ctx, true);
            }));
        }
    }

    fn start_writes(&mut self, ctx: &mut Context<Self>, partial: bool) {
        while self.flushing < self.settings.max_concurrent_flushes {
            let ready = self.buffered();
            if ready == 0 || (!partial && ready < self.settings.batch_size) {
                break;
            }
            let take_rows = self.rows.len().min(self.settings.batch_size);
            let rows: Vec<ResultRow> = self.rows.drain(..take_rows).collect();
            let take_letters = self.letters.len().min(self.settings.batch_size - take_rows);
            let letters: Vec<DeadLetter> = self.letters.drain(..take_letters).collect();
            self.flushing += 1;
            self.publish_gauges();
            let write = write_until_committed(
                self.pool.clone(),
                WriteTrouble::new(
                    &self.mysql_url,
                    Duration::from_millis(self.settings.retry_max_ms),
                ),
                self.worker.clone(),
                rows,
                letters,
                self.settings.clone(),
                self.metrics.clone(),
            );
            ctx.spawn(write.into_actor(self).map(|handles, act, ctx| {
                act.flushing -= 1;
                act.publish_gauges();
                act.metrics.reader_mailbox.on_send();
                let committed = act.committed.send(Committed(handles));
                ctx.spawn(committed.into_actor(act).map(|sent, _, _| {
                    if let Err(error) = sent {
                        log::error!(target: "conveyor::db_writer", "queue reader unreachable ({error}); its jobs stay in Redis and will run again");
                    }
                }));
                act.flush(ctx, false);
            }));
        }
    }

    fn publish_gauges(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics
            .db_buffered
            .store(self.buffered() as u64, Relaxed);
        self.metrics
            .db_flushing
            .store(self.flushing as u64, Relaxed);
    }
}

/// Writes one batch, retrying with backoff until MySQL commits it.
/// Returns the handles of the committed jobs.
async fn write_until_committed(
    pool: Pool,
    mut trouble: WriteTrouble,
    worker: Arc<str>,
    rows: Vec<ResultRow>,
    letters: Vec<DeadLetter>,
    settings: DbSettings,
    metrics: Arc<Metrics>,
) -> Vec<JobHandle> {
    let begun = std::time::Instant::now();
    let mut delay = Duration::from_millis(settings.retry_base_ms);
    let mut failures = 0u32;
    loop {
        match store::write_batch(&pool, &worker, &rows, &letters).await {
            Ok(()) => break,
            Err(error) => {
                failures += 1;
                Metrics::add(&metrics.db_errors_total, 1);
                let what = format!(
                    "a batch of {} rows (attempt {failures})",
                    rows.len() + letters.len()
                );
                let wait = trouble
                    .after_failure(&pool, &error, &what, delay, &metrics.blocker)
                    .await;
                tokio::time::sleep(wait).await;
                if wait == delay {
                    delay = (delay * 2).min(Duration::from_millis(settings.retry_max_ms));
                }
            }
        }
    }
    trouble.after_success(&metrics.blocker, failures);
    metrics.record_db_batch(rows.len() + letters.len(), begun.elapsed().as_secs_f64());
    Metrics::add(&metrics.db_batches_total, 1);
    Metrics::add(
        &metrics.committed_total,
        (rows.len() + letters.len()) as u64,
    );
    rows.into_iter()
        .map(|row| row.handle)
        .chain(letters.into_iter().map(|letter| letter.handle))
        .collect()
}

impl Actor for DbWriter {
    type Context = Context<Self>;
}

impl Handler<Record> for DbWriter {
    type Result = ();

    fn handle(&mut self, msg: Record, ctx: &mut Self::Context) {
        self.metrics.db_writer_mailbox.on_handle();
        for outcome in msg.0 {
            match outcome {
                Outcome::Finished(row) => self.rows.push(row),
                Outcome::Malformed(letter) => self.letters.push(letter),
                Outcome::Retry { handle, .. } | Outcome::Defer { handle, .. } => {
                    log::error!(target: "conveyor::db_writer", "job {} sent for writing without a final outcome; left in Redis", handle.token);
                }
            }
        }
        self.publish_gauges();
        self.flush(ctx, false);
    }
}
