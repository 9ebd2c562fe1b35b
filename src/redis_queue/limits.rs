//! The claim under limiters: which limiters a queue's claim must honour,
//! the state keys each one counts in, and the reply of the limited claim.
//!
//! This module owns the Rust side of that claim. It must never decide
//! admission itself (the script does, atomically, across all workers) and
//! never run the limited claim for a queue no limiter covers: such queues use
//! the plain claim and pay nothing for limiters.

use std::sync::Arc;

use super::lifecycle::{claim_header, claim_nonce, claimed_jobs, utf8};
use super::limit_scripts::{CLAIM_LIMITED, HOLD};
use super::{Claimed, QueueError, RedisQueue};
use crate::limiters::{held_by, Limiter, Rate, RateHold};

/// How long a worker waits before it looks again at a queue whose jobs a
/// full concurrency limit holds back, unless a slot is released sooner (ms).
pub const LIMIT_RECHECK_MS: u64 = 1000;

/// Most jobs one limited claim looks at, beyond the jobs it asks for, to
/// find jobs that may start behind held-back ones.
const LOOK_AHEAD: usize = 200;

/// Jobs held back by limiters in one claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBack {
    /// After this long a held-back job may pass (a rate window turns), or
    /// [`LIMIT_RECHECK_MS`] when a concurrency limit is full.
    pub retry_in_ms: u64,
    /// A full concurrency limit held a job back: a released slot (see
    /// [`wait_for_released_slot`]) may let it pass sooner.
    pub slot_full: bool,
    /// (limiter, jobs it held back among those looked at).
    pub by: Vec<(String, u64)>,
}

impl RedisQueue {
    /// The key every state key of `limiter` starts with, seen from `queue`:
    /// under the queue's hash tag when the limiter names that queue, under
    /// its own tag when it covers every queue.
    pub fn limiter_base(&self, queue: &str, limiter: &Limiter) -> String {
        match &limiter.queue {
            Some(_) => format!("{}{}", self.keys(queue).limiter_prefix, limiter.name),
            None => format!("{}:limiter:{{{}}}", self.prefix, limiter.name),
        }
    }

    /// Holds back what a rate-limited job of `queue` names (see
    /// [`held_by`]) for its delay, for every worker: the limited claim
    /// admits no job of a held limiter (or key) until the hold ends.
    pub async fn hold_limiters(
        &self,
        queue: &str,
        limiters: &[Limiter],
        hold: &RateHold,
    ) -> Result<(), QueueError> {
        for (limiter, key) in held_by(limiters, queue, hold) {
            let base = self.limiter_base(queue, limiter);
            let held = match key {
                Some(key) => format!("{base}:key:{key}:held"),
                None => format!("{base}:held"),
            };
            let _: i64 = HOLD
                .key(held)
                .arg(hold.delay_ms.max(1))
                .invoke_async(&mut self.conn.clone())
                .await?;
        }
        Ok(())
    }

    /// Claims up to `max` jobs of `queue` that `limiters` allow (all of
    /// them must cover the queue), renewing the lease.
    pub async fn claim_limited(
        &self,
        queue: &Arc<str>,
        worker: &str,
        max: usize,
        lease_deadline_ms: i64,
        limiters: &[&Limiter],
    ) -> Result<Claimed, QueueError> {
        let keys = self.keys(queue);
        let nonce = claim_nonce();
        let mut invocation = CLAIM_LIMITED.prepare_invoke();
        self.claim_keys_and_args(
            &mut invocation,
            queue,
            worker,
            max,
            &nonce,
            lease_deadline_ms,
        );
        invocation
            .key(&keys.slotted)
            .key(&keys.limited)
            .arg(LIMIT_RECHECK_MS)
            .arg(max + LOOK_AHEAD);
        for limiter in limiters {
            let (rate_count, rate_ms) = rate_args(limiter.rate);
            let (key_rate_count, key_rate_ms) = rate_args(limiter.per_key_rate);
            invocation
                .arg(self.limiter_base(queue, limiter))
                .arg(limiter.kind.as_deref().unwrap_or(""))
                .arg(limiter.concurrency.unwrap_or(0))
                .arg(rate_count)
                .arg(rate_ms)
                .arg(limiter.per_key_concurrency.unwrap_or(0))
                .arg(key_rate_count)
                .arg(key_rate_ms)
                .arg(&limiter.name);
        }
        let reply: Vec<Vec<u8>> = invocation.invoke_async(&mut self.conn.clone()).await?;
        let mut fields = reply.into_iter();
        let header = claim_header(&mut fields)?;
        let retry_in_ms: i64 = number(fields.next())?;
        let slot_full = fields.next().is_some_and(|flag| flag == b"1");
        let pairs: usize = number(fields.next())?;
        let mut by = Vec::with_capacity(pairs);
        for _ in 0..pairs {
            let name = utf8(fields.next().unwrap_or_default())?;
            by.push((name, number(fields.next())?));
        }
        let held_back = u64::try_from(retry_in_ms).ok().map(|retry_in_ms| HeldBack {
            retry_in_ms,
            slot_full,
            by,
        });
        Ok(Claimed {
            jobs: claimed_jobs(queue, header.cancelled, fields)?,
            lease_was_held: header.lease_was_held,
            paused: header.paused,
            unsorted_backlog: header.unsorted_backlog,
            held_back,
        })
    }
}

