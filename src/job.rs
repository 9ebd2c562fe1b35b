//! The wire types: the job envelope producers push, the job as a worker holds
//! it after a claim, and the outcomes that flow from processors to storage.
//!
//! This module owns the envelope's validation rules (what makes a message
//! malformed). It must never do I/O: parsing and checking only.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest job id, queue name and kind name (their MySQL columns are VARCHAR(64)).
pub const MAX_NAME_LEN: usize = 64;

/// Where a claimed job lives in Redis: its queue and the claim token that
/// names it there until it is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobHandle {
    /// The queue it was claimed from.
    pub queue: Arc<str>,
    /// The claim token: `<nonce>-<i>`, kept through retries and recovery.
    pub token: String,
}

/// A message as claimed from Redis, not yet parsed.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    /// Where it lives in Redis.
    pub handle: JobHandle,
    /// The message bytes exactly as the producer pushed them.
    pub raw: Vec<u8>,
    /// Attempts already made before this claim (0 on first delivery).
    pub attempts_made: u32,
    /// The error of the previous attempt, if one failed.
    pub last_error: Option<String>,
    /// When this worker claimed it (unix ms).
    pub claimed_at_ms: i64,
    /// The job was cancelled before it started: it ends `cancelled` without running.
    pub cancelled: bool,
    /// The id of the job holding this message's `unique_key` in its queue,
    /// when that is another job: this one is a duplicate and does not run.
    pub duplicate_of: Option<String>,
}

/// The job envelope of the wire contract.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(expecting = "a job envelope (a JSON object with a \"kind\")")]
pub struct Envelope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The job id; assigned (the claim token) when absent.
    pub id: Option<String>,
    /// The handler's name.
    pub kind: String,
    #[serde(default)]
    /// Anything the handler takes (default null).
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Attempts the job gets (default `retry.max_attempts`).
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Deadline of one attempt (default `jobs.default_timeout_ms`).
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Not started before this time.
    pub run_at: Option<RunAt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// When the producer enqueued it (unix ms).
    pub enqueued_at: Option<i64>,
    /// Whom the job is for (a tenant, a customer, an API host): fairness and
    /// per-key limits group jobs by it. Unkeyed jobs share one key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// No second job of the same queue and key while this one is unfinished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// Holds the unique lock at least this long after `enqueued_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_for_ms: Option<u64>,
}

/// `run_at`: an RFC 3339 time or unix milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum RunAt {
    /// Unix milliseconds.
    UnixMillis(i64),
    /// An RFC 3339 time.
    Rfc3339(String),
}

/// Reads either form, and says which two forms it wanted when it gets
/// anything else (a derived untagged enum only says "no variant matched").
impl<'de> Deserialize<'de> for RunAt {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RunAt, D::Error> {
        struct RunAtVisitor;
        impl serde::de::Visitor<'_> for RunAtVisitor {
            type Value = RunAt;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an RFC 3339 time (string) or unix milliseconds (integer)")
            }
            fn visit_i64<E: serde::de::Error>(self, ms: i64) -> Result<RunAt, E> {
                Ok(RunAt::UnixMillis(ms))
            }
            fn visit_u64<E: serde::de::Error>(self, ms: u64) -> Result<RunAt, E> {
                i64::try_from(ms)
                    .map(RunAt::UnixMillis)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(ms), &self))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RunAt, E> {
                Ok(RunAt::Rfc3339(text.to_string()))
            }
        }
        deserializer.deserialize_any(RunAtVisitor)
    }
}

impl RunAt {
    /// The time in unix milliseconds, or why it is not a time.
    pub fn to_unix_ms(&self) -> Result<i64, String> {
        match self {
            RunAt::UnixMillis(ms) => Ok(*ms),
            RunAt::Rfc3339(text) => chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| t.timestamp_millis())
                .map_err(|e| format!("run_at {text:?} is not an RFC 3339 time: {e}")),
        }
    }
}

