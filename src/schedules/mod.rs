//! Schedules: `[[schedules]]` entries of the configuration, checked and
//! compiled once at start, and the jobs their ticks become.
//!
//! This module owns what a schedule means: its cron expression (5 fields, or
//! 6 with seconds first, parsed by `croner`), its IANA time zone (`chrono-tz`),
//! the catch-up and overlap policies, the deterministic id of each tick's job
//! (`sched:<name>:<tick as unix ms>`) and the message that carries it. Its
//! rules do no I/O: the Ticker actor reads and advances the per-schedule
//! state in Redis, and [`ticks::plan`] decides, from that state and a clock
//! passed in, which ticks become jobs.
//!
//! # Layout
//!
//! - this file: the configuration entry, its validation and the compiled [`Schedule`];
//! - `ticks`: the tick arithmetic (time zones, daylight saving) and the catch-up plan (no I/O);
//! - `control`: list, trigger, pause and resume, shared by the API and the CLI.

pub mod control;
pub mod ticks;

use std::collections::HashSet;
use std::str::FromStr as _;

use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::Deserialize;
use serde_json::Value;

use crate::job::{is_valid_queue_name, Envelope, MAX_ATTEMPTS_LIMIT, MAX_NAME_LEN};

pub use ticks::{plan, Plan, TickState};

/// Longest schedule name: tick ids (`sched:<name>:<13 digits>`) and manual
/// run ids (`sched:<name>:<13 digits>-m<6 hex>`) must fit the 64 characters
/// of a job id.
pub const MAX_SCHEDULE_NAME_LEN: usize = 32;

/// Catch-up window when a schedule does not set one.
const DEFAULT_CATCH_UP_WINDOW: &str = "1h";

/// One `[[schedules]]` entry as written in the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Unique name; part of every tick's job id.
    pub name: String,
    /// Cron expression (five fields, or six with seconds).
    pub cron: String,
    #[serde(default)]
    /// IANA time zone the expression is read in (default UTC).
    pub timezone: Option<String>,
    #[serde(default)]
    /// Queue the ticks go to (default the first of `queues.names`).
    pub queue: Option<String>,
    /// Handler of the tick's job.
    pub kind: String,
    #[serde(default)]
    /// Payload of the tick's job.
    pub payload: Value,
    #[serde(default)]
    /// Attempts of the tick's job (default `retry.max_attempts`).
    pub max_attempts: Option<u32>,
    #[serde(default)]
    /// Deadline of one attempt of the tick's job (ms).
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    /// `none`, `last` (default) or `all`: what happens to missed ticks.
    pub catch_up: Option<String>,
    #[serde(default)]
    /// How far back `all` catches up, e.g. `1h` (the default).
    pub catch_up_window: Option<String>,
    #[serde(default)]
    /// `allow` (default) or `skip`: a tick while the previous one is unfinished.
    pub overlap: Option<String>,
    #[serde(default)]
    /// Starts paused.
    pub paused: bool,
}

/// What happens to ticks missed while no worker ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Missed ticks are skipped; no job is ever created for them.
    None,
    /// The latest missed tick runs (the default).
    Last,
    /// Every missed tick inside `catch_up_window` runs.
    All,
}

/// Whether a tick may start while the previous one is unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// A tick starts even while the previous one is unfinished.
    Allow,
    /// No new tick while the previous tick's job is queued, retrying or running.
    Skip,
}

/// A schedule entry that cannot be used; names the schedule and the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedules[{schedule}].{key} {message}")]
pub struct ScheduleError {
    /// The schedule's name, or its position when the name itself is bad.
    pub schedule: String,
    /// The key, as in the configuration.
    pub key: &'static str,
    /// What is wrong with its value.
    pub message: String,
}

/// A checked schedule, ready to compute ticks.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Unique name.
    pub name: String,
    /// The cron expression as configured.
    pub cron_text: String,
    cron: Cron,
    /// Time zone the expression is read in.
    pub timezone: Tz,
    /// Queue the ticks go to.
    pub queue: String,
    /// Handler of the tick's job.
    pub kind: String,
    /// Payload of the tick's job.
    pub payload: Value,
    /// Attempts of the tick's job.
    pub max_attempts: Option<u32>,
    /// Deadline of one attempt of the tick's job (ms).
    pub timeout_ms: Option<u64>,
    /// What happens to missed ticks.
    pub catch_up: CatchUp,
    /// How far back `all` catches up (ms).
    pub catch_up_window_ms: i64,
    /// Whether a tick may start while the previous one is unfinished.
    pub overlap: Overlap,
    /// The pause state used until someone pauses or resumes it at run time.
    pub paused: bool,
}

