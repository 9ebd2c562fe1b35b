//! Every SQL statement conveyor runs, and the schema migrations.
//!
//! This module owns the MySQL/MariaDB schema and the idempotent writes that
//! turn at-least-once delivery into exactly one row per job. It must never
//! know about actors or Redis, and never build SQL from values (placeholders only).

use chrono::{DateTime, Datelike, Timelike};
use mysql_async::prelude::*;
use mysql_async::{Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, Value};

use crate::config::redact_url;
use crate::job::{DeadLetter, ResultRow};

/// A MySQL operation that failed; the rows it carried are still owed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("mysql: {0}")]
    Mysql(#[from] mysql_async::Error),
    #[error("another process held the schema migration lock for {0} s")]
    MigrationLock(u32),
    #[error("mysql URL {url}: {message}")]
    Url { url: String, message: String },
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
];

/// Serialises concurrent migrations of several workers starting at once.
const MIGRATION_LOCK: &str = "conveyor_schema_migration";
/// Seconds a worker waits for another one's migration to finish.
const MIGRATION_LOCK_WAIT_S: u32 = 60;

/// Opens a pool of at most `pool_max` connections (opened on demand).
pub fn open_pool(url: &str, pool_max: usize) -> Result<Pool, StoreError> {
    let opts = Opts::from_url(url).map_err(|e| StoreError::Url {
        url: redact_url(url),
        message: e.to_string(),
    })?;
    let constraints = PoolConstraints::new(0, pool_max.max(1)).ok_or_else(|| StoreError::Url {
        url: redact_url(url),
        message: "invalid pool size".to_string(),
    })?;
    let opts = OptsBuilder::from_opts(opts)
        .pool_opts(PoolOpts::default().with_constraints(constraints))
        // Times are stored as UTC wall-clock values.
        .init(vec!["SET time_zone = '+00:00'"]);
    Ok(Pool::new(opts))
}

