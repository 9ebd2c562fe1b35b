//! The HTTP API on actix-web: submit jobs, read their status, queue depths,
//! health, readiness and Prometheus metrics.
//!
//! Served alone by `conveyor api`, or inside `conveyor worker` when
//! `api.bind` is set ([`start_in_worker`]). It owns the routes, the optional
//! bearer token (compared in constant time) and request accounting. It must
//! never run jobs or write results: it pushes onto Redis queues with
//! [`RedisQueue::accept`] and reads Redis and MySQL, each through
//! connections of its own so API load never holds up a worker's pipeline.
//!
//! | route | does |
//! |---|---|
//! | `POST /jobs` | accept one envelope (`"queue"` optional) → 202 `{"id","queue"}` |
//! | `POST /jobs/batch` | accept an array, all or nothing → 202 `[{"id","queue"}...]` |
//! | `GET /jobs/{id}` | status: queued, running, retrying, succeeded, dead, cancelled |
//! | `DELETE /jobs/{id}` | cancel → 202 `{"id","queue","status"}`; finished → 409; unknown → 404 |
//! | `GET /queues` | pending, running, scheduled, dead, paused per queue (configured or holding jobs) |
//! | `POST /queues/{q}/pause`, `/resume` | stop or restart starting its jobs → 204 |
//! | `GET /schedules` | each schedule: next run, paused, latest runs |
//! | `POST /schedules/{name}/trigger` | run a schedule now → 202 `{"id"}` |
//! | `POST /schedules/{name}/pause`, `/resume` | pause or resume a schedule → 204 |
//! | `GET /limiters` | each limiter in force with its running and waiting jobs |
//! | `PUT /limiters/{name}` | change or add a limiter for every worker → 200 with the definition |
//! | `GET /health` | 200 while the process runs (never needs the token) |
//! | `GET /ready` | 200 when Redis and MySQL answer, else 503 |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /openapi.json` | the OpenAPI 3.1 document of these routes ([`openapi`]) |
//! | `/ui/...` | the dashboard ([`crate::ui`]), with its own login |

pub(crate) mod control;
mod error;
pub(crate) mod jobs;
mod limiters;
mod limits;
mod metrics;
pub mod openapi;
mod ops;
mod schedules;
mod schemas;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpServer};
use subtle::ConstantTimeEq;

pub use error::ApiError;
pub use metrics::ApiMetrics;

use crate::config::Settings;
use crate::intake::{Rules, DEFAULT_QUEUE};
use crate::job::EnvelopeDefaults;
use crate::metrics::{Metrics, MetricsError};
use crate::redis_queue::{QueueError, RedisQueue};
use crate::schedules::Schedule;
use crate::store::{self, StoreError};

/// Address `conveyor api` serves on when `api.bind` is empty.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiStartError {
    #[error("api: cannot listen on {addr}: {source}")]
    /// The address cannot be listened on.
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    #[error(transparent)]
    /// Redis cannot be used.
    Queue(#[from] QueueError),
    #[error(transparent)]
    /// MySQL cannot be used.
    Store(#[from] StoreError),
    #[error(transparent)]
    /// The metrics cannot be registered.
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    /// The configuration is invalid.
    Config(#[from] crate::config::ConfigError),
}

/// Everything the handlers share; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ApiState {
    /// Connections and metrics are not worth printing; the queues are.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("queues", &self.inner.settings.queues.names)
            .finish_non_exhaustive()
    }
}

struct Inner {
    settings: Arc<Settings>,
    /// The configured schedules, compiled once.
    schedules: Vec<Schedule>,
    redis: RedisQueue,
    pool: mysql_async::Pool,
    metrics: ApiMetrics,
    /// The worker's collectors, when the API runs inside a worker.
    worker: Option<Arc<Metrics>>,
    token: Option<Vec<u8>>,
    /// Signs the dashboard's sessions and CSRF tokens.
    session_key: crate::ui::SessionKey,
}

