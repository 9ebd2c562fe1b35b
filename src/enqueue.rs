//! Enqueueing submitted jobs (HTTP API, CLI): a plain job in one atomic
//! push; a job with a `unique_key` only while no unfinished job of its queue
//! holds that key.
//!
//! This module owns the refusal rule. A key is held from the holder's
//! enqueue until its job ends — and, with `unique_for_ms`, at least that long
//! after it was enqueued. A worker releases the lock when it acknowledges the
//! job, right after its row commits; a submission that meets a lock whose
//! holder's row is already visible (and whose `unique_for_ms` ran out) takes
//! the lock over, so the key is free by the time the row is visible. It must
//! never push a unique job without holding its lock.

use crate::intake::Submission;
use crate::job::now_ms;
use crate::redis_queue::{QueueError, RedisQueue, UniqueHolder};
use crate::store::{self, StoreError};

/// Why a job could not be enqueued (nothing was pushed).
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error(transparent)]
    /// Redis failed.
    Queue(#[from] QueueError),
    #[error(transparent)]
    /// MySQL failed.
    Store(#[from] StoreError),
}

/// Enqueues `job`. `Ok(Some(id))`: not created, job `id` holds its
/// `unique_key`; `Ok(None)`: enqueued.
pub async fn enqueue(
    redis: &RedisQueue,
    pool: &mysql_async::Pool,
    job: &Submission,
) -> Result<Option<String>, EnqueueError> {
    let Some(key) = &job.unique_key else {
        redis
            .accept(&job.queue, &[(job.id.clone(), job.message.clone())])
            .await?;
        return Ok(None);
    };
    let accept = |replacing: Option<String>| async move {
        redis
            .accept_unique(&job.queue, &job.id, &job.message, key, replacing.as_deref())
            .await
    };
    let Some(holder) = accept(None).await? else {
        return Ok(None);
    };
    if !has_ended(pool, &job.queue, &holder).await? {
        return Ok(Some(holder.id));
    }
    Ok(accept(Some(holder.id)).await?.map(|h| h.id))
}

/// Whether `holder`'s lock only waits for its acknowledgement: its row is
/// visible and no `unique_for_ms` holds it longer.
async fn has_ended(
    pool: &mysql_async::Pool,
    queue: &str,
    holder: &UniqueHolder,
) -> Result<bool, StoreError> {
    let held_longer = holder.hold_until_ms.is_none_or(|until| until > now_ms());
    if !holder.unreleased || held_longer {
        return Ok(false);
    }
    Ok(store::find_result(pool, &holder.id, Some(queue))
        .await?
        .is_some())
}
