//! Nothing lost: the real `conveyor worker` binary against servers the tests
//! stop, restart and take away. Every test ends by asserting exactly one row
//! per enqueued job and nothing left in Redis.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{job, ConveyorProcess, MariaDb, RedisServer, TestEnv};

const WAIT: Duration = Duration::from_secs(120);

/// Short leases so recovery tests finish in seconds.
const FAST_LEASE: [(&str, &str); 2] = [
    ("CONVEYOR__RECOVERY__LEASE_MS", "2000"),
    ("CONVEYOR__RECOVERY__HEARTBEAT_MS", "250"),
];

/// Own servers, so the test may stop them.
struct World {
    redis: RedisServer,
    mysql: MariaDb,
    env: TestEnv,
}

fn world() -> World {
    let redis = RedisServer::start();
    let mysql = MariaDb::start();
    let env = TestEnv::on(&redis, &mysql);
    World { redis, mysql, env }
}

/// A mix of quick, slow and once-failing jobs with ids `mix-<i>`.
fn mixed_jobs(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let id = format!("mix-{i:05}");
            let mut envelope: serde_json::Value = match i % 4 {
                0 | 1 => serde_json::from_str(&job("noop", Some(&id), json!(i))),
                2 => serde_json::from_str(&job("sleep", Some(&id), json!({ "ms": 20 }))),
                _ => serde_json::from_str(&job("fail", Some(&id), json!({ "times": 1 }))),
            }
            .expect("json");
            envelope["max_attempts"] = json!(6);
            envelope.to_string()
        })
        .collect()
}

/// Exactly one succeeded row per `mix-` job, and Redis holds nothing more.
fn assert_all_done_once(env: &TestEnv, count: usize) {
    env.wait_for_rows(count as i64, WAIT);
    let rows = env.rows();
    assert_eq!(rows.len(), count, "one row per job, no more");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.id, format!("mix-{i:05}"));
        assert_eq!(row.status, "succeeded", "{row:?}");
    }
    support::wait_until("redis to drain", WAIT, || {
        env.leftover_keys().iter().all(|(_, size)| *size == 0)
    });
}

/// Prints a worker's log if the test panics while this is alive.
struct DumpOnPanic(std::path::PathBuf);

impl Drop for DumpOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- worker log (last lines) ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

fn pending(env: &TestEnv) -> i64 {
    let mut conn = env.redis();
    let pending: i64 = redis::cmd("LLEN")
        .arg(env.pending_key("default"))
        .query(&mut conn)
        .expect("LLEN");
    let ready: i64 = redis::cmd("LLEN")
        .arg(format!("{}:{{default}}:ready", env.prefix))
        .query(&mut conn)
        .expect("LLEN");
    pending + ready
}

fn start(env: &TestEnv, extra: &[(&str, &str)]) -> ConveyorProcess {
    let mut settings: Vec<(&str, &str)> = FAST_LEASE.to_vec();
    settings.extend_from_slice(extra);
    env.worker(&settings)
}

/// A world given `count` mixed jobs and a worker (with `extra`) that has
/// written at least `rows` rows of them.
fn mid_run(count: usize, extra: &[(&str, &str)], rows: i64) -> (World, ConveyorProcess) {
    let w = world();
    w.env.push("default", &mixed_jobs(count));
    let worker = start(&w.env, extra);
    support::wait_until("some rows", WAIT, || w.env.count_rows() >= rows);
    (w, worker)
}

/// A world given `count` sleep jobs of `ms` each with ids `mix-<i>`, and a
/// worker (with `extra`) that has taken all of them.
fn all_sleeping(count: usize, ms: u64, extra: &[(&str, &str)]) -> (World, ConveyorProcess) {
    let w = world();
    let jobs: Vec<String> = (0..count)
        .map(|i| job("sleep", Some(&format!("mix-{i:05}")), json!({ "ms": ms })))
        .collect();
    w.env.push("default", &jobs);
    let worker = start(&w.env, extra);
    support::wait_until("jobs to start", WAIT, || pending(&w.env) == 0);
    (w, worker)
}

