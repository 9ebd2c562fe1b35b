//! Fairness by job key against real Redis and MariaDB with the real binary:
//! a key with one job starts within about one claim batch of a key with
//! thousands waiting, each key's jobs start oldest first, a kill -9 in the
//! middle loses nothing, and a paused queue under a limiter holds its keyed
//! jobs (counted in its depth) while a keyed job is cancelled.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::{config_file, job, wait_until, TestEnv};

const LONG: Duration = Duration::from_secs(120);

/// One job at a time, claimed `batch` at a time: start order is claim order.
fn one_at_a_time(batch: &'static str) -> [(&'static str, &'static str); 4] {
    [
        ("CONVEYOR__PROCESSORS__COUNT", "1"),
        ("CONVEYOR__PROCESSORS__CONCURRENCY", "1"),
        ("CONVEYOR__QUEUES__CLAIM_BATCH", batch),
        ("CONVEYOR__QUEUES__MAX_IN_FLIGHT", batch),
    ]
}

fn keyed(kind: &str, id: &str, key: Option<&str>, payload: Value) -> String {
    let mut envelope: Value = serde_json::from_str(&job(kind, Some(id), payload)).expect("json");
    if let Some(key) = key {
        envelope["key"] = json!(key);
    }
    envelope.to_string()
}

/// Job ids in the order they started (ties broken by finish time).
fn start_order(env: &TestEnv) -> Vec<String> {
    env.query(
        "SELECT id FROM job_results WHERE status = 'succeeded' ORDER BY started_at, finished_at, id",
    )
}

/// The position of each id in `order`.
fn positions(order: &[String]) -> HashMap<&str, usize> {
    order
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect()
}

/// Each listed id starts after the one before it.
fn assert_fifo(at: &HashMap<&str, usize>, ids: &[String]) {
    for pair in ids.windows(2) {
        assert!(
            at[pair[0].as_str()] < at[pair[1].as_str()],
            "{} started after {}",
            pair[0],
            pair[1]
        );
    }
}

/// Keys that hold jobs (limiter bookkeeping such as `freed` may stay).
fn jobs_left(env: &TestEnv) -> Vec<(String, i64)> {
    let holds_jobs = [
        ":pending",
        ":ready",
        ":jobs",
        ":key:",
        ":keyed",
        ":keys",
        ":wip:",
        ":scheduled",
        ":cancelled",
    ];
    env.leftover_keys()
        .into_iter()
        .filter(|(key, _)| holds_jobs.iter().any(|part| key.contains(part)))
        .collect()
}

fn stats(env: &TestEnv) -> Value {
    let (code, out) = env.conveyor_output(&["stats", "--json"], &[]);
    assert_eq!(code, 0, "{out}");
    let line = out.lines().find(|l| l.starts_with('{')).expect("JSON line");
    serde_json::from_str(line).expect("stats JSON")
}

/// 50 000 raw pushes of one key, then one job of another key: the claims
/// take 500 jobs each, and each sorts only a part of the backlog, so without
/// the worker sorting the rest at once beside them the light job would wait
/// for about ten claims (some 5 000 heavy jobs). It starts within two.
#[test]
fn a_light_key_behind_a_long_raw_backlog_starts_within_two_claims() {
    let env = TestEnv::new();
    let mut messages: Vec<String> = (0..50_000)
        .map(|i| {
            keyed(
                "noop",
                &format!("heavy-{i:05}"),
                Some("big-tenant"),
                json!(1),
            )
        })
        .collect();
    messages.push(keyed("noop", "light", Some("small"), json!(1)));
    env.push("default", &messages);
    let worker = env.worker(&one_at_a_time("500"));
    env.wait_for_rows(1, LONG);
    wait_until("the light job's row", LONG, || {
        !env.query::<String>("SELECT id FROM job_results WHERE id = 'light'")
            .is_empty()
    });
    drop(worker);
    // One job at a time: every job that started before the light one had
    // finished, and its row was committed with the light one's or before.
    // Start times are in ms: jobs started in the light one's millisecond
    // count as before it.
    let before: Vec<u64> = env.query(
        "SELECT COUNT(*) FROM job_results WHERE id <> 'light' AND started_at <= \
         (SELECT started_at FROM job_results WHERE id = 'light')",
    );
    assert!(
        before[0] <= 1000,
        "{} heavy jobs started before the light one",
        before[0]
    );
}

/// 3000 jobs of one key are pushed, then 40 of another, then one job of a
/// third key and 20 without a key: the lone job starts within two claim
/// batches (100 jobs each), the 40 are served round-robin beside the heavy
/// key instead of after it, and every key's jobs start oldest first.
#[test]
fn a_light_key_starts_within_a_claim_batch_of_a_heavy_one() {
    let env = TestEnv::new();
    let heavy: Vec<String> = (0..3000).map(|i| format!("heavy-{i:04}")).collect();
    let medium: Vec<String> = (0..40).map(|i| format!("medium-{i:02}")).collect();
    let plain: Vec<String> = (0..20).map(|i| format!("plain-{i:02}")).collect();
    let mut messages: Vec<String> = heavy
        .iter()
        .map(|id| keyed("noop", id, Some("big-tenant"), json!(1)))
        .collect();
    messages.extend(
        medium
            .iter()
            .map(|id| keyed("noop", id, Some("mid"), json!(1))),
    );
    messages.push(keyed("noop", "light", Some("small"), json!(1)));
    messages.extend(plain.iter().map(|id| keyed("noop", id, None, json!(1))));
    env.push("default", &messages);
    let _worker = env.worker(&one_at_a_time("100"));
    env.wait_for_rows(messages.len() as i64, LONG);
    let order = start_order(&env);
    assert_eq!(order.len(), messages.len());
    let at = positions(&order);
    assert!(
        at["light"] <= 200,
        "the lone job started after {} others",
        at["light"]
    );
    assert!(
        at[medium.last().expect("medium").as_str()] < 400,
        "the 40 jobs of the second key were not served beside the heavy key"
    );
    assert!(at[plain.last().expect("plain").as_str()] < 400);
    assert_fifo(&at, &heavy);
    assert_fifo(&at, &medium);
    assert_fifo(&at, &plain);
    let rows = env.rows();
    assert!(rows
        .iter()
        .all(|r| r.attempts == 1 && r.status == "succeeded"));
    assert_eq!(stats(&env)["default"]["pending"], 0);
    assert!(jobs_left(&env).is_empty(), "{:?}", jobs_left(&env));
}

