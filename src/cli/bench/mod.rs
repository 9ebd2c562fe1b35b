//! `conveyor bench`: the performance workloads, against the configured Redis
//! and MySQL, each on a queue of its own that is deleted afterwards.
//!
//! - W1 throughput: N `noop` jobs preloaded, then a worker started; time
//!   until every row is committed → jobs/s, worker peak RSS, CPU per 1000 jobs.
//! - W2 I/O concurrency: N `sleep` jobs with `processors × concurrency` slots.
//! - W3 latency: a steady rate of jobs; enqueue → committed-row latency.
//! - W4 memory: a million jobs waiting → worker RSS while it runs; then idle CPU.
//!
//! The worker runs as a separate `conveyor worker` process (so its RSS and
//! CPU are its own), configured like this process plus the bench's overrides.
//!
//! # Layout
//!
//! - this file: the arguments, the run, and the reports and their printing;
//! - `workloads`: W1–W4, preloading, producing, and polling for completion;
//! - `process`: the worker under test as a child process, and its /proc readings.

mod process;
mod workloads;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mysql_async::Pool;
use serde::Serialize;

use conveyor::config::Settings;
use conveyor::redis_queue::RedisQueue;
use conveyor::store;

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Examples:\n  conveyor bench\n  conveyor bench --workloads w1 --w1-jobs 200000 --json\n  CONVEYOR__REDIS__URL=redis://127.0.0.1:6390 conveyor bench --workloads w2,w3"
)]
pub(super) struct BenchArgs {
    /// Workloads to run, comma separated: w1, w2, w3, w4.
    #[arg(long, default_value = "w1,w2,w3,w4")]
    workloads: String,
    /// W1: no-op jobs preloaded.
    #[arg(long, default_value_t = 100_000)]
    w1_jobs: usize,
    /// W2: sleep jobs.
    #[arg(long, default_value_t = 20_000)]
    w2_jobs: usize,
    /// W2: how long each job sleeps (ms).
    #[arg(long, default_value_t = 10)]
    w2_sleep_ms: u64,
    /// W2: concurrent slots (split over the processors).
    #[arg(long, default_value_t = 200)]
    w2_slots: usize,
    /// W3: jobs per second.
    #[arg(long, default_value_t = 1000)]
    w3_rate: u64,
    /// W3: seconds of steady load.
    #[arg(long, default_value_t = 10)]
    w3_seconds: u64,
    /// W4: jobs waiting when the worker starts.
    #[arg(long, default_value_t = 1_000_000)]
    w4_jobs: usize,
    /// W4: seconds of running before RSS is read.
    #[arg(long, default_value_t = 60)]
    w4_seconds: u64,
    /// W4: seconds of idle time over which idle CPU is measured.
    #[arg(long, default_value_t = 10)]
    idle_seconds: u64,
    /// Processor threads of the worker (default: configuration).
    #[arg(long)]
    processors: Option<usize>,
    /// Jobs per processor thread (default: configuration; W2 derives it from --w2-slots).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Rows per DB batch (default: configuration).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// One workload's numbers.
#[derive(Debug, Default, Serialize)]
struct Report {
    workload: &'static str,
    jobs: usize,
    seconds: f64,
    jobs_per_s: f64,
    peak_rss_mb: f64,
    cpu_s_per_1000_jobs: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_after_run_mb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_cpu_percent: Option<f64>,
    config: String,
}

#[derive(Debug, Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

/// What a bench run talks to.
struct Bench {
    config_file: Option<PathBuf>,
    settings: Settings,
    args: BenchArgs,
    redis: RedisQueue,
    pool: Pool,
}

pub(super) async fn run(
    settings: Settings,
    config_file: Option<PathBuf>,
    args: BenchArgs,
) -> anyhow::Result<()> {
    let redis = super::connect_redis(&settings)?;
    let pool = store::open_pool(&settings.mysql.url, 4)?;
    store::migrate(&pool)
        .await
        .context("preparing the schema")?;
    let bench = Bench {
        config_file,
        settings,
        args: args.clone(),
        redis,
        pool,
    };
    let mut reports = Vec::new();
    for workload in args.workloads.split(',').map(str::trim) {
        let report = match workload {
            "w1" => bench.throughput().await?,
            "w2" => bench.io_concurrency().await?,
            "w3" => bench.latency().await?,
            "w4" => bench.memory().await?,
            other => anyhow::bail!("--workloads: unknown workload {other:?} (w1, w2, w3, w4)"),
        };
        if !args.json {
            eprintln!("{}", summary_line(&report));
        }
        reports.push(report);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print_table(&reports);
    }
    Ok(())
}

fn describe(overrides: &[(String, String)], settings: &Settings) -> String {
    let get = |key: &str, default: usize| {
        overrides
            .iter()
            .find(|(k, _)| k == key)
            .map_or(default.to_string(), |(_, v)| v.clone())
    };
    format!(
        "processors {}x{}, db.batch_size {}, claim_batch {}, max_in_flight {}",
        get("CONVEYOR__PROCESSORS__COUNT", settings.processors.count),
        get(
            "CONVEYOR__PROCESSORS__CONCURRENCY",
            settings.processors.concurrency
        ),
        get("CONVEYOR__DB__BATCH_SIZE", settings.db.batch_size),
        settings.queues.claim_batch,
        settings.queues.max_in_flight,
    )
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn progress_bar(len: u64, label: &'static str) -> ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len).with_message(label);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:20} {bar:40} {pos}/{len} {per_sec} {elapsed}")
    {
        bar.set_style(style);
    }
    bar
}

fn summary_line(report: &Report) -> String {
    let mut line = format!(
        "{}: {} jobs in {:.2} s = {:.0} jobs/s, peak RSS {:.1} MB, {:.3} CPU s per 1000 jobs",
        report.workload,
        report.jobs,
        report.seconds,
        report.jobs_per_s,
        report.peak_rss_mb,
        report.cpu_s_per_1000_jobs
    );
    if let Some(l) = &report.latency_ms {
        line.push_str(&format!(
            ", latency p50 {:.1} p90 {:.1} p99 {:.1} max {:.1} ms",
            l.p50, l.p90, l.p99, l.max
        ));
    }
    if let (Some(rss), Some(idle)) = (report.rss_after_run_mb, report.idle_cpu_percent) {
        line.push_str(&format!(
            ", RSS while running {rss:.1} MB, idle CPU {idle:.2} %"
        ));
    }
    line
}

fn print_table(reports: &[Report]) {
    println!("| workload | jobs | seconds | jobs/s | peak RSS MB | CPU s / 1000 jobs | latency p50/p90/p99/max ms | configuration |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in reports {
        let latency = r.latency_ms.as_ref().map_or("-".to_string(), |l| {
            format!("{:.1} / {:.1} / {:.1} / {:.1}", l.p50, l.p90, l.p99, l.max)
        });
        let mut config = r.config.clone();
        if let (Some(rss), Some(idle)) = (r.rss_after_run_mb, r.idle_cpu_percent) {
            config = format!("RSS while running {rss:.1} MB, idle CPU {idle:.2} %; {config}");
        }
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.1} | {:.3} | {} | {} |",
            r.workload,
            r.jobs,
            r.seconds,
            r.jobs_per_s,
            r.peak_rss_mb,
            r.cpu_s_per_1000_jobs,
            latency,
            config
        );
    }
}
