//! `gather`: several HTTP requests of one job, all in flight at once on the
//! processor thread's runtime, their results stored together.
//!
//! Payload: `{"requests": [{"name", "url", "method"?, "headers"?, "body"?}],
//! "fail_fast"?: bool}`. Output: `{"<name>": {"status", "body"}}`, the body
//! parsed as JSON when it is JSON and text otherwise.
//!
//! With `fail_fast` (the default) the first failed request fails the job and
//! cancels the others; that failure decides whether the job is retried (a
//! retry sends every request again). Without it, a failed request is recorded
//! as `{"error", "status"?}` under its name and the job succeeds.
//!
//! This module owns the payload of the kind and combining the results. It
//! must never send a request, read a body or classify a failure itself: all
//! of that is [`super::http_client`]'s, shared with `http`.

use std::collections::{BTreeMap, HashSet};

use futures::stream::{FuturesUnordered, StreamExt};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::http_client::{Fetched, HttpError, HttpKinds, RequestSpec};
use super::{payload_as, JobContext, JobError, JobResult};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GatherPayload {
    requests: Vec<GatherRequest>,
    #[serde(default = "default_fail_fast")]
    fail_fast: bool,
}

fn default_fail_fast() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GatherRequest {
    name: String,
    url: String,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<Value>,
}

pub(super) async fn run(http: HttpKinds, ctx: JobContext, payload: Value) -> JobResult {
    let payload: GatherPayload = payload_as("gather", payload)?;
    let requests = validate(&http, payload.requests)?;
    let deadline = ctx.deadline;
    let mut in_flight: FuturesUnordered<_> = requests
        .into_iter()
        .map(|(name, spec)| {
            let http = http.clone();
            async move {
                let result = http.fetch(&spec, deadline).await;
                (name, result)
            }
        })
        .collect();
    let mut output = Map::new();
    while let Some((name, result)) = in_flight.next().await {
        let entry = match result {
            Ok(fetched) => success(fetched),
            Err(error) if payload.fail_fast => {
                // Returning drops `in_flight`, which cancels the other requests.
                return Err(error.to_job_error(&format!(
                    "gather request {name:?} failed (fail_fast; the others were cancelled): "
                )));
            }
            Err(error) => failure(&error),
        };
        output.insert(name, entry);
    }
    Ok(Value::Object(output))
}

/// Checks every request before any is sent: a bad one fails the job alone.
fn validate(
    http: &HttpKinds,
    requests: Vec<GatherRequest>,
) -> Result<Vec<(String, RequestSpec)>, JobError> {
    let invalid = |what: String| JobError::permanent(format!("invalid gather payload: {what}"));
    let limit = http.settings().max_gather_requests;
    if requests.is_empty() {
        return Err(invalid("requests is empty".into()));
    }
    if requests.len() > limit {
        return Err(invalid(format!(
            "{} requests, more than kinds.http.max_gather_requests ({limit})",
            requests.len()
        )));
    }
    let mut names = HashSet::with_capacity(requests.len());
    requests
        .into_iter()
        .map(|request| {
            if request.name.is_empty() {
                return Err(invalid("a request has an empty name".into()));
            }
            if !names.insert(request.name.clone()) {
                return Err(invalid(format!(
                    "two requests are named {:?}",
                    request.name
                )));
            }
            let spec = RequestSpec::new(
                "gather",
                &request.url,
                request.method.as_deref(),
                &request.headers,
                request.body,
            )
            .map_err(|e| JobError {
                message: format!("{} (request {:?})", e.message, request.name),
                ..e
            })?;
            Ok((request.name, spec))
        })
        .collect()
}

fn success(fetched: Fetched) -> Value {
    json!({ "status": fetched.status.as_u16(), "body": body_value(&fetched.body) })
}

fn failure(error: &HttpError) -> Value {
    match error.status() {
        Some(status) => json!({ "error": error.to_string(), "status": status.as_u16() }),
        None => json!({ "error": error.to_string() }),
    }
}

/// The body as JSON when it parses as JSON, else as (lossy UTF-8) text.
fn body_value(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpKindSettings;

    #[test]
    fn bodies_are_json_when_they_parse() {
        assert_eq!(body_value(b"{\"a\": [1, 2]}"), json!({"a": [1, 2]}));
        assert_eq!(body_value(b"42"), json!(42));
        assert_eq!(body_value(b"plain text"), json!("plain text"));
        assert_eq!(body_value(b""), json!(""));
    }

    #[test]
    fn bad_payloads_are_permanent_and_named() {
        let http = HttpKinds::new(&HttpKindSettings {
            max_gather_requests: 2,
            ..HttpKindSettings::default()
        });
        let request = |name: &str| json!({"name": name, "url": "http://example.com/"});
        let cases = [
            (json!({"requests": []}), "requests is empty"),
            (
                json!({"requests": [request("a"), request("b"), request("c")]}),
                "kinds.http.max_gather_requests (2)",
            ),
            (
                json!({"requests": [request("a"), request("a")]}),
                "two requests are named \"a\"",
            ),
            (
                json!({"requests": [request("a"), {"name": "b", "url": "gopher://x/"}]}),
                "(request \"b\")",
            ),
            (
                json!({"requests": [{"url": "http://x/"}]}),
                "missing field `name`",
            ),
        ];
        for (payload, needle) in cases {
            let parsed: GatherPayload = match payload_as("gather", payload.clone()) {
                Ok(parsed) => parsed,
                Err(err) => {
                    assert!(err.is_permanent());
                    assert!(err.message.contains(needle), "{payload}: {err}");
                    continue;
                }
            };
            let err = validate(&http, parsed.requests).expect_err("invalid");
            assert!(err.is_permanent());
            assert!(err.message.contains(needle), "{payload}: {err}");
        }
    }
}
