//! What the `http` and `gather` kinds share: the request a payload describes,
//! the per-thread HTTP client, the private-address guard, reading a capped
//! body under the job's deadline, and turning failures into
//! [`JobError`](super::JobError)s.
//!
//! This module owns every network decision of those kinds, so they cannot
//! drift apart: which addresses may be reached (`kinds.http.allow_private`,
//! `kinds.http.allow_hosts`), how many redirects are followed, how much of a
//! body is read, and which failures are worth retrying.
//!
//! It must never connect to an address the guard has not checked (host names
//! are checked by [`GuardedResolver`] after DNS resolution, IP literals by
//! [`Guard::check_url`] before the first request and on every redirect hop),
//! never use a proxy (the proxy would resolve names where the guard cannot
//! see), never read more than `kinds.http.max_body_bytes` of a body, never
//! build a client per job, and never put a URL's credentials or query string
//! into an error message (they end up in the results table).
//!
//! # Layout
//!
//! - this file: the per-thread clients, built with the guard, and sending a
//!   request and reading its capped body under the job's deadline;
//! - `request`: the request a payload describes, validated;
//! - `address`: what kind of address an IP is;
//! - `guard`: which addresses may be reached, the resolver and redirect checks;
//! - `error`: failures, and which of them are worth retrying.

mod address;
mod error;
mod guard;
mod request;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::config::HttpKindSettings;
use error::{error_chain, retry_delay, transport_error};
use guard::GuardedResolver;
use request::RequestBody;

pub use address::{classify, AddressClass};
pub(super) use error::{display_url, HttpError};
pub use guard::{Guard, Refusal};
pub(super) use request::Fetched;
pub use request::RequestSpec;

/// The configured HTTP machinery, cheap to clone into handlers. Each
/// processor thread builds its own `reqwest::Client` from it on first use
/// and keeps it, so connections are reused across the jobs of that thread.
#[derive(Clone)]
pub(super) struct HttpKinds {
    inner: Arc<Inner>,
}

struct Inner {
    /// Tells the clients of different configurations apart in a thread's cache.
    id: u64,
    settings: HttpKindSettings,
    guard: Arc<Guard>,
}

/// A thread's clients: one per (configuration, runtime). A client's pooled
/// connections are tasks of the runtime it was first used on, so a processor
/// that is re-created with a new runtime gets a new client.
struct CachedClient {
    config: u64,
    runtime: Option<tokio::runtime::Id>,
    client: reqwest::Client,
}

thread_local! {
    static CLIENTS: RefCell<Vec<CachedClient>> = const { RefCell::new(Vec::new()) };
}

impl HttpKinds {
    pub(super) fn new(settings: &HttpKindSettings) -> HttpKinds {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        HttpKinds {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                settings: settings.clone(),
                guard: Arc::new(Guard::new(settings)),
            }),
        }
    }

    pub(super) fn settings(&self) -> &HttpKindSettings {
        &self.inner.settings
    }

    /// This thread's client for these settings, built on first use.
    fn client(&self) -> Result<reqwest::Client, HttpError> {
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .map(|handle| handle.id());
        CLIENTS.with(|cell| {
            let mut clients = cell.borrow_mut();
            clients.retain(|cached| cached.runtime == runtime);
            if let Some(cached) = clients.iter().find(|c| c.config == self.inner.id) {
                return Ok(cached.client.clone());
            }
            let client = self.build_client()?;
            clients.push(CachedClient {
                config: self.inner.id,
                runtime,
                client: client.clone(),
            });
            Ok(client)
        })
    }

    fn build_client(&self) -> Result<reqwest::Client, HttpError> {
        let settings = &self.inner.settings;
        let guard = self.inner.guard.clone();
        let max_redirects = settings.max_redirects;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            // `previous` holds the first URL too: hop n has n URLs before it.
            if attempt.previous().len() > max_redirects {
                return attempt.error(Refusal::TooManyRedirects(max_redirects));
            }
            match guard.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refused) => {
                    let to = display_url(attempt.url());
                    attempt.error(Refusal::Redirect {
                        to,
                        refusal: Box::new(refused),
                    })
                }
            }
        });
        reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(GuardedResolver {
                guard: self.inner.guard.clone(),
            })
            .redirect(redirects)
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .user_agent(concat!("conveyor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Client(error_chain(&e)))
    }

    /// Sends `spec` and reads its body, all before `deadline` (the job's).
    /// Only a 2xx response with a body within the cap is `Ok`.
    pub(super) async fn fetch(
        &self,
        spec: &RequestSpec,
        deadline: Instant,
    ) -> Result<Fetched, HttpError> {
        let url = display_url(&spec.url);
        if let Err(refusal) = self.inner.guard.check_url(&spec.url) {
            return Err(HttpError::Refused { url, refusal });
        }
        let client = self.client()?;
        let begun = Instant::now();
        let exchange = self.exchange(&client, spec, &url);
        match tokio::time::timeout_at(deadline.into(), exchange).await {
            Ok(Ok((status, body))) => Ok(Fetched {
                status,
                body,
                elapsed: begun.elapsed(),
            }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(HttpError::Deadline {
                url,
                waited_ms: begun.elapsed().as_millis() as u64,
            }),
        }
    }

    async fn exchange(
        &self,
        client: &reqwest::Client,
        spec: &RequestSpec,
        url: &str,
    ) -> Result<(StatusCode, Vec<u8>), HttpError> {
        let mut request = client
            .request(spec.method.clone(), spec.url.clone())
            .headers(spec.headers.clone());
        match &spec.body {
            None => {}
            Some(RequestBody::Text(text)) => request = request.body(text.clone()),
            // Sets application/json unless the headers already name a type.
            Some(RequestBody::Json(json)) => request = request.json(json),
        }
        let mut response = request.send().await.map_err(|e| transport_error(url, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(HttpError::Status {
                url: url.to_string(),
                status,
                retry_after: retry_delay(
                    status,
                    response.headers(),
                    &self.inner.settings,
                    std::time::SystemTime::now(),
                ),
            });
        }
        let limit = self.inner.settings.max_body_bytes;
        let too_large = || HttpError::BodyTooLarge {
            url: url.to_string(),
            limit,
        };
        let announced = response.content_length();
        if announced.is_some_and(|length| length > limit as u64) {
            return Err(too_large());
        }
        let capacity = announced.map_or(0, |length| length as usize).min(1 << 20);
        let mut body = Vec::with_capacity(capacity);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(url, e))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }
}
