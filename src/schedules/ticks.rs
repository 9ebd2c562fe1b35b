//! Tick arithmetic: when a schedule fires, in its own time zone, and which
//! due ticks a worker enqueues given the schedule's state and the clock.
//!
//! This module owns the daylight-saving rules and the catch-up policy. It
//! must never read a clock: every function takes the time it works with, so
//! tests pin any instant (a spring-forward night, a repeated hour).
//!
//! # Daylight saving
//!
//! Ticks are the wall-clock times the cron expression matches in the
//! schedule's time zone, each mapped to one instant:
//! - a wall-clock time that occurs twice (the repeated hour when clocks go
//!   back) fires once, at its first occurrence;
//! - a wall-clock time skipped when clocks go forward fires once, at the
//!   first instant after the jump. Several skipped times fall on that same
//!   instant, and so on the same tick id: they run once together.

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone as _, Utc};
use chrono_tz::Tz;

use super::{CatchUp, Overlap, Schedule};

/// Most ticks one advance enqueues; a longer catch-up goes on in the next round.
pub const MAX_TICKS_PER_ROUND: usize = 1000;

/// Missed ticks are counted (for the metric) up to this many per round.
pub const MAX_COUNTED_MISSES: usize = 10_000;

/// Bound on the candidate times one search looks at: a repeated hour of a
/// per-second schedule holds 3 600 candidates that map to past instants.
const MAX_CANDIDATES: usize = 10_000;

/// Longest clock jump searched for the end of a skipped range (in minutes).
const MAX_GAP_MINUTES: i64 = 48 * 60;

impl Schedule {
    /// The first tick strictly after `after_ms`.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let mut local = self.local(after_ms)?;
        for _ in 0..MAX_CANDIDATES {
            local = self.cron.find_next_occurrence(&local, false).ok()?;
            let at = instant_of(&self.timezone, local)?;
            if at > after_ms {
                return Some(at);
            }
        }
        None
    }

    /// The latest tick in `(after_ms, until_ms]`.
    pub fn latest_in(&self, after_ms: i64, until_ms: i64) -> Option<i64> {
        let mut local = self.local(until_ms)?;
        let mut inclusive = true;
        for _ in 0..MAX_CANDIDATES {
            local = self.cron.find_previous_occurrence(&local, inclusive).ok()?;
            inclusive = false;
            let at = instant_of(&self.timezone, local)?;
            if at <= until_ms {
                return (at > after_ms).then_some(at);
            }
        }
        None
    }

    /// Ticks in `(after_ms, until_ms]`, earliest first, at most `limit`.
    pub fn ticks_in(&self, after_ms: i64, until_ms: i64, limit: usize) -> Vec<i64> {
        let mut out = Vec::new();
        let mut from = after_ms;
        while out.len() < limit {
            match self.next_after(from) {
                Some(tick) if tick <= until_ms => {
                    out.push(tick);
                    from = tick;
                }
                _ => break,
            }
        }
        out
    }

    /// The wall-clock time of `ms` in the schedule's zone.
    fn local(&self, ms: i64) -> Option<NaiveDateTime> {
        let utc: DateTime<Utc> = DateTime::from_timestamp_millis(ms)?;
        Some(utc.with_timezone(&self.timezone).naive_local())
    }
}

/// The instant a matching wall-clock time fires at: itself; its first
/// occurrence when it is repeated; the end of the jump when it is skipped.
fn instant_of(zone: &Tz, local: NaiveDateTime) -> Option<i64> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => Some(at.timestamp_millis()),
        LocalResult::None => end_of_jump(zone, local),
    }
}

/// The first instant after the skipped range holding `local`: the first
/// valid minute after it, then back second by second while still valid.
fn end_of_jump(zone: &Tz, local: NaiveDateTime) -> Option<i64> {
    let minute = TimeDelta::minutes(1);
    let second = TimeDelta::seconds(1);
    let mut probe = local;
    for _ in 0..MAX_GAP_MINUTES {
        probe += minute;
        if let Some(mut at) = zone.from_local_datetime(&probe).earliest() {
            let mut earlier = probe;
            for _ in 0..59 {
                earlier -= second;
                match zone.from_local_datetime(&earlier).earliest() {
                    Some(valid) => at = valid,
                    None => break,
                }
            }
            return Some(at.timestamp_millis());
        }
    }
    None
}