impl ApiState {
    /// Prepares the API's own Redis connection and MySQL pool (both opened
    /// on first use). `worker` adds a worker's collectors to `/metrics`.
    pub fn new(
        settings: Arc<Settings>,
        worker: Option<Arc<Metrics>>,
    ) -> Result<ApiState, ApiStartError> {
        let redis = RedisQueue::connect(&settings.redis)?;
        let pool = store::open_pool(&settings.mysql, settings.mysql.pool_max)?;
        let token = Some(settings.api.token.as_bytes().to_vec()).filter(|t| !t.is_empty());
        let session_key = if settings.api.token.is_empty() {
            crate::ui::SessionKey::random()
        } else {
            crate::ui::SessionKey::from_token(&settings.api.token)
        };
        Ok(ApiState {
            inner: Arc::new(Inner {
                schedules: settings.schedules()?,
                redis,
                pool,
                metrics: ApiMetrics::new()?,
                worker,
                token,
                session_key,
                settings,
            }),
        })
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub(crate) fn schedules(&self) -> &[Schedule] {
        &self.inner.schedules
    }

    pub(crate) fn redis(&self) -> &RedisQueue {
        &self.inner.redis
    }

    pub(crate) fn pool(&self) -> &mysql_async::Pool {
        &self.inner.pool
    }

    pub(crate) fn metrics(&self) -> &ApiMetrics {
        &self.inner.metrics
    }

    pub(crate) fn session_key(&self) -> &crate::ui::SessionKey {
        &self.inner.session_key
    }

    pub(crate) fn worker_metrics(&self) -> Option<&Metrics> {
        self.inner.worker.as_deref()
    }

    /// What submissions are checked against: this process's limits and queues.
    pub(crate) fn rules(&self) -> Rules<'_> {
        let settings = self.settings();
        Rules {
            defaults: EnvelopeDefaults {
                max_attempts: settings.retry.max_attempts,
                timeout_ms: settings.jobs.default_timeout_ms,
                max_job_bytes: settings.limits.max_job_bytes,
            },
            queues: Some(&settings.queues.names),
            default_queue: DEFAULT_QUEUE,
        }
    }

    /// Whether `header` is `Bearer <api.token>`; always true without a token.
    fn authorized(&self, header: Option<&[u8]>) -> bool {
        let Some(token) = &self.inner.token else {
            return true;
        };
        // The scheme is case-insensitive (RFC 7235); the token is not.
        let presented = header
            .filter(|h| h.len() > 7 && h[..7].eq_ignore_ascii_case(b"bearer "))
            .map_or(&[][..], |h| &h[7..]);
        bool::from(presented.ct_eq(token.as_slice()))
    }

    /// Disconnects the MySQL pool (after the server stopped).
    pub async fn close(&self) {
        let _ = self.inner.pool.clone().disconnect().await;
    }
}

/// Starts serving on `listener`. The returned server must be awaited or
/// spawned; stop it through its [`Server::handle`]. Signals are left to the
/// caller, and a graceful stop waits up to `shutdown.timeout_ms` for
/// requests in progress. Every route is under the limits of `api.*`
/// (connections, timeouts, body size).
pub fn serve(listener: TcpListener, state: ApiState) -> std::io::Result<Server> {
    let settings = state.settings();
    let shutdown_secs = settings.shutdown.timeout_ms.div_ceil(1000);
    let api = settings.api.clone();
    let (payload_config, json_config) = limits::payload_configs(&api);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .app_data(payload_config.clone())
            .app_data(json_config.clone())
            .configure(routes)
            .configure(crate::ui::routes)
            .default_service(web::to(no_route))
            .wrap(from_fn(limits::limit_request))
            .wrap(from_fn(require_token))
            .wrap(from_fn(count_request))
    })
    .workers(limits::server_threads())
    .max_connections(limits::connections_per_thread(&api))
    .keep_alive(Duration::from_millis(api.keep_alive_ms))
    .client_request_timeout(Duration::from_millis(api.client_timeout_ms))
    .client_disconnect_timeout(Duration::from_secs(1))
    .disable_signals()
    .shutdown_timeout(shutdown_secs)
    .listen(listener)?
    .run();
    Ok(server)
}

