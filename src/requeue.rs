//! Enqueueing dead jobs and dead letters again: the one path that
//! `conveyor dead retry` and the dashboard share.
//!
//! A dead job goes back onto its queue as its original message under the
//! same id (through [`RedisQueue::accept`], so it reads `queued` at once);
//! its dead row stays until the new result replaces it, so nothing is lost
//! if the push fails. A dead letter's raw bytes are pushed again and only
//! then is the letter deleted. This module must never build a message that
//! does not carry the dead job's id, and never delete a letter before its
//! bytes are back in Redis.

use std::collections::BTreeMap;

use crate::job::Envelope;
use crate::limits::MAX_SCRIPT_BATCH;
use crate::redis_queue::{QueueError, RedisQueue};
use crate::store::{self, DeadFilter, DeadJob, StoreError};

/// Why a retry stopped; what was pushed before the error stays pushed.
#[derive(Debug, thiserror::Error)]
pub enum RequeueError {
    #[error(transparent)]
    /// MySQL failed.
    Store(#[from] StoreError),
    #[error(transparent)]
    /// Redis failed.
    Queue(#[from] QueueError),
}

/// What a retry of dead jobs did.
#[derive(Debug, Default, PartialEq)]
pub struct Requeued {
    /// (job id, queue) of every job enqueued again, queue by queue.
    pub retried: Vec<(String, String)>,
    /// (job id, why) of dead jobs that could not be enqueued again.
    pub skipped: Vec<(String, String)>,
}

/// The message to enqueue again: the original when it already starts with
/// its id; else the envelope with the row's id set, id first.
pub fn retry_message(job: &DeadJob) -> Result<Vec<u8>, String> {
    let id = &job.record.id;
    let Some(raw) = &job.message else {
        return Err("no message was kept for it (dead before messages were stored)".into());
    };
    if raw.starts_with(format!(r#"{{"id":"{id}""#).as_bytes()) {
        return Ok(raw.clone());
    }
    let mut envelope: Envelope =
        serde_json::from_slice(raw).map_err(|e| format!("its message is not an envelope: {e}"))?;
    envelope.id = Some(id.clone());
    serde_json::to_vec(&envelope).map_err(|e| e.to_string())
}

/// Enqueues the dead jobs matching `filter` again.
pub async fn retry_dead(
    pool: &mysql_async::Pool,
    redis: &RedisQueue,
    filter: &DeadFilter,
) -> Result<Requeued, RequeueError> {
    let jobs = store::list_dead(pool, filter).await?;
    let mut by_queue: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    let mut done = Requeued::default();
    for job in &jobs {
        match retry_message(job) {
            Ok(message) => by_queue
                .entry(job.record.queue.clone())
                .or_default()
                .push((job.record.id.clone(), message)),
            Err(why) => done.skipped.push((job.record.id.clone(), why)),
        }
    }
    for (queue, group) in &by_queue {
        for chunk in group.chunks(MAX_SCRIPT_BATCH) {
            redis.accept(queue, chunk).await?;
            done.retried
                .extend(chunk.iter().map(|(id, _)| (id.clone(), queue.clone())));
        }
    }
    Ok(done)
}

/// Pushes the dead letters matching `filter` again and deletes them.
/// Returns (letter id, queue) of each one pushed.
pub async fn retry_letters(
    pool: &mysql_async::Pool,
    redis: &RedisQueue,
    filter: &DeadFilter,
) -> Result<Vec<(u64, String)>, RequeueError> {
    let letters = store::list_dead_letters(pool, filter).await?;
    let mut done = Vec::with_capacity(letters.len());
    for chunk in letters.chunks(MAX_SCRIPT_BATCH) {
        let mut by_queue: BTreeMap<&str, Vec<Vec<u8>>> = BTreeMap::new();
        for letter in chunk {
            by_queue
                .entry(&letter.queue)
                .or_default()
                .push(letter.raw.clone());
        }
        for (queue, messages) in by_queue {
            redis.push(queue, &messages).await?;
        }
        let pushed = DeadFilter::by_ids(chunk.iter().map(|l| l.id.to_string()));
        store::purge(pool, &pushed, true).await?;
        done.extend(chunk.iter().map(|l| (l.id, l.queue.clone())));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(id: &str, message: &str) -> DeadJob {
        DeadJob {
            record: store::JobRecord {
                id: id.into(),
                queue: "default".into(),
                kind: "k".into(),
                status: "dead".into(),
                attempts: 1,
                output: None,
                error: None,
                enqueued_at: None,
                started_at: None,
                finished_at: None,
                worker: "w".into(),
            },
            message: Some(message.as_bytes().to_vec()),
        }
    }

    #[test]
    fn retried_messages_carry_their_id_first() {
        let kept = r#"{"id":"a1","kind":"k","payload":{"z":1,"a":2}}"#;
        assert_eq!(
            retry_message(&dead("a1", kept)),
            Ok(kept.as_bytes().to_vec())
        );
        let idless = r#"{"kind":"k","payload":[1],"max_attempts":2}"#;
        let message = retry_message(&dead("tok-7", idless)).expect("envelope");
        assert_eq!(
            String::from_utf8(message).expect("utf8"),
            r#"{"id":"tok-7","kind":"k","payload":[1],"max_attempts":2}"#
        );
        let later = r#"{"kind":"k","id":"b2"}"#;
        let message = retry_message(&dead("b2", later)).expect("envelope");
        assert!(message.starts_with(br#"{"id":"b2","kind":"k""#));
    }

    #[test]
    fn a_job_without_a_kept_message_is_skipped_with_the_reason() {
        let mut job = dead("old", "{}");
        job.message = None;
        assert!(retry_message(&job)
            .unwrap_err()
            .contains("no message was kept"));
    }
}