/// Shortening the lease is one key: the heartbeat follows it (a sixth of
/// it), so a worker given only `recovery.lease_ms = 3000` starts, and a
/// killed worker's jobs are recovered about three seconds after the kill.
#[test]
fn a_shorter_lease_alone_recovers_a_killed_workers_jobs_in_seconds() {
    let lease_only = [("CONVEYOR__RECOVERY__LEASE_MS", "3000")];
    let count = 20;
    let w = world();
    let jobs: Vec<String> = (0..count)
        .map(|i| job("sleep", Some(&format!("mix-{i:05}")), json!({ "ms": 3000 })))
        .collect();
    w.env.push("default", &jobs);
    let mut first = w.env.worker(&lease_only);
    support::wait_until("jobs to start", WAIT, || pending(&w.env) == 0);
    first.kill9();
    let killed_at = Instant::now();
    let mut second = w.env.worker(&lease_only);
    second.wait_for_log("stopped renewing its lease", WAIT);
    let recovered_after = killed_at.elapsed();
    assert_all_done_once(&w.env, count);
    assert!(second.is_running(), "{}", second.log());
    eprintln!("lease 3000 ms alone: jobs recovered {recovered_after:?} after the kill");
    // The lease plus a few heartbeats of 500 ms and a start-up; the 5 s
    // heartbeat of the defaults alone would be refused at start.
    assert!(
        recovered_after < Duration::from_secs(10),
        "recovered only after {recovered_after:?}: {}",
        second.log()
    );
}

/// kill -9 while a few thousand jobs are in flight; a new worker recovers
/// the dead one's jobs after the lease and everything completes once.
#[test]
fn kill_9_mid_run_loses_nothing() {
    let count = 4000;
    let (w, mut first) = mid_run(count, &[("CONVEYOR__QUEUES__MAX_IN_FLIGHT", "2000")], 300);
    first.kill9();
    let killed_at = Instant::now();
    let done_before = w.env.count_rows();
    assert!(
        (done_before as usize) < count,
        "the kill came too late to test anything"
    );
    let second = start(&w.env, &[]);
    assert_all_done_once(&w.env, count);
    // noop and sleep jobs (i % 4 < 3) never fail: a second attempt can only
    // come from the lease recovery of the killed worker's jobs.
    let recovered: Vec<i64> = w
        .env
        .query("SELECT COUNT(*) FROM job_results WHERE kind <> 'fail' AND attempts > 1");
    assert!(
        recovered[0] > 0,
        "no job was recovered from the killed worker"
    );
    eprintln!(
        "kill -9 → all {count} jobs done in {:?} ({} were done before the kill)",
        killed_at.elapsed(),
        done_before
    );
    assert!(
        second.log().contains("stopped renewing its lease"),
        "{}",
        second.log()
    );
}

/// SIGTERM mid-run: exit 0 within the shutdown timeout, unfinished jobs back
/// in line without an attempt counted, and a new worker finishes them.
#[test]
fn sigterm_hands_back_unfinished_jobs() {
    let (w, mut worker) = all_sleeping(20, 4_000, &[("CONVEYOR__SHUTDOWN__TIMEOUT_MS", "500")]);
    let asked = Instant::now();
    worker.sigterm();
    let code = worker.wait_exit(Duration::from_secs(20));
    assert_eq!(code, 0, "{}", worker.log());
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "took {:?}",
        asked.elapsed()
    );
    assert!(
        worker.log().contains("20 unfinished jobs handed back"),
        "{}",
        worker.log()
    );
    assert_eq!(pending(&w.env), 20);
    assert_eq!(w.env.count_rows(), 0);
    let _next = start(&w.env, &[]);
    assert_all_done_once(&w.env, 20);
    assert!(
        w.env.rows().iter().all(|r| r.attempts == 1),
        "hand-back counted an attempt"
    );
}

