//! Reads of `job_results`: a job's final row by id, as the API and the CLI
//! show it, and the counts and clean-up that benchmarks and tools use.
//!
//! This module owns the shape of a [`JobRecord`] and how a read copes with a
//! schema no worker has created yet. It must never insert or update a row
//! (the one write here is the wholesale delete of a benchmark's own queue),
//! and never build SQL from values (placeholders only).

use mysql_async::prelude::*;
use mysql_async::{FromRowError, Params, Pool, Row, Value};

use super::StoreError;

/// `DATE_FORMAT` pattern of RFC 3339 UTC times with microseconds.
pub(super) const RFC3339_UTC: &str = "'%Y-%m-%dT%H:%i:%s.%fZ'";

/// MySQL's "table doesn't exist": the schema has not been created yet.
const ER_NO_SUCH_TABLE: u16 = 1146;

/// A read of a table that does not exist yet (no worker has migrated) finds nothing.
pub(super) fn nothing_if_no_table<T: Default>(
    result: Result<T, mysql_async::Error>,
) -> Result<T, StoreError> {
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
    /// The job id.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// Its handler's name.
    pub kind: String,
    /// `succeeded`, `dead` or `cancelled`.
    pub status: String,
    /// Attempts made.
    pub attempts: u32,
    /// The handler's output as JSON text.
    pub output: Option<String>,
    /// The last error, for a dead job.
    pub error: Option<String>,
    /// When it was enqueued (RFC 3339 UTC).
    pub enqueued_at: Option<String>,
    /// When its last attempt started (RFC 3339 UTC).
    pub started_at: Option<String>,
    /// When it ended (RFC 3339 UTC).
    pub finished_at: Option<String>,
    /// The worker that finished it.
    pub worker: String,
}

/// How many columns [`record_columns`] selects.
pub(super) const RECORD_COLUMN_COUNT: usize = 11;

pub(super) fn record_columns() -> String {
    let time = |column: &str| format!("DATE_FORMAT({column}, {RFC3339_UTC})");
    format!(
        "id, queue, kind, status, attempts, CAST(output AS CHAR), error, {}, {}, {}, worker",
        time("enqueued_at"),
        time("started_at"),
        time("finished_at")
    )
}

/// Reads the record columns (the first eleven columns; a query may add
/// more after them).
impl FromRow for JobRecord {
    fn from_row_opt(mut row: Row) -> Result<Self, FromRowError> {
        match record_from(&mut row) {
            Some(record) => Ok(record),
            None => Err(FromRowError(row)),
        }
    }
}

fn record_from(row: &mut Row) -> Option<JobRecord> {
    Some(JobRecord {
        id: column(row, 0)?,
        queue: column(row, 1)?,
        kind: column(row, 2)?,
        status: column(row, 3)?,
        attempts: column(row, 4)?,
        output: column(row, 5)?,
        error: column(row, 6)?,
        enqueued_at: column(row, 7)?,
        started_at: column(row, 8)?,
        finished_at: column(row, 9)?,
        worker: column(row, 10)?,
    })
}

/// Column `index` of `row` as a `T`, if it is there and converts.
pub(super) fn column<T: FromValue>(row: &mut Row, index: usize) -> Option<T> {
    row.take_opt(index)?.ok()
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
    nothing_if_no_table(conn.exec_first(sql, Params::Positional(params)).await)
}

/// The message job `id` was enqueued with, as its final row keeps it
/// (`None` without a row, or for rows written before messages were kept).
pub async fn find_message(pool: &Pool, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let mut conn = pool.get_conn().await?;
    let found: Option<Option<Vec<u8>>> = nothing_if_no_table(
        conn.exec_first("SELECT message FROM job_results WHERE id = ?", (id,))
            .await,
    )?;
    Ok(found.flatten())
}

/// Rows of `job_results` in `queue` (benchmarks and tools).
pub async fn count_queue_rows(pool: &Pool, queue: &str) -> Result<u64, StoreError> {
    let mut conn = pool.get_conn().await?;
    let count: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM job_results WHERE status IN ('succeeded', 'dead', 'cancelled') AND queue = ?",
            (queue,),
        )
        .await?;
    Ok(count.unwrap_or(0))
}

/// (id, started_at as unix ms) of the started rows of `queue`
/// (benchmarks and tools).
pub async fn start_times(pool: &Pool, queue: &str) -> Result<Vec<(String, i64)>, StoreError> {
    let mut conn = pool.get_conn().await?;
    Ok(conn
        .exec(
            "SELECT id, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', started_at) DIV 1000
             FROM job_results WHERE queue = ? AND started_at IS NOT NULL",
            (queue,),
        )
        .await?)
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

/// One finished run of a schedule, as `GET /schedules` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RunRecord {
    /// The job id (`sched:<name>:<tick ms>` for ticks).
    pub id: String,
    /// How it ended.
    pub status: String,
    /// When it ended (RFC 3339 UTC).
    pub finished_at: Option<String>,
}

/// The `limit` rows whose id starts with `id_prefix`, greatest id first
/// (for schedule runs, `sched:<name>:<ms>`, that is the latest first). A
/// range read of the primary key.
pub async fn runs_by_id_prefix(
    pool: &Pool,
    id_prefix: &str,
    limit: usize,
) -> Result<Vec<RunRecord>, StoreError> {
    let mut conn = pool.get_conn().await?;
    let pattern = format!("{}%", escape_like(id_prefix));
    let sql = format!(
        "SELECT id, status, DATE_FORMAT(finished_at, {RFC3339_UTC}) FROM job_results
         WHERE id LIKE ? ORDER BY id DESC LIMIT ?"
    );
    let rows: Result<Vec<(String, String, Option<String>)>, _> =
        conn.exec(sql, (pattern, limit as u64)).await;
    Ok(nothing_if_no_table(rows)?
        .into_iter()
        .map(|(id, status, finished_at)| RunRecord {
            id,
            status,
            finished_at,
        })
        .collect())
}

/// `text` with LIKE's wildcards and escape character taken literally.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