/// Creates or upgrades the schema; safe to run from many workers at once.
/// Returns the schema version now in place.
pub async fn migrate(pool: &Pool) -> Result<usize, StoreError> {
    let mut conn = pool.get_conn().await?;
    let locked: Option<Option<i64>> = conn
        .exec_first(
            "SELECT GET_LOCK(?, ?)",
            (MIGRATION_LOCK, MIGRATION_LOCK_WAIT_S),
        )
        .await?;
    if locked.flatten() != Some(1) {
        return Err(StoreError::MigrationLock(MIGRATION_LOCK_WAIT_S));
    }
    let result = apply_migrations(&mut conn).await;
    let _: Option<i64> = conn
        .exec_first("SELECT RELEASE_LOCK(?)", (MIGRATION_LOCK,))
        .await?;
    result
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
/// Placeholders per `job_results` row: one per column above.
const RESULT_PARAMS: usize = 12;

/// On a duplicate id the newer result wins, except that a `succeeded` row is
/// never turned back into `dead` (a stale redelivery must not undo a success).
/// `status` is assigned last: MySQL evaluates assignments left to right.
const RESULT_UPSERT_TAIL: &str = " ON DUPLICATE KEY UPDATE
    queue = IF(status = 'succeeded' AND VALUES(status) = 'dead', queue, VALUES(queue)),
    kind = IF(status = 'succeeded' AND VALUES(status) = 'dead', kind, VALUES(kind)),
    attempts = IF(status = 'succeeded' AND VALUES(status) = 'dead', attempts, VALUES(attempts)),
    output = IF(status = 'succeeded' AND VALUES(status) = 'dead', output, VALUES(output)),
    error = IF(status = 'succeeded' AND VALUES(status) = 'dead', error, VALUES(error)),
    enqueued_at = IF(status = 'succeeded' AND VALUES(status) = 'dead', enqueued_at, VALUES(enqueued_at)),
    started_at = IF(status = 'succeeded' AND VALUES(status) = 'dead', started_at, VALUES(started_at)),
    finished_at = IF(status = 'succeeded' AND VALUES(status) = 'dead', finished_at, VALUES(finished_at)),
    worker = IF(status = 'succeeded' AND VALUES(status) = 'dead', worker, VALUES(worker)),
    message = IF(status = 'succeeded' AND VALUES(status) = 'dead', message, VALUES(message)),
    status = IF(status = 'succeeded' AND VALUES(status) = 'dead', status, VALUES(status))";

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
    let sql = format!(
        "INSERT INTO job_results ({RESULT_COLUMNS}) VALUES {}{RESULT_UPSERT_TAIL}",
        placeholders(rows.len(), RESULT_PARAMS)
    );
    let mut params = Vec::with_capacity(rows.len() * RESULT_PARAMS);
    for row in rows {
        push_result_params(&mut params, row, worker);
    }
    conn.exec_drop(sql, Params::Positional(params)).await?;
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

fn push_result_params(params: &mut Vec<Value>, row: &ResultRow, worker: &str) {
    params.push(Value::from(row.id.as_str()));
    params.push(Value::from(&*row.handle.queue));
    params.push(Value::from(row.kind.as_str()));
    params.push(Value::from(row.status.as_str()));
    params.push(Value::from(row.attempts));
    params.push(row.output.as_deref().map_or(Value::NULL, Value::from));
    params.push(row.error.as_deref().map_or(Value::NULL, Value::from));
    params.push(datetime(row.enqueued_at_ms));
    params.push(datetime(row.started_at_ms));
    params.push(datetime(Some(row.finished_at_ms)));
    params.push(Value::from(worker));
    params.push(row.message.clone().map_or(Value::NULL, Value::Bytes));
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

/// Rows of `job_results` in `queue` (benchmarks and tools).
pub async fn count_queue_rows(pool: &Pool, queue: &str) -> Result<u64, StoreError> {
    let mut conn = pool.get_conn().await?;
    let count: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM job_results WHERE status IN ('succeeded', 'dead') AND queue = ?",
            (queue,),
        )
        .await?;
    Ok(count.unwrap_or(0))
}

/// Which of `ids` have a `job_results` row.
pub async fn existing_ids(pool: &Pool, ids: &[String]) -> Result<Vec<String>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = pool.get_conn().await?;
    let sql = format!(
        "SELECT id FROM job_results WHERE id IN ({})",
        vec!["?"; ids.len()].join(", ")
    );
    Ok(conn.exec(sql, ids.to_vec()).await?)
}

/// Deletes every row of `queue` from both tables. Returns rows deleted.
pub async fn delete_queue_rows(pool: &Pool, queue: &str) -> Result<u64, StoreError> {
    let mut conn = pool.get_conn().await?;
    conn.exec_drop("DELETE FROM job_results WHERE queue = ?", (queue,))
        .await?;
    let results = conn.affected_rows();
    conn.exec_drop("DELETE FROM dead_letters WHERE queue = ?", (queue,))
        .await?;
    Ok(results + conn.affected_rows())
}

/// Whether MySQL answers (for readiness checks).
pub async fn ping(pool: &Pool) -> Result<(), StoreError> {
    let mut conn = pool.get_conn().await?;
    conn.ping().await?;
    Ok(())
}

/// `DATE_FORMAT` pattern of RFC 3339 UTC times with microseconds.
const RFC3339_UTC: &str = "'%Y-%m-%dT%H:%i:%s.%fZ'";

/// MySQL's "table doesn't exist": the schema has not been created yet.
const ER_NO_SUCH_TABLE: u16 = 1146;

/// A read of a table that does not exist yet (no worker has migrated) finds nothing.
fn nothing_if_no_table<T: Default>(result: Result<T, mysql_async::Error>) -> Result<T, StoreError> {
    match result {
        Err(mysql_async::Error::Server(error)) if error.code == ER_NO_SUCH_TABLE => {
            Ok(T::default())
        }
        other => Ok(other?),
    }
}

/// A `job_results` row as the API and the CLI show it; times are RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JobRecord {
    pub id: String,
    pub queue: String,
    pub kind: String,
    pub status: String,
    pub attempts: u32,
    /// The handler's output as JSON text.
    pub output: Option<String>,
    pub error: Option<String>,
    pub enqueued_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub worker: String,
}

