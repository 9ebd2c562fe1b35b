//! The Lua scripts conveyor runs: one atomic script for each move of a job
//! between a queue's keys, and the reads that must see those keys at one
//! instant.
//!
//! This module owns the script text and the KEYS/ARGV contract each script's
//! comment states: `KEYS: a, b, c` means KEYS[1] is `a`, KEYS[2] is `b` and
//! so on (the names of [`super::QueueKeys`]); ARGV is listed the same way. It must never run a script (the callers in the parent
//! module pass keys and arguments), never decode a message (a cheap prefix
//! test for the job id is all), and never touch a key outside the hash tag of
//! the queue whose keys it is given.

use std::sync::LazyLock;

use redis::Script;

use super::fair_scripts::{KEY_OF_LUA, SORT_LUA, TAKE_KEYED_LUA};
use super::limit_scripts::FREE_SLOTS_LUA;
use super::unique::{UNIQUE_CLAIM_LUA, UNIQUE_RELEASE_LUA};

/// Lua: the job id of a message that starts with `{"id":"` (as the API, the
/// CLI and serde write envelopes), else nil. Ids cannot hold a quote, so the
/// next quote ends it. A cheap string test: messages are never decoded in Redis.
pub(super) const LEAD_ID_LUA: &str = r#"
local function lead_id(raw)
  if string.sub(raw, 1, 7) == '{"id":"' then
    local stop = string.find(raw, '"', 8, true)
    if stop and stop > 8 and stop <= 72 then return string.sub(raw, 8, stop - 1) end
  end
  return nil
end
"#;

