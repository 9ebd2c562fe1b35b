//! The actors of a worker process, and how messages flow between them.
//!
//! ```text
//!  Redis ──claim──► QueueReader ──JobFeed + Drain──► Processor × N (SyncArbiter)
//!          ◄─ack───      ▲   │ ◄──────outcomes (channel)───┘
//!                        │   └──Record──► DbWriter ──upsert──► MySQL
//!                        └────Committed───────┘
//!  Scheduler (due retries → ready) · Ticker (schedule ticks → pending)
//!  Reaper (expired leases → ready) · Monitor (log line)
//!  QueueWatch (pause flags → QueueReader, cancel signals → CancelSignals → processors)
//!  LimiterWatch (limiters changed at run time → the QueueReader's claims)
//!  Pruner (results past their retention → deleted, one worker at a time)
//!  Beacon (counters → per-minute throughput history and the worker's beacon, once a second)
//! ```
//!
//! - [`queue_reader::QueueReader`]: claims, dispatches, routes outcomes, acks after commit.
//! - [`processor::Processor`]: runs jobs; one OS thread each, with its own async runtime.
//! - [`job_feed::JobFeed`]: claimed jobs waiting for a processor slot.
//! - [`db_writer::DbWriter`]: batched, retried, idempotent writes to MySQL.
//! - [`scheduler::Scheduler`]: promotes due retries and `run_at` jobs.
//! - [`ticker::Ticker`]: enqueues due schedule ticks, once across all workers.
//! - [`reaper::Reaper`]: recovers jobs of workers whose lease expired.
//! - [`monitor::Monitor`]: the `conveyor::mailbox` log line.
//! - [`queue_watch::QueueWatch`]: follows pause flags and cancel signals in Redis.
//! - [`cancel_signals::CancelSignals`]: which held jobs were cancelled (shared, not an actor).
//! - [`limiter_watch::LimiterWatch`]: limiters changed at run time, put in force.
//! - [`pruner::Pruner`]: deletes results past their retention.
//! - [`beacon::Beacon`]: the dashboard's throughput history and worker list.
//!
//! Each message type is defined beside the actor that handles it.

pub(crate) mod beacon;
pub(crate) mod cancel_signals;
pub(crate) mod db_writer;
pub(crate) mod job_feed;
pub(crate) mod limiter_watch;
pub(crate) mod monitor;
pub(crate) mod processor;
pub(crate) mod pruner;
pub(crate) mod queue_reader;
pub(crate) mod queue_watch;
pub(crate) mod reaper;
pub(crate) mod scheduler;
pub(crate) mod ticker;
