//! MySQL problems that retrying alone cannot fix, under a running worker:
//! a dropped results table or column is re-created and the worker goes on;
//! a refused password stops claiming, is shown at ERROR, in `/ready` and in
//! the mailbox line, and every job is written once it is fixed. A refused
//! connection reads once, with the address tried.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use support::http::Http;
use support::{job, TestEnv};

const WAIT: Duration = Duration::from_secs(120);

fn jobs(prefix: &str, count: usize, sleep_ms: u64) -> Vec<String> {
    (0..count)
        .map(|i| {
            let id = format!("{prefix}-{i:05}");
            job("sleep", Some(&id), json!({ "ms": sleep_ms }))
        })
        .collect()
}

fn ids(prefix: &str, count: usize) -> BTreeSet<String> {
    (0..count).map(|i| format!("{prefix}-{i:05}")).collect()
}

fn row_ids(env: &TestEnv) -> BTreeSet<String> {
    env.rows().into_iter().map(|row| row.id).collect()
}

fn assert_redis_drained(env: &TestEnv) {
    support::wait_until("redis to drain", WAIT, || {
        env.leftover_keys().iter().all(|(_, size)| *size == 0)
    });
}

/// `DROP TABLE job_results` while jobs are being written: the worker
/// re-creates the table and every job not already committed before the
/// drop gets its row; nothing is written twice or lost. A second wave pushed
/// after the drop makes sure writes meet the missing table even on a machine
/// fast enough (or a test client slow enough) that the first wave had all
/// committed by the time the drop ran.
#[test]
fn dropping_the_results_table_under_a_running_worker_heals() {
    let env = TestEnv::new();
    let mysql = &support::shared().mysql;
    let worker = env.worker(&[]);
    worker.wait_for_log("schema ready", WAIT);
    env.push("default", &jobs("drop", 3000, 20));
    support::wait_until("some rows", WAIT, || env.count_rows() >= 300);
    // Under a write lock nothing commits: the ids read are exactly the rows
    // the drop takes away.
    let before = mysql.root_sql(&format!(
        "USE {}; LOCK TABLES job_results WRITE; SELECT id FROM job_results; \
         DROP TABLE job_results; UNLOCK TABLES;",
        env.database
    ));
    let dropped: BTreeSet<String> = before.lines().map(str::to_string).collect();
    assert!(dropped.len() >= 300, "{}", dropped.len());
    env.push("default", &jobs("after", 500, 0));
    let remaining = 3000 - dropped.len() + 500;
    support::wait_until("the rest of the rows", WAIT, || {
        env.count_rows() >= remaining as i64
    });
    let after = row_ids(&env);
    assert_eq!(after.len(), remaining, "one row per job, no more");
    assert!(
        after.is_disjoint(&dropped),
        "no job ran again after its row was committed"
    );
    let all: BTreeSet<String> = after.union(&dropped).cloned().collect();
    let sent: BTreeSet<String> = ids("drop", 3000)
        .union(&ids("after", 500))
        .cloned()
        .collect();
    assert_eq!(all, sent, "every job accounted for");
    assert_redis_drained(&env);
    let log = worker.log();
    assert!(log.contains("re-running the migrations"), "{log}");
    assert!(log.contains("schema repaired"), "{log}");
}

/// A dropped column (a database behind the code) is added back the same way.
#[test]
fn a_dropped_column_is_added_back() {
    let env = TestEnv::new();
    let mysql = &support::shared().mysql;
    let worker = env.worker(&[]);
    worker.wait_for_log("schema ready", WAIT);
    mysql.root_sql(&format!(
        "ALTER TABLE {}.job_results DROP COLUMN message",
        env.database
    ));
    env.push("default", &jobs("col", 500, 0));
    env.wait_for_rows(500, WAIT);
    assert_eq!(row_ids(&env), ids("col", 500));
    assert_redis_drained(&env);
    assert!(worker.log().contains("schema repaired"), "{}", worker.log());
}

