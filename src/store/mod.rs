//! Every SQL statement conveyor runs, and the schema migrations.
//!
//! This module owns the MySQL/MariaDB schema and the idempotent writes that
//! turn at-least-once delivery into exactly one row per job. It must never
//! know about actors or Redis, and never build SQL from values but through
//! `literal` (the result batch) or placeholders (everything else).
//!
//! # Layout
//!
//! - this file: the pool, the migrations and the batch writes of results and
//!   dead letters;
//! - `lookup`: reading `job_results` rows (a job by id, a schedule's runs), and the helpers of
//!   benchmarks and tools;
//! - `dead`: dead jobs and dead letters, listed and purged by filter;
//! - `prune`: deleting results past their retention, in small batches;
//! - `literal`: values as SQL literals, for the one text statement per result batch.

mod dead;
mod health;
mod literal;
mod lookup;
mod prune;

use chrono::{DateTime, Datelike, Timelike};
use mysql_async::prelude::*;
use mysql_async::{Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, Value};

use crate::config::MysqlSettings;
use crate::job::{DeadLetter, ResultRow};
use crate::redact::redact_url;

pub use dead::{
    count_matching, dead_counts, list_dead, list_dead_letters, purge, DeadFilter, DeadJob,
    DeadLetterRecord,
};
pub use health::{address, describe, remedy, repair, Remedy};
pub use lookup::{
    count_queue_rows, delete_queue_rows, existing_ids, find_message, find_result,
    runs_by_id_prefix, start_times, JobRecord, RunRecord,
};
pub use prune::{count_prunable, prune_batch, PruneClass};

/// A MySQL operation that failed; the rows it carried are still owed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Shown by its root cause only ([`describe`]): mysql_async nests the
    /// same I/O error several times, and a chain printer would repeat it.
    #[error("{}", describe(.0))]
    Mysql(mysql_async::Error),
    /// The schema migration lock stayed taken (seconds waited).
    #[error("another process held the schema migration lock for {0} s")]
    MigrationLock(u32),
    /// The URL cannot be used.
    #[error("mysql URL {url}: {message}")]
    Url {
        /// The URL, password masked.
        url: String,
        /// Why.
        message: String,
    },
    /// The TLS CA file of `mysql.tls_ca_file` cannot be used.
    #[error(transparent)]
    Tls(crate::config::ConfigError),
    /// An operation the store does not offer (e.g. a purge with an offset).
    #[error("not supported: {0}")]
    Unsupported(&'static str),
}

impl From<mysql_async::Error> for StoreError {
    fn from(error: mysql_async::Error) -> StoreError {
        StoreError::Mysql(error)
    }
}

/// Schema steps, applied in order once each; the version is the position + 1.
/// Tables are utf8mb4 with binary collation so job ids compare exactly.
const MIGRATIONS: &[&str] = &[
    r"CREATE TABLE IF NOT EXISTS job_results (
        id VARCHAR(64) NOT NULL PRIMARY KEY,
        queue VARCHAR(64) NOT NULL,
        kind VARCHAR(64) NOT NULL,
        status VARCHAR(16) NOT NULL,
        attempts INT NOT NULL,
        output JSON NULL,
        error TEXT NULL,
        enqueued_at DATETIME(6) NULL,
        started_at DATETIME(6) NULL,
        finished_at DATETIME(6) NULL,
        worker VARCHAR(128) NOT NULL,
        KEY job_results_status_finished (status, finished_at),
        KEY job_results_queue_kind (queue, kind)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    r"CREATE TABLE IF NOT EXISTS dead_letters (
        id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        claim_token VARCHAR(64) NOT NULL,
        queue VARCHAR(64) NOT NULL,
        raw LONGBLOB NOT NULL,
        reason TEXT NOT NULL,
        received_at DATETIME(6) NOT NULL,
        UNIQUE KEY dead_letters_claim_token (claim_token),
        KEY dead_letters_received (received_at)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    // The original message of dead jobs, so `conveyor dead retry` can re-enqueue them.
    r"ALTER TABLE job_results ADD COLUMN message LONGBLOB NULL AFTER worker",
    // One secondary index instead of two: every row write maintains each
    // index, and this one serves every lookup but by id (dead jobs by queue,
    // kind and age; rows of a queue by status).
    r"ALTER TABLE job_results
        DROP INDEX job_results_status_finished,
        DROP INDEX job_results_queue_kind,
        ADD INDEX job_results_status_queue_finished (status, queue, finished_at)",
    // Result retention deletes the oldest rows first, in small batches: an
    // index led by finished_at lets each batch read only the rows it deletes.
    r"ALTER TABLE job_results ADD INDEX job_results_finished (finished_at)",
];

/// Serialises concurrent migrations of several workers starting at once.
const MIGRATION_LOCK: &str = "conveyor_schema_migration";
/// Seconds a worker waits for another one's migration to finish.
const MIGRATION_LOCK_WAIT_S: u32 = 60;

