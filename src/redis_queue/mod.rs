//! Every Redis key and script conveyor uses, as plain async functions.
//!
//! This module owns the job lifecycle inside Redis. It must never know about
//! actors, MySQL or handlers; and every script touches the keys of one queue's
//! hash tag only, so the layout works on Redis Cluster.
//!
//! # Keys of queue `q` (prefix `P`, braces literal: the cluster hash tag)
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{q}:pending` | list | producers' messages (`LPUSH`), taken oldest first (`RPOP`) |
//! | `P:{q}:ready` | list | claim tokens due again: retries, recovered and handed-back jobs; claimed before `pending` |
//! | `P:{q}:jobs` | hash | token → message, for jobs in `ready` or `scheduled` |
//! | `P:{q}:scheduled` | zset | token → due time (unix ms): retries and `run_at` jobs |
//! | `P:{q}:attempts` | hash | token → attempts already made (absent = 0) |
//! | `P:{q}:errors` | hash | token → the last attempt's error |
//! | `P:{q}:wip:<worker>` | hash | token → message, for the jobs one worker holds |
//! | `P:{q}:workers` | zset | worker id → lease deadline (unix ms) |
//! | `P:{q}:ids` | hash | job id → claim token, for claimed jobs whose message starts with `{"id":"` |
//! | `P:{q}:accepted` | hash | job id → accepted time, for jobs the HTTP API took and no worker finished yet |
//! | `P:{q}:paused` | string | set while the queue is paused (the time it was paused) |
//! | `P:{q}:cancel` | hash | token → cancel time, for cancelled jobs whose row is not written yet |
//! | `P:{q}:cancelled` | list | tokens of cancelled jobs waiting for their `cancelled` row (message in `jobs`) |
//! | `P:{q}:signal:<worker>` | set | tokens a worker holds that were cancelled while it ran them |
//! | `P:{q}:unique:<key>` | string | the id of the job holding `unique_key` `<key>` |
//! | `P:{q}:unique_tokens` | hash | claim token → (job id, hold-until, lock key) of jobs holding a unique lock |
//! | `P:{q}:schedule:<name>` | hash | a schedule's state: last tick handled, fingerprint, pause, latest tick's id |
//! | `P:{q}:keys` | list | the ring of job keys whose lists hold waiting jobs (front at the right) |
//! | `P:{q}:key:<key>` | list | claim tokens of one job key's waiting jobs, oldest at the right (message in `jobs`) |
//! | `P:{q}:keyed` | string | how many jobs wait in key lists |
//! | `P:{q}:slotted` | hash | token → the limiter slot sets it holds (one per line), for running jobs that hold a slot |
//! | `P:{q}:limited` | hash | limiter → jobs it held back at the latest limited claim (for `GET /limiters`) |
//! | `P:limiters` | hash | limiter name → its definition (JSON) set at run time by `PUT /limiters/{name}` |
//! | `P:{q}:freed` | list | a short signal list: pushed when slots are released, for workers waiting on a full limiter |
//! | `P:{q}:limiter:<name>:slots` | zset | token → claim time (ms): the concurrency slots of a limiter with `queue = q` |
//! | `P:{q}:limiter:<name>:window:<n>` | string | starts in the rate window n (expires after two windows) |
//! | `P:{q}:limiter:<name>:held` | string | present while a rate-limited job holds the limiter back (expires by itself) |
//! | `P:{q}:limiter:<name>:key:<key>:…` | | the same per job key (`per_key_concurrency`, `per_key_rate`) |
//! | `P:limiter:{<name>}:…` | | the same for a limiter without a `queue` (its own hash tag; see docs/limiters.md) |
//!
//! A job lives in exactly one of `pending`, `ready`+`jobs`, a key list+`jobs`, `scheduled`+`jobs`,
//! `cancelled`+`jobs` or one worker's `wip`; every move between them is one atomic script. A job
//! leaves Redis only through [`RedisQueue::ack`], after its row is committed.
//!
//! Outside any queue: `P:lock:<name>` (string, owner id, with a TTL) is a
//! lock that one process at a time holds, e.g. `P:lock:prune` while it prunes
//! old results.
//!
//! # Layout
//!
//! - this file: the types, key names, opening connections and whole-queue administration;
//! - `connection`: one server or a cluster behind one connection type;
//! - `scripts`: the Lua scripts, one atomic move each;
//! - `lifecycle`: every call that moves a job between those keys;
//! - `inspect`: read-only views (a job's state, depths, leases);
//! - `browse`: paged read-only listings of a queue's jobs (the dashboard);
//! - `stats`: throughput history and worker beacons (`P:{stats}:*` keys);
//! - `control`: pause flags and cancel marks;
//! - `locks`: named locks with a TTL (pruning);
//! - `replicas`: writes followed by a `WAIT` for replicas (API intake);
//! - `schedules`: schedule state and the script that enqueues due ticks;
//! - `unique`: unique locks, taken on enqueue or claim and released on ack.
//! - `limits`, `limit_scripts`: the claim under limiters and the release of slots.

mod browse;
mod connection;
mod control;
mod fair_scripts;
mod inspect;
mod lifecycle;
mod limit_scripts;
mod limits;
mod locks;
mod replicas;
mod schedules;
mod scripts;
mod stats;
mod unique;

pub use browse::{list_bounds, FoundMessage, ListedJob, PageRequest};
pub use replicas::ReplicaAcks;
pub use stats::{minute_of, Throughput, WorkerBeacon, BEACON_TTL_MS, MINUTE_TTL_MS};
pub use unique::UniqueHolder;

pub use limits::{wait_for_released_slot, HeldBack, LIMIT_RECHECK_MS};

use std::sync::Arc;
use std::time::Duration;

use connection::LazyCluster;
pub use connection::RedisConn;

use crate::config::RedisSettings;
use crate::job::ClaimedJob;
use crate::limits::MAX_SCRIPT_BATCH;
use crate::redact::redact_url;

pub use control::{CancelState, QueueControl};

/// A Redis operation that failed; the job it concerned is still safe in Redis.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    /// A command failed or the connection broke.
    Redis(#[from] redis::RedisError),
    #[error("redis URL {url}: {source}")]
    /// The URL cannot be used.
    Url {
        /// The URL, password masked.
        url: String,
        /// Why.
        source: redis::RedisError,
    },
    #[error("redis returned an unexpected reply: {0}")]
    /// Redis answered something conveyor did not expect.
    Protocol(String),
    /// The CA file of `redis.tls_ca_file` cannot be used.
    #[error(transparent)]
    Tls(crate::config::ConfigError),
}

/// Depth of one queue, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepths {
    /// Waiting to start: producers' messages plus jobs due again.
    pub pending: u64,
    /// Held by a worker (claimed, running or waiting for their row to commit).
    pub running: u64,
    /// Waiting for their time: retries with backoff and `run_at` jobs.
    pub scheduled: u64,
    /// No worker starts the queue's jobs until it is resumed.
    pub paused: bool,
}

