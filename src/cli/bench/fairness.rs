//! W5 fairness: one heavy key with many waiting jobs and many light keys
//! with one job each, pushed behind it; how long the light keys wait.
//!
//! This module owns that workload. It must never touch a queue but its own
//! (deleted with its rows afterwards), and never count preloading into the
//! timed span.

use std::collections::HashSet;

use serde_json::json;

use super::workloads::bench_queue;
use super::{describe, percentile, Bench, Latency, Report};
use conveyor::job::now_ms;
use conveyor::store;

impl Bench {
    /// Preloads `--w5-heavy` jobs of key `heavy`, then `--w5-light` jobs of
    /// keys `light-<i>` (one each), all `noop`; starts a worker and reports
    /// the light jobs' wait from the worker's start to their own start
    /// (p50/p90/p99/max) and how many heavy jobs started before them.
    pub(super) async fn fairness(&self) -> anyhow::Result<Report> {
        let heavy = self.args.w5_heavy;
        let light = self.args.w5_light;
        let n = heavy + light;
        let queue = bench_queue("w5");
        self.preload(&queue, n, |i| {
            let key = if i < heavy {
                "heavy".to_string()
            } else {
                format!("light-{i}")
            };
            json!({ "id": format!("w5-{i}"), "kind": "noop", "payload": { "i": i }, "key": key })
        })
        .await?;
        let overrides = self.overrides(None);
        let t0 = now_ms();
        let mut report = self
            .run_until_done(&queue, n, &overrides, "W5 fairness")
            .await?;
        let mut starts = store::start_times(&self.pool, &queue).await?;
        starts.sort_by_key(|(id, at)| (*at, id.clone()));
        let light_ids: HashSet<String> = (heavy..n).map(|i| format!("w5-{i}")).collect();
        let mut waits = Vec::with_capacity(light);
        let mut heavy_before = Vec::with_capacity(light);
        let mut heavy_seen = 0usize;
        for (id, at) in &starts {
            if light_ids.contains(id) {
                waits.push((at - t0).max(0) as f64);
                heavy_before.push(heavy_seen as f64);
            } else {
                heavy_seen += 1;
            }
        }
        anyhow::ensure!(
            waits.len() == light,
            "W5: {} of {light} light jobs started",
            waits.len()
        );
        waits.sort_by(f64::total_cmp);
        heavy_before.sort_by(f64::total_cmp);
        report.workload = "W5 fairness";
        report.latency_ms = Some(Latency {
            p50: percentile(&waits, 50.0),
            p90: percentile(&waits, 90.0),
            p99: percentile(&waits, 99.0),
            max: waits.last().copied().unwrap_or(0.0),
        });
        report.config = format!(
            "{heavy} jobs of one key, then {light} keys with one job each; latency = light jobs' wait from worker start to their start; heavy jobs started before a light one: p50 {:.0}, p99 {:.0}, max {:.0}; {}",
            percentile(&heavy_before, 50.0),
            percentile(&heavy_before, 99.0),
            heavy_before.last().copied().unwrap_or(0.0),
            describe(&overrides, &self.settings)
        );
        self.cleanup(&queue).await?;
        Ok(report)
    }
}