/// Why a message cannot be a job. The text is stored beside the raw bytes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Malformed {
    /// Larger than `limits.max_job_bytes`.
    #[error("message is {size} bytes, over limits.max_job_bytes = {limit}")]
    TooLarge {
        /// The message's size (bytes).
        size: usize,
        /// The limit (bytes).
        limit: usize,
    },
    /// Not a JSON object, or lacking `kind`.
    #[error("message is not a valid job envelope: {0}")]
    Invalid(String),
    /// One field has a bad value.
    #[error("field {field}: {reason}")]
    BadField {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A field of the wrong JSON type or out of its type's range (`run_at`
    /// given as `true`, `max_attempts` as `-1`).
    #[error("field {field}: {reason}")]
    FieldType {
        /// The field's name.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// An envelope that passed every check, with its defaults resolved.
#[derive(Debug, Clone)]
pub struct ValidJob {
    /// The job id (the claim token when the envelope had none).
    pub id: String,
    /// The handler's name.
    pub kind: String,
    /// The payload.
    pub payload: Value,
    /// Attempts the job gets.
    pub max_attempts: u32,
    /// Deadline of one attempt (ms).
    pub timeout_ms: u64,
    /// Not started before this time (unix ms).
    pub run_at_ms: Option<i64>,
    /// When the producer enqueued it (unix ms).
    pub enqueued_at_ms: Option<i64>,
    /// Whom the job is for, when the envelope says.
    pub key: Option<String>,
    /// The unique key, when the envelope has one.
    pub unique_key: Option<String>,
}

/// Defaults applied to fields an envelope leaves out.
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeDefaults {
    /// `retry.max_attempts`.
    pub max_attempts: u32,
    /// `jobs.default_timeout_ms`.
    pub timeout_ms: u64,
    /// `limits.max_job_bytes`.
    pub max_job_bytes: usize,
}

/// Most attempts a job may ask for; keeps a hostile envelope from pinning a job forever.
pub const MAX_ATTEMPTS_LIMIT: u32 = 1000;

/// Longest `timeout_ms` a job may ask for (one year): a deadline further out
/// than the clock can represent would stop the processor that computes it.
pub const MAX_TIMEOUT_MS: u64 = 365 * 24 * 3600 * 1000;

/// Parses and checks one message. `fallback_id` names id-less jobs (the claim
/// token, stable across redeliveries).
pub fn parse_message(
    raw: &[u8],
    fallback_id: &str,
    defaults: &EnvelopeDefaults,
) -> Result<ValidJob, Malformed> {
    if raw.len() > defaults.max_job_bytes {
        return Err(Malformed::TooLarge {
            size: raw.len(),
            limit: defaults.max_job_bytes,
        });
    }
    // serde would also read a struct from a JSON array; the contract says object.
    let first = raw.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(Malformed::Invalid("not a JSON object".to_string()));
    }
    let envelope: Envelope = serde_json::from_slice(raw).map_err(|_| describe_json_error(raw))?;
    validate_envelope(envelope, fallback_id, defaults)
}

/// Why `raw` is not an envelope, naming the field when one is to blame.
/// Only runs on the error path: parsing again with the path tracked costs
/// nothing on the way of a valid message.
fn describe_json_error(raw: &[u8]) -> Malformed {
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let error = match serde_path_to_error::deserialize::<_, Envelope>(&mut deserializer) {
        Ok(_) => return Malformed::Invalid("not a single JSON value".to_string()),
        Err(error) => error,
    };
    let field = error.path().to_string();
    let inner = error.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data if field != "." && !field.is_empty() => {
            Malformed::FieldType {
                field,
                reason: inner.to_string(),
            }
        }
        _ => Malformed::Invalid(inner.to_string()),
    }
}

