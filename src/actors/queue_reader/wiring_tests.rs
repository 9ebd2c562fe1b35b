//! Tests of the QueueReader's wiring with no server: an in-memory queue side,
//! the real processor pool and a stand-in DbWriter that commits (or not).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;

use super::{Committed, QueueReader, Shutdown};
use crate::actors::db_writer::Record;
use crate::actors::job_feed::JobFeed;
use crate::actors::processor::{Processor, ProcessorEnv, ProcessorPool};
use crate::backoff::Backoff;
use crate::config::Settings;
use crate::job::{EnvelopeDefaults, Outcome};
use crate::job_queue::memory::{MemoryQueue, MemoryState};
use crate::kinds::{JobError, Registry};
use crate::metrics::Metrics;

/// Stands in for the DbWriter: keeps the job ids it was given and answers
/// `Committed` while `commit` is on.
struct FakeDb {
    committed: Recipient<Committed>,
    rows: Arc<Mutex<Vec<String>>>,
    commit: bool,
}

impl Actor for FakeDb {
    type Context = Context<Self>;
}

impl Handler<Record> for FakeDb {
    type Result = ();

    fn handle(&mut self, msg: Record, _: &mut Context<Self>) {
        let mut handles = Vec::new();
        for outcome in msg.0 {
            if let Outcome::Finished(row) = &outcome {
                self.rows.lock().expect("rows").push(row.id.clone());
            }
            handles.push(outcome.handle().clone());
        }
        if self.commit {
            self.committed.do_send(Committed(handles));
        }
    }
}

struct Rig {
    queue: MemoryQueue,
    rows: Arc<Mutex<Vec<String>>>,
    reader: Addr<QueueReader<MemoryQueue>>,
}

