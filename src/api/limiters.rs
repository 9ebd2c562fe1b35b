//! `GET /limiters` and `PUT /limiters/{name}`.
//!
//! This module owns the HTTP shape of the limiter controls: the body of a
//! `PUT` read field by field so an error names its field. What they do lives
//! in [`crate::limiters::control`], shared with the CLI and the workers. It
//! must never store a definition that does not compile.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{Map, Value};

#[allow(unused_imports)] // Named in the OpenAPI annotations only.
use super::schemas::{BodyRefused, ErrorBody, LimiterInForce, Refused};
use super::{read_body, ApiError, ApiState};
use crate::intake::Rejected;
use crate::limiters::control::{self, ControlError};
use crate::limiters::LimiterConfig;

/// The limiters in force (configured, with definitions set at run time laid
/// over them by name), each with its running and waiting jobs.
#[utoipa::path(
    get,
    path = "/limiters",
    tag = "limiters",
    responses(
        (status = 200, description = "The limiters", body = Vec<LimiterInForce>),
        (status = 400, description = "The configured limiters do not compile", body = ErrorBody),
        Refused,
    ),
)]
pub(super) async fn list(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let settings = state.settings();
    let configured = settings
        .limiters()
        .map_err(|e| rejected(None, e.to_string()))?;
    let views = control::list(&configured, state.redis(), &settings.queues.names).await?;
    Ok(HttpResponse::Ok().json(views))
}

/// Replace or add a limiter for every worker, from their next claim on.
#[utoipa::path(
    put,
    path = "/limiters/{name}",
    tag = "limiters",
    params(("name" = String, Path, description = "The limiter's name", pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    request_body(content = LimiterConfig, content_type = "application/json", description = "`name` may be left out; when given it must be the path's"),
    responses(
        (status = 200, description = "Stored; the definition as stored", body = LimiterConfig),
        (status = 400, description = "A field cannot work (named in `field`), or the body is not a JSON object", body = ErrorBody),
        Refused,
        BodyRefused,
    ),
)]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn field_and_text(body: &str) -> (Option<String>, String) {
        match definition_from(body.as_bytes()) {
            Err(ApiError::Invalid(rejected)) => (rejected.field.clone(), rejected.to_string()),
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        let (field, text) = field_and_text(r#"{"concurrency":"three"}"#);
        assert_eq!(field.as_deref(), Some("concurrency"), "{text}");
        let (field, text) = field_and_text(r#"{"rates":"1/1s"}"#);
        assert_eq!(field.as_deref(), Some("rates"), "{text}");
        let (field, _) = field_and_text("[1]");
        assert_eq!(field, None);
    }

    /// Found by the API schema fuzz: a key spelled "" was named so that the
    /// error read ": unknown field ``".
    #[test]
    fn an_empty_key_is_named_as_such() {
        let (field, text) = field_and_text(r#"{"":1,"concurrency":2}"#);
        assert_eq!(field.as_deref(), Some(""));
        assert!(text.starts_with(r#"field "": unknown field"#), "{text}");
    }
}
