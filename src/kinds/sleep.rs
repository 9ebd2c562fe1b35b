//! `sleep`: waits `{"ms": N}` milliseconds without holding a CPU, standing in
//! for an I/O-bound job (a slow API call). Output: `{"slept_ms": N}`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{payload_as, JobContext, JobResult};

/// Longest sleep a payload may ask for: one day.
const MAX_SLEEP_MS: u64 = 86_400_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SleepPayload {
    ms: u64,
}

pub(super) async fn run(_ctx: JobContext, payload: Value) -> JobResult {
    let SleepPayload { ms } = payload_as("sleep", payload)?;
    if ms > MAX_SLEEP_MS {
        return Err(super::JobError::permanent(format!(
            "invalid sleep payload: ms must be at most {MAX_SLEEP_MS}, got {ms}"
        )));
    }
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(json!({ "slept_ms": ms }))
}