impl Schedule {
    /// Checks one entry; `index` names it when its name is unusable.
    pub fn compile(entry: &ScheduleConfig, index: usize) -> Result<Schedule, ScheduleError> {
        if !is_valid_schedule_name(&entry.name) {
            return Err(ScheduleError {
                schedule: index.to_string(),
                key: "name",
                message: format!(
                    "must be 1-{MAX_SCHEDULE_NAME_LEN} chars of [A-Za-z0-9_.-], got {:?}",
                    entry.name
                ),
            });
        }
        let fail = |key: &'static str, message: String| ScheduleError {
            schedule: entry.name.clone(),
            key,
            message,
        };
        let cron = parse_cron(&entry.cron).map_err(|m| fail("cron", m))?;
        let zone = entry.timezone.as_deref().unwrap_or("UTC");
        let timezone = Tz::from_str(zone).map_err(|_| {
            fail(
                "timezone",
                format!("is not an IANA time zone name (e.g. \"Europe/Berlin\"), got {zone:?}"),
            )
        })?;
        let queue = entry.queue.clone().unwrap_or_else(|| "default".to_string());
        if !is_valid_queue_name(&queue) {
            return Err(fail(
                "queue",
                format!("must match [A-Za-z0-9_.-]{{1,64}}, got {queue:?}"),
            ));
        }
        if entry.kind.is_empty() || entry.kind.len() > MAX_NAME_LEN {
            return Err(fail(
                "kind",
                format!("must be 1-64 characters, got {:?}", entry.kind),
            ));
        }
        if let Some(n) = entry.max_attempts {
            if n == 0 || n > MAX_ATTEMPTS_LIMIT {
                return Err(fail(
                    "max_attempts",
                    format!("must be 1-{MAX_ATTEMPTS_LIMIT}, got {n}"),
                ));
            }
        }
        if entry.timeout_ms == Some(0) {
            return Err(fail("timeout_ms", "must be positive, got 0".to_string()));
        }
        let catch_up = match entry.catch_up.as_deref().unwrap_or("last") {
            "none" => CatchUp::None,
            "last" => CatchUp::Last,
            "all" => CatchUp::All,
            other => {
                return Err(fail(
                    "catch_up",
                    format!("must be \"none\", \"last\" or \"all\", got {other:?}"),
                ))
            }
        };
        let window = entry
            .catch_up_window
            .as_deref()
            .unwrap_or(DEFAULT_CATCH_UP_WINDOW);
        let catch_up_window_ms = humantime::parse_duration(window)
            .ok()
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .filter(|ms| *ms > 0)
            .ok_or_else(|| {
                fail(
                    "catch_up_window",
                    format!("must be a positive duration such as \"90s\", \"1h\" or \"2d\", got {window:?}"),
                )
            })?;
        let overlap = match entry.overlap.as_deref().unwrap_or("allow") {
            "allow" => Overlap::Allow,
            "skip" => Overlap::Skip,
            other => {
                return Err(fail(
                    "overlap",
                    format!("must be \"allow\" or \"skip\", got {other:?}"),
                ))
            }
        };
        let schedule = Schedule {
            name: entry.name.clone(),
            cron_text: entry.cron.clone(),
            cron,
            timezone,
            queue,
            kind: entry.kind.clone(),
            payload: entry.payload.clone(),
            max_attempts: entry.max_attempts,
            timeout_ms: entry.timeout_ms,
            catch_up,
            catch_up_window_ms,
            overlap,
            paused: entry.paused,
        };
        if schedule.next_after(crate::job::now_ms()).is_none() {
            return Err(fail(
                "cron",
                format!("{:?} never fires (no matching time ahead)", entry.cron),
            ));
        }
        Ok(schedule)
    }

    /// What identifies the tick sequence: a schedule whose cron expression or
    /// time zone changed counts its ticks from now on.
    pub fn fingerprint(&self) -> String {
        format!("{} {}", self.cron_text.trim(), self.timezone.name())
    }

    /// The job id of the tick at `tick_ms`.
    pub fn tick_id(&self, tick_ms: i64) -> String {
        format!("sched:{}:{tick_ms}", self.name)
    }

    /// A fresh id for a run started by hand at `now_ms` (never a tick's id).
    pub fn manual_id(&self, now_ms: i64) -> String {
        format!(
            "sched:{}:{now_ms}-m{:06x}",
            self.name,
            rand::random::<u32>() & 0xff_ffff
        )
    }

    /// The message of job `id`, serialised with `id` first (as the status
    /// index and the unique lock expect).
    pub fn message(&self, id: &str, enqueued_at_ms: i64) -> Vec<u8> {
        let envelope = Envelope {
            id: Some(id.to_string()),
            kind: self.kind.clone(),
            payload: self.payload.clone(),
            max_attempts: self.max_attempts,
            timeout_ms: self.timeout_ms,
            run_at: None,
            enqueued_at: Some(enqueued_at_ms),
            key: None,
            unique_key: None,
            unique_for_ms: None,
        };
        // Serialising a struct of strings, numbers and a JSON value cannot fail.
        serde_json::to_vec(&envelope).unwrap_or_default()
    }
}

