//! Ticker: turns due schedule ticks into jobs, in every worker, with no leader.
//!
//! Every `scheduler.schedules_tick_ms` it reads each schedule's state from
//! Redis, asks [`crate::schedules::plan`] what came due since, and advances
//! the state with one compare-and-set script that also pushes the ticks' jobs
//! (ids `sched:<name>:<tick ms>`). When several workers see the same ticks,
//! exactly one wins the compare-and-set; the rest do nothing. It owns no
//! state of its own beyond the compiled schedules, and must never run jobs or
//! enqueue a tick outside that script.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::job::now_ms;
use crate::metrics::Metrics;
use crate::redis_queue::{QueueError, RedisQueue};
use crate::schedules::{plan, Plan, Schedule};

pub(crate) struct Ticker {
    redis: RedisQueue,
    schedules: Arc<[Schedule]>,
    every: Duration,
    misfire_ms: i64,
    metrics: Arc<Metrics>,
    /// A round is under way (slow Redis must not pile rounds up).
    busy: bool,
}

impl Ticker {
    pub(crate) fn new(
        redis: RedisQueue,
        schedules: Vec<Schedule>,
        every: Duration,
        misfire: Duration,
        metrics: Arc<Metrics>,
    ) -> Ticker {
        Ticker {
            redis,
            schedules: schedules.into(),
            every,
            misfire_ms: i64::try_from(misfire.as_millis()).unwrap_or(i64::MAX),
            metrics,
            busy: false,
        }
    }

    fn round(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let (redis, schedules) = (self.redis.clone(), self.schedules.clone());
        let (misfire_ms, metrics) = (self.misfire_ms, self.metrics.clone());
        let round = async move {
            for schedule in schedules.iter() {
                if let Err(error) = tick(&redis, schedule, misfire_ms, &metrics).await {
                    log::warn!(target: "conveyor::ticker", "schedule {}: {error}", schedule.name);
                    break;
                }
            }
        };
        ctx.spawn(round.into_actor(self).map(|(), act, _| act.busy = false));
    }
}

/// One look at one schedule: read, plan, advance.
async fn tick(
    redis: &RedisQueue,
    schedule: &Schedule,
    misfire_ms: i64,
    metrics: &Metrics,
) -> Result<(), QueueError> {
    let state = redis
        .schedule_state(&schedule.queue, &schedule.name)
        .await?;
    let now = now_ms();
    let Plan::Advance {
        to_ms,
        ticks,
        missed,
        skipped,
        restarted,
    } = plan(schedule, &state, now, misfire_ms)
    else {
        return Ok(());
    };
    let jobs: Vec<(String, Vec<u8>)> = ticks
        .iter()
        .map(|tick| {
            let id = schedule.tick_id(*tick);
            let message = schedule.message(&id, now);
            (id, message)
        })
        .collect();
    let won = redis
        .advance_schedule(
            &schedule.queue,
            &schedule.name,
            state.last_ms,
            to_ms,
            &schedule.fingerprint(),
            &jobs,
        )
        .await?;
    if won.is_none() {
        return Ok(());
    }
    metrics.record_ticks(&schedule.name, jobs.len() as u64, missed, skipped);
    if restarted {
        log::info!(target: "conveyor::ticker", "schedule {}: counting ticks from now ({:?} in {})", schedule.name, schedule.cron_text, schedule.timezone.name());
    }
    if missed > 0 {
        log::warn!(target: "conveyor::ticker", "schedule {}: {missed} ticks missed while no worker ran (catch_up skips them)", schedule.name);
    }
    if let Some((id, _)) = jobs.last() {
        log::debug!(target: "conveyor::ticker", "schedule {}: enqueued {} ticks, latest {id}", schedule.name, jobs.len());
    }
    Ok(())
}

impl Actor for Ticker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.every, |act, ctx| act.round(ctx));
    }
}
