//! `conveyor enqueue`: push one job, or every job of a JSON-lines file.
//!
//! A file is checked in full before anything is pushed: a bad line stops the
//! command with its line number and field, and nothing of the file reaches
//! Redis. Jobs go in pipelined chunks, each chunk atomic per queue.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;

use conveyor::config::Settings;
use conveyor::intake::{self, Rules, Submission};
use conveyor::job::{new_job_id, validate_envelope, Envelope, EnvelopeDefaults, RunAt};
use conveyor::redact::redact_url;
use conveyor::redis_queue::RedisQueue;

/// Jobs per pipelined push of `--file`.
const CHUNK: usize = 1000;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  conveyor enqueue --kind noop --payload '{\"hello\":1}'\n  conveyor enqueue --kind sleep --payload '{\"ms\":500}' --queue slow --run-at 2030-01-01T00:00:00Z\n  conveyor enqueue --file jobs.jsonl          # one envelope per line; \"queue\" optional per line\n  cat jobs.jsonl | conveyor enqueue --file - --queue bulk"
)]
pub(super) struct EnqueueArgs {
    /// Handler name.
    #[arg(long, required_unless_present = "file")]
    kind: Option<String>,
    /// Payload as JSON.
    #[arg(long, default_value = "null", conflicts_with = "file")]
    payload: String,
    /// Queue name (for --file: the queue of lines without a "queue" field).
    #[arg(long, default_value = "default")]
    queue: String,
    /// Job id (generated when absent).
    #[arg(long, conflicts_with = "file")]
    id: Option<String>,
    /// Not started before this RFC 3339 time or unix milliseconds.
    #[arg(long, conflicts_with = "file")]
    run_at: Option<String>,
    #[arg(long, conflicts_with = "file")]
    max_attempts: Option<u32>,
    #[arg(long, conflicts_with = "file")]
    timeout_ms: Option<u64>,
    /// Whom the job is for (per-key limits and fairness), 1-128 chars of [A-Za-z0-9_.:-].
    #[arg(long, conflicts_with = "file")]
    key: Option<String>,
    /// Refuse the job while another job of the queue with this key is unfinished.
    #[arg(long, conflicts_with = "file")]
    unique_key: Option<String>,
    /// Hold the unique key at least this long after enqueueing (ms).
    #[arg(long, conflicts_with = "file", requires = "unique_key")]
    unique_for_ms: Option<u64>,
    /// Enqueue every line of this JSON-lines file (`-` = stdin): one envelope
    /// per line, blank lines skipped. All lines are checked before any is pushed.
    #[arg(long, value_name = "FILE", conflicts_with = "kind")]
    file: Option<PathBuf>,
}

pub(super) async fn run(settings: Settings, args: EnqueueArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        conveyor::job::is_valid_queue_name(&args.queue),
        "--queue must match [A-Za-z0-9_.-]{{1,64}}, got {:?}",
        args.queue
    );
    match args.file.clone() {
        Some(path) => enqueue_file(&settings, &path, &args.queue).await,
        None => enqueue_one(&settings, args).await,
    }
}

fn defaults(settings: &Settings) -> EnvelopeDefaults {
    EnvelopeDefaults {
        max_attempts: settings.retry.max_attempts,
        timeout_ms: settings.jobs.default_timeout_ms,
        max_job_bytes: settings.limits.max_job_bytes,
    }
}

async fn enqueue_one(settings: &Settings, args: EnqueueArgs) -> anyhow::Result<()> {
    let payload = serde_json::from_str(&args.payload).context("--payload is not valid JSON")?;
    let run_at = args.run_at.map(|text| match text.parse::<i64>() {
        Ok(ms) => RunAt::UnixMillis(ms),
        Err(_) => RunAt::Rfc3339(text),
    });
    let envelope = Envelope {
        id: Some(args.id.unwrap_or_else(new_job_id)),
        kind: args.kind.unwrap_or_default(),
        payload,
        max_attempts: args.max_attempts,
        timeout_ms: args.timeout_ms,
        run_at,
        enqueued_at: Some(conveyor::job::now_ms()),
        key: args.key,
        unique_key: args.unique_key,
        unique_for_ms: args.unique_for_ms,
    };
    let valid = validate_envelope(envelope.clone(), "", &defaults(settings))?;
    let redis = super::connect_redis(settings)?;
    let job = Submission {
        id: valid.id,
        queue: args.queue,
        message: serde_json::to_vec(&envelope)?,
        unique_key: envelope.unique_key,
    };
    let pool = conveyor::store::open_pool(&settings.mysql, 1)?;
    let holder = push_one(&redis, &pool, &job)
        .await
        .with_context(|| format!("pushing to {}", redact_url(&settings.redis.url)));
    pool.disconnect().await.ok();
    let holder = holder?;
    let receipt = match holder {
        Some(holder) => serde_json::json!({ "id": holder, "queue": job.queue, "duplicate": true }),
        None => serde_json::json!({ "id": job.id, "queue": job.queue }),
    };
    println!("{receipt}");
    Ok(())
}

