//! Queue control kept in Redis: the pause flag of a queue, the cancel marks
//! of jobs, and the one-round-trip read of both that every worker polls.
//!
//! This module owns the `paused`, `cancel`, `cancelled` and `signal:<worker>`
//! keys and the cancel script. A cancelled job that waits (pending, ready,
//! scheduled) moves to `cancelled`, whence a worker claims it and writes its
//! `cancelled` row without running it; a job a worker holds keeps running
//! until that worker reads its signal. It must never remove a job from Redis
//! (only an acknowledgement after the row commits does), and never touch a
//! key outside one queue's hash tag in one script.

use std::sync::LazyLock;

use redis::Script;

use super::fair_scripts::KEY_OF_LUA;
use super::scripts::LEAD_ID_LUA;
use super::{QueueError, QueueKeys, RedisQueue};

/// What a cancel request did in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelState {
    /// The job was waiting (or had been cancelled already): it will never
    /// start, and its `cancelled` row is written by the next claim.
    Cancelled,
    /// A worker holds it: that worker is signalled; the row says `cancelled`
    /// unless the job finishes first.
    Cancelling,
}

impl CancelState {
    /// The state as the API reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelState::Cancelled => "cancelled",
            CancelState::Cancelling => "cancelling",
        }
    }
}

/// A queue's control state as one worker sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueControl {
    /// Whether the queue is paused.
    pub paused: bool,
    /// Claim tokens this worker holds that were cancelled.
    pub cancelled_tokens: Vec<String>,
    /// Cancelled jobs that never started, waiting for their `cancelled` row.
    pub cancelled_waiting: u64,
}

/// Cancels job ARGV[1]. KEYS: ids, jobs, scheduled, ready, pending, cancel,
/// cancelled, workers, keyed count. ARGV: id, now (ms), a fresh token for a
/// job found in `pending`, the `wip:` prefix, the `signal:` prefix, how many
/// `pending` entries to read per step, the key list prefix. A job waiting in
/// its key's list is found by its token (the list is its key's). Returns 'cancelled', 'cancelling' or false
/// (Redis holds no such job). A job found in `pending` (never claimed) is
/// looked for by its leading id, reading the list in steps: O(pending).
static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{LEAD_ID_LUA}{KEY_OF_LUA}
local id, now = ARGV[1], ARGV[2]
local function finish_waiting(token)
  redis.call('HSET', KEYS[6], token, now)
  redis.call('LPUSH', KEYS[7], token)
  return 'cancelled'
end
local token = redis.call('HGET', KEYS[1], id)
if token then
  if redis.call('HEXISTS', KEYS[6], token) == 1 then
    if redis.call('HEXISTS', KEYS[2], token) == 1 then return 'cancelled' end
    return 'cancelling'
  end
  if redis.call('ZREM', KEYS[3], token) == 1 then return finish_waiting(token) end
  if redis.call('LREM', KEYS[4], 1, token) == 1 then return finish_waiting(token) end
  local waiting = redis.call('HGET', KEYS[2], token)
  if waiting and redis.call('LREM', ARGV[7] .. (key_of(waiting) or ''), -1, token) == 1 then
    if redis.call('DECR', KEYS[9]) <= 0 then redis.call('DEL', KEYS[9]) end
    return finish_waiting(token)
  end
  for _, worker in ipairs(redis.call('ZRANGE', KEYS[8], 0, -1)) do
    if redis.call('HEXISTS', ARGV[4] .. worker, token) == 1 then
      redis.call('HSET', KEYS[6], token, now)
      redis.call('SADD', ARGV[5] .. worker, token)
      return 'cancelling'
    end
  end
end
local step = tonumber(ARGV[6])
local len = redis.call('LLEN', KEYS[5])
for first = 0, len - 1, step do
  for _, raw in ipairs(redis.call('LRANGE', KEYS[5], first, first + step - 1)) do
    if lead_id(raw) == id then
      redis.call('LREM', KEYS[5], 1, raw)
      redis.call('HSET', KEYS[2], ARGV[3], raw)
      redis.call('HSET', KEYS[1], id, ARGV[3])
      return finish_waiting(ARGV[3])
    end
  end
end
return false
"
    ))
});

/// The keys whose presence makes a queue exist (see `queue_exists`).
const QUEUE_KEY_SUFFIXES: [&str; 7] = [
    "pending",
    "ready",
    "jobs",
    "scheduled",
    "workers",
    "paused",
    "cancelled",
];

/// `pending` entries the cancel script reads per step.
const PENDING_SCAN_STEP: usize = 1000;

