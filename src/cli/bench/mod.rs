//! `conveyor bench`: the performance workloads, against the configured Redis
//! and MySQL, each on a queue of its own that is deleted afterwards.
//!
//! - W1 throughput: N `noop` jobs preloaded, then a worker started; time
//!   until every row is committed → jobs/s, worker peak RSS, CPU per 1000 jobs.
//! - W2 I/O concurrency: N `sleep` jobs with `processors × concurrency` slots.
//! - W3 latency: a steady rate of jobs; enqueue → committed-row latency.
//! - W4 memory: a million jobs waiting → worker RSS while it runs; then idle CPU.
//! - W5 fairness: one key with many jobs waiting, many keys with one job
//!   pushed behind it → how long the light keys wait.
//! - ceiling: what MariaDB and Redis alone take (bare multi-row INSERTs,
//!   pipelined LPUSH/RPOP); W1 then reports its fraction of MariaDB's rate.
//!
//! The worker runs as a separate `conveyor worker` process (so its RSS and
//! CPU are its own), configured like this process plus the bench's overrides.
//!
//! # Layout
//!
//! - this file: the arguments, the run, and the reports and their printing;
//! - `workloads`: W1–W4, preloading, producing, and polling for completion;
//! - `fairness`: W5;
//! - `process`: the worker under test as a child process, and its /proc readings;
//! - `delay_proxy`: Redis and MySQL a round trip away (`--delay-us`);
//! - `ceiling`: the servers' bare rates, and W1's fraction of them;
//! - `pruning`: rows in job_results before W1 (`--w1-old-rows`, `--prefill-rows`);
//! - `steady`: W3's producer at a fixed rate and its watcher of commits.

mod ceiling;
mod delay_proxy;
mod fairness;
mod process;
mod pruning;
mod steady;
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
    after_help = "Examples:\n  conveyor bench\n  conveyor bench --workloads w1 --w1-jobs 200000 --json\n  conveyor bench --workloads w1 --workers 4 --processors 1\n  conveyor bench --workloads ceiling,w1       # W1 as a fraction of the MariaDB ceiling\n  conveyor bench --workloads ceiling,w1 --prefill-rows 10000000\n  conveyor bench --workloads w1 --delay-us 500        # Redis and MySQL 1 ms away\n  CONVEYOR__REDIS__URL=redis://127.0.0.1:6390 conveyor bench --workloads w2,w3"
)]
pub(super) struct BenchArgs {
    /// Workloads to run, comma separated: ceiling, w1, w2, w3, w4, w5.
    #[arg(long, default_value = "ceiling,w1,w2,w3,w4,w5")]
    workloads: String,
    /// Ceiling: rows inserted into MariaDB, and commands of each kind sent to Redis.
    #[arg(long, default_value_t = 100_000)]
    ceiling_rows: usize,
    /// W1: no-op jobs preloaded.
    #[arg(long, default_value_t = 100_000)]
    w1_jobs: usize,
    /// W1: results finished a year ago, put into job_results first; the
    /// worker runs with a 30-day retention and prunes them during W1.
    #[arg(long, default_value_t = 0)]
    w1_old_rows: usize,
    /// W1: rows put into job_results first (untimed, kept during W1, removed
    /// after), to measure W1 into a table that already holds that many.
    #[arg(long, default_value_t = 0)]
    prefill_rows: usize,
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
    /// W5: jobs of the one heavy key, pushed first.
    #[arg(long, default_value_t = 50_000)]
    w5_heavy: usize,
    /// W5: light keys with one job each, pushed after the heavy key's jobs.
    #[arg(long, default_value_t = 200)]
    w5_light: usize,
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
    /// W1 and W2: worker processes started at once on the workload's queue
    /// (CPU is their sum, peak RSS the largest one's).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Put the worker under test behind a TCP proxy that delays every byte
    /// to and from Redis and MySQL by this many microseconds each way
    /// (500 = a 1 ms round trip), as if they ran on other hosts.
    #[arg(long, default_value_t = 0)]
    delay_us: u64,
    /// W1 and W2: also report the CPU these processes (e.g. the local Redis
    /// and MariaDB servers) used during the timed run, per 1000 jobs.
    #[arg(long, value_delimiter = ',', value_name = "PID,...")]
    sample_pids: Vec<u32>,
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
    /// W1's jobs/s over the ceiling's MariaDB rows/s, when both ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    fraction_of_mariadb_ceiling: Option<f64>,
    /// The servers' bare rates (the ceiling workload only).
    #[serde(skip_serializing_if = "Option::is_none")]
    ceiling: Option<ceiling::Ceiling>,
    peak_rss_mb: f64,
    cpu_s_per_1000_jobs: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_after_run_mb: Option<f64>,
    /// CPU seconds per 1000 jobs of each `--sample-pids` process.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sampled_cpu_s_per_1000_jobs: Vec<(u32, f64)>,
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
    /// Settings that point the worker under test at the delay proxies.
    proxied: Vec<(String, String)>,
}

