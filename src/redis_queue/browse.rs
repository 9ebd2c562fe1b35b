//! Paged, read-only views of the jobs one queue holds in Redis, for the
//! dashboard: waiting (producers' messages and jobs due again), scheduled,
//! running (held by a worker), one job's message, and the age of the oldest
//! waiting job.
//!
//! Every view reads a bounded slice (`LRANGE`, `ZRANGE … LIMIT`, `HSCAN …
//! COUNT`), never a whole list, so a queue of millions of jobs costs a page.
//! This module must never change a key.

use super::scripts::JOB_MESSAGE;
use super::{QueueError, RedisQueue};

/// One page of a list: `offset` from the start in the order asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows to skip first.
    pub offset: u64,
    /// Most rows to return.
    pub limit: u64,
    /// Oldest first (else newest first).
    pub oldest_first: bool,
}

/// A job as a queue listing shows it: its message (raw bytes, as stored)
/// and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedJob {
    /// The claim token, once the job has one (not for `pending` messages).
    pub token: Option<String>,
    /// The message bytes, as stored.
    pub message: Vec<u8>,
    /// Due time (unix ms) of a scheduled job.
    pub due_ms: Option<i64>,
    /// The worker holding a running job.
    pub worker: Option<String>,
    /// Attempts already made.
    pub attempts: u32,
}

/// The message of a job found by id, and who holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundMessage {
    /// The message bytes, as stored.
    pub message: Vec<u8>,
    /// The worker holding it, when it is running.
    pub worker: Option<String>,
}

/// `LRANGE` bounds (inclusive) of `page` over a list pushed at its head
/// (`LPUSH`): the head holds the newest entries.
pub fn list_bounds(page: PageRequest) -> (i64, i64) {
    let start = i64::try_from(page.offset).unwrap_or(i64::MAX / 2);
    let count = i64::try_from(page.limit.max(1)).unwrap_or(1000);
    if page.oldest_first {
        (-(start + count), -(start + 1))
    } else {
        (start, start + count - 1)
    }
}

impl RedisQueue {
    /// Messages waiting in `pending` (never claimed yet), one page.
    pub async fn waiting(
        &self,
        queue: &str,
        page: PageRequest,
    ) -> Result<Vec<Vec<u8>>, QueueError> {
        let keys = self.keys(queue);
        let (start, stop) = list_bounds(page);
        let mut messages: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(&keys.pending)
            .arg(start)
            .arg(stop)
            .query_async(&mut self.conn.clone())
            .await?;
        if page.oldest_first {
            messages.reverse();
        }
        Ok(messages)
    }

    /// Jobs due again (retries whose time came, recovered and handed-back
    /// jobs), next to start first; at most `limit`.
    pub async fn due_again(&self, queue: &str, limit: u64) -> Result<Vec<ListedJob>, QueueError> {
        let keys = self.keys(queue);
        let tokens: Vec<String> = redis::cmd("LRANGE")
            .arg(&keys.ready)
            .arg(-i64::try_from(limit.max(1)).unwrap_or(1))
            .arg(-1)
            .query_async(&mut self.conn.clone())
            .await?;
        let mut jobs = self
            .by_tokens(queue, tokens.into_iter().rev().collect())
            .await?;
        jobs.iter_mut().for_each(|job| job.due_ms = None);
        Ok(jobs)
    }

    /// Scheduled jobs (retries in backoff, `run_at` ahead), soonest first.
    pub async fn scheduled(
        &self,
        queue: &str,
        page: PageRequest,
    ) -> Result<Vec<ListedJob>, QueueError> {
        let keys = self.keys(queue);
        let entries: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(&keys.scheduled)
            .arg("-inf")
            .arg("+inf")
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(page.offset)
            .arg(page.limit.max(1))
            .arg("WITHSCORES")
            .query_async(&mut self.conn.clone())
            .await?;
        let tokens = entries.iter().map(|(token, _)| token.clone()).collect();
        let mut jobs = self.by_tokens(queue, tokens).await?;
        for (job, (_, due)) in jobs.iter_mut().zip(&entries) {
            job.due_ms = Some(*due as i64);
        }
        Ok(jobs)
    }