type RecordRow = (
    String,
    String,
    String,
    String,
    u32,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

fn record_columns() -> String {
    let time = |column: &str| format!("DATE_FORMAT({column}, {RFC3339_UTC})");
    format!(
        "id, queue, kind, status, attempts, CAST(output AS CHAR), error, {}, {}, {}, worker",
        time("enqueued_at"),
        time("started_at"),
        time("finished_at")
    )
}

fn record_from(row: RecordRow) -> JobRecord {
    let (
        id,
        queue,
        kind,
        status,
        attempts,
        output,
        error,
        enqueued_at,
        started_at,
        finished_at,
        worker,
    ) = row;
    JobRecord {
        id,
        queue,
        kind,
        status,
        attempts,
        output,
        error,
        enqueued_at,
        started_at,
        finished_at,
        worker,
    }
}

/// The final row of job `id` (in `queue`, when given), if it has one.
pub async fn find_result(
    pool: &Pool,
    id: &str,
    queue: Option<&str>,
) -> Result<Option<JobRecord>, StoreError> {
    let mut conn = pool.get_conn().await?;
    let mut sql = format!("SELECT {} FROM job_results WHERE id = ?", record_columns());
    let mut params = vec![Value::from(id)];
    if let Some(queue) = queue {
        sql.push_str(" AND queue = ?");
        params.push(Value::from(queue));
    }
    let row: Option<RecordRow> =
        nothing_if_no_table(conn.exec_first(sql, Params::Positional(params)).await)?;
    Ok(row.map(record_from))
}

/// Dead `job_results` rows per queue.
pub async fn dead_counts(pool: &Pool) -> Result<Vec<(String, u64)>, StoreError> {
    let mut conn = pool.get_conn().await?;
    nothing_if_no_table(
        conn.query("SELECT queue, COUNT(*) FROM job_results WHERE status = 'dead' GROUP BY queue")
            .await,
    )
}

/// Which dead jobs (or dead letters) a `conveyor dead` command acts on.
#[derive(Debug, Clone, Default)]
pub struct DeadFilter {
    /// Only these ids (job ids; the numeric ids of dead letters).
    pub ids: Vec<String>,
    /// Only this kind (dead jobs only: dead letters have no kind).
    pub kind: Option<String>,
    pub queue: Option<String>,
    /// Only rows finished (received, for dead letters) before this unix ms.
    pub before_ms: Option<i64>,
    /// At most this many rows, oldest first.
    pub limit: Option<u64>,
}

/// A dead job with the message it was enqueued with (NULL for rows written
/// before the schema kept it).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadJob {
    pub record: JobRecord,
    pub message: Option<Vec<u8>>,
}

/// A `dead_letters` row; `received_at` is RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterRecord {
    pub id: u64,
    pub claim_token: String,
    pub queue: String,
    pub raw: Vec<u8>,
    pub reason: String,
    pub received_at: String,
}

/// `WHERE ...` of a filter over job_results (`letters` false) or dead_letters.
/// Only fixed fragments and placeholders: values travel as parameters.
fn dead_where(filter: &DeadFilter, letters: bool) -> (String, Vec<Value>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut params = Vec::new();
    if !letters {
        clauses.push("status = 'dead'".to_string());
    }
    if !filter.ids.is_empty() {
        clauses.push(format!(
            "id IN ({})",
            vec!["?"; filter.ids.len()].join(", ")
        ));
        params.extend(filter.ids.iter().map(|id| Value::from(id.as_str())));
    }
    if let Some(kind) = &filter.kind {
        clauses.push("kind = ?".to_string());
        params.push(Value::from(kind.as_str()));
    }
    if let Some(queue) = &filter.queue {
        clauses.push("queue = ?".to_string());
        params.push(Value::from(queue.as_str()));
    }
    if let Some(before) = filter.before_ms {
        clauses.push(format!("{} < ?", time_column(letters)));
        params.push(datetime(Some(before)));
    }
    if clauses.is_empty() {
        clauses.push("TRUE".to_string());
    }
    (format!(" WHERE {}", clauses.join(" AND ")), params)
}

fn time_column(letters: bool) -> &'static str {
    if letters {
        "received_at"
    } else {
        "finished_at"
    }
}

