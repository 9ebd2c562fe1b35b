//! Operators' actions on queues and jobs, shared by the HTTP API and the
//! CLI: pause and resume a queue, cancel a job by id.
//!
//! This module owns the answers to those requests (which queue exists, what
//! a cancel found), over [`RedisQueue`] and [`store`]. It must never move a
//! job itself (the Redis scripts do) and never write a row (the worker does).

use crate::job::{is_valid_job_id, is_valid_queue_name, FinalStatus};
use crate::redis_queue::{CancelState, QueueError, RedisQueue};
use crate::store::{self, JobRecord, StoreError};

/// Why an action could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The queue name breaks the naming rule.
    #[error("queue name must be 1-64 chars of [A-Za-z0-9_.-], got {0:?}")]
    InvalidQueue(String),
    /// The job id breaks the naming rule.
    #[error("job id must be 1-64 chars of [A-Za-z0-9_.:-], got {0:?}")]
    InvalidId(String),
    /// Neither configured nor holding anything in Redis.
    #[error("no queue {0:?}: it is not in queues.names and Redis holds nothing of it")]
    UnknownQueue(String),
    #[error(transparent)]
    /// Redis failed.
    Redis(#[from] QueueError),
    #[error(transparent)]
    /// MySQL failed.
    Mysql(#[from] StoreError),
}

/// What a cancel request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelAnswer {
    /// In Redis: removed from the waiting jobs (`cancelled`) or signalled to
    /// the worker running it (`cancelling`).
    Accepted {
        /// The job's queue.
        queue: String,
        /// Removed or signalled.
        state: CancelState,
    },
    /// Its row is written already, with this status.
    Finished {
        /// The job's queue.
        queue: String,
        /// The row's status.
        status: String,
    },
    /// No such job.
    Unknown,
}

/// Checks that `queue` is a valid name of a queue that exists: one of
/// `configured`, or one Redis holds something of.
pub async fn existing_queue(
    redis: &RedisQueue,
    configured: &[String],
    queue: &str,
) -> Result<(), ControlError> {
    if !is_valid_queue_name(queue) {
        return Err(ControlError::InvalidQueue(queue.chars().take(80).collect()));
    }
    if configured.iter().any(|q| q == queue) || redis.queue_exists(queue).await? {
        Ok(())
    } else {
        Err(ControlError::UnknownQueue(queue.to_string()))
    }
}

/// Pauses (`true`) or resumes an existing queue.
pub async fn set_paused(
    redis: &RedisQueue,
    configured: &[String],
    queue: &str,
    paused: bool,
) -> Result<(), ControlError> {
    existing_queue(redis, configured, queue).await?;
    if paused {
        redis.pause(queue).await?;
    } else {
        redis.resume(queue).await?;
    }
    Ok(())
}

/// Cancels job `id` of `queue`, or of any of `configured` when no queue is
/// given. Redis first: a job leaves Redis only after its row is committed,
/// so a job not found there that has finished is found in MySQL.
///
/// A job Redis still holds may have finished already: its row commits
/// before the acknowledgement removes it from Redis. So whatever Redis
/// answers, the row is read next, and a `succeeded` row answers "finished"
/// (the cancel mark Redis took is dropped by that acknowledgement). A row
/// committed just after that read is safe too: a `succeeded` row is never
/// turned into `cancelled`, so the job reads `succeeded`, which a
/// `cancelling` answer allows ("cancelled unless it finished first").
/// A `dead` or `duplicate` row is not taken as final while Redis holds the
/// job: it may be the row of an earlier run of a job enqueued again under
/// its id, which the cancel's `cancelled` row replaces.
pub async fn cancel_job(
    redis: &RedisQueue,
    pool: &mysql_async::Pool,
    configured: &[String],
    queue: Option<&str>,
    id: &str,
) -> Result<CancelAnswer, ControlError> {
    if !is_valid_job_id(id) {
        return Err(ControlError::InvalidId(id.chars().take(80).collect()));
    }
    if let Some(queue) = queue.filter(|q| !is_valid_queue_name(q)) {
        return Err(ControlError::InvalidQueue(queue.chars().take(80).collect()));
    }
    let queues: Vec<String> = match queue {
        Some(queue) => vec![queue.to_string()],
        None => configured.to_vec(),
    };
    for queue in &queues {
        if let Some(state) = redis.cancel(queue, id).await? {
            let row = store::find_result(pool, id, Some(queue)).await?;
            return Ok(while_in_redis(queue, state, row));
        }
    }
    Ok(match store::find_result(pool, id, queue).await? {
        Some(row) if row.status == "cancelled" => CancelAnswer::Accepted {
            queue: row.queue,
            state: CancelState::Cancelled,
        },
        Some(row) => CancelAnswer::Finished {
            queue: row.queue,
            status: row.status,
        },
        None => CancelAnswer::Unknown,
    })
}

/// The answer for a job Redis still held (and marked cancelled), given the
/// row MySQL holds for its id, if any.
fn while_in_redis(queue: &str, state: CancelState, row: Option<JobRecord>) -> CancelAnswer {
    let queue = queue.to_string();
    match row.map(|row| row.status) {
        Some(status) if status == FinalStatus::Succeeded.as_str() => {
            CancelAnswer::Finished { queue, status }
        }
        Some(status) if status == FinalStatus::Cancelled.as_str() => CancelAnswer::Accepted {
            queue,
            state: CancelState::Cancelled,
        },
        _ => CancelAnswer::Accepted { queue, state },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str) -> JobRecord {
        JobRecord {
            id: "j1".into(),
            queue: "default".into(),
            kind: "noop".into(),
            status: status.into(),
            attempts: 1,
            output: None,
            error: None,
            enqueued_at: None,
            started_at: None,
            finished_at: None,
            worker: "w".into(),
        }
    }

    fn accepted(state: CancelState) -> CancelAnswer {
        CancelAnswer::Accepted {
            queue: "default".into(),
            state,
        }
    }

    #[test]
    fn a_succeeded_row_wins_over_what_redis_still_holds() {
        for state in [CancelState::Cancelled, CancelState::Cancelling] {
            assert_eq!(
                while_in_redis("default", state, Some(row("succeeded"))),
                CancelAnswer::Finished {
                    queue: "default".into(),
                    status: "succeeded".into()
                }
            );
        }
    }

    #[test]
    fn a_cancelled_row_reads_cancelled_and_other_rows_leave_the_cancel_standing() {
        let signalled = CancelState::Cancelling;
        assert_eq!(
            while_in_redis("default", signalled, Some(row("cancelled"))),
            accepted(CancelState::Cancelled)
        );
        for earlier in ["dead", "duplicate"] {
            assert_eq!(
                while_in_redis("default", signalled, Some(row(earlier))),
                accepted(signalled)
            );
        }
        assert_eq!(
            while_in_redis("default", signalled, None),
            accepted(signalled)
        );
    }
}
