//! Result retention against real redis-server and mariadbd: `conveyor
//! prune` (dry run, batches, the lock), and a worker's Pruner deleting old
//! rows while it writes new ones.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{job, TestEnv};

const WAIT: Duration = Duration::from_secs(90);

/// Creates the schema of this test's database.
fn migrate(env: &TestEnv) {
    let (code, output) = env.conveyor_output(&["migrate"], &[]);
    assert_eq!(code, 0, "{output}");
}

/// Inserts `count` rows `<prefix>-<n>` of `status`, finished `age_hours` ago.
fn insert_rows(env: &TestEnv, prefix: &str, status: &str, count: u32, age_hours: u32) {
    support::shared().mysql.root_sql(&format!(
        "INSERT INTO {db}.job_results (id, queue, kind, status, attempts, finished_at, worker)
         SELECT CONCAT('{prefix}-', seq), 'default', 'noop', '{status}', 1,
                UTC_TIMESTAMP(6) - INTERVAL {age_hours} HOUR, 'seed'
         FROM {db}.seq_1_to_{count}",
        db = env.database
    ));
}

/// Inserts `count` dead letters received `age_hours` ago.
fn insert_letters(env: &TestEnv, prefix: &str, count: u32, age_hours: u32) {
    support::shared().mysql.root_sql(&format!(
        "INSERT INTO {db}.dead_letters (claim_token, queue, raw, reason, received_at)
         SELECT CONCAT('{prefix}-', seq), 'default', 'x', 'seed',
                UTC_TIMESTAMP(6) - INTERVAL {age_hours} HOUR
         FROM {db}.seq_1_to_{count}",
        db = env.database
    ));
}

/// Row counts by id prefix (the part before the first `-`).
fn counts(env: &TestEnv) -> Vec<(String, i64)> {
    env.query(
        "SELECT SUBSTRING_INDEX(id, '-', 1) AS p, COUNT(*) FROM job_results GROUP BY p ORDER BY p",
    )
}

fn letters(env: &TestEnv) -> i64 {
    env.query::<i64>("SELECT COUNT(*) FROM dead_letters")[0]
}

const RETENTION: [(&str, &str); 3] = [
    ("CONVEYOR__RESULTS__RETENTION", "1d"),
    ("CONVEYOR__RESULTS__DEAD_RETENTION", "7d"),
    // Small batches: the pass must loop until nothing is left.
    ("CONVEYOR__RESULTS__PRUNE_BATCH", "7"),
];

/// A dry run counts and deletes nothing; the real run deletes exactly the
/// rows past their retention, dead rows and dead letters by their own.
#[test]
fn prune_deletes_exactly_the_rows_past_their_retention() {
    let env = TestEnv::new();
    migrate(&env);
    insert_rows(&env, "oldok", "succeeded", 40, 48);
    insert_rows(&env, "newok", "succeeded", 10, 1);
    insert_rows(&env, "olddead", "dead", 15, 24 * 8);
    insert_rows(&env, "middead", "dead", 5, 48);
    insert_letters(&env, "oldletter", 12, 24 * 8);
    insert_letters(&env, "newletter", 3, 48);

    let (code, output) = env.conveyor_output(&["prune", "--dry-run"], &RETENTION);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("would delete 67 rows: 55 job_results, 12 dead_letters"),
        "{output}"
    );
    assert_eq!(counts(&env).iter().map(|(_, n)| n).sum::<i64>(), 70);

    let (code, output) = env.conveyor_output(&["prune"], &RETENTION);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("deleted 67 rows: 55 job_results, 12 dead_letters"),
        "{output}"
    );
    assert_eq!(
        counts(&env),
        vec![("middead".to_string(), 5), ("newok".to_string(), 10)]
    );
    assert_eq!(letters(&env), 3);

    let (code, output) = env.conveyor_output(&["prune"], &RETENTION);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("deleted 0 rows"), "{output}");
}

