//! Named locks with a time to live, for work that one process at a time
//! does on behalf of all (pruning old results).
//!
//! This module owns the lock keys (`P:lock:<name>`, holding the owner's id)
//! and the compare-and-act scripts on them. It must never extend or delete
//! a lock its caller does not hold, and never create a lock without a TTL
//! (a holder killed with `kill -9` must not block the others for ever).

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::{QueueError, RedisQueue};

/// PEXPIREs KEYS[1] to ARGV[2] ms if it still holds ARGV[1]; 1 if it did.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0",
    )
});

/// DELs KEYS[1] if it still holds ARGV[1]; 1 if it did.
static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0",
    )
});

impl RedisQueue {
    fn lock_key(&self, name: &str) -> String {
        format!("{}:lock:{name}", self.prefix)
    }

    /// Takes lock `name` for `owner` for `ttl`. `None` when taken (or already
    /// held by `owner`, whose TTL is then renewed); else the current holder.
    pub async fn try_lock(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<String>, QueueError> {
        let key = self.lock_key(name);
        let taken: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms(ttl))
            .query_async(&mut self.conn.clone())
            .await?;
        if taken.is_some() || self.renew_lock(name, owner, ttl).await? {
            return Ok(None);
        }
        let holder: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(Some(holder.unwrap_or_else(|| {
            "a process that just released it".to_string()
        })))
    }

    /// Extends lock `name` to `ttl` from now if `owner` still holds it.
    pub async fn renew_lock(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, QueueError> {
        let renewed: i64 = RENEW
            .key(self.lock_key(name))
            .arg(owner)
            .arg(ttl_ms(ttl))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(renewed == 1)
    }

    /// Releases lock `name` if `owner` holds it; whether it did.
    pub async fn unlock(&self, name: &str, owner: &str) -> Result<bool, QueueError> {
        let released: i64 = UNLOCK
            .key(self.lock_key(name))
            .arg(owner)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(released == 1)
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
