//! Dead jobs (`job_results` rows with status `dead`) and dead letters
//! (messages that never became a job): counted, listed and purged by a
//! [`DeadFilter`], for `conveyor dead` and the API.
//!
//! This module owns those filters. It must never touch a row that is not
//! dead (every `job_results` filter starts with `status = 'dead'`), and never
//! build SQL from values: a filter adds fixed fragments and placeholders only.

use mysql_async::prelude::*;
use mysql_async::{FromRowError, Params, Pool, Row, Value};

use super::lookup::{
    column, nothing_if_no_table, record_columns, JobRecord, RECORD_COLUMN_COUNT, RFC3339_UTC,
};
use super::{datetime, StoreError};

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
    /// Only this queue.
    pub queue: Option<String>,
    /// Only rows finished (received, for dead letters) before this unix ms.
    pub before_ms: Option<i64>,
    /// Only rows whose error (reason, for dead letters) contains this text.
    pub error_contains: Option<String>,
    /// At most this many rows, oldest first.
    pub limit: Option<u64>,
    /// Skip this many rows first (paging; only with `limit`).
    pub offset: Option<u64>,
}

impl DeadFilter {
    /// Exactly the rows with these ids.
    pub fn by_ids(ids: impl IntoIterator<Item = String>) -> DeadFilter {
        DeadFilter {
            ids: ids.into_iter().collect(),
            ..DeadFilter::default()
        }
    }
}

/// A dead job with the message it was enqueued with (NULL for rows written
/// before the schema kept it).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadJob {
    /// The row.
    pub record: JobRecord,
    /// The message it was enqueued with.
    pub message: Option<Vec<u8>>,
}

/// A `dead_letters` row; `received_at` is RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterRecord {
    /// The row's numeric id.
    pub id: u64,
    /// The claim token the message had.
    pub claim_token: String,
    /// The queue it came from.
    pub queue: String,
    /// The message bytes exactly as pushed.
    pub raw: Vec<u8>,
    /// Why it is not a job.
    pub reason: String,
    /// When it was received (RFC 3339 UTC).
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
    if let Some(text) = &filter.error_contains {
        let column = if letters { "reason" } else { "error" };
        clauses.push(format!("{column} LIKE ? ESCAPE '!'"));
        params.push(Value::from(format!("%{}%", like_escaped(text))));
    }
    if clauses.is_empty() {
        clauses.push("TRUE".to_string());
    }
    (format!(" WHERE {}", clauses.join(" AND ")), params)
}

/// `text` with the LIKE wildcards taken literally (escape character `!`).
fn like_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '!' | '%' | '_') {
            out.push('!');
        }
        out.push(c);
    }
    out
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
        if let Some(offset) = filter.offset {
            tail.push_str(" OFFSET ?");
            params.push(Value::from(offset));
        }
    }
    tail
}

/// How many dead jobs (with `letters`, dead letters) match `filter`; its
/// limit and offset are ignored.
pub async fn count_matching(
    pool: &Pool,
    filter: &DeadFilter,
    letters: bool,
) -> Result<u64, StoreError> {
    let (clause, params) = dead_where(filter, letters);
    let table = if letters {
        "dead_letters"
    } else {
        "job_results"
    };
    let mut conn = pool.get_conn().await?;
    let count: Option<u64> = nothing_if_no_table(
        conn.exec_first(
            format!("SELECT COUNT(*) FROM {table}{clause}"),
            Params::Positional(params),
        )
        .await,
    )?;
    Ok(count.unwrap_or(0))
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
    nothing_if_no_table(conn.exec(sql, Params::Positional(params)).await)
}

/// Reads the record columns, then `message` after them.
impl FromRow for DeadJob {
    fn from_row_opt(mut row: Row) -> Result<Self, FromRowError> {
        let Some(message) = column(&mut row, RECORD_COLUMN_COUNT) else {
            return Err(FromRowError(row));
        };
        Ok(DeadJob {
            record: JobRecord::from_row_opt(row)?,
            message,
        })
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
    if filter.offset.is_some() {
        // MySQL's DELETE takes no OFFSET: a purge acts on a whole match.
        return Err(StoreError::Unsupported("a purge with an offset"));
    }
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
            error_contains: Some("50%_off!".into()),
            limit: Some(5),
            offset: Some(10),
        };
        let (clause, mut params) = dead_where(&filter, false);
        let tail = order_and_limit(&filter, false, &mut params);
        assert_eq!(
            format!("{clause}{tail}"),
            " WHERE status = 'dead' AND id IN (?, ?) AND kind = ? AND queue = ? AND finished_at < ? AND error LIKE ? ESCAPE '!' ORDER BY finished_at, id LIMIT ? OFFSET ?"
        );
        assert_eq!(params.len(), 8);
        assert_eq!(params[5], Value::from("%50!%!_off!!%"));
        let (clause, _) = dead_where(&DeadFilter::default(), true);
        assert_eq!(clause, " WHERE TRUE");
    }
}
