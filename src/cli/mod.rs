//! Subcommands of the `conveyor` binary. Each loads the settings, then calls
//! the library; errors are `anyhow` here and nowhere else.

mod api;
mod bench;
mod control;
mod dead;
mod enqueue;
mod limiters;
mod prune;
mod schedules;
mod stats;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use conveyor::config::Settings;
use conveyor::kinds::Registry;
use conveyor::redact::redact_url;
use conveyor::redis_queue::RedisQueue;

/// conveyor — background jobs from Redis, processed by actors, results in MySQL.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
pub(crate) struct Cli {
    /// Configuration file layered over the defaults (env CONVEYOR__* overrides both).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a worker: claim jobs, run them, write results (until SIGTERM/SIGINT).
    #[command(
        after_help = "Example:\n  CONVEYOR__PROCESSORS__COUNT=8 conveyor worker --config prod.toml"
    )]
    Worker,
    /// Create or upgrade the MySQL schema, then exit.
    #[command(after_help = "Example:\n  conveyor migrate --config prod.toml")]
    Migrate,
    /// Push one job, or a JSON-lines file of jobs, onto a queue.
    Enqueue(enqueue::EnqueueArgs),
    /// Show queue depths, dead jobs and worker leases.
    Stats(stats::StatsArgs),
    /// Run the performance workloads against the configured Redis and MySQL.
    Bench(bench::BenchArgs),
    /// Serve the HTTP API alone (no worker).
    Api(api::ApiArgs),
    /// List, show, retry or purge dead jobs and dead letters.
    Dead(dead::DeadArgs),
    /// Delete results past their retention now (or count them with --dry-run).
    Prune(prune::PruneArgs),
    /// Pause or resume a queue.
    Queue(control::QueueArgs),
    /// Cancel a job: waiting ones never start, running ones are stopped.
    Cancel(control::CancelArgs),
    /// List, trigger, pause or resume the configured schedules.
    Schedules(schedules::SchedulesArgs),
    /// The limiters in force with their running and waiting jobs; change one.
    Limiters(limiters::LimitersArgs),
}

/// A command found nothing to act on (exit code 1, not an error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct NothingMatched(pub String);

pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Worker => run_worker(settings),
        Command::Migrate => block_on(migrate(settings)),
        Command::Enqueue(args) => block_on(enqueue::run(settings, args)),
        Command::Stats(args) => block_on(stats::run(settings, args)),
        Command::Bench(args) => block_on(bench::run(settings, cli.config, args)),
        Command::Api(args) => block_on(api::run(settings, args)),
        Command::Dead(args) => block_on(dead::run(settings, args)),
        Command::Prune(args) => block_on(prune::run(settings, args)),
        Command::Queue(args) => block_on(control::queue(settings, args)),
        Command::Cancel(args) => block_on(control::cancel(settings, args)),
        Command::Schedules(args) => block_on(schedules::run(settings, args)),
        Command::Limiters(args) => block_on(limiters::run(settings, args)),
    }
}

fn run_worker(settings: Settings) -> anyhow::Result<()> {
    let registry = Registry::with_builtins_configured(&settings.kinds);
    match conveyor::worker::run_until_signalled(settings, registry)? {
        conveyor::worker::Stopped::Drained => Ok(()),
        // A second signal: stop now, with the status of an interrupted program.
        conveyor::worker::Stopped::Interrupted => std::process::exit(130),
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(future: F) -> anyhow::Result<()> {
    actix_rt::System::new().block_on(future)
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let pool = conveyor::store::open_pool(&settings.mysql, 1)?;
    let version = conveyor::store::migrate(&pool)
        .await
        .with_context(|| format!("migrating {}", redact_url(&settings.mysql.url)))?;
    pool.disconnect().await.ok();
    println!("schema at version {version}");
    Ok(())
}

fn connect_redis(settings: &Settings) -> anyhow::Result<RedisQueue> {
    Ok(RedisQueue::connect(&settings.redis)?)
}