/// Lua: `record_claim(wip)` for both claim scripts (plain and limited),
/// which share these KEYS/ARGV positions: stores the claimed (token,
/// message) pairs in this worker's `wip` (KEYS[6]), maps job ids to their
/// tokens (KEYS[8]) and renews the worker's lease (KEYS[7]; ARGV[3] worker,
/// ARGV[4] deadline). Needs [`LEAD_ID_LUA`] before it.
pub(super) const RECORD_CLAIM_LUA: &str = r"
local function record_claim(wip)
  local ids = {}
  for i = 1, #wip, 2 do
    local id = lead_id(wip[i + 1])
    if id then ids[#ids + 1] = id; ids[#ids + 1] = wip[i] end
  end
  if #wip > 0 then redis.call('HSET', KEYS[6], unpack(wip)) end
  if #ids > 0 then redis.call('HSET', KEYS[8], unpack(ids)) end
  redis.call('ZADD', KEYS[7], ARGV[4], ARGV[3])
end
";

/// Moves up to ARGV[1] jobs into this worker's `wip`: first cancelled jobs
/// waiting for their `cancelled` row (even in a paused queue: they never
/// start), then, unless the queue is paused, jobs from `ready`, then from
/// `pending` — as they are (naming them `<nonce>-<i>`) while no job key is
/// in play, else round-robin by key from the key lists, into which it
/// first sorts up to ARGV[8] pending messages. Renews the worker's lease.
/// Takes the unique lock of each job with a `unique_key`.
/// KEYS: pending, ready, jobs, attempts, errors, wip, workers, ids, paused,
/// cancel, cancelled, unique token registry, key ring, keyed count. ARGV:
/// max, nonce, worker, lease deadline, unique lock prefix, now, key list
/// prefix, most messages sorted per call.
/// Returns '1' if the worker held a lease before this call ('0' if it had
/// been presumed dead, or is new), '1' if the queue is paused, the number of
/// cancelled jobs, '1' if `pending` holds messages left to sort, then a flat list of (token, message, attempts, last
/// error, id of the job holding its unique key or ''), the cancelled jobs
/// first.
pub(super) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{LEAD_ID_LUA}{RECORD_CLAIM_LUA}{UNIQUE_CLAIM_LUA}{KEY_OF_LUA}{SORT_LUA}
local max = tonumber(ARGV[1])
local lock_prefix, registry, now_ms = ARGV[5], KEYS[12], tonumber(ARGV[6])
local lease = '0'
if redis.call('ZSCORE', KEYS[7], ARGV[3]) then lease = '1' end
local paused = redis.call('EXISTS', KEYS[9]) == 1
local any_cancel = redis.call('EXISTS', KEYS[10]) == 1
-- The reply is built in place (no copy per job): the header, the cancelled
-- jobs' groups, then the others'. Jobs from `ready` that were not cancelled
-- wait in `later` (retries and handed-back jobs: few).
local reply, wip, later = {{lease, paused and '1' or '0', '0', '0'}}, {{}}, {{}}
local ncancelled = 0
local function take(token, raw, into)
  local w, n = #wip, #into
  wip[w + 1] = token; wip[w + 2] = raw
  into[n + 1] = token; into[n + 2] = raw
  into[n + 3] = redis.call('HGET', KEYS[4], token) or '0'
  into[n + 4] = redis.call('HGET', KEYS[5], token) or ''
  into[n + 5] = unique_claim(token, raw, lock_prefix, registry, now_ms)
end
local function from_jobs(list, flagged_only)
  local tokens = redis.call('RPOP', list, max)
  if not tokens then return end
  for _, token in ipairs(tokens) do
    local raw = redis.call('HGET', KEYS[3], token)
    if raw then
      redis.call('HDEL', KEYS[3], token)
      if flagged_only or (any_cancel and redis.call('HEXISTS', KEYS[10], token) == 1) then
        take(token, raw, reply)
        ncancelled = ncancelled + 1
      else
        take(token, raw, later)
      end
    end
  end
  max = max - #tokens
end
from_jobs(KEYS[11], true)
if not paused and max > 0 then from_jobs(KEYS[2], false) end
reply[3] = tostring(ncancelled)
for _, v in ipairs(later) do reply[#reply + 1] = v end
{TAKE_KEYED_LUA}
-- While no key list holds jobs and the batch has no keyed message, pending
-- messages are taken as they are; otherwise the backlog is sorted into the
-- keys' lists first and taken round-robin by key.
local function from_pending()
  if redis.call('LLEN', KEYS[13]) == 0 then
    local messages = redis.call('RPOP', KEYS[1], max)
    if not messages then return end
    if not any_keyed(messages) then
      local w, n = #wip, #reply
      for i, raw in ipairs(messages) do
        local token = ARGV[2] .. '-' .. i
        wip[w + 1] = token; wip[w + 2] = raw
        reply[n + 1] = token; reply[n + 2] = raw; reply[n + 3] = '0'; reply[n + 4] = ''
        reply[n + 5] = unique_claim(token, raw, lock_prefix, registry, now_ms)
        w = w + 2; n = n + 5
      end
      return
    end
    sort_messages(messages)
  end
  sort_pending(tonumber(ARGV[8]))
  take_keyed()
end
if not paused and max > 0 then from_pending() end
if not paused then reply[4] = unsorted_flag() end
record_claim(wip)
return reply
"
    ))
});

/// Sorts up to ARGV[9] more `pending` messages into the key lists, while
/// the queue is not paused and key lists are in use (a queue that never sees
/// a keyed job is never sorted). KEYS and ARGV: those of the plain claim
/// (it uses pending, jobs, ids, paused, key ring and keyed count, the nonce
/// and the key list prefix), then the batch to sort. Takes no job: a sorted job waits
/// in its key's list for a claim. Returns how many messages `pending` still
/// holds to sort (0: none, or sorting is not called for).
pub(super) static SORT_PENDING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{LEAD_ID_LUA}{KEY_OF_LUA}{SORT_LUA}
if redis.call('EXISTS', KEYS[9]) == 1 or redis.call('LLEN', KEYS[13]) == 0 then return 0 end
sort_pending(tonumber(ARGV[9]))
if unsorted_flag() == '1' then return redis.call('LLEN', KEYS[1]) end
return 0
"
    ))
});

/// Acknowledges committed jobs (ARGV: tokens): removes them from this
/// worker's `wip` with their attempt count, last error, id entries and
/// cancel marks, in a few bulk commands, and releases the unique locks they
/// hold. Tokens no longer in `wip` (lease lost) are left alone. KEYS: wip,
/// attempts, errors, ids, accepted, cancel, this worker's signal set, unique
/// token registry, then `slotted` and `freed` (their limiter slots are
/// released). Returns how many were acknowledged.
pub(super) static ACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{LEAD_ID_LUA}{UNIQUE_RELEASE_LUA}{FREE_SLOTS_LUA}
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
-- Attempt counts, errors, cancel marks, signals and API receipts exist only
-- for some jobs: a key that is absent costs one EXISTS, not a bulk delete.
local function forget(command, key, members)
  if redis.call('EXISTS', key) == 1 then redis.call(command, key, unpack(members)) end
