//! Turning submitted JSON (HTTP API bodies, `conveyor enqueue --file` lines)
//! into messages ready to push onto a queue.
//!
//! This module owns the submission rules: every field's JSON type, checked
//! one field at a time so an error names its field (`kind`, `[3].run_at`);
//! the envelope rules of [`crate::job::validate_envelope`]; the target queue;
//! the size limit; and the defaults a submission gets (a new id, `enqueued_at`
//! = now). Messages are serialised with `id` first, which the Redis status
//! index depends on. It must never do I/O.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::job::{
    is_valid_queue_name, new_job_id, now_ms, validate_envelope, Envelope, EnvelopeDefaults,
    Malformed,
};

/// The queue a submission goes to when it does not say.
pub const DEFAULT_QUEUE: &str = "default";

/// A job ready to push: its id, queue and message bytes (id first).
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// The job id (assigned when the body had none).
    pub id: String,
    /// The queue it goes to.
    pub queue: String,
    /// The envelope bytes to push.
    pub message: Vec<u8>,
    /// The job's `unique_key`: it is refused while another job holds it.
    pub unique_key: Option<String>,
}

/// Why a submission was refused; `field` names the offending field, with the
/// element's index in a batch (`[3].kind`), or is `None` for the whole body.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The offending field, e.g. `kind` or `[3].kind`; `None` for the whole body.
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            // A key spelled "" would read as nothing at all.
            Some(field) if field.is_empty() => write!(f, "field \"\": {}", self.reason),
            Some(field) => write!(f, "{field}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for Rejected {}

impl Rejected {
    fn body(reason: impl Into<String>) -> Rejected {
        Rejected {
            field: None,
            reason: reason.into(),
        }
    }

    fn field(field: &str, reason: impl std::fmt::Display) -> Rejected {
        Rejected {
            field: Some(field.to_string()),
            reason: reason.to_string(),
        }
    }

    /// The same error, located in element `index` of a batch.
    fn in_element(self, index: usize) -> Rejected {
        let field = match self.field {
            Some(field) => format!("[{index}].{field}"),
            None => format!("[{index}]"),
        };
        Rejected {
            field: Some(field),
            reason: self.reason,
        }
    }
}

/// What a submission is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// Defaults for fields the submission leaves out.
    pub defaults: EnvelopeDefaults,
    /// Queues a submission may name; `None` accepts any valid queue name.
    pub queues: Option<&'a [String]>,
    /// Queue of submissions without a `queue` field.
    pub default_queue: &'a str,
}

/// One envelope: a JSON object, with an optional `"queue"` field.
pub fn parse_one(body: &[u8], rules: &Rules<'_>) -> Result<Submission, Rejected> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Rejected::body(format!("body is not valid JSON: {e}")))?;
    submission(value, rules)
}

/// A JSON array of envelopes; all or nothing: the first bad element refuses the lot.
pub fn parse_batch(body: &[u8], rules: &Rules<'_>) -> Result<Vec<Submission>, Rejected> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Rejected::body(format!("body is not valid JSON: {e}")))?;
    let Value::Array(items) = value else {
        return Err(Rejected::body("body must be a JSON array of job envelopes"));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| submission(item, rules).map_err(|e| e.in_element(index)))
        .collect()
}

/// Checks one envelope given as a JSON value and turns it into a message.
pub fn submission(value: Value, rules: &Rules<'_>) -> Result<Submission, Rejected> {
    let Value::Object(mut map) = value else {
        return Err(Rejected::body("a job envelope must be a JSON object"));
    };
    let queue = take_queue(&mut map, rules)?;
    let mut envelope = envelope_from(map)?;
    let id = match envelope.id.take() {
        Some(id) => id,
        None => new_job_id(),
    };
    envelope.id = Some(id.clone());
    envelope.enqueued_at.get_or_insert_with(now_ms);
    validate_envelope(envelope.clone(), &id, &rules.defaults).map_err(from_malformed)?;
    let message = serde_json::to_vec(&envelope)
        .map_err(|e| Rejected::body(format!("envelope cannot be serialised: {e}")))?;
    if message.len() > rules.defaults.max_job_bytes {
        return Err(Rejected::field(
            "payload",
            format!(
                "the job is {} bytes, over limits.max_job_bytes = {}",
                message.len(),
                rules.defaults.max_job_bytes
            ),
        ));
    }
    Ok(Submission {
        id,
        queue,
        message,
        unique_key: envelope.unique_key,
    })
}

fn take_queue(map: &mut Map<String, Value>, rules: &Rules<'_>) -> Result<String, Rejected> {
    let queue = match map.remove("queue") {
        None | Some(Value::Null) => return Ok(rules.default_queue.to_string()),
        Some(Value::String(queue)) => queue,
        Some(other) => return Err(Rejected::field("queue", type_error("a string", &other))),
    };
    if !is_valid_queue_name(&queue) {
        return Err(Rejected::field(
            "queue",
            format!("must be 1-64 chars of [A-Za-z0-9_.-], got {queue:?}"),
        ));
    }
    if let Some(allowed) = rules.queues {
        if !allowed.contains(&queue) {
            return Err(Rejected::field(
                "queue",
                format!("{queue:?} is not one of the configured queues {allowed:?}"),
            ));
        }
    }
    Ok(queue)
}

