//! Rate holds: what a job whose handler reported a rate limit
//! (`JobError::rate_limited`) holds back, for every worker.
//!
//! This module owns the choice of what is held: each limiter matching the
//! job, as a whole or only for the job's key. It must never do I/O: the
//! holds are written by `redis_queue` and honoured by the limited claim.

use super::Limiter;

/// Longest hold-back a handler may ask for: one day.
pub const MAX_RATE_HOLD_MS: u64 = 86_400_000;

/// A job whose handler said the service it calls is rate limited
/// (`JobError::rate_limited`): the limiters that match it are held back for
/// `delay_ms` for every worker, and the job waits that long without counting
/// an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateHold {
    /// The job's kind (which limiters match it).
    pub kind: String,
    /// The job's key (what a per-key limiter holds back).
    pub key: Option<String>,
    /// How long (ms), at most [`MAX_RATE_HOLD_MS`].
    pub delay_ms: u64,
}

/// What a rate-limited job of `kind` in `queue` holds back: for each
/// matching limiter, its whole selector, or only the job's key when the
/// limiter limits per key (an unkeyed job holds the unkeyed jobs' key).
pub fn held_by<'a>(
    limiters: &'a [Limiter],
    queue: &'a str,
    hold: &'a RateHold,
) -> impl Iterator<Item = (&'a Limiter, Option<&'a str>)> + 'a {
    limiters
        .iter()
        .filter(move |l| l.matches(queue, &hold.kind))
        .map(move |l| {
            let key = l.is_per_key().then(|| hold.key.as_deref().unwrap_or(""));
            (l, key)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiters::tests::entry;
    use crate::limiters::LimiterConfig;

    #[test]
    fn a_rate_hold_takes_the_whole_limiter_or_only_the_key() {
        let compile = |entry: LimiterConfig| Limiter::compile(&entry, 0).expect("valid");
        let limiters = vec![
            compile(LimiterConfig {
                kind: Some("http".into()),
                ..entry("api")
            }),
            compile(LimiterConfig {
                concurrency: None,
                per_key_rate: Some("5/1s".into()),
                ..entry("tenants")
            }),
            compile(LimiterConfig {
                queue: Some("other".into()),
                ..entry("elsewhere")
            }),
            compile(LimiterConfig {
                kind: Some("mail".into()),
                ..entry("mailer")
            }),
        ];
        let hold = |key: Option<&str>| RateHold {
            kind: "http".into(),
            key: key.map(str::to_string),
            delay_ms: 1000,
        };
        let held = |hold: &RateHold| -> Vec<(String, Option<String>)> {
            held_by(&limiters, "default", hold)
                .map(|(l, key)| (l.name.clone(), key.map(str::to_string)))
                .collect()
        };
        assert_eq!(
            held(&hold(Some("acme"))),
            vec![
                ("api".to_string(), None),
                ("tenants".to_string(), Some("acme".to_string()))
            ]
        );
        assert_eq!(
            held(&hold(None)),
            vec![
                ("api".to_string(), None),
                ("tenants".to_string(), Some(String::new()))
            ]
        );
    }
}