/// A job's state in Redis (before its row is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// `queued`, `running` or `retrying`.
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: Option<String>,
}

/// What one claim took.
#[derive(Debug)]
pub struct Claimed {
    /// The jobs claimed, in order.
    pub jobs: Vec<ClaimedJob>,
    /// Whether the worker held a lease before this claim. `false` for a
    /// worker that holds jobs means it had been presumed dead meanwhile.
    pub lease_was_held: bool,
    /// The queue is paused: only cancelled jobs (which never start) were taken.
    pub paused: bool,
    /// Jobs a limiter held back (they stay queued), if any.
    pub held_back: Option<HeldBack>,
    /// Key lists are in use and `pending` still holds messages this claim
    /// did not sort: the worker should sort them at once
    /// ([`RedisQueue::sort_pending`]), so that a job of a light key pushed
    /// behind a long backlog joins the round-robin without waiting one
    /// claim per sort batch.
    pub unsorted_backlog: bool,
}

/// A job going back to `scheduled`: after a failed attempt, or not yet due.
#[derive(Debug, Clone)]
pub struct Reschedule {
    /// The job's claim token.
    pub token: String,
    /// When it may run again (unix ms).
    pub due_ms: i64,
    /// Attempts made and the error, after a failed attempt; `None` when the
    /// job did not start (its `run_at` lies ahead) or reported a rate limit.
    pub failure: Option<(u32, String)>,
    /// The job reported a rate limit: what it holds back, and how long.
    pub hold: Option<crate::limiters::RateHold>,
}

