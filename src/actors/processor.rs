//! Processor: one thread of the SyncArbiter pool; runs claimed jobs from the feed.
//!
//! It owns: parsing each message, running its handler under `catch_unwind`
//! and the job's deadline, and deciding the outcome (succeeded, retry with
//! backoff, dead, dead letter, deferred). A `Drain` message starts a thread
//! (the QueueReader sends one per idle thread when jobs arrive); the thread
//! then keeps up to `processors.concurrency` jobs running on its own
//! current-thread tokio runtime, taking new jobs from the [`JobFeed`] as slots
//! free up, so I/O kinds overlap, CPU kinds run one after another, and one
//! slow job never holds the other slots idle. Outcomes go back to the
//! QueueReader over a channel as they finish.
//!
//! A job cancelled before it starts ends `cancelled` without running; a
//! running one is cut off (async handlers: the future is dropped) or told
//! through `JobContext::is_cancelled` (CPU handlers), through
//! [`CancelSignals`].
//!
//! It must never talk to Redis or MySQL, and never let a panic escape a job:
//! actix does not restart a SyncArbiter thread that panicked, so an escaped
//! panic would shrink the pool for good.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

// Every job's handle goes in and out of `in_hand`: foldhash, as for the
// other per-job sets (no untrusted input chooses these keys).
use foldhash::HashSet;

use actix::prelude::*;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::cancel_signals::CancelSignals;
use super::job_feed::JobFeed;
use crate::backoff::Backoff;
use crate::job::{
    now_ms, parse_message, ClaimedJob, DeadLetter, EnvelopeDefaults, FinalStatus, JobHandle,
    Outcome, ResultRow, ValidJob,
};
use crate::kinds::{Handler as KindHandler, JobContext, JobError, Registry, Retry};
use crate::limiters::{RateHold, MAX_RATE_HOLD_MS};
use crate::metrics::Metrics;

/// What every processor thread needs; shared.
pub(crate) struct ProcessorEnv {
    pub registry: Registry,
    pub defaults: EnvelopeDefaults,
    pub backoff: Backoff,
    pub metrics: Arc<Metrics>,
    /// Where claimed jobs wait for a slot.
    pub feed: Arc<JobFeed>,
    /// Jobs one thread runs at once (`processors.concurrency`).
    pub concurrency: usize,
    /// Where outcomes go (the QueueReader).
    pub outcomes: UnboundedSender<Vec<Outcome>>,
    /// Which held jobs were cancelled.
    pub cancels: Arc<CancelSignals>,
}

/// What the QueueReader holds of the pool: its address, the feed it fills
/// and the channel the outcomes come back on.
pub(crate) struct ProcessorPool {
    pub addr: Addr<Processor>,
    pub feed: Arc<JobFeed>,
    pub outcomes: UnboundedReceiver<Vec<Outcome>>,
}

/// Run jobs from the feed until it is empty and nothing is running.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Drain;

pub(crate) struct Processor {
    env: Arc<ProcessorEnv>,
    runtime: tokio::runtime::Runtime,
}

impl Processor {
    /// The pool's factory. Building a current-thread runtime only fails when
    /// the OS refuses a timer or I/O driver, which no worker survives anyway.
    pub(crate) fn new(env: Arc<ProcessorEnv>) -> Processor {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a processor thread needs its own tokio runtime");
        Processor { env, runtime }
    }
}

impl Actor for Processor {
    type Context = SyncContext<Self>;
}

impl Handler<Drain> for Processor {
    type Result = ();

    fn handle(&mut self, _: Drain, ctx: &mut SyncContext<Self>) {
        let env = self.env.clone();
        env.metrics.processor_mailbox.on_handle();
        env.feed.begin();
        let mut in_hand = HashSet::default();
        let drain = AssertUnwindSafe(|| self.runtime.block_on(drain(&env, &mut in_hand)));
        if std::panic::catch_unwind(drain).is_err() {
            // Every job already runs under catch_unwind; reaching this means
            // the processor itself broke. Retry its jobs and start afresh.
            log::error!(target: "conveyor::processor", "processor failed outside a job; restarting it");
            env.feed.abandon();
            Metrics::sub(&env.metrics.running, in_hand.len() as u64);
            let retries = in_hand
                .into_iter()
                .map(|handle| Outcome::Retry {
                    handle,
                    due_ms: now_ms(),
                    attempts: 0,
                    error: "processor failed outside the job".to_string(),
                })
                .collect();
            report(&env, retries);
            ctx.stop();
        }
    }
}