impl RedisQueue {
    /// Pauses `queue`: no worker claims from it until [`RedisQueue::resume`].
    /// Kept in Redis, so it outlives workers and restarts.
    pub async fn pause(&self, queue: &str) -> Result<(), QueueError> {
        let keys = self.keys(queue);
        let _: () = redis::cmd("SET")
            .arg(&keys.paused)
            .arg(crate::job::now_ms())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Resumes a paused queue.
    pub async fn resume(&self, queue: &str) -> Result<(), QueueError> {
        let keys = self.keys(queue);
        let _: () = redis::cmd("DEL")
            .arg(&keys.paused)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Whether the queue is paused.
    pub async fn is_paused(&self, queue: &str) -> Result<bool, QueueError> {
        let keys = self.keys(queue);
        let exists: bool = redis::cmd("EXISTS")
            .arg(&keys.paused)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(exists)
    }

    /// Whether Redis holds anything of `queue` (jobs, leases or a pause flag).
    pub async fn queue_exists(&self, queue: &str) -> Result<bool, QueueError> {
        let keys = self.keys(queue);
        let count: u64 = redis::cmd("EXISTS")
            .arg(&keys.pending)
            .arg(&keys.ready)
            .arg(&keys.jobs)
            .arg(&keys.scheduled)
            .arg(&keys.workers)
            .arg(&keys.paused)
            .arg(&keys.cancelled)
            .arg(&keys.ring)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(count > 0)
    }

    /// Queues Redis holds jobs, leases or a pause flag of under this prefix,
    /// sorted (a `SCAN` of the keyspace: for operators' views, not for hot
    /// paths). Other keys in a hash tag (the `{stats}` history, a queue's
    /// schedule state) do not make a queue.
    pub async fn queues_in_redis(&self) -> Result<Vec<String>, QueueError> {
        let pattern = format!("{}:{{*}}:*", self.prefix);
        let head = format!("{}:{{", self.prefix);
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut names = std::collections::BTreeSet::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            for key in keys {
                let name = key
                    .strip_prefix(&head)
                    .and_then(|rest| rest.split_once("}:"))
                    .filter(|(_, suffix)| QUEUE_KEY_SUFFIXES.contains(suffix))
                    .map(|(queue, _)| queue);
                if let Some(name) = name.filter(|n| crate::job::is_valid_queue_name(n)) {
                    names.insert(name.to_string());
                }
            }
            if next == 0 {
                return Ok(names.into_iter().collect());
            }
            cursor = next;
        }
    }

    /// Cancels job `id` of `queue`; `None` when Redis holds no such job
    /// (finished, or never seen).
    pub async fn cancel(&self, queue: &str, id: &str) -> Result<Option<CancelState>, QueueError> {
        let keys = self.keys(queue);
        let token = format!("{:016x}-c", rand::random::<u64>());
        let reply: Option<String> = CANCEL
            .key(&keys.ids)
            .key(&keys.jobs)
            .key(&keys.scheduled)
            .key(&keys.ready)
            .key(&keys.pending)
            .key(&keys.cancel)
            .key(&keys.cancelled)
            .key(&keys.workers)
            .key(&keys.keyed)
            .arg(id)
            .arg(crate::job::now_ms())
            .arg(token)
            .arg(&keys.wip_prefix)
            .arg(&keys.signal_prefix)
            .arg(PENDING_SCAN_STEP)
            .arg(&keys.key_prefix)
            .invoke_async(&mut self.conn.clone())
            .await?;
        match reply.as_deref() {
            None => Ok(None),
            Some("cancelled") => Ok(Some(CancelState::Cancelled)),
            Some("cancelling") => Ok(Some(CancelState::Cancelling)),
            Some(other) => Err(QueueError::Protocol(format!("cancel answered {other:?}"))),
        }
    }

    /// The pause flag of each queue, the cancelled jobs `worker` holds there
    /// and the count of cancelled jobs waiting for their row, in one
    /// pipelined round trip.
    pub async fn control_state(
        &self,
        queues: &[std::sync::Arc<str>],
        worker: &str,
    ) -> Result<Vec<QueueControl>, QueueError> {
        let mut pipe = redis::pipe();
        for queue in queues {
            let keys = self.keys(queue);
            pipe.exists(&keys.paused)
                .smembers(keys.signal(worker))
                .llen(&keys.cancelled);
        }
        let replies: Vec<redis::Value> = pipe.query_async(&mut self.conn.clone()).await?;
        replies
            .chunks_exact(3)
            .map(|reply| {
                let protocol = |e: redis::ParsingError| QueueError::Protocol(e.to_string());
                Ok(QueueControl {
                    paused: redis::from_redis_value_ref(&reply[0]).map_err(protocol)?,
                    cancelled_tokens: redis::from_redis_value_ref(&reply[1]).map_err(protocol)?,
                    cancelled_waiting: redis::from_redis_value_ref(&reply[2]).map_err(protocol)?,
                })
            })
            .collect()
    }
}

/// The keys of one queue's control state (for `delete_queue`).
pub(super) fn control_keys(keys: &QueueKeys) -> [String; 3] {
    [
        keys.paused.clone(),
        keys.cancel.clone(),
        keys.cancelled.clone(),
    ]
}
