//! The Lua of limiters: the claim that admits only the jobs every limiter
//! allows, and the snippet that releases a job's slots when it ends.
//!
//! This module owns that script text and its KEYS/ARGV contract. It must
//! never run a script, and never take a job out of its list unless it admits
//! it: a job held back stays where it was, in its place.

use std::sync::LazyLock;

use redis::Script;

use super::fair_scripts::{KEY_OF_LUA, SORT_LUA};
use super::scripts::{LEAD_ID_LUA, RECORD_CLAIM_LUA};
use super::unique::UNIQUE_CLAIM_LUA;

/// Jobs of one key the limited claim looks at per turn of the key ring.
const KEY_LOOK: usize = 20;

/// Lua: `free_slots(slotted, tokens)` releases every limiter slot the given
/// tokens hold (the `slotted` hash maps a token to its slot sets, one per
/// line) and tells waiting workers through `freed` (a short list they block
/// on). One `HLEN` when no job holds a slot, so queues without limiters pay
/// nothing more.
pub(super) const FREE_SLOTS_LUA: &str = r"
local function free_slots(slotted, freed, tokens)
  if redis.call('HLEN', slotted) == 0 then return end
  local n = 0
  for _, token in ipairs(tokens) do
    local sets = redis.call('HGET', slotted, token)
    if sets then
      for set in string.gmatch(sets, '[^\n]+') do redis.call('ZREM', set, token) end
      redis.call('HDEL', slotted, token)
      n = n + 1
    end
  end
  if n > 0 then
    redis.call('LPUSH', freed, n)
    redis.call('LTRIM', freed, 0, 63)
  end
end
";

/// Holds a limiter (or one key of it) back: KEYS[1] is its `:held` key,
/// ARGV[1] how long (ms). A longer hold already in place is kept.
pub(super) static HOLD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 1
",
    )
});

/// Claims like the plain claim, but admits a job only if every limiter
/// matching it has room: no rate hold (`:held`, set when a job of it reported
/// a rate limit), a free concurrency slot (a sorted set of the tokens
/// holding one) and room in the current fixed window of its rate (a counter
/// that expires), for the limiter as a whole and for the job's `key`.
/// Admitted jobs take their slots and count in their windows; held-back jobs
/// stay in their list in their place. It looks at most ARGV[10] jobs ahead, and
/// stops at the first job held back by a limiter that covers the whole queue.
///
/// Takes unique locks, honours a pause and takes cancelled jobs (which never
/// run, so no limiter holds them) as the plain claim does; sorts pending
/// messages into key lists as the plain claim does and takes from them
/// round-robin by key, passing over a key whose oldest jobs are held back.
///
/// KEYS: those of the plain claim (pending, ready, jobs, attempts, errors,
/// wip, workers, ids, paused, cancel, cancelled, unique token registry, key
/// ring, keyed count), then slotted and limited (limiter → jobs held back,
/// rewritten by each call for `GET /limiters`).
/// ARGV: those of the plain claim (max, nonce, worker, lease deadline, unique
/// lock prefix, now, key list prefix, sort batch), then the delay reported
/// for a full concurrency limit (ms), the look-ahead, then
/// nine values per limiter: state key base, kind ('' = any), concurrency,
/// rate count, rate window ms, per-key concurrency, per-key rate count,
/// per-key rate window ms (0 = no such limit), name.
///
/// Returns the lease flag ('1' if the worker held its lease), the pause flag,
/// the number of cancelled jobs, '1' if `pending` holds messages left to
/// sort, the delay in ms after which a held-back job
/// may pass ('-1': none was held back), '1' if a full concurrency limit held
/// one back (a released slot may let it pass sooner), the number of
/// (limiter, jobs held back) pairs and those pairs (every waiting job for a
/// limiter that covers the whole queue, else those looked at), then (token,
/// message, attempts, last error, unique holder or '') per job, the
/// cancelled jobs first.
pub(super) static CLAIM_LIMITED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{LEAD_ID_LUA}{RECORD_CLAIM_LUA}{UNIQUE_CLAIM_LUA}{KEY_OF_LUA}{SORT_LUA}
local max = tonumber(ARGV[1])
local look = tonumber(ARGV[10])
local recheck = tonumber(ARGV[9])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local limiters = {{}}
local lock_prefix, unique_now = ARGV[5], tonumber(ARGV[6])
for i = 11, #ARGV, 9 do
  limiters[#limiters + 1] = {{base = ARGV[i], kind = ARGV[i + 1], conc = tonumber(ARGV[i + 2]),
    rn = tonumber(ARGV[i + 3]), rms = tonumber(ARGV[i + 4]), kconc = tonumber(ARGV[i + 5]),
    krn = tonumber(ARGV[i + 6]), krms = tonumber(ARGV[i + 7]), name = ARGV[i + 8]}}
