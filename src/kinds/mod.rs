//! The handler registry: job kinds by name, built-in and user-defined.
//!
//! This module owns the contract between conveyor and a handler: what a
//! handler receives ([`JobContext`], the payload), what it returns, and how it
//! says whether a failure is worth retrying ([`JobError`]). It must never
//! touch Redis or MySQL: handlers are pure work, and the pipeline decides
//! what their result means.
//!
//! # Adding a kind
//!
//! ```
//! use conveyor::kinds::{JobError, Registry};
//! use serde_json::json;
//!
//! let mut registry = Registry::new();
//! // CPU work: runs on a processor thread, one job after another.
//! registry.register_blocking("double", |_ctx, payload| {
//!     let n = payload.as_i64().ok_or_else(|| JobError::permanent("payload must be a number"))?;
//!     Ok(json!(n * 2))
//! });
//! // I/O work: many jobs overlap on the processor thread's async runtime.
//! registry.register_async("wait", |_ctx, _payload| async move {
//!     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
//!     Ok(json!("done"))
//! });
//! assert!(registry.get("double").is_some());
//! ```
//!
//! Then hand the registry to [`crate::worker::run_until_signalled`] (or [`crate::worker::run`] with a shutdown future of your own); `examples/custom_kind.rs`
//! is a complete worker.
//!
//! # Built-in kinds
//!
//! [`Registry::with_builtins_configured`] registers `noop`, `sleep`, `fail`,
//! `stats`, `http` and `gather`, the last two with the `[kinds.http]`
//! settings (address guard, body cap, redirects); `docs/kinds.md` describes
//! each. [`Registry::with_builtins`] does the same with the default settings.
//!
//! ```
//! use conveyor::config::Settings;
//! use conveyor::kinds::Registry;
//!
//! let settings = Settings::load(None).expect("valid settings");
//! let registry = Registry::with_builtins_configured(&settings.kinds);
//! assert_eq!(
//!     registry.names(),
//!     ["fail", "gather", "http", "noop", "sleep", "stats"]
//! );
//! ```

mod fail;
mod gather;
mod http;
mod http_client;
mod noop;
mod sleep;
mod stats;

/// The address guard of the HTTP kinds, for checking a URL the way a job
/// would before anything is sent.
pub use http_client::{classify, AddressClass, Guard, Refusal, RequestSpec};

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use serde_json::Value;

use crate::config::KindSettings;

/// What a handler knows about the job it runs.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job id.
    pub id: String,
    /// The queue it came from.
    pub queue: Arc<str>,
    /// The handler's name.
    pub kind: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Attempts the job gets in all.
    pub max_attempts: u32,
    /// When this attempt times out. Async handlers are cancelled then; CPU
    /// handlers should check [`JobContext::expired`] in long loops.
    pub deadline: Instant,
    /// Fires when an operator cancels the job while it runs.
    pub(crate) cancel: tokio_util::sync::CancellationToken,
}

impl JobContext {
    /// Whether the attempt's deadline has passed (cooperative timeout for CPU work).
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Whether an operator cancelled the job while it runs. Async handlers
    /// are cut off by themselves; CPU handlers should check this in long
    /// loops (or use [`JobContext::check_cancelled`]) and return.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// `Err` once the job was cancelled, for `?` in long CPU loops. The job
    /// then ends `cancelled`, not retried.
    pub fn check_cancelled(&self) -> Result<(), JobError> {
        if self.is_cancelled() {
            Err(JobError::permanent("job cancelled"))
        } else {
            Ok(())
        }
    }

    /// `Err` once the deadline has passed, for `?` in long CPU loops.
    pub fn check_deadline(&self) -> Result<(), JobError> {
        if self.expired() {
            Err(JobError::retryable(
                "job timed out (deadline checked by handler)",
            ))
        } else {
            Ok(())
        }
    }
}

/// Whether a failed attempt should be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again after the configured backoff (or after the given delay).
    After(Option<Duration>),
    /// Do not try again: the job is `dead` now.
    Never,
    /// Not a failure of the job: the service it calls is rate limited. Its
    /// limiters (or its key, for a per-key limit) are held back for this
    /// long for every worker, and the job runs again after it without
    /// counting an attempt.
    RateLimited(Duration),
}

/// A handler's failure, with its intent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    /// What went wrong; stored as the row's `error` if the job ends dead.
    pub message: String,
    /// Whether and when to try again.
    pub retry: Retry,
}

