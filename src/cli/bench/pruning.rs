//! Rows put into `job_results` before W1 (untimed), on a queue of their own:
//!
//! - `--w1-old-rows N`: N results finished a year ago, and W1 runs with a
//!   30-day retention, so the worker under test deletes them while it writes
//!   W1's rows;
//! - `--prefill-rows N`: N results finished an hour ago that stay, so W1
//!   writes into a table that already holds them.
//!
//! This module owns those rows. It must never touch rows but its own
//! queue's, and never leave them behind.

use std::sync::Arc;

use mysql_async::prelude::Queryable as _;

use conveyor::job::{now_ms, FinalStatus, JobHandle, ResultRow};
use conveyor::store;

use super::{progress_bar, Bench};

/// Rows per seeding statement.
const SEED_CHUNK: usize = 5000;
/// Rows per DELETE when removing them (small transactions, even for millions).
const DELETE_CHUNK: usize = 10_000;
/// How old the old rows are: far past the retention the run uses.
const OLD_AGE_MS: i64 = 365 * 24 * 3600 * 1000;
/// How old the prefilled rows are: recent, so no usual retention prunes them.
const PREFILL_AGE_MS: i64 = 3600 * 1000;

/// The old rows of one run.
pub(super) struct OldRows {
    queue: String,
    count: usize,
}

impl Bench {
    /// Writes `count` succeeded rows finished a year ago on a queue of their own.
    pub(super) async fn seed_old_rows(&self, count: usize) -> anyhow::Result<OldRows> {
        self.seed_rows("w1-old", count, OLD_AGE_MS).await
    }

    /// Writes `count` succeeded rows finished an hour ago on a queue of their own.
    pub(super) async fn prefill_rows(&self, count: usize) -> anyhow::Result<OldRows> {
        self.seed_rows("w1-prefill", count, PREFILL_AGE_MS).await
    }

    async fn seed_rows(&self, label: &str, count: usize, age_ms: i64) -> anyhow::Result<OldRows> {
        let queue: Arc<str> = super::workloads::bench_queue(label).into();
        let finished = now_ms() - age_ms;
        let progress = progress_bar(count as u64, "seeding rows");
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
        let count = self.count;
        self.remove(bench).await?;
        Ok(format!(
            "while pruning {count} old rows ({} deleted during the run)",
            count as u64 - left.min(count as u64)
        ))
    }

    /// Deletes them all, in small transactions; for the report.
    pub(super) async fn remove(self, bench: &Bench) -> anyhow::Result<String> {
        let mut conn = bench.pool.get_conn().await?;
        loop {
            conn.exec_drop(
                format!("DELETE FROM job_results WHERE queue = ? LIMIT {DELETE_CHUNK}"),
                (&self.queue,),
            )
            .await?;
            if conn.affected_rows() == 0 {
                break;
            }
        }
        Ok(format!("into a table holding {} other rows", self.count))
    }
}
