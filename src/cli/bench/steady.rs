//! W3's steady load: a producer pushing at a fixed rate, and a watcher that
//! notes when each job's row appears.
//!
//! This module owns those two loops. It must never push faster than the
//! rate it is given, and never count a row it has not seen in MySQL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use mysql_async::Pool;
use serde_json::json;

use super::workloads::WORKLOAD_TIMEOUT;
use conveyor::job::now_ms;
use conveyor::redis_queue::RedisQueue;
use conveyor::store;

/// Pushes `total` jobs at `rate` per second; returns id → enqueue time (ms).
pub(super) async fn produce_steadily(
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
pub(super) async fn watch_commits(
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
