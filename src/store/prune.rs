//! Deleting old results: the statements of result retention.
//!
//! This module owns how rows past their retention are found and deleted:
//! oldest first, through the index led by `finished_at` (`received_at` for
//! dead letters), at most one small batch per statement, in READ COMMITTED
//! so a batch locks only the rows it deletes. It must never delete a row
//! finished at or after the cutoff it is given, and never run an unbounded
//! DELETE.

use mysql_async::prelude::*;
use mysql_async::{IsolationLevel, Pool, TxOpts};

use super::lookup::nothing_if_no_table;
use super::{datetime, StoreError};

/// Which rows one statement prunes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneClass {
    /// `job_results` rows of every status (one retention for all).
    AllResults,
    /// `job_results` rows of every status but `dead`.
    NotDead,
    /// `dead` `job_results` rows.
    Dead,
    /// `dead_letters` rows, by `received_at`.
    DeadLetters,
}

impl PruneClass {
    /// `FROM ... WHERE ...` with one placeholder, the cutoff.
    fn table_and_filter(self) -> &'static str {
        match self {
            PruneClass::AllResults => "FROM job_results WHERE finished_at < ?",
            PruneClass::NotDead => "FROM job_results WHERE finished_at < ? AND status <> 'dead'",
            PruneClass::Dead => "FROM job_results WHERE finished_at < ? AND status = 'dead'",
            PruneClass::DeadLetters => "FROM dead_letters WHERE received_at < ?",
        }
    }

    fn order(self) -> &'static str {
        match self {
            PruneClass::DeadLetters => "ORDER BY received_at",
            _ => "ORDER BY finished_at",
        }
    }
}

/// Deletes up to `batch` of the oldest rows of `class` that finished before
/// `cutoff_ms` (unix ms); the number deleted.
pub async fn prune_batch(
    pool: &Pool,
    class: PruneClass,
    cutoff_ms: i64,
    batch: usize,
) -> Result<u64, StoreError> {
    let sql = format!(
        "DELETE {} {} LIMIT {}",
        class.table_and_filter(),
        class.order(),
        batch.max(1)
    );
    let mut conn = pool.get_conn().await?;
    let mut options = TxOpts::default();
    // READ COMMITTED takes no gap locks: inserts next to the deleted range
    // never wait for the batch.
    options.with_isolation_level(IsolationLevel::ReadCommitted);
    let mut tx = conn.start_transaction(options).await?;
    let deleted = match tx.exec_drop(sql, (datetime(Some(cutoff_ms)),)).await {
        Ok(()) => tx.affected_rows(),
        Err(error) => return nothing_if_no_table(Err(error)),
    };
    tx.commit().await?;
    Ok(deleted)
}

/// How many rows of `class` finished before `cutoff_ms`.
pub async fn count_prunable(
    pool: &Pool,
    class: PruneClass,
    cutoff_ms: i64,
) -> Result<u64, StoreError> {
    let mut conn = pool.get_conn().await?;
    let sql = format!("SELECT COUNT(*) {}", class.table_and_filter());
    let count: Option<u64> =
        nothing_if_no_table(conn.exec_first(sql, (datetime(Some(cutoff_ms)),)).await)?;
    Ok(count.unwrap_or(0))
}
