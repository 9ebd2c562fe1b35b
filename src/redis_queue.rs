//! Every Redis key and script conveyor uses, as plain async functions.
//!
//! This module owns the job lifecycle inside Redis. It must never know about
//! actors, MySQL or handlers; and every script touches the keys of one queue's
//! hash tag only, so the layout works on Redis Cluster.
//!
//! # Keys of queue `q` (prefix `P`, braces literal: the cluster hash tag)
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{q}:pending` | list | producers' messages (`LPUSH`), taken oldest first (`RPOP`) |
//! | `P:{q}:ready` | list | claim tokens due again: retries, recovered and handed-back jobs; claimed before `pending` |
//! | `P:{q}:jobs` | hash | token → message, for jobs in `ready` or `scheduled` |
//! | `P:{q}:scheduled` | zset | token → due time (unix ms): retries and `run_at` jobs |
//! | `P:{q}:attempts` | hash | token → attempts already made (absent = 0) |
//! | `P:{q}:errors` | hash | token → the last attempt's error |
//! | `P:{q}:wip:<worker>` | hash | token → message, for the jobs one worker holds |
//! | `P:{q}:workers` | zset | worker id → lease deadline (unix ms) |
//! | `P:{q}:ids` | hash | job id → claim token, for claimed jobs whose message starts with `{"id":"` |
//! | `P:{q}:accepted` | hash | job id → accepted time, for jobs the HTTP API took and no worker finished yet |
//!
//! A job lives in exactly one of `pending`, `ready`+`jobs`, `scheduled`+`jobs`
//! or one worker's `wip`; every move between them is one atomic script. A job
//! leaves Redis only through [`RedisQueue::ack`], after its row is committed.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Script};

use crate::config::redact_url;
use crate::job::{ClaimedJob, JobHandle};

/// A Redis operation that failed; the job it concerned is still safe in Redis.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis URL {url}: {source}")]
    Url {
        url: String,
        source: redis::RedisError,
    },
    #[error("redis returned an unexpected reply: {0}")]
    Protocol(String),
}

/// Depth of one queue, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepths {
    /// Waiting to start: producers' messages plus jobs due again.
    pub pending: u64,
    /// Held by a worker (claimed, running or waiting for their row to commit).
    pub running: u64,
    /// Waiting for their time: retries with backoff and `run_at` jobs.
    pub scheduled: u64,
}

/// A job's state in Redis (before its row is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// `queued`, `running` or `retrying`.
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// A job going back to `scheduled`: after a failed attempt, or not yet due.
#[derive(Debug, Clone)]
pub struct Reschedule {
    pub token: String,
    pub due_ms: i64,
    /// Attempts made and the error, after a failed attempt; `None` when the
    /// job did not start (its `run_at` lies ahead).
    pub failure: Option<(u32, String)>,
}

/// Names of one queue's keys.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    pub pending: String,
    ready: String,
    jobs: String,
    scheduled: String,
    attempts: String,
    errors: String,
    workers: String,
    ids: String,
    accepted: String,
    /// `P:{q}:wip:`; a worker's id completes it.
    wip_prefix: String,
}

impl QueueKeys {
    pub fn new(prefix: &str, queue: &str) -> QueueKeys {
        let base = format!("{prefix}:{{{queue}}}");
        QueueKeys {
            pending: format!("{base}:pending"),
            ready: format!("{base}:ready"),
            jobs: format!("{base}:jobs"),
            scheduled: format!("{base}:scheduled"),
            attempts: format!("{base}:attempts"),
            errors: format!("{base}:errors"),
            workers: format!("{base}:workers"),
            ids: format!("{base}:ids"),
            accepted: format!("{base}:accepted"),
            wip_prefix: format!("{base}:wip:"),
        }
    }

    fn wip(&self, worker: &str) -> String {
        format!("{}{worker}", self.wip_prefix)
    }
}

/// Lua: the job id of a message that starts with `{"id":"` (as the API, the
/// CLI and serde write envelopes), else nil. Ids cannot hold a quote, so the
/// next quote ends it. A cheap string test: messages are never decoded in Redis.
const LEAD_ID_LUA: &str = r#"
local function lead_id(raw)
  if string.sub(raw, 1, 7) == '{"id":"' then
    local stop = string.find(raw, '"', 8, true)
    if stop and stop > 8 and stop <= 72 then return string.sub(raw, 8, stop - 1) end
  end
  return nil
end
"#;

