//! What the `http` and `gather` kinds share: the request a payload describes,
//! the per-thread HTTP client, the private-address guard, reading a capped
//! body under the job's deadline, and turning failures into [`JobError`]s.
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

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use super::JobError;
use crate::config::HttpKindSettings;

// ---------------------------------------------------------------- addresses

/// What kind of address an IP is, as far as the guard cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Globally routable: always allowed.
    Public,
    Loopback,
    /// RFC 1918, IPv6 unique local (fc00::/7) and site-local (fec0::/10).
    Private,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// 100.64.0.0/10, carrier-grade NAT.
    SharedCgnat,
    /// 0.0.0.0/8, `::`.
    Unspecified,
    /// 255.255.255.255.
    Broadcast,
    Multicast,
    /// Special-purpose ranges that are not globally routable
    /// (192.0.0.0/24, 198.18.0.0/15, 240.0.0.0/4, 100::/64).
    Reserved,
    /// An instance metadata service (169.254.169.254, fd00:ec2::254,
    /// 100.100.100.200): credentials live there.
    CloudMetadata,
}

impl AddressClass {
    pub fn is_public(self) -> bool {
        self == AddressClass::Public
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressClass::Public => "a public address",
            AddressClass::Loopback => "a loopback address",
            AddressClass::Private => "a private address",
            AddressClass::LinkLocal => "a link-local address",
            AddressClass::SharedCgnat => "a carrier-grade NAT address",
            AddressClass::Unspecified => "an unspecified address",
            AddressClass::Broadcast => "the broadcast address",
            AddressClass::Multicast => "a multicast address",
            AddressClass::Reserved => "a reserved address",
            AddressClass::CloudMetadata => "a cloud metadata address",
        })
    }
}

/// Classifies `ip`. IPv6 addresses that embed an IPv4 address (mapped
/// `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) are
/// classified by that IPv4 address.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, d] = ip.octets();
    match (a, b, c, d) {
        (169, 254, 169, 254) | (100, 100, 100, 200) => AddressClass::CloudMetadata,
        (0, ..) => AddressClass::Unspecified,
        (127, ..) => AddressClass::Loopback,
        (10, ..) | (192, 168, ..) => AddressClass::Private,
        (172, b, ..) if (16..=31).contains(&b) => AddressClass::Private,
        (169, 254, ..) => AddressClass::LinkLocal,
        (100, b, ..) if (64..=127).contains(&b) => AddressClass::SharedCgnat,
        (255, 255, 255, 255) => AddressClass::Broadcast,
        (224..=239, ..) => AddressClass::Multicast,
        (240..=255, ..) | (192, 0, 0, _) => AddressClass::Reserved,
        (198, 18 | 19, ..) => AddressClass::Reserved,
        _ => AddressClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let segments = ip.segments();
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        return AddressClass::CloudMetadata;
    }
    match segments[0] {
        _ if ip.is_unspecified() => AddressClass::Unspecified,
        _ if ip.is_loopback() => AddressClass::Loopback,
        s if s & 0xfe00 == 0xfc00 => AddressClass::Private,
        s if s & 0xffc0 == 0xfec0 => AddressClass::Private,
        s if s & 0xffc0 == 0xfe80 => AddressClass::LinkLocal,
        s if s & 0xff00 == 0xff00 => AddressClass::Multicast,
        0x0100 if segments[1..4] == [0, 0, 0] => AddressClass::Reserved,
        _ => AddressClass::Public,
    }
}

/// The IPv4 address inside a mapped, compatible or NAT64 IPv6 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // ::ffff:a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        // ::a.b.c.d (deprecated "compatible" form), but not :: or ::1
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail),
        // 64:ff9b::a.b.c.d (NAT64)
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        _ => None,
    }
}

// ---------------------------------------------------------------- the guard

/// Why the guard stopped a request. Always permanent: the same payload would
/// be refused again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "refused to connect to {ip}{}: it is {class}; set \
         kinds.http.allow_private = true or add {host} to kinds.http.allow_hosts \
         to allow it",
        for_host(.host, .ip)
    )]
    Address {
        host: String,
        ip: IpAddr,
        class: AddressClass,
    },
    /// A redirect hop the guard refused (the first URL was fine).
    #[error("redirected to {to}: {refusal}")]
    Redirect { to: String, refusal: Box<Refusal> },
    #[error("unsupported URL scheme {0:?}: only http and https")]
    Scheme(String),
    #[error("URL has no host")]
    NoHost,
    #[error("more than kinds.http.max_redirects ({0}) redirects")]
    TooManyRedirects(usize),
}

