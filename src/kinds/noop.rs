//! `noop`: returns its payload unchanged. The cheapest job there is, used to
//! measure the pipeline itself.

use serde_json::Value;

use super::{JobContext, JobResult};

pub(super) fn run(_ctx: &JobContext, payload: Value) -> JobResult {
    Ok(payload)
}
