//! `conveyor dead list|show|retry|purge`: dead jobs in `job_results`, or
//! with `--letters` the messages in `dead_letters`.
//!
//! Retrying a dead job enqueues its original message again under the same id
//! and leaves the dead row in place: the new result overwrites it. Retrying
//! a dead letter pushes its raw bytes again and deletes the letter (the
//! message gets a new letter if it fails again). All SQL is in
//! `conveyor::store`.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use conveyor::config::Settings;
use conveyor::job::now_ms;
use conveyor::redact::redact_url;
use conveyor::requeue;
use conveyor::store::{self, DeadFilter, DeadJob, DeadLetterRecord};

use super::NothingMatched;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  conveyor dead list --kind email --older-than 1h\n  conveyor dead show 0190c3a1f2e4b6d8a0c2e4f6\n  conveyor dead retry --queue default --kind resize --limit 100\n  conveyor dead purge --older-than 30d\n  conveyor dead list --letters\n\nExit codes: 0 done, 1 nothing matched (show, retry, purge), 2 error."
)]
pub(super) struct DeadArgs {
    #[command(subcommand)]
    command: DeadCommand,
}

#[derive(Subcommand, Debug)]
enum DeadCommand {
    /// List dead jobs (or dead letters), oldest first.
    #[command(
        after_help = "Example:\n  conveyor dead list --queue default --older-than 2h --limit 20 --json"
    )]
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead job (by job id) or dead letter (by its numeric id).
    #[command(
        after_help = "Examples:\n  conveyor dead show job-42\n  conveyor dead show --letters 17"
    )]
    Show {
        id: String,
        /// ID is a dead letter's id.
        #[arg(long)]
        letters: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Enqueue dead jobs again (their original message, same id).
    #[command(
        after_help = "Examples:\n  conveyor dead retry job-42 job-43\n  conveyor dead retry --kind resize --older-than 10m\n  conveyor dead retry --all --limit 1000\n  conveyor dead retry --letters 17        # push the raw message again, delete the letter"
    )]
    Retry {
        /// Job ids (dead letter ids with --letters); or select with filters.
        ids: Vec<String>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Act on every dead job (or letter) when no id or filter is given.
        #[arg(long)]
        all: bool,
    },
    /// Delete dead jobs (or dead letters); never touches succeeded rows.
    #[command(
        after_help = "Examples:\n  conveyor dead purge --older-than 30d\n  conveyor dead purge --letters --all"
    )]
    Purge {
        /// Job ids (dead letter ids with --letters); or select with filters.
        ids: Vec<String>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Act on every dead job (or letter) when no id or filter is given.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Args, Debug, Clone)]
struct FilterArgs {
    /// Act on dead letters (malformed messages) instead of dead jobs.
    #[arg(long)]
    letters: bool,
    /// Only jobs of this kind (not with --letters).
    #[arg(long, conflicts_with = "letters")]
    kind: Option<String>,
    /// Only this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only rows older than this: 90s, 15m, 2h, 7d, 1w.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    older_than: Option<Duration>,
    /// At most this many rows, oldest first (list: 50 unless given).
    #[arg(long)]
    limit: Option<u64>,
}

impl FilterArgs {
    fn to_filter(&self, ids: Vec<String>, default_limit: Option<u64>) -> DeadFilter {
        DeadFilter {
            ids,
            kind: self.kind.clone(),
            queue: self.queue.clone(),
            before_ms: self
                .older_than
                .map(|age| now_ms() - i64::try_from(age.as_millis()).unwrap_or(i64::MAX)),
            limit: self.limit.or(default_limit),
            ..DeadFilter::default()
        }
    }

    fn selects_anything(&self, ids: &[String]) -> bool {
        !ids.is_empty() || self.kind.is_some() || self.queue.is_some() || self.older_than.is_some()
    }
}

