//! `conveyor enqueue`: push one job, exactly as any producer would.

use anyhow::Context as _;
use clap::Args;

use conveyor::config::{redact_url, Settings};
use conveyor::job::{new_job_id, validate_envelope, Envelope, EnvelopeDefaults, RunAt};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  conveyor enqueue --kind noop --payload '{\"hello\":1}'\n  conveyor enqueue --kind sleep --payload '{\"ms\":500}' --queue slow --run-at 2030-01-01T00:00:00Z"
)]
pub struct EnqueueArgs {
    /// Handler name.
    #[arg(long)]
    kind: String,
    /// Payload as JSON.
    #[arg(long, default_value = "null")]
    payload: String,
    /// Queue name.
    #[arg(long, default_value = "default")]
    queue: String,
    /// Job id (generated when absent).
    #[arg(long)]
    id: Option<String>,
    /// Not started before this RFC 3339 time or unix milliseconds.
    #[arg(long)]
    run_at: Option<String>,
    #[arg(long)]
    max_attempts: Option<u32>,
    #[arg(long)]
    timeout_ms: Option<u64>,
}

pub async fn run(settings: Settings, args: EnqueueArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        conveyor::job::is_valid_queue_name(&args.queue),
        "--queue must match [A-Za-z0-9_.-]{{1,64}}, got {:?}",
        args.queue
    );
    let payload = serde_json::from_str(&args.payload).context("--payload is not valid JSON")?;
    let run_at = args.run_at.map(|text| match text.parse::<i64>() {
        Ok(ms) => RunAt::UnixMillis(ms),
        Err(_) => RunAt::Rfc3339(text),
    });
    let envelope = Envelope {
        id: Some(args.id.unwrap_or_else(new_job_id)),
        kind: args.kind,
        payload,
        max_attempts: args.max_attempts,
        timeout_ms: args.timeout_ms,
        run_at,
        enqueued_at: Some(conveyor::job::now_ms()),
    };
    let defaults = EnvelopeDefaults {
        max_attempts: settings.retry.max_attempts,
        timeout_ms: settings.jobs.default_timeout_ms,
        max_job_bytes: settings.limits.max_job_bytes,
    };
    let valid = validate_envelope(envelope.clone(), "", &defaults)?;
    let redis = super::connect_redis(&settings)?;
    redis
        .push(&args.queue, &[serde_json::to_vec(&envelope)?])
        .await
        .with_context(|| format!("pushing to {}", redact_url(&settings.redis.url)))?;
    println!(
        "{}",
        serde_json::json!({ "id": valid.id, "queue": args.queue })
    );
    Ok(())
}