end
if #held > 0 then
  redis.call('HDEL', KEYS[1], unpack(held))
  forget('HDEL', KEYS[2], held)
  forget('HDEL', KEYS[3], held)
  forget('HDEL', KEYS[6], held)
  forget('SREM', KEYS[7], held)
  free_slots(KEYS[9], KEYS[10], held)
end
if #ids > 0 then
  redis.call('HDEL', KEYS[4], unpack(ids))
  forget('HDEL', KEYS[5], ids)
end
unique_release(KEYS[8], held)
return #held
"
    ))
});

/// Where a job stands in Redis, by id: (state, attempts made, last error), or nil.
/// KEYS: ids, jobs, scheduled, attempts, errors, accepted, cancel.
/// A cancelled job is `cancelled` while it waits for its row, `cancelling`
/// while a worker still runs it. ARGV: the job id.
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
local waiting = redis.call('HEXISTS', KEYS[2], token) == 1
local state = 'running'
if redis.call('HEXISTS', KEYS[7], token) == 1 then
  if waiting then state = 'cancelled' else state = 'cancelling' end
elseif waiting then
  if tonumber(attempts) > 0 then state = 'retrying' else state = 'queued' end
end
return {state, attempts, err}
",
    )
});

/// Lua: puts a token back among the waiting jobs (KEYS[2] = `jobs` must
/// already hold its message): onto `cancelled` when it carries a cancel mark,
/// so it is finished without running, else onto `ready` (`front`: next in
/// line). Needs KEYS[`ready_key`], KEYS[`cancel_key`], KEYS[`cancelled_key`].
fn requeue_lua(ready: usize, cancel: usize, cancelled: usize) -> String {
    format!(
        r"
local function requeue(token, front)
  if redis.call('HEXISTS', KEYS[{cancel}], token) == 1 then
    redis.call('LPUSH', KEYS[{cancelled}], token)
  elseif front then
    redis.call('RPUSH', KEYS[{ready}], token)
  else
    redis.call('LPUSH', KEYS[{ready}], token)
  end
end
"
    )
}

/// Moves jobs from this worker's `wip` to `scheduled` (ARGV: token, due,
/// attempts or '', error — repeated); a job cancelled meanwhile goes to
/// `cancelled` instead, to be finished without running again. Jobs no longer
/// in `wip` (lease lost) are left alone. KEYS: wip, jobs, scheduled,
/// attempts, errors, cancel, cancelled, this worker's signal set, slotted,
/// freed (moved jobs release their limiter slots). Returns how many moved.
pub(super) static RESCHEDULE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{FREE_SLOTS_LUA}
local moved = {{}}
for i = 1, #ARGV, 4 do
  local token = ARGV[i]
  local raw = redis.call('HGET', KEYS[1], token)
  if raw then
    redis.call('HDEL', KEYS[1], token)
    redis.call('HSET', KEYS[2], token, raw)
    if redis.call('HEXISTS', KEYS[6], token) == 1 then
      redis.call('LPUSH', KEYS[7], token)
      redis.call('SREM', KEYS[8], token)
    else
      redis.call('ZADD', KEYS[3], ARGV[i + 1], token)
    end
    if ARGV[i + 2] ~= '' then
      redis.call('HSET', KEYS[4], token, ARGV[i + 2])
      redis.call('HSET', KEYS[5], token, ARGV[i + 3])
    end
    moved[#moved + 1] = token
  end
end
free_slots(KEYS[9], KEYS[10], moved)
return #moved
"
    ))
});

/// Moves up to ARGV[2] jobs due by ARGV[1] from `scheduled` to `ready`, earliest first.
/// KEYS: scheduled, ready. ARGV: now (unix ms), most jobs to move.
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

