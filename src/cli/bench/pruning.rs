//! W1 while a worker prunes: `--w1-old-rows N` puts N results finished a
//! year ago into `job_results` (untimed) and runs W1 with a 30-day
//! retention, so the worker under test deletes them while it writes W1's rows.
//!
//! This module owns those old rows. It must never touch rows but its own
//! queue's, and never leave them behind.

use std::sync::Arc;

use conveyor::job::{now_ms, FinalStatus, JobHandle, ResultRow};
use conveyor::store;

use super::{progress_bar, Bench};

/// Rows per seeding statement.
const SEED_CHUNK: usize = 5000;
/// How old the seeded rows are: far past the retention the run uses.
const SEED_AGE_MS: i64 = 365 * 24 * 3600 * 1000;

/// The old rows of one run.
pub(super) struct OldRows {
    queue: String,
    count: usize,
}

impl Bench {
    /// Writes `count` succeeded rows finished a year ago on a queue of their own.
    pub(super) async fn seed_old_rows(&self, count: usize) -> anyhow::Result<OldRows> {
        let queue: Arc<str> = super::workloads::bench_queue("w1-old").into();
        let finished = now_ms() - SEED_AGE_MS;
        let progress = progress_bar(count as u64, "seeding old rows");
        let mut rows = Vec::with_capacity(SEED_CHUNK);
        for i in 0..count {
            rows.push(ResultRow {
                handle: JobHandle {
                    queue: queue.clone(),
                    token: String::new(),
                },
                id: format!("old-{queue}-{i}"),
                kind: "noop".to_string(),
                status: FinalStatus::Succeeded,
                attempts: 1,
                output: Some(format!("{{\"i\":{i}}}")),
                error: None,
                enqueued_at_ms: Some(finished - 5),
                started_at_ms: Some(finished - 1),
                finished_at_ms: finished + (i as i64 % 1000),
                message: None,
            });
            if rows.len() == SEED_CHUNK || i + 1 == count {
                store::write_batch(&self.pool, "bench-seed", &rows, &[]).await?;
                progress.inc(rows.len() as u64);
                rows.clear();
            }
        }
        progress.finish_and_clear();
        Ok(OldRows {
            queue: queue.to_string(),
            count,
        })
    }
}

impl OldRows {
    /// Settings that make the worker under test prune them at once.
    pub(super) fn overrides(&self) -> Vec<(String, String)> {
        [
            ("CONVEYOR__RESULTS__RETENTION", "30d"),
            ("CONVEYOR__RESULTS__PRUNE_INTERVAL", "1s"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// How many were deleted so far, then deletes the rest; for the report.
    pub(super) async fn finish(self, bench: &Bench) -> anyhow::Result<String> {
        let left = store::count_queue_rows(&bench.pool, &self.queue).await?;
        store::delete_queue_rows(&bench.pool, &self.queue).await?;
        Ok(format!(
            "while pruning {} old rows ({} deleted during the run)",
            self.count,
            self.count as u64 - left.min(self.count as u64)
        ))
    }
}