/// Checks a parsed envelope's fields; shared by the queue path and the HTTP API.
pub fn validate_envelope(
    envelope: Envelope,
    fallback_id: &str,
    defaults: &EnvelopeDefaults,
) -> Result<ValidJob, Malformed> {
    let id = match envelope.id {
        Some(id) if is_valid_job_id(&id) => id,
        Some(id) => {
            return Err(bad(
                "id",
                format!(
                    "must be 1-64 chars of [A-Za-z0-9_.:-], got {:?}",
                    truncate(&id)
                ),
            ))
        }
        None => fallback_id.to_string(),
    };
    if envelope.kind.is_empty() || envelope.kind.len() > MAX_NAME_LEN {
        return Err(bad("kind", "must be 1-64 characters".to_string()));
    }
    let max_attempts = envelope.max_attempts.unwrap_or(defaults.max_attempts);
    if max_attempts == 0 || max_attempts > MAX_ATTEMPTS_LIMIT {
        return Err(bad(
            "max_attempts",
            format!("must be 1-{MAX_ATTEMPTS_LIMIT}, got {max_attempts}"),
        ));
    }
    let timeout_ms = envelope.timeout_ms.unwrap_or(defaults.timeout_ms);
    if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
        return Err(bad(
            "timeout_ms",
            format!("must be 1-{MAX_TIMEOUT_MS} (one year), got {timeout_ms}"),
        ));
    }
    if let Some(key) = envelope.key.as_deref().filter(|key| !is_valid_job_key(key)) {
        return Err(bad(
            "key",
            format!(
                "must be 1-{MAX_KEY_LEN} chars of [A-Za-z0-9_.:-], got {:?}",
                truncate(key)
            ),
        ));
    }
    let run_at_ms = match envelope.run_at {
        Some(run_at) => Some(run_at.to_unix_ms().map_err(|e| bad("run_at", e))?),
        None => None,
    };
    check_unique(envelope.unique_key.as_deref(), envelope.unique_for_ms)?;
    Ok(ValidJob {
        id,
        kind: envelope.kind,
        payload: envelope.payload,
        max_attempts,
        timeout_ms,
        run_at_ms,
        enqueued_at_ms: envelope.enqueued_at,
        key: envelope.key,
        unique_key: envelope.unique_key,
    })
}

/// Longest `unique_key`, in characters.
pub const MAX_UNIQUE_KEY_CHARS: usize = 128;

fn check_unique(key: Option<&str>, for_ms: Option<u64>) -> Result<(), Malformed> {
    if let Some(key) = key {
        let chars = key.chars().count();
        if chars == 0 || chars > MAX_UNIQUE_KEY_CHARS {
            return Err(bad(
                "unique_key",
                format!("must be 1-{MAX_UNIQUE_KEY_CHARS} characters, got {chars}"),
            ));
        }
    }
    match (key, for_ms) {
        (_, Some(0)) => Err(bad("unique_for_ms", "must be positive".to_string())),
        // The lock's expiry is enqueued_at + unique_for_ms: past a year it
        // would overflow what Redis can take as an expiry time.
        (_, Some(ms)) if ms > MAX_TIMEOUT_MS => Err(bad(
            "unique_for_ms",
            format!("must be 1-{MAX_TIMEOUT_MS} (one year), got {ms}"),
        )),
        (None, Some(_)) => Err(bad(
            "unique_for_ms",
            "needs a unique_key to hold".to_string(),
        )),
        _ => Ok(()),
    }
}

fn bad(field: &'static str, reason: String) -> Malformed {
    Malformed::BadField { field, reason }
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Job ids: 1-64 chars of `[A-Za-z0-9_.:-]`.
pub fn is_valid_job_id(id: &str) -> bool {
    is_name(id, |c| c == ':')
}

/// Longest job key.
pub const MAX_KEY_LEN: usize = 128;

/// Job keys: 1-128 chars of `[A-Za-z0-9_.:-]`.
pub fn is_valid_job_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':'))
}

/// Queue names: 1-64 chars of `[A-Za-z0-9_.-]`.
pub fn is_valid_queue_name(name: &str) -> bool {
    is_name(name, |_| false)
}

fn is_name(text: &str, also: impl Fn(char) -> bool) -> bool {
    !text.is_empty()
        && text.len() <= MAX_NAME_LEN
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') || also(c))
}