/// Binds `addr` (`host:port`) and starts serving on the current actix
/// system. Returns the server's handle and the address it bound.
pub fn start(
    addr: &str,
    state: ApiState,
) -> Result<(ServerHandle, std::net::SocketAddr), ApiStartError> {
    let bind_error = |source| ApiStartError::Bind {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    let server = serve(listener, state.clone()).map_err(bind_error)?;
    let handle = server.handle();
    actix_rt::spawn(async move {
        if let Err(error) = server.await {
            log::error!(target: "conveyor::api", "api server failed: {error}");
        }
        state.close().await;
    });
    log::info!(target: "conveyor::api", "api listening on http://{local}");
    Ok((handle, local))
}

/// The API inside a worker: started when `api.bind` is set, with the
/// worker's collectors in `/metrics`. Must be called inside an actix system.
pub fn start_in_worker(
    settings: &Arc<Settings>,
    metrics: &Arc<Metrics>,
) -> Result<Option<ServerHandle>, ApiStartError> {
    if settings.api.bind.is_empty() {
        return Ok(None);
    }
    let state = ApiState::new(settings.clone(), Some(metrics.clone()))?;
    let (handle, _) = start(&settings.api.bind, state)?;
    Ok(Some(handle))
}

fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/jobs", web::post().to(jobs::submit))
        .route("/jobs/batch", web::post().to(jobs::submit_batch))
        .route("/jobs/{id}", web::get().to(jobs::status))
        .route("/jobs/{id}", web::delete().to(control::cancel))
        .route("/queues", web::get().to(ops::queues))
        .route("/queues/{queue}/pause", web::post().to(control::pause))
        .route("/queues/{queue}/resume", web::post().to(control::resume))
        .route("/schedules", web::get().to(schedules::list))
        .route(
            "/schedules/{name}/trigger",
            web::post().to(schedules::trigger),
        )
        .route("/schedules/{name}/pause", web::post().to(schedules::pause))
        .route(
            "/schedules/{name}/resume",
            web::post().to(schedules::resume),
        )
        .route("/limiters", web::get().to(limiters::list))
        .route("/limiters/{name}", web::put().to(limiters::put))
        .route("/health", web::get().to(ops::health))
        .route("/ready", web::get().to(ops::ready))
        .route("/metrics", web::get().to(ops::metrics))
        .route("/openapi.json", web::get().to(openapi::openapi_json));
}

/// A documented path asked with a method it does not have: 405 with
/// `Allow`; anything else: 404.
async fn no_route(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    let request = format!("{} {}", req.method(), req.path());
    Err(match openapi::allowed_methods(req.path()) {
        Some(methods) => ApiError::MethodNotAllowed(request, openapi::allow_value(methods)),
        None => ApiError::NoRoute(request),
    })
}

fn state_of(req: &ServiceRequest) -> Option<ApiState> {
    req.app_data::<web::Data<ApiState>>()
        .map(|data| data.get_ref().clone())
}

/// Every route but `/health` needs the bearer token when `api.token` is
/// set; the dashboard under `/ui` checks its own session cookie instead.
async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let allowed = req.path() == "/health"
        || crate::ui::is_dashboard_path(req.path())
        || state_of(&req).is_some_and(|state| {
            state.authorized(
                req.headers()
                    .get(actix_web::http::header::AUTHORIZATION)
                    .map(|v| v.as_bytes()),
            )
        });
    if !allowed {
        return Err(ApiError::Unauthorized.into());
    }
    next.call(req).await
}

/// Counts requests by method, route and status, with their duration.
async fn count_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let begun = Instant::now();
    let state = state_of(&req);
    let method = req.method().as_str().to_string();
    let path = req.path().to_string();
    let result = next.call(req).await;
    if let Some(state) = state {
        let status = match &result {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        state.metrics().observe_request(
            &method,
            &path,
            status.as_u16(),
            begun.elapsed().as_secs_f64(),
        );
    }
    result
}

/// Reads a request body of at most `limit` bytes.
pub(crate) async fn read_body(
    req: &actix_web::HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    use futures::StreamExt as _;
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::TooLarge(limit));
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::Body(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
