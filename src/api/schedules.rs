//! `GET /schedules` and `POST /schedules/{name}/trigger|pause|resume`.
//!
//! This module owns the HTTP shape of the schedule controls; what they do
//! lives in [`crate::schedules::control`], shared with the CLI. It must
//! never enqueue a tick itself.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{ApiError, ApiState};
use crate::job::now_ms;
use crate::schedules::control;

pub(super) async fn list(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let views = control::list(state.schedules(), state.redis(), state.pool(), now_ms()).await?;
    Ok(HttpResponse::Ok().json(views))
}

pub(super) async fn trigger(
    state: web::Data<ApiState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let schedule = control::find(state.schedules(), &name)?;
    let id = control::trigger(schedule, state.redis(), now_ms()).await?;
    state.metrics().accepted(&schedule.queue, 1);
    Ok(HttpResponse::Accepted().json(json!({ "id": id, "queue": schedule.queue })))
}

pub(super) async fn pause(
    state: web::Data<ApiState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&state, &name, true).await
}

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
