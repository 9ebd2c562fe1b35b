//! Limiters at run time, as the HTTP API, the CLI and the workers see them:
//! the limiters in force (the configuration's, replaced or joined by name by
//! definitions stored in Redis), each with its current use, and the change
//! of one definition without a restart.
//!
//! This module owns those views and the merge rule. It must never enforce a
//! limit (the claim script does) and never store a definition that does not
//! compile.

use serde::Serialize;

use super::{Limiter, LimiterConfig, LimiterError};
use crate::redis_queue::{QueueError, RedisQueue};

/// Why a limiter action failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The definition cannot be used; names the field.
    #[error("{message}")]
    Invalid {
        /// The offending field (`rate`, `concurrency`, ...).
        field: &'static str,
        /// What is wrong with it, starting with the field.
        message: String,
    },
    #[error(transparent)]
    /// Redis failed.
    Queue(#[from] QueueError),
}

impl From<LimiterError> for ControlError {
    fn from(error: LimiterError) -> ControlError {
        ControlError::Invalid {
            field: error.key,
            message: format!("{}: {}", error.key, error.message),
        }
    }
}

/// One limiter as `GET /limiters` and `conveyor limiters` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimiterView {
    #[serde(flatten)]
    /// The limiter as defined.
    pub definition: LimiterConfig,
    /// Jobs holding one of its slots now (`null` for a limiter with rates only).
    pub running: Option<u64>,
    /// Jobs it holds back, as the latest claims of the configured queues saw them.
    pub waiting: u64,
    /// How long it stays held back because a job reported a rate limit
    /// (`JobError::rate_limited`, an HTTP 429), in ms; `null` when it is not.
    /// Holds of single keys are not shown.
    pub held_for_ms: Option<u64>,
}

/// The configuration's limiters with the stored definitions laid over them
/// by name (a stored one replaces the configured one of its name, or joins
/// the list). A stored definition that no longer compiles is skipped.
pub fn merge(configured: &[Limiter], stored: &[(String, String)]) -> Vec<Limiter> {
    let mut limiters = configured.to_vec();
    for (index, (name, json)) in stored.iter().enumerate() {
        let compiled = serde_json::from_str::<LimiterConfig>(json)
            .map_err(|e| e.to_string())
            .and_then(|entry| Limiter::compile(&entry, index).map_err(|e| e.to_string()));
        match compiled {
            Ok(limiter) => match limiters.iter_mut().find(|l| l.name == limiter.name) {
                Some(slot) => *slot = limiter,
                None => limiters.push(limiter),
            },
            Err(error) => {
                log::warn!(target: "conveyor::limiters", "stored limiter {name} is ignored: {error}")
            }
        }
    }
    limiters
}

/// The limiters in force now.
pub async fn in_force(
    configured: &[Limiter],
    redis: &RedisQueue,
) -> Result<Vec<Limiter>, ControlError> {
    Ok(merge(configured, &redis.stored_limiters().await?))
}

/// Every limiter in force with its use over `queues`.
pub async fn list(
    configured: &[Limiter],
    redis: &RedisQueue,
    queues: &[String],
) -> Result<Vec<LimiterView>, ControlError> {
    let limiters = in_force(configured, redis).await?;
    let mut held_back = Vec::new();
    for queue in queues {
        held_back.extend(redis.held_back(queue).await?);
    }
    let mut views = Vec::with_capacity(limiters.len());
    for limiter in limiters {
        views.push(LimiterView {
            running: running(&limiter, redis, queues).await?,
            held_for_ms: held_for_ms(&limiter, redis, queues).await?,
            waiting: held_back
                .iter()
                .filter(|(name, _)| *name == limiter.name)
                .map(|(_, n)| n)
                .sum(),
            definition: limiter.config,
        });
    }
    Ok(views)
}

async fn running(
    limiter: &Limiter,
    redis: &RedisQueue,
    queues: &[String],
) -> Result<Option<u64>, ControlError> {
    if limiter.concurrency.is_none() && limiter.per_key_concurrency.is_none() {
        return Ok(None);
    }
    let mut total = 0;
    for queue in state_queues(limiter, queues) {
        total += redis.limiter_running(queue, limiter).await?;
    }
    Ok(Some(total))
}

/// The queues whose keys hold `limiter`'s state: its own queue, or for a
/// limiter of every queue (whose state is shared) any one of them.
fn state_queues<'a>(limiter: &'a Limiter, queues: &'a [String]) -> Vec<&'a str> {
    match &limiter.queue {
        Some(queue) => vec![queue.as_str()],
        None => queues.iter().take(1).map(String::as_str).collect(),
    }
}

/// The longest rate hold on `limiter` over the queues it covers.
async fn held_for_ms(
    limiter: &Limiter,
    redis: &RedisQueue,
    queues: &[String],
) -> Result<Option<u64>, ControlError> {
    let mut longest = None;
    for queue in state_queues(limiter, queues) {
        longest = longest.max(redis.limiter_hold_ms(queue, limiter).await?);
    }
    Ok(longest)
}

/// Checks `definition` as the limiter `name` (a name in the body must agree)
/// and stores it for every worker. Returns it as stored.
pub async fn put(
    redis: &RedisQueue,
    name: &str,
    mut definition: LimiterConfig,
) -> Result<LimiterConfig, ControlError> {
    if definition.name.is_empty() {
        definition.name = name.to_string();
    }
    if definition.name != name {
        return Err(ControlError::Invalid {
            field: "name",
            message: format!(
                "name: {:?} in the body does not match {name:?} in the path",
                definition.name
            ),
        });
    }
    let limiter = Limiter::compile(&definition, 0)?;
    // Serialising plain strings and numbers cannot fail.
    let json = serde_json::to_string(&limiter.config).unwrap_or_default();
    redis.store_limiter(name, &json).await?;
    Ok(limiter.config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(name: &str, concurrency: i64) -> Limiter {
        Limiter::compile(
            &LimiterConfig {
                name: name.to_string(),
                concurrency: Some(concurrency),
                ..LimiterConfig::default()
            },
            0,
        )
        .expect("valid")
    }

    #[test]
    fn stored_definitions_replace_or_join_by_name_and_bad_ones_are_skipped() {
        let configured = [limiter("api", 2), limiter("mail", 1)];
        let stored = [
            (
                "api".to_string(),
                r#"{"name":"api","rate":"5/1s"}"#.to_string(),
            ),
            (
                "new".to_string(),
                r#"{"name":"new","concurrency":7}"#.to_string(),
            ),
            (
                "bad".to_string(),
                r#"{"name":"bad","rate":"fast"}"#.to_string(),
            ),
        ];
        let merged = merge(&configured, &stored);
        let names: Vec<&str> = merged.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["api", "mail", "new"]);
        assert_eq!(merged[0].concurrency, None, "replaced as a whole");
        assert_eq!(merged[0].rate.map(|r| r.count), Some(5));
        assert_eq!(merged[2].concurrency, Some(7));
    }
}