/// Moves up to ARGV[1] jobs from `ready`, then `pending`, into this worker's
/// `wip`, naming new messages `<nonce>-<i>`, and renews the worker's lease.
/// Returns a flat list of (token, message, attempts, last error).
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{LEAD_ID_LUA}
local max = tonumber(ARGV[1])
local out, wip = {{}}, {{}}
local tokens = redis.call('RPOP', KEYS[2], max)
if tokens then
  for _, token in ipairs(tokens) do
    local raw = redis.call('HGET', KEYS[3], token)
    if raw then
      redis.call('HDEL', KEYS[3], token)
      wip[#wip + 1] = token; wip[#wip + 1] = raw
      out[#out + 1] = token; out[#out + 1] = raw
      out[#out + 1] = redis.call('HGET', KEYS[4], token) or '0'
      out[#out + 1] = redis.call('HGET', KEYS[5], token) or ''
    end
  end
  max = max - #tokens
end
if max > 0 then
  local messages = redis.call('RPOP', KEYS[1], max)
  if messages then
    for i, raw in ipairs(messages) do
      local token = ARGV[2] .. '-' .. i
      wip[#wip + 1] = token; wip[#wip + 1] = raw
      out[#out + 1] = token; out[#out + 1] = raw; out[#out + 1] = '0'; out[#out + 1] = ''
    end
  end
end
local ids = {{}}
for i = 1, #wip, 2 do
  local id = lead_id(wip[i + 1])
  if id then ids[#ids + 1] = id; ids[#ids + 1] = wip[i] end
end
if #wip > 0 then redis.call('HSET', KEYS[6], unpack(wip)) end
if #ids > 0 then redis.call('HSET', KEYS[8], unpack(ids)) end
redis.call('ZADD', KEYS[7], ARGV[4], ARGV[3])
return out
"
    ))
});

/// Acknowledges committed jobs (ARGV: tokens): removes them from this
/// worker's `wip` with their attempt count, last error and id entries, in a
/// few bulk commands. Tokens no longer in `wip` (lease lost) are left alone.
/// Returns how many were acknowledged.
static ACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{LEAD_ID_LUA}
local raws = redis.call('HMGET', KEYS[1], unpack(ARGV))
local held, ids = {{}}, {{}}
for i = 1, #ARGV do
  local raw = raws[i]
  if raw then
    held[#held + 1] = ARGV[i]
    local id = lead_id(raw)
    if id then ids[#ids + 1] = id end
  end
end
if #held > 0 then
  redis.call('HDEL', KEYS[1], unpack(held))
  redis.call('HDEL', KEYS[2], unpack(held))
  redis.call('HDEL', KEYS[3], unpack(held))
end
if #ids > 0 then
  redis.call('HDEL', KEYS[4], unpack(ids))
  redis.call('HDEL', KEYS[5], unpack(ids))
end
return #held
"
    ))
});

/// Most tokens or fields one script call takes (Lua's `unpack` has a limit
/// of about 8 000 values).
pub const MAX_SCRIPT_BATCH: usize = 1000;

/// Where a job stands in Redis, by id: (state, attempts made, last error), or nil.
static JOB_STATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local token = redis.call('HGET', KEYS[1], ARGV[1])
if not token then
  if redis.call('HEXISTS', KEYS[6], ARGV[1]) == 1 then return {'queued', '0', ''} end
  return false
end
local attempts = redis.call('HGET', KEYS[4], token) or '0'
local err = redis.call('HGET', KEYS[5], token) or ''
local state = 'running'
if redis.call('HEXISTS', KEYS[2], token) == 1 then
  if tonumber(attempts) > 0 then state = 'retrying' else state = 'queued' end
end
return {state, attempts, err}
",
    )
});

/// Moves jobs from this worker's `wip` to `scheduled` (ARGV: token, due,
/// attempts or '', error — repeated). Jobs no longer in `wip` (lease lost)
/// are left alone. Returns how many moved.
static RESCHEDULE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local moved = 0
for i = 1, #ARGV, 4 do
  local token = ARGV[i]
  local raw = redis.call('HGET', KEYS[1], token)
  if raw then
    redis.call('HDEL', KEYS[1], token)
    redis.call('HSET', KEYS[2], token, raw)
    redis.call('ZADD', KEYS[3], ARGV[i + 1], token)
    if ARGV[i + 2] ~= '' then
      redis.call('HSET', KEYS[4], token, ARGV[i + 2])
      redis.call('HSET', KEYS[5], token, ARGV[i + 3])
    end
    moved = moved + 1
  end