/// Final state of a job's row in `job_results`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalStatus {
    /// The handler returned a result.
    Succeeded,
    /// It failed permanently or ran out of attempts.
    Dead,
    /// Cancelled by an operator before it finished.
    Cancelled,
    /// Not run: another job of its queue held its `unique_key`.
    Duplicate,
}

impl FinalStatus {
    /// The status as stored in `job_results.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            FinalStatus::Succeeded => "succeeded",
            FinalStatus::Dead => "dead",
            FinalStatus::Cancelled => "cancelled",
            FinalStatus::Duplicate => "duplicate",
        }
    }
}

/// One `job_results` row, ready to upsert.
#[derive(Debug, Clone)]
pub struct ResultRow {
    /// The job in Redis, acknowledged once this row is committed.
    pub handle: JobHandle,
    /// The job id (the row's key).
    pub id: String,
    /// The handler's name.
    pub kind: String,
    /// How it ended.
    pub status: FinalStatus,
    /// Attempts made, this one included.
    pub attempts: u32,
    /// Handler output as JSON text, on success.
    pub output: Option<String>,
    /// The last error, for a dead job.
    pub error: Option<String>,
    /// When the producer enqueued it (unix ms).
    pub enqueued_at_ms: Option<i64>,
    /// When the last attempt started (unix ms).
    pub started_at_ms: Option<i64>,
    /// When it ended (unix ms).
    pub finished_at_ms: i64,
    /// The original message, kept for dead jobs so they can be retried.
    pub message: Option<Vec<u8>>,
}

/// One `dead_letters` row: a message that could not be a job.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The message in Redis.
    pub handle: JobHandle,
    /// The message bytes exactly as pushed.
    pub raw: Vec<u8>,
    /// Why it is not a job.
    pub reason: String,
    /// When it was claimed (unix ms).
    pub received_at_ms: i64,
}

/// What became of one claimed job.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Final: a row for `job_results`.
    Finished(ResultRow),
    /// Final: a row for `dead_letters`.
    Malformed(DeadLetter),
    /// Not final: run again at `due_ms` after a failed attempt.
    Retry {
        /// The job.
        handle: JobHandle,
        /// When it may run again (unix ms).
        due_ms: i64,
        /// Attempts made so far (0: it never ran, none is counted).
        attempts: u32,
        /// Why the attempt failed.
        error: String,
    },
    /// Not final, no attempt counted: its handler reported a rate limit;
    /// it runs again after `hold.delay_ms`, and its limiters are held back
    /// as long.
    RateLimited {
        /// The job.
        handle: JobHandle,
        /// When it may run again (unix ms).
        due_ms: i64,
        /// What it holds back, and for how long.
        hold: crate::limiters::RateHold,
    },
    /// Not started: its `run_at` is in the future.
    Defer {
        /// The job.
        handle: JobHandle,
        /// Its `run_at` (unix ms).
        due_ms: i64,
    },
}

impl Outcome {
    /// The job the outcome is about.
    pub fn handle(&self) -> &JobHandle {
        match self {
            Outcome::Finished(row) => &row.handle,
            Outcome::Malformed(letter) => &letter.handle,
            Outcome::Retry { handle, .. }
            | Outcome::Defer { handle, .. }
            | Outcome::RateLimited { handle, .. } => handle,
        }
    }

    /// Whether this outcome is written to MySQL (the rest go back to Redis).
    pub fn is_final(&self) -> bool {
        matches!(self, Outcome::Finished(_) | Outcome::Malformed(_))
    }
}

/// A new job id: time-ordered hex (48-bit ms clock + 64 random bits).
pub fn new_job_id() -> String {
    format!("{:012x}{:016x}", now_ms().max(0), rand::random::<u64>())
}

