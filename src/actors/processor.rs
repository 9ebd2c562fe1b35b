//! Processor: one thread of the SyncArbiter pool; runs batches of claimed jobs.
//!
//! It owns: parsing each message, running its handler under `catch_unwind`
//! and the job's deadline, and deciding the outcome (succeeded, retry with
//! backoff, dead, dead letter, deferred). Each thread has its own
//! current-thread tokio runtime so I/O kinds of one batch overlap, while CPU
//! kinds run one after another.
//!
//! It must never talk to Redis or MySQL, and never let a panic escape a job:
//! actix does not restart a SyncArbiter thread that panicked, so an escaped
//! panic would shrink the pool for good.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::FutureExt;
use rand::Rng;

use crate::job::{
    now_ms, parse_message, ClaimedJob, DeadLetter, EnvelopeDefaults, FinalStatus, Outcome,
    ResultRow, ValidJob,
};
use crate::kinds::{Handler as KindHandler, JobContext, JobError, Registry, Retry};
use crate::metrics::Metrics;

/// Backoff between attempts: `base · 2^(attempt−1)`, capped, with jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base_ms: u64,
    pub max_ms: u64,
}

impl Backoff {
    /// Delay before the attempt after `attempt`: half fixed, half random
    /// ("equal jitter"), so retries of many jobs spread out but never come at once.
    pub fn delay_ms(&self, attempt: u32) -> u64 {
        let exponent = attempt.saturating_sub(1).min(32);
        let ceiling = self
            .base_ms
            .saturating_mul(1u64 << exponent)
            .min(self.max_ms);
        let half = ceiling / 2;
        half + rand::rng().random_range(0..=ceiling - half)
    }
}

/// What every processor thread needs; shared read-only.
pub struct ProcessorEnv {
    pub registry: Registry,
    pub defaults: EnvelopeDefaults,
    pub backoff: Backoff,
    pub metrics: Arc<Metrics>,
}

/// Run these jobs; answers with one outcome per job, in any order.
#[derive(Message)]
#[rtype(result = "Vec<Outcome>")]
pub struct RunBatch(pub Vec<ClaimedJob>);

pub struct Processor {
    env: Arc<ProcessorEnv>,
    runtime: tokio::runtime::Runtime,
}

impl Processor {
    /// The pool's factory. Building a current-thread runtime only fails when
    /// the OS refuses a timer or I/O driver, which no worker survives anyway.
    pub fn new(env: Arc<ProcessorEnv>) -> Processor {
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

impl Handler<RunBatch> for Processor {
    type Result = MessageResult<RunBatch>;

    fn handle(&mut self, msg: RunBatch, ctx: &mut SyncContext<Self>) -> Self::Result {
        let env = self.env.clone();
        env.metrics.processor_mailbox.on_handle();
        let count = msg.0.len() as u64;
        Metrics::add(&env.metrics.running, count);
        let jobs = msg.0;
        let fallback: Vec<_> = jobs.iter().map(|j| j.handle.clone()).collect();
        let batch = AssertUnwindSafe(|| self.runtime.block_on(run_batch(&env, jobs)));
        let outcomes = match std::panic::catch_unwind(batch) {
            Ok(outcomes) => outcomes,
            Err(_) => {
                // Every job already runs under catch_unwind; reaching this means
                // the processor itself broke. Retry the batch and start afresh.
                log::error!(target: "conveyor::processor", "processor failed outside a job; restarting it");
                ctx.stop();
                fallback
                    .into_iter()
                    .map(|handle| Outcome::Retry {
                        handle,
                        due_ms: now_ms(),
                        attempts: 0,
                        error: "processor failed outside the job".to_string(),
                    })
                    .collect()
            }
        };
        Metrics::sub(&env.metrics.running, count);
        MessageResult(outcomes)
    }
}

async fn run_batch(env: &ProcessorEnv, jobs: Vec<ClaimedJob>) -> Vec<Outcome> {
    futures::future::join_all(jobs.into_iter().map(|job| run_job(env, job))).await
}

/// Decides one job's outcome.
pub async fn run_job(env: &ProcessorEnv, job: ClaimedJob) -> Outcome {
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
            };
            let payload = std::mem::take(&mut valid.payload);
            run_handler(env, handler, ctx, payload, valid.timeout_ms).await
        }
    };
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
    let outcome = match handler {
        KindHandler::Blocking(run) => {
            let begun = Instant::now();
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| run(&ctx, payload)));
            match result {
                Ok(_) if begun.elapsed() > timeout => Ok(Err(timed_out(timeout_ms))),
                other => other,
            }
        }
        KindHandler::Async(run) => {
            let future = AssertUnwindSafe(run(ctx, payload)).catch_unwind();
            match tokio::time::timeout(timeout, future).await {
                Ok(result) => result,
                Err(_) => Ok(Err(timed_out(timeout_ms))),
            }
        }
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
        Err(error) if !error.is_permanent() && attempt < valid.max_attempts => {
            let delay_ms = match error.retry {
                Retry::After(Some(delay)) => (delay.as_millis() as u64).min(env.backoff.max_ms),
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

fn finished(
    job: ClaimedJob,
    valid: ValidJob,
    result: Result<serde_json::Value, JobError>,
    started_at_ms: Option<i64>,
) -> Outcome {
    let (status, output, error, message) = match result {
        Ok(output) => (FinalStatus::Succeeded, Some(output.to_string()), None, None),
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

    #[test]
    fn backoff_grows_and_is_capped() {
        let backoff = Backoff {
            base_ms: 100,
            max_ms: 1000,
        };
        for _ in 0..50 {
            let first = backoff.delay_ms(1);
            assert!((50..=100).contains(&first), "{first}");
            let third = backoff.delay_ms(3);
            assert!((200..=400).contains(&third), "{third}");
            let late = backoff.delay_ms(30);
            assert!((500..=1000).contains(&late), "{late}");
        }
    }
}
