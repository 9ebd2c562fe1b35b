//! Why a request failed, and whether trying again can help: [`HttpError`],
//! its classification into a [`JobError`], and the form of a URL an error
//! may show.
//!
//! This module owns which failures are retryable. It must never put a URL's
//! credentials or query string into a message (messages end up in the
//! results table), and never call a refusal by the guard retryable.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use super::guard::{find_refusal, Refusal};
use crate::config::HttpKindSettings;
use crate::kinds::JobError;

/// Why a request did not produce a 2xx response with a body under the cap.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("{url}: {refusal}")]
    Refused { url: String, refusal: Refusal },
    #[error("{url}: HTTP {status}")]
    Status {
        url: String,
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    #[error("{url}: response body over kinds.http.max_body_bytes ({limit} bytes)")]
    BodyTooLarge { url: String, limit: usize },
    #[error("{url}: request timed out at the job's deadline (timeout_ms), after {waited_ms} ms")]
    Deadline { url: String, waited_ms: u64 },
    #[error("{url}: {detail}")]
    Transport {
        url: String,
        detail: String,
        permanent: bool,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl HttpError {
    /// The response status, when there was a response.
    pub(crate) fn status(&self) -> Option<StatusCode> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying again cannot help.
    pub(crate) fn is_permanent(&self) -> bool {
        match self {
            HttpError::Refused { .. } | HttpError::BodyTooLarge { .. } => true,
            HttpError::Status { status, .. } => !is_retryable_status(*status),
            HttpError::Transport { permanent, .. } => *permanent,
            HttpError::Deadline { .. } | HttpError::Client(_) => false,
        }
    }

    /// The failure as a job error, its message prefixed with `context`:
    /// a 429 is a rate limit (held back for its `Retry-After`, no attempt
    /// counted); 5xx, 408, timeouts and connection errors are retryable (after
    /// `Retry-After` when the response names one); refusals, other statuses
    /// and oversized bodies are not.
    pub(crate) fn to_job_error(&self, context: &str) -> JobError {
        let message = format!("{context}{self}");
        match self {
            _ if self.is_permanent() => JobError::permanent(message),
            HttpError::Status {
                status: StatusCode::TOO_MANY_REQUESTS,
                retry_after,
                ..
            } => JobError {
                message,
                ..JobError::rate_limited(retry_after.unwrap_or(Duration::ZERO))
            },
            HttpError::Status {
                retry_after: Some(delay),
                ..
            } => JobError::retry_after(message, *delay),
            _ => JobError::retryable(message),
        }
    }
}

/// 5xx, 429 and 408 may pass; every other non-2xx status will not. A 408
/// says the server gave up waiting for the request (the sender was slow or
/// paused), not that the request is wrong.
fn is_retryable_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// `scheme://host[:port]/path` of `url`: no credentials, query or fragment,
/// which may hold secrets and must not reach the results table.
pub(crate) fn display_url(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// The delay a refused request asks for: its `Retry-After` (seconds or an
/// HTTP date, measured from `now`), for a 429 without one
/// `kinds.http.retry_after_default_ms`, never more than
/// `kinds.http.retry_after_max_ms`.
pub(super) fn retry_delay(
    status: StatusCode,
    headers: &HeaderMap,
    settings: &HttpKindSettings,
    now: SystemTime,
) -> Option<Duration> {
    let asked = retry_after(headers, now);
    let asked = if status == StatusCode::TOO_MANY_REQUESTS {
        Some(asked.unwrap_or(Duration::from_millis(settings.retry_after_default_ms)))
    } else {
        asked
    };
    asked.map(|delay| delay.min(Duration::from_millis(settings.retry_after_max_ms)))
}

/// `Retry-After` as a delay: whole seconds, or an HTTP date (a date
/// already past is no delay). `None` when absent or unreadable.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds.min(MAX_SECONDS)));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// More seconds than any setting allows (keeps the arithmetic in range).
const MAX_SECONDS: u64 = 100 * 365 * 86_400;

/// Classifies a reqwest error: a refusal by the guard (from the resolver or
/// the redirect policy) and malformed requests are permanent; connection
/// failures, timeouts and broken bodies are retryable.
pub(super) fn transport_error(url: &str, error: reqwest::Error) -> HttpError {
    if let Some(refusal) = find_refusal(&error) {
        return HttpError::Refused {
            url: url.to_string(),
            refusal: refusal.clone(),
        };
    }
    let permanent = error.is_builder() || error.is_redirect();
    HttpError::Transport {
        url: url.to_string(),
        detail: error_chain(&error.without_url()),
        permanent,
    }
}

/// An error and its causes, `outer: inner: innermost`, without repeats.
pub(super) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(error) = current {
        let text = error.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        current = error.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("a URL")
    }
    #[test]
    fn urls_in_errors_lose_credentials_and_queries() {
        assert_eq!(
            display_url(&url(
                "https://user:pw@api.example.com:8443/v1/x?token=s3cret#f"
            )),
            "https://api.example.com:8443/v1/x"
        );
    }

    #[test]
    fn statuses_are_classified() {
        let error = |status: u16, retry_after: Option<Duration>| HttpError::Status {
            url: "http://h/".into(),
            status: StatusCode::from_u16(status).expect("status"),
            retry_after,
        };
        assert!(error(404, None).to_job_error("").is_permanent());
        assert!(error(400, None).to_job_error("").is_permanent());
        assert!(error(304, None).to_job_error("").is_permanent());
        assert!(!error(500, None).to_job_error("").is_permanent());
        assert!(!error(503, None).to_job_error("").is_permanent());
        assert!(!error(408, None).to_job_error("").is_permanent());
        let limited = error(429, Some(Duration::from_secs(2))).to_job_error("x: ");
        assert_eq!(
            limited,
            JobError {
                message: "x: http://h/: HTTP 429 Too Many Requests".into(),
                ..JobError::rate_limited(Duration::from_secs(2))
            }
        );
        assert_eq!(
            error(503, Some(Duration::from_secs(3))).to_job_error(""),
            JobError::retry_after(
                "http://h/: HTTP 503 Service Unavailable",
                Duration::from_secs(3)
            )
        );
    }

    #[test]
    fn retry_after_reads_seconds_or_a_date_with_a_default_and_a_cap() {
        let settings = HttpKindSettings {
            retry_after_default_ms: 1500,
            retry_after_max_ms: 60_000,
            ..HttpKindSettings::default()
        };
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        let delay = |status: u16, value: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert(RETRY_AFTER, HeaderValue::from_static(value));
            }
            let status = StatusCode::from_u16(status).expect("status");
            retry_delay(status, &headers, &settings, now)
        };
        let secs = |n: u64| Some(Duration::from_secs(n));
        assert_eq!(delay(429, Some(" 3 ")), secs(3));
        assert_eq!(delay(429, Some("Wed, 21 Oct 2015 07:28:20 GMT")), secs(20));
        // The obsolete HTTP date forms are dates too.
        assert_eq!(
            delay(429, Some("Wednesday, 21-Oct-15 07:28:05 GMT")),
            secs(5)
        );
        assert_eq!(delay(429, Some("Wed, 21 Oct 2015 07:00:00 GMT")), secs(0));
        assert_eq!(delay(429, None), Some(Duration::from_millis(1500)));
        assert_eq!(delay(429, Some("soon")), Some(Duration::from_millis(1500)));
        assert_eq!(delay(429, Some("18446744073709551615")), secs(60));
        assert_eq!(delay(429, Some("Fri, 21 Oct 2016 07:28:00 GMT")), secs(60));
        assert_eq!(delay(503, None), None);
        assert_eq!(delay(503, Some("2")), secs(2));
    }
}
