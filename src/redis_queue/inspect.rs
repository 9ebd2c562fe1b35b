//! Read-only views of a queue: where one job stands, its depths by state,
//! and the workers holding a lease on it.
//!
//! The API, the CLI and the monitor call these at any time, so this module
//! must never change a key.

use super::scripts::{DEPTHS, JOB_STATE};
use super::{JobState, QueueDepths, QueueError, RedisQueue};

impl RedisQueue {
    /// Where job `id` of `queue` stands in Redis; `None` when Redis holds
    /// nothing of it (never seen, or finished and acknowledged).
    pub async fn job_state(&self, queue: &str, id: &str) -> Result<Option<JobState>, QueueError> {
        let keys = self.keys(queue);
        let reply: Option<(String, u32, String)> = JOB_STATE
            .key(&keys.ids)
            .key(&keys.jobs)
            .key(&keys.scheduled)
            .key(&keys.attempts)
            .key(&keys.errors)
            .key(&keys.accepted)
            .key(&keys.cancel)
            .arg(id)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(reply.map(|(state, attempts, error)| JobState {
            state,
            attempts,
            last_error: Some(error).filter(|e| !e.is_empty()),
        }))
    }

    /// How many jobs of `queue` wait, are held and are scheduled.
    pub async fn depths(&self, queue: &str) -> Result<QueueDepths, QueueError> {
        let keys = self.keys(queue);
        let (pending, scheduled, running, paused): (u64, u64, u64, u8) = DEPTHS
            .key(&keys.pending)
            .key(&keys.ready)
            .key(&keys.scheduled)
            .key(&keys.workers)
            .key(&keys.cancelled)
            .key(&keys.paused)
            .key(&keys.keyed)
            .arg(&keys.wip_prefix)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(QueueDepths {
            pending,
            running,
            scheduled,
            paused: paused == 1,
        })
    }

    /// Workers holding a lease on `queue`: (worker id, lease deadline in
    /// unix ms), soonest deadline first. A deadline in the past belongs to a
    /// worker presumed dead whose jobs are about to be recovered.
    pub async fn workers(&self, queue: &str) -> Result<Vec<(String, i64)>, QueueError> {
        let keys = self.keys(queue);
        let leases: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(&keys.workers)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(leases
            .into_iter()
            .map(|(worker, deadline)| (worker, deadline as i64))
            .collect())
    }
}