/// Without any key the queue is served oldest first, as before.
#[test]
fn unkeyed_jobs_keep_their_order() {
    let env = TestEnv::new();
    let ids: Vec<String> = (0..300).map(|i| format!("job-{i:03}")).collect();
    let messages: Vec<String> = ids
        .iter()
        .map(|id| keyed("noop", id, None, json!(1)))
        .collect();
    env.push("default", &messages);
    let _worker = env.worker(&one_at_a_time("50"));
    env.wait_for_rows(ids.len() as i64, LONG);
    let order = start_order(&env);
    assert_eq!(order, ids);
}

/// A worker is killed with SIGKILL while keyed jobs are sorted into their
/// key lists and running; a second worker finishes them: one row each,
/// nothing left in Redis.
#[test]
fn a_kill_9_mid_run_loses_no_keyed_job() {
    let env = TestEnv::new();
    let total = 1500;
    let messages: Vec<String> = (0..total)
        .map(|i| {
            let key = format!("tenant-{}", i % 7);
            keyed(
                "sleep",
                &format!("k-{i:04}"),
                Some(&key),
                json!({ "ms": 2 }),
            )
        })
        .collect();
    env.push("default", &messages);
    let fast_lease = [
        ("CONVEYOR__RECOVERY__LEASE_MS", "2000"),
        ("CONVEYOR__RECOVERY__HEARTBEAT_MS", "250"),
        ("CONVEYOR__QUEUES__CLAIM_BATCH", "50"),
        ("CONVEYOR__QUEUES__MAX_IN_FLIGHT", "100"),
    ];
    let mut first = env.worker(&fast_lease);
    wait_until("some rows", LONG, || env.count_rows() >= 200);
    first.kill9();
    let _second = env.worker(&fast_lease);
    env.wait_for_rows(total as i64, LONG);
    std::thread::sleep(Duration::from_millis(500));
    let rows = env.rows();
    assert_eq!(rows.len(), total);
    assert!(rows.iter().all(|r| r.status == "succeeded"), "{rows:?}");
    wait_until("Redis emptied", Duration::from_secs(20), || {
        jobs_left(&env).is_empty()
    });
}

/// Keyed jobs under a per-key limiter, sorted into their key lists by the
/// first claim: one of them is cancelled there and ends `cancelled` without
/// running; a pause then starts nothing more while the waiting jobs count as
/// pending; after the resume the rest run, one row each.
#[test]
fn a_keyed_job_is_cancelled_and_a_paused_limited_queue_holds_the_rest() {
    let env = TestEnv::new();
    let config = config_file(
        "[[limiters]]\nname = \"pair\"\nqueue = \"default\"\nper_key_concurrency = 1\n",
    );
    let messages: Vec<String> = (0..12)
        .map(|i| {
            let key = ["a", "b", "c"][i % 3];
            keyed(
                "sleep",
                &format!("p-{i:02}"),
                Some(key),
                json!({ "ms": 400 }),
            )
        })
        .collect();
    env.push("default", &messages);
    let _worker = env.worker_with_config(&config, &[]);
    wait_until("one job of each key running", LONG, || {
        stats(&env)["default"]["running"] == 3
    });
    let (code, out) = env.conveyor_output(&["cancel", "p-10"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("cancelled"), "{out}");
    wait_until("the cancelled row", LONG, || {
        env.rows().iter().any(|r| r.id == "p-10")
    });
    let row = env.row("p-10");
    assert_eq!((row.status.as_str(), row.attempts), ("cancelled", 0));
    let (code, out) = env.conveyor_output(&["queue", "pause", "default"], &[]);
    assert_eq!(code, 0, "{out}");
    wait_until("the running jobs finished", LONG, || {
        stats(&env)["default"]["running"] == 0
    });
    let done = env.count_rows();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(env.count_rows(), done, "a paused queue starts nothing");
    assert_eq!(stats(&env)["default"]["pending"], 12 - done);
    let (code, out) = env.conveyor_output(&["queue", "resume", "default"], &[]);
    assert_eq!(code, 0, "{out}");
    env.wait_for_rows(12, LONG);
    let rows = env.rows();
    assert_eq!(
        rows.iter().filter(|r| r.status == "succeeded").count(),
        11,
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r.attempts <= 1), "{rows:?}");
    wait_until("Redis emptied", Duration::from_secs(20), || {
        jobs_left(&env).is_empty()
    });
}