/// Fields of an envelope, checked one by one so errors name the field.
fn envelope_from(mut map: Map<String, Value>) -> Result<Envelope, Rejected> {
    let kind: Option<String> = take(&mut map, "kind")?;
    let envelope = Envelope {
        id: take(&mut map, "id")?,
        kind: kind.ok_or_else(|| Rejected::field("kind", "is required"))?,
        payload: map.remove("payload").unwrap_or(Value::Null),
        max_attempts: take(&mut map, "max_attempts")?,
        timeout_ms: take(&mut map, "timeout_ms")?,
        run_at: take(&mut map, "run_at")?,
        enqueued_at: take(&mut map, "enqueued_at")?,
        key: take(&mut map, "key")?,
        unique_key: take(&mut map, "unique_key")?,
        unique_for_ms: take(&mut map, "unique_for_ms")?,
    };
    if let Some(unknown) = map.keys().next() {
        return Err(Rejected::field(unknown, "unknown field"));
    }
    Ok(envelope)
}

/// Removes `field` and reads it as `T`; absent or null is `None`.
fn take<T: DeserializeOwned>(
    map: &mut Map<String, Value>,
    field: &str,
) -> Result<Option<T>, Rejected> {
    match map.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(|e| Rejected::field(field, e)),
    }
}

fn type_error(expected: &str, got: &Value) -> String {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    format!("must be {expected}, got {kind}")
}

fn from_malformed(malformed: Malformed) -> Rejected {
    match malformed {
        Malformed::BadField { field, reason } => Rejected::field(field, reason),
        Malformed::FieldType { field, reason } => Rejected::field(&field, reason),
        other => Rejected::body(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEFAULTS: EnvelopeDefaults = EnvelopeDefaults {
        max_attempts: 3,
        timeout_ms: 30_000,
        max_job_bytes: 200,
    };

    fn rules(queues: &[String]) -> Rules<'_> {
        Rules {
            defaults: DEFAULTS,
            queues: Some(queues),
            default_queue: DEFAULT_QUEUE,
        }
    }

    fn field_of(body: Value) -> Option<String> {
        let queues = vec!["default".to_string(), "mail".to_string()];
        parse_one(body.to_string().as_bytes(), &rules(&queues))
            .expect_err("rejected")
            .field
    }

    #[test]
    fn a_minimal_envelope_gets_an_id_first_and_enqueued_at() {
        let queues = vec!["default".to_string()];
        let job =
            parse_one(br#"{"kind":"noop","payload":{"a":1}}"#, &rules(&queues)).expect("valid");
        assert_eq!(job.queue, "default");
        let text = String::from_utf8(job.message).expect("utf8");
        assert!(
            text.starts_with(&format!(r#"{{"id":"{}","kind":"noop""#, job.id)),
            "{text}"
        );
        assert!(text.contains(r#""enqueued_at":"#), "{text}");
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (json!({"payload": 1}), "kind"),
            (json!({"kind": ""}), "kind"),
            (json!({"kind": "k".repeat(65)}), "kind"),
            (json!({"kind": 5}), "kind"),
            (json!({"kind": "noop", "id": "has space"}), "id"),
            (json!({"kind": "noop", "queue": "no such"}), "queue"),
            (json!({"kind": "noop", "queue": "other"}), "queue"),
            (json!({"kind": "noop", "max_attempts": 0}), "max_attempts"),
            (json!({"kind": "noop", "max_attempts": -1}), "max_attempts"),
            (json!({"kind": "noop", "run_at": "tomorrow"}), "run_at"),
            (json!({"kind": "noop", "timeout_ms": 0}), "timeout_ms"),
            (
                json!({"kind": "noop", "payload": "x".repeat(300)}),
                "payload",
            ),
            (json!({"kind": "noop", "max_attempt": 2}), "max_attempt"),
        ];
        for (body, field) in cases {
            assert_eq!(field_of(body.clone()).as_deref(), Some(field), "{body}");
        }
        assert_eq!(field_of(json!([1])), None);
    }

    /// The API schema fuzz sent a key spelled "": the error names it so
    /// that a reader sees there is one, and the field says which.
    #[test]
    fn an_empty_key_is_named_as_such() {
        let queues = vec!["default".to_string()];
        let err = parse_one(br#"{"kind":"noop","":1}"#, &rules(&queues)).expect_err("bad");
        assert_eq!(err.field.as_deref(), Some(""));
        assert_eq!(err.to_string(), r#"field "": unknown field"#);
    }

    #[test]
    fn batch_errors_carry_the_index() {
        let queues = vec!["default".to_string()];
        let body = json!([{"kind": "noop"}, {"kind": "noop"}, {"kind": "noop", "max_attempts": 0}]);
        let err = parse_batch(body.to_string().as_bytes(), &rules(&queues)).expect_err("bad");
        assert_eq!(err.field.as_deref(), Some("[2].max_attempts"));
        assert!(err.to_string().starts_with("[2].max_attempts: "), "{err}");
        let err = parse_batch(br#"[{"kind":"noop"}, 7]"#, &rules(&queues)).expect_err("bad");
        assert_eq!(err.field.as_deref(), Some("[1]"));
        let jobs = parse_batch(br#"[{"kind":"a"},{"kind":"b","id":"x1"}]"#, &rules(&queues))
            .expect("valid");
        assert_eq!(jobs[1].id, "x1");
    }
}