/// A password that stops working: claiming pauses, the problem is logged at
/// ERROR with what to do, `/ready` answers 503 with it and the mailbox line
/// shows it; the jobs wait in Redis. Once the password works again, every
/// job is written once and the worker is ready again.
#[test]
fn a_refused_password_blocks_shouts_and_keeps_every_job() {
    let env = TestEnv::new();
    let mysql = &support::shared().mysql;
    let user = format!("heal_{}", env.database.trim_start_matches("conveyor_test_"));
    mysql.root_sql(&format!(
        "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'first';
         GRANT ALL ON {db}.* TO '{user}'@'127.0.0.1';",
        db = env.database
    ));
    let url = format!(
        "mysql://{user}:first@127.0.0.1:{}/{}",
        mysql.port, env.database
    );
    let api = format!("127.0.0.1:{}", support::free_port());
    let worker = env.worker(&[
        ("CONVEYOR__MYSQL__URL", url.as_str()),
        ("CONVEYOR__API__BIND", api.as_str()),
        ("CONVEYOR__DB__RETRY_MAX_MS", "500"),
    ]);
    worker.wait_for_log("schema ready", WAIT);
    let http = Http::new(&format!("http://{api}"));
    assert_eq!(http.get("/ready").status, 200);

    // The password changes and the worker's connections go.
    mysql.root_sql(&format!(
        "ALTER USER '{user}'@'127.0.0.1' IDENTIFIED BY 'second';"
    ));
    let kill = format!(
        "SELECT CONCAT('KILL ', id, ';') FROM information_schema.processlist WHERE user = '{user}'"
    );
    for statement in mysql.root_sql(&kill).lines() {
        mysql.root_sql(statement);
    }
    env.push("default", &jobs("first", 1, 0));
    worker.wait_for_log("results cannot be written", WAIT);
    env.push("default", &jobs("later", 300, 0));
    std::thread::sleep(Duration::from_secs(2));
    let pending: i64 = redis::cmd("LLEN")
        .arg(env.pending_key("default"))
        .query(&mut env.redis())
        .expect("LLEN");
    assert_eq!(pending, 300, "claiming is paused while blocked");
    let ready = http.get("/ready");
    assert_eq!(ready.status, 503, "{}", ready.text);
    let reason = ready.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("Access denied"), "{reason}");
    assert!(reason.contains("password"), "the advice: {reason}");
    worker.wait_for_log("BLOCKED (claiming paused)", WAIT);
    let log = worker.log();
    let error_line = log
        .lines()
        .find(|l| l.contains("results cannot be written"))
        .expect("an error line");
    assert!(error_line.contains("ERROR"), "{error_line}");
    assert!(
        error_line.contains(&format!("127.0.0.1:{}", mysql.port)),
        "{error_line}"
    );
    assert!(
        !error_line.contains("first"),
        "no password in logs: {error_line}"
    );

    mysql.root_sql(&format!(
        "ALTER USER '{user}'@'127.0.0.1' IDENTIFIED BY 'first';"
    ));
    env.wait_for_rows(301, WAIT);
    let mut expected = ids("later", 300);
    expected.insert("first-00000".to_string());
    assert_eq!(row_ids(&env), expected);
    assert_redis_drained(&env);
    support::wait_until("ready again", WAIT, || http.get("/ready").status == 200);
    worker.wait_for_log("mysql problem solved", WAIT);
}

/// A MySQL that refuses connections: the cause once, with the address.
#[test]
fn a_refused_connection_reads_once_with_the_address() {
    let env = TestEnv::new();
    let port = support::free_port();
    let url = format!("mysql://conveyor:secret@127.0.0.1:{port}/nothing");
    let (code, output) = env.conveyor_output(&["migrate"], &[("CONVEYOR__MYSQL__URL", &url)]);
    assert_ne!(code, 0);
    let lines: Vec<&str> = output.lines().filter(|l| l.contains("refused")).collect();
    assert!(!lines.is_empty(), "{output}");
    for line in lines {
        assert_eq!(line.matches("refused").count(), 1, "{line}");
        assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
        assert!(!line.contains("Input/output error"), "{line}");
        assert!(!line.contains("secret"), "{line}");
    }

    let worker = env.worker(&[("CONVEYOR__MYSQL__URL", url.as_str())]);
    worker.wait_for_log("not ready, retrying", WAIT);
    let log = worker.log();
    let line = log
        .lines()
        .find(|l| l.contains("not ready, retrying"))
        .expect("a retry line");
    assert!(
        line.contains(&format!("mysql at 127.0.0.1:{port}")),
        "{line}"
    );
    assert_eq!(line.matches("refused").count(), 1, "{line}");
}