impl JobError {
    /// A failure that may pass: retried with backoff while attempts remain.
    pub fn retryable(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retry: Retry::After(None),
        }
    }

    /// A failure that will not pass (bad payload, 404 ...): `dead` at once.
    pub fn permanent(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retry: Retry::Never,
        }
    }

    /// A retryable failure that names its own delay (e.g. HTTP `Retry-After`).
    pub fn retry_after(message: impl Into<String>, delay: Duration) -> JobError {
        JobError {
            message: message.into(),
            retry: Retry::After(Some(delay)),
        }
    }

    /// The service the job calls is rate limited for `delay` (e.g. HTTP 429
    /// with `Retry-After`): the job goes back without counting an attempt,
    /// and the limiters matching it — or only its key, for a limiter with a
    /// per-key limit — start none of their jobs on any worker for `delay`
    /// (at most a day). A job no limiter matches just waits `delay`.
    pub fn rate_limited(delay: Duration) -> JobError {
        JobError {
            message: format!("rate limited for {} ms", delay.as_millis()),
            retry: Retry::RateLimited(delay),
        }
    }

    /// Whether the job ends dead at once.
    pub fn is_permanent(&self) -> bool {
        self.retry == Retry::Never
    }
}

/// What a handler returns: its output as JSON, or why it failed.
pub type JobResult = Result<Value, JobError>;

type BlockingFn = dyn Fn(&JobContext, Value) -> JobResult + Send + Sync;
type AsyncFn = dyn Fn(JobContext, Value) -> LocalBoxFuture<'static, JobResult> + Send + Sync;

/// A registered handler.
#[derive(Clone)]
pub enum Handler {
    /// CPU work, run directly on the processor thread.
    Blocking(Arc<BlockingFn>),
    /// I/O work, run on the processor thread's async runtime.
    Async(Arc<AsyncFn>),
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Handler::Blocking(_) => "Handler::Blocking",
            Handler::Async(_) => "Handler::Async",
        })
    }
}

/// Job kinds by name. Cloned into every processor thread.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    handlers: HashMap<String, Handler>,
}

impl Registry {
    /// An empty registry (no built-in kinds).
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The built-in kinds with the default `[kinds.*]` settings (requests to
    /// private addresses refused); see [`Registry::with_builtins_configured`].
    pub fn with_builtins() -> Registry {
        Registry::with_builtins_configured(&KindSettings::default())
    }

    /// The built-in kinds — `noop`, `sleep`, `fail`, `stats`, `http`,
    /// `gather` — with `settings` (the `[kinds.*]` section of the
    /// configuration, e.g. `&settings.kinds`).
    pub fn with_builtins_configured(settings: &KindSettings) -> Registry {
        let mut registry = Registry::new();
        registry.register_blocking("noop", noop::run);
        registry.register_async("sleep", sleep::run);
        registry.register_blocking("fail", fail::run);
        registry.register_blocking("stats", stats::run);
        let client = http_client::HttpKinds::new(&settings.http);
        let http_client = client.clone();
        registry.register_async("http", move |ctx, payload| {
            http::run(http_client.clone(), ctx, payload)
        });
        registry.register_async("gather", move |ctx, payload| {
            gather::run(client.clone(), ctx, payload)
        });
        registry
    }

    /// Registers CPU-bound work under `name` (replacing any kind of that name).
    pub fn register_blocking<F>(&mut self, name: &str, handler: F) -> &mut Registry
    where
        F: Fn(&JobContext, Value) -> JobResult + Send + Sync + 'static,
    {
        self.handlers
            .insert(name.to_string(), Handler::Blocking(Arc::new(handler)));
        self
    }

    /// Registers I/O-bound work under `name` (replacing any kind of that name).
    pub fn register_async<F, Fut>(&mut self, name: &str, handler: F) -> &mut Registry
    where
        F: Fn(JobContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JobResult> + 'static,
    {
        let boxed = move |ctx: JobContext, payload: Value| handler(ctx, payload).boxed_local();
        self.handlers
            .insert(name.to_string(), Handler::Async(Arc::new(boxed)));
        self
    }

    /// The handler registered under `name`.
    pub fn get(&self, name: &str) -> Option<&Handler> {
        self.handlers.get(name)
    }

    /// Registered kind names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// Deserializes a payload into `T`, or fails permanently naming the problem.
pub fn payload_as<T: serde::de::DeserializeOwned>(
    kind: &str,
    payload: Value,
) -> Result<T, JobError> {
    serde_json::from_value(payload)
        .map_err(|e| JobError::permanent(format!("invalid {kind} payload: {e}")))
}
