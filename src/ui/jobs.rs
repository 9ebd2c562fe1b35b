//! The job page (`/ui/jobs/{id}`): envelope, status, attempts, timings,
//! output or error, the worker that ran it; and its actions: retry a dead
//! job, delete a dead row, enqueue a copy under a new id (refused, like any
//! submission, while another job holds its `unique_key`).
//!
//! It finds a job with the same lookup as `GET /jobs/{id}` (Redis first,
//! then MySQL, a final row wins) and changes jobs only through
//! [`crate::requeue`], [`crate::store::purge`] and the intake and enqueue
//! path of `POST /jobs`. It must never act on a form whose CSRF token does
//! not match.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;
use serde_json::Value;

use super::error::UiError;
use super::guard::{Authorized, Viewer};
use super::queues::checked_queue;
use super::view::{
    cut_text, escaped_bytes, html, pretty_json, printable, see_other, url_part, Chrome,
    FULL_VIEW_BYTES,
};
use crate::api::jobs::{enqueue_counted, find_job, Found};
use crate::api::ApiState;
use crate::intake;
use crate::job::is_valid_job_id;
use crate::requeue;
use crate::store::{self, DeadFilter};

/// Bytes of an envelope or output the job page shows inline.
const INLINE_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
pub(super) struct FindQuery {
    #[serde(default)]
    id: String,
}

/// `/ui/jobs?id=...` (the search box): to the job's page.
pub(super) async fn find(query: web::Query<FindQuery>) -> Result<HttpResponse, UiError> {
    let id = checked_id(query.id.trim())?;
    Ok(see_other(&format!("/ui/jobs/{}", url_part(&id))))
}

/// A job id from the URL or a form, checked.
pub(super) fn checked_id(id: &str) -> Result<String, UiError> {
    if is_valid_job_id(id) {
        Ok(id.to_string())
    } else {
        Err(UiError::BadRequest(format!(
            "{:?} is not a job id: job ids are 1-64 characters of A-Z a-z 0-9 _ . : -",
            super::view::shorten(&escaped_bytes(id.as_bytes(), 200).0, 80)
        )))
    }
}

#[derive(Deserialize)]
pub(super) struct JobQuery {
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    notice: String,
}

/// What the job page shows.
pub(super) struct JobView {
    pub id: String,
    pub queue: String,
    pub kind: String,
    pub status: String,
    pub attempts: u32,
    pub error: Option<String>,
    pub output: Option<(String, bool)>,
    pub envelope: Option<(String, bool)>,
    pub enqueued_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub worker: Option<String>,
    /// Its result row is written: nothing about it changes any more.
    pub settled: bool,
}

impl JobView {
    pub(super) fn finished(&self) -> bool {
        self.settled
    }

    /// Whether a cancel can still stop it (waiting, scheduled, retrying or
    /// running, and not being cancelled already).
    pub(super) fn cancellable(&self) -> bool {
        !self.settled && matches!(self.status.as_str(), "queued" | "running" | "retrying")
    }
}

#[derive(Template)]
#[template(path = "ui/job.html")]
struct JobPage {
    chrome: Chrome,
    job: JobView,
}

/// Pretty JSON when `raw` is JSON, else escaped bytes; cut to `max`.
fn readable(raw: &[u8], max: usize) -> (String, bool) {
    match serde_json::from_slice::<Value>(raw) {
        Ok(value) => pretty_json(&value, max),
        Err(_) => escaped_bytes(raw, max),
    }
}

pub(super) async fn load(
    state: &ApiState,
    id: &str,
    queue: Option<&str>,
) -> Result<JobView, UiError> {
    let Some(found) = find_job(state, id, queue).await? else {
        return Err(UiError::NotFound(format!(
            "no job {id:?} in {}: it may be waiting in a queue without a status index, or its row was deleted",
            queue.map_or_else(|| "any configured queue".to_string(), |q| format!("queue {q}"))
        )));
    };
    Ok(match found {
        Found::Final(row) => {
            let message = store::find_message(state.pool(), id).await?;
            JobView {
                output: row
                    .output
                    .as_deref()
                    .map(|text| readable(text.as_bytes(), INLINE_BYTES)),
                envelope: message.as_deref().map(|raw| readable(raw, INLINE_BYTES)),
                id: row.id,
                queue: row.queue,
                kind: row.kind,
                status: row.status,
                attempts: row.attempts,
                error: row.error.as_deref().map(printable),
                enqueued_at: row.enqueued_at,
                started_at: row.started_at,
                finished_at: row.finished_at,
                worker: Some(row.worker),
                settled: true,
            }
        }
        Found::InRedis { queue, state: job } => {
            let held = state.redis().job_message(&queue, id).await?;
            let summary = held.as_ref().map(|h| super::view::summarize(&h.message));
            JobView {
                id: id.to_string(),
                kind: summary.map_or_else(|| "-".to_string(), |s| s.kind),
                status: job.state,
                attempts: job.attempts,
                error: job.last_error.as_deref().map(printable),
                output: None,
                envelope: held.as_ref().map(|h| readable(&h.message, INLINE_BYTES)),
                enqueued_at: None,
                started_at: None,
                finished_at: None,
                worker: held.and_then(|h| h.worker),
                queue,
                settled: false,
            }
        }
    })
}

