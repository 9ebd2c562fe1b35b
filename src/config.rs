//! Settings: the compiled-in defaults of `config/default.toml`, an optional file
//! on top, then `CONVEYOR__SECTION__KEY` environment overrides — validated once
//! at start.
//!
//! This module owns the meaning and limits of every configuration key. It must
//! never let an invalid value through to the actors, and never print a secret:
//! use [`redact_url`] whenever a URL reaches a log line or an error.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::job::is_valid_queue_name;
use crate::limiters::{Limiter, LimiterConfig};
use crate::limits::{MAX_DB_BATCH, MAX_SCRIPT_BATCH};
use crate::redact::{redact_secrets_in, redact_url};
use crate::retention::{parse_duration, Pacing, PruneOptions, RetentionPolicy};
use crate::schedules::{compile_all, Schedule, ScheduleConfig};

/// The documented defaults, compiled in so the binary runs without the file.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// A configuration that cannot be used; the message always names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key holds a value of the wrong type or outside its range.
    #[error("{key} {message}")]
    Invalid {
        /// The key, as in the file (`section.key`).
        key: String,
        /// What is wrong with its value.
        message: String,
    },
    /// The file or the environment could not be read or parsed.
    #[error("configuration: {0}")]
    Source(String),
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Every setting of a conveyor process; see `config/default.toml` for each key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `[redis]`: where the queues live.
    pub redis: RedisSettings,
    /// `[mysql]`: where the results go.
    pub mysql: MysqlSettings,
    /// `[queues]`: which queues this worker consumes, and how it claims.
    pub queues: QueueSettings,
    /// `[processors]`: the pool that runs jobs.
    pub processors: ProcessorSettings,
    /// `[db]`: how results are batched into MySQL.
    pub db: DbSettings,
    /// `[retry]`: attempts and backoff of failed jobs.
    pub retry: RetrySettings,
    /// `[jobs]`: defaults for envelopes that do not say.
    pub jobs: JobSettings,
    /// `[limits]`: the largest message accepted.
    pub limits: LimitSettings,
    /// `[scheduler]`: promotion of due retries and `run_at` jobs.
    pub scheduler: SchedulerSettings,
    /// `[recovery]`: leases and the recovery of dead workers' jobs.
    pub recovery: RecoverySettings,
    /// `[shutdown]`: the graceful stop.
    pub shutdown: ShutdownSettings,
    /// `[metrics]`: the mailbox log line.
    pub metrics: MetricsSettings,
    /// `[api]`: the HTTP API.
    pub api: ApiSettings,
    /// `[kinds]`: settings of the built-in kinds.
    pub kinds: KindSettings,
    /// `[results]`: result retention.
    pub results: ResultSettings,
    /// `[[schedules]]`: cron schedules every worker ticks.
    #[serde(default)]
    pub schedules: Vec<ScheduleConfig>,
    /// `[[limiters]]`: concurrency and rate limits enforced when jobs are claimed.
    #[serde(default)]
    pub limiters: Vec<LimiterConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[redis]` settings.
pub struct RedisSettings {
    /// Redis URL; a password in it is never logged.
    pub url: String,
    /// Prefix of every key (`<prefix>:{<queue>}:pending` ...).
    pub key_prefix: String,
    /// How long one command may take before it counts as failed (ms).
    pub response_timeout_ms: u64,
    /// `redis.tls_ca_file`: PEM CA certificates trusted for `rediss://`; empty = the system's.
    pub tls_ca_file: String,
    /// `redis.cluster_nodes`: URLs of Redis Cluster nodes; empty = one server at `url`.
    pub cluster_nodes: Vec<String>,
}