/// While another process holds the prune lock, `conveyor prune` deletes
/// nothing and says who holds it; the lock it takes itself carries a TTL
/// and is gone after the pass.
#[test]
fn only_one_process_prunes_at_a_time() {
    let env = TestEnv::new();
    migrate(&env);
    insert_rows(&env, "old", "succeeded", 20, 48);
    let lock = format!("{}:lock:prune", env.prefix);
    let mut redis = env.redis();
    let _: () = redis::cmd("SET")
        .arg(&lock)
        .arg("worker-elsewhere")
        .arg("PX")
        .arg(60_000)
        .query(&mut redis)
        .expect("SET");
    let (code, output) = env.conveyor_output(&["prune"], &RETENTION);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("another process is pruning"), "{output}");
    assert!(output.contains("worker-elsewhere"), "{output}");
    assert_eq!(counts(&env), vec![("old".to_string(), 20)]);

    let _: () = redis::cmd("DEL").arg(&lock).query(&mut redis).expect("DEL");
    let (code, output) = env.conveyor_output(&["prune"], &RETENTION);
    assert_eq!(code, 0, "{output}");
    assert!(counts(&env).is_empty());
    let exists: bool = redis::cmd("EXISTS")
        .arg(&lock)
        .query(&mut redis)
        .expect("EXISTS");
    assert!(!exists, "the lock is released after the pass");
}

