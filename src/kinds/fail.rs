//! `fail`: fails (or panics) on attempts 1..=`times`, then succeeds with
//! `{"attempt": n}`; without `times` it always fails. Exercises retries,
//! dead jobs and panic recovery.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{payload_as, JobContext, JobError, JobResult};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FailPayload {
    times: Option<u32>,
    #[serde(default)]
    mode: FailMode,
    message: Option<String>,
}

#[derive(Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
enum FailMode {
    #[default]
    Error,
    Panic,
}

pub(super) fn run(ctx: &JobContext, payload: Value) -> JobResult {
    let payload: FailPayload = if payload.is_null() {
        FailPayload::default()
    } else {
        payload_as("fail", payload)?
    };
    let fails_now = payload.times.is_none_or(|times| ctx.attempt <= times);
    if !fails_now {
        return Ok(json!({ "attempt": ctx.attempt }));
    }
    let message = payload
        .message
        .unwrap_or_else(|| format!("fail kind: attempt {} failed as asked", ctx.attempt));
    if payload.mode == FailMode::Panic {
        panic!("{message}");
    }
    Err(JobError::retryable(message))
}
