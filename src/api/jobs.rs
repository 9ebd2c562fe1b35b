//! `POST /jobs`, `POST /jobs/batch` and `GET /jobs/{id}`.
//!
//! This module owns intake over HTTP and the status lookup order: Redis
//! first, then MySQL, where a final row wins. A job is acknowledged in Redis
//! only after its row commits, so a job that leaves Redis between the two
//! reads is found in MySQL: the lookup never answers a false 404. It must
//! never push a message that [`crate::intake`] did not produce.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

#[allow(unused_imports)] // Named in the OpenAPI annotations only.
use super::schemas::{
    BodyRefused, ErrorBody, JobPath, JobReceipt, JobStatus, JobSubmission, QueueFilter, Refused,
};
use super::{read_body, ApiError, ApiState};
use crate::enqueue::{enqueue, EnqueueError};
use crate::intake::{self, Rejected, Submission};
use crate::job::{is_valid_job_id, is_valid_queue_name};
use crate::redis_queue::JobState;
use crate::store::{self, JobRecord};

/// Accept one job.
#[utoipa::path(
    post,
    path = "/jobs",
    tag = "jobs",
    request_body(content = JobSubmission, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted into its queue", body = JobReceipt),
        (status = 200, description = "Not created: another job holds its `unique_key`; `id` is that job's", body = JobReceipt),
        (status = 400, description = "A field breaks a rule (named in `field`), or the body is not a JSON object", body = ErrorBody),
        Refused,
        BodyRefused,
    ),
)]
pub(super) async fn submit(
    state: web::Data<ApiState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload, state.settings().api.max_body_bytes).await?;
    let job = intake::parse_one(&body, &state.rules())?;
    let receipt = accept_one(&state, job).await?;
    Ok(match receipt.get("duplicate") {
        Some(_) => HttpResponse::Ok().json(receipt),
        None => HttpResponse::Accepted().json(receipt),
    })
}

/// Enqueues one job; a job whose `unique_key` another job holds is not
/// created, and the receipt names the holder: `{"id", "queue", "duplicate": true}`.
async fn accept_one(state: &ApiState, job: Submission) -> Result<Value, ApiError> {
    Ok(match enqueue_counted(state, &job).await? {
        Some(holder) => json!({ "id": holder, "queue": job.queue, "duplicate": true }),
        None => json!({ "id": job.id, "queue": job.queue }),
    })
}

/// Enqueues one job as `POST /jobs` does (the dashboard's "enqueue a copy"
/// too), honouring its `unique_key`, and counts it: `Some(holder)` when it
/// was not created because job `holder` holds its key.
pub(crate) async fn enqueue_counted(
    state: &ApiState,
    job: &Submission,
) -> Result<Option<String>, EnqueueError> {
    let holder = enqueue(state.redis(), state.pool(), job).await?;
    match &holder {
        Some(_) => state.metrics().duplicate_refused(&job.queue),
        None => state.metrics().accepted(&job.queue, 1),
    }
    Ok(holder)
}

/// Accept jobs in order, all or nothing: the first bad element refuses the
/// lot. Should Redis fail between the queues of a batch, the 503 says which
/// queues took their part.
#[utoipa::path(
    post,
    path = "/jobs/batch",
    tag = "jobs",
    request_body(content = Vec<JobSubmission>, content_type = "application/json"),
    responses(
        (status = 202, description = "All accepted (or refused by their `unique_key`), receipts in order", body = Vec<JobReceipt>),
        (status = 400, description = "An element breaks a rule (`field` is `[i].name`), or the body is not a JSON array", body = ErrorBody),
        Refused,
        BodyRefused,
    ),
)]
pub(super) async fn submit_batch(
    state: web::Data<ApiState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload, state.settings().api.max_body_bytes).await?;
    let jobs = intake::parse_batch(&body, &state.rules())?;
    if jobs.iter().any(|job| job.unique_key.is_some()) {
        return Ok(HttpResponse::Accepted().json(accept_in_turn(&state, jobs).await?));
    }
    let receipts: Vec<Value> = jobs
        .iter()
        .map(|job| json!({ "id": job.id, "queue": job.queue }))
        .collect();
    accept_by_queue(&state, jobs).await?;
    Ok(HttpResponse::Accepted().json(receipts))
}

/// A batch holding unique jobs: one job after the other, in order, each
/// with its own receipt.
async fn accept_in_turn(state: &ApiState, jobs: Vec<Submission>) -> Result<Vec<Value>, ApiError> {
    let mut receipts = Vec::with_capacity(jobs.len());
    let mut accepted: Vec<String> = Vec::new();
    for job in jobs {
        let queue = job.queue.clone();
        match accept_one(state, job).await {
            Ok(receipt) => receipts.push(receipt),
            Err(ApiError::Redis(error)) if !accepted.is_empty() => {
                return Err(ApiError::Partial { error, accepted })
            }
            Err(error) => return Err(error),
        }
        if !accepted.contains(&queue) {
            accepted.push(queue);
        }
    }
    Ok(receipts)
}

