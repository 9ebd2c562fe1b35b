//! Cancelling a job from its page: a confirmation page
//! (`GET /ui/jobs/{id}/cancel`) that says what a cancel does to a job in
//! its state, and the action (`POST /ui/jobs/{id}/cancel`).
//!
//! It cancels through the same call as `DELETE /jobs/{id}` (over
//! [`crate::control::cancel_job`], like `conveyor cancel`): a waiting, scheduled or
//! retrying job is removed and ends `cancelled`, a running one is signalled.
//! It must never cancel on a form whose CSRF token does not match.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::error::UiError;
use super::guard::{Authorized, CsrfField, Viewer};
use super::jobs::{checked_id, load, JobView};
use super::queues::checked_queue;
use super::view::{html, see_other, url_part, Chrome};
use crate::api::control::cancel_job;
use crate::api::ApiState;
use crate::control::CancelAnswer;

#[derive(Deserialize)]
pub(super) struct CancelQuery {
    #[serde(default)]
    queue: Option<String>,
}

#[derive(Template)]
#[template(path = "ui/cancel_confirm.html")]
struct ConfirmPage {
    chrome: Chrome,
    job: JobView,
}

/// The confirmation page; a job that cannot be cancelled any more gets a
/// page saying why (409).
pub(super) async fn confirm(
    state: web::Data<ApiState>,
    viewer: web::ReqData<Viewer>,
    id: web::Path<String>,
    query: web::Query<CancelQuery>,
) -> Result<HttpResponse, UiError> {
    let id = checked_id(&id)?;
    let queue = query.queue.as_deref().map(checked_queue).transpose()?;
    let job = load(&state, &id, queue.as_deref()).await?;
    if !job.cancellable() {
        return Err(not_cancellable(&id, &job.status));
    }
    let page = ConfirmPage {
        chrome: viewer.chrome(&format!("Cancel job {id}?"), ""),
        job,
    };
    Ok(html(StatusCode::OK, &page))
}

fn not_cancellable(id: &str, status: &str) -> UiError {
    UiError::Conflict(format!(
        "job {id:?} is {status}: there is nothing to cancel"
    ))
}

/// The confirmed form: the CSRF token and the job's queue.
#[derive(Deserialize)]
pub(super) struct CancelForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    queue: String,
}

impl CsrfField for CancelForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub(super) async fn cancel(
    allowed: Authorized<CancelForm>,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let id = checked_id(&id)?;
    let queue = Some(allowed.form.queue.as_str())
        .filter(|q| !q.is_empty())
        .map(checked_queue)
        .transpose()?;
    let searched = queue.as_deref().map_or_else(
        || "any configured queue".to_string(),
        |q| format!("queue {q}"),
    );
    match cancel_job(&allowed.state, queue.as_deref(), &id).await? {
        CancelAnswer::Accepted { queue, state } => Ok(see_other(&format!(
            "/ui/jobs/{}?queue={}&notice={}",
            url_part(&id),
            url_part(&queue),
            state.as_str()
        ))),
        CancelAnswer::Finished { status, .. } => Err(not_cancellable(&id, &status)),
        CancelAnswer::Unknown => Err(UiError::NotFound(format!(
            "no job {id:?} to cancel in {searched}, and no row of it"
        ))),
    }
}