/// Keeps up to `concurrency` jobs running, taking new ones from the feed as
/// slots free up or jobs arrive, until the feed is empty and nothing runs.
/// `in_hand` holds the handles of jobs taken and not yet reported.
async fn drain(env: &ProcessorEnv, in_hand: &mut HashSet<JobHandle>) {
    let mut running = FuturesUnordered::new();
    loop {
        let arrivals = env.feed.notified();
        tokio::pin!(arrivals);
        arrivals.as_mut().enable();
        let room = env.concurrency.saturating_sub(running.len());
        for job in env.feed.take(room) {
            in_hand.insert(job.handle.clone());
            Metrics::add(&env.metrics.running, 1);
            running.push(run_job(env, job));
        }
        if running.is_empty() {
            if env.feed.leave_if_empty() {
                return;
            }
            continue;
        }
        let mut done = Vec::new();
        if running.len() < env.concurrency {
            tokio::select! {
                Some(outcome) = running.next() => done.push(outcome),
                () = &mut arrivals => {}
            }
        } else if let Some(outcome) = running.next().await {
            done.push(outcome);
        }
        while let Some(Some(outcome)) = running.next().now_or_never() {
            done.push(outcome);
        }
        if !done.is_empty() {
            for outcome in &done {
                in_hand.remove(outcome.handle());
            }
            Metrics::sub(&env.metrics.running, done.len() as u64);
            report(env, done);
        }
    }
}

/// Sends outcomes to the QueueReader. If it is gone the worker is stopping:
/// the jobs stay held in Redis and return to their queue.
fn report(env: &ProcessorEnv, outcomes: Vec<Outcome>) {
    if outcomes.is_empty() {
        return;
    }
    if env.outcomes.send(outcomes).is_err() {
        log::warn!(target: "conveyor::processor", "queue reader gone; outcomes dropped, their jobs stay in redis");
    }
}

/// Decides one job's outcome.
pub(crate) async fn run_job(env: &ProcessorEnv, job: ClaimedJob) -> Outcome {
    let started_ms = now_ms();
    let mut valid = match parse_message(&job.raw, &job.handle.token, &env.defaults) {
        Ok(valid) => valid,
        Err(reason) => {
            return Outcome::Malformed(DeadLetter {
                handle: job.handle,
                raw: job.raw,
                reason: reason.to_string(),
                received_at_ms: started_ms,
            })
        }
    };
    if job.cancelled {
        return cancelled(job, valid, None, "cancelled before it started");
    }
    if let Some(holder) = job.duplicate_of.clone() {
        return duplicate(job, valid, holder);
    }
    if let Some(due_ms) = valid.run_at_ms.filter(|due| *due > started_ms) {
        return Outcome::Defer {
            handle: job.handle,
            due_ms,
        };
    }
    if job.attempts_made >= valid.max_attempts {
        let error = job
            .last_error
            .clone()
            .unwrap_or_else(|| format!("no attempts left ({} made)", job.attempts_made));
        return finished(job, valid, Err(JobError::permanent(error)), None);
    }
    let Some(cancel) = env.cancels.start(&job.handle) else {
        return cancelled(job, valid, None, "cancelled before it started");
    };
    let attempt = job.attempts_made + 1;
    let result = match env.registry.get(&valid.kind) {
        None => Err(JobError::permanent(format!(
            "unknown kind {:?}: no handler is registered under that name",
            valid.kind
        ))),
        Some(handler) => {
            let ctx = JobContext {
                id: valid.id.clone(),
                queue: job.handle.queue.clone(),
                kind: valid.kind.clone(),
                attempt,
                max_attempts: valid.max_attempts,
                deadline: Instant::now() + Duration::from_millis(valid.timeout_ms),
                cancel: cancel.clone(),
            };
            let payload = std::mem::take(&mut valid.payload);
            run_handler(env, handler, ctx, payload, valid.timeout_ms).await
        }
    };
    env.cancels.finish(&job.handle);
    if cancel.is_cancelled() && result.is_err() {
        let mut job = job;
        job.attempts_made = attempt;
        return cancelled(job, valid, Some(started_ms), "cancelled while running");
    }
    decide(env, job, valid, attempt, result, started_ms)
}