/// A short fixed message for `?notice=` codes (never echoes the URL).
fn notice_text(code: &str) -> Option<String> {
    match code {
        "retried" => Some("Enqueued again under the same id; the dead row stays until the new result replaces it.".into()),
        "copied" => Some("A copy was enqueued under a new id.".into()),
        "duplicate" => Some("No copy was enqueued: this job holds the same unique key in its queue until it ends.".into()),
        "cancelled" => Some("Cancelled: it will not start; its row says cancelled.".into()),
        "cancelling" => Some("Cancelling: its worker was told to stop it; the row says cancelled unless it finished first.".into()),
        _ => None,
    }
}

pub(super) async fn show(
    state: web::Data<ApiState>,
    viewer: web::ReqData<Viewer>,
    id: web::Path<String>,
    query: web::Query<JobQuery>,
) -> Result<HttpResponse, UiError> {
    let id = checked_id(&id)?;
    let queue = query.queue.as_deref().map(checked_queue).transpose()?;
    let job = load(&state, &id, queue.as_deref()).await?;
    let mut chrome = viewer.chrome(&format!("Job {id}"), "");
    chrome.notice = notice_text(&query.notice);
    if !job.finished() {
        chrome.refresh_ms = Some(2000);
    }
    Ok(html(StatusCode::OK, &JobPage { chrome, job }))
}

/// The whole message of a job, as text (for envelopes cut on the page).
pub(super) async fn message(
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let id = checked_id(&id)?;
    let Some(raw) = store::find_message(state.pool(), &id).await? else {
        return Err(UiError::NotFound(format!(
            "no stored message for job {id:?}"
        )));
    };
    let (text, _) = cut_text(escaped_bytes(&raw, raw.len()).0, FULL_VIEW_BYTES * 64);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::CONTENT_DISPOSITION, "inline"))
        .body(text))
}

fn back_to(id: &str, notice: &str) -> HttpResponse {
    see_other(&format!("/ui/jobs/{}?notice={notice}", url_part(id)))
}

/// Retry a dead job: its message again, same id.
pub(super) async fn retry(
    allowed: Authorized,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let id = checked_id(&id)?;
    let filter = DeadFilter::by_ids([id.clone()]);
    let state = &allowed.state;
    let done = requeue::retry_dead(state.pool(), state.redis(), &filter).await?;
    if let Some((_, why)) = done.skipped.first() {
        return Err(UiError::BadRequest(format!(
            "job {id:?} cannot be retried: {why}"
        )));
    }
    if done.retried.is_empty() {
        return Err(UiError::NotFound(format!(
            "job {id:?} is not dead (any more)"
        )));
    }
    Ok(back_to(&id, "retried"))
}

/// Enqueue a copy of a job's message under a new id, exactly as `POST /jobs`
/// would: a copy whose `unique_key` another unfinished job of its queue
/// holds is not created, and the page of that job is shown instead.
pub(super) async fn copy(
    allowed: Authorized,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let id = checked_id(&id)?;
    let state = &allowed.state;
    let job = load(state, &id, None).await?;
    let raw = match store::find_message(state.pool(), &id).await? {
        Some(raw) => raw,
        None => state
            .redis()
            .job_message(&job.queue, &id)
            .await?
            .map(|held| held.message)
            .ok_or_else(|| UiError::NotFound(format!("no message of job {id:?} is known")))?,
    };
    let Ok(Value::Object(mut envelope)) = serde_json::from_slice::<Value>(&raw) else {
        return Err(UiError::BadRequest(
            "its message is not a JSON object".into(),
        ));
    };
    envelope.remove("id");
    envelope.remove("enqueued_at");
    envelope.insert("queue".into(), Value::String(job.queue.clone()));
    let body = serde_json::to_vec(&envelope).map_err(|e| UiError::BadRequest(e.to_string()))?;
    let copy = intake::parse_one(&body, &state.rules())
        .map_err(|rejected| UiError::BadRequest(format!("the copy was refused: {rejected}")))?;
    Ok(match enqueue_counted(state, &copy).await? {
        Some(holder) => back_to(&holder, "duplicate"),
        None => back_to(&copy.id, "copied"),
    })
}

/// Delete a dead job's row (never a succeeded one).
pub(super) async fn delete(
    allowed: Authorized,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let id = checked_id(&id)?;
    let filter = DeadFilter::by_ids([id.clone()]);
    let deleted = store::purge(allowed.state.pool(), &filter, false).await?;
    if deleted == 0 {
        return Err(UiError::NotFound(format!(
            "job {id:?} is not dead (any more)"
        )));
    }
    Ok(see_other("/ui/dead?notice=deleted&n=1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_ids_are_refused_with_the_rule() {
        assert!(checked_id("job-1:a.b_c").is_ok());
        let error = checked_id("<script>").unwrap_err().to_string();
        assert!(error.contains("not a job id"), "{error}");
        assert!(checked_id(&"x".repeat(65)).is_err());
        assert!(checked_id("a\u{0}b")
            .unwrap_err()
            .to_string()
            .contains(r"\0"));
    }

    #[test]
    fn output_is_pretty_json_or_escaped_text() {
        assert_eq!(readable(br#"{"a":1}"#, 100).0, "{\n  \"a\": 1\n}");
        assert_eq!(readable(b"\x00x", 100).0, r"\0x");
    }

    #[test]
    fn notices_are_fixed_texts() {
        assert!(notice_text("retried").is_some());
        assert!(notice_text("<script>").is_none());
    }
}