fn settings() -> Settings {
    let env: HashMap<String, String> = [
        ("CONVEYOR__QUEUES__NAMES", "a"),
        ("CONVEYOR__QUEUES__CLAIM_BATCH", "10"),
        ("CONVEYOR__QUEUES__MAX_IN_FLIGHT", "25"),
        ("CONVEYOR__QUEUES__IDLE_WAIT_MS", "50"),
        ("CONVEYOR__RECOVERY__HEARTBEAT_MS", "20"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Settings::load_with_env(None, Some(env)).expect("settings")
}

fn start(queue: MemoryQueue, commit: bool) -> Rig {
    let settings = settings();
    let metrics = Arc::new(Metrics::default());
    let mut registry = Registry::new();
    registry.register_blocking("echo", |_, payload| Ok(payload));
    registry.register_blocking("flaky", |ctx, _| {
        if ctx.attempt < 2 {
            Err(JobError::retryable("first try fails"))
        } else {
            Ok(serde_json::Value::Null)
        }
    });
    let feed = Arc::new(JobFeed::new(2, 5, metrics.clone()));
    let (outcomes_tx, outcomes_rx) = tokio::sync::mpsc::unbounded_channel();
    let env = Arc::new(ProcessorEnv {
        registry,
        defaults: EnvelopeDefaults {
            max_attempts: 3,
            timeout_ms: 5000,
            max_job_bytes: 1 << 20,
        },
        backoff: Backoff::exponential(1, 1),
        metrics: metrics.clone(),
        feed: feed.clone(),
        concurrency: 5,
        outcomes: outcomes_tx,
        cancels: Arc::default(),
    });
    let addr = SyncArbiter::start(2, move || Processor::new(env.clone()));
    let pool = ProcessorPool {
        addr,
        feed,
        outcomes: outcomes_rx,
    };
    let rows = Arc::new(Mutex::new(Vec::new()));
    let (side, kept) = (queue.clone(), rows.clone());
    let reader = QueueReader::create(move |ctx| {
        let db = FakeDb {
            committed: ctx.address().recipient(),
            rows: kept,
            commit,
        }
        .start();
        QueueReader::new(side, &settings, pool, db.recipient(), metrics)
    });
    Rig {
        queue,
        rows,
        reader,
    }
}

fn jobs(kind: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|i| format!(r#"{{"id":"{kind}-{i}","kind":"{kind}"}}"#))
        .collect()
}

/// Waits (bounded) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

fn sorted_unique(rows: &Arc<Mutex<Vec<String>>>) -> (usize, usize) {
    let mut rows = rows.lock().expect("rows").clone();
    let all = rows.len();
    rows.sort();
    rows.dedup();
    (all, rows.len())
}

/// A reader over a memory queue holding `messages` (after `setup`).
fn rig(messages: Vec<String>, commit: bool, setup: impl FnOnce(&mut MemoryState)) -> Rig {
    let queue = MemoryQueue::default();
    queue.push("a", messages);
    queue.with(setup);
    start(queue, commit)
}

impl Rig {
    fn acked(&self) -> usize {
        self.queue.with(|s| s.acked.len())
    }

    fn held(&self) -> usize {
        self.queue.with(|s| s.held_on("a"))
    }

    /// Shuts the reader down; returns how many jobs it handed back.
    async fn shutdown(&self, timeout_ms: u64) -> usize {
        self.reader
            .send(Shutdown {
                timeout: Duration::from_millis(timeout_ms),
            })
            .await
            .expect("reader answers")
    }
}

#[test]
fn every_job_is_run_recorded_and_acknowledged_once() {
    actix_rt::System::new().block_on(async {
        let rig = rig(jobs("echo", 0..60), true, |_| {});
        until("60 acks", || rig.acked() == 60).await;
        assert_eq!(sorted_unique(&rig.rows), (60, 60));
        assert_eq!(rig.held(), 0);
        // A job pushed later wakes the idle reader.
        rig.queue.push("a", jobs("echo", 60..61));
        until("the late job", || rig.acked() == 61).await;
        assert_eq!(rig.shutdown(1000).await, 0);
    });
}

#[test]
fn a_retry_goes_back_to_the_queue_side_and_is_not_recorded() {
    actix_rt::System::new().block_on(async {
        let rig = rig(jobs("flaky", 0..3), true, |_| {});
        until("3 rescheduled", || {
            rig.queue.with(|s| s.scheduled.len()) == 3
        })
        .await;
        assert!(rig.rows.lock().expect("rows").is_empty());
        assert_eq!(rig.held(), 0);
        assert!(rig.queue.with(|s| s.attempts.values().all(|n| *n == 1)));
    });
}

#[test]
fn a_lost_claim_reply_is_reconciled_and_nothing_is_lost_or_doubled() {
    actix_rt::System::new().block_on(async {
        let rig = rig(jobs("echo", 0..40), true, |s| s.lose_next_claim_replies = 1);
        until("40 acks", || rig.acked() == 40).await;
        assert_eq!(sorted_unique(&rig.rows), (40, 40));
        assert_eq!(rig.held(), 0);
    });
}

#[test]
fn redis_errors_pause_claiming_and_it_resumes() {
    actix_rt::System::new().block_on(async {
        let rig = rig(jobs("echo", 0..30), true, |s| s.fail_next = 3);
        until("30 acks", || rig.acked() == 30).await;
        assert_eq!(sorted_unique(&rig.rows), (30, 30));
    });
}

#[test]
fn without_commits_claiming_stops_at_the_limit_and_shutdown_hands_back() {
    actix_rt::System::new().block_on(async {
        let rig = rig(jobs("echo", 0..100), false, |_| {});
        until("the limit held", || rig.held() == 25).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(rig.held(), 25, "no claim past max_in_flight");
        assert_eq!(rig.shutdown(50).await, 25);
        rig.queue.with(|s| {
            assert_eq!(s.held_on("a"), 0);
            assert_eq!(
                s.ready["a"].len() + s.pending["a"].len(),
                100,
                "every job is back"
            );
            assert!(s.acked.is_empty());
        });
    });
}

#[test]
fn a_lost_lease_forgets_jobs_recovered_elsewhere_and_frees_their_capacity() {
    actix_rt::System::new().block_on(async {
        let rig = rig(jobs("echo", 0..25), false, |_| {});
        until("the limit held", || rig.held() == 25).await;
        // Another worker's reaper recovers them. The next heartbeat finds the
        // lease gone; the reader forgets those jobs, so its capacity is free
        // and it claims them again, now as second attempts.
        rig.queue.with(|s| s.reap("a"));
        until("claimed again", || {
            rig.queue
                .with(|s| s.held_on("a") == 25 && s.attempts.len() == 25 && s.ready["a"].is_empty())
        })
        .await;
        assert_eq!(rig.shutdown(50).await, 25);
    });
}

#[test]
fn a_claim_that_leaves_a_backlog_to_sort_starts_one_sorting_loop_that_runs_to_the_end() {
    actix_rt::System::new().block_on(async {
        // Commits off: the reader claims once up to its limit and then only
        // waits, so every sort call comes from one loop, not from claims.
        let rig = rig(jobs("echo", 0..100), false, |s| {
            s.unsorted_batches.insert("a".to_string(), 7);
        });
        until("the backlog sorted", || {
            rig.queue.with(|s| s.unsorted_batches["a"] == 0)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            rig.queue.with(|s| s.sort_calls["a"]),
            7,
            "one call per batch left, none after the end"
        );
    });
}

#[test]
fn a_failed_sort_ends_the_loop_and_the_next_claim_with_a_backlog_starts_it_again() {
    actix_rt::System::new().block_on(async {
        let rig = rig(jobs("echo", 0..300), true, |s| {
            s.unsorted_batches.insert("a".to_string(), 3);
            s.fail_next_sorts = 1;
        });
        until("the backlog sorted", || {
            rig.queue.with(|s| s.unsorted_batches["a"] == 0)
        })
        .await;
        assert_eq!(
            rig.queue.with(|s| s.sort_calls["a"]),
            4,
            "the failed call, then a new loop's three"
        );
        until("300 acks", || rig.acked() == 300).await;
        assert_eq!(sorted_unique(&rig.rows), (300, 300));
    });
}