/// A schedule's state as stored in Redis, read at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickState {
    /// Ticks up to this instant (unix ms) are handled; `None`: never ran.
    pub last_ms: Option<i64>,
    /// The [`Schedule::fingerprint`] `last_ms` was counted with.
    pub fingerprint: Option<String>,
    /// Paused or resumed at run time; `None`: the configured state holds.
    pub paused: Option<bool>,
    /// The previous tick's job is still queued, retrying or running.
    pub previous_unfinished: bool,
}

/// What one round does with a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing came due: no write.
    Idle,
    /// Move the state from `TickState::last_ms` to `to_ms` and enqueue `ticks`.
    Advance {
        /// The new `last` tick (unix ms).
        to_ms: i64,
        /// Ticks to enqueue (unix ms), earliest first.
        ticks: Vec<i64>,
        /// Ticks missed while no worker ran that get no job.
        missed: u64,
        /// Due ticks dropped because the previous one was unfinished.
        skipped: u64,
        /// The schedule is new or its cron expression or zone changed: it
        /// counts from now and nothing before is run.
        restarted: bool,
    },
}

/// Decides what to enqueue at `now_ms`. A tick older than `misfire_ms` was
/// missed (no worker ran at its time) and follows the schedule's catch-up
/// policy; a younger one is on time and runs.
pub fn plan(schedule: &Schedule, state: &TickState, now_ms: i64, misfire_ms: i64) -> Plan {
    let fingerprint = schedule.fingerprint();
    let last = match state.last_ms {
        Some(last) if state.fingerprint.as_deref() == Some(fingerprint.as_str()) => last,
        _ => return advance(now_ms, Vec::new(), 0, 0, true),
    };
    if schedule.next_after(last).is_none_or(|first| first > now_ms) {
        return Plan::Idle;
    }
    if state.paused.unwrap_or(schedule.paused) {
        return advance(now_ms, Vec::new(), 0, 0, false);
    }
    let on_time_after = (now_ms - misfire_ms).max(last);
    let (mut ticks, missed) = catch_up(schedule, last, on_time_after, now_ms);
    let room = MAX_TICKS_PER_ROUND.saturating_sub(ticks.len());
    ticks.extend(schedule.ticks_in(on_time_after, now_ms, room));
    let to_ms = match ticks.last() {
        Some(latest) if ticks.len() >= MAX_TICKS_PER_ROUND => *latest,
        _ => now_ms,
    };
    let mut skipped = 0;
    if schedule.overlap == Overlap::Skip && !ticks.is_empty() {
        let keep = usize::from(!state.previous_unfinished);
        skipped = (ticks.len() - keep) as u64;
        ticks.drain(..ticks.len() - keep);
    }
    advance(to_ms, ticks, missed, skipped, false)
}

/// The missed ticks in `(last, missed_until]` to run, and how many get no job.
fn catch_up(schedule: &Schedule, last: i64, missed_until: i64, now_ms: i64) -> (Vec<i64>, u64) {
    if missed_until <= last {
        return (Vec::new(), 0);
    }
    let count =
        |after: i64, until: i64| schedule.ticks_in(after, until, MAX_COUNTED_MISSES).len() as u64;
    match schedule.catch_up {
        CatchUp::None => (Vec::new(), count(last, missed_until)),
        CatchUp::Last => match schedule.latest_in(last, missed_until) {
            Some(latest) => (vec![latest], count(last, missed_until).saturating_sub(1)),
            None => (Vec::new(), 0),
        },
        CatchUp::All => {
            let window_start = (now_ms - schedule.catch_up_window_ms).clamp(last, missed_until);
            let ticks = schedule.ticks_in(window_start, missed_until, MAX_TICKS_PER_ROUND);
            (ticks, count(last, window_start))
        }
    }
}

