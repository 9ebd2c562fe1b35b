//! `GET /schedules` and `POST /schedules/{name}/trigger|pause|resume`.
//!
//! This module owns the HTTP shape of the schedule controls; what they do
//! lives in [`crate::schedules::control`], shared with the CLI. It must
//! never enqueue a tick itself.

use actix_web::{web, HttpResponse};
use serde_json::json;

#[allow(unused_imports)] // Named in the OpenAPI annotations only.
use super::schemas::{ErrorBody, JobReceipt, Refused};
use super::{ApiError, ApiState};
use crate::job::now_ms;
use crate::schedules::control;
#[allow(unused_imports)] // Named in the OpenAPI annotations only.
use crate::schedules::control::ScheduleView;

/// Every configured schedule with its pause state, next run and latest runs.
#[utoipa::path(
    get,
    path = "/schedules",
    tag = "schedules",
    responses(
        (status = 200, description = "The schedules", body = Vec<ScheduleView>),
        Refused,
    ),
)]
pub(super) async fn list(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let views = control::list(state.schedules(), state.redis(), state.pool(), now_ms()).await?;
    Ok(HttpResponse::Ok().json(views))
}

/// Run the schedule's job now, outside its cron times, with a fresh id.
#[utoipa::path(
    post,
    path = "/schedules/{name}/trigger",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 202, description = "The job was enqueued", body = JobReceipt),
        (status = 404, description = "No schedule of that name", body = ErrorBody),
        Refused,
    ),
)]
pub(super) async fn trigger(
    state: web::Data<ApiState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let schedule = control::find(state.schedules(), &name)?;
    let id = control::trigger(schedule, state.redis(), now_ms()).await?;
    state.metrics().accepted(&schedule.queue, 1);
    Ok(HttpResponse::Accepted().json(json!({ "id": id, "queue": schedule.queue })))
}

/// Stop the schedule's ticks until it is resumed (every worker).
#[utoipa::path(
    post,
    path = "/schedules/{name}/pause",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 204, description = "Done"),
        (status = 404, description = "No schedule of that name", body = ErrorBody),
        Refused,
    ),
)]
pub(super) async fn pause(
    state: web::Data<ApiState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&state, &name, true).await
}

/// Let the schedule tick again.
#[utoipa::path(
    post,
    path = "/schedules/{name}/resume",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 204, description = "Done"),
        (status = 404, description = "No schedule of that name", body = ErrorBody),
        Refused,
    ),
)]
pub(super) async fn resume(
    state: web::Data<ApiState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&state, &name, false).await
}

async fn set_paused(state: &ApiState, name: &str, paused: bool) -> Result<HttpResponse, ApiError> {
    let schedule = control::find(state.schedules(), name)?;
    control::set_paused(schedule, state.redis(), paused).await?;
    Ok(HttpResponse::NoContent().finish())
}