impl RedisSettings {
    /// The CA certificates of `redis.tls_ca_file` (PEM), if set.
    pub fn tls_ca(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        read_ca_file("redis.tls_ca_file", &self.tls_ca_file)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[mysql]` settings.
pub struct MysqlSettings {
    /// MySQL / MariaDB URL, database included; a password in it is never logged.
    pub url: String,
    /// Most pooled connections the DbWriter opens.
    pub pool_max: usize,
    /// `mysql.tls_ca_file`: PEM CA certificates; when set, MySQL is reached over TLS.
    pub tls_ca_file: String,
}

impl MysqlSettings {
    /// The CA certificates of `mysql.tls_ca_file` (PEM), if set.
    pub fn tls_ca(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        read_ca_file("mysql.tls_ca_file", &self.tls_ca_file)
    }
}

/// Reads a PEM file of CA certificates named by setting `key`; `None` when
/// the setting is empty. A file that cannot be read or holds no certificate
/// is an error naming the key.
fn read_ca_file(key: &str, path: &str) -> Result<Option<Vec<u8>>, ConfigError> {
    if path.trim().is_empty() {
        return Ok(None);
    }
    let pem = std::fs::read(path.trim())
        .map_err(|e| invalid(key, format!("cannot be read ({e}): {path}")))?;
    if !pem
        .windows(CERTIFICATE_PEM.len())
        .any(|w| w == CERTIFICATE_PEM)
    {
        return Err(invalid(
            key,
            format!("holds no PEM certificate (-----BEGIN CERTIFICATE-----): {path}"),
        ));
    }
    Ok(Some(pem))
}

const CERTIFICATE_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[queues]` settings.
pub struct QueueSettings {
    /// Queues this worker consumes.
    pub names: Vec<String>,
    /// Most jobs one claim takes from a queue in one round trip.
    pub claim_batch: usize,
    /// Most jobs held at once (claimed and not yet acknowledged).
    pub max_in_flight: usize,
    /// How long an idle worker blocks on an empty queue before it looks again (ms).
    pub idle_wait_ms: u64,
    /// How often pause and cancel marks are looked at (ms).
    pub control_poll_ms: u64,
    /// How claims are split among the queues (weighted or strict order).
    pub mode: crate::queue_order::QueueMode,
    /// Queue name → weight (default 1), for `mode = "weighted"`.
    #[serde(default)]
    pub weights: std::collections::BTreeMap<String, u32>,
}

impl QueueSettings {
    /// The weight of each queue of `names`, in that order.
    pub fn weight_list(&self) -> Vec<u32> {
        self.names
            .iter()
            .map(|name| self.weights.get(name).copied().unwrap_or(1))
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[processors]` settings.
pub struct ProcessorSettings {
    /// Threads in the processor pool.
    pub count: usize,
    /// Jobs one thread runs at once.
    pub concurrency: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[db]` settings.
pub struct DbSettings {
    /// Rows per multi-row upsert.
    pub batch_size: usize,
    /// Longest a result waits for its batch to fill while the writer is busy (ms).
    pub flush_ms: u64,
    /// Batches written at the same time.
    pub max_concurrent_flushes: usize,
    /// While fewer batches than this are being written, results are written
    /// at once without waiting for their batch to fill.
    pub eager_flushes: usize,
    /// First pause after a failed batch write (ms).
    pub retry_base_ms: u64,
    /// Longest pause between tries of a failed batch write (ms).
    pub retry_max_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[retry]` settings.
pub struct RetrySettings {
    /// Attempts a job gets when its envelope does not say.
    pub max_attempts: u32,
    /// Backoff after the first failed attempt (ms), doubling per attempt.
    pub base_ms: u64,
    /// Longest backoff between attempts (ms).
    pub max_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[jobs]` settings.
pub struct JobSettings {
    /// Deadline of one attempt when the envelope does not say (ms).
    pub default_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[limits]` settings.
pub struct LimitSettings {
    /// Largest message accepted from a queue (bytes); larger ones are dead letters.
    pub max_job_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[scheduler]` settings.
pub struct SchedulerSettings {
    /// How often due retries and `run_at` jobs are promoted (ms).
    pub tick_ms: u64,
    /// How often every worker looks for due schedule ticks.
    pub schedules_tick_ms: u64,
    /// A schedule tick older than this when a worker first sees it was missed.
    pub misfire_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[recovery]` settings.
pub struct RecoverySettings {
    /// A worker that has not renewed its lease for this long is presumed dead (ms).
    pub lease_ms: u64,
    /// Unset: derived from the lease (see [`RecoverySettings::heartbeat`]).
    #[serde(default)]
    pub heartbeat_ms: Option<u64>,
}

/// The lease is renewed this many times per lease length when
/// `recovery.heartbeat_ms` is not set.
pub const HEARTBEATS_PER_LEASE: u64 = 6;

impl RecoverySettings {
    /// How often the lease is renewed: `recovery.heartbeat_ms` when set,
    /// else a sixth of `recovery.lease_ms`, so a shorter lease needs no
    /// second key.
    pub fn heartbeat(&self) -> Duration {
        let ms = self
            .heartbeat_ms
            .unwrap_or(self.lease_ms / HEARTBEATS_PER_LEASE)
            .max(1);
        Duration::from_millis(ms)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        positive("recovery.lease_ms", self.lease_ms)?;
        match self.heartbeat_ms {
            Some(heartbeat) if heartbeat == 0 || heartbeat.saturating_mul(2) >= self.lease_ms => Err(invalid(
                "recovery.heartbeat_ms",
                format!(
                    "must be positive and less than half of recovery.lease_ms ({}), got {heartbeat} \
                     (leave it unset to renew every lease_ms / {HEARTBEATS_PER_LEASE})",
                    self.lease_ms
                ),
            )),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[shutdown]` settings.
pub struct ShutdownSettings {
    /// How long in-flight jobs may run after SIGTERM before they are handed back (ms).
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[metrics]` settings.
pub struct MetricsSettings {
    /// Interval of the `conveyor::mailbox` log line (ms).
    pub log_interval_ms: u64,
    /// A mailbox deeper than this logs a warning.
    pub mailbox_high_water: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[api]` settings.
pub struct ApiSettings {
    /// Address of the API inside `conveyor worker`; empty = no API.
    pub bind: String,
    /// Bearer token every route but `/health` needs; empty = none.
    pub token: String,
    /// Largest request body (bytes).
    pub max_body_bytes: usize,
    /// How long a dashboard login lasts (ms).
    pub session_ttl_ms: u64,
    /// Most open client connections at once.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (ms).
    pub client_timeout_ms: u64,
    /// Idle time before a kept-alive connection is closed (ms); 0 = none.
    pub keep_alive_ms: u64,
    /// Longest one request may take, its body included (ms).
    pub request_timeout_ms: u64,
    /// Redis replicas that must acknowledge a job's enqueue before the API
    /// answers 202 (`WAIT`); 0 = answer once the master has it.
    pub redis_wait_replicas: u32,
    /// How long that acknowledgement may take (ms).
    pub redis_wait_timeout_ms: u64,
}

/// `[results]`: how long result rows are kept, and how pruning paces itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultSettings {
    /// `results.retention`: how long rows are kept ("30d"); empty = for ever.
    pub retention: String,
    /// `results.dead_retention`: the same for dead rows and dead letters; empty = `retention`.
    pub dead_retention: String,
    /// `results.prune_interval`: pause between passes; empty = min(retention, 60 s).
    pub prune_interval: String,
    /// `results.prune_batch`: rows per DELETE.
    pub prune_batch: usize,
    /// `results.prune_pause_ms`: shortest pause between two DELETEs (ms).
    pub prune_pause_ms: u64,
    /// `results.prune_duty`: share of the time a pass spends deleting; after
    /// a DELETE that took d it rests d × (1 − duty) / duty.
    pub prune_duty: f64,
}

impl ResultSettings {
    /// The retention rules; the error names the key at fault.
    pub fn policy(&self) -> Result<RetentionPolicy, ConfigError> {
        Ok(RetentionPolicy {
            retention: duration_key("results.retention", &self.retention)?,
            dead_retention: duration_key("results.dead_retention", &self.dead_retention)?,
        })
    }

    /// The pause between two pruning passes.
    pub fn interval(&self) -> Result<Duration, ConfigError> {
        let configured = duration_key("results.prune_interval", &self.prune_interval)?;
        Ok(self.policy()?.interval(configured))
    }

    /// How one pass deletes: batch size, pacing, and a lock that outlives a
    /// slow batch many times over; the error names the key at fault.
    pub fn prune_options(&self) -> Result<PruneOptions, ConfigError> {
        let floor = Duration::from_millis(self.prune_pause_ms);
        let pacing = Pacing::new(self.prune_duty, floor)
            .map_err(|e| invalid("results.prune_duty", e.to_string()))?;
        Ok(PruneOptions {
            batch: self.prune_batch,
            pacing,
            lock_ttl: PRUNE_LOCK_TTL,
        })
    }
}

/// How long the prune lock outlives its last renewal (after each batch).
const PRUNE_LOCK_TTL: Duration = Duration::from_secs(60);

fn duration_key(key: &str, text: &str) -> Result<Option<Duration>, ConfigError> {
    parse_duration(text).map_err(|e| invalid(key, e.to_string()))
}

/// Settings of the built-in kinds (`[kinds.*]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindSettings {
    /// `[kinds.http]`: the `http` and `gather` kinds.
    pub http: HttpKindSettings,
}

/// `[kinds.http]`: limits and the address guard of the `http` and `gather` kinds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpKindSettings {
    /// Largest response body one request reads (bytes).
    pub max_body_bytes: usize,
    /// Connect timeout of one request (ms).
    pub connect_timeout_ms: u64,
    /// Redirects followed at most.
    pub max_redirects: usize,
    /// Allow loopback, private, link-local and metadata addresses.
    pub allow_private: bool,
    /// Host names or addresses allowed even when they resolve to such addresses.
    pub allow_hosts: Vec<String>,
    /// Most requests one `gather` job may make.
    pub max_gather_requests: usize,
    /// How long a 429 without `Retry-After` holds its limiters back (ms).
    pub retry_after_default_ms: u64,
    /// Longest hold-back or retry delay a `Retry-After` may ask for (ms).
    pub retry_after_max_ms: u64,
}

impl Default for HttpKindSettings {
    /// The values of `config/default.toml` (a unit test keeps them equal).
    fn default() -> HttpKindSettings {
        HttpKindSettings {
            max_body_bytes: 10 * 1024 * 1024,
            connect_timeout_ms: 5000,
            max_redirects: 5,
            allow_private: false,
            allow_hosts: Vec::new(),
            max_gather_requests: 50,
            retry_after_default_ms: 1000,
            retry_after_max_ms: 3_600_000,
        }
    }
}

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: [&str; 3] = [
    "queues.names",
    "kinds.http.allow_hosts",
    "redis.cluster_nodes",
];

impl Settings {
    /// Defaults, then `file` (if any), then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(file, None)
    }

    /// Like [`Settings::load`], with the environment given explicitly (tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = defaults_builder();
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Source(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(config::File::from(path));
        }
        build(builder, env)
    }

    /// Defaults, then `toml` (the text of a config file), then `env` when
    /// given, else the process environment.
    pub fn load_from_str(
        toml: &str,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Settings, ConfigError> {
        let builder =
            defaults_builder().add_source(config::File::from_str(toml, config::FileFormat::Toml));
        build(builder, env)
    }

    /// Range and consistency checks that serde's types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("processors.count", self.processors.count as u64)?;
        positive("processors.concurrency", self.processors.concurrency as u64)?;
        positive("queues.claim_batch", self.queues.claim_batch as u64)?;
        positive("queues.max_in_flight", self.queues.max_in_flight as u64)?;
        positive("queues.idle_wait_ms", self.queues.idle_wait_ms)?;
        positive("queues.control_poll_ms", self.queues.control_poll_ms)?;
        positive("db.batch_size", self.db.batch_size as u64)?;
        positive(
            "db.max_concurrent_flushes",
            self.db.max_concurrent_flushes as u64,
        )?;
        positive("mysql.pool_max", self.mysql.pool_max as u64)?;
        positive("retry.max_attempts", u64::from(self.retry.max_attempts))?;
        positive("jobs.default_timeout_ms", self.jobs.default_timeout_ms)?;
        positive("limits.max_job_bytes", self.limits.max_job_bytes as u64)?;
        positive("scheduler.tick_ms", self.scheduler.tick_ms)?;
        positive(
            "scheduler.schedules_tick_ms",
            self.scheduler.schedules_tick_ms,
        )?;
        positive("scheduler.misfire_ms", self.scheduler.misfire_ms)?;
        positive("metrics.log_interval_ms", self.metrics.log_interval_ms)?;
        positive("redis.response_timeout_ms", self.redis.response_timeout_ms)?;
        positive("api.session_ttl_ms", self.api.session_ttl_ms)?;
        positive("api.max_body_bytes", self.api.max_body_bytes as u64)?;
        positive("api.max_connections", self.api.max_connections as u64)?;
        positive("api.client_timeout_ms", self.api.client_timeout_ms)?;
        positive("api.request_timeout_ms", self.api.request_timeout_ms)?;
        self.validate_replica_wait()?;
        self.validate_durations()?;
        if self.queues.claim_batch > MAX_SCRIPT_BATCH {
            return Err(invalid(
                "queues.claim_batch",
                format!(
                    "must be at most {}, got {}",
                    MAX_SCRIPT_BATCH, self.queues.claim_batch
                ),
            ));
        }
        if self.db.batch_size > MAX_DB_BATCH {
            return Err(invalid(
                "db.batch_size",
                format!("must be at most {MAX_DB_BATCH}, got {}", self.db.batch_size),
            ));
        }
        not_above(
            ("db.eager_flushes", self.db.eager_flushes),
            ("db.max_concurrent_flushes", self.db.max_concurrent_flushes),
        )?;
        not_above(
            ("db.max_concurrent_flushes", self.db.max_concurrent_flushes),
            ("mysql.pool_max", self.mysql.pool_max),
        )?;
        self.recovery.validate()?;
        positive(
            "kinds.http.max_body_bytes",
            self.kinds.http.max_body_bytes as u64,
        )?;
        positive(
            "kinds.http.connect_timeout_ms",
            self.kinds.http.connect_timeout_ms,
        )?;
        positive(
            "kinds.http.max_gather_requests",
            self.kinds.http.max_gather_requests as u64,
        )?;
        positive(
            "kinds.http.retry_after_max_ms",
            self.kinds.http.retry_after_max_ms,
        )?;
        if let Some(bad) = self
            .kinds
            .http
            .allow_hosts
            .iter()
            .find(|host| !is_plain_host(host))
        {
            return Err(invalid(
                "kinds.http.allow_hosts",
                format!(
                    "entries must be bare host names or IP addresses \
                     (no scheme, port, path or wildcard), got {bad:?}"
                ),
            ));
        }
        if self.retry.base_ms > self.retry.max_ms {
            return Err(invalid(
                "retry.base_ms",
                format!(
                    "must not exceed retry.max_ms ({}), got {}",
                    self.retry.max_ms, self.retry.base_ms
                ),
            ));
        }
        positive("results.prune_batch", self.results.prune_batch as u64)?;
        if self.results.prune_batch > MAX_PRUNE_BATCH {
            return Err(invalid(
                "results.prune_batch",
                format!(
                    "must be at most {MAX_PRUNE_BATCH}, got {}",
                    self.results.prune_batch
                ),
            ));
        }
        self.results.interval()?;
        self.results.prune_options()?;
        self.validate_names()?;
        self.schedules()?;
        self.limiters()?;
        Ok(())
    }

    /// The `[[limiters]]` entries, checked and compiled.
    pub fn limiters(&self) -> Result<Vec<Limiter>, ConfigError> {
        crate::limiters::compile_all(&self.limiters)
            .map_err(|e| invalid(&format!("limiters[{}].{}", e.limiter, e.key), e.message))
    }

    /// The `[[schedules]]` entries, checked and compiled.
    pub fn schedules(&self) -> Result<Vec<Schedule>, ConfigError> {
        compile_all(&self.schedules)
            .map_err(|e| invalid(&format!("schedules[{}].{}", e.schedule, e.key), e.message))
    }

    /// A replica wait shorter than the Redis response timeout, so the
    /// client does not give up on the `WAIT` before Redis answers it.
    fn validate_replica_wait(&self) -> Result<(), ConfigError> {
        if self.api.redis_wait_replicas == 0 {
            return Ok(());
        }
        let timeout = self.api.redis_wait_timeout_ms;
        if timeout == 0 || timeout >= self.redis.response_timeout_ms {
            return Err(invalid(
                "api.redis_wait_timeout_ms",
                format!(
                    "must be positive and less than redis.response_timeout_ms ({}) while \
                     api.redis_wait_replicas is set, got {timeout}",
                    self.redis.response_timeout_ms
                ),
            ));
        }
        Ok(())
    }

    /// Every `*_ms` key at most a year: a deadline further out than the
    /// clock can represent would stop the process that computes it.
    fn validate_durations(&self) -> Result<(), ConfigError> {
        let durations = [
            ("redis.response_timeout_ms", self.redis.response_timeout_ms),
            ("queues.idle_wait_ms", self.queues.idle_wait_ms),
            ("db.flush_ms", self.db.flush_ms),
            ("db.retry_base_ms", self.db.retry_base_ms),
            ("db.retry_max_ms", self.db.retry_max_ms),
            ("retry.base_ms", self.retry.base_ms),
            ("retry.max_ms", self.retry.max_ms),
            ("jobs.default_timeout_ms", self.jobs.default_timeout_ms),
            ("scheduler.tick_ms", self.scheduler.tick_ms),
            ("recovery.lease_ms", self.recovery.lease_ms),
            (
                "recovery.heartbeat_ms",
                self.recovery.heartbeat_ms.unwrap_or(0),
            ),
            ("shutdown.timeout_ms", self.shutdown.timeout_ms),
            ("metrics.log_interval_ms", self.metrics.log_interval_ms),
            ("api.session_ttl_ms", self.api.session_ttl_ms),
            ("api.client_timeout_ms", self.api.client_timeout_ms),
            ("api.keep_alive_ms", self.api.keep_alive_ms),
            ("api.request_timeout_ms", self.api.request_timeout_ms),
            (
                "kinds.http.connect_timeout_ms",
                self.kinds.http.connect_timeout_ms,
            ),
            (
                "kinds.http.retry_after_default_ms",
                self.kinds.http.retry_after_default_ms,
            ),
            (
                "kinds.http.retry_after_max_ms",
                self.kinds.http.retry_after_max_ms,
            ),
        ];
        match durations.iter().find(|(_, ms)| *ms > MAX_DURATION_MS) {
            Some((key, ms)) => Err(invalid(
                key,
                format!("must be at most {MAX_DURATION_MS} (one year), got {ms}"),
            )),
            None => Ok(()),
        }
    }

    fn validate_names(&self) -> Result<(), ConfigError> {
        if self.queues.names.is_empty() {
            return Err(invalid("queues.names", "must name at least one queue"));
        }
        if let Some(bad) = self.queues.names.iter().find(|n| !is_valid_queue_name(n)) {
            return Err(invalid(
                "queues.names",
                format!("entries must match [A-Za-z0-9_.-]{{1,64}}, got {bad:?}"),
            ));
        }
        if let Some((name, _)) = self.queues.weights.iter().find(|(_, w)| **w == 0) {
            return Err(invalid(
                &format!("queues.weights.{name}"),
                "must be a positive integer, got 0",
            ));
        }
        if let Some(name) = self
            .queues
            .weights
            .keys()
            .find(|name| !self.queues.names.contains(name))
        {
            return Err(invalid(
                &format!("queues.weights.{name}"),
                format!(
                    "names a queue that is not in queues.names {:?}",
                    self.queues.names
                ),
            ));
        }
        if self.redis.key_prefix.is_empty() || self.redis.key_prefix.contains(['{', '}']) {
            return Err(invalid(
                "redis.key_prefix",
                format!(
                    "must be non-empty and free of braces, got {:?}",
                    self.redis.key_prefix
                ),
            ));
        }
        let redis_url = url::Url::parse(&self.redis.url).map_err(|e| {
            invalid(
                "redis.url",
                format!("is not a URL ({e}): {}", redact_url(&self.redis.url)),
            )
        })?;
        let mut schemes = vec![redis_url.scheme().to_string()];
        if !self.redis.cluster_nodes.is_empty() {
            schemes = self.cluster_node_schemes()?;
        }
        if self.redis.tls_ca()?.is_some() && schemes.iter().any(|s| s != "rediss") {
            return Err(invalid(
                "redis.tls_ca_file",
                "is set, but the Redis URL (redis.url, or each of redis.cluster_nodes) \
                 does not use TLS (rediss://)",
            ));
        }
        self.mysql.tls_ca()?;
        mysql_async::Opts::from_url(&self.mysql.url).map_err(|e| {
            invalid(
                "mysql.url",
                format!("is not a MySQL URL ({e}): {}", redact_url(&self.mysql.url)),
            )
        })?;
        Ok(())
    }

    /// The scheme of every `redis.cluster_nodes` URL, which must be
    /// `redis://` or `rediss://` URLs.
    fn cluster_node_schemes(&self) -> Result<Vec<String>, ConfigError> {
        self.redis
            .cluster_nodes
            .iter()
            .map(|node| match url::Url::parse(node.trim()) {
                Ok(url) if ["redis", "rediss"].contains(&url.scheme()) => {
                    Ok(url.scheme().to_string())
                }
                _ => Err(invalid(
                    "redis.cluster_nodes",
                    format!(
                        "entries must be redis:// or rediss:// URLs, got {:?}",
                        redact_url(node)
                    ),
                )),
            })
            .collect()
    }

    /// Concurrent job slots of the processor pool.
    pub fn processor_slots(&self) -> usize {
        self.processors.count * self.processors.concurrency
    }

    /// The lease length as a duration.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.recovery.lease_ms)
    }
}

type Builder = config::ConfigBuilder<config::builder::DefaultState>;

fn defaults_builder() -> Builder {
    config::Config::builder().add_source(config::File::from_str(
        DEFAULT_TOML,
        config::FileFormat::Toml,
    ))
}

/// Adds the environment (`env`, or the process's) on top and validates.
fn build(
    builder: Builder,
    env: Option<std::collections::HashMap<String, String>>,
) -> Result<Settings, ConfigError> {
    let mut environment = config::Environment::with_prefix("CONVEYOR")
        .prefix_separator("__")
        .separator("__")
        .list_separator(",")
        .try_parsing(true);
    for key in LIST_KEYS {
        environment = environment.with_list_parse_key(key);
    }
    if let Some(vars) = env {
        environment = environment.source(Some(vars.into_iter().collect()));
    }
    let raw = builder
        .add_source(environment)
        .build()
        .map_err(describe_source_error)?;
    let settings: Settings = raw.try_deserialize().map_err(describe_source_error)?;
    settings.validate()?;
    Ok(settings)
}

/// Whether `host` is a bare host name or IP address, as `allow_hosts` needs:
/// `api.example.com`, `localhost`, `10.0.0.5` or `::1` (brackets allowed).
/// Names are ASCII (write internationalised names in their `xn--` form).
fn is_plain_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Rows one pruning DELETE may remove at most: larger batches hold their
/// row locks long enough to stall the writers.
pub const MAX_PRUNE_BATCH: usize = 10_000;

/// Longest duration any `*_ms` key may hold: one year, the same bound as a
/// job's `timeout_ms`.
pub const MAX_DURATION_MS: u64 = crate::job::MAX_TIMEOUT_MS;

fn positive(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(invalid(key, "must be a positive integer, got 0"));
    }
    Ok(())
}

/// A setting that must not exceed another: each given as (key, value).
fn not_above(
    (key, value): (&str, usize),
    (limit_key, limit): (&str, usize),
) -> Result<(), ConfigError> {
    if value > limit {
        return Err(invalid(
            key,
            format!("must not exceed {limit_key} ({limit}), got {value}"),
        ));
    }
    Ok(())
}

/// Turns the config crate's errors into messages that name the key first.
fn describe_source_error(error: config::ConfigError) -> ConfigError {
    match error {
        config::ConfigError::Type {
            key: Some(key),
            unexpected,
            expected,
            ..
        } => invalid(
            &key,
            format!("must be {}, got {unexpected}", article(expected)),
        ),
        other => ConfigError::Source(redact_secrets_in(&other.to_string())),
    }
}

fn article(expected: &str) -> String {
    match expected {
        "an integer" | "a boolean" | "a string" => expected.to_string(),
        e if e.starts_with(['u', 'i']) => "a positive integer".to_string(),
        e => format!("of type {e}"),
    }
}

/// A hint naming the setting to check when a connection error looks like a
/// TLS failure (an untrusted or mismatched certificate); empty otherwise.
pub fn tls_hint(error: &str, key: &str) -> String {
    let lower = error.to_ascii_lowercase();
    let tls = ["certificate", "tls", "ssl", "handshake", "unknownissuer"]
        .iter()
        .any(|word| lower.contains(word));
    if tls {
        format!(" (a TLS failure: check {key})")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_with_env(None, Some(env))
    }

    #[test]
    fn defaults_are_valid() {
        let settings = load(&[]).expect("defaults load");
        assert_eq!(settings.queues.names, vec!["default".to_string()]);
        assert_eq!(settings.limits.max_job_bytes, 1 << 20);
    }

    #[test]
    fn environment_overrides_defaults() {
        let settings = load(&[
            ("CONVEYOR__PROCESSORS__COUNT", "32"),
            ("CONVEYOR__QUEUES__NAMES", "a,b.c"),
        ])
        .expect("valid overrides");
        assert_eq!(settings.processors.count, 32);
        assert_eq!(
            settings.queues.names,
            vec!["a".to_string(), "b.c".to_string()]
        );
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = load(&[("CONVEYOR__PROCESSORS__COUNT", "abc")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("processors.count"), "{text}");
        assert!(text.contains("abc"), "{text}");
    }

    #[test]
    fn eager_flushes_beyond_the_concurrent_flushes_names_the_key() {
        let err = load(&[("CONVEYOR__DB__EAGER_FLUSHES", "5")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "db.eager_flushes must not exceed db.max_concurrent_flushes (4), got 5"
        );
        let settings = load(&[("CONVEYOR__DB__EAGER_FLUSHES", "0")]).expect("0 is valid");
        assert_eq!(settings.db.eager_flushes, 0);
    }

    #[test]
    fn zero_names_the_key() {
        let err = load(&[("CONVEYOR__DB__BATCH_SIZE", "0")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "db.batch_size must be a positive integer, got 0"
        );
    }

    #[test]
    fn bad_queue_name_names_the_key() {
        let err = load(&[("CONVEYOR__QUEUES__NAMES", "ok,no spaces")]).unwrap_err();
        assert!(err.to_string().starts_with("queues.names"), "{err}");
    }

    #[test]
    fn queue_order_settings_are_validated() {
        let settings = load(&[
            ("CONVEYOR__QUEUES__NAMES", "a,b"),
            ("CONVEYOR__QUEUES__MODE", "strict"),
        ])
        .expect("strict");
        assert_eq!(settings.queues.mode, crate::queue_order::QueueMode::Strict);
        assert_eq!(settings.queues.weight_list(), [1, 1]);
        let err = load(&[("CONVEYOR__QUEUES__MODE", "random")]).unwrap_err();
        assert!(err.to_string().contains("queues.mode"), "{err}");
        let file = tempfile_with("[queues]\nnames = [\"a\", \"b\"]\n[queues.weights]\na = 3\n");
        let settings = Settings::load(Some(file.path())).expect("weights");
        assert_eq!(settings.queues.weight_list(), [3, 1]);
        let file = tempfile_with("[queues.weights]\nother = 2\n");
        let err = Settings::load(Some(file.path())).unwrap_err();
        assert!(err.to_string().starts_with("queues.weights.other"), "{err}");
        let file = tempfile_with("[queues.weights]\ndefault = 0\n");
        let err = Settings::load(Some(file.path())).unwrap_err();
        assert!(
            err.to_string().starts_with("queues.weights.default"),
            "{err}"
        );
    }

    /// A config file holding `text`, removed when dropped.
    fn tempfile_with(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("temp file");
        std::fs::write(file.path(), text).expect("write config");
        file
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = load(&[("CONVEYOR__PROCESSORS__COUNTT", "3")]).unwrap_err();
        assert!(err.to_string().contains("countt"), "{err}");
    }

    #[test]
    fn http_kind_defaults_match_the_default_file() {
        let settings = load(&[]).expect("defaults load");
        assert_eq!(settings.kinds, KindSettings::default());
    }

    #[test]
    fn http_kind_settings_are_validated() {
        let err = load(&[("CONVEYOR__KINDS__HTTP__MAX_BODY_BYTES", "0")]).unwrap_err();
        assert!(
            err.to_string().starts_with("kinds.http.max_body_bytes"),
            "{err}"
        );
        let err =
            load(&[("CONVEYOR__KINDS__HTTP__ALLOW_HOSTS", "ok.example,http://x")]).unwrap_err();
        assert!(
            err.to_string().starts_with("kinds.http.allow_hosts"),
            "{err}"
        );
        let settings = load(&[
            (
                "CONVEYOR__KINDS__HTTP__ALLOW_HOSTS",
                "localhost,10.0.0.5,::1",
            ),
            ("CONVEYOR__KINDS__HTTP__ALLOW_PRIVATE", "true"),
        ])
        .expect("valid hosts");
        assert_eq!(settings.kinds.http.allow_hosts.len(), 3);
        assert!(settings.kinds.http.allow_private);
    }

    /// The commented `[[schedules]]` example of the default file, uncommented.
    fn schedule_example() -> String {
        example("# [[schedules]]\n")
    }

    /// The commented example that starts with `header`, up to the next blank line, uncommented.
    fn example(header: &str) -> String {
        let start = DEFAULT_TOML
            .find(header)
            .expect("example in the default file");
        DEFAULT_TOML[start..]
            .lines()
            .take_while(|line| !line.trim().is_empty())
            .map(|line| line.trim_start_matches('#').trim_start())
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn load_file(text: &str) -> Result<Settings, ConfigError> {
        let mut file = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("temp file");
        std::io::Write::write_all(&mut file, text.as_bytes()).expect("write");
        Settings::load_with_env(Some(file.path()), Some(HashMap::new()))
    }

    #[test]
    fn the_schedule_example_loads() {
        let settings = load_file(&schedule_example()).expect("example is valid");
        let schedules = settings.schedules().expect("compiles");
        assert_eq!(schedules.len(), 1);
        assert_eq!(schedules[0].name, "nightly-report");
        assert_eq!(schedules[0].timezone, chrono_tz::Europe::Berlin);
        assert_eq!(schedules[0].payload["method"], "POST");
        assert!(load(&[]).expect("defaults").schedules.is_empty());
    }

    #[test]
    fn a_bad_schedule_names_itself_and_the_key() {
        let text = schedule_example().replace("30 2 * * *", "30 2 * *");
        let err = load_file(&text).expect_err("refused").to_string();
        assert!(
            err.starts_with("schedules[nightly-report].cron must have 5 fields"),
            "{err}"
        );
        let text = schedule_example().replace("kind = ", "knd = ");
        let err = load_file(&text).expect_err("refused").to_string();
        assert!(err.contains("knd"), "{err}");
    }

    #[test]
    fn retention_defaults_keep_everything() {
        let settings = load(&[]).expect("defaults load");
        let policy = settings.results.policy().expect("valid");
        assert!(!policy.is_active());
        assert_eq!(
            settings.results.interval().expect("valid"),
            crate::retention::DEFAULT_PRUNE_INTERVAL
        );
    }

    #[test]
    fn retention_settings_are_parsed() {
        let settings = load(&[
            ("CONVEYOR__RESULTS__RETENTION", "30d"),
            ("CONVEYOR__RESULTS__DEAD_RETENTION", "90d"),
            ("CONVEYOR__RESULTS__PRUNE_INTERVAL", "10s"),
        ])
        .expect("valid retention");
        let policy = settings.results.policy().expect("valid");
        assert_eq!(policy.retention, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(
            policy.dead_retention,
            Some(Duration::from_secs(90 * 86_400))
        );
        assert_eq!(
            settings.results.interval().expect("valid"),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn bad_retention_names_the_key() {
        for key in ["RETENTION", "DEAD_RETENTION", "PRUNE_INTERVAL"] {
            let var = format!("CONVEYOR__RESULTS__{key}");
            let err = load(&[(var.as_str(), "a month")]).unwrap_err().to_string();
            let name = format!("results.{}", key.to_lowercase());
            assert!(err.starts_with(&name), "{err}");
            assert!(err.contains("a month"), "{err}");
        }
        let err = load(&[("CONVEYOR__RESULTS__PRUNE_BATCH", "100000")]).unwrap_err();
        assert!(err.to_string().starts_with("results.prune_batch"), "{err}");
    }

    #[test]
    fn prune_duty_is_a_fraction_and_a_bad_one_names_the_key() {
        let settings = load(&[("CONVEYOR__RESULTS__PRUNE_DUTY", "0.25")]).expect("valid");
        let options = settings.results.prune_options().expect("valid");
        assert_eq!(
            options.pacing.rest_after(Duration::from_millis(100)),
            Duration::from_millis(300)
        );
        for bad in ["0", "1.5", "-0.1", "a tenth"] {
            let err = load(&[("CONVEYOR__RESULTS__PRUNE_DUTY", bad)]).unwrap_err();
            assert!(
                err.to_string().contains("results.prune_duty"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_replica_wait_must_end_before_the_redis_response_timeout() {
        let replicas = ("CONVEYOR__API__REDIS_WAIT_REPLICAS", "1");
        let err = load(&[replicas, ("CONVEYOR__API__REDIS_WAIT_TIMEOUT_MS", "5000")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("api.redis_wait_timeout_ms must be"),
            "{err}"
        );
        let err = load(&[replicas, ("CONVEYOR__API__REDIS_WAIT_TIMEOUT_MS", "0")]).unwrap_err();
        assert!(
            err.to_string().contains("redis.response_timeout_ms"),
            "{err}"
        );
        let settings = load(&[replicas]).expect("the default wait is valid");
        assert_eq!(settings.api.redis_wait_timeout_ms, 500);
        assert!(load(&[("CONVEYOR__API__REDIS_WAIT_TIMEOUT_MS", "0")]).is_ok());
    }

    #[test]
    fn tls_ca_files_must_hold_a_certificate() {
        let err = load(&[("CONVEYOR__MYSQL__TLS_CA_FILE", "/nonexistent/ca.pem")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("mysql.tls_ca_file cannot be read"),
            "{err}"
        );
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut file, b"not a certificate").expect("write");
        let path = file.path().to_str().expect("utf8 path").to_string();
        let path = path.as_str();
        let err = load(&[
            ("CONVEYOR__REDIS__URL", "rediss://127.0.0.1:6380"),
            ("CONVEYOR__REDIS__TLS_CA_FILE", path),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("redis.tls_ca_file holds no PEM"),
            "{err}"
        );
        std::io::Write::write_all(&mut file, b"\n-----BEGIN CERTIFICATE-----\n").expect("write");
        let err = load(&[("CONVEYOR__REDIS__TLS_CA_FILE", path)]).unwrap_err();
        assert!(err.to_string().contains("rediss://"), "{err}");
        let settings = load(&[
            ("CONVEYOR__REDIS__URL", "rediss://u:pw@127.0.0.1:6380"),
            ("CONVEYOR__REDIS__TLS_CA_FILE", path),
            ("CONVEYOR__MYSQL__TLS_CA_FILE", path),
        ])
        .expect("valid TLS settings");
        assert!(settings.redis.tls_ca().expect("readable").is_some());
    }

    #[test]
    fn cluster_nodes_are_a_list_of_redis_urls() {
        let settings = load(&[(
            "CONVEYOR__REDIS__CLUSTER_NODES",
            "redis://h1:7000,redis://h2:7001",
        )])
        .expect("valid nodes");
        assert_eq!(settings.redis.cluster_nodes.len(), 2);
        let err = load(&[(
            "CONVEYOR__REDIS__CLUSTER_NODES",
            "redis://h1:7000,http://u:secret@h2:7001",
        )])
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("redis.cluster_nodes entries must be"),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn tls_failures_name_the_setting() {
        let hint = tls_hint(
            "invalid peer certificate: UnknownIssuer",
            "mysql.tls_ca_file",
        );
        assert_eq!(hint, " (a TLS failure: check mysql.tls_ca_file)");
        assert_eq!(tls_hint("Connection refused (os error 111)", "x"), "");
    }

    #[test]
    fn the_limiter_example_loads_and_bad_limiters_name_the_key() {
        let text = example("# [[limiters]]\n");
        let settings = load_file(&text).expect("example is valid");
        let limiters = settings.limiters().expect("compiles");
        assert_eq!(limiters.len(), 1);
        assert_eq!(limiters[0].name, "partner-api");
        assert_eq!(limiters[0].rate.map(|r| r.count), Some(100));
        assert!(load(&[]).expect("defaults").limiters.is_empty());
        let err = load_file(&text.replace("100/1s", "100 per second"))
            .expect_err("refused")
            .to_string();
        assert!(
            err.starts_with("limiters[partner-api].rate must be"),
            "{err}"
        );
        let err = load_file(&text.replace("concurrency = 10", "concurrency = -1"))
            .expect_err("refused")
            .to_string();
        assert!(
            err.starts_with("limiters[partner-api].concurrency"),
            "{err}"
        );
        let twice = format!("{text}\n{text}");
        let err = load_file(&twice).expect_err("refused").to_string();
        assert!(err.starts_with("limiters[partner-api].name"), "{err}");
    }

    #[test]
    fn the_heartbeat_follows_a_shorter_lease() {
        let settings = load(&[("CONVEYOR__RECOVERY__LEASE_MS", "3000")]).expect("a lease alone");
        assert_eq!(settings.recovery.heartbeat(), Duration::from_millis(500));
        let settings = load(&[]).expect("defaults");
        assert_eq!(settings.recovery.heartbeat(), Duration::from_millis(5000));
    }

    #[test]
    fn an_explicit_heartbeat_is_kept_and_checked_against_the_lease() {
        let settings = load(&[("CONVEYOR__RECOVERY__HEARTBEAT_MS", "250")]).expect("valid");
        assert_eq!(settings.recovery.heartbeat(), Duration::from_millis(250));
        let err = load(&[
            ("CONVEYOR__RECOVERY__LEASE_MS", "3000"),
            ("CONVEYOR__RECOVERY__HEARTBEAT_MS", "5000"),
        ])
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("recovery.heartbeat_ms must be"), "{text}");
        assert!(text.contains("got 5000"), "{text}");
        let err = load(&[("CONVEYOR__RECOVERY__LEASE_MS", "0")]).unwrap_err();
        assert!(err.to_string().starts_with("recovery.lease_ms"), "{err}");
    }

    #[test]
    fn bad_mysql_url_is_redacted_in_the_error() {
        let err = load(&[("CONVEYOR__MYSQL__URL", "postgres://u:topsecret@h/db")]).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("mysql.url"), "{text}");
        assert!(!text.contains("topsecret"), "{text}");
    }
}