end
return moved
",
    )
});

/// Moves up to ARGV[2] jobs due by ARGV[1] from `scheduled` to `ready`, earliest first.
static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #due > 0 then
  redis.call('ZREM', KEYS[1], unpack(due))
  redis.call('LPUSH', KEYS[2], unpack(due))
end
return #due
",
    )
});

/// Returns the jobs of workers whose lease ended before ARGV[1] to `ready`,
/// counting the lost attempt. Returns a flat list of (worker, jobs recovered).
static REAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 16)
for _, worker in ipairs(expired) do
  local wip = ARGV[2] .. worker
  local entries = redis.call('HGETALL', wip)
  for i = 1, #entries, 2 do
    local token = entries[i]
    redis.call('HSET', KEYS[2], token, entries[i + 1])
    local n = redis.call('HINCRBY', KEYS[3], token, 1)
    redis.call('HSET', KEYS[4], token,
      'worker ' .. worker .. ' stopped responding during attempt ' .. n .. ' (lease expired)')
    redis.call('LPUSH', KEYS[5], token)
  end
  redis.call('DEL', wip)
  redis.call('ZREM', KEYS[1], worker)
  out[#out + 1] = worker; out[#out + 1] = tostring(#entries / 2)
end
return out
",
    )
});

/// Hands every job of this worker back to the front of `ready` without
/// counting an attempt, and removes the worker's lease (graceful shutdown).
static HAND_BACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  redis.call('HSET', KEYS[2], entries[i], entries[i + 1])
  redis.call('RPUSH', KEYS[3], entries[i])
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return #entries / 2
",
    )
});

/// Returns the given tokens from this worker's `wip` to the front of `ready`
/// without counting an attempt. Returns how many moved.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local moved = 0
for _, token in ipairs(ARGV) do
  local raw = redis.call('HGET', KEYS[1], token)
  if raw then
    redis.call('HDEL', KEYS[1], token)
    redis.call('HSET', KEYS[2], token, raw)
    redis.call('RPUSH', KEYS[3], token)
    moved = moved + 1
  end
end
return moved
",
    )
});

/// Renews a worker's lease; returns 1 when it still had one, 0 when it had
/// been presumed dead (its jobs recovered elsewhere).
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local had = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if had then return 1 else return 0 end
",
    )
});

/// Depths: pending+ready, scheduled, and jobs held by all workers.
static DEPTHS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local running = 0
for _, worker in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  running = running + redis.call('HLEN', ARGV[1] .. worker)
end
return {redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2]), redis.call('ZCARD', KEYS[3]), running}
",
    )
});

/// The Redis side of conveyor: cheap to clone, reconnects by itself.
#[derive(Clone)]
pub struct RedisQueue {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: Arc<str>,
    response_timeout: Duration,
}