/// Opens a pool of at most `pool_max` connections (opened on demand) to
/// `mysql.url`, over TLS checked against `mysql.tls_ca_file` when it is set.
pub fn open_pool(settings: &MysqlSettings, pool_max: usize) -> Result<Pool, StoreError> {
    let url = &settings.url;
    let bad_url = |message: String| StoreError::Url {
        url: redact_url(url),
        message,
    };
    let opts = Opts::from_url(url).map_err(|e| bad_url(e.to_string()))?;
    let constraints = PoolConstraints::new(0, pool_max.max(1))
        .ok_or_else(|| bad_url("invalid pool size".to_string()))?;
    let ssl = match settings.tls_ca().map_err(StoreError::Tls)? {
        Some(pem) => Some(
            opts.ssl_opts()
                .cloned()
                .unwrap_or_default()
                .with_root_certs(vec![pem.into()])
                .with_disable_built_in_roots(true),
        ),
        None => opts.ssl_opts().cloned(),
    };
    let opts = OptsBuilder::from_opts(opts)
        .ssl_opts(ssl)
        .pool_opts(PoolOpts::default().with_constraints(constraints))
        // Times are stored as UTC wall-clock values.
        .init(vec!["SET time_zone = '+00:00'"]);
    Ok(Pool::new(opts))
}

/// Creates or upgrades the schema; safe to run from many workers at once.
/// Returns the schema version now in place.
pub async fn migrate(pool: &Pool) -> Result<usize, StoreError> {
    let mut conn = pool.get_conn().await?;
    lock_migrations(&mut conn).await?;
    let result = apply_migrations(&mut conn).await;
    unlock_migrations(&mut conn).await?;
    result
}

/// Takes the lock that serialises schema changes across processes.
async fn lock_migrations(conn: &mut mysql_async::Conn) -> Result<(), StoreError> {
    let locked: Option<Option<i64>> = conn
        .exec_first(
            "SELECT GET_LOCK(?, ?)",
            (MIGRATION_LOCK, MIGRATION_LOCK_WAIT_S),
        )
        .await?;
    if locked.flatten() != Some(1) {
        return Err(StoreError::MigrationLock(MIGRATION_LOCK_WAIT_S));
    }
    Ok(())
}

async fn unlock_migrations(conn: &mut mysql_async::Conn) -> Result<(), StoreError> {
    let _: Option<i64> = conn
        .exec_first("SELECT RELEASE_LOCK(?)", (MIGRATION_LOCK,))
        .await?;
    Ok(())
}

async fn apply_migrations(conn: &mut mysql_async::Conn) -> Result<usize, StoreError> {
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS conveyor_schema (version INT NOT NULL PRIMARY KEY,
         applied_at DATETIME(6) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    )
    .await?;
    let current: Option<i64> = conn
        .query_first("SELECT COALESCE(MAX(version), 0) FROM conveyor_schema")
        .await?;
    let current = current.unwrap_or(0).max(0) as usize;
    for (index, statement) in MIGRATIONS.iter().enumerate().skip(current) {
        conn.query_drop(*statement).await?;
        conn.exec_drop(
            "INSERT INTO conveyor_schema (version, applied_at) VALUES (?, UTC_TIMESTAMP(6))",
            (index + 1,),
        )
        .await?;
        log::info!(target: "conveyor::store", "schema migrated to version {}", index + 1);
    }
    Ok(MIGRATIONS.len())
}

const RESULT_COLUMNS: &str = "id, queue, kind, status, attempts, output, error, enqueued_at, \
     started_at, finished_at, worker, message";

/// On a duplicate id the newer result wins, except that a `succeeded` row is
/// never turned into `dead` or `cancelled` (a stale redelivery, or a cancel
/// that came too late, must not undo a success).
/// `status` is assigned last: MySQL evaluates assignments left to right.
const RESULT_UPSERT_TAIL: &str = " ON DUPLICATE KEY UPDATE
    queue = IF(status = 'succeeded' AND VALUES(status) <> 'succeeded', queue, VALUES(queue)),
    kind = IF(status = 'succeeded' AND VALUES(status) <> 'succeeded', kind, VALUES(kind)),
    attempts = IF(status = 'succeeded' AND VALUES(status) <> 'succeeded', attempts, VALUES(attempts)),
    output = IF(status = 'succeeded' AND VALUES(status) <> 'succeeded', output, VALUES(output)),
    error = IF(status = 'succeeded' AND VALUES(status) <> 'succeeded', error, VALUES(error)),
    enqueued_at = IF(status = 'succeeded' AND VALUES(status) <> 'succeeded', enqueued_at, VALUES(enqueued_at)),
    started_at = IF(status = 'succeeded' AND VALUES(status) <> 'succeeded', started_at, VALUES(started_at)),
    finished_at = IF(status = 'succeeded' AND VALUES(status) <> 'succeeded', finished_at, VALUES(finished_at)),
    worker = IF(status = 'succeeded' AND VALUES(status) <> 'succeeded', worker, VALUES(worker)),
    message = IF(status = 'succeeded' AND VALUES(status) <> 'succeeded', message, VALUES(message)),
    status = IF(status = 'succeeded' AND VALUES(status) <> 'succeeded', status, VALUES(status))";