    /// Messages of `tokens` from the `jobs` hash, with their attempts; a
    /// token whose message left meanwhile is skipped.
    async fn by_tokens(
        &self,
        queue: &str,
        tokens: Vec<String>,
    ) -> Result<Vec<ListedJob>, QueueError> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys(queue);
        let (messages, attempts): (Vec<Option<Vec<u8>>>, Vec<Option<u32>>) = redis::pipe()
            .cmd("HMGET")
            .arg(&keys.jobs)
            .arg(&tokens)
            .cmd("HMGET")
            .arg(&keys.attempts)
            .arg(&tokens)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(tokens
            .into_iter()
            .zip(messages.into_iter().zip(attempts))
            .filter_map(|(token, (message, attempts))| {
                Some(ListedJob {
                    token: Some(token),
                    message: message?,
                    due_ms: None,
                    worker: None,
                    attempts: attempts.unwrap_or(0),
                })
            })
            .collect())
    }

    /// Jobs held by workers, up to about `limit` (a sample of each worker's
    /// hold, not an ordered page: holds are hashes).
    pub async fn running(&self, queue: &str, limit: u64) -> Result<Vec<ListedJob>, QueueError> {
        let keys = self.keys(queue);
        let mut out = Vec::new();
        for (worker, _) in self.workers(queue).await? {
            let left = limit.saturating_sub(out.len() as u64);
            if left == 0 {
                break;
            }
            let (_, pairs): (u64, Vec<(String, Vec<u8>)>) = redis::cmd("HSCAN")
                .arg(keys.wip(&worker))
                .arg(0)
                .arg("COUNT")
                .arg(left)
                .query_async(&mut self.conn.clone())
                .await?;
            out.extend(
                pairs
                    .into_iter()
                    .take(left as usize)
                    .map(|(token, message)| ListedJob {
                        token: Some(token),
                        message,
                        due_ms: None,
                        worker: Some(worker.clone()),
                        attempts: 0,
                    }),
            );
        }
        Ok(out)
    }

    /// The message of job `id` while Redis holds it under a claim token
    /// (due again, scheduled or running); `None` otherwise (never claimed,
    /// or finished).
    pub async fn job_message(
        &self,
        queue: &str,
        id: &str,
    ) -> Result<Option<FoundMessage>, QueueError> {
        let keys = self.keys(queue);
        let reply: Option<(Vec<u8>, String)> = JOB_MESSAGE
            .key(&keys.ids)
            .key(&keys.jobs)
            .key(&keys.workers)
            .arg(id)
            .arg(&keys.wip_prefix)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(reply.map(|(message, worker)| FoundMessage {
            message,
            worker: Some(worker).filter(|w| !w.is_empty()),
        }))
    }

    /// The oldest message waiting in `pending` (the next to start), if any.
    pub async fn oldest_waiting(&self, queue: &str) -> Result<Option<Vec<u8>>, QueueError> {
        let keys = self.keys(queue);
        Ok(redis::cmd("LINDEX")
            .arg(&keys.pending)
            .arg(-1)
            .query_async(&mut self.conn.clone())
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(offset: u64, limit: u64, oldest_first: bool) -> PageRequest {
        PageRequest {
            offset,
            limit,
            oldest_first,
        }
    }

    #[test]
    fn newest_first_reads_from_the_head() {
        assert_eq!(list_bounds(page(0, 50, false)), (0, 49));
        assert_eq!(list_bounds(page(50, 50, false)), (50, 99));
    }

    #[test]
    fn oldest_first_reads_from_the_tail() {
        assert_eq!(list_bounds(page(0, 50, true)), (-50, -1));
        assert_eq!(list_bounds(page(50, 50, true)), (-100, -51));
    }

    #[test]
    fn a_zero_limit_still_reads_one() {
        assert_eq!(list_bounds(page(0, 0, false)), (0, 0));
    }
}