/// `90s`, `15m`, `2h`, `7d`, `1w` (a bare number is seconds).
fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not an age like 90s, 15m, 2h, 7d or 1w"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        other => return Err(format!("unknown unit {other:?}: use s, m, h, d or w")),
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

pub(super) async fn run(settings: Settings, args: DeadArgs) -> anyhow::Result<()> {
    let pool = store::open_pool(&settings.mysql, 2)?;
    let result = dispatch(&settings, &pool, args.command).await;
    pool.disconnect().await.ok();
    result
}

async fn dispatch(
    settings: &Settings,
    pool: &mysql_async::Pool,
    command: DeadCommand,
) -> anyhow::Result<()> {
    let mysql = || format!("reading {}", redact_url(&settings.mysql.url));
    match command {
        DeadCommand::List { filter, json } => {
            let selected = filter.to_filter(Vec::new(), Some(50));
            if filter.letters {
                let letters = store::list_dead_letters(pool, &selected)
                    .await
                    .with_context(mysql)?;
                print_letters(&letters, json);
            } else {
                let jobs = store::list_dead(pool, &selected)
                    .await
                    .with_context(mysql)?;
                print_jobs(&jobs, json);
            }
            Ok(())
        }
        DeadCommand::Show { id, letters, json } => {
            show(pool, &id, letters, json).await.with_context(mysql)
        }
        DeadCommand::Retry { ids, filter, all } => {
            require_selection(&filter, &ids, all)?;
            if filter.letters {
                retry_letters(settings, pool, filter.to_filter(ids, None)).await
            } else {
                retry_jobs(settings, pool, filter.to_filter(ids, None)).await
            }
        }
        DeadCommand::Purge { ids, filter, all } => {
            require_selection(&filter, &ids, all)?;
            let selected = filter.to_filter(ids, None);
            let purged = store::purge(pool, &selected, filter.letters)
                .await
                .with_context(|| format!("deleting from {}", redact_url(&settings.mysql.url)))?;
            if purged == 0 {
                return Err(NothingMatched("nothing matched: no rows purged".into()).into());
            }
            println!("purged {purged} {}", noun(filter.letters));
            Ok(())
        }
    }
}

fn noun(letters: bool) -> &'static str {
    if letters {
        "dead letters"
    } else {
        "dead jobs"
    }
}

fn require_selection(filter: &FilterArgs, ids: &[String], all: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        all || filter.selects_anything(ids),
        "name ids, or select with --kind/--queue/--older-than, or pass --all to act on every {}",
        noun(filter.letters)
    );
    if filter.letters {
        if let Some(bad) = ids.iter().find(|id| id.parse::<u64>().is_err()) {
            anyhow::bail!("dead letter ids are numbers, got {bad:?}");
        }
    }
    Ok(())
}

async fn show(
    pool: &mysql_async::Pool,
    id: &str,
    letters: bool,
    as_json: bool,
) -> anyhow::Result<()> {
    let filter = DeadFilter {
        ids: vec![id.to_string()],
        limit: Some(1),
        ..DeadFilter::default()
    };
    let found = if letters {
        anyhow::ensure!(
            id.parse::<u64>().is_ok(),
            "dead letter ids are numbers, got {id:?}"
        );
        let rows = store::list_dead_letters(pool, &filter).await?;
        rows.first().map(letter_json)
    } else {
        let rows = store::list_dead(pool, &filter).await?;
        rows.first().map(|job| job_json(job, true))
    };
    let Some(found) = found else {
        return Err(NothingMatched(format!("no {} with id {id:?}", noun(letters))).into());
    };
    if as_json {
        println!("{found}");
    } else if let Value::Object(map) = found {
        for (key, value) in map {
            let text = match value {
                Value::String(text) => text,
                Value::Null => "-".to_string(),
                other => other.to_string(),
            };
            println!("{key:>12}: {text}");
        }
    }
    Ok(())
}

