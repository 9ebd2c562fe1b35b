//! The documented shapes of the API's request and response bodies that the
//! handlers build as JSON (the views that are Rust types of their own, such
//! as schedules and limiters, carry their schema on the type).
//!
//! This module owns those descriptions. It must never be the only place a
//! rule lives: the types here describe what [`crate::intake`] and the
//! handlers enforce, and the API schema tests (a property-based fuzz against
//! a real worker) check every response against them.

#![allow(dead_code)] // Schemas: the handlers build these shapes as JSON.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder};
use utoipa::openapi::schema::{SchemaFormat, Type};
use utoipa::{IntoParams, IntoResponses, ToSchema};

/// A job to run: the envelope of a queued message, plus its queue. An
/// optional field given as `null` is the same as one left out.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct JobSubmission {
    /// The job's id; a new time-ordered one when absent.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    id: Option<String>,
    /// The handler's name.
    #[schema(min_length = 1, max_length = 64)]
    kind: String,
    /// Any JSON value, given to the handler.
    #[schema(value_type = Option<Value>)]
    payload: Option<Value>,
    /// Attempts before the job is dead (default `retry.max_attempts`).
    #[schema(minimum = 1, maximum = 1000)]
    max_attempts: Option<u32>,
    /// Deadline of one attempt in ms (default `jobs.default_timeout_ms`), at most a year.
    #[schema(minimum = 1, maximum = 31_536_000_000_u64)]
    timeout_ms: Option<u64>,
    /// Not started before this time: RFC 3339 text or unix milliseconds.
    #[schema(schema_with = run_at_schema)]
    run_at: Option<Value>,
    /// When the job was produced, unix milliseconds (default now).
    enqueued_at: Option<i64>,
    /// One of the configured `queues.names` (default `default`).
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    queue: Option<String>,
    /// The key per-key limiters count the job under.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    key: Option<String>,
    /// No new job is created while another job of the queue holds this key.
    #[schema(min_length = 1, max_length = 128)]
    unique_key: Option<String>,
    /// Also hold the key this long after the first job was enqueued (ms);
    /// needs `unique_key`; at most a year.
    #[schema(minimum = 1, maximum = 31_536_000_000_u64)]
    unique_for_ms: Option<u64>,
}

fn run_at_schema() -> utoipa::openapi::Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some("An RFC 3339 time or unix milliseconds"))
        .build()
        .into()
}

/// Where an accepted job went; with `duplicate`, the job that holds the
/// same `unique_key` (no new job was created).
#[derive(Serialize, ToSchema)]
pub(super) struct JobReceipt {
    id: String,
    queue: String,
    #[schema(nullable = false)]
    duplicate: Option<bool>,
}

/// Where a job is in its life.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum JobState {
    /// Waiting to start.
    Queued,
    /// Held by a worker.
    Running,
    /// An attempt failed; waiting for its backoff.
    Retrying,
    /// Cancelled while a worker runs it.
    Cancelling,
    /// Cancelled: it never starts (again).
    Cancelled,
    /// Final: it succeeded.
    Succeeded,
    /// Final: out of attempts.
    Dead,
    /// Final: another job held its `unique_key`.
    Duplicate,
}

/// A job's status: from Redis while it waits or runs, from its row once
/// finished.
#[derive(Serialize, ToSchema)]
pub(super) struct JobStatus {
    id: String,
    queue: String,
    status: JobState,
    /// Attempts made so far.
    #[schema(minimum = 0)]
    attempts: u32,
    /// The handler's output (succeeded jobs).
    #[schema(value_type = Option<Value>)]
    output: Option<Value>,
    /// The last attempt's error.
    error: Option<String>,
    /// RFC 3339 UTC; null while the job is in Redis.
    #[schema(format = DateTime)]
    enqueued_at: Option<String>,
    /// RFC 3339 UTC; null while the job is in Redis.
    #[schema(format = DateTime)]
    started_at: Option<String>,
    /// RFC 3339 UTC; null while the job is in Redis.
    #[schema(format = DateTime)]
    finished_at: Option<String>,
}

/// What a cancel did.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum CancelState {
    /// It never starts (again).
    Cancelled,
    /// Its worker is told to stop it.
    Cancelling,
}

/// The answer to a cancel.
#[derive(Serialize, ToSchema)]
pub(super) struct CancelReceipt {
    id: String,
    queue: String,
    status: CancelState,
}

