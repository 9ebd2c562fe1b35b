//! What one client may cost the API: connections, time and body size.
//!
//! This module owns the server's connection limits (`api.max_connections`,
//! `api.client_timeout_ms`, `api.keep_alive_ms`) and the per-request limits
//! that apply to every route, present and future: a body over
//! `api.max_body_bytes` is refused before it is read, and a request not done
//! within `api.request_timeout_ms` (a client sending its body slowly, say)
//! gets 408. It must never let one slow or large client hold up the others.

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::middleware::Next;
use actix_web::web;

use super::{state_of, ApiError};
use crate::config::ApiSettings;

/// Threads serving the API: one per core.
pub(super) fn server_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Connections per server thread: actix counts them per thread, so
/// `api.max_connections` is shared out among the threads.
pub(super) fn connections_per_thread(api: &ApiSettings) -> usize {
    api.max_connections.div_ceil(server_threads())
}

/// Body-size defaults for extractors (`web::Bytes`, `web::Json`, ...), so a
/// route that uses one gets the same limit as the others.
pub(super) fn payload_configs(api: &ApiSettings) -> (web::PayloadConfig, web::JsonConfig) {
    (
        web::PayloadConfig::new(api.max_body_bytes),
        web::JsonConfig::default().limit(api.max_body_bytes),
    )
}

/// Refuses a declared body over the limit, and bounds the whole request.
pub(super) async fn limit_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(state) = state_of(&req) else {
        return next.call(req).await;
    };
    let api = &state.settings().api;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > api.max_body_bytes as u64) {
        return Err(ApiError::TooLarge(api.max_body_bytes).into());
    }
    let limit = Duration::from_millis(api.request_timeout_ms);
    match tokio::time::timeout(limit, next.call(req)).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::Timeout(api.request_timeout_ms).into()),
    }
}
