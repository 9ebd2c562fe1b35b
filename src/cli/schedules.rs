//! `conveyor schedules list|trigger|pause|resume`: the configured schedules
//! at run time, straight against Redis and MySQL (no API needed).
//!
//! What each action does lives in `conveyor::schedules::control`, shared
//! with the HTTP API; this module only parses arguments and prints.

use clap::{Args, Subcommand};

use conveyor::config::Settings;
use conveyor::job::now_ms;
use conveyor::schedules::control::{self, ScheduleView};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  conveyor schedules list\n  conveyor schedules list --json\n  conveyor schedules trigger nightly-report\n  conveyor schedules pause nightly-report\n  conveyor schedules resume nightly-report\n\nSchedules are the [[schedules]] entries of the configuration; pause state lives in Redis and holds for every worker."
)]
pub(super) struct SchedulesArgs {
    #[command(subcommand)]
    command: SchedulesCommand,
}

#[derive(Subcommand, Debug)]
enum SchedulesCommand {
    /// Every schedule: cron, zone, next run, paused, latest runs.
    List {
        /// Print a JSON array (the same as GET /schedules).
        #[arg(long)]
        json: bool,
    },
    /// Enqueue one run now, with a fresh job id (printed).
    Trigger { name: String },
    /// Stop enqueuing ticks until resumed (ticks meanwhile are not caught up).
    Pause { name: String },
    /// Enqueue ticks again, from the next one on.
    Resume { name: String },
}

pub(super) async fn run(settings: Settings, args: SchedulesArgs) -> anyhow::Result<()> {
    let schedules = settings.schedules()?;
    let redis = super::connect_redis(&settings)?;
    match args.command {
        SchedulesCommand::List { json } => {
            let pool = conveyor::store::open_pool(&settings.mysql, 1)?;
            let views = control::list(&schedules, &redis, &pool, now_ms()).await;
            pool.disconnect().await.ok();
            print_list(&views?, json)?;
        }
        SchedulesCommand::Trigger { name } => {
            let schedule = control::find(&schedules, &name)?;
            let id = control::trigger(schedule, &redis, now_ms()).await?;
            println!("{id}");
        }
        SchedulesCommand::Pause { name } => {
            control::set_paused(control::find(&schedules, &name)?, &redis, true).await?;
            println!("schedule {name} paused");
        }
        SchedulesCommand::Resume { name } => {
            control::set_paused(control::find(&schedules, &name)?, &redis, false).await?;
            println!("schedule {name} resumed");
        }
    }
    Ok(())
}

fn print_list(views: &[ScheduleView], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(views)?);
        return Ok(());
    }
    if views.is_empty() {
        println!("no schedules configured ([[schedules]] in the configuration)");
        return Ok(());
    }
    println!(
        "{:<24} {:<20} {:<18} {:<7} {:<26} last run",
        "schedule", "cron", "timezone", "paused", "next run (UTC)"
    );
    for view in views {
        let last = view
            .last_runs
            .first()
            .map(|run| format!("{} {}", run.id, run.status))
            .unwrap_or_else(|| "-".to_string());
        println!(
            "{:<24} {:<20} {:<18} {:<7} {:<26} {last}",
            view.name,
            view.cron,
            view.timezone,
            if view.paused { "yes" } else { "no" },
            view.next_run_at.as_deref().unwrap_or("-"),
        );
    }
    Ok(())
}