fn job_json(job: &DeadJob, with_message: bool) -> Value {
    let r = &job.record;
    let mut value = json!({
        "id": r.id, "queue": r.queue, "kind": r.kind, "attempts": r.attempts,
        "error": r.error, "enqueued_at": r.enqueued_at, "started_at": r.started_at,
        "finished_at": r.finished_at, "worker": r.worker,
    });
    if with_message {
        value["message"] = json!(job.message.as_deref().map(String::from_utf8_lossy));
    }
    value
}

fn letter_json(letter: &DeadLetterRecord) -> Value {
    json!({
        "id": letter.id, "queue": letter.queue, "claim_token": letter.claim_token,
        "reason": letter.reason, "received_at": letter.received_at,
        "raw": String::from_utf8_lossy(&letter.raw),
    })
}

fn print_jobs(jobs: &[DeadJob], as_json: bool) {
    if as_json {
        let all: Vec<Value> = jobs.iter().map(|j| job_json(j, false)).collect();
        println!("{}", Value::Array(all));
        return;
    }
    println!(
        "{:<32} {:<12} {:<16} {:>8} {:<27} error",
        "id", "queue", "kind", "attempts", "finished_at"
    );
    for job in jobs {
        let r = &job.record;
        println!(
            "{:<32} {:<12} {:<16} {:>8} {:<27} {}",
            r.id,
            r.queue,
            r.kind,
            r.attempts,
            r.finished_at.as_deref().unwrap_or("-"),
            shorten(r.error.as_deref().unwrap_or("-"), 80)
        );
    }
}

fn print_letters(letters: &[DeadLetterRecord], as_json: bool) {
    if as_json {
        let all: Vec<Value> = letters.iter().map(letter_json).collect();
        println!("{}", Value::Array(all));
        return;
    }
    println!(
        "{:>8} {:<12} {:<27} {:>9} reason",
        "id", "queue", "received_at", "bytes"
    );
    for l in letters {
        println!(
            "{:>8} {:<12} {:<27} {:>9} {}",
            l.id,
            l.queue,
            l.received_at,
            l.raw.len(),
            shorten(&l.reason, 80)
        );
    }
}

fn shorten(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= max {
        line.to_string()
    } else {
        format!("{}…", line.chars().take(max).collect::<String>())
    }
}

async fn retry_jobs(
    settings: &Settings,
    pool: &mysql_async::Pool,
    filter: DeadFilter,
) -> anyhow::Result<()> {
    let redis = super::connect_redis(settings)?;
    let done = requeue::retry_dead(pool, &redis, &filter)
        .await
        .with_context(|| {
            format!(
                "retrying dead jobs ({} / {})",
                redact_url(&settings.mysql.url),
                redact_url(&settings.redis.url)
            )
        })?;
    for (id, why) in &done.skipped {
        eprintln!("skipped {id}: {why}");
    }
    for (id, queue) in &done.retried {
        println!("{id}\t{queue}");
    }
    eprintln!(
        "retried {} dead jobs ({} skipped)",
        done.retried.len(),
        done.skipped.len()
    );
    if done.retried.is_empty() {
        return Err(NothingMatched("nothing matched: no dead jobs retried".into()).into());
    }
    Ok(())
}

async fn retry_letters(
    settings: &Settings,
    pool: &mysql_async::Pool,
    filter: DeadFilter,
) -> anyhow::Result<()> {
    let redis = super::connect_redis(settings)?;
    let done = requeue::retry_letters(pool, &redis, &filter)
        .await
        .with_context(|| {
            format!(
                "retrying dead letters ({} / {})",
                redact_url(&settings.mysql.url),
                redact_url(&settings.redis.url)
            )
        })?;
    if done.is_empty() {
        return Err(NothingMatched("nothing matched: no dead letters retried".into()).into());
    }
    for (id, queue) in &done {
        println!("{id}\t{queue}");
    }
    eprintln!("retried {} dead letters", done.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_age("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_age("1y").is_err());
        assert!(parse_age("h").is_err());
    }
}