/// `ORDER BY ... LIMIT ?`: oldest first, bounded when the filter says so.
fn order_and_limit(filter: &DeadFilter, letters: bool, params: &mut Vec<Value>) -> String {
    let mut tail = format!(" ORDER BY {}, id", time_column(letters));
    if let Some(limit) = filter.limit {
        tail.push_str(" LIMIT ?");
        params.push(Value::from(limit));
    }
    tail
}

/// Dead jobs matching `filter`, oldest first.
pub async fn list_dead(pool: &Pool, filter: &DeadFilter) -> Result<Vec<DeadJob>, StoreError> {
    let (clause, mut params) = dead_where(filter, false);
    let tail = order_and_limit(filter, false, &mut params);
    let sql = format!(
        "SELECT {}, message FROM job_results{clause}{tail}",
        record_columns()
    );
    let mut conn = pool.get_conn().await?;
    let rows: Vec<DeadRow> = nothing_if_no_table(conn.exec(sql, Params::Positional(params)).await)?;
    Ok(rows.into_iter().map(dead_job_from).collect())
}

type DeadRow = (
    String,
    String,
    String,
    String,
    u32,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<Vec<u8>>,
);

fn dead_job_from(row: DeadRow) -> DeadJob {
    let (
        id,
        queue,
        kind,
        status,
        attempts,
        output,
        error,
        enqueued,
        started,
        finished,
        worker,
        message,
    ) = row;
    DeadJob {
        record: record_from((
            id, queue, kind, status, attempts, output, error, enqueued, started, finished, worker,
        )),
        message,
    }
}

/// Deletes the dead jobs matching `filter` (never a succeeded row), or with
/// `letters` the dead letters matching it. Returns how many.
pub async fn purge(pool: &Pool, filter: &DeadFilter, letters: bool) -> Result<u64, StoreError> {
    let (clause, mut params) = dead_where(filter, letters);
    let tail = order_and_limit(filter, letters, &mut params);
    let table = if letters {
        "dead_letters"
    } else {
        "job_results"
    };
    let mut conn = pool.get_conn().await?;
    nothing_if_no_table(
        conn.exec_drop(
            format!("DELETE FROM {table}{clause}{tail}"),
            Params::Positional(params),
        )
        .await,
    )?;
    Ok(conn.affected_rows())
}

/// Dead letters matching `filter` (its `kind` is ignored), oldest first.
pub async fn list_dead_letters(
    pool: &Pool,
    filter: &DeadFilter,
) -> Result<Vec<DeadLetterRecord>, StoreError> {
    let (clause, mut params) = dead_where(filter, true);
    let tail = order_and_limit(filter, true, &mut params);
    let sql = format!(
        "SELECT id, claim_token, queue, raw, reason, DATE_FORMAT(received_at, {RFC3339_UTC})
         FROM dead_letters{clause}{tail}"
    );
    let mut conn = pool.get_conn().await?;
    let rows: Vec<(u64, String, String, Vec<u8>, String, String)> =
        nothing_if_no_table(conn.exec(sql, Params::Positional(params)).await)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, claim_token, queue, raw, reason, received_at)| DeadLetterRecord {
                id,
                claim_token,
                queue,
                raw,
                reason,
                received_at,
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_filters_use_placeholders_only() {
        let filter = DeadFilter {
            ids: vec!["a".into(), "b".into()],
            kind: Some("k'; DROP TABLE x".into()),
            queue: Some("q".into()),
            before_ms: Some(1_700_000_000_000),
            limit: Some(5),
        };
        let (clause, mut params) = dead_where(&filter, false);
        let tail = order_and_limit(&filter, false, &mut params);
        assert_eq!(
            format!("{clause}{tail}"),
            " WHERE status = 'dead' AND id IN (?, ?) AND kind = ? AND queue = ? AND finished_at < ? ORDER BY finished_at, id LIMIT ?"
        );
        assert_eq!(params.len(), 6);
        let (clause, _) = dead_where(&DeadFilter::default(), true);
        assert_eq!(clause, " WHERE TRUE");
    }

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