/// ` for host <name>`, unless the host is the address itself.
fn for_host(host: &str, ip: &IpAddr) -> String {
    if host.parse::<IpAddr>().ok() == Some(*ip) {
        String::new()
    } else {
        format!(" for host {host}")
    }
}

/// Decides which addresses may be reached.
#[derive(Debug)]
pub struct Guard {
    allow_private: bool,
    /// Lower case, without brackets or a trailing dot.
    allow_hosts: HashSet<String>,
}

impl Guard {
    pub fn new(settings: &HttpKindSettings) -> Guard {
        Guard {
            allow_private: settings.allow_private,
            allow_hosts: settings
                .allow_hosts
                .iter()
                .map(|h| normalize_host(h))
                .collect(),
        }
    }

    /// Whether `host` may reach any address (private ones included).
    pub fn host_allowed(&self, host: &str) -> bool {
        self.allow_private || self.allow_hosts.contains(&normalize_host(host))
    }

    /// Whether `host` may connect to `ip`.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Refusal> {
        let class = classify(ip);
        if class.is_public() || self.host_allowed(host) {
            Ok(())
        } else {
            Err(Refusal::Address {
                host: host.to_string(),
                ip,
                class,
            })
        }
    }

    /// Checks a URL before it is requested (first request or redirect hop):
    /// its scheme, and its host when that is an IP literal, which no
    /// resolver sees. Host names are checked after resolution instead.
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::Scheme(url.scheme().to_string()));
        }
        match url.host() {
            None => Err(Refusal::NoHost),
            Some(url::Host::Ipv4(ip)) => self.check_ip(&ip.to_string(), IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(&ip.to_string(), IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
        }
    }
}

fn normalize_host(host: &str) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let bare = bare.strip_suffix('.').unwrap_or(bare);
    match bare.parse::<IpAddr>() {
        // One spelling per address: "::0:1" and "::1" are the same host.
        Ok(ip) => ip.to_string(),
        Err(_) => bare.to_ascii_lowercase(),
    }
}

/// Resolves host names with the system resolver and keeps only the
/// addresses the guard allows; fails with a [`Refusal`] when none is left.
/// Checking the addresses that will actually be connected to (not a second
/// lookup) also defeats DNS rebinding.
pub struct GuardedResolver {
    guard: Arc<Guard>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match guard.check_ip(&host, addr.ip()) {
                    Ok(()) => true,
                    Err(refused) => {
                        refusal.get_or_insert(refused);
                        false
                    }
                })
                .collect();
            match refusal {
                Some(refused) if allowed.is_empty() => Err(refused.into()),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

// ---------------------------------------------------------------- requests

/// The methods a payload may use.
const METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// One request as a payload describes it, validated.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub url: Url,
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Option<RequestBody>,
}

#[derive(Debug, Clone)]
pub enum RequestBody {
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
pub struct Fetched {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

/// Why a request did not produce a 2xx response with a body under the cap.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
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
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying again cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            HttpError::Refused { .. } | HttpError::BodyTooLarge { .. } => true,
            HttpError::Status { status, .. } => !is_retryable_status(*status),
            HttpError::Transport { permanent, .. } => *permanent,
            HttpError::Deadline { .. } | HttpError::Client(_) => false,
        }
    }

    /// The failure as a job error, its message prefixed with `context`:
    /// 5xx, 429 (with `Retry-After` seconds), timeouts and connection errors
    /// are retryable; refusals, other statuses and oversized bodies are not.
    pub fn to_job_error(&self, context: &str) -> JobError {
        let message = format!("{context}{self}");
        match self {
            _ if self.is_permanent() => JobError::permanent(message),
            HttpError::Status {
                retry_after: Some(delay),
                ..
            } => JobError::retry_after(message, *delay),
            _ => JobError::retryable(message),
        }
    }
}