end
local out, wip, cancelled = {{}}, {{}}, {{}}
local lease = '0'
if redis.call('ZSCORE', KEYS[7], ARGV[3]) then lease = '1' end
local paused = redis.call('EXISTS', KEYS[9]) == 1
local retry, held, stopped, seq, slot_full = -1, {{}}, false, 0, '0'

local counting_held = true
local function hold(l, delay, whole, slot)
  if retry < 0 or delay < retry then retry = delay end
  if slot then slot_full = '1' end
  if counting_held then held[l.name] = (held[l.name] or 0) + 1 end
  if whole then stopped = l.name end
  return nil
end

-- The slot sets and windows a job needs, or nil when a limiter holds it back.
local function room(l, base, conc, rn, rms, takes, whole)
  local held_for = redis.call('PTTL', base .. ':held')
  if held_for > 0 then return hold(l, held_for, whole, false) end
  if conc > 0 then
    local set = base .. ':slots'
    if redis.call('ZCARD', set) >= conc then return hold(l, recheck, whole, true) end
    takes[#takes + 1] = {{set}}
  end
  if rn > 0 then
    local w = math.floor(now / rms)
    local counter = base .. ':window:' .. w
    if tonumber(redis.call('GET', counter) or '0') >= rn then
      return hold(l, (w + 1) * rms - now, whole, false)
    end
    takes[#takes + 1] = {{counter, rms}}
  end
  return takes
end

local function admit(raw, counting)
  counting_held = counting ~= false
  local ok, env = pcall(cjson.decode, raw)
  -- Not a job envelope: no limiter applies; the worker keeps it as a dead letter.
  if not ok or type(env) ~= 'table' or type(env.kind) ~= 'string' then return {{}} end
  local key = env.key
  if type(key) ~= 'string' then key = '' end
  local takes = {{}}
  for _, l in ipairs(limiters) do
    if l.kind == '' or l.kind == env.kind then
      if not room(l, l.base, l.conc, l.rn, l.rms, takes, l.kind == '') then return nil end
      if not room(l, l.base .. ':key:' .. key, l.kconc, l.krn, l.krms, takes, false) then return nil end
    end
  end
  return takes
end

local function take(token, raw, takes, attempts, err, into)
  into = into or out
  local sets = {{}}
  for _, t in ipairs(takes) do
    if t[2] then
      redis.call('INCR', t[1])
      redis.call('PEXPIRE', t[1], t[2] * 2)
    else
      redis.call('ZADD', t[1], now, token)
      sets[#sets + 1] = t[1]
    end
  end
  if #sets > 0 then redis.call('HSET', KEYS[15], token, table.concat(sets, '\n')) end
  wip[#wip + 1] = token; wip[#wip + 1] = raw
  into[#into + 1] = token; into[#into + 1] = raw; into[#into + 1] = attempts; into[#into + 1] = err
  into[#into + 1] = unique_claim(token, raw, lock_prefix, KEYS[12], unique_now)
  max = max - 1
end

-- A token with a cancel mark: taken to be finished as cancelled, never run, so no limiter applies.
local function take_cancelled(token, raw)
  redis.call('HDEL', KEYS[3], token)
  take(token, raw, {{}}, redis.call('HGET', KEYS[4], token) or '0',
    redis.call('HGET', KEYS[5], token) or '', cancelled)
end

local function from_cancelled()
  local tokens = redis.call('RPOP', KEYS[11], max)
  if not tokens then return end
  for _, token in ipairs(tokens) do
    local raw = redis.call('HGET', KEYS[3], token)
    if raw then take_cancelled(token, raw) end
  end
end

-- Looks at the oldest entries of `list`; takes what may start, leaves the rest in place.
local function scan(list, tokens)
  if max <= 0 or look <= 0 or stopped then return end
  local entries = redis.call('LRANGE', list, -look, -1)
  local kept, examined = {{}}, 0
  for i = #entries, 1, -1 do
    if max <= 0 or stopped then break end
    examined = examined + 1
    local entry = entries[i]
    local raw = entry
    if tokens then raw = redis.call('HGET', KEYS[3], entry) end
    if raw and tokens and redis.call('HEXISTS', KEYS[10], entry) == 1 then
      take_cancelled(entry, raw)
    elseif raw then
      local takes = admit(raw)
      if takes then
        if tokens then
          redis.call('HDEL', KEYS[3], entry)
          take(entry, raw, takes, redis.call('HGET', KEYS[4], entry) or '0',
            redis.call('HGET', KEYS[5], entry) or '')
        else
          seq = seq + 1
          take(ARGV[2] .. '-' .. seq, raw, takes, '0', '')
        end
      else
        kept[#kept + 1] = entry
      end
    end
  end
  look = look - examined
  if examined > #kept then
    redis.call('RPOP', list, examined)
    for i = #kept, 1, -1 do redis.call('RPUSH', list, kept[i]) end
  end
end

-- Round-robin over the key lists: per turn one job of each key, the first
-- of its oldest {KEY_LOOK} that may start; a key none of them may start is
-- passed over. Turns go on while one of them took a job.
local function scan_keys()
  local progress, counting = true, true
  while progress and max > 0 and look > 0 and not stopped do
    progress = false
    for _ = 1, redis.call('LLEN', KEYS[13]) do
      if max <= 0 or look <= 0 or stopped then break end
      local key, list = next_key()
      if not key then break end
      local entries = redis.call('LRANGE', list, -{KEY_LOOK}, -1)
      for j = #entries, 1, -1 do
        if look <= 0 or stopped then break end
        look = look - 1
        local token = entries[j]
        local raw = redis.call('HGET', KEYS[3], token)
        local takes = raw and admit(raw, counting)
        if not raw or takes then
          redis.call('LREM', list, -1, token)
          count_out()
        end
        if takes then
          redis.call('HDEL', KEYS[3], token)
          take(token, raw, takes, '0', '')
          progress = true
          break
        end
      end
      requeue_key(key, list)
    end
    counting = false
  end
end

from_cancelled()
if not paused then
  scan(KEYS[2], true)
  if max > 0 and look > 0 and not stopped then
    if redis.call('LLEN', KEYS[13]) > 0 or any_keyed(redis.call('LRANGE', KEYS[1], -look, -1)) then
      sort_pending(tonumber(ARGV[8]))
    end
    if redis.call('LLEN', KEYS[13]) > 0 then scan_keys() else scan(KEYS[1], false) end
  end
end
-- A limiter that covers the whole queue holds back every job still waiting.
if stopped then
  held[stopped] = redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2])
    + tonumber(redis.call('GET', KEYS[14]) or '0')
end
record_claim(wip)
local unsorted = '0'
if not paused then unsorted = unsorted_flag() end
local reply = {{lease, paused and '1' or '0', tostring(#cancelled / 5), unsorted, tostring(retry), slot_full}}
local pairs_out = {{}}
for name, n in pairs(held) do pairs_out[#pairs_out + 1] = name; pairs_out[#pairs_out + 1] = tostring(n) end
redis.call('DEL', KEYS[16])
if #pairs_out > 0 then redis.call('HSET', KEYS[16], unpack(pairs_out)) end
reply[#reply + 1] = tostring(#pairs_out / 2)
for _, v in ipairs(pairs_out) do reply[#reply + 1] = v end
for _, v in ipairs(cancelled) do reply[#reply + 1] = v end
for _, v in ipairs(out) do reply[#reply + 1] = v end
return reply
"
    ))
});
