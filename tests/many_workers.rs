//! Many workers on shared servers: four worker processes on two queues,
//! one of them killed with `kill -9` mid-run; every job ends in exactly one
//! row and nothing is left in Redis.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use support::{job, TestEnv};

const WAIT: Duration = Duration::from_secs(120);
const PER_QUEUE: usize = 3000;

/// Short leases so the killed worker's jobs come back within seconds.
const FAST_RECOVERY: [(&str, &str); 2] = [
    ("CONVEYOR__RECOVERY__LEASE_MS", "3000"),
    ("CONVEYOR__RECOVERY__HEARTBEAT_MS", "500"),
];

fn worker_on(env: &TestEnv, queues: &str) -> support::ConveyorProcess {
    let mut settings = FAST_RECOVERY.to_vec();
    settings.push(("CONVEYOR__QUEUES__NAMES", queues));
    // Small claims spread the jobs over all four workers.
    settings.push(("CONVEYOR__QUEUES__CLAIM_BATCH", "50"));
    settings.push(("CONVEYOR__QUEUES__MAX_IN_FLIGHT", "200"));
    env.worker(&settings)
}

/// Jobs that take a few milliseconds each, so that the killed worker holds
/// some when it dies.
fn jobs(queue: &str) -> Vec<String> {
    (0..PER_QUEUE)
        .map(|i| {
            job(
                "sleep",
                Some(&format!("{queue}-{i:05}")),
                json!({ "ms": 2 + i % 5 }),
            )
        })
        .collect()
}

#[test]
fn four_workers_two_queues_one_killed_one_row_per_job() {
    let env = TestEnv::new();
    env.push("alpha", &jobs("alpha"));
    env.push("beta", &jobs("beta"));
    let mut victim = worker_on(&env, "alpha,beta");
    let mut both = worker_on(&env, "alpha,beta");
    let mut alpha = worker_on(&env, "alpha");
    let mut beta = worker_on(&env, "beta");
    support::wait_until("a quarter of the rows", WAIT, || {
        env.count_rows() >= (PER_QUEUE / 2) as i64
    });
    victim.kill9();
    env.wait_for_rows(2 * PER_QUEUE as i64, WAIT);
    support::wait_until("redis to drain", WAIT, || {
        env.leftover_keys().iter().all(|(_, size)| *size == 0)
    });

    let rows = env.rows();
    assert_eq!(rows.len(), 2 * PER_QUEUE, "one row per job id");
    let mut by_queue: HashMap<&str, usize> = HashMap::new();
    let mut by_worker: HashMap<&str, usize> = HashMap::new();
    for row in &rows {
        assert_eq!(row.status, "succeeded", "{row:?}");
        assert!(row.id.starts_with(&row.queue), "{row:?}");
        *by_queue.entry(row.queue.as_str()).or_default() += 1;
        *by_worker.entry(row.worker.as_str()).or_default() += 1;
    }
    assert_eq!(by_queue["alpha"], PER_QUEUE);
    assert_eq!(by_queue["beta"], PER_QUEUE);
    assert!(
        by_worker.len() >= 4,
        "every worker took part: {by_worker:?}"
    );
    let recovered = [&both, &alpha, &beta]
        .iter()
        .any(|w| w.log().contains("stopped renewing its lease"));
    assert!(
        recovered,
        "the killed worker's jobs were recovered by another"
    );
    for worker in [&mut both, &mut alpha, &mut beta] {
        assert_eq!(worker.stop(), 0, "{}", worker.log());
    }
}
