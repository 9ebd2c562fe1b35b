//! Limiters: `[[limiters]]` entries of the configuration (and their run-time
//! replacements), checked once and compiled into the numbers the claim script
//! enforces.
//!
//! This module owns what a limiter means: its name, its selector (`queue`,
//! `kind`), its limits (`concurrency`, `rate` as `"N/DURATION"`,
//! `per_key_concurrency`, `per_key_rate`) and the rules that make an entry
//! unusable. It must never do I/O: the claim script in Redis counts the slots
//! and windows, and `redis_queue` passes it these numbers.

pub mod control;
mod hold;
pub mod waiting;

pub use hold::{held_by, RateHold, MAX_RATE_HOLD_MS};

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::job::{is_valid_queue_name, MAX_NAME_LEN};

/// Longest limiter name (it becomes part of Redis keys and metric labels).
pub const MAX_LIMITER_NAME_LEN: usize = 64;

/// One limiter as written in the configuration or sent to `PUT /limiters/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimiterConfig {
    #[serde(default)]
    /// The limiter's name (unique); in a `PUT`, empty or the path's.
    #[schema(pattern = "^[A-Za-z0-9_.-]{0,64}$")]
    pub name: String,
    /// Only jobs of this queue (all queues when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    pub queue: Option<String>,
    /// Only jobs of this kind (all kinds when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64)]
    pub kind: Option<String>,
    /// Jobs it matches running at once, across all workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 4_294_967_295_i64)]
    pub concurrency: Option<i64>,
    /// `"N/DURATION"`: at most N starts per window of DURATION.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// Like `concurrency`, for each job `key` on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 4_294_967_295_i64)]
    pub per_key_concurrency: Option<i64>,
    /// Like `rate`, for each job `key` on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_key_rate: Option<String>,
}

/// A limiter entry that cannot be used; names the limiter and the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limiters[{limiter}].{key} {message}")]
pub struct LimiterError {
    /// The limiter's name, or its position when the name itself is bad.
    pub limiter: String,
    /// The offending field.
    pub key: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// At most `count` starts per fixed window of `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Starts allowed per window.
    pub count: u32,
    /// The window's length (ms).
    pub window_ms: u64,
}

impl Rate {
    /// Parses `"N/DURATION"` (`"100/1s"`, `"5/1m"`, `"10/s"`).
    pub fn parse(text: &str) -> Result<Rate, String> {
        let wrong = || {
            format!("must be \"N/DURATION\" with N ≥ 1 and a positive duration, such as \"100/1s\" or \"5/1m\", got {text:?}")
        };
        let (count, window) = text.split_once('/').ok_or_else(wrong)?;
        let count: u32 = count.trim().parse().map_err(|_| wrong())?;
        let window = window.trim();
        // "10/s" reads as "10/1s".
        let window = if window.starts_with(|c: char| c.is_ascii_digit()) {
            window.to_string()
        } else {
            format!("1{window}")
        };
        let window_ms = humantime::parse_duration(&window)
            .ok()
            .and_then(|d| u64::try_from(d.as_millis()).ok())
            .ok_or_else(wrong)?;
        if count == 0 || window_ms == 0 {
            return Err(wrong());
        }
        Ok(Rate { count, window_ms })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = humantime::format_duration(std::time::Duration::from_millis(self.window_ms));
        write!(f, "{}/{}", self.count, d.to_string().replace(' ', ""))
    }
}

/// A checked limiter, ready for the claim script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limiter {
    /// The limiter's name (unique).
    pub name: String,
    /// Only jobs of this queue (all queues when `None`).
    pub queue: Option<String>,
    /// Only jobs of this kind (all kinds when `None`).
    pub kind: Option<String>,
    /// Jobs it matches running at once, across all workers.
    pub concurrency: Option<u32>,
    /// Starts per window, across all workers.
    pub rate: Option<Rate>,
    /// `concurrency` for each job key on its own.
    pub per_key_concurrency: Option<u32>,
    /// `rate` for each job key on its own.
    pub per_key_rate: Option<Rate>,
    /// The entry as written (answered by `GET /limiters`).
    pub config: LimiterConfig,
}