impl RedisQueue {
    /// Prepares a connection that is opened on first use and reopened after
    /// failures, so a worker can start while Redis is still down.
    pub fn connect(
        url: &str,
        prefix: &str,
        response_timeout: Duration,
    ) -> Result<RedisQueue, QueueError> {
        let client = redis::Client::open(url).map_err(|source| QueueError::Url {
            url: redact_url(url),
            source,
        })?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(response_timeout))
            .set_connection_timeout(Some(response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(RedisQueue {
            client,
            conn,
            prefix: prefix.into(),
            response_timeout,
        })
    }

    pub fn keys(&self, queue: &str) -> QueueKeys {
        QueueKeys::new(&self.prefix, queue)
    }

    /// Claims up to `max` jobs of `queue` for `worker`, renewing its lease to `lease_deadline_ms`.
    pub async fn claim(
        &self,
        queue: &Arc<str>,
        worker: &str,
        max: usize,
        lease_deadline_ms: i64,
    ) -> Result<Vec<ClaimedJob>, QueueError> {
        let keys = self.keys(queue);
        let nonce = format!("{:016x}", rand::random::<u64>());
        let reply: Vec<Vec<u8>> = CLAIM
            .key(&keys.pending)
            .key(&keys.ready)
            .key(&keys.jobs)
            .key(&keys.attempts)
            .key(&keys.errors)
            .key(keys.wip(worker))
            .key(&keys.workers)
            .key(&keys.ids)
            .arg(max)
            .arg(&nonce)
            .arg(worker)
            .arg(lease_deadline_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let claimed_at_ms = crate::job::now_ms();
        let mut jobs = Vec::with_capacity(reply.len() / 4);
        let mut fields = reply.into_iter();
        while let (Some(token), Some(raw), Some(attempts), Some(error)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        {
            jobs.push(ClaimedJob {
                handle: JobHandle {
                    queue: queue.clone(),
                    token: utf8(token)?,
                },
                raw,
                attempts_made: utf8(attempts)?.parse().unwrap_or(0),
                last_error: Some(utf8(error)?).filter(|e| !e.is_empty()),
                claimed_at_ms,
            });
        }
        Ok(jobs)
    }

    /// Removes committed jobs from `worker`'s hold. Returns how many were
    /// still held; the rest had been recovered by another worker (lease lost).
    pub async fn ack(
        &self,
        queue: &str,
        worker: &str,
        tokens: &[String],
    ) -> Result<usize, QueueError> {
        if tokens.is_empty() {
            return Ok(0);
        }
        let keys = self.keys(queue);
        let mut acked = 0;
        for chunk in tokens.chunks(MAX_SCRIPT_BATCH) {
            let mut invocation = ACK.prepare_invoke();
            invocation
                .key(keys.wip(worker))
                .key(&keys.attempts)
                .key(&keys.errors)
                .key(&keys.ids)
                .key(&keys.accepted);
            for token in chunk {
                invocation.arg(token);
            }
            let held: usize = invocation.invoke_async(&mut self.conn.clone()).await?;
            acked += held;
        }
        Ok(acked)
    }

    /// Moves jobs from `worker`'s hold to `scheduled`. Returns how many moved.
    pub async fn reschedule(
        &self,
        queue: &str,
        worker: &str,
        jobs: &[Reschedule],
    ) -> Result<usize, QueueError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let keys = self.keys(queue);
        let mut invocation = RESCHEDULE.prepare_invoke();
        invocation
            .key(keys.wip(worker))
            .key(&keys.jobs)
            .key(&keys.scheduled)
            .key(&keys.attempts)
            .key(&keys.errors);
        for job in jobs {
            let (attempts, error) = match &job.failure {
                Some((attempts, error)) => (attempts.to_string(), error.as_str()),
                None => (String::new(), ""),
            };
            invocation
                .arg(&job.token)
                .arg(job.due_ms)
                .arg(attempts)
                .arg(error);
        }
        Ok(invocation.invoke_async(&mut self.conn.clone()).await?)
    }

    /// Moves up to `limit` jobs due by `now_ms` from `scheduled` to `ready`.
    pub async fn promote_due(
        &self,
        queue: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<usize, QueueError> {
        let keys = self.keys(queue);
        Ok(PROMOTE
            .key(&keys.scheduled)
            .key(&keys.ready)
            .arg(now_ms)
            .arg(limit)
            .invoke_async(&mut self.conn.clone())
            .await?)
    }

    /// Renews `worker`'s lease on `queue`. `Ok(false)`: the lease had been
    /// lost and its jobs recovered by another worker.
    pub async fn heartbeat(
        &self,
        queue: &str,
        worker: &str,
        lease_deadline_ms: i64,
    ) -> Result<bool, QueueError> {
        let keys = self.keys(queue);
        let had: i64 = HEARTBEAT
            .key(&keys.workers)
            .arg(worker)
            .arg(lease_deadline_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(had == 1)
    }

    /// Recovers the jobs of workers whose lease ended before `now_ms`.
    /// Returns (worker, jobs recovered) for each.
    pub async fn reap_expired(
        &self,
        queue: &str,
        now_ms: i64,
    ) -> Result<Vec<(String, u64)>, QueueError> {
        let keys = self.keys(queue);
        let reply: Vec<String> = REAP
            .key(&keys.workers)
            .key(&keys.jobs)
            .key(&keys.attempts)
            .key(&keys.errors)
            .key(&keys.ready)
            .arg(now_ms)
            .arg(&keys.wip_prefix)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(reply
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), pair[1].parse().unwrap_or(0)))
            .collect())
    }

    /// Claim tokens `worker` holds on `queue` according to Redis.
    pub async fn held_tokens(&self, queue: &str, worker: &str) -> Result<Vec<String>, QueueError> {
        let keys = self.keys(queue);
        let tokens: Vec<String> = redis::cmd("HKEYS")
            .arg(keys.wip(worker))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(tokens)
    }

    /// Returns `tokens` held by `worker` to the front of `queue` without
    /// counting an attempt. Returns how many were still held.
    pub async fn release(
        &self,
        queue: &str,
        worker: &str,
        tokens: &[String],
    ) -> Result<usize, QueueError> {
        if tokens.is_empty() {
            return Ok(0);
        }
        let keys = self.keys(queue);
        let mut invocation = RELEASE.prepare_invoke();
        invocation
            .key(keys.wip(worker))
            .key(&keys.jobs)
            .key(&keys.ready);
        for token in tokens {
            invocation.arg(token);
        }
        Ok(invocation.invoke_async(&mut self.conn.clone()).await?)
    }

    /// Hands all of `worker`'s jobs on `queue` back, first in line. Returns how many.
    pub async fn hand_back(&self, queue: &str, worker: &str) -> Result<usize, QueueError> {
        let keys = self.keys(queue);
        Ok(HAND_BACK
            .key(keys.wip(worker))
            .key(&keys.jobs)
            .key(&keys.ready)
            .key(&keys.workers)
            .arg(worker)
            .invoke_async(&mut self.conn.clone())
            .await?)
    }

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
            .arg(id)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(reply.map(|(state, attempts, error)| JobState {
            state,
            attempts,
            last_error: Some(error).filter(|e| !e.is_empty()),
        }))
    }