/// Runs the handler, turning panics and overrun deadlines into failures.
async fn run_handler(
    env: &ProcessorEnv,
    handler: &KindHandler,
    ctx: JobContext,
    payload: serde_json::Value,
    timeout_ms: u64,
) -> Result<serde_json::Value, JobError> {
    let timeout = Duration::from_millis(timeout_ms);
    let begun = Instant::now();
    let outcome = match handler {
        KindHandler::Blocking(run) => {
            std::panic::catch_unwind(AssertUnwindSafe(|| run(&ctx, payload)))
        }
        KindHandler::Async(run) => {
            let cancel = ctx.cancel.clone();
            let future = AssertUnwindSafe(run(ctx, payload)).catch_unwind();
            // Cancelling drops the handler's future: it stops at its next await.
            tokio::select! {
                timed = tokio::time::timeout(timeout, future) => match timed {
                    Ok(result) => result,
                    Err(_) => Ok(Err(timed_out(timeout_ms))),
                },
                () = cancel.cancelled() => Ok(Err(JobError::permanent("job cancelled"))),
            }
        }
    };
    // A result that arrives after the deadline is an overrun either way:
    // a blocking handler is never interrupted, and an async one can finish
    // on the same poll as its expired timer (the timer loses that race)
    // when the thread was held up, e.g. the process was paused.
    let outcome = match outcome {
        Ok(_) if begun.elapsed() > timeout => Ok(Err(timed_out(timeout_ms))),
        other => other,
    };
    outcome.unwrap_or_else(|panic| {
        Metrics::add(&env.metrics.panics_total, 1);
        let message = panic_message(panic.as_ref());
        log::warn!(target: "conveyor::processor", "handler panicked: {message}");
        Err(JobError::retryable(format!("handler panicked: {message}")))
    })
}

fn timed_out(timeout_ms: u64) -> JobError {
    JobError::retryable(format!("job timed out after {timeout_ms} ms (timeout_ms)"))
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Turns a handler's result into the job's outcome.
fn decide(
    env: &ProcessorEnv,
    job: ClaimedJob,
    valid: ValidJob,
    attempt: u32,
    result: Result<serde_json::Value, JobError>,
    started_ms: i64,
) -> Outcome {
    match result {
        Err(JobError {
            retry: Retry::RateLimited(delay),
            ..
        }) => {
            let delay_ms = (delay.as_millis() as u64).min(MAX_RATE_HOLD_MS);
            Outcome::RateLimited {
                handle: job.handle,
                due_ms: now_ms() + delay_ms as i64,
                hold: RateHold {
                    kind: valid.kind,
                    key: valid.key,
                    delay_ms,
                },
            }
        }
        Err(error) if !error.is_permanent() && attempt < valid.max_attempts => {
            let delay_ms = match error.retry {
                Retry::After(Some(delay)) => delay.min(env.backoff.max).as_millis() as u64,
                _ => env.backoff.delay_ms(attempt),
            };
            env.metrics.record_retry(&valid.kind, &job.handle.queue);
            Outcome::Retry {
                handle: job.handle,
                due_ms: now_ms() + delay_ms as i64,
                attempts: attempt,
                error: error.message,
            }
        }
        result => {
            let mut job = job;
            job.attempts_made = attempt;
            finished(job, valid, result, Some(started_ms))
        }
    }
}

/// A `cancelled` row: the job will not run (again).
fn cancelled(job: ClaimedJob, valid: ValidJob, started_at_ms: Option<i64>, error: &str) -> Outcome {
    Outcome::Finished(ResultRow {
        handle: job.handle,
        id: valid.id,
        kind: valid.kind,
        status: FinalStatus::Cancelled,
        attempts: job.attempts_made,
        output: None,
        error: Some(error.to_string()),
        enqueued_at_ms: valid.enqueued_at_ms,
        started_at_ms,
        finished_at_ms: now_ms(),
        message: None,
    })
}

/// A message refused because job `holder` holds its `unique_key`: it does
/// not run, and its row points at the holder.
fn duplicate(job: ClaimedJob, valid: ValidJob, holder: String) -> Outcome {
    let output = serde_json::json!({ "duplicate_of": holder }).to_string();
    Outcome::Finished(ResultRow {
        handle: job.handle,
        id: valid.id,
        kind: valid.kind,
        status: FinalStatus::Duplicate,
        attempts: 0,
        output: Some(output),
        error: None,
        enqueued_at_ms: valid.enqueued_at_ms,
        started_at_ms: None,
        finished_at_ms: now_ms(),
        message: None,
    })
}

/// `value` as JSON text. `serde_json::to_string` writes into a buffer
/// directly, where `Display` goes through the formatting machinery token by
/// token; a `Value` always serialises (its keys are strings), so the
/// fallback never runs.
fn json_text(value: &serde_json::Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| value.to_string())
}