/// Blocks until a job of `queue` releases limiter slots or `timeout`
/// passes. `Ok(true)` when slots were released.
pub async fn wait_for_released_slot(
    conn: &mut super::RedisConn,
    keys: &super::QueueKeys,
    timeout: std::time::Duration,
) -> Result<bool, QueueError> {
    let reply: Option<(String, String)> = redis::cmd("BLPOP")
        .arg(&keys.freed)
        .arg(timeout.as_secs_f64())
        .query_async(conn)
        .await?;
    Ok(reply.is_some())
}

impl RedisQueue {
    /// `P:limiters`: limiter name → its definition (JSON) set at run time.
    fn stored_limiters_key(&self) -> String {
        format!("{}:limiters", self.prefix)
    }

    /// Limiter definitions set at run time: (name, JSON).
    pub async fn stored_limiters(&self) -> Result<Vec<(String, String)>, QueueError> {
        Ok(redis::cmd("HGETALL")
            .arg(self.stored_limiters_key())
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Stores a limiter definition for every worker (it replaces the
    /// configuration's limiter of that name).
    pub async fn store_limiter(&self, name: &str, json: &str) -> Result<(), QueueError> {
        let _: () = redis::cmd("HSET")
            .arg(self.stored_limiters_key())
            .arg(name)
            .arg(json)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Jobs holding a slot of `limiter` seen from `queue`: its concurrency
    /// slots, or with only a per-key concurrency the slots of every key.
    pub async fn limiter_running(&self, queue: &str, limiter: &Limiter) -> Result<u64, QueueError> {
        let base = self.limiter_base(queue, limiter);
        if limiter.concurrency.is_some() {
            return Ok(redis::cmd("ZCARD")
                .arg(format!("{base}:slots"))
                .query_async(&mut self.conn.clone())
                .await?);
        }
        let mut running = 0;
        let mut cursor = 0u64;
        loop {
            let (next, sets): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{base}:key:*:slots"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut self.conn.clone())
                .await?;
            for set in sets {
                let n: u64 = redis::cmd("ZCARD")
                    .arg(set)
                    .query_async(&mut self.conn.clone())
                    .await?;
                running += n;
            }
            if next == 0 {
                return Ok(running);
            }
            cursor = next;
        }
    }

    /// How long `limiter` (as a whole, not per key) stays held back by a
    /// job that reported a rate limit (ms); `None` when it is not held.
    pub async fn limiter_hold_ms(
        &self,
        queue: &str,
        limiter: &Limiter,
    ) -> Result<Option<u64>, QueueError> {
        let left: i64 = redis::cmd("PTTL")
            .arg(format!("{}:held", self.limiter_base(queue, limiter)))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(u64::try_from(left).ok())
    }

    /// (limiter, jobs held back) as the latest limited claim of `queue` saw them.
    pub async fn held_back(&self, queue: &str) -> Result<Vec<(String, u64)>, QueueError> {
        Ok(redis::cmd("HGETALL")
            .arg(&self.keys(queue).limited)
            .query_async(&mut self.conn.clone())
            .await?)
    }
}

fn rate_args(rate: Option<Rate>) -> (u32, u64) {
    rate.map_or((0, 0), |rate| (rate.count, rate.window_ms))
}

fn number<T: std::str::FromStr>(field: Option<Vec<u8>>) -> Result<T, QueueError> {
    let text = utf8(field.unwrap_or_default())?;
    text.parse()
        .map_err(|_| QueueError::Protocol(format!("limited claim: {text:?} is not a number")))
}