pub(super) async fn run(
    settings: Settings,
    config_file: Option<PathBuf>,
    args: BenchArgs,
) -> anyhow::Result<()> {
    let redis = super::connect_redis(&settings)?;
    let pool = store::open_pool(&settings.mysql, 4)?;
    store::migrate(&pool)
        .await
        .context("preparing the schema")?;
    let proxied = start_delay_proxies(&settings, args.delay_us)?;
    let bench = Bench {
        config_file,
        settings,
        args: args.clone(),
        redis,
        pool,
        proxied,
    };
    let mut reports = Vec::new();
    for workload in args.workloads.split(',').map(str::trim) {
        let mut report = match workload {
            "w1" => bench.throughput().await?,
            "w2" => bench.io_concurrency().await?,
            "w3" => bench.latency().await?,
            "w4" => bench.memory().await?,
            "w5" => bench.fairness().await?,
            "ceiling" => bench.ceiling().await?,
            other => {
                anyhow::bail!(
                    "--workloads: unknown workload {other:?} (ceiling, w1, w2, w3, w4, w5)"
                )
            }
        };
        if args.delay_us > 0 {
            report.config = format!(
                "Redis and MySQL behind a {} us delay proxy each way; {}",
                args.delay_us, report.config
            );
        }
        if !args.json {
            eprintln!("{}", summary_line(&report));
        }
        reports.push(report);
    }
    ceiling::apply_fraction(&mut reports);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print_table(&reports);
    }
    Ok(())
}

/// Starts a delay proxy in front of Redis and one in front of MySQL, and
/// returns the settings that send the worker under test through them.
fn start_delay_proxies(
    settings: &Settings,
    delay_us: u64,
) -> anyhow::Result<Vec<(String, String)>> {
    if delay_us == 0 {
        return Ok(Vec::new());
    }
    let delay = std::time::Duration::from_micros(delay_us);
    let mut proxied = Vec::new();
    for (key, url, port) in [
        ("CONVEYOR__REDIS__URL", &settings.redis.url, 6379),
        ("CONVEYOR__MYSQL__URL", &settings.mysql.url, 3306),
    ] {
        let proxy = delay_proxy::DelayProxy::start(&delay_proxy::upstream_of(url, port)?, delay)?;
        proxied.push((key.to_string(), proxy.rewrite(url)?));
    }
    Ok(proxied)
}

fn describe(overrides: &[(String, String)], settings: &Settings) -> String {
    let get = |key: &str, default: usize| {
        overrides
            .iter()
            .find(|(k, _)| k == key)
            .map_or(default.to_string(), |(_, v)| v.clone())
    };
    format!(
        "processors {}x{}, db.batch_size {}, db.flush_ms {}, db.eager_flushes {}, claim_batch {}, max_in_flight {}",
        get("CONVEYOR__PROCESSORS__COUNT", settings.processors.count),
        get(
            "CONVEYOR__PROCESSORS__CONCURRENCY",
            settings.processors.concurrency
        ),
        get("CONVEYOR__DB__BATCH_SIZE", settings.db.batch_size),
        settings.db.flush_ms,
        settings.db.eager_flushes,
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
    for (pid, cpu) in &report.sampled_cpu_s_per_1000_jobs {
        line.push_str(&format!(", pid {pid}: {cpu:.4} CPU s per 1000 jobs"));
    }
    line
}

fn print_table(reports: &[Report]) {
    println!("| workload | jobs | seconds | jobs/s | of MariaDB ceiling | peak RSS MB | CPU s / 1000 jobs | latency p50/p90/p99/max ms | configuration |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in reports {
        let latency = r.latency_ms.as_ref().map_or("-".to_string(), |l| {
            format!("{:.1} / {:.1} / {:.1} / {:.1}", l.p50, l.p90, l.p99, l.max)
        });
        let mut config = r.config.clone();
        if let (Some(rss), Some(idle)) = (r.rss_after_run_mb, r.idle_cpu_percent) {
            config = format!("RSS while running {rss:.1} MB, idle CPU {idle:.2} %; {config}");
        }
        let fraction = r
            .fraction_of_mariadb_ceiling
            .map_or("-".to_string(), |f| format!("{:.0} %", f * 100.0));
        println!(
            "| {} | {} | {:.2} | {:.0} | {} | {:.1} | {:.3} | {} | {} |",
            r.workload,
            r.jobs,
            r.seconds,
            r.jobs_per_s,
            fraction,
            r.peak_rss_mb,
            r.cpu_s_per_1000_jobs,
            latency,
            config
        );
    }
}
