//! Operators' actions on queues and jobs, shared by the HTTP API and the
//! CLI: pause and resume a queue, cancel a job by id.
//!
//! This module owns the answers to those requests (which queue exists, what
//! a cancel found), over [`RedisQueue`] and [`store`]. It must never move a
//! job itself (the Redis scripts do) and never write a row (the worker does).

use crate::job::{is_valid_job_id, is_valid_queue_name};
use crate::redis_queue::{CancelState, QueueError, RedisQueue};
use crate::store::{self, StoreError};

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
            return Ok(CancelAnswer::Accepted {
                queue: queue.clone(),
                state,
            });
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
