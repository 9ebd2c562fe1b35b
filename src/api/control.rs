//! `POST /queues/{q}/pause`, `POST /queues/{q}/resume` and `DELETE /jobs/{id}`:
//! the operator's controls.
//!
//! This module owns the HTTP answers of those actions, and the calls the
//! dashboard's buttons share with them; the decisions are
//! [`crate::control`]'s, shared with the CLI. It must never change a job
//! beyond what a pause flag or a cancel mark in Redis does.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::jobs::queue_param;
#[allow(unused_imports)] // Named in the OpenAPI annotations only.
use super::schemas::{CancelReceipt, ErrorBody, FinishedError, JobPath, QueueFilter, Refused};
use super::{ApiError, ApiState};
use crate::control::{self, CancelAnswer};

/// Stop starting the queue's jobs until it is resumed (every worker).
#[utoipa::path(
    post,
    path = "/queues/{queue}/pause",
    tag = "queues",
    params(("queue" = String, Path, description = "The queue's name", pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses(
        (status = 204, description = "No worker starts the queue's jobs"),
        (status = 400, description = "The name breaks the naming rule (`field` is `queue`)", body = ErrorBody),
        (status = 404, description = "Not in `queues.names` and Redis holds nothing of it", body = ErrorBody),
        Refused,
    ),
)]
pub(super) async fn pause(
    state: web::Data<ApiState>,
    queue: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&state, &queue, true).await
}

/// Start the queue's jobs again.
#[utoipa::path(
    post,
    path = "/queues/{queue}/resume",
    tag = "queues",
    params(("queue" = String, Path, description = "The queue's name", pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses(
        (status = 204, description = "The queue's jobs start again"),
        (status = 400, description = "The name breaks the naming rule (`field` is `queue`)", body = ErrorBody),
        (status = 404, description = "Not in `queues.names` and Redis holds nothing of it", body = ErrorBody),
        Refused,
    ),
)]
pub(super) async fn resume(
    state: web::Data<ApiState>,
    queue: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&state, &queue, false).await
}

async fn set_paused(state: &ApiState, queue: &str, paused: bool) -> Result<HttpResponse, ApiError> {
    pause_queue(state, queue, paused).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Pauses (`true`) or resumes `queue` for every worker, and logs it: the
/// one call behind the API's routes and the dashboard's buttons.
pub(crate) async fn pause_queue(
    state: &ApiState,
    queue: &str,
    paused: bool,
) -> Result<(), control::ControlError> {
    control::set_paused(state.redis(), &state.settings().queues.names, queue, paused).await?;
    log::info!(target: "conveyor::api", "queue {queue} {}", if paused { "paused" } else { "resumed" });
    Ok(())
}

/// Cancels job `id` of `queue` (of any configured queue when `None`), and
/// logs what it found: the one call behind `DELETE /jobs/{id}` and the
/// dashboard's cancel button.
pub(crate) async fn cancel_job(
    state: &ApiState,
    queue: Option<&str>,
    id: &str,
) -> Result<CancelAnswer, control::ControlError> {
    let answer = control::cancel_job(
        state.redis(),
        state.pool(),
        &state.settings().queues.names,
        queue,
        id,
    )
    .await?;
    if let CancelAnswer::Accepted { queue, state } = &answer {
        log::info!(target: "conveyor::api", "job {id} of {queue}: {}", state.as_str());
    }
    Ok(answer)
}

/// Cancel a job: `cancelled` if it was waiting, `cancelling` while a worker
/// runs it; a finished job answers 409 with its status, an unknown one 404.
#[utoipa::path(
    delete,
    path = "/jobs/{id}",
    tag = "jobs",
    params(JobPath, QueueFilter),
    responses(
        (status = 202, description = "Cancelled, or its worker told to stop it", body = CancelReceipt),
        (status = 400, description = "The id or queue is not a valid name (named in `field`)", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job has finished already", body = FinishedError),
        Refused,
    ),
)]
pub(super) async fn cancel(
    state: web::Data<ApiState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let queue = queue_param(req.query_string())?;
    let answer = cancel_job(&state, queue.as_deref(), &id).await?;
    match answer {
        CancelAnswer::Accepted { queue, state: s } => Ok(HttpResponse::Accepted()
            .json(json!({ "id": *id, "queue": queue, "status": s.as_str() }))),
        CancelAnswer::Finished { queue, status } => Err(ApiError::Finished {
            id: id.into_inner(),
            queue,
            status,
        }),
        CancelAnswer::Unknown => Err(ApiError::NotFound(
            id.into_inner(),
            queue.map_or_else(
                || "any configured queue".to_string(),
                |q| format!("queue {q}"),
            ),
        )),
    }
}