/// Checks every entry and that no two share a name.
pub fn compile_all(entries: &[ScheduleConfig]) -> Result<Vec<Schedule>, ScheduleError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let schedule = Schedule::compile(entry, index)?;
        if !seen.insert(schedule.name.clone()) {
            return Err(ScheduleError {
                schedule: schedule.name,
                key: "name",
                message: "is used by more than one schedule".to_string(),
            });
        }
        out.push(schedule);
    }
    Ok(out)
}

/// Schedule names: 1-32 chars of `[A-Za-z0-9_.-]`.
pub fn is_valid_schedule_name(name: &str) -> bool {
    name.len() <= MAX_SCHEDULE_NAME_LEN && is_valid_queue_name(name)
}

/// Parses 5 fields, or 6 with seconds first (no year field).
fn parse_cron(text: &str) -> Result<Cron, String> {
    let fields = text.split_whitespace().count();
    if !text.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
        return Err(format!(
            "must have 5 fields, or 6 with seconds first, got {fields} in {text:?}"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| format!("{text:?} does not parse: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn entry(name: &str, cron: &str) -> ScheduleConfig {
        ScheduleConfig {
            name: name.to_string(),
            cron: cron.to_string(),
            timezone: None,
            queue: None,
            kind: "noop".to_string(),
            payload: Value::Null,
            max_attempts: None,
            timeout_ms: None,
            catch_up: None,
            catch_up_window: None,
            overlap: None,
            paused: false,
        }
    }

    fn error_of(entry: ScheduleConfig) -> String {
        compile_all(&[entry]).expect_err("refused").to_string()
    }

    #[test]
    fn defaults_apply() {
        let s = Schedule::compile(&entry("nightly", "0 3 * * *"), 0).expect("valid");
        assert_eq!(s.queue, "default");
        assert_eq!(s.timezone, chrono_tz::UTC);
        assert_eq!(s.catch_up, CatchUp::Last);
        assert_eq!(s.catch_up_window_ms, 3_600_000);
        assert_eq!(s.overlap, Overlap::Allow);
        assert_eq!(s.tick_id(5), "sched:nightly:5");
        assert!(s.manual_id(1_764_489_600_000).len() <= 64);
    }

    #[test]
    fn five_or_six_fields() {
        assert!(Schedule::compile(&entry("a", "*/5 * * * * *"), 0).is_ok());
        let err = error_of(entry("a", "0 0 * * * * 2030"));
        assert!(
            err.starts_with("schedules[a].cron must have 5 fields"),
            "{err}"
        );
        let err = error_of(entry("a", "61 * * * *"));
        assert!(
            err.starts_with("schedules[a].cron \"61 * * * *\" does not parse"),
            "{err}"
        );
        let err = error_of(entry("a", "0 0 30 2 *"));
        assert!(err.contains("never fires"), "{err}");
    }

    #[test]
    fn bad_input_names_the_schedule_and_key() {
        let mut e = entry("reports", "0 * * * *");
        e.timezone = Some("Mars/Olympus".into());
        assert!(error_of(e).starts_with("schedules[reports].timezone"));
        let mut e = entry("reports", "0 * * * *");
        e.catch_up_window = Some("soon".into());
        assert!(error_of(e).starts_with("schedules[reports].catch_up_window"));
        let mut e = entry("reports", "0 * * * *");
        e.catch_up = Some("some".into());
        assert!(error_of(e).starts_with("schedules[reports].catch_up "));
        let mut e = entry("reports", "0 * * * *");
        e.overlap = Some("never".into());
        assert!(error_of(e).starts_with("schedules[reports].overlap"));
        assert!(error_of(entry("has space", "0 * * * *")).starts_with("schedules[0].name"));
        let twice = [entry("x", "0 * * * *"), entry("x", "5 * * * *")];
        let err = compile_all(&twice).expect_err("duplicate").to_string();
        assert_eq!(err, "schedules[x].name is used by more than one schedule");
    }

    #[test]
    fn tick_messages_carry_the_id_first() {
        let mut e = entry("mail", "0 * * * *");
        e.payload = serde_json::json!({"to": "ops"});
        e.max_attempts = Some(2);
        let s = Schedule::compile(&e, 0).expect("valid");
        let text = String::from_utf8(s.message("sched:mail:60000", 7)).expect("utf8");
        assert!(
            text.starts_with(r#"{"id":"sched:mail:60000","kind":"noop""#),
            "{text}"
        );
        assert!(text.contains(r#""max_attempts":2"#), "{text}");
    }
}
