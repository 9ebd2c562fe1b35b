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

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mysql_async::Pool;
use serde::Serialize;
use serde_json::json;

use conveyor::config::Settings;
use conveyor::job::now_ms;
use conveyor::redis_queue::RedisQueue;
use conveyor::store;

/// How often completion is polled (in Redis).
const POLL: Duration = Duration::from_millis(10);
/// Pause after a workload's cleanup (InnoDB purges deleted rows in the background).
const SETTLE: Duration = Duration::from_secs(3);
/// Messages per LPUSH when preloading.
const PUSH_CHUNK: usize = 1000;
/// Longest a workload may run before the bench gives up on it.
const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Examples:\n  conveyor bench\n  conveyor bench --workloads w1 --w1-jobs 200000 --json\n  CONVEYOR__REDIS__URL=redis://127.0.0.1:6390 conveyor bench --workloads w2,w3"
)]
pub struct BenchArgs {
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

pub async fn run(
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

impl Bench {
    async fn throughput(&self) -> anyhow::Result<Report> {
        let n = self.args.w1_jobs;
        let queue = bench_queue("w1");
        self.preload(
            &queue,
            n,
            |i| json!({ "id": format!("w1-{i}"), "kind": "noop", "payload": { "i": i } }),
        )
        .await?;
        let overrides = self.overrides(None);
        let mut report = self
            .run_until_done(&queue, n, &overrides, "W1 no-op")
            .await?;
        report.workload = "W1 throughput";
        self.cleanup(&queue).await?;
        Ok(report)
    }

    async fn io_concurrency(&self) -> anyhow::Result<Report> {
        let n = self.args.w2_jobs;
        let queue = bench_queue("w2");
        let ms = self.args.w2_sleep_ms;
        self.preload(
            &queue,
            n,
            |i| json!({ "id": format!("w2-{i}"), "kind": "sleep", "payload": { "ms": ms } }),
        )
        .await?;
        let processors = self
            .args
            .processors
            .unwrap_or(self.settings.processors.count);
        let concurrency = self.args.w2_slots.div_ceil(processors);
        let overrides = self.overrides(Some(concurrency));
        let mut report = self
            .run_until_done(&queue, n, &overrides, "W2 sleep")
            .await?;
        report.workload = "W2 I/O concurrency";
        report.config = format!(
            "{} slots, sleep {ms} ms; {}",
            processors * concurrency,
            report.config
        );
        self.cleanup(&queue).await?;
        Ok(report)
    }

    async fn latency(&self) -> anyhow::Result<Report> {
        let queue = bench_queue("w3");
        let overrides = self.overrides(None);
        let worker = WorkerProcess::start(self, &queue, &overrides)?;
        wait_for_lease(&self.redis, &queue).await?;
        let total = (self.args.w3_rate * self.args.w3_seconds) as usize;
        let progress = progress_bar(total as u64, "W3 steady load");
        let started = Instant::now();
        let pushed = AtomicUsize::new(0);
        let (sent, seen) = tokio::join!(
            produce_steadily(&self.redis, &queue, self.args.w3_rate, total, &pushed),
            watch_commits(&self.pool, total, &pushed, &progress),
        );
        let sent = sent?;
        let seen = seen?;
        progress.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();
        let mut latencies: Vec<f64> = sent
            .iter()
            .filter_map(|(id, at)| seen.get(id).map(|done| (*done - *at) as f64))
            .collect();
        anyhow::ensure!(
            latencies.len() == total,
            "W3: {} of {total} jobs committed",
            latencies.len()
        );
        latencies.sort_by(f64::total_cmp);
        let usage = worker.usage();
        worker.stop()?;
        self.cleanup(&queue).await?;
        Ok(Report {
            workload: "W3 latency",
            jobs: total,
            seconds,
            jobs_per_s: total as f64 / seconds,
            peak_rss_mb: usage.peak_rss_mb,
            cpu_s_per_1000_jobs: usage.cpu_seconds * 1000.0 / total as f64,
            latency_ms: Some(Latency {
                p50: percentile(&latencies, 50.0),
                p90: percentile(&latencies, 90.0),
                p99: percentile(&latencies, 99.0),
                max: latencies.last().copied().unwrap_or(0.0),
            }),
            config: format!(
                "{} jobs/s for {} s; {}",
                self.args.w3_rate,
                self.args.w3_seconds,
                describe(&overrides, &self.settings)
            ),
            ..Report::default()
        })
    }

    async fn memory(&self) -> anyhow::Result<Report> {
        let n = self.args.w4_jobs;
        let queue = bench_queue("w4");
        self.preload(
            &queue,
            n,
            |i| json!({ "id": format!("w4-{i}"), "kind": "noop", "payload": { "i": i } }),
        )
        .await?;
        let overrides = self.overrides(None);
        let worker = WorkerProcess::start(self, &queue, &overrides)?;
        let started = Instant::now();
        let progress = progress_bar(n as u64, "W4 a million waiting");
        let window = Duration::from_secs(self.args.w4_seconds);
        let mut done = 0;
        while started.elapsed() < window && done < n as u64 {
            done = self.finished(&queue, n).await?;
            progress.set_position(done);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let rss_after_run_mb = worker.usage().rss_mb;
        let processed_in_window = done;
        while done < n as u64 && started.elapsed() < WORKLOAD_TIMEOUT {
            done = self.finished(&queue, n).await?;
            progress.set_position(done);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        progress.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();
        let busy = worker.usage();
        let idle_cpu_percent = worker
            .idle_cpu_percent(Duration::from_secs(self.args.idle_seconds))
            .await;
        worker.stop()?;
        self.cleanup(&queue).await?;
        Ok(Report {
            workload: "W4 memory",
            jobs: n,
            seconds,
            jobs_per_s: done as f64 / seconds,
            peak_rss_mb: busy.peak_rss_mb,
            cpu_s_per_1000_jobs: busy.cpu_seconds * 1000.0 / n as f64,
            rss_after_run_mb: Some(rss_after_run_mb),
            idle_cpu_percent: Some(idle_cpu_percent),
            config: format!(
                "RSS read after {} s ({processed_in_window} jobs done by then); {}",
                self.args.w4_seconds,
                describe(&overrides, &self.settings)
            ),
            ..Report::default()
        })
    }

    /// Environment overrides for the worker under test.
    fn overrides(&self, concurrency: Option<usize>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(count) = self.args.processors {
            out.push(("CONVEYOR__PROCESSORS__COUNT".to_string(), count.to_string()));
        }
        if let Some(concurrency) = concurrency.or(self.args.concurrency) {
            out.push((
                "CONVEYOR__PROCESSORS__CONCURRENCY".to_string(),
                concurrency.to_string(),
            ));
        }
        if let Some(batch) = self.args.batch_size {
            out.push(("CONVEYOR__DB__BATCH_SIZE".to_string(), batch.to_string()));
        }
        out
    }

    /// Pushes `n` envelopes (untimed), in pipelined chunks.
    async fn preload(
        &self,
        queue: &str,
        n: usize,
        envelope: impl Fn(usize) -> serde_json::Value,
    ) -> anyhow::Result<()> {
        let progress = progress_bar(n as u64, "preloading");
        let mut chunk = Vec::with_capacity(PUSH_CHUNK);
        for i in 0..n {
            chunk.push(serde_json::to_vec(&envelope(i))?);
            if chunk.len() == PUSH_CHUNK || i + 1 == n {
                self.redis.push(queue, &chunk).await?;
                progress.inc(chunk.len() as u64);
                chunk.clear();
            }
        }
        progress.finish_and_clear();
        Ok(())
    }

    /// Starts a worker on the preloaded queue and times it to the last row.
    async fn run_until_done(
        &self,
        queue: &str,
        n: usize,
        overrides: &[(String, String)],
        label: &'static str,
    ) -> anyhow::Result<Report> {
        let mut worker = WorkerProcess::start(self, queue, overrides)?;
        let started = Instant::now();
        let progress = progress_bar(n as u64, label);
        let mut done = 0;
        while done < n as u64 {
            anyhow::ensure!(
                started.elapsed() < WORKLOAD_TIMEOUT,
                "{label}: only {done} of {n} rows after {WORKLOAD_TIMEOUT:?}"
            );
            anyhow::ensure!(worker.is_running(), "{label}: the worker exited");
            tokio::time::sleep(POLL).await;
            done = self.finished(queue, n).await?;
            progress.set_position(done);
        }
        let rows = store::count_queue_rows(&self.pool, queue).await?;
        anyhow::ensure!(rows == n as u64, "{label}: {rows} rows for {n} jobs");
        let seconds = started.elapsed().as_secs_f64();
        progress.finish_and_clear();
        let usage = worker.usage();
        worker.stop()?;
        Ok(Report {
            workload: label,
            jobs: n,
            seconds,
            jobs_per_s: n as f64 / seconds,
            peak_rss_mb: usage.peak_rss_mb,
            cpu_s_per_1000_jobs: usage.cpu_seconds * 1000.0 / n as f64,
            config: describe(overrides, &self.settings),
            ..Report::default()
        })
    }

    /// Jobs of `queue` finished, out of `n`: those no longer in Redis. A job
    /// leaves Redis only after its row is committed, so this counts committed
    /// rows without loading MySQL with polling queries.
    async fn finished(&self, queue: &str, n: usize) -> anyhow::Result<u64> {
        let depths = self.redis.depths(queue).await?;
        let waiting = depths.pending + depths.running + depths.scheduled;
        Ok((n as u64).saturating_sub(waiting))
    }

    /// Deletes the workload's queue and rows, then lets MySQL purge the
    /// deleted rows before the next workload starts timing.
    async fn cleanup(&self, queue: &str) -> anyhow::Result<()> {
        self.redis.delete_queue(queue).await?;
        store::delete_queue_rows(&self.pool, queue).await?;
        tokio::time::sleep(SETTLE).await;
        Ok(())
    }
}

/// A queue name of its own for each run.
fn bench_queue(workload: &str) -> String {
    format!("bench-{workload}-{:08x}", rand::random::<u32>())
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

/// Waits until a worker holds a lease on `queue` (it is up and claiming).
async fn wait_for_lease(redis: &RedisQueue, queue: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while redis.workers(queue).await?.is_empty() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the worker did not start"
        );
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Pushes `total` jobs at `rate` per second; returns id → enqueue time (ms).
async fn produce_steadily(
    redis: &RedisQueue,
    queue: &str,
    rate: u64,
    total: usize,
    pushed: &AtomicUsize,
) -> anyhow::Result<Vec<(String, i64)>> {
    let mut sent = Vec::with_capacity(total);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    while sent.len() < total {
        ticker.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as usize).min(total);
        let mut messages = Vec::new();
        while sent.len() < due {
            let id = format!("w3-{}", sent.len());
            let at = now_ms();
            messages.push(serde_json::to_vec(
                &json!({ "id": id, "kind": "noop", "payload": null, "enqueued_at": at }),
            )?);
            sent.push((id, at));
        }
        redis.push(queue, &messages).await?;
        pushed.store(sent.len(), Ordering::Release);
    }
    Ok(sent)
}

/// Polls MySQL (by primary key) for the rows of jobs pushed and not yet seen; returns
/// id → time first seen (ms). Ids are `w3-<n>` in enqueue order.
async fn watch_commits(
    pool: &Pool,
    total: usize,
    pushed: &AtomicUsize,
    progress: &ProgressBar,
) -> anyhow::Result<HashMap<String, i64>> {
    let mut seen: HashMap<String, i64> = HashMap::with_capacity(total);
    let started = Instant::now();
    let mut next_unseen = 0;
    while seen.len() < total {
        anyhow::ensure!(
            started.elapsed() < WORKLOAD_TIMEOUT,
            "W3: only {} rows",
            seen.len()
        );
        let sent = pushed.load(Ordering::Acquire);
        let window: Vec<String> = (next_unseen..sent.min(next_unseen + WATCH_WINDOW))
            .map(|i| format!("w3-{i}"))
            .filter(|id| !seen.contains_key(id))
            .collect();
        let found = store::existing_ids(pool, &window).await?;
        let now = now_ms();
        for id in found {
            seen.insert(id, now);
        }
        while next_unseen < total && seen.contains_key(&format!("w3-{next_unseen}")) {
            next_unseen += 1;
        }
        progress.set_position(seen.len() as u64);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(seen)
}

/// Ids looked up per poll: more than are ever in flight at W3's rates.
const WATCH_WINDOW: usize = 2000;

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

/// Resource use of a process, from /proc.
struct Usage {
    peak_rss_mb: f64,
    rss_mb: f64,
    cpu_seconds: f64,
}

/// A `conveyor worker` child process on one queue.
struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    fn start(
        bench: &Bench,
        queue: &str,
        overrides: &[(String, String)],
    ) -> anyhow::Result<WorkerProcess> {
        let exe = std::env::current_exe().context("locating the conveyor binary")?;
        let mut command = Command::new(exe);
        if let Some(file) = &bench.config_file {
            command.arg("--config").arg(file);
        }
        command
            .arg("worker")
            .env("CONVEYOR__QUEUES__NAMES", queue)
            .env(
                "RUST_LOG",
                std::env::var("CONVEYOR_BENCH_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let child = command.spawn().context("starting the worker")?;
        Ok(WorkerProcess { child })
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn usage(&self) -> Usage {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kb = |field: &str| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Usage {
            peak_rss_mb: kb("VmHWM:") / 1024.0,
            rss_mb: kb("VmRSS:") / 1024.0,
            cpu_seconds: cpu_seconds(pid),
        }
    }

    /// CPU use of the idle worker over `window`, in percent of one core.
    async fn idle_cpu_percent(&self, window: Duration) -> f64 {
        // Let in-flight acks and the last batch settle first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = cpu_seconds(self.child.id());
        tokio::time::sleep(window).await;
        let after = cpu_seconds(self.child.id());
        (after - before) / window.as_secs_f64() * 100.0
    }

    /// SIGTERM and wait (the worker hands back anything unfinished).
    fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "the worker exited with {status}");
        Ok(())
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// User + system CPU seconds of a process (/proc/PID/stat fields 14 and 15).
fn cpu_seconds(pid: u32) -> f64 {
    /// Linux reports CPU time in clock ticks of 1/100 s on every supported platform.
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; count fields after its ')'.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / TICKS_PER_SECOND
}
