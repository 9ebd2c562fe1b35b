//! The Lua scripts conveyor runs: one atomic script for each move of a job
//! between a queue's keys, and the reads that must see those keys at one
//! instant.
//!
//! This module owns the script text and the KEYS/ARGV contract each script's
//! comment states. It must never run a script (the callers in the parent
//! module pass keys and arguments), never decode a message (a cheap prefix
//! test for the job id is all), and never touch a key outside the hash tag of
//! the queue whose keys it is given.

use std::sync::LazyLock;

use redis::Script;

use super::unique::{UNIQUE_CLAIM_LUA, UNIQUE_RELEASE_LUA};

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
/// Takes the unique lock of each job with a `unique_key` (ARGV[5]: the lock
/// prefix, KEYS[9]: the token registry, ARGV[6]: now). Returns '1' if the
/// worker held a lease before this call ('0' if it had been presumed dead,
/// or is new), then a flat list of (token, message, attempts, last error,
/// id of the job holding its unique key or '').
pub(super) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{LEAD_ID_LUA}{UNIQUE_CLAIM_LUA}
local max = tonumber(ARGV[1])
local out, wip = {{}}, {{}}
if redis.call('ZSCORE', KEYS[7], ARGV[3]) then out[1] = '1' else out[1] = '0' end
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
      out[#out + 1] = unique_claim(token, raw, ARGV[5], KEYS[9], tonumber(ARGV[6]))
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
      out[#out + 1] = unique_claim(token, raw, ARGV[5], KEYS[9], tonumber(ARGV[6]))
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
/// few bulk commands, and releases the unique locks they hold (KEYS[6]: the
/// token registry). Tokens no longer in `wip` (lease lost) are left alone.
/// Returns how many were acknowledged.
pub(super) static ACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{LEAD_ID_LUA}{UNIQUE_RELEASE_LUA}
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
unique_release(KEYS[6], held)
return #held
"
    ))
});

/// Where a job stands in Redis, by id: (state, attempts made, last error), or nil.
pub(super) static JOB_STATE: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static RESCHEDULE: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static REAP: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static HAND_BACK: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local had = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if had then return 1 else return 0 end
",
    )
});

/// Depths: pending+ready, scheduled, and jobs held by all workers.
pub(super) static DEPTHS: LazyLock<Script> = LazyLock::new(|| {
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

/// The message of job `id` (ARGV[1]) while it holds a claim token: from
/// `jobs` (KEYS[2]) or the `wip` of a worker in KEYS[3] (ARGV[2] is the
/// `wip` prefix). Returns {message, worker or ''}, or nil. Read-only.
pub(super) static JOB_MESSAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local token = redis.call('HGET', KEYS[1], ARGV[1])
if not token then return false end
local msg = redis.call('HGET', KEYS[2], token)
if msg then return {msg, ''} end
for _, worker in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  msg = redis.call('HGET', ARGV[2] .. worker, token)
  if msg then return {msg, worker} end
end
return false
",
    )
});