type IdAndMessage = (String, Vec<u8>);

/// Accepts a batch queue by queue, keeping each queue's order. Each queue's
/// part is atomic; a Redis failure after some queues took theirs says which.
async fn accept_by_queue(state: &ApiState, jobs: Vec<Submission>) -> Result<(), ApiError> {
    let mut groups: Vec<(String, Vec<IdAndMessage>)> = Vec::new();
    for job in jobs {
        match groups.iter_mut().find(|(queue, _)| *queue == job.queue) {
            Some((_, group)) => group.push((job.id, job.message)),
            None => groups.push((job.queue, vec![(job.id, job.message)])),
        }
    }
    let mut accepted = Vec::new();
    for (queue, group) in groups {
        if let Err(error) = state.redis().accept(&queue, &group).await {
            return Err(if accepted.is_empty() {
                ApiError::Redis(error)
            } else {
                ApiError::Partial { error, accepted }
            });
        }
        state.metrics().accepted(&queue, group.len());
        accepted.push(queue);
    }
    Ok(())
}

/// A job's status.
#[utoipa::path(
    get,
    path = "/jobs/{id}",
    tag = "jobs",
    params(JobPath, QueueFilter),
    responses(
        (status = 200, description = "Where the job is", body = JobStatus),
        (status = 400, description = "The id or queue is not a valid name (named in `field`)", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        Refused,
    ),
)]
pub(super) async fn status(
    state: web::Data<ApiState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if !is_valid_job_id(&id) {
        return Err(invalid("id", "must be 1-64 chars of [A-Za-z0-9_.:-]"));
    }
    let narrowed = queue_param(req.query_string())?;
    match find_job(&state, &id, narrowed.as_deref()).await? {
        Some(Found::Final(row)) => Ok(HttpResponse::Ok().json(final_view(row))),
        Some(Found::InRedis { queue, state }) => {
            Ok(HttpResponse::Ok().json(redis_view(&id, &queue, state)))
        }
        None => Err(ApiError::NotFound(
            id,
            narrowed.map_or_else(
                || "any configured queue".to_string(),
                |q| format!("queue {q}"),
            ),
        )),
    }
}

/// Where a job stands: its final row, or its state in Redis.
pub(crate) enum Found {
    Final(JobRecord),
    InRedis { queue: String, state: JobState },
}

/// Looks job `id` up in `narrowed` (else every configured queue): Redis
/// first, then MySQL, where a final row wins.
pub(crate) async fn find_job(
    state: &ApiState,
    id: &str,
    narrowed: Option<&str>,
) -> Result<Option<Found>, ApiError> {
    let queues: Vec<String> = match narrowed {
        Some(queue) => vec![queue.to_string()],
        None => state.settings().queues.names.clone(),
    };
    let mut in_redis = None;
    for queue in queues {
        if let Some(found) = state.redis().job_state(&queue, id).await? {
            in_redis = Some(Found::InRedis {
                queue,
                state: found,
            });
            break;
        }
    }
    if let Some(row) = store::find_result(state.pool(), id, narrowed).await? {
        return Ok(Some(Found::Final(row)));
    }
    Ok(in_redis)
}

/// The optional `?queue=` parameter.
pub(super) fn queue_param(query: &str) -> Result<Option<String>, ApiError> {
    let queue = url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "queue")
        .map(|(_, value)| value.into_owned());
    match queue {
        Some(queue) if !is_valid_queue_name(&queue) => {
            Err(invalid("queue", "must be 1-64 chars of [A-Za-z0-9_.-]"))
        }
        other => Ok(other),
    }
}

fn invalid(field: &str, reason: &str) -> ApiError {
    ApiError::Invalid(Rejected {
        field: Some(field.to_string()),
        reason: reason.to_string(),
    })
}

fn final_view(row: JobRecord) -> Value {
    let output = row
        .output
        .as_deref()
        .map(|text| serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into())));
    json!({
        "id": row.id,
        "queue": row.queue,
        "status": row.status,
        "attempts": row.attempts,
        "output": output,
        "error": row.error,
        "enqueued_at": row.enqueued_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
    })
}

fn redis_view(id: &str, queue: &str, state: JobState) -> Value {
    json!({
        "id": id,
        "queue": queue,
        "status": state.state,
        "attempts": state.attempts,
        "output": null,
        "error": state.last_error,
        "enqueued_at": null,
        "started_at": null,
        "finished_at": null,
    })
}