/// SIGTERM while slow jobs can finish in time: they finish, rows are
/// written, nothing is handed back, exit 0.
#[test]
fn sigterm_waits_for_in_flight_jobs() {
    let (w, mut worker) = all_sleeping(50, 1500, &[("CONVEYOR__PROCESSORS__CONCURRENCY", "50")]);
    worker.sigterm();
    assert_eq!(
        worker.wait_exit(Duration::from_secs(30)),
        0,
        "{}",
        worker.log()
    );
    assert_eq!(w.env.count_rows(), 50, "{}", worker.log());
    assert!(w.env.leftover_keys().iter().all(|(_, n)| *n == 0));
}

/// A second signal exits at once; the jobs it held come back by lease.
#[test]
fn second_signal_exits_at_once_without_loss() {
    let (w, mut worker) = all_sleeping(10, 3000, &[]);
    worker.sigterm();
    worker.wait_for_log("SIGTERM received", WAIT);
    worker.sigterm();
    assert_eq!(
        worker.wait_exit(Duration::from_secs(5)),
        130,
        "{}",
        worker.log()
    );
    let _next = start(&w.env, &[]);
    assert_all_done_once(&w.env, 10);
}

/// MySQL stopped for seconds mid-run: the worker keeps its pid, stops
/// claiming at its in-flight limit, and finishes everything once MySQL is back.
#[test]
fn mysql_outage_mid_run_loses_nothing() {
    let count = 3000;
    let (mut w, mut worker) = mid_run(count, &[("CONVEYOR__QUEUES__MAX_IN_FLIGHT", "500")], 200);
    w.mysql.stop();
    std::thread::sleep(Duration::from_secs(4));
    let held: Vec<(String, i64)> = w.env.leftover_keys();
    let running: i64 = held
        .iter()
        .filter(|(k, _)| k.contains(":wip:"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        running <= 500,
        "claimed {running} jobs while MySQL was down"
    );
    w.mysql.restart();
    assert_all_done_once(&w.env, count);
    assert!(
        worker.is_running(),
        "the worker must survive: {}",
        worker.log()
    );
    assert!(
        worker.log().contains("rows (attempt 1) to mysql at"),
        "{}",
        worker.log()
    );
    assert!(worker.log().contains("MySQL is back"), "{}", worker.log());
}

/// Redis shut down and restarted mid-run: the worker reconnects by itself.
#[test]
fn redis_restart_mid_run_loses_nothing() {
    let count = 3000;
    let (mut w, mut worker) = mid_run(count, &[("CONVEYOR__QUEUES__MAX_IN_FLIGHT", "500")], 200);
    w.redis.stop();
    std::thread::sleep(Duration::from_secs(3));
    w.redis.restart();
    let log_path = worker.log_path().to_path_buf();
    let dump = DumpOnPanic(log_path);
    assert_all_done_once(&w.env, count);
    std::mem::forget(dump);
    assert!(
        worker.is_running(),
        "the worker must survive: {}",
        worker.log()
    );
    let log = worker.log();
    assert!(
        log.contains("claiming failed") || log.contains("writing job states to redis failed"),
        "no log line about the outage: {log}"
    );
}

/// Redis unreachable when the worker starts: it waits and then works.
#[test]
fn redis_down_at_start_up() {
    let mut w = world();
    w.redis.stop();
    let mut worker = start(&w.env, &[]);
    worker.wait_for_log("claiming failed", WAIT);
    w.redis.restart();
    w.env.push("default", &mixed_jobs(200));
    assert_all_done_once(&w.env, 200);
    assert!(worker.is_running());
}

/// MySQL unreachable when the worker starts: it waits and then works.
#[test]
fn mysql_down_at_start_up() {
    let mut w = world();
    w.mysql.stop();
    w.env.push("default", &mixed_jobs(200));
    let mut worker = start(&w.env, &[]);
    worker.wait_for_log("not ready, retrying", WAIT);
    w.mysql.restart();
    assert_all_done_once(&w.env, 200);
    assert!(worker.is_running());
}

/// Two and four workers share one queue: one row per job, work spread out.
#[test]
fn many_workers_share_a_queue() {
    for workers in [2, 4] {
        let w = world();
        let count = 3000;
        w.env.push("default", &mixed_jobs(count));
        let procs: Vec<ConveyorProcess> = (0..workers)
            .map(|_| start(&w.env, &[("CONVEYOR__QUEUES__CLAIM_BATCH", "50")]))
            .collect();
        assert_all_done_once(&w.env, count);
        let by_worker: Vec<i64> = w
            .env
            .query("SELECT COUNT(*) FROM job_results GROUP BY worker");
        assert!(
            by_worker.len() >= 2,
            "{workers} workers, rows by worker {by_worker:?}"
        );
        drop(procs);
    }
}

/// A handler that aborts the process on every attempt: restarted each
/// time, the job ends dead after max_attempts recoveries instead of looping.
#[test]
fn a_job_that_kills_its_worker_ends_dead() {
    let w = world();
    let envelope = json!({ "id": "killer", "kind": "abort", "max_attempts": 2 });
    w.env.push(
        "default",
        &[
            envelope.to_string(),
            job("noop", Some("bystander"), json!(1)),
        ],
    );
    let binary = support::example_binary("fault_injection");
    let mut settings: Vec<(&str, &str)> = FAST_LEASE.to_vec();
    settings.push(("CONVEYOR__PROCESSORS__COUNT", "1"));
    let mut crashes = 0;
    let deadline = Instant::now() + WAIT;
    while w.env.rows().iter().all(|r| r.id != "killer") {
        assert!(Instant::now() < deadline, "the job never ended");
        let mut worker = w.env.program(&binary, &[], &settings);
        let started = Instant::now();
        while worker.is_running() && started.elapsed() < Duration::from_secs(15) {
            if w.env.rows().iter().any(|r| r.id == "killer") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !worker.is_running() {
            crashes += 1;
        }
    }
    let row = w.env.row("killer");
    assert_eq!(row.status, "dead");
    assert_eq!(row.attempts, 2);
    assert_eq!(crashes, 2);
    assert!(
        row.error.as_deref().unwrap_or("").contains("lease expired"),
        "{row:?}"
    );
    assert_eq!(w.env.row("bystander").status, "succeeded");
}

/// A job longer than its timeout_ms is cut off: a failed attempt each time.
#[test]
fn job_past_its_timeout_is_a_failed_attempt() {
    let env = TestEnv::new();
    let envelope = json!({
        "id": "too-slow", "kind": "sleep", "payload": { "ms": 10_000 },
        "timeout_ms": 200, "max_attempts": 2
    });
    env.push("default", &[envelope.to_string()]);
    let started = Instant::now();
    let _worker = env.worker(&[]);
    env.wait_for_rows(1, WAIT);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the sleep was not cut off"
    );
    let row = env.row("too-slow");
    assert_eq!((row.status.as_str(), row.attempts), ("dead", 2));
    assert!(
        row.error
            .as_deref()
            .unwrap_or("")
            .contains("timed out after 200 ms"),
        "{row:?}"
    );
}

/// A claim whose reply is lost (Redis went away mid-request) leaves jobs in
/// this worker's hold that it never saw; once Redis is back the worker hands
/// them back instead of holding them until it dies.
#[test]
fn jobs_claimed_by_a_lost_reply_are_handed_back() {
    let mut w = world();
    let worker = start(&w.env, &[("CONVEYOR__QUEUES__IDLE_WAIT_MS", "100")]);
    worker.wait_for_log("schema ready", WAIT);
    let mut conn = w.env.redis();
    let workers_key = format!("{}:{{default}}:workers", w.env.prefix);
    support::wait_until("the worker's lease", WAIT, || {
        redis::cmd("ZCARD")
            .arg(&workers_key)
            .query::<i64>(&mut conn)
            .unwrap_or(0)
            == 1
    });
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(&workers_key)
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .expect("ZRANGE");
    // What a claim leaves behind when its reply never arrives.
    let _: () = redis::cmd("HSET")
        .arg(format!("{}:{{default}}:wip:{}", w.env.prefix, ids[0]))
        .arg("lostreply-1")
        .arg(job("noop", Some("orphan"), json!("found")))
        .query(&mut conn)
        .expect("HSET");
    w.redis.stop();
    worker.wait_for_log("claiming failed", WAIT);
    w.redis.restart();
    w.env.wait_for_rows(1, WAIT);
    assert_eq!(w.env.row("orphan").output, Some(json!("found")));
    assert!(worker
        .log()
        .contains("1 jobs claimed while the connection failed were handed back"));
}

/// MySQL answering slowly (a table lock holds every write for seconds):
/// the worker waits, keeps its pid, and finishes everything once.
#[test]
fn slow_mysql_delays_but_loses_nothing() {
    let w = world();
    let count = 2000;
    let mut worker = start(&w.env, &[]);
    worker.wait_for_log("schema ready", WAIT);
    // Hold a write lock on job_results for 4 s from another session.
    let locker = w.mysql.root_sql_background(&format!(
        "USE {}; LOCK TABLES job_results WRITE; SELECT SLEEP(4); UNLOCK TABLES;",
        w.env.database
    ));
    std::thread::sleep(Duration::from_millis(500));
    w.env.push("default", &mixed_jobs(count));
    locker.wait();
    assert_all_done_once(&w.env, count);
    assert!(worker.is_running(), "{}", worker.log());
}

/// Redis answering slowly (`DEBUG SLEEP` blocks it for 3 s) mid-run.
#[test]
fn slow_redis_delays_but_loses_nothing() {
    let count = 2000;
    let (w, mut worker) = mid_run(count, &[], 100);
    let mut conn = w.env.redis();
    let _: () = redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg(3)
        .query(&mut conn)
        .expect("DEBUG SLEEP");
    assert_all_done_once(&w.env, count);
    assert!(worker.is_running(), "{}", worker.log());
}

/// A worker frozen past its lease (SIGSTOP, as in a long GC pause or a VM
/// stall): another worker recovers its job; when the frozen one resumes it
/// notices, keeps running, and the job still ends in exactly one row.
#[test]
fn a_frozen_worker_loses_its_jobs_to_another_and_notices() {
    let w = world();
    w.env.push(
        "default",
        &[job("sleep", Some("mix-00000"), json!({ "ms": 1500 }))],
    );
    let mut frozen = start(&w.env, &[]);
    support::wait_until("the job to start", WAIT, || pending(&w.env) == 0);
    frozen.signal(libc::SIGSTOP);
    let mut rescuer = start(&w.env, &[]);
    rescuer.wait_for_log("stopped renewing its lease", WAIT);
    frozen.signal(libc::SIGCONT);
    assert_all_done_once(&w.env, 1);
    // Depending on which comes first after it resumes, the frozen worker
    // notices at its next lease renewal or claim, or when its ack finds the
    // job gone from its hold.
    support::wait_until("the frozen worker to notice", WAIT, || {
        let log = frozen.log();
        log.contains("lease on queue default had expired")
            || log.contains("were no longer held by this worker")
    });
    assert!(frozen.is_running(), "{}", frozen.log());
    assert!(rescuer.is_running());
}

/// SIGTERM while a claim is on its way: the claimed jobs are either finished
/// or handed back, never left in the stopped worker's hold.
#[test]
fn sigterm_during_a_claim_leaves_nothing_held() {
    let w = world();
    let mut worker = start(&w.env, &[]);
    worker.wait_for_log("schema ready", WAIT);
    std::thread::sleep(Duration::from_millis(300));
    let jobs: Vec<String> = (0..50)
        .map(|i| job("sleep", Some(&format!("mix-{i:05}")), json!({ "ms": 300 })))
        .collect();
    w.env.push("default", &jobs);
    worker.sigterm();
    assert_eq!(
        worker.wait_exit(Duration::from_secs(30)),
        0,
        "{}",
        worker.log()
    );
    let held: i64 = w
        .env
        .leftover_keys()
        .iter()
        .filter(|(key, _)| key.contains(":wip:"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(held, 0, "jobs left in the stopped worker's hold");
    assert_eq!(w.env.count_rows() + pending(&w.env), 50);
    let _next = start(&w.env, &[]);
    assert_all_done_once(&w.env, 50);
}
