//! `GET /limiters` and `PUT /limiters/{name}`.
//!
//! This module owns the HTTP shape of the limiter controls: the body of a
//! `PUT` read field by field so an error names its field. What they do lives
//! in [`crate::limiters::control`], shared with the CLI and the workers. It
//! must never store a definition that does not compile.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{Map, Value};

use super::{read_body, ApiError, ApiState};
use crate::intake::Rejected;
use crate::limiters::control::{self, ControlError};
use crate::limiters::LimiterConfig;

pub(super) async fn list(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let settings = state.settings();
    let configured = settings
        .limiters()
        .map_err(|e| rejected(None, e.to_string()))?;
    let views = control::list(&configured, state.redis(), &settings.queues.names).await?;
    Ok(HttpResponse::Ok().json(views))
}

pub(super) async fn put(
    state: web::Data<ApiState>,
    name: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload, state.settings().api.max_body_bytes).await?;
    let definition = definition_from(&body)?;
    let stored = control::put(state.redis(), &name, definition).await?;
    Ok(HttpResponse::Ok().json(stored))
}

/// The body as a limiter definition; a field of the wrong type or unknown
/// is named.
fn definition_from(body: &[u8]) -> Result<LimiterConfig, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| rejected(None, format!("body is not JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(rejected(
            None,
            "body must be a JSON object (a limiter)".to_string(),
        ));
    };
    for (field, value) in &map {
        let single = Value::Object(Map::from_iter([(field.clone(), value.clone())]));
        if let Err(error) = serde_json::from_value::<LimiterConfig>(single) {
            return Err(rejected(Some(field), error.to_string()));
        }
    }
    serde_json::from_value(Value::Object(map)).map_err(|e| rejected(None, e.to_string()))
}

fn rejected(field: Option<&str>, reason: String) -> ApiError {
    ApiError::Invalid(Rejected {
        field: field.map(str::to_string),
        reason,
    })
}

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> ApiError {
        match error {
            ControlError::Invalid { field, message } => {
                let reason = message
                    .strip_prefix(&format!("{field}: "))
                    .unwrap_or(&message)
                    .to_string();
                rejected(Some(field), reason)
            }
            ControlError::Queue(e) => ApiError::Redis(e),
        }
    }
}
