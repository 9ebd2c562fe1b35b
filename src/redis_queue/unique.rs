//! Unique locks: while a job with a `unique_key` is unfinished, no second job
//! of its queue with that key is created.
//!
//! The lock of key `k` in queue `q` is the string `P:{q}:unique:<k>` holding
//! the id of the job that owns it. It is taken
//! - when the API or the CLI enqueues the job ([`RedisQueue::accept_unique`]):
//!   a held lock refuses the job and names the holder;
//! - when a claim first takes a message pushed by `LPUSH` (the Lua of
//!   [`UNIQUE_CLAIM_LUA`] in the claim script): a message whose key another
//!   job holds is claimed as a duplicate and ends in a `duplicate` row.
//!
//! The claim also records, in the hash `P:{q}:unique_tokens`, claim token →
//! (job id, hold-until time, lock key). The script that acknowledges a
//! finished job ([`UNIQUE_RELEASE_LUA`] in the ack script) looks its token up
//! there and deletes the lock if it still holds that job's id — or, with
//! `unique_for_ms`, lets it expire at `enqueued_at + unique_for_ms` if that
//! lies ahead. A job recovered from a killed worker keeps its token, so its
//! lock is released when it finally ends; a lock without `unique_for_ms`
//! never outlives its job.
//!
//! This module owns those keys and the Lua that touches them. It must never
//! release a lock held by another job's id.

use std::sync::LazyLock;

use redis::Script;

use super::{QueueError, RedisQueue};

/// Lua: `unique_claim(token, raw, lock_prefix, registry, now_ms)` for a
/// message first taken from `pending`. Returns the holder's id when another
/// job holds the message's `unique_key` (a duplicate), else `''` after taking
/// the lock (or finding it already this job's) and recording the token.
/// Messages without `"unique_key"` cost one substring search.
pub(super) const UNIQUE_CLAIM_LUA: &str = r#"
local function unique_claim(token, raw, lock_prefix, registry, now_ms)
  if not string.find(raw, '"unique_key"', 1, true) then return '' end
  local ok, job = pcall(cjson.decode, raw)
  if not ok or type(job) ~= 'table' or type(job.unique_key) ~= 'string' then return '' end
  local key = job.unique_key
  local _, continuation = string.gsub(key, '[\128-\191]', '')
  local chars = #key - continuation
  if chars < 1 or chars > 128 then return '' end
  local id = token
  if type(job.id) == 'string' then id = job.id end
  local lock = lock_prefix .. key
  local holder = redis.call('GET', lock)
  if holder and holder ~= id then return holder end
  if not holder then redis.call('SET', lock, id) end
  local hold = 0
  if type(job.unique_for_ms) == 'number' and job.unique_for_ms > 0 then
    local since = now_ms
    if type(job.enqueued_at) == 'number' then since = job.enqueued_at end
    hold = since + job.unique_for_ms
  end
  redis.call('HSET', registry, token, id .. '\n' .. string.format('%.0f', hold) .. '\n' .. lock)
  return ''
end
"#;

/// Lua: `unique_release(registry, tokens)` for jobs that ended: releases
/// the locks they still hold and forgets their tokens.
pub(super) const UNIQUE_RELEASE_LUA: &str = r"
local function unique_release(registry, tokens)
  if #tokens == 0 or redis.call('EXISTS', registry) == 0 then return end
  local entries = redis.call('HMGET', registry, unpack(tokens))
  local gone, now_ms = {}, nil
  for i = 1, #tokens do
    local entry = entries[i]
    if entry then
      gone[#gone + 1] = tokens[i]
      local id, hold, lock = string.match(entry, '^([^\n]*)\n([^\n]*)\n(.*)$')
      if id and redis.call('GET', lock) == id then
        if not now_ms then
          local t = redis.call('TIME')
          now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        end
        local until_ms = tonumber(hold) or 0
        if until_ms > now_ms then
          redis.call('PEXPIREAT', lock, until_ms)
        else
          redis.call('DEL', lock)
        end
      end
    end
  end
  if #gone > 0 then redis.call('HDEL', registry, unpack(gone)) end
end
";

/// Takes the lock ARGV[3] for job ARGV[1] unless another id holds it (or,
/// with ARGV[5] set, unless a holder other than ARGV[5] holds it); then
/// pushes message ARGV[2] and records the id as accepted at ARGV[4].
/// Returns {} when the job was enqueued, else {holder, hold-until of the
/// holder's claim ('' when unknown), the lock's PTTL}. KEYS: pending,
/// accepted, ids, token registry.
static ACCEPT_UNIQUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local holder = redis.call('GET', ARGV[3])
if holder and holder ~= ARGV[1] and holder ~= ARGV[5] then
  local token = redis.call('HGET', KEYS[3], holder) or holder
  local entry = redis.call('HGET', KEYS[4], token)
  local hold = ''
  if entry then hold = string.match(entry, '^[^\n]*\n([^\n]*)') or '' end
  return {holder, hold, tostring(redis.call('PTTL', ARGV[3]))}
end
redis.call('SET', ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
redis.call('LPUSH', KEYS[1], ARGV[2])
return {}
",
    )
});

/// Another job holds a unique key: who, and what Redis knows of its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueHolder {
    /// The job id holding the key.
    pub id: String,
    /// The lock has no expiry: its job has not been acknowledged as ended.
    pub unreleased: bool,
    /// When a claimed holder's `unique_for_ms` runs out (0: none); `None`
    /// when its claim is unknown (not claimed yet, or id not indexed).
    pub hold_until_ms: Option<i64>,
}

impl RedisQueue {
    /// `P:{q}:unique:` — a `unique_key` completes it.
    pub(super) fn unique_prefix(&self, queue: &str) -> String {
        format!("{}:{{{queue}}}:unique:", self.prefix)
    }

    /// `P:{q}:unique_tokens`: claim token → the lock it holds.
    pub(super) fn unique_registry(&self, queue: &str) -> String {
        format!("{}:{{{queue}}}:unique_tokens", self.prefix)
    }

    /// Enqueues job `id` with `unique_key` unless another job of `queue`
    /// holds that key: then nothing is pushed and the holder is described.
    /// `replacing`: a holder known to have ended, whose lock is taken over.
    pub async fn accept_unique(
        &self,
        queue: &str,
        id: &str,
        message: &[u8],
        unique_key: &str,
        replacing: Option<&str>,
    ) -> Result<Option<UniqueHolder>, QueueError> {
        let keys = self.keys(queue);
        let reply: Vec<String> = ACCEPT_UNIQUE
            .key(&keys.pending)
            .key(&keys.accepted)
            .key(&keys.ids)
            .key(self.unique_registry(queue))
            .arg(id)
            .arg(message)
            .arg(format!("{}{unique_key}", self.unique_prefix(queue)))
            .arg(crate::job::now_ms())
            .arg(replacing.unwrap_or(""))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match reply.as_slice() {
            [] => None,
            [holder, hold, ttl] => Some(UniqueHolder {
                id: holder.clone(),
                unreleased: ttl == "-1",
                hold_until_ms: hold.parse().ok(),
            }),
            other => {
                return Err(QueueError::Protocol(format!(
                    "unique accept answered {other:?}"
                )))
            }
        })
    }
}
