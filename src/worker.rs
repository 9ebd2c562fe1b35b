//! Starting and stopping a worker process: wires the actors together.
//!
//! This module owns start-up order (schema, pool, actors) and the graceful
//! shutdown sequence. It must never contain job logic; it only connects the
//! pieces and waits for the shutdown signal it is handed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::actors::beacon::Beacon;
use crate::actors::cancel_signals::CancelSignals;
use crate::actors::db_writer::DbWriter;
use crate::actors::job_feed::JobFeed;
use crate::actors::limiter_watch::LimiterWatch;
use crate::actors::monitor::Monitor;
use crate::actors::processor::{Processor, ProcessorEnv, ProcessorPool};
use crate::actors::pruner::{Pruner, StopPruning};
use crate::actors::queue_reader::{QueueReader, Shutdown};
use crate::actors::queue_watch::QueueWatch;
use crate::actors::reaper::Reaper;
use crate::actors::scheduler::Scheduler;
use crate::actors::ticker::Ticker;
use crate::backoff::Backoff;
use crate::config::{tls_hint, Settings};
use crate::job::EnvelopeDefaults;
use crate::job_queue::RedisJobQueue;
use crate::kinds::Registry;
use crate::limiters::LimiterBook;
use crate::metrics::Metrics;
use crate::redact::redact_url;
use crate::redis_queue::{QueueError, RedisQueue};
use crate::store::{self, StoreError};

