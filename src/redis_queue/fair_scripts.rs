//! The Lua of fairness by job key: a list per key and a ring of the keys
//! that have waiting jobs, so claims take jobs round-robin across keys and
//! oldest first within a key.
//!
//! This module owns those snippets and the KEYS/ARGV positions they share
//! with the claim scripts (KEYS[13] the ring, KEYS[14] the count of jobs in
//! key lists; ARGV[7] the key list prefix, ARGV[8] the most messages sorted
//! per call). It must never run a script, and never take a job out of
//! `pending` without giving it a token, its message in `jobs` and its place
//! in its key's list in the same script: a sorted job is waiting like any
//! other, in exactly one place.

/// Lua: `key_of(raw)`, the envelope's top-level `key` when it is a usable
/// one, else nil. Only messages holding `"key"` are decoded, so unkeyed
/// traffic pays one substring search. A key the worker would refuse (not
/// a string, empty, too long) counts as no key: the job is sorted with the
/// unkeyed ones and the worker makes it a dead letter.
pub(super) const KEY_OF_LUA: &str = r#"
local function key_of(raw)
  if not string.find(raw, '"key"', 1, true) then return nil end
  local ok, env = pcall(cjson.decode, raw)
  if not ok or type(env) ~= 'table' then return nil end
  local key = env.key
  if type(key) ~= 'string' or key == '' or #key > 128 then return nil end
  return key
end
"#;

/// Lua: the sorting of `pending` into key lists, for both claim scripts.
/// Needs `lead_id` and `key_of`, KEYS[3] (`jobs`), KEYS[8] (`ids`),
/// KEYS[13], KEYS[14], ARGV[2] (the call's nonce), ARGV[7], ARGV[8].
///
/// - `sort_messages(messages)`: gives each message a token (`<nonce>-s<i>`),
///   stores it in `jobs` (and its id in `ids`, so its status reads
///   `queued`), and appends the token to its key's list (unkeyed messages
///   share the key ''); a key whose list was empty joins the ring's back.
/// - `sort_pending(batch)`: sorts up to `batch` of the oldest messages of
///   `pending`.
/// - `unsorted_flag()`: '1' while the key lists are in use and `pending`
///   still holds messages, else '0'.
/// - `any_keyed(messages)`: whether one of them has a key.
/// - `count_out()`: one job left the key lists (the count goes when it
///   reaches 0).
/// - `next_key()` / `requeue_key(key, list)`: the ring's front key, and its
///   return to the back while its list still holds jobs.
pub(super) const SORT_LUA: &str = r"
local sorted = 0
-- Appends `tokens` to `list`, 1000 per command; a key whose list was empty
-- joins the ring's back.
local function append_to_key(list, tokens)
  for i = 1, #tokens, 1000 do
    local last = math.min(i + 999, #tokens)
    local len = redis.call('LPUSH', list, unpack(tokens, i, last))
    if i == 1 and len == last then
      redis.call('LPUSH', KEYS[13], string.sub(list, #ARGV[7] + 1))
    end
  end
end
local function sort_messages(messages)
  local pairs_jobs, ids = {}, {}
  -- Tokens per key list, and the lists in order of first appearance (the
  -- order their keys join the ring).
  local by_list, lists = {}, {}
  for _, raw in ipairs(messages) do
    sorted = sorted + 1
    local token = ARGV[2] .. '-s' .. sorted
    local list = ARGV[7] .. (key_of(raw) or '')
    pairs_jobs[#pairs_jobs + 1] = token; pairs_jobs[#pairs_jobs + 1] = raw
    local id = lead_id(raw)
    if id then ids[#ids + 1] = id; ids[#ids + 1] = token end
    local tokens = by_list[list]
    if not tokens then tokens = {}; by_list[list] = tokens; lists[#lists + 1] = list end
    tokens[#tokens + 1] = token
    if #pairs_jobs >= 1000 then redis.call('HSET', KEYS[3], unpack(pairs_jobs)); pairs_jobs = {} end
    if #ids >= 1000 then redis.call('HSET', KEYS[8], unpack(ids)); ids = {} end
  end
  if #pairs_jobs > 0 then redis.call('HSET', KEYS[3], unpack(pairs_jobs)) end
  if #ids > 0 then redis.call('HSET', KEYS[8], unpack(ids)) end
  for _, list in ipairs(lists) do append_to_key(list, by_list[list]) end
  redis.call('INCRBY', KEYS[14], #messages)
end

local function sort_pending(batch)
  local messages = redis.call('RPOP', KEYS[1], batch)
  if messages then sort_messages(messages) end
end

-- '1' while key lists are in use and `pending` still holds messages this
-- call did not sort: the worker then sorts the rest at once (SORT_PENDING),
-- so a light key pushed behind a long backlog joins the ring without
-- waiting one claim per sort batch.
local function unsorted_flag()
  if redis.call('LLEN', KEYS[13]) > 0 and redis.call('LLEN', KEYS[1]) > 0 then return '1' end
  return '0'
end

local function any_keyed(messages)
  for _, raw in ipairs(messages) do
    if key_of(raw) then return true end
  end
  return false
end

local function count_out()
  if redis.call('DECR', KEYS[14]) <= 0 then redis.call('DEL', KEYS[14]) end
end

local function next_key()
  local key = redis.call('RPOP', KEYS[13])
  if not key then return nil, nil end
  return key, ARGV[7] .. key
end

local function requeue_key(key, list)
  if redis.call('LLEN', list) > 0 then redis.call('LPUSH', KEYS[13], key) end
end
";

/// Lua for the plain claim: `take_keyed()` takes jobs round-robin from the
/// key lists, one per key per turn, until `max` is reached or no key has
/// work, appending them to the reply. Needs `take`, `reply` and `max` of
/// the plain claim. (A cancel takes a job out of its key's list, so no job
/// there carries a cancel mark.)
pub(super) const TAKE_KEYED_LUA: &str = r"
local function take_keyed()
  while max > 0 do
    local key, list = next_key()
    if not key then return end
    local token = redis.call('RPOP', list)
    if token then
      count_out()
      local raw = redis.call('HGET', KEYS[3], token)
      if raw then
        redis.call('HDEL', KEYS[3], token)
        take(token, raw, reply)
        max = max - 1
      end
    end
    requeue_key(key, list)
  end
end
";
