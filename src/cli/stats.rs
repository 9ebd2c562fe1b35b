//! `conveyor stats`: queue depths, dead jobs and live workers, as a table or
//! JSON, once or refreshed with `--watch`.

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde_json::{json, Map, Value};

use conveyor::config::Settings;
use conveyor::job::now_ms;
use conveyor::redact::redact_url;
use conveyor::redis_queue::{QueueDepths, RedisQueue};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  conveyor stats\n  conveyor stats --json\n  conveyor stats --watch        # refresh every 2 s until Ctrl-C\n  conveyor stats --watch 10 --json   # one JSON line every 10 s"
)]
pub(super) struct StatsArgs {
    /// Print JSON instead of a table (one line per refresh with --watch).
    #[arg(long)]
    json: bool,
    /// Refresh every SECS seconds (default 2) until interrupted.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2")]
    watch: Option<f64>,
}

/// One queue's numbers.
struct QueueStats {
    name: String,
    depths: QueueDepths,
    dead: u64,
    /// (worker id, lease deadline in unix ms).
    workers: Vec<(String, i64)>,
}

pub(super) async fn run(settings: Settings, args: StatsArgs) -> anyhow::Result<()> {
    let redis = super::connect_redis(&settings)?;
    let pool = conveyor::store::open_pool(&settings.mysql, 1)?;
    let Some(every) = args.watch else {
        let stats = collect(&settings, &redis, &pool).await?;
        print(&stats, args.json);
        return Ok(());
    };
    anyhow::ensure!(
        every.is_finite() && every >= 0.1,
        "--watch takes at least 0.1 seconds, got {every}"
    );
    let clear = !args.json && std::io::stdout().is_terminal();
    loop {
        let result = collect(&settings, &redis, &pool).await;
        if clear {
            print!("\x1b[2J\x1b[H");
        }
        match result {
            Ok(stats) => print(&stats, args.json),
            Err(error) => eprintln!("error: {error:#}"),
        }
        tokio::time::sleep(Duration::from_secs_f64(every)).await;
    }
}

async fn collect(
    settings: &Settings,
    redis: &RedisQueue,
    pool: &mysql_async::Pool,
) -> anyhow::Result<Vec<QueueStats>> {
    let redis_context = || format!("reading {}", redact_url(&settings.redis.url));
    let dead = conveyor::store::dead_counts(pool)
        .await
        .with_context(|| format!("reading {}", redact_url(&settings.mysql.url)))?;
    let mut out = Vec::new();
    for queue in &settings.queues.names {
        out.push(QueueStats {
            name: queue.clone(),
            depths: redis.depths(queue).await.with_context(redis_context)?,
            dead: dead.iter().find(|(q, _)| q == queue).map_or(0, |(_, n)| *n),
            workers: redis.workers(queue).await.with_context(redis_context)?,
        });
    }
    Ok(out)
}

fn print(stats: &[QueueStats], as_json: bool) {
    if as_json {
        println!("{}", to_json(stats));
    } else {
        print_table(stats);
    }
}

fn to_json(stats: &[QueueStats]) -> Value {
    let now = now_ms();
    let map: Map<String, Value> = stats
        .iter()
        .map(|q| {
            let workers: Vec<Value> = q
                .workers
                .iter()
                .map(|(id, deadline)| {
                    json!({ "id": id, "lease_deadline_ms": deadline, "alive": *deadline > now })
                })
                .collect();
            let value = json!({
                "pending": q.depths.pending,
                "running": q.depths.running,
                "scheduled": q.depths.scheduled,
                "dead": q.dead,
                "paused": q.depths.paused,
                "workers": workers,
            });
            (q.name.clone(), value)
        })
        .collect();
    Value::Object(map)
}

fn print_table(stats: &[QueueStats]) {
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>10} {:>8} {:>7}",
        "queue", "pending", "running", "scheduled", "dead", "workers", "paused"
    );
    let now = now_ms();
    for q in stats {
        let alive = q.workers.iter().filter(|(_, d)| *d > now).count();
        println!(
            "{:<24} {:>10} {:>10} {:>10} {:>10} {:>8} {:>7}",
            q.name,
            q.depths.pending,
            q.depths.running,
            q.depths.scheduled,
            q.dead,
            alive,
            if q.depths.paused { "yes" } else { "no" }
        );
    }
    let leases: Vec<(&str, &str, i64)> = stats
        .iter()
        .flat_map(|q| {
            q.workers
                .iter()
                .map(move |(w, d)| (q.name.as_str(), w.as_str(), *d))
        })
        .collect();
    if leases.is_empty() {
        return;
    }
    println!("\n{:<24} {:<44} lease", "queue", "worker");
    for (queue, worker, deadline) in leases {
        println!("{queue:<24} {worker:<44} {}", describe_lease(deadline, now));
    }
}

fn describe_lease(deadline_ms: i64, now: i64) -> String {
    let at = chrono::DateTime::from_timestamp_millis(deadline_ms).map_or_else(
        || deadline_ms.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
    );
    let left = (deadline_ms - now) as f64 / 1000.0;
    if left > 0.0 {
        format!("until {at} ({left:.1} s left)")
    } else {
        format!(
            "EXPIRED at {at} ({:.1} s ago; its jobs are being recovered)",
            -left
        )
    }
}
