//! `conveyor limiters`: the limiters in force with their use, and
//! `conveyor limiters set NAME ...` to change one for every worker, straight
//! against Redis (no API needed).
//!
//! What each action does lives in `conveyor::limiters::control`, shared with
//! the HTTP API; this module only parses arguments and prints.

use anyhow::Context as _;
use clap::{Args, Subcommand};

use conveyor::config::Settings;
use conveyor::limiters::control::{self, LimiterView};
use conveyor::limiters::LimiterConfig;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  conveyor limiters\n  conveyor limiters --json\n  conveyor limiters set partner-api '{\"kind\":\"http\",\"concurrency\":20}'\n\nA definition set here replaces the configured limiter of that name (or adds one) for every worker, from their next claims on."
)]
pub(super) struct LimitersArgs {
    #[command(subcommand)]
    command: Option<LimitersCommand>,
    /// Print a JSON array (the same as GET /limiters).
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum LimitersCommand {
    /// Replace (or add) the limiter NAME with a JSON definition, as PUT /limiters/{name}.
    Set {
        name: String,
        /// The limiter as JSON: {"queue"?, "kind"?, "concurrency"?, "rate"?, "per_key_concurrency"?, "per_key_rate"?}
        definition: String,
    },
}

pub(super) async fn run(settings: Settings, args: LimitersArgs) -> anyhow::Result<()> {
    let configured = settings.limiters()?;
    let redis = super::connect_redis(&settings)?;
    match args.command {
        None => {
            let views = control::list(&configured, &redis, &settings.queues.names).await?;
            print_list(&views, args.json)?;
        }
        Some(LimitersCommand::Set { name, definition }) => {
            let definition: LimiterConfig = serde_json::from_str(&definition)
                .context("the definition is not a limiter in JSON")?;
            let stored = control::put(&redis, &name, definition).await?;
            println!("{}", serde_json::to_string(&stored)?);
        }
    }
    Ok(())
}

fn print_list(views: &[LimiterView], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(views)?);
        return Ok(());
    }
    if views.is_empty() {
        println!("no limiters");
        return Ok(());
    }
    println!(
        "{:<24} {:<12} {:<12} {:>11} {:>10} {:>8} {:>10} {:>8} {:>8} {:>8}",
        "NAME",
        "QUEUE",
        "KIND",
        "CONCURRENCY",
        "RATE",
        "KEY_CONC",
        "KEY_RATE",
        "RUNNING",
        "WAITING",
        "HELD_MS"
    );
    let dash = || "-".to_string();
    for view in views {
        let d = &view.definition;
        println!(
            "{:<24} {:<12} {:<12} {:>11} {:>10} {:>8} {:>10} {:>8} {:>8} {:>8}",
            d.name,
            d.queue.clone().unwrap_or_else(|| "*".into()),
            d.kind.clone().unwrap_or_else(|| "*".into()),
            d.concurrency.map_or_else(dash, |n| n.to_string()),
            d.rate.clone().unwrap_or_else(dash),
            d.per_key_concurrency.map_or_else(dash, |n| n.to_string()),
            d.per_key_rate.clone().unwrap_or_else(dash),
            view.running.map_or_else(dash, |n| n.to_string()),
            view.waiting,
            view.held_for_ms.map_or_else(dash, |n| n.to_string()),
        );
    }
    Ok(())
}
