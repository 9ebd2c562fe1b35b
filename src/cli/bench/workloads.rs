//! The workloads W1–W4 and the steps they share: preloading a queue,
//! producing at a steady rate, waiting for a worker and polling until every
//! row is committed, and cleaning up after each.
//!
//! This module owns what each workload measures and how. It must never touch
//! a queue but the one it creates for itself (deleted with its rows
//! afterwards), and never count preloading or cleanup into a timed span.

use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use serde_json::json;

use super::process::{cpu_seconds, Usage, WorkerProcess};
use super::steady::{produce_steadily, watch_commits};
use super::{describe, percentile, progress_bar, Bench, Latency, Report};
use conveyor::redis_queue::RedisQueue;
use conveyor::store;

/// How often completion is polled (in Redis).
const POLL: Duration = Duration::from_millis(10);
/// Pause after a workload's cleanup (InnoDB purges deleted rows in the background).
const SETTLE: Duration = Duration::from_secs(3);
/// Messages per LPUSH when preloading.
const PUSH_CHUNK: usize = 1000;
/// Longest a workload may run before the bench gives up on it.
pub(super) const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(600);

impl Bench {
    pub(super) async fn throughput(&self) -> anyhow::Result<Report> {
        let n = self.args.w1_jobs;
        let queue = bench_queue("w1");
        self.preload(
            &queue,
            n,
            |i| json!({ "id": format!("w1-{i}"), "kind": "noop", "payload": { "i": i } }),
        )
        .await?;
        let old = match self.args.w1_old_rows {
            0 => None,
            count => Some(self.seed_old_rows(count).await?),
        };
        let prefilled = match self.args.prefill_rows {
            0 => None,
            count => Some(self.prefill_rows(count).await?),
        };
        let mut overrides = self.overrides(None);
        overrides.extend(old.iter().flat_map(|old| old.overrides()));
        let mut report = self
            .run_until_done(&queue, n, &overrides, "W1 no-op")
            .await?;
        report.workload = "W1 throughput";
        if let Some(old) = old {
            report.config = format!("{}; {}", old.finish(self).await?, report.config);
        }
        if let Some(prefilled) = prefilled {
            report.config = format!("{}; {}", prefilled.remove(self).await?, report.config);
        }
        self.cleanup(&queue).await?;
        Ok(report)
    }

    pub(super) async fn io_concurrency(&self) -> anyhow::Result<Report> {
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

    pub(super) async fn latency(&self) -> anyhow::Result<Report> {
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

    pub(super) async fn memory(&self) -> anyhow::Result<Report> {
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
    pub(super) fn overrides(&self, concurrency: Option<usize>) -> Vec<(String, String)> {
        let mut out = self.proxied.clone();
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
    pub(super) async fn preload(
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

    /// Starts `--workers` worker processes on the preloaded queue and times
    /// them to the last row.
    pub(super) async fn run_until_done(
        &self,
        queue: &str,
        n: usize,
        overrides: &[(String, String)],
        label: &'static str,
    ) -> anyhow::Result<Report> {
        let sampled_before: Vec<f64> = self
            .args
            .sample_pids
            .iter()
            .map(|p| cpu_seconds(*p))
            .collect();
        let mut workers = (0..self.args.workers.max(1))
            .map(|_| WorkerProcess::start(self, queue, overrides))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let started = Instant::now();
        let progress = progress_bar(n as u64, label);
        let mut done = 0;
        while done < n as u64 {
            anyhow::ensure!(
                started.elapsed() < WORKLOAD_TIMEOUT,
                "{label}: only {done} of {n} rows after {WORKLOAD_TIMEOUT:?}"
            );
            anyhow::ensure!(
                workers.iter_mut().all(WorkerProcess::is_running),
                "{label}: a worker exited"
            );
            tokio::time::sleep(POLL).await;
            done = self.finished(queue, n).await?;
            progress.set_position(done);
        }
        let rows = store::count_queue_rows(&self.pool, queue).await?;
        anyhow::ensure!(rows == n as u64, "{label}: {rows} rows for {n} jobs");
        let seconds = started.elapsed().as_secs_f64();
        progress.finish_and_clear();
        let usage = Usage::total(workers.iter().map(WorkerProcess::usage));
        let sampled = self
            .args
            .sample_pids
            .iter()
            .zip(sampled_before)
            .map(|(pid, before)| (*pid, (cpu_seconds(*pid) - before) * 1000.0 / n as f64))
            .collect();
        for worker in workers {
            worker.stop()?;
        }
        let mut config = describe(overrides, &self.settings);
        if self.args.workers > 1 {
            config = format!(
                "{} worker processes, peak RSS of the largest; {config}",
                self.args.workers
            );
        }
        Ok(Report {
            workload: label,
            jobs: n,
            seconds,
            jobs_per_s: n as f64 / seconds,
            peak_rss_mb: usage.peak_rss_mb,
            cpu_s_per_1000_jobs: usage.cpu_seconds * 1000.0 / n as f64,
            sampled_cpu_s_per_1000_jobs: sampled,
            config,
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
    pub(super) async fn cleanup(&self, queue: &str) -> anyhow::Result<()> {
        self.redis.delete_queue(queue).await?;
        store::delete_queue_rows(&self.pool, queue).await?;
        tokio::time::sleep(SETTLE).await;
        Ok(())
    }
}

/// A queue name of its own for each run.
pub(super) fn bench_queue(workload: &str) -> String {
    format!("bench-{workload}-{:08x}", rand::random::<u32>())
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