fn finished(
    job: ClaimedJob,
    valid: ValidJob,
    result: Result<serde_json::Value, JobError>,
    started_at_ms: Option<i64>,
) -> Outcome {
    let (status, output, error, message) = match result {
        Ok(output) => (FinalStatus::Succeeded, Some(json_text(&output)), None, None),
        Err(error) => (FinalStatus::Dead, None, Some(error.message), Some(job.raw)),
    };
    Outcome::Finished(ResultRow {
        handle: job.handle,
        id: valid.id,
        kind: valid.kind,
        status,
        attempts: job.attempts_made,
        output,
        error,
        enqueued_at_ms: valid.enqueued_at_ms,
        started_at_ms,
        finished_at_ms: now_ms(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(registry: Registry) -> ProcessorEnv {
        let metrics = Arc::new(Metrics::default());
        let (outcomes, _) = tokio::sync::mpsc::unbounded_channel();
        ProcessorEnv {
            registry,
            defaults: EnvelopeDefaults {
                max_attempts: 3,
                timeout_ms: 30_000,
                max_job_bytes: 1 << 20,
            },
            backoff: Backoff::exponential(10, 100).with_equal_jitter(),
            feed: Arc::new(JobFeed::new(1, 1, metrics.clone())),
            metrics,
            concurrency: 1,
            outcomes,
            cancels: Arc::new(CancelSignals::default()),
        }
    }

    fn claimed(raw: &str) -> ClaimedJob {
        ClaimedJob {
            handle: JobHandle {
                queue: "q".into(),
                token: "tok-1".into(),
            },
            raw: raw.as_bytes().to_vec(),
            attempts_made: 0,
            last_error: None,
            claimed_at_ms: 0,
            cancelled: false,
            duplicate_of: None,
        }
    }

    fn run(env: &ProcessorEnv, raw: &str) -> Outcome {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(run_job(env, claimed(raw)))
    }

    /// A CPU handler that returns after its deadline is a timed-out attempt.
    #[test]
    fn blocking_handler_past_its_deadline_times_out() {
        let mut registry = Registry::new();
        registry.register_blocking("busy", |_, _| {
            std::thread::sleep(Duration::from_millis(50));
            Ok(serde_json::Value::Null)
        });
        let env = env_with(registry);
        match run(&env, r#"{"kind":"busy","timeout_ms":10}"#) {
            Outcome::Retry {
                error, attempts, ..
            } => {
                assert_eq!(attempts, 1);
                assert!(error.contains("timed out after 10 ms"), "{error}");
            }
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    /// An async handler that returns after its deadline, on the same poll
    /// (its thread was held up past both), is a timed-out attempt too.
    #[test]
    fn async_handler_finishing_past_its_deadline_times_out() {
        let mut registry = Registry::new();
        registry.register_async("held_up", |_, _| async {
            std::thread::sleep(Duration::from_millis(50));
            Ok(serde_json::Value::Null)
        });
        let env = env_with(registry);
        match run(&env, r#"{"kind":"held_up","timeout_ms":10}"#) {
            Outcome::Retry { error, .. } => {
                assert!(error.contains("timed out after 10 ms"), "{error}");
            }
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    /// A rate limit is no failure: even on the last attempt the job goes
    /// back with its kind and key for the hold, and no attempt is counted.
    #[test]
    fn a_rate_limited_job_goes_back_without_an_attempt() {
        let mut registry = Registry::new();
        registry.register_blocking("partner", |_, _| {
            Err(JobError::rate_limited(Duration::from_millis(1500)))
        });
        let env = env_with(registry);
        let before = now_ms();
        match run(&env, r#"{"kind":"partner","key":"acme","max_attempts":1}"#) {
            Outcome::RateLimited { due_ms, hold, .. } => {
                assert!(due_ms >= before + 1500, "due {} ms ahead", due_ms - before);
                let expected = RateHold {
                    kind: "partner".into(),
                    key: Some("acme".into()),
                    delay_ms: 1500,
                };
                assert_eq!(hold, expected);
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
    }

    /// A CPU handler that checks its deadline stops early with a timeout.
    #[test]
    fn blocking_handler_can_check_its_deadline() {
        let mut registry = Registry::new();
        registry.register_blocking("loop", |ctx, _| loop {
            ctx.check_deadline()?;
            std::thread::sleep(Duration::from_millis(1));
        });
        let env = env_with(registry);
        let started = Instant::now();
        let outcome = run(&env, r#"{"kind":"loop","timeout_ms":20,"max_attempts":1}"#);
        assert!(started.elapsed() < Duration::from_secs(2));
        match outcome {
            Outcome::Finished(row) => {
                assert_eq!(row.status, FinalStatus::Dead);
                assert!(row.error.unwrap_or_default().contains("timed out"));
            }
            other => panic!("expected a dead row, got {other:?}"),
        }
    }

    /// Cancels job `tok-1` of queue `q` after `delay`, from another thread.
    fn cancel_later(env: &ProcessorEnv, delay: Duration) -> std::thread::JoinHandle<()> {
        let cancels = env.cancels.clone();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            cancels.set_signalled(&"q".into(), vec!["tok-1".to_string()]);
        })
    }

    fn assert_cancelled(outcome: Outcome, started: bool) {
        match outcome {
            Outcome::Finished(row) => {
                assert_eq!(row.status, FinalStatus::Cancelled);
                assert_eq!(row.started_at_ms.is_some(), started, "{row:?}");
                assert_eq!(row.output, None);
            }
            other => panic!("expected a cancelled row, got {other:?}"),
        }
    }

    /// An async handler is cut off when its job is cancelled: its future is dropped.
    #[test]
    fn a_cancelled_async_job_is_cut_off() {
        let mut registry = Registry::new();
        registry.register_async("forever", |_, _| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(serde_json::Value::Null)
        });
        let env = env_with(registry);
        let canceller = cancel_later(&env, Duration::from_millis(50));
        let started = Instant::now();
        assert_cancelled(run(&env, r#"{"kind":"forever"}"#), true);
        assert!(started.elapsed() < Duration::from_secs(60));
        canceller.join().expect("canceller");
    }

    /// A CPU handler sees the cancellation through its context and stops.
    #[test]
    fn a_blocking_handler_polls_for_cancellation() {
        let mut registry = Registry::new();
        registry.register_blocking("loop", |ctx, _| loop {
            ctx.check_cancelled()?;
            std::thread::sleep(Duration::from_millis(1));
        });
        let env = env_with(registry);
        let canceller = cancel_later(&env, Duration::from_millis(50));
        assert_cancelled(run(&env, r#"{"kind":"loop","max_attempts":5}"#), true);
        canceller.join().expect("canceller");
    }

    /// A job that finishes although it was cancelled keeps its success.
    #[test]
    fn a_job_that_finished_first_keeps_its_result() {
        let mut registry = Registry::new();
        registry.register_blocking("stubborn", |ctx, _| {
            while !ctx.is_cancelled() {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(serde_json::json!("done anyway"))
        });
        let env = env_with(registry);
        let canceller = cancel_later(&env, Duration::from_millis(20));
        match run(&env, r#"{"kind":"stubborn"}"#) {
            Outcome::Finished(row) => assert_eq!(row.status, FinalStatus::Succeeded),
            other => panic!("expected a success, got {other:?}"),
        }
        canceller.join().expect("canceller");
    }

    /// A job signalled before it starts, or claimed as cancelled, never runs.
    #[test]
    fn a_job_cancelled_before_it_starts_never_runs() {
        let mut registry = Registry::new();
        registry.register_blocking("boom", |_, _| panic!("must not run"));
        let env = env_with(registry);
        env.cancels
            .set_signalled(&"q".into(), vec!["tok-1".to_string()]);
        assert_cancelled(run(&env, r#"{"kind":"boom"}"#), false);
        let env = env_with(Registry::new());
        let mut job = claimed(r#"{"kind":"boom"}"#);
        job.cancelled = true;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        assert_cancelled(runtime.block_on(run_job(&env, job)), false);
    }
}