/// Current time in unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
impl ResultRow {
    /// A succeeded row for `handle`, for tests of code that only moves rows.
    pub(crate) fn succeeded(handle: JobHandle) -> ResultRow {
        ResultRow {
            id: handle.token.clone(),
            handle,
            kind: "noop".into(),
            status: FinalStatus::Succeeded,
            attempts: 1,
            output: None,
            error: None,
            enqueued_at_ms: None,
            started_at_ms: None,
            finished_at_ms: 0,
            message: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: EnvelopeDefaults = EnvelopeDefaults {
        max_attempts: 3,
        timeout_ms: 30_000,
        max_job_bytes: 1024,
    };

    fn parse(raw: &str) -> Result<ValidJob, Malformed> {
        parse_message(raw.as_bytes(), "tok-1", &DEFAULTS)
    }

    #[test]
    fn minimal_envelope_gets_defaults_and_the_fallback_id() {
        let job = parse(r#"{"kind":"noop"}"#).expect("valid");
        assert_eq!(job.id, "tok-1");
        assert_eq!(job.max_attempts, 3);
        assert_eq!(job.payload, Value::Null);
    }

    #[test]
    fn run_at_accepts_both_forms() {
        let a = parse(r#"{"kind":"noop","run_at":"2030-01-01T00:00:00Z"}"#).expect("valid");
        let b = parse(r#"{"kind":"noop","run_at":1893456000000}"#).expect("valid");
        assert_eq!(a.run_at_ms, Some(1_893_456_000_000));
        assert_eq!(b.run_at_ms, a.run_at_ms);
    }

    #[test]
    fn malformed_messages_say_why() {
        let cases = [
            ("not json", "not a valid job envelope"),
            ("[1,2]", "not a JSON object"),
            (r#"["id-1","noop"]"#, "not a JSON object"),
            (r#"{"payload":1}"#, "missing field `kind`"),
            (r#"{"kind":"noop","id":"has space"}"#, "field id"),
            (r#"{"kind":"noop","id":""}"#, "field id"),
            (r#"{"kind":""}"#, "field kind"),
            (r#"{"kind":"noop","max_attempts":0}"#, "field max_attempts"),
            (r#"{"kind":"noop","run_at":"tomorrow"}"#, "field run_at"),
            (r#"{"kind":"noop","key":"a b"}"#, "field key"),
            (r#"{"kind":"noop","key":""}"#, "field key"),
            (r#"{"kind":"noop","key":7}"#, "field key: invalid type"),
            (r#"{"kind":"noop","unique_key":""}"#, "field unique_key"),
            (
                r#"{"kind":"noop","unique_key":"k","unique_for_ms":0}"#,
                "field unique_for_ms",
            ),
            (
                r#"{"kind":"noop","unique_for_ms":5}"#,
                "field unique_for_ms",
            ),
            (
                r#"{"kind":"noop","unique_key":"k","unique_for_ms":9223372036854775808}"#,
                "field unique_for_ms",
            ),
        ];
        for (raw, expected) in cases {
            let err = parse(raw).expect_err(raw).to_string();
            assert!(err.contains(expected), "{raw}: {err}");
        }
    }

    #[test]
    fn oversize_and_deep_nesting_are_malformed_not_fatal() {
        let big = format!(r#"{{"kind":"noop","payload":"{}"}}"#, "x".repeat(2000));
        assert!(matches!(parse(&big), Err(Malformed::TooLarge { .. })));
        let deep = "[".repeat(100_000);
        let limits = EnvelopeDefaults {
            max_job_bytes: 1 << 20,
            ..DEFAULTS
        };
        assert!(parse_message(deep.as_bytes(), "t", &limits).is_err());
    }

    #[test]
    fn names() {
        assert!(is_valid_job_id("a:b.c-d_9"));
        assert!(!is_valid_queue_name("a:b"));
        assert!(!is_valid_job_id(&"x".repeat(65)));
        assert!(is_valid_job_key(&"k:1.a-b_".repeat(16)));
        assert!(!is_valid_job_key(&"x".repeat(129)));
        assert!(!is_valid_job_key("tenant/1"));
    }

    #[test]
    fn a_key_is_kept() {
        let job = parse(r#"{"kind":"noop","key":"customer:42"}"#).expect("valid");
        assert_eq!(job.key.as_deref(), Some("customer:42"));
    }
}