impl Limiter {
    /// Checks one entry; `index` names it when its name is unusable.
    pub fn compile(entry: &LimiterConfig, index: usize) -> Result<Limiter, LimiterError> {
        if !is_valid_limiter_name(&entry.name) {
            return Err(LimiterError {
                limiter: index.to_string(),
                key: "name",
                message: format!(
                    "must be 1-{MAX_LIMITER_NAME_LEN} chars of [A-Za-z0-9_.-], got {:?}",
                    entry.name
                ),
            });
        }
        let fail = |key: &'static str, message: String| LimiterError {
            limiter: entry.name.clone(),
            key,
            message,
        };
        if let Some(queue) = entry.queue.as_deref().filter(|q| !is_valid_queue_name(q)) {
            return Err(fail(
                "queue",
                format!("must match [A-Za-z0-9_.-]{{1,64}}, got {queue:?}"),
            ));
        }
        if let Some(kind) = &entry.kind {
            if kind.is_empty() || kind.len() > MAX_NAME_LEN {
                return Err(fail(
                    "kind",
                    format!("must be 1-64 characters, got {kind:?}"),
                ));
            }
        }
        let count = |key: &'static str, value: Option<i64>| match value {
            None => Ok(None),
            Some(n) if n >= 1 && n <= i64::from(u32::MAX) => Ok(Some(n as u32)),
            Some(n) => Err(fail(key, format!("must be a positive number, got {n}"))),
        };
        let rate = |key: &'static str, value: &Option<String>| match value {
            None => Ok(None),
            Some(text) => Rate::parse(text).map(Some).map_err(|m| fail(key, m)),
        };
        let limiter = Limiter {
            name: entry.name.clone(),
            queue: entry.queue.clone(),
            kind: entry.kind.clone(),
            concurrency: count("concurrency", entry.concurrency)?,
            rate: rate("rate", &entry.rate)?,
            per_key_concurrency: count("per_key_concurrency", entry.per_key_concurrency)?,
            per_key_rate: rate("per_key_rate", &entry.per_key_rate)?,
            config: entry.clone(),
        };
        if limiter.concurrency.is_none()
            && limiter.rate.is_none()
            && limiter.per_key_concurrency.is_none()
            && limiter.per_key_rate.is_none()
        {
            return Err(fail(
                "concurrency",
                "is missing: a limiter needs at least one of concurrency, rate, per_key_concurrency, per_key_rate".to_string(),
            ));
        }
        Ok(limiter)
    }

    /// Whether this limiter can hold back jobs of `queue`.
    pub fn covers_queue(&self, queue: &str) -> bool {
        self.queue.as_deref().is_none_or(|q| q == queue)
    }

    /// Whether it has a per-key limit (`per_key_concurrency` or `per_key_rate`).
    pub fn is_per_key(&self) -> bool {
        self.per_key_concurrency.is_some() || self.per_key_rate.is_some()
    }

    /// Whether it counts the jobs of `kind` in `queue`.
    pub fn matches(&self, queue: &str, kind: &str) -> bool {
        self.covers_queue(queue) && self.kind.as_deref().is_none_or(|k| k == kind)
    }
}

/// Checks every entry and that no two share a name.
pub fn compile_all(entries: &[LimiterConfig]) -> Result<Vec<Limiter>, LimiterError> {
    let mut names = HashSet::new();
    let mut limiters = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let limiter = Limiter::compile(entry, index)?;
        if !names.insert(limiter.name.clone()) {
            return Err(LimiterError {
                limiter: limiter.name,
                key: "name",
                message: "is used by two limiters; names must be unique".to_string(),
            });
        }
        limiters.push(limiter);
    }
    Ok(limiters)
}

/// The limiters a worker enforces now: those of the configuration at start,
/// replaced as a whole when they change at run time. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LimiterBook(Arc<RwLock<Arc<Vec<Limiter>>>>);