/// Why a worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    /// Redis cannot be used.
    Queue(#[from] QueueError),
    #[error(transparent)]
    /// MySQL cannot be used.
    Store(#[from] StoreError),
    #[error("the queue reader stopped before the shutdown finished")]
    /// The queue reader stopped before the shutdown ended.
    ReaderGone,
    #[error(transparent)]
    /// The embedded API could not start.
    Api(#[from] crate::api::ApiStartError),
    #[error(transparent)]
    /// The metrics could not be registered.
    Metrics(#[from] crate::metrics::MetricsError),
    #[error(transparent)]
    /// The configuration is invalid.
    Config(#[from] crate::config::ConfigError),
}

/// Longest pause between attempts to reach MySQL at start-up (ms).
const STARTUP_RETRY_MAX_MS: u64 = 5000;

/// A unique id for this process: host, pid and a random suffix, so two
/// workers never share a lease even in containers with equal pids.
pub fn worker_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!(
        "{host}-{}-{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// How a worker run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It drained its in-flight jobs and handed back the rest.
    Drained,
    /// A second signal came while it drained: it stopped at once. Jobs it
    /// still held return to their queue when its lease expires. A program
    /// usually exits with status 130 then.
    Interrupted,
}

/// Runs a worker in a new actix system until SIGTERM or SIGINT, then drains
/// and hands back; a second signal stops it at once ([`Stopped::Interrupted`]).
/// What the `conveyor worker` command and a program with kinds of its own call.
/// It never exits the process: the caller decides what to do.
pub fn run_until_signalled(settings: Settings, registry: Registry) -> Result<Stopped, WorkerError> {
    actix_rt::System::new().block_on(async move {
        let (first_tx, first_rx) = oneshot::channel();
        let (second_tx, second_rx) = oneshot::channel();
        actix_rt::spawn(relay_signals(first_tx, second_tx));
        // Without signal handlers (the senders are gone) the worker runs on.
        let first = async move {
            if first_rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = run(settings, registry, first) => result.map(|()| Stopped::Drained),
            Ok(()) = second_rx => Ok(Stopped::Interrupted),
        }
    })
}

/// SIGTERM and SIGINT, as one stream of signal names.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> Option<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some(Signals { term, int }),
            _ => {
                log::error!(target: "conveyor", "cannot listen for signals; stop this process with SIGKILL");
                None
            }
        }
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Tells `first` on the first signal and `second` on the next one.
async fn relay_signals(first: oneshot::Sender<()>, second: oneshot::Sender<()>) {
    let Some(mut signals) = Signals::listen() else {
        return;
    };
    let name = signals.next().await;
    log::info!(target: "conveyor", "{name} received: finishing in-flight jobs (send it again to stop at once)");
    let _ = first.send(());
    signals.next().await;
    log::warn!(target: "conveyor", "second signal: stopping now; unfinished jobs return to their queue when this worker's lease expires");
    let _ = second.send(());
}

/// Resolves on the first SIGTERM or SIGINT (never, if signals cannot be
/// listened to). For servers of one's own, such as `conveyor api`.
pub async fn shutdown_signal() {
    match Signals::listen() {
        Some(mut signals) => {
            let name = signals.next().await;
            log::info!(target: "conveyor", "{name} received: stopping");
        }
        None => std::future::pending().await,
    }
}

/// Runs a worker until `shutdown` resolves, then drains and hands back.
/// Must be called inside a running actix `System`.
pub async fn run(
    settings: Settings,
    registry: Registry,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    let schedules = settings.schedules()?;
    let configured_limiters = settings.limiters()?;
    let limiters = LimiterBook::new(configured_limiters.clone());
    let settings = Arc::new(settings);
    let worker: Arc<str> = worker_id().into();
    log::info!(
        target: "conveyor::worker",
        "worker {worker} starting: redis {} mysql {} queues {:?} processors {}x{} kinds {:?}",
        describe_redis(&settings.redis),
        redact_url(&settings.mysql.url),
        settings.queues.names,
        settings.processors.count,
        settings.processors.concurrency,
        registry.names()
    );
    let metrics = Arc::new(Metrics::with_prometheus(&registry.names())?);
    let api = crate::api::start_in_worker(&settings, &metrics)?;
    let pool = store::open_pool(&settings.mysql, settings.mysql.pool_max)?;
    let mut shutdown = std::pin::pin!(shutdown);
    tokio::select! {
        () = migrate_until_done(&pool, &settings.mysql.url, &metrics) => {}
        () = &mut shutdown => {
            log::info!(target: "conveyor::worker", "stopped before start-up finished");
            stop_api(api).await;
            return Ok(());
        }
    }
    let redis = RedisQueue::connect(&settings.redis)?;
    actix_rt::spawn(probe_redis(redis.clone(), settings.clone()));
    let pruner = start_pruner(&settings, pool.clone(), redis.clone(), worker.clone())?;
    let reader = start_actors(
        &settings,
        registry,
        worker.clone(),
        pool.clone(),
        redis.clone(),
        metrics.clone(),
        limiters.clone(),
    );
    LimiterWatch::new(redis.clone(), configured_limiters, limiters).start();
    start_ticker(&settings, schedules, redis, metrics.clone());
    shutdown.await;
    log::info!(target: "conveyor::worker", "shutdown requested");
    let timeout = Duration::from_millis(settings.shutdown.timeout_ms);
    metrics.reader_mailbox.on_send();
    let (handed_back, (), ()) = futures::join!(
        reader.send(Shutdown { timeout }),
        stop_api(api),
        stop_pruner(pruner, timeout)
    );
    let handed_back = handed_back.map_err(|_| WorkerError::ReaderGone)?;
    pool.disconnect().await.ok();
    log::info!(target: "conveyor::worker", "worker {worker} stopped ({handed_back} jobs handed back)");
    Ok(())
}

fn start_actors(
    settings: &Arc<Settings>,
    registry: Registry,
    worker: Arc<str>,
    mysql: mysql_async::Pool,
    redis: RedisQueue,
    metrics: Arc<Metrics>,
    limiters: LimiterBook,
) -> Addr<QueueReader> {
    let feed = Arc::new(JobFeed::new(
        settings.processors.count,
        settings.processors.concurrency,
        metrics.clone(),
    ));
    let (outcome_tx, outcome_rx) = tokio::sync::mpsc::unbounded_channel();
    let cancels = Arc::new(CancelSignals::default());
    let env = Arc::new(ProcessorEnv {
        registry,
        defaults: EnvelopeDefaults {
            max_attempts: settings.retry.max_attempts,
            timeout_ms: settings.jobs.default_timeout_ms,
            max_job_bytes: settings.limits.max_job_bytes,
        },
        backoff: Backoff::exponential(settings.retry.base_ms, settings.retry.max_ms)
            .with_equal_jitter(),
        metrics: metrics.clone(),
        feed: feed.clone(),
        concurrency: settings.processors.concurrency,
        outcomes: outcome_tx,
        cancels: cancels.clone(),
    });
    let addr = SyncArbiter::start(settings.processors.count, move || {
        Processor::new(env.clone())
    });
    let processors = ProcessorPool {
        addr,
        feed,
        outcomes: outcome_rx,
    };
    Beacon::new(redis.clone(), &worker, metrics.clone(), settings).start();
    let reader = {
        let (settings, redis, metrics) = (settings.clone(), redis.clone(), metrics.clone());
        let worker = worker.clone();
        QueueReader::create(move |ctx| {
            let db = DbWriter::new(
                (mysql, &settings.mysql.url),
                worker.clone(),
                ctx.address().recipient(),
                ctx.address().recipient(),
                settings.db.clone(),
                metrics.clone(),
            )
            .start();
            let queue_side = RedisJobQueue::new(redis, worker, limiters);
            QueueReader::new(queue_side, &settings, processors, db.recipient(), metrics)
        })
    };
    let queues: Vec<Arc<str>> = settings
        .queues
        .names
        .iter()
        .map(|q| q.as_str().into())
        .collect();
    let tick = Duration::from_millis(settings.scheduler.tick_ms);
    Scheduler::new(
        redis.clone(),
        queues.clone(),
        tick,
        reader.clone().recipient(),
        metrics.clone(),
    )
    .start();
    let heartbeat = settings.recovery.heartbeat();
    Reaper::new(
        redis.clone(),
        queues.clone(),
        heartbeat,
        reader.clone().recipient(),
        metrics.clone(),
    )
    .start();
    QueueWatch::new(
        redis.clone(),
        worker,
        queues.clone(),
        Duration::from_millis(settings.queues.control_poll_ms),
        reader.clone().recipient(),
        cancels,
        metrics.clone(),
    )
    .start();
    Monitor::new(redis, queues, metrics, settings).start();
    reader
}

/// Says once at start-up, naming the settings to check, when Redis cannot
/// be reached; the actors keep retrying on their own meanwhile.
async fn probe_redis(redis: RedisQueue, settings: Arc<Settings>) {
    if let Err(error) = redis.ping().await {
        let error = error.to_string();
        let (key, target) = if settings.redis.cluster_nodes.is_empty() {
            ("redis.url", redact_url(&settings.redis.url))
        } else {
            ("redis.cluster_nodes", describe_redis(&settings.redis))
        };
        log::warn!(
            target: "conveyor::worker",
            "redis at {target} is not reachable yet (check {key}), retrying: {error}{}",
            tls_hint(&error, "redis.tls_ca_file")
        );
    }
}

/// The Redis a worker talks to, for its start line (passwords masked).
fn describe_redis(redis: &crate::config::RedisSettings) -> String {
    if redis.cluster_nodes.is_empty() {
        return redact_url(&redis.url);
    }
    let nodes: Vec<String> = redis.cluster_nodes.iter().map(|n| redact_url(n)).collect();
    format!("cluster {}", nodes.join(","))
}

/// Starts the Pruner when a retention is set.
fn start_pruner(
    settings: &Settings,
    pool: mysql_async::Pool,
    redis: RedisQueue,
    worker: Arc<str>,
) -> Result<Option<Addr<Pruner>>, crate::config::ConfigError> {
    let policy = settings.results.policy()?;
    if policy.is_active() {
        let interval = settings.results.interval()?;
        log::info!(
            target: "conveyor::worker",
            "results are pruned every {} s (results.retention {:?}, results.dead_retention {:?})",
            interval.as_secs(),
            settings.results.retention,
            settings.results.dead_retention,
        );
        let options = settings.results.prune_options()?;
        return Ok(Some(
            Pruner::new(pool, redis, policy, options, interval, worker).start(),
        ));
    }
    Ok(None)
}

/// Ends pruning after the batch under way and releases the prune lock, so
/// another worker may prune at once; gives up waiting after `timeout` (the
/// lock then expires by itself).
async fn stop_pruner(pruner: Option<Addr<Pruner>>, timeout: Duration) {
    let Some(pruner) = pruner else { return };
    if tokio::time::timeout(timeout, pruner.send(StopPruning))
        .await
        .is_err()
    {
        log::warn!(target: "conveyor::worker", "the prune batch under way did not end within shutdown.timeout_ms; the prune lock expires by itself");
    }
}

/// Starts the schedule Ticker when there are schedules.
fn start_ticker(
    settings: &Settings,
    schedules: Vec<crate::schedules::Schedule>,
    redis: RedisQueue,
    metrics: Arc<Metrics>,
) {
    if schedules.is_empty() {
        return;
    }
    log::info!(
        target: "conveyor::worker",
        "ticking {} schedules: {:?}",
        schedules.len(),
        schedules.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()
    );
    Ticker::new(
        redis,
        schedules,
        Duration::from_millis(settings.scheduler.schedules_tick_ms),
        Duration::from_millis(settings.scheduler.misfire_ms),
        metrics,
    )
    .start();
}

/// Stops the embedded API, letting requests in progress finish.
async fn stop_api(api: Option<actix_web::dev::ServerHandle>) {
    if let Some(handle) = api {
        handle.stop(true).await;
    }
}

/// Applies the schema, retrying with backoff while MySQL is unreachable or
/// refuses (a person may be fixing a grant meanwhile). A problem that needs
/// a person is logged at ERROR with what to do, and shown by `/ready`.
async fn migrate_until_done(pool: &mysql_async::Pool, url: &str, metrics: &Metrics) {
    let address = store::address(url);
    let backoff = Backoff::exponential(200, STARTUP_RETRY_MAX_MS);
    let mut failures = 0;
    loop {
        match store::migrate(pool).await {
            Ok(version) => {
                metrics.blocker.clear();
                log::info!(target: "conveyor::worker", "schema ready (version {version})");
                return;
            }
            Err(error) => match store::remedy(&error) {
                store::Remedy::Operator(advice) => {
                    let hint = tls_hint(&error.to_string(), "mysql.tls_ca_file");
                    let problem = format!("mysql at {address}: {error}; {advice}{hint}");
                    if metrics.blocker.report(&problem) {
                        log::error!(target: "conveyor::worker", "cannot start: {problem} (retrying every {} s)", STARTUP_RETRY_MAX_MS / 1000);
                    }
                    tokio::time::sleep(Duration::from_millis(STARTUP_RETRY_MAX_MS)).await;
                }
                _ => {
                    failures += 1;
                    let delay = backoff.delay(failures);
                    log::warn!(
                        target: "conveyor::worker",
                        "mysql at {address} not ready, retrying in {} ms: {error}{}",
                        delay.as_millis(),
                        tls_hint(&error.to_string(), "mysql.tls_ca_file")
                    );
                    tokio::time::sleep(delay).await;
                }
            },
        }
    }
}