/// 5xx and 429 may pass; every other non-2xx status will not.
fn is_retryable_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// `scheme://host[:port]/path` of `url`: no credentials, query or fragment,
/// which may hold secrets and must not reach the results table.
pub fn display_url(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// Longest `Retry-After` taken at its word: one day (`retry.max_ms` caps
/// it further).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// `Retry-After` in seconds (an HTTP date is ignored: the backoff applies).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

// ---------------------------------------------------------------- the client

/// The configured HTTP machinery, cheap to clone into handlers. Each
/// processor thread builds its own `reqwest::Client` from it on first use
/// and keeps it, so connections are reused across the jobs of that thread.
#[derive(Clone)]
pub struct HttpKinds {
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
    pub fn new(settings: &HttpKindSettings) -> HttpKinds {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        HttpKinds {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                settings: settings.clone(),
                guard: Arc::new(Guard::new(settings)),
            }),
        }
    }

    pub fn settings(&self) -> &HttpKindSettings {
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
    pub async fn fetch(&self, spec: &RequestSpec, deadline: Instant) -> Result<Fetched, HttpError> {
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
                retry_after: retry_after(response.headers()),
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

/// Classifies a reqwest error: a refusal by the guard (from the resolver or
/// the redirect policy) and malformed requests are permanent; connection
/// failures, timeouts and broken bodies are retryable.
fn transport_error(url: &str, error: reqwest::Error) -> HttpError {
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

fn find_refusal<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refusal> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(refusal) = error.downcast_ref::<Refusal>() {
            return Some(refusal);
        }
        current = error.source();
    }
    None
}

/// An error and its causes, `outer: inner: innermost`, without repeats.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
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

    fn class(ip: &str) -> AddressClass {
        classify(ip.parse().expect("an IP address"))
    }

    #[test]
    fn public_addresses_are_public() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "172.15.255.255",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "192.0.1.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(class(ip), AddressClass::Public, "{ip}");
        }
    }

    #[test]
    fn ipv4_special_ranges() {
        let cases = [
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.255.254", AddressClass::Loopback),
            ("10.0.0.1", AddressClass::Private),
            ("10.255.255.255", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("169.254.0.1", AddressClass::LinkLocal),
            ("169.254.169.254", AddressClass::CloudMetadata),
            ("100.100.100.200", AddressClass::CloudMetadata),
            ("100.64.0.1", AddressClass::SharedCgnat),
            ("100.127.255.255", AddressClass::SharedCgnat),
            ("0.0.0.0", AddressClass::Unspecified),
            ("0.1.2.3", AddressClass::Unspecified),
            ("255.255.255.255", AddressClass::Broadcast),
            ("224.0.0.1", AddressClass::Multicast),
            ("239.255.255.250", AddressClass::Multicast),
            ("240.0.0.1", AddressClass::Reserved),
            ("192.0.0.8", AddressClass::Reserved),
            ("198.18.0.1", AddressClass::Reserved),
        ];
        for (ip, expected) in cases {
            assert_eq!(class(ip), expected, "{ip}");
        }
    }

    #[test]
    fn ipv6_special_ranges() {
        let cases = [
            ("::1", AddressClass::Loopback),
            ("::", AddressClass::Unspecified),
            ("fc00::1", AddressClass::Private),
            ("fd12:3456::1", AddressClass::Private),
            ("fec0::1", AddressClass::Private),
            ("fe80::1", AddressClass::LinkLocal),
            ("febf::1", AddressClass::LinkLocal),
            ("ff02::1", AddressClass::Multicast),
            ("100::1", AddressClass::Reserved),
            ("fd00:ec2::254", AddressClass::CloudMetadata),
        ];
        for (ip, expected) in cases {
            assert_eq!(class(ip), expected, "{ip}");
        }
    }

    #[test]
    fn ipv6_addresses_embedding_ipv4_are_classified_by_it() {
        let cases = [
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:10.1.2.3", AddressClass::Private),
            ("::ffff:169.254.169.254", AddressClass::CloudMetadata),
            ("::127.0.0.1", AddressClass::Loopback),
            ("64:ff9b::192.168.0.1", AddressClass::Private),
            ("64:ff9b::a9fe:a9fe", AddressClass::CloudMetadata),
        ];
        for (ip, expected) in cases {
            assert_eq!(class(ip), expected, "{ip}");
        }
    }

    fn settings(allow_private: bool, allow_hosts: &[&str]) -> HttpKindSettings {
        HttpKindSettings {
            allow_private,
            allow_hosts: allow_hosts.iter().map(|h| h.to_string()).collect(),
            ..HttpKindSettings::default()
        }
    }

    fn url(text: &str) -> Url {
        Url::parse(text).expect("a URL")
    }

    #[test]
    fn guard_refuses_private_ip_literals_by_default() {
        let guard = Guard::new(&settings(false, &[]));
        for target in [
            "http://127.0.0.1:8080/x",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://[::ffff:7f00:1]/",
            // WHATWG host parsing turns these spellings into 127.0.0.1.
            "http://2130706433/",
            "http://0x7f.1/",
        ] {
            let refused = guard.check_url(&url(target)).expect_err(target);
            let text = refused.to_string();
            assert!(text.contains("kinds.http.allow_private"), "{text}");
            assert!(text.contains("kinds.http.allow_hosts"), "{text}");
        }
        assert!(guard.check_url(&url("https://93.184.216.34/")).is_ok());
        // Names are checked after resolution, not here.
        assert!(guard.check_url(&url("http://localhost/")).is_ok());
    }

    #[test]
    fn refusal_names_the_address_and_its_class() {
        let guard = Guard::new(&settings(false, &[]));
        let refused = guard
            .check_ip("metadata.internal", "169.254.169.254".parse().expect("ip"))
            .expect_err("metadata");
        assert_eq!(
            refused.to_string(),
            "refused to connect to 169.254.169.254 for host metadata.internal: it is a \
             cloud metadata address; set kinds.http.allow_private = true or add \
             metadata.internal to kinds.http.allow_hosts to allow it"
        );
    }

    #[test]
    fn guard_rejects_other_schemes() {
        let guard = Guard::new(&settings(true, &[]));
        assert_eq!(
            guard.check_url(&url("file:///etc/passwd")),
            Err(Refusal::Scheme("file".into()))
        );
    }

    #[test]
    fn allow_private_and_allow_hosts_open_the_guard() {
        let loopback: IpAddr = "127.0.0.1".parse().expect("ip");
        let open = Guard::new(&settings(true, &[]));
        assert!(open.check_ip("anything", loopback).is_ok());
        assert!(open.check_url(&url("http://127.0.0.1/")).is_ok());

        let listed = Guard::new(&settings(false, &["LocalHost.", "[::1]", "10.0.0.5"]));
        assert!(listed.check_ip("localhost", loopback).is_ok());
        assert!(listed.check_ip("LOCALHOST", loopback).is_ok());
        assert!(listed.check_url(&url("http://[::1]:99/")).is_ok());
        assert!(listed.check_url(&url("http://10.0.0.5/")).is_ok());
        // Listing a name does not allow its address spelled as a literal.
        assert!(listed.check_url(&url("http://127.0.0.1/")).is_err());
        assert!(listed.check_ip("other.example", loopback).is_err());
    }

    #[tokio::test]
    async fn resolver_refuses_names_of_private_addresses() {
        let guard = Arc::new(Guard::new(&settings(false, &[])));
        let resolver = GuardedResolver {
            guard: guard.clone(),
        };
        let name: Name = "localhost".parse().expect("name");
        let error = match resolver.resolve(name).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(error) => error,
        };
        let refusal = find_refusal(error.as_ref()).expect("a refusal");
        assert!(matches!(refusal, Refusal::Address { host, .. } if host == "localhost"));

        let listed = GuardedResolver {
            guard: Arc::new(Guard::new(&settings(false, &["localhost"]))),
        };
        let name: Name = "localhost".parse().expect("name");
        let addrs: Vec<SocketAddr> = listed.resolve(name).await.expect("allowed").collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
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
        let limited = error(429, Some(Duration::from_secs(2))).to_job_error("x: ");
        assert_eq!(
            limited,
            JobError::retry_after(
                "x: http://h/: HTTP 429 Too Many Requests",
                Duration::from_secs(2)
            )
        );
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 3 "));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("18446744073709551615"),
        );
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