/// Names of one queue's keys.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    /// `P:{q}:pending`, where producers push.
    pub pending: String,
    ready: String,
    jobs: String,
    scheduled: String,
    attempts: String,
    errors: String,
    workers: String,
    ids: String,
    accepted: String,
    paused: String,
    cancel: String,
    cancelled: String,
    slotted: String,
    freed: String,
    limited: String,
    /// `P:{q}:keys`: the ring of job keys with jobs waiting in their lists.
    ring: String,
    /// `P:{q}:keyed`: how many jobs wait in key lists.
    keyed: String,
    /// `P:{q}:key:`; a job key completes it (the list of that key's jobs).
    key_prefix: String,
    /// `P:{q}:limiter:`; a limiter's name completes it.
    limiter_prefix: String,
    /// `P:{q}:wip:`; a worker's id completes it.
    wip_prefix: String,
    /// `P:{q}:signal:`; a worker's id completes it.
    signal_prefix: String,
}

impl QueueKeys {
    /// The key names of `queue` under `prefix`.
    pub fn new(prefix: &str, queue: &str) -> QueueKeys {
        let base = format!("{prefix}:{{{queue}}}");
        QueueKeys {
            pending: format!("{base}:pending"),
            ready: format!("{base}:ready"),
            jobs: format!("{base}:jobs"),
            scheduled: format!("{base}:scheduled"),
            attempts: format!("{base}:attempts"),
            errors: format!("{base}:errors"),
            workers: format!("{base}:workers"),
            ids: format!("{base}:ids"),
            accepted: format!("{base}:accepted"),
            paused: format!("{base}:paused"),
            cancel: format!("{base}:cancel"),
            cancelled: format!("{base}:cancelled"),
            slotted: format!("{base}:slotted"),
            freed: format!("{base}:freed"),
            limited: format!("{base}:limited"),
            ring: format!("{base}:keys"),
            keyed: format!("{base}:keyed"),
            key_prefix: format!("{base}:key:"),
            limiter_prefix: format!("{base}:limiter:"),
            wip_prefix: format!("{base}:wip:"),
            signal_prefix: format!("{base}:signal:"),
        }
    }

    fn wip(&self, worker: &str) -> String {
        format!("{}{worker}", self.wip_prefix)
    }

    fn signal(&self, worker: &str) -> String {
        format!("{}{worker}", self.signal_prefix)
    }
}

/// The Redis side of conveyor: cheap to clone, reconnects by itself.
#[derive(Clone)]
pub struct RedisQueue {
    target: Arc<Target>,
    conn: RedisConn,
    prefix: Arc<str>,
}

/// Where new connections go: one server, or a cluster (with a second client
/// whose commands may block for as long as a wait lasts).
enum Target {
    Single {
        client: redis::Client,
        response_timeout: Duration,
    },
    Cluster {
        waiters: redis::cluster::ClusterClient,
    },
}

impl std::fmt::Debug for RedisQueue {
    /// The prefix only: the connection holds the URL, which may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisQueue {
    /// Prepares a connection that is opened on first use and reopened after
    /// failures, so a worker can start while Redis is still down: to the
    /// cluster of `redis.cluster_nodes` when it is set, else to `redis.url`.
    /// `rediss://` URLs are checked against `redis.tls_ca_file` when set.
    pub fn connect(settings: &RedisSettings) -> Result<RedisQueue, QueueError> {
        let response_timeout = Duration::from_millis(settings.response_timeout_ms);
        let certs = settings.tls_ca().map_err(QueueError::Tls)?;
        let (target, conn) = if settings.cluster_nodes.is_empty() {
            single(&settings.url, certs, response_timeout)?
        } else {
            cluster(&settings.cluster_nodes, certs, response_timeout)?
        };
        Ok(RedisQueue {
            target: Arc::new(target),
            conn,
            prefix: settings.key_prefix.as_str().into(),
        })
    }

    /// The key names of `queue`.
    pub fn keys(&self, queue: &str) -> QueueKeys {
        QueueKeys::new(&self.prefix, queue)
    }

