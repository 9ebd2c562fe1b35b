//! `GET /queues`, `/health`, `/ready` and `/metrics`: what operators and
//! orchestrators poll.
//!
//! This module owns the health semantics (`/health`: the process answers;
//! `/ready`: Redis and MySQL answer within [`READY_TIMEOUT`], and, inside a
//! worker, no MySQL problem that needs a person is blocking it). It must never
//! change anything it reads.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use prometheus::{Encoder, TextEncoder};
use serde_json::{json, Map, Value};

#[allow(unused_imports)] // Named in the OpenAPI annotations only.
use super::schemas::{ErrorBody, Health, QueueDepths, Readiness, Refused};
use super::{ApiError, ApiState};
use crate::redact::redact_text;
use crate::store;

/// Longest a readiness check waits for Redis or MySQL.
pub(super) const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Depths, dead count and pause flag of the configured queues, then of every
/// other queue Redis holds something of.
#[utoipa::path(
    get,
    path = "/queues",
    tag = "queues",
    responses(
        (status = 200, description = "By queue name", body = QueueDepths),
        Refused,
    ),
)]
pub(super) async fn queues(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let mut out = Map::new();
    let mut names = state.settings().queues.names.clone();
    for queue in state.redis().queues_in_redis().await? {
        if !names.contains(&queue) {
            names.push(queue);
        }
    }
    let mut depths = Vec::new();
    for queue in names {
        let found = state.redis().depths(&queue).await?;
        depths.push((queue, found));
    }
    let dead: HashMap<String, u64> = store::dead_counts(state.pool())
        .await?
        .into_iter()
        .collect();
    for (queue, d) in depths {
        let dead = dead.get(&queue).copied().unwrap_or(0);
        out.insert(
            queue,
            json!({
                "pending": d.pending,
                "running": d.running,
                "scheduled": d.scheduled,
                "dead": dead,
                "paused": d.paused,
            }),
        );
    }
    Ok(HttpResponse::Ok().json(Value::Object(out)))
}

/// Liveness: 200 while the process serves requests; never needs the token.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses((status = 200, description = "The process answers", body = Health)),
    security(()),
)]
pub(super) async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: Redis and MySQL answer, and no MySQL problem that needs a
/// person blocks the worker.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 401, description = "`api.token` is set and the request lacks it", body = ErrorBody),
        (status = 503, description = "Not ready; `error` says why", body = Readiness),
    ),
)]
pub(super) async fn ready(state: web::Data<ApiState>) -> HttpResponse {
    let redis = within(READY_TIMEOUT, async {
        state.redis().ping().await.map_err(|e| e.to_string())
    });
    let mysql = within(READY_TIMEOUT, async {
        store::ping(state.pool()).await.map_err(|e| e.to_string())
    });
    let (redis, mut mysql) = futures::join!(redis, mysql);
    if let Some(problem) = state.worker_metrics().and_then(|m| m.blocker.problem()) {
        // MySQL answers, but the worker cannot write to it until a person acts.
        mysql = Err(problem);
    }
    let report = |result: &Result<(), String>| match result {
        Ok(()) => "ok".to_string(),
        Err(error) => redact_text(error),
    };
    let failed: Vec<String> = [("redis", &redis), ("mysql", &mysql)]
        .into_iter()
        .filter_map(|(name, result)| {
            result
                .as_ref()
                .err()
                .map(|e| format!("{name}: {}", redact_text(e)))
        })
        .collect();
    let mut body = json!({ "redis": report(&redis), "mysql": report(&mysql) });
    if failed.is_empty() {
        return HttpResponse::Ok().json(body);
    }
    body["error"] = json!(format!("not ready: {}", failed.join("; ")));
    HttpResponse::ServiceUnavailable().json(body)
}

async fn within(
    limit: Duration,
    check: impl std::future::Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(limit, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", limit.as_millis())))
}

/// Prometheus metrics in the text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "`api.token` is set and the request lacks it", body = ErrorBody),
        (status = 500, description = "The metrics could not be encoded", body = ErrorBody),
    ),
)]
pub(super) async fn metrics(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let refresh = async {
        for queue in &state.settings().queues.names {
            match state.redis().depths(queue).await {
                Ok(depths) => state.metrics().set_depths(queue, &depths),
                Err(error) => {
                    state.metrics().clear_depths(queue);
                    log::debug!(target: "conveyor::api", "queue depth of {queue} unknown: {error}");
                }
            }
        }
    };
    if tokio::time::timeout(READY_TIMEOUT, refresh).await.is_err() {
        for queue in &state.settings().queues.names {
            state.metrics().clear_depths(queue);
        }
    }
    let mut families = state.metrics().gather();
    if let Some(worker) = state.worker_metrics() {
        families.extend(worker.gather());
    }
    let encoder = TextEncoder::new();
    let mut text = Vec::new();
    encoder
        .encode(&families, &mut text)
        .map_err(|e| ApiError::Metrics(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type(encoder.format_type())
        .body(text))
}