/// One queue's depths.
#[derive(Serialize, ToSchema)]
pub(super) struct QueueDepth {
    /// Waiting to start (new, due again, cancelled and waiting for their row).
    #[schema(minimum = 0)]
    pending: u64,
    /// Held by workers.
    #[schema(minimum = 0)]
    running: u64,
    /// Retries in backoff and `run_at` jobs.
    #[schema(minimum = 0)]
    scheduled: u64,
    /// Dead rows of the queue in `job_results`.
    #[schema(minimum = 0)]
    dead: u64,
    /// Whether the queue is paused.
    paused: bool,
}

/// Depths by queue name.
#[derive(Serialize, ToSchema)]
pub(super) struct QueueDepths(BTreeMap<String, QueueDepth>);

/// `{"status": "ok"}`.
#[derive(Serialize, ToSchema)]
pub(super) struct Health {
    #[schema(example = "ok")]
    status: String,
}

/// Readiness: `ok` or the problem, for each of Redis and MySQL.
#[derive(Serialize, ToSchema)]
pub(super) struct Readiness {
    redis: String,
    mysql: String,
    /// What is wrong (503 only).
    #[schema(nullable = false)]
    error: Option<String>,
}

/// Every error response.
#[derive(Serialize, ToSchema)]
pub(super) struct ErrorBody {
    /// What went wrong, for people.
    error: String,
    /// The offending field (`kind`, `[3].run_at`, `id`), or null.
    field: Option<String>,
}

/// The job a `/jobs/{id}` request is about.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct JobPath {
    /// The job id.
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    id: String,
}

/// `?queue=`, to narrow a job lookup.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct QueueFilter {
    /// Look in this queue only (else in every configured queue).
    #[param(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    queue: Option<String>,
}

/// Answers any route but `/health`, `/ready`, `/metrics` and
/// `/openapi.json` may give besides its own.
#[derive(IntoResponses)]
pub(super) enum Refused {
    /// `api.token` is set and the request lacks it.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Redis or MySQL (whichever the route needs) is unreachable.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// Answers a route that reads a body may give besides its own.
#[derive(IntoResponses)]
pub(super) enum BodyRefused {
    /// The request, its body included, took longer than `api.request_timeout_ms`.
    #[response(status = 408)]
    TooSlow(ErrorBody),
    /// The body is over `api.max_body_bytes`.
    #[response(status = 413)]
    TooLarge(ErrorBody),
}

/// A cancel of a job that has finished already.
#[derive(Serialize, ToSchema)]
pub(super) struct FinishedError {
    error: String,
    field: Option<String>,
    id: String,
    queue: String,
    /// How it finished.
    status: String,
}

/// A limiter in force, as `GET /limiters` lists it: its definition and its use.
#[derive(Serialize, ToSchema)]
pub(super) struct LimiterInForce {
    name: String,
    #[schema(nullable = false)]
    queue: Option<String>,
    #[schema(nullable = false)]
    kind: Option<String>,
    #[schema(nullable = false, minimum = 1)]
    concurrency: Option<i64>,
    #[schema(nullable = false)]
    rate: Option<String>,
    #[schema(nullable = false, minimum = 1)]
    per_key_concurrency: Option<i64>,
    #[schema(nullable = false)]
    per_key_rate: Option<String>,
    /// Jobs holding one of its slots now (null for a limiter with rates only).
    #[schema(minimum = 0)]
    running: Option<u64>,
    /// Jobs it holds back, as the latest claims saw them.
    #[schema(minimum = 0)]
    waiting: u64,
    /// How long it stays held back because a job reported a rate limit
    /// (ms); null when it is not held.
    #[schema(minimum = 0)]
    held_for_ms: Option<u64>,
}

/// The limits of a limiter definition: at least one must be set.
pub(super) const LIMITS: [(&str, Type); 4] = [
    ("concurrency", Type::Integer),
    ("rate", Type::String),
    ("per_key_concurrency", Type::Integer),
    ("per_key_rate", Type::String),
];

/// `LimiterConfig` with the rule that it sets at least one limit.
pub(super) fn with_a_limit(definition: utoipa::openapi::Schema) -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder};
    let mut any = AnyOfBuilder::new();
    for (name, ty) in LIMITS {
        any = any.item(
            ObjectBuilder::new()
                .property(name, ObjectBuilder::new().schema_type(ty))
                .required(name),
        );
    }
    AllOfBuilder::new()
        .item(definition)
        .item(utoipa::openapi::Schema::AnyOf(any.build()))
        .description(Some(
            "A limiter: at least one of concurrency, rate, per_key_concurrency, per_key_rate",
        ))
        .build()
        .into()
}
