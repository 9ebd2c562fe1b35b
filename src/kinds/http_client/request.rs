//! The request a payload describes, validated, and what a successful fetch
//! gives back.
//!
//! This module owns the request fields of the `http` and `gather` payloads
//! (url, method, headers, body) and the errors their validation gives. It
//! must never send a request: only [`super::HttpKinds::fetch`] does, behind
//! the guard.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::kinds::JobError;

/// The methods a payload may use.
const METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// One request as a payload describes it, validated.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// The URL, parsed (http or https).
    pub url: Url,
    /// The method (GET when the payload names none).
    pub method: Method,
    /// The headers, validated.
    pub headers: HeaderMap,
    pub(crate) body: Option<RequestBody>,
}

#[derive(Debug, Clone)]
pub(crate) enum RequestBody {
    /// Sent as is (`"body": "text"`).
    Text(String),
    /// Any other JSON value, sent as JSON (`Content-Type: application/json`
    /// unless the headers name one).
    Json(Value),
}

impl RequestSpec {
    /// Validates the request fields of a payload; every problem is a
    /// permanent error starting with `invalid <kind> payload`.
    pub fn new(
        kind: &str,
        url: &str,
        method: Option<&str>,
        headers: &BTreeMap<String, String>,
        body: Option<Value>,
    ) -> Result<RequestSpec, JobError> {
        let invalid = |what: String| JobError::permanent(format!("invalid {kind} payload: {what}"));
        let url = Url::parse(url).map_err(|e| invalid(format!("url {url:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "url scheme must be http or https, got {:?}",
                url.scheme()
            )));
        }
        let method = match method.map(str::to_ascii_uppercase).as_deref() {
            None | Some("GET") => Method::GET,
            Some("HEAD") => Method::HEAD,
            Some("POST") => Method::POST,
            Some("PUT") => Method::PUT,
            Some("PATCH") => Method::PATCH,
            Some("DELETE") => Method::DELETE,
            Some("OPTIONS") => Method::OPTIONS,
            Some(other) => {
                return Err(invalid(format!(
                    "method must be one of {METHODS}, got {other:?}"
                )))
            }
        };
        let mut header_map = HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("header name {name:?} is not valid")))?;
            let header_value = HeaderValue::from_str(value)
                .map_err(|_| invalid(format!("value of header {name:?} is not valid")))?;
            header_map.append(header_name, header_value);
        }
        let body = match body {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(RequestBody::Text(text)),
            Some(json) => Some(RequestBody::Json(json)),
        };
        Ok(RequestSpec {
            url,
            method,
            headers: header_map,
            body,
        })
    }
}

/// A response with a 2xx status and its whole (capped) body.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}