/// Two workers with a retention: old rows go, every new job keeps exactly
/// one row, and one worker logs the pass while the other skips it.
#[test]
fn workers_prune_old_rows_while_writing_new_ones() {
    let env = TestEnv::new();
    migrate(&env);
    insert_rows(&env, "old", "succeeded", 3000, 3);
    insert_rows(&env, "olddead", "dead", 500, 3);
    let jobs: Vec<String> = (0..2000)
        .map(|i| job("noop", Some(&format!("new-{i:04}")), json!(i)))
        .collect();
    env.push("default", &jobs[..1000]);
    let settings = [
        ("CONVEYOR__RESULTS__RETENTION", "1h"),
        ("CONVEYOR__RESULTS__PRUNE_INTERVAL", "1s"),
        ("CONVEYOR__RESULTS__PRUNE_BATCH", "200"),
        ("CONVEYOR__RESULTS__PRUNE_PAUSE_MS", "5"),
    ];
    let mut first = env.worker(&settings);
    let mut second = env.worker(&settings);
    env.push("default", &jobs[1000..]);
    support::wait_until("old rows pruned and new rows written", WAIT, || {
        counts(&env) == vec![("new".to_string(), 2000)]
    });
    let rows = env.rows();
    assert_eq!(rows.len(), 2000);
    assert!(rows.iter().all(|r| r.status == "succeeded"));
    let logs = format!("{}\n{}", first.log(), second.log());
    assert!(logs.contains("results are pruned every 1 s"), "{logs}");
    let pruned: u64 = logs
        .lines()
        .filter_map(|l| l.split("pruned ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(pruned, 3500, "each old row is deleted once:\n{logs}");
    assert_eq!(first.stop(), 0, "{}", first.log());
    assert_eq!(second.stop(), 0, "{}", second.log());
}

/// A slow pass: 10 rows per batch, at least 200 ms apart (50 rows/s).
const SLOW_PRUNING: [(&str, &str); 4] = [
    ("CONVEYOR__RESULTS__RETENTION", "1h"),
    ("CONVEYOR__RESULTS__PRUNE_INTERVAL", "1s"),
    ("CONVEYOR__RESULTS__PRUNE_BATCH", "10"),
    ("CONVEYOR__RESULTS__PRUNE_PAUSE_MS", "200"),
];

/// Who holds the prune lock, if anyone.
fn prune_lock_holder(env: &TestEnv) -> Option<String> {
    redis::cmd("GET")
        .arg(format!("{}:lock:prune", env.prefix))
        .query(&mut env.redis())
        .expect("GET")
}

fn old_rows(env: &TestEnv) -> i64 {
    env.query::<i64>("SELECT COUNT(*) FROM job_results WHERE id LIKE 'old-%'")[0]
}

fn new_rows(env: &TestEnv) -> i64 {
    env.query::<i64>("SELECT COUNT(*) FROM job_results WHERE id LIKE 'new-%'")[0]
}

/// Starts a worker on `jobs` new jobs and 3000 old rows, and waits until
/// it is in the middle of a pass (holding the lock, some rows deleted) and
/// has written every new row.
fn worker_in_the_middle_of_a_pass(env: &TestEnv, jobs: usize) -> support::ConveyorProcess {
    migrate(env);
    insert_rows(env, "old", "succeeded", 3000, 3);
    let jobs: Vec<String> = (0..jobs)
        .map(|i| job("noop", Some(&format!("new-{i:04}")), json!(i)))
        .collect();
    env.push("default", &jobs);
    let worker = env.worker(&SLOW_PRUNING);
    support::wait_until("the worker prunes", WAIT, || {
        prune_lock_holder(env).is_some() && old_rows(env) < 3000
    });
    support::wait_until("the new rows are written", WAIT, || {
        new_rows(env) == jobs.len() as i64
    });
    worker
}

/// A worker stopped with SIGTERM in the middle of a pass ends it after the
/// batch under way and releases the prune lock, so `conveyor prune` right
/// after (well within the lock's 60 s TTL) finds it free and deletes the
/// rest; every new job keeps its one row.
#[test]
fn a_stopping_worker_releases_the_prune_lock() {
    let env = TestEnv::new();
    let mut worker = worker_in_the_middle_of_a_pass(&env, 200);
    assert_eq!(worker.stop(), 0, "{}", worker.log());
    let log = worker.log();
    assert!(log.contains("pruning stopped for shutdown after"), "{log}");
    assert_eq!(prune_lock_holder(&env), None, "{log}");
    let left = old_rows(&env);
    assert!(
        left > 0,
        "the pass ended before the stop; nothing was tested"
    );

    let (code, output) = env.conveyor_output(&["prune"], &SLOW_PRUNING[..1]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains(&format!("deleted {left} rows")), "{output}");
    assert_eq!(counts(&env), vec![("new".to_string(), 200)]);
    assert!(env.rows().iter().all(|r| r.status == "succeeded"));
}

/// The release checks the holder: when the lock passed to another process
/// during the pass (it expired, say), the stopping worker leaves that
/// process's lock alone.
#[test]
fn a_stopping_worker_leaves_a_lock_it_no_longer_holds() {
    let env = TestEnv::new();
    let mut worker = worker_in_the_middle_of_a_pass(&env, 50);
    let _: () = redis::cmd("SET")
        .arg(format!("{}:lock:prune", env.prefix))
        .arg("worker-elsewhere")
        .arg("PX")
        .arg(60_000)
        .query(&mut env.redis())
        .expect("SET");
    assert_eq!(worker.stop(), 0, "{}", worker.log());
    assert_eq!(
        prune_lock_holder(&env).as_deref(),
        Some("worker-elsewhere"),
        "{}",
        worker.log()
    );
    assert_eq!(new_rows(&env), 50);
}

/// A retention that is not a duration stops the worker at start, naming
/// the key; `conveyor prune` without any retention says so.
#[test]
fn bad_retention_settings_are_refused() {
    let env = TestEnv::new();
    let mut worker = env.worker(&[("CONVEYOR__RESULTS__RETENTION", "thirty days")]);
    assert_eq!(worker.wait_exit(WAIT), 2, "{}", worker.log());
    assert!(
        worker
            .log()
            .contains("results.retention must be a duration"),
        "{}",
        worker.log()
    );
    let (code, output) = env.conveyor_output(&["prune"], &[]);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("results.retention"), "{output}");
    let (code, output) = env.conveyor_output(&["prune", "--help"], &[]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("Example"), "{output}");
}

/// `conveyor bench --w1-old-rows` runs W1 beside a pruning worker, reports
/// it, and leaves neither old nor new rows behind.
#[test]
fn bench_measures_w1_while_pruning() {
    let env = TestEnv::new();
    let args = [
        "bench",
        "--json",
        "--workloads",
        "w1",
        "--w1-jobs",
        "300",
        "--w1-old-rows",
        "12000",
    ];
    let (code, output) = env.conveyor_output(&args, &[]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("while pruning 12000 old rows ("),
        "{output}"
    );
    assert_eq!(env.count_rows(), 0, "bench rows were not cleaned up");
}
