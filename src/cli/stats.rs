//! `conveyor stats`: queue depths as a table or JSON.

use anyhow::Context as _;
use clap::Args;

use conveyor::config::{redact_url, Settings};

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  conveyor stats --json")]
pub struct StatsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(settings: Settings, args: StatsArgs) -> anyhow::Result<()> {
    let redis = super::connect_redis(&settings)?;
    let mut rows = Vec::new();
    for queue in &settings.queues.names {
        let depths = redis
            .depths(queue)
            .await
            .with_context(|| format!("reading {}", redact_url(&settings.redis.url)))?;
        rows.push((queue.clone(), depths));
    }
    if args.json {
        let map: serde_json::Map<String, serde_json::Value> = rows
            .into_iter()
            .map(|(q, d)| (q, serde_json::json!(d)))
            .collect();
        println!("{}", serde_json::Value::Object(map));
    } else {
        println!(
            "{:<24} {:>10} {:>10} {:>10}",
            "queue", "pending", "running", "scheduled"
        );
        for (queue, d) in rows {
            println!(
                "{queue:<24} {:>10} {:>10} {:>10}",
                d.pending, d.running, d.scheduled
            );
        }
    }
    Ok(())
}
