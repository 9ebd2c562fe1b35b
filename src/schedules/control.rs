//! Schedules at run time, as the HTTP API and the CLI show and steer them:
//! the list with each schedule's next run and latest runs, a run started by
//! hand, pause and resume.
//!
//! This module owns those views and actions on top of the Redis and MySQL
//! calls they need. It must never enqueue a tick (only the Ticker does,
//! through its compare-and-set); a run started by hand gets a fresh id.

use chrono::{DateTime, SecondsFormat, Utc};

use super::Schedule;
use crate::redis_queue::{QueueError, RedisQueue};
use crate::store::{self, RunRecord, StoreError};

/// Latest runs listed per schedule.
pub const LAST_RUNS: usize = 5;

/// Why a schedule action failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no schedule {0:?} in the configuration")]
    /// No schedule of that name is configured.
    Unknown(String),
    #[error(transparent)]
    /// Redis failed.
    Queue(#[from] QueueError),
    #[error(transparent)]
    /// MySQL failed.
    Store(#[from] StoreError),
}

/// One schedule as `GET /schedules` and `conveyor schedules list` show it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    /// The schedule's name.
    pub name: String,
    /// Its cron expression.
    pub cron: String,
    /// Its time zone.
    pub timezone: String,
    /// The queue its ticks go to.
    pub queue: String,
    /// The handler of its ticks' jobs.
    pub kind: String,
    /// The next tick, RFC 3339 UTC (it runs only if the schedule is not paused then).
    pub next_run_at: Option<String>,
    /// Whether it is paused now.
    pub paused: bool,
    /// Latest finished runs (ticks and runs started by hand), newest first.
    pub last_runs: Vec<RunRecord>,
}

/// The schedule called `name`.
pub fn find<'a>(schedules: &'a [Schedule], name: &str) -> Result<&'a Schedule, ControlError> {
    schedules
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ControlError::Unknown(name.to_string()))
}

/// Every schedule with its pause state, next run and latest runs.
pub async fn list(
    schedules: &[Schedule],
    redis: &RedisQueue,
    pool: &mysql_async::Pool,
    now_ms: i64,
) -> Result<Vec<ScheduleView>, ControlError> {
    let mut out = Vec::with_capacity(schedules.len());
    for schedule in schedules {
        let state = redis
            .schedule_state(&schedule.queue, &schedule.name)
            .await?;
        let prefix = format!("sched:{}:", schedule.name);
        let last_runs = store::runs_by_id_prefix(pool, &prefix, LAST_RUNS).await?;
        out.push(ScheduleView {
            name: schedule.name.clone(),
            cron: schedule.cron_text.clone(),
            timezone: schedule.timezone.name().to_string(),
            queue: schedule.queue.clone(),
            kind: schedule.kind.clone(),
            next_run_at: schedule.next_after(now_ms).and_then(rfc3339),
            paused: state.paused.unwrap_or(schedule.paused),
            last_runs,
        });
    }
    Ok(out)
}

/// Enqueues one run of `schedule` now, with a fresh id; returns the id.
pub async fn trigger(
    schedule: &Schedule,
    redis: &RedisQueue,
    now_ms: i64,
) -> Result<String, ControlError> {
    let id = schedule.manual_id(now_ms);
    let message = schedule.message(&id, now_ms);
    redis
        .accept(&schedule.queue, &[(id.clone(), message)])
        .await?;
    Ok(id)
}

/// Pauses or resumes `schedule` for every worker, kept across restarts.
pub async fn set_paused(
    schedule: &Schedule,
    redis: &RedisQueue,
    paused: bool,
) -> Result<(), ControlError> {
    redis
        .set_schedule_paused(&schedule.queue, &schedule.name, paused)
        .await?;
    Ok(())
}

fn rfc3339(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}