async fn enqueue_file(settings: &Settings, path: &Path, queue: &str) -> anyhow::Result<()> {
    let rules = Rules {
        defaults: defaults(settings),
        queues: None,
        default_queue: queue,
    };
    let jobs = read_jobs(path, &rules)?;
    let redis = super::connect_redis(settings)?;
    let pool = conveyor::store::open_pool(&settings.mysql, 1)?;
    let begun = Instant::now();
    let progress = progress_bar(jobs.len());
    let mut per_queue: BTreeMap<String, usize> = BTreeMap::new();
    for chunk in jobs.chunks(CHUNK) {
        push_chunk(&redis, &pool, chunk).await.with_context(|| {
            format!(
                "pushing to {} after {} of {} jobs",
                redact_url(&settings.redis.url),
                per_queue.values().sum::<usize>(),
                jobs.len()
            )
        })?;
        for job in chunk {
            *per_queue.entry(job.queue.clone()).or_default() += 1;
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    pool.disconnect().await.ok();
    let seconds = begun.elapsed().as_secs_f64();
    eprintln!(
        "enqueued {} jobs from {} in {seconds:.2} s ({:.0} jobs/s)",
        jobs.len(),
        path.display(),
        jobs.len() as f64 / seconds.max(1e-6)
    );
    println!(
        "{}",
        serde_json::json!({ "enqueued": jobs.len(), "queues": per_queue })
    );
    Ok(())
}

/// Every job of the file, or the first bad line's number and field.
fn read_jobs(path: &Path, rules: &Rules<'_>) -> anyhow::Result<Vec<Submission>> {
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin().lock()))
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Box::new(BufReader::new(file))
    };
    let mut jobs = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("{}:{number}: cannot read", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let job = intake::parse_one(line.as_bytes(), rules).map_err(|rejected| {
            let field = rejected
                .field
                .as_deref()
                .map_or(String::new(), |f| format!(" (field {f})"));
            anyhow::anyhow!(
                "{}:{number}: {rejected}{field}; nothing was enqueued",
                path.display()
            )
        })?;
        jobs.push(job);
    }
    Ok(jobs)
}

/// Enqueues one job; with a `unique_key` another job holds, nothing is
/// pushed and the holder's id returns.
async fn push_one(
    redis: &RedisQueue,
    pool: &mysql_async::Pool,
    job: &Submission,
) -> anyhow::Result<Option<String>> {
    Ok(conveyor::enqueue::enqueue(redis, pool, job).await?)
}

/// One pipelined, per-queue atomic push of a chunk, in file order per queue.
/// A chunk holding unique jobs goes one job after the other (duplicates are
/// left out and counted in the log).
async fn push_chunk(
    redis: &RedisQueue,
    pool: &mysql_async::Pool,
    chunk: &[Submission],
) -> anyhow::Result<()> {
    if chunk.iter().any(|job| job.unique_key.is_some()) {
        for job in chunk {
            if let Some(holder) = push_one(redis, pool, job).await? {
                eprintln!(
                    "job {}: duplicate of {holder} (same unique_key), not enqueued",
                    job.id
                );
            }
        }
        return Ok(());
    }
    let mut groups: BTreeMap<&str, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    for job in chunk {
        groups
            .entry(job.queue.as_str())
            .or_default()
            .push((job.id.clone(), job.message.clone()));
    }
    for (queue, group) in groups {
        redis.accept(queue, &group).await?;
    }
    Ok(())
}

/// A progress bar on stderr when it is a terminal; hidden otherwise.
fn progress_bar(total: usize) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} jobs ({per_sec}, eta {eta})")
    {
        bar.set_style(style);
    }
    bar
}