/// Returns the jobs of workers whose lease ended before ARGV[1] to `ready`
/// (cancelled ones to `cancelled`), counting the lost attempt, and drops
/// their cancel signals. KEYS: workers, jobs, attempts, errors, ready,
/// cancel, cancelled, slotted, freed (their limiter slots are released).
/// ARGV: now, wip prefix, signal prefix. Returns a flat list of (worker,
/// jobs recovered).
pub(super) static REAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{}{FREE_SLOTS_LUA}
local out = {{}}
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 16)
for _, worker in ipairs(expired) do
  local wip = ARGV[2] .. worker
  local entries = redis.call('HGETALL', wip)
  local tokens = {{}}
  for i = 1, #entries, 2 do
    local token = entries[i]
    tokens[#tokens + 1] = token
    redis.call('HSET', KEYS[2], token, entries[i + 1])
    local n = redis.call('HINCRBY', KEYS[3], token, 1)
    redis.call('HSET', KEYS[4], token,
      'worker ' .. worker .. ' stopped responding during attempt ' .. n .. ' (lease expired)')
    requeue(token, false)
  end
  free_slots(KEYS[8], KEYS[9], tokens)
  redis.call('DEL', wip, ARGV[3] .. worker)
  redis.call('ZREM', KEYS[1], worker)
  out[#out + 1] = worker; out[#out + 1] = tostring(#entries / 2)
end
return out
",
        requeue_lua(5, 6, 7)
    ))
});

/// Hands every job of this worker back to the front of `ready` (cancelled
/// ones to `cancelled`) without counting an attempt, and removes the
/// worker's lease and cancel signals (graceful shutdown). KEYS: wip, jobs,
/// ready, workers, cancel, cancelled, signal set, slotted, freed (their
/// limiter slots are released). ARGV: worker.
pub(super) static HAND_BACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{}{FREE_SLOTS_LUA}
local entries = redis.call('HGETALL', KEYS[1])
local tokens = {{}}
for i = 1, #entries, 2 do
  tokens[#tokens + 1] = entries[i]
  redis.call('HSET', KEYS[2], entries[i], entries[i + 1])
  requeue(entries[i], true)
end
free_slots(KEYS[8], KEYS[9], tokens)
redis.call('DEL', KEYS[1], KEYS[7])
redis.call('ZREM', KEYS[4], ARGV[1])
return #entries / 2
",
        requeue_lua(3, 5, 6)
    ))
});

/// Returns the given tokens from this worker's `wip` to the front of `ready`
/// (cancelled ones to `cancelled`) without counting an attempt. KEYS: wip,
/// jobs, ready, cancel, cancelled, this worker's signal set, slotted, freed
/// (their limiter slots are released). ARGV: the tokens. Returns how many
/// moved.
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{}{FREE_SLOTS_LUA}
local moved = {{}}
for _, token in ipairs(ARGV) do
  local raw = redis.call('HGET', KEYS[1], token)
  if raw then
    redis.call('HDEL', KEYS[1], token)
    redis.call('HSET', KEYS[2], token, raw)
    requeue(token, true)
    redis.call('SREM', KEYS[6], token)
    moved[#moved + 1] = token
  end
end
free_slots(KEYS[7], KEYS[8], moved)
return #moved
",
        requeue_lua(3, 4, 5)
    ))
});

/// Renews a worker's lease; returns 1 when it still had one, 0 when it had
/// been presumed dead (its jobs recovered elsewhere).
/// KEYS: workers. ARGV: worker, lease deadline (unix ms).
pub(super) static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local had = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if had then return 1 else return 0 end
",
    )
});

/// Depths: pending+ready+cancelled+the jobs in key lists, scheduled, jobs
/// held by all workers, and the pause flag (1 or 0). KEYS: pending, ready,
/// scheduled, workers, cancelled, paused, keyed count. ARGV: the `wip:`
/// prefix (a worker id completes it).
pub(super) static DEPTHS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local running = 0
for _, worker in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  running = running + redis.call('HLEN', ARGV[1] .. worker)
end
local waiting = redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2]) + redis.call('LLEN', KEYS[5])
  + tonumber(redis.call('GET', KEYS[7]) or '0')
return {waiting, redis.call('ZCARD', KEYS[3]), running, redis.call('EXISTS', KEYS[6])}
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
