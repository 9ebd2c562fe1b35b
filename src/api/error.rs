//! The API's errors and their JSON bodies: `{"error": "...", "field": ...}`.
//!
//! This module owns the mapping from failures to HTTP status codes. It must
//! never let a password reach a response body: Redis and MySQL messages are
//! redacted.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::control::ControlError;
use crate::intake::Rejected;
use crate::redact::redact_text;
use crate::redis_queue::QueueError;
use crate::store::StoreError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body or a parameter breaks a rule (400); names the field.
    #[error("{0}")]
    Invalid(#[from] Rejected),
    /// The body is over `api.max_body_bytes` (413).
    #[error("request body is over api.max_body_bytes = {0} bytes")]
    TooLarge(usize),
    /// The request was not done within `api.request_timeout_ms` (408).
    #[error("request not completed within api.request_timeout_ms = {0} ms")]
    Timeout(u64),
    /// The body could not be read (400).
    #[error("reading the request body failed: {0}")]
    Body(String),
    /// No such job (404).
    #[error("no job {0:?} in {1}")]
    NotFound(String, String),
    /// No such queue (404).
    #[error("no queue {0:?}: it is not in queues.names and Redis holds nothing of it")]
    UnknownQueue(String),
    /// The job has finished already (409); says how.
    #[error("job {id:?} has finished already: {status}")]
    Finished {
        /// The job id.
        id: String,
        /// Its queue.
        queue: String,
        /// Its row's status.
        status: String,
    },
    /// No such schedule (404).
    #[error("no schedule {0:?} in the configuration")]
    NoSchedule(String),
    /// No such route (404).
    #[error("no route {0}")]
    NoRoute(String),
    /// The path exists, not with this method (405); the methods it has.
    #[error("no route {0}: this path takes {1}")]
    MethodNotAllowed(String, String),
    /// `api.token` is set and the request did not carry it (401).
    #[error("missing or wrong bearer token (Authorization: Bearer <api.token>)")]
    Unauthorized,
    /// Redis failed (503); a batch may have been accepted into some queues.
    #[error("redis unavailable: {0}")]
    Redis(#[from] QueueError),
    /// MySQL failed (503).
    #[error("mysql unavailable: {0}")]
    Mysql(#[from] StoreError),
    /// A batch that Redis took only in part (503).
    #[error("redis unavailable: {error}; accepted into queues {accepted:?} only")]
    Partial {
        /// What failed.
        error: QueueError,
        /// Queues whose jobs were taken.
        accepted: Vec<String>,
    },
    /// The metrics could not be encoded (500).
    #[error("metrics encoding failed: {0}")]
    Metrics(String),
}

impl From<crate::enqueue::EnqueueError> for ApiError {
    fn from(error: crate::enqueue::EnqueueError) -> ApiError {
        match error {
            crate::enqueue::EnqueueError::Queue(e) => ApiError::Redis(e),
            crate::enqueue::EnqueueError::Store(e) => ApiError::Mysql(e),
        }
    }
}

impl From<crate::schedules::control::ControlError> for ApiError {
    fn from(error: crate::schedules::control::ControlError) -> ApiError {
        use crate::schedules::control::ControlError;
        match error {
            ControlError::Unknown(name) => ApiError::NoSchedule(name),
            ControlError::Queue(e) => ApiError::Redis(e),
            ControlError::Store(e) => ApiError::Mysql(e),
        }
    }
}

impl ApiError {
    fn field(&self) -> Option<&str> {
        match self {
            ApiError::Invalid(rejected) => rejected.field.as_deref(),
            _ => None,
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> ApiError {
        let invalid = |field: &str, reason: String| {
            ApiError::Invalid(Rejected {
                field: Some(field.to_string()),
                reason,
            })
        };
        match error {
            ControlError::InvalidQueue(_) => {
                invalid("queue", "must be 1-64 chars of [A-Za-z0-9_.-]".to_string())
            }
            ControlError::InvalidId(_) => {
                invalid("id", "must be 1-64 chars of [A-Za-z0-9_.:-]".to_string())
            }
            ControlError::UnknownQueue(queue) => ApiError::UnknownQueue(queue),
            ControlError::Redis(error) => ApiError::Redis(error),
            ControlError::Mysql(error) => ApiError::Mysql(error),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) | ApiError::Body(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotFound(..)
            | ApiError::NoSchedule(_)
            | ApiError::NoRoute(_)
            | ApiError::UnknownQueue(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(..) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Finished { .. } => StatusCode::CONFLICT,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Redis(_) | ApiError::Mysql(_) | ApiError::Partial { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Metrics(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized => {
                response.insert_header(("WWW-Authenticate", "Bearer"));
            }
            ApiError::MethodNotAllowed(_, allow) => {
                response.insert_header((actix_web::http::header::ALLOW, allow.as_str()));
            }
            _ => {}
        }
        let mut body = json!({
            "error": redact_text(&self.to_string()),
            "field": self.field(),
        });
        match self {
            ApiError::Finished { id, queue, status } => {
                body["id"] = json!(id);
                body["queue"] = json!(queue);
                body["status"] = json!(status);
            }
            ApiError::UnknownQueue(queue) => body["queue"] = json!(queue),
            _ => {}
        }
        response.json(body)
    }
}