    /// Whether Redis answers (for readiness checks).
    pub async fn ping(&self) -> Result<(), QueueError> {
        let reply: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(QueueError::Protocol(format!("PING answered {reply:?}")))
        }
    }

    /// Deletes every key of `queue` (benchmarks and tests); workers holding
    /// its jobs must be stopped first.
    pub async fn delete_queue(&self, queue: &str) -> Result<(), QueueError> {
        let keys = self.keys(queue);
        let workers = self.workers(queue).await?;
        let mut doomed: Vec<String> = workers
            .iter()
            .flat_map(|(w, _)| [keys.wip(w), keys.signal(w)])
            .collect();
        let job_keys: Vec<String> = redis::cmd("LRANGE")
            .arg(&keys.ring)
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn.clone())
            .await?;
        doomed.extend(job_keys.iter().map(|k| format!("{}{k}", keys.key_prefix)));
        doomed.extend(control::control_keys(&keys));
        doomed.extend([
            keys.pending.clone(),
            keys.ready.clone(),
            keys.jobs.clone(),
            keys.scheduled.clone(),
            keys.attempts.clone(),
            keys.errors.clone(),
            keys.workers.clone(),
            keys.ids.clone(),
            keys.accepted.clone(),
            self.unique_registry(queue),
            keys.slotted.clone(),
            keys.freed.clone(),
            keys.limited.clone(),
            keys.ring.clone(),
            keys.keyed.clone(),
        ]);
        let _: () = redis::cmd("DEL")
            .arg(doomed)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Whether this speaks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(*self.target, Target::Cluster { .. })
    }

    /// A connection of its own for blocking waits (a blocking command would
    /// stall every other command on the shared connection), without a
    /// response timeout shorter than the wait.
    pub async fn waiter(&self) -> Result<RedisConn, QueueError> {
        Ok(match &*self.target {
            Target::Single {
                client,
                response_timeout,
            } => RedisConn::single(client, None, *response_timeout)?,
            Target::Cluster { waiters } => RedisConn::Cluster(LazyCluster::new(waiters.clone())),
        })
    }
}

/// A lazy connection to the server of `url`.
fn single(
    url: &str,
    certs: Option<Vec<u8>>,
    response_timeout: Duration,
) -> Result<(Target, RedisConn), QueueError> {
    let bad_url = |source| QueueError::Url {
        url: redact_url(url),
        source,
    };
    let client = match certs {
        Some(root_cert) => redis::Client::build_with_tls(url, tls_certificates(root_cert)),
        None => redis::Client::open(url),
    }
    .map_err(bad_url)?;
    let conn = RedisConn::single(&client, Some(response_timeout), response_timeout)?;
    let target = Target::Single {
        client,
        response_timeout,
    };
    Ok((target, conn))
}

/// How long a cluster wait may block at most, plus slack: above any
/// `queues.idle_wait_ms` a worker uses.
const CLUSTER_WAIT_TIMEOUT: Duration = Duration::from_secs(3600);

/// A lazy connection to the cluster that `nodes` belong to.
fn cluster(
    nodes: &[String],
    certs: Option<Vec<u8>>,
    response_timeout: Duration,
) -> Result<(Target, RedisConn), QueueError> {
    let build = |timeout: Duration| {
        let mut builder = redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str))
            .connection_timeout(response_timeout)
            .response_timeout(timeout)
            .retries(4);
        if let Some(root_cert) = certs.clone() {
            builder = builder.certs(tls_certificates(root_cert));
        }
        builder.build().map_err(|source| QueueError::Url {
            url: nodes
                .iter()
                .map(|n| redact_url(n))
                .collect::<Vec<_>>()
                .join(","),
            source,
        })
    };
    let conn = RedisConn::Cluster(LazyCluster::new(build(response_timeout)?));
    let waiters = build(CLUSTER_WAIT_TIMEOUT)?;
    Ok((Target::Cluster { waiters }, conn))
}

fn tls_certificates(root_cert: Vec<u8>) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    }
}

/// Blocks until `queue`'s pending list is non-empty or `timeout` passes,
/// without taking anything: `BLMOVE` of a list onto its own tail is a no-op
/// once it returns. `Ok(true)` when a message is waiting.
pub async fn wait_for_message(
    conn: &mut RedisConn,
    keys: &QueueKeys,
    timeout: Duration,
) -> Result<bool, QueueError> {
    let reply: Option<Vec<u8>> = redis::cmd("BLMOVE")
        .arg(&keys.pending)
        .arg(&keys.pending)
        .arg("RIGHT")
        .arg("RIGHT")
        .arg(timeout.as_secs_f64())
        .query_async(conn)
        .await?;
    Ok(reply.is_some())
}