/// Writes a batch of results and dead letters atomically: one autocommit
/// statement when the batch holds only one kind of row (one round trip), a
/// transaction when it holds both. Idempotent: writing the same batch twice
/// leaves the same rows.
pub async fn write_batch(
    pool: &Pool,
    worker: &str,
    rows: &[ResultRow],
    letters: &[DeadLetter],
) -> Result<(), StoreError> {
    let mut conn = pool.get_conn().await?;
    match (rows.is_empty(), letters.is_empty()) {
        (true, true) => {}
        (false, true) => upsert_results(&mut conn, worker, rows).await?,
        (true, false) => insert_dead_letters(&mut conn, letters).await?,
        (false, false) => {
            let mut tx = conn
                .start_transaction(mysql_async::TxOpts::default())
                .await?;
            upsert_results(&mut tx, worker, rows).await?;
            insert_dead_letters(&mut tx, letters).await?;
            tx.commit().await?;
        }
    }
    Ok(())
}

async fn upsert_results(
    conn: &mut impl Queryable,
    worker: &str,
    rows: &[ResultRow],
) -> Result<(), StoreError> {
    let mut sql = String::with_capacity(256 + rows.len() * 256);
    sql.push_str("INSERT INTO job_results (");
    sql.push_str(RESULT_COLUMNS);
    sql.push_str(") VALUES ");
    let mut times = literal::Datetimes::default();
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        push_result_row(&mut sql, &mut times, row, worker);
    }
    sql.push_str(RESULT_UPSERT_TAIL);
    conn.query_drop(sql).await?;
    Ok(())
}

async fn insert_dead_letters(
    conn: &mut impl Queryable,
    letters: &[DeadLetter],
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO dead_letters (claim_token, queue, raw, reason, received_at) VALUES {}
         ON DUPLICATE KEY UPDATE claim_token = claim_token",
        placeholders(letters.len(), 5)
    );
    let mut params = Vec::with_capacity(letters.len() * 5);
    for letter in letters {
        params.push(Value::from(letter.handle.token.as_str()));
        params.push(Value::from(&*letter.handle.queue));
        params.push(Value::Bytes(letter.raw.clone()));
        params.push(Value::from(letter.reason.as_str()));
        params.push(datetime(Some(letter.received_at_ms)));
    }
    conn.exec_drop(sql, Params::Positional(params)).await?;
    Ok(())
}

/// One `job_results` row's values, in the order of [`RESULT_COLUMNS`].
fn push_result_row(
    sql: &mut String,
    times: &mut literal::Datetimes,
    row: &ResultRow,
    worker: &str,
) {
    let mut values = literal::RowLiterals::open(sql);
    values
        .text(&row.id)
        .text(&row.handle.queue)
        .text(&row.kind)
        .text(row.status.as_str())
        .int(i64::from(row.attempts))
        .opt_text(row.output.as_deref())
        .opt_text(row.error.as_deref())
        .datetime_ms(times, row.enqueued_at_ms)
        .datetime_ms(times, row.started_at_ms)
        .datetime_ms(times, Some(row.finished_at_ms))
        .text(worker)
        .opt_bytes(row.message.as_deref());
    values.close();
}

/// `(?, ?, ?), (?, ?, ?)` for `rows` rows of `columns` columns.
fn placeholders(rows: usize, columns: usize) -> String {
    let one = format!("({})", vec!["?"; columns].join(", "));
    vec![one; rows].join(", ")
}

/// A unix-millisecond time as a DATETIME(6) value in UTC; NULL when absent
/// or outside the range MySQL can store.
fn datetime(unix_ms: Option<i64>) -> Value {
    let Some(time) = unix_ms.and_then(DateTime::from_timestamp_millis) else {
        return Value::NULL;
    };
    if !(1000..=9999).contains(&time.year()) {
        return Value::NULL;
    }
    Value::Date(
        time.year() as u16,
        time.month() as u8,
        time.day() as u8,
        time.hour() as u8,
        time.minute() as u8,
        time.second() as u8,
        time.timestamp_subsec_micros(),
    )
}

/// Whether MySQL answers (for readiness checks).
pub async fn ping(pool: &Pool) -> Result<(), StoreError> {
    let mut conn = pool.get_conn().await?;
    conn.ping().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_shape() {
        assert_eq!(placeholders(2, 3), "(?, ?, ?), (?, ?, ?)");
    }

    #[test]
    fn datetimes_are_utc_with_microseconds() {
        assert_eq!(
            datetime(Some(1_700_000_000_123)),
            Value::Date(2023, 11, 14, 22, 13, 20, 123_000)
        );
        assert_eq!(datetime(None), Value::NULL);
        assert_eq!(datetime(Some(-99_999_999_999_999)), Value::NULL);
    }
}