impl LimiterBook {
    /// A book holding `limiters`.
    pub fn new(limiters: Vec<Limiter>) -> LimiterBook {
        LimiterBook(Arc::new(RwLock::new(Arc::new(limiters))))
    }

    /// The limiters in force (a snapshot: later replacements do not change it).
    pub fn current(&self) -> Arc<Vec<Limiter>> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Puts `limiters` in force from the next claim on.
    pub fn replace(&self, limiters: Vec<Limiter>) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(limiters);
    }
}

/// Limiter names: 1-64 chars of `[A-Za-z0-9_.-]`.
pub fn is_valid_limiter_name(name: &str) -> bool {
    is_valid_queue_name(name) && name.len() <= MAX_LIMITER_NAME_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limiter entry with `concurrency = 3`.
    pub(super) fn entry(name: &str) -> LimiterConfig {
        LimiterConfig {
            name: name.to_string(),
            concurrency: Some(3),
            ..LimiterConfig::default()
        }
    }

    fn error_of(entry: LimiterConfig) -> String {
        Limiter::compile(&entry, 0)
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn rates_parse_with_and_without_a_number_before_the_unit() {
        assert_eq!(
            Rate::parse("100/1s"),
            Ok(Rate {
                count: 100,
                window_ms: 1000
            })
        );
        assert_eq!(Rate::parse("5/1m").map(|r| r.window_ms), Ok(60_000));
        assert_eq!(Rate::parse("10/s").map(|r| r.window_ms), Ok(1000));
        assert_eq!(Rate::parse("3/250ms").map(|r| r.window_ms), Ok(250));
        assert_eq!(
            Rate::parse("7/2s").map(|r| r.to_string()),
            Ok("7/2s".into())
        );
        for bad in ["", "100", "0/1s", "-1/1s", "x/1s", "5/0s", "5/soon", "5/"] {
            assert!(Rate::parse(bad).is_err(), "{bad:?} must not parse");
        }
    }

    #[test]
    fn bad_entries_name_the_limiter_and_the_key() {
        let cases = [
            (
                LimiterConfig {
                    rate: Some("fast".into()),
                    ..entry("api")
                },
                "limiters[api].rate must be \"N/DURATION\"",
            ),
            (
                LimiterConfig {
                    concurrency: Some(0),
                    ..entry("api")
                },
                "limiters[api].concurrency must be a positive number, got 0",
            ),
            (
                LimiterConfig {
                    per_key_concurrency: Some(-2),
                    ..entry("api")
                },
                "limiters[api].per_key_concurrency must be a positive number, got -2",
            ),
            (
                LimiterConfig {
                    per_key_rate: Some("1/0s".into()),
                    ..entry("api")
                },
                "limiters[api].per_key_rate",
            ),
            (
                LimiterConfig {
                    concurrency: None,
                    ..entry("api")
                },
                "limiters[api].concurrency is missing",
            ),
            (entry("has space"), "limiters[0].name must be"),
            (
                LimiterConfig {
                    queue: Some("a:b".into()),
                    ..entry("api")
                },
                "limiters[api].queue",
            ),
            (
                LimiterConfig {
                    kind: Some(String::new()),
                    ..entry("api")
                },
                "limiters[api].kind",
            ),
        ];
        for (entry, expected) in cases {
            let error = error_of(entry);
            assert!(error.starts_with(expected), "{error}");
        }
    }

    #[test]
    fn two_limiters_with_one_name_are_refused() {
        let error = compile_all(&[entry("api"), entry("other"), entry("api")])
            .expect_err("duplicate")
            .to_string();
        assert_eq!(
            error,
            "limiters[api].name is used by two limiters; names must be unique"
        );
    }

    #[test]
    fn a_limiter_covers_its_queue_or_every_queue() {
        let all = Limiter::compile(&entry("all"), 0).expect("valid");
        let one = Limiter::compile(
            &LimiterConfig {
                queue: Some("mail".into()),
                ..entry("one")
            },
            1,
        )
        .expect("valid");
        assert!(all.covers_queue("mail") && all.covers_queue("default"));
        assert!(one.covers_queue("mail") && !one.covers_queue("default"));
    }
}
