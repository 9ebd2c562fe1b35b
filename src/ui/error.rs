//! The dashboard's errors, each shown as a page that says what went wrong
//! (never a bare 500 or a broken layout).
//!
//! This module owns the mapping from failures to status codes and pages.
//! It must never show a password: Redis and MySQL messages are redacted.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use super::view::Chrome;
use crate::api::ApiError;
use crate::control::ControlError;
use crate::enqueue::EnqueueError;
use crate::limiters::control::ControlError as LimiterControlError;
use crate::redact::redact_text;
use crate::redis_queue::QueueError;
use crate::requeue::RequeueError;
use crate::store::StoreError;

/// Why a dashboard request failed.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// A parameter in the URL or a form is not acceptable (400).
    #[error("{0}")]
    BadRequest(String),
    /// Nothing by that name (404).
    #[error("{0}")]
    NotFound(String),
    /// A state-changing request without a valid CSRF token, or on a
    /// read-only dashboard (403); nothing was changed.
    #[error("{0}")]
    Forbidden(String),
    /// The action no longer applies (409): e.g. the job has finished.
    #[error("{0}")]
    Conflict(String),
    /// The request needs a login first: redirect to the login form.
    #[error("log in first")]
    Login {
        /// The page to return to after the login.
        next: String,
        /// Whether a session expired (the form says so).
        expired: bool,
    },
    /// Redis or MySQL did not answer (503).
    #[error("{0}")]
    Unavailable(String),
}

impl From<QueueError> for UiError {
    fn from(error: QueueError) -> UiError {
        UiError::Unavailable(format!("redis unavailable: {error}"))
    }
}

impl From<StoreError> for UiError {
    fn from(error: StoreError) -> UiError {
        UiError::Unavailable(format!("mysql unavailable: {error}"))
    }
}

impl From<RequeueError> for UiError {
    fn from(error: RequeueError) -> UiError {
        match error {
            RequeueError::Store(e) => e.into(),
            RequeueError::Queue(e) => e.into(),
        }
    }
}

impl From<EnqueueError> for UiError {
    fn from(error: EnqueueError) -> UiError {
        match error {
            EnqueueError::Store(e) => e.into(),
            EnqueueError::Queue(e) => e.into(),
        }
    }
}

impl From<ControlError> for UiError {
    fn from(error: ControlError) -> UiError {
        match error {
            ControlError::InvalidQueue(_) | ControlError::InvalidId(_) => {
                UiError::BadRequest(error.to_string())
            }
            ControlError::UnknownQueue(_) => UiError::NotFound(error.to_string()),
            ControlError::Redis(e) => e.into(),
            ControlError::Mysql(e) => e.into(),
        }
    }
}

impl From<LimiterControlError> for UiError {
    fn from(error: LimiterControlError) -> UiError {
        match error {
            LimiterControlError::Invalid { .. } => UiError::BadRequest(error.to_string()),
            LimiterControlError::Queue(e) => e.into(),
        }
    }
}

impl From<ApiError> for UiError {
    fn from(error: ApiError) -> UiError {
        match error.status_code() {
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => {
                UiError::BadRequest(error.to_string())
            }
            StatusCode::NOT_FOUND => UiError::NotFound(error.to_string()),
            _ => UiError::Unavailable(error.to_string()),
        }
    }
}

#[derive(Template)]
#[template(path = "ui/error.html")]
struct ErrorPage<'a> {
    chrome: Chrome,
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl ResponseError for UiError {
    fn status_code(&self) -> StatusCode {
        match self {
            UiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            UiError::NotFound(_) => StatusCode::NOT_FOUND,
            UiError::Forbidden(_) => StatusCode::FORBIDDEN,
            UiError::Conflict(_) => StatusCode::CONFLICT,
            UiError::Login { .. } => StatusCode::SEE_OTHER,
            UiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let UiError::Login { next, expired } = self {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("next", next)
                .append_pair("expired", if *expired { "1" } else { "0" })
                .finish();
            return HttpResponse::SeeOther()
                .insert_header((header::LOCATION, format!("/ui/login?{query}")))
                .finish();
        }
        let status = self.status_code();
        let message = redact_text(&self.to_string());
        let page = ErrorPage {
            chrome: Chrome::bare("Error"),
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error"),
            message: &message,
        };
        super::view::html(status, &page)
    }
}
