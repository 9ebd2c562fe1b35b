//! `conveyor queue pause|resume QUEUE` and `conveyor cancel ID`: the
//! operator's controls, over Redis and MySQL directly (no API needed). The
//! decisions are the library's (`conveyor::control`), shared with the API.

use clap::{Args, Subcommand};

use conveyor::config::Settings;
use conveyor::control::{self, CancelAnswer};

use super::NothingMatched;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  conveyor queue pause emails     # no new job of it starts; running ones finish\n  conveyor queue resume emails\n\nThe state lives in Redis: every worker honours it within queues.control_poll_ms, and it survives restarts."
)]
pub(super) struct QueueArgs {
    #[command(subcommand)]
    command: QueueCommand,
}

#[derive(Subcommand, Debug)]
enum QueueCommand {
    /// Stop starting the queue's jobs (it still accepts new ones).
    Pause { queue: String },
    /// Start the queue's jobs again.
    Resume { queue: String },
}

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  conveyor cancel 0190c3a1f2e4b6d8a0c2e4f6a8b0c2e4\n  conveyor cancel job-42 --queue emails\n\nA waiting job (queued, scheduled, retrying) is removed and ends `cancelled`; a running one is\nstopped and ends `cancelled` unless it finishes first.\nExit codes: 0 cancelled or cancelling, 1 unknown or finished already, 2 error."
)]
pub(super) struct CancelArgs {
    /// The job's id.
    id: String,
    /// Look only in this queue (default: every queue of queues.names).
    #[arg(long)]
    queue: Option<String>,
}

pub(super) async fn queue(settings: Settings, args: QueueArgs) -> anyhow::Result<()> {
    let redis = super::connect_redis(&settings)?;
    let (queue, paused) = match args.command {
        QueueCommand::Pause { queue } => (queue, true),
        QueueCommand::Resume { queue } => (queue, false),
    };
    control::set_paused(&redis, &settings.queues.names, &queue, paused).await?;
    println!(
        "queue {queue} {}",
        if paused { "paused" } else { "resumed" }
    );
    Ok(())
}

pub(super) async fn cancel(settings: Settings, args: CancelArgs) -> anyhow::Result<()> {
    let redis = super::connect_redis(&settings)?;
    let pool = conveyor::store::open_pool(&settings.mysql, 1)?;
    let answer = control::cancel_job(
        &redis,
        &pool,
        &settings.queues.names,
        args.queue.as_deref(),
        &args.id,
    )
    .await;
    pool.disconnect().await.ok();
    match answer? {
        CancelAnswer::Accepted { queue, state } => {
            println!("job {} (queue {queue}) {}", args.id, state.as_str());
            Ok(())
        }
        CancelAnswer::Finished { queue, status } => Err(NothingMatched(format!(
            "job {} (queue {queue}) has finished already: {status}",
            args.id
        ))
        .into()),
        CancelAnswer::Unknown => {
            Err(NothingMatched(format!("no job {:?} in Redis or MySQL", args.id)).into())
        }
    }
}
