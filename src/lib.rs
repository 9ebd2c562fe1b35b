//! conveyor: background jobs from Redis queues, processed by an actix actor
//! pipeline, with every result stored in MySQL/MariaDB.
//!
//! Producers in any language `LPUSH conveyor:{<queue>}:pending '<envelope>'`;
//! a worker claims jobs in batches, runs them on a pool of processor threads
//! and writes one `job_results` row per job id, acknowledging a job in Redis
//! only after its row is committed (at-least-once delivery, exactly one row).
//!
//! # Layout
//!
//! - [`config`]: settings (defaults, file, `CONVEYOR__*` env), validation.
//! - [`job`]: the envelope, its validation, outcomes (no I/O).
//! - [`redis_queue`]: every Redis key and script (no actors).
//! - `job_queue`: the queue side of one worker as a trait, over Redis (and in memory for tests).
//! - `backoff`: the one exponential backoff (job retries, DB writes, claims, start-up).
//! - [`redact`]: masking passwords in URLs and errors (a leaf: everyone may use it).
//! - `limits`: hard limits shared by the settings check and the stores (a leaf).
//! - [`store`]: every SQL statement and the migrations (no actors).
//! - [`retention`]: which results are old enough to delete, and one pruning pass.
//! - [`kinds`]: the handler registry and the built-in kinds; add your own here.
//! - `actors`: QueueReader, Processor pool, DbWriter, Scheduler, Ticker, Reaper, Monitor.
//! - [`worker`]: wiring the actors together, start-up and graceful shutdown.
//! - [`queue_order`]: how a worker splits its claims among its queues (weighted or strict).
//! - `metrics`: the atomic counters the actors share, and their Prometheus collectors.
//! - `health`: MySQL problems that need a person, and what a writer does after a failed write.
//! - [`limiters`]: `[[limiters]]` entries: selectors, concurrency and rate limits (no I/O).
//! - [`schedules`]: `[[schedules]]` entries, tick arithmetic and catch-up (no I/O).
//! - [`enqueue`]: pushing submitted jobs; the unique-key check at enqueue.
//! - [`intake`]: submitted JSON (API bodies, `enqueue --file` lines) → messages (no I/O).
//! - [`api`]: the HTTP API (actix-web), alone or inside a worker.
//! - [`control`]: operators' actions shared by the API and the CLI (pause, resume, cancel).
//! - [`ui`]: the operator's web dashboard under `/ui/`, served by the API.
//! - [`requeue`]: enqueueing dead jobs and dead letters again (CLI and dashboard).
//!
//! # Message flow
//!
//! QueueReader claims → the job feed, with a `Drain` message to each idle
//! thread of the SyncArbiter pool of Processors (busy threads refill their
//! slots from the feed) → outcomes back to the QueueReader over a channel,
//! which sends final ones (`Record`) to the
//! DbWriter and puts retries back in Redis → the DbWriter commits a batch and
//! answers `Committed` → the QueueReader acknowledges those jobs in Redis.
//!
//! # Running your own kinds
//!
//! Build a [`kinds::Registry`], register handlers, and call [`worker::run_until_signalled`]
//! (it stops on SIGTERM or SIGINT); `examples/custom_kind.rs` is a complete program.

pub(crate) mod actors;
pub mod api;
pub(crate) mod backoff;
pub mod config;
pub mod control;
pub mod enqueue;
pub(crate) mod health;
pub mod intake;
pub mod job;
pub(crate) mod job_queue;
pub mod kinds;
pub mod limiters;
pub(crate) mod limits;
pub(crate) mod metrics;
pub mod queue_order;
pub mod redact;
pub mod redis_queue;
pub mod requeue;
pub mod retention;
pub mod schedules;
pub mod store;
pub mod ui;
pub mod worker;