fn advance(to_ms: i64, ticks: Vec<i64>, missed: u64, skipped: u64, restarted: bool) -> Plan {
    Plan::Advance {
        to_ms,
        ticks,
        missed,
        skipped,
        restarted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedules::tests::entry;

    fn schedule(cron: &str, zone: &str) -> Schedule {
        let mut entry = entry("s", cron);
        entry.timezone = Some(zone.into());
        Schedule::compile(&entry, 0).expect("valid schedule")
    }

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("time")
            .timestamp_millis()
    }

    fn utc(ticks: &[i64]) -> Vec<String> {
        ticks
            .iter()
            .map(|t| {
                DateTime::from_timestamp_millis(*t)
                    .expect("instant")
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string()
            })
            .collect()
    }

    fn state(last: i64, s: &Schedule) -> TickState {
        TickState {
            last_ms: Some(last),
            fingerprint: Some(s.fingerprint()),
            ..TickState::default()
        }
    }

    #[test]
    fn ticks_follow_the_zone() {
        let s = schedule("0 9 * * *", "Europe/Berlin");
        let ticks = s.ticks_in(ms("2026-01-10T00:00:00Z"), ms("2026-01-12T00:00:00Z"), 10);
        assert_eq!(
            utc(&ticks),
            ["2026-01-10T08:00:00Z", "2026-01-11T08:00:00Z"]
        );
        let every_second = schedule("* * * * * *", "UTC");
        let t = ms("2026-01-10T00:00:00.400Z");
        assert_eq!(every_second.next_after(t), Some(ms("2026-01-10T00:00:01Z")));
        assert_eq!(
            every_second.latest_in(t - 5_000, t),
            Some(ms("2026-01-10T00:00:00Z"))
        );
    }

    #[test]
    fn a_time_skipped_by_spring_forward_runs_once_right_after_the_jump() {
        // New York, 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00Z).
        let daily = schedule("30 2 * * *", "America/New_York");
        let ticks = daily.ticks_in(ms("2026-03-07T00:00:00Z"), ms("2026-03-10T00:00:00Z"), 10);
        assert_eq!(
            utc(&ticks),
            [
                "2026-03-07T07:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:30:00Z"
            ]
        );
        // Every 15 minutes: 02:00..02:45 never happen; they run once, at the jump.
        let quarterly = schedule("*/15 * * * *", "America/New_York");
        let ticks = quarterly.ticks_in(ms("2026-03-08T06:40:00Z"), ms("2026-03-08T07:20:00Z"), 10);
        assert_eq!(
            utc(&ticks),
            [
                "2026-03-08T06:45:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-08T07:15:00Z"
            ]
        );
    }

    #[test]
    fn a_repeated_hour_runs_once() {
        // New York, 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:xx happens twice.
        let daily = schedule("30 1 * * *", "America/New_York");
        let ticks = daily.ticks_in(ms("2026-10-31T12:00:00Z"), ms("2026-11-02T12:00:00Z"), 10);
        assert_eq!(
            utc(&ticks),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
        let hourly = schedule("0 * * * *", "America/New_York");
        let ticks = hourly.ticks_in(ms("2026-11-01T03:30:00Z"), ms("2026-11-01T07:30:00Z"), 10);
        assert_eq!(
            utc(&ticks),
            [
                "2026-11-01T04:00:00Z",
                "2026-11-01T05:00:00Z",
                "2026-11-01T07:00:00Z"
            ]
        );
        // From inside the second pass of the repeated hour, the next tick is 02:00 EST.
        let minutely = schedule("* * * * *", "America/New_York");
        assert_eq!(
            minutely.next_after(ms("2026-11-01T06:30:00Z")),
            Some(ms("2026-11-01T07:00:00Z"))
        );
        assert_eq!(
            minutely.latest_in(ms("2026-11-01T06:00:00Z"), ms("2026-11-01T06:59:00Z")),
            None
        );
    }

    #[test]
    fn first_round_and_changed_cron_count_from_now() {
        let s = schedule("* * * * * *", "UTC");
        let now = ms("2026-01-10T12:00:00Z");
        let fresh = plan(&s, &TickState::default(), now, 5_000);
        assert_eq!(fresh, advance(now, vec![], 0, 0, true));
        let mut changed = state(now - 60_000, &s);
        changed.fingerprint = Some("0 * * * * UTC".into());
        assert_eq!(
            plan(&s, &changed, now, 5_000),
            advance(now, vec![], 0, 0, true)
        );
    }

    #[test]
    fn on_time_ticks_run_and_nothing_due_writes_nothing() {
        let s = schedule("* * * * * *", "UTC");
        let now = ms("2026-01-10T12:00:02.300Z");
        let p = plan(&s, &state(now - 2_300, &s), now, 5_000);
        let ticks = vec![now - 1_300, now - 300];
        assert_eq!(p, advance(now, ticks, 0, 0, false));
        assert_eq!(plan(&s, &state(now - 200, &s), now, 5_000), Plan::Idle);
        assert_eq!(plan(&s, &state(now + 900, &s), now, 5_000), Plan::Idle);
    }

    #[test]
    fn catch_up_policies() {
        let mut s = schedule("0 * * * *", "UTC");
        let last = ms("2026-01-10T00:30:00Z");
        let now = ms("2026-01-10T05:00:01Z");
        let misfire = 5_000;
        let on_time = ms("2026-01-10T05:00:00Z");
        s.catch_up = CatchUp::None;
        assert_eq!(
            plan(&s, &state(last, &s), now, misfire),
            advance(now, vec![on_time], 4, 0, false)
        );
        s.catch_up = CatchUp::Last;
        let latest_missed = ms("2026-01-10T04:00:00Z");
        assert_eq!(
            plan(&s, &state(last, &s), now, misfire),
            advance(now, vec![latest_missed, on_time], 3, 0, false)
        );
        s.catch_up = CatchUp::All;
        s.catch_up_window_ms = 150 * 60_000;
        let in_window = vec![
            ms("2026-01-10T03:00:00Z"),
            ms("2026-01-10T04:00:00Z"),
            on_time,
        ];
        assert_eq!(
            plan(&s, &state(last, &s), now, misfire),
            advance(now, in_window, 2, 0, false)
        );
    }

    #[test]
    fn a_long_catch_up_goes_on_next_round() {
        let mut s = schedule("* * * * * *", "UTC");
        s.catch_up = CatchUp::All;
        let now = ms("2026-01-10T12:00:00Z");
        let last = now - 3_000_000;
        let Plan::Advance { to_ms, ticks, .. } = plan(&s, &state(last, &s), now, 5_000) else {
            panic!("due ticks")
        };
        assert_eq!(ticks.len(), MAX_TICKS_PER_ROUND);
        assert_eq!(ticks.first(), Some(&(last + 1_000)));
        assert_eq!(to_ms, *ticks.last().expect("ticks"));
    }

    #[test]
    fn paused_and_overlapping_ticks_are_dropped() {
        let mut s = schedule("* * * * * *", "UTC");
        let now = ms("2026-01-10T12:00:03Z");
        let mut paused = state(now - 3_000, &s);
        paused.paused = Some(true);
        assert_eq!(
            plan(&s, &paused, now, 5_000),
            advance(now, vec![], 0, 0, false)
        );
        s.paused = true;
        paused.paused = Some(false);
        let resumed = plan(&s, &paused, now, 5_000);
        assert!(matches!(resumed, Plan::Advance { ref ticks, .. } if ticks.len() == 3));
        s.paused = false;
        s.overlap = Overlap::Skip;
        let mut busy = state(now - 3_000, &s);
        assert_eq!(
            plan(&s, &busy, now, 5_000),
            advance(now, vec![now], 0, 2, false)
        );
        busy.previous_unfinished = true;
        assert_eq!(
            plan(&s, &busy, now, 5_000),
            advance(now, vec![], 0, 3, false)
        );
    }
}