    /// Enqueues jobs taken by the HTTP API: pushes them and records them as
    /// accepted, atomically, so their status reads `queued` at once.
    /// `jobs` are (id, message) pairs.
    pub async fn accept(&self, queue: &str, jobs: &[(String, Vec<u8>)]) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let keys = self.keys(queue);
        let now = crate::job::now_ms();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (id, message) in jobs {
            pipe.hset(&keys.accepted, id, now).ignore();
            pipe.lpush(&keys.pending, message).ignore();
        }
        let () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    pub async fn depths(&self, queue: &str) -> Result<QueueDepths, QueueError> {
        let keys = self.keys(queue);
        let (pending, scheduled, running): (u64, u64, u64) = DEPTHS
            .key(&keys.pending)
            .key(&keys.ready)
            .key(&keys.scheduled)
            .key(&keys.workers)
            .arg(&keys.wip_prefix)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(QueueDepths {
            pending,
            running,
            scheduled,
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

    /// Whether Redis answers (for readiness checks).
    pub async fn ping(&self) -> Result<(), QueueError> {
        let reply: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(QueueError::Protocol(format!("PING answered {reply:?}")))
        }
    }

    /// Pushes messages onto `queue` as any producer would (`LPUSH`).
    pub async fn push(&self, queue: &str, messages: &[Vec<u8>]) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        let keys = self.keys(queue);
        let _: () = redis::cmd("LPUSH")
            .arg(&keys.pending)
            .arg(messages)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Deletes every key of `queue` (benchmarks and tests); workers holding
    /// its jobs must be stopped first.
    pub async fn delete_queue(&self, queue: &str) -> Result<(), QueueError> {
        let keys = self.keys(queue);
        let workers = self.workers(queue).await?;
        let mut doomed: Vec<String> = workers.iter().map(|(w, _)| keys.wip(w)).collect();
        doomed.extend([
            keys.pending.clone(),
            keys.ready.clone(),
            keys.jobs.clone(),
            keys.scheduled.clone(),
            keys.attempts.clone(),
            keys.errors.clone(),
            keys.workers.clone(),
            keys.ids.clone(),
            keys.accepted.clone(),
        ]);
        let _: () = redis::cmd("DEL")
            .arg(doomed)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// A connection of its own for blocking waits (a blocking command would
    /// stall every other command on the shared connection).
    pub async fn waiter(&self) -> Result<MultiplexedConnection, QueueError> {
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(self.response_timeout));
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }
}

/// Blocks until `queue`'s pending list is non-empty or `timeout` passes,
/// without taking anything: `BLMOVE` of a list onto its own tail is a no-op
/// once it returns. `Ok(true)` when a message is waiting.
pub async fn wait_for_message(
    conn: &mut MultiplexedConnection,
    keys: &QueueKeys,
    timeout: Duration,
) -> Result<bool, QueueError> {
    let reply: Option<Vec<u8>> = redis::cmd("BLMOVE")
        .arg(&keys.pending)
        .arg(&keys.pending)
        .arg("RIGHT")
        .arg("RIGHT")
        .arg(timeout.as_secs_f64())
        .query_async(conn)
        .await?;
    Ok(reply.is_some())
}

fn utf8(bytes: Vec<u8>) -> Result<String, QueueError> {
    String::from_utf8(bytes).map_err(|e| QueueError::Protocol(e.to_string()))
}
