//! The Redis side of schedules: each schedule's state hash, and the one
//! script that advances it and enqueues the ticks that came due.
//!
//! A schedule's state lives in `P:{q}:schedule:<name>` (`q` is the queue its
//! jobs go to, so the script touches one hash tag):
//!
//! | field | holds |
//! |---|---|
//! | `last` | ticks up to this instant (unix ms) are handled |
//! | `fingerprint` | the cron expression and time zone `last` was counted with |
//! | `paused` | `1` or `0` once paused or resumed at run time |
//! | `active` | the job id of the latest tick enqueued |
//!
//! This module owns those keys and the compare-and-set that makes each tick
//! exactly one job without a leader: every worker may compute the same due
//! ticks, but only the one whose expected `last` still matches moves it and
//! pushes the jobs; the others find `last` moved and do nothing. It must never
//! decide which ticks are due (that is [`crate::schedules::plan`]).

use std::sync::LazyLock;

use redis::Script;

use super::{QueueError, RedisQueue};
use crate::schedules::TickState;

/// Reads a schedule's state: last, fingerprint, paused, and whether the
/// latest tick's job is still unfinished (its id still accepted).
///
/// KEYS: 1 the schedule's state hash, 2 `accepted`. ARGV: none.
static STATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local f = redis.call('HMGET', KEYS[1], 'last', 'fingerprint', 'paused', 'active')
local unfinished = '0'
if f[4] and redis.call('HEXISTS', KEYS[2], f[4]) == 1 then unfinished = '1' end
return {f[1] or '', f[2] or '', f[3] or '', unfinished}
",
    )
});

/// Compare-and-set: when `last` is still ARGV[1] ('' = absent), sets it to
/// ARGV[2] and the fingerprint to ARGV[3], then pushes each (id, message)
/// pair of ARGV[5..] onto `pending` and records its id as accepted at ARGV[4].
/// Returns the number of jobs pushed, or -1 when another worker moved first.
///
/// KEYS: 1 the schedule's state hash, 2 `pending`, 3 `accepted`.
/// ARGV: 1 expected `last`, 2 new `last`, 3 fingerprint, 4 now (unix ms),
/// then (job id, message) pairs.
static ADVANCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local last = redis.call('HGET', KEYS[1], 'last') or ''
if last ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'last', ARGV[2], 'fingerprint', ARGV[3])
local pushed = 0
for i = 5, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[4])
  redis.call('LPUSH', KEYS[2], ARGV[i + 1])
  redis.call('HSET', KEYS[1], 'active', ARGV[i])
  pushed = pushed + 1
end
return pushed
",
    )
});

/// Ticks to enqueue: (job id, message) pairs.
pub(super) type TickJobs = [(String, Vec<u8>)];

impl RedisQueue {
    fn schedule_key(&self, queue: &str, name: &str) -> String {
        format!("{}:{{{queue}}}:schedule:{name}", self.prefix)
    }

    /// The state of schedule `name` whose jobs go to `queue`.
    pub async fn schedule_state(&self, queue: &str, name: &str) -> Result<TickState, QueueError> {
        let keys = self.keys(queue);
        let reply: Vec<String> = STATE
            .key(self.schedule_key(queue, name))
            .key(&keys.accepted)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let [last, fingerprint, paused, unfinished] = reply.as_slice() else {
            return Err(QueueError::Protocol(format!(
                "schedule state of {name}: {reply:?}"
            )));
        };
        Ok(TickState {
            last_ms: last.parse().ok(),
            fingerprint: Some(fingerprint.clone()).filter(|f| !f.is_empty()),
            paused: match paused.as_str() {
                "1" => Some(true),
                "0" => Some(false),
                _ => None,
            },
            previous_unfinished: unfinished == "1",
        })
    }

    /// Moves schedule `name` from `expected_last_ms` to `to_ms` and enqueues
    /// `jobs`, atomically. `Ok(None)` when another worker moved it first (and
    /// so enqueued these ticks itself); else the number of jobs pushed.
    pub async fn advance_schedule(
        &self,
        queue: &str,
        name: &str,
        expected_last_ms: Option<i64>,
        to_ms: i64,
        fingerprint: &str,
        jobs: &TickJobs,
    ) -> Result<Option<usize>, QueueError> {
        let keys = self.keys(queue);
        let mut invocation = ADVANCE.prepare_invoke();
        invocation
            .key(self.schedule_key(queue, name))
            .key(&keys.pending)
            .key(&keys.accepted)
            .arg(
                expected_last_ms
                    .map(|ms| ms.to_string())
                    .unwrap_or_default(),
            )
            .arg(to_ms)
            .arg(fingerprint)
            .arg(crate::job::now_ms());
        for (id, message) in jobs {
            invocation.arg(id).arg(message.as_slice());
        }
        let pushed: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(usize::try_from(pushed).ok())
    }

    /// Pauses or resumes schedule `name` for every worker (kept across restarts).
    pub async fn set_schedule_paused(
        &self,
        queue: &str,
        name: &str,
        paused: bool,
    ) -> Result<(), QueueError> {
        let () = redis::cmd("HSET")
            .arg(self.schedule_key(queue, name))
            .arg("paused")
            .arg(if paused { "1" } else { "0" })
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}
