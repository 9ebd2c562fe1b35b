//! Unique jobs against real Redis and MariaDB with the real binary: a second
//! job with the same queue and `unique_key` is refused over HTTP while the
//! first is unfinished (or within `unique_for_ms`), ends as a `duplicate` row
//! when pushed with LPUSH, and the lock is released when the job ends —
//! also after its worker was killed with `kill -9`. The dashboard's "enqueue
//! a copy" follows the same rule as any submission.

mod support;

use std::time::{Duration, Instant};

use reqwest::header::LOCATION;
use serde_json::{json, Value};
use support::http::{ApiServer, Http};
use support::ui::{assert_page, csrf_of, pending, Visitor, TOKEN};
use support::{job, wait_until, TestEnv};

const LONG: Duration = Duration::from_secs(60);

/// Short leases so a killed worker's jobs are recovered quickly.
const FAST_RECOVERY: [(&str, &str); 2] = [
    ("CONVEYOR__RECOVERY__LEASE_MS", "2000"),
    ("CONVEYOR__RECOVERY__HEARTBEAT_MS", "250"),
];

fn submit(http: &Http, body: Value) -> (u16, Value) {
    let response = http.post("/jobs", body.to_string());
    (response.status, response.json())
}

fn status_of(http: &Http, id: &str) -> String {
    let response = http.get(&format!("/jobs/{id}"));
    response.json()["status"].as_str().unwrap_or("").to_string()
}

fn lock_key(env: &TestEnv, key: &str) -> String {
    format!("{}:{{default}}:unique:{key}", env.prefix)
}

fn lock_holder(env: &TestEnv, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(lock_key(env, key))
        .query(&mut env.redis())
        .expect("GET")
}

/// Over HTTP: a duplicate answers 200 with the first job's id while it runs;
/// once it finished, the same key is accepted again.
#[test]
fn api_refuses_a_duplicate_until_the_first_finishes() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[]);
    let http = api.http();
    let body = json!({"kind": "sleep", "payload": {"ms": 1500}, "unique_key": "report-7"});
    let (status, first) = submit(&http, body.clone());
    assert_eq!(status, 202, "{first}");
    let first_id = first["id"].as_str().expect("id").to_string();
    let other_payload = json!({"kind": "noop", "payload": {"x": 1}, "unique_key": "report-7"});
    let (status, dup) = submit(&http, other_payload);
    assert_eq!(status, 200, "{dup}");
    assert_eq!(
        dup,
        json!({"id": first_id, "queue": "default", "duplicate": true})
    );
    let (status, other_key) = submit(&http, json!({"kind": "noop", "unique_key": "report-8"}));
    assert_eq!(status, 202, "{other_key}");

    let mut worker = env.worker(&[]);
    wait_until("the first job running", LONG, || {
        status_of(&http, &first_id) == "running"
    });
    let (status, dup) = submit(&http, body.clone());
    assert_eq!((status, dup["id"].as_str()), (200, Some(first_id.as_str())));
    wait_until("the first job's row", LONG, || {
        status_of(&http, &first_id) == "succeeded"
    });
    // The key is free as soon as the row is visible (the worker's release
    // may still be on its way).
    let (status, again) = submit(&http, body);
    assert_eq!(status, 202, "{again}");
    assert_ne!(again["id"], first["id"]);
    wait_until("the second run's row", LONG, || {
        status_of(&http, again["id"].as_str().expect("id")) == "succeeded"
    });
    let metrics = http.get("/metrics").text;
    assert!(
        metrics.contains("conveyor_api_duplicates_refused_total{queue=\"default\"} 2"),
        "{metrics}"
    );
    assert_eq!(worker.stop(), 0, "{}", worker.log());
    assert_eq!(env.count_rows(), 3, "no row for a refused duplicate");
    assert!(env.leftover_keys().is_empty(), "{:?}", env.leftover_keys());
}

/// `unique_for_ms` holds the key after the job finished, until that long
/// after it was enqueued; then the lock expires by itself.
#[test]
fn unique_for_ms_holds_the_key_after_the_job_finished() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[]);
    let http = api.http();
    let mut worker = env.worker(&[]);
    let body = json!({"kind": "noop", "unique_key": "daily-mail", "unique_for_ms": 5000});
    let begun = Instant::now();
    let (status, first) = submit(&http, body.clone());
    assert_eq!(status, 202, "{first}");
    let first_id = first["id"].as_str().expect("id").to_string();
    wait_until("the first row", LONG, || {
        status_of(&http, &first_id) == "succeeded"
    });
    let (status, dup) = submit(&http, body.clone());
    assert_eq!(status, 200, "finished, but inside unique_for_ms: {dup}");
    assert_eq!(dup["id"], first["id"]);
    let ttl = || -> i64 {
        redis::cmd("PTTL")
            .arg(lock_key(&env, "daily-mail"))
            .query(&mut env.redis())
            .expect("PTTL")
    };
    // Acknowledged right after its row commits: the lock then expires by itself.
    wait_until("the lock to get its expiry", LONG, || ttl() != -1);
    let ttl = ttl();
    assert!(
        ttl > 0 && ttl <= 5000,
        "the lock expires at enqueue + 5 s: {ttl}"
    );
    let mut accepted = None;
    wait_until("the key free again", LONG, || {
        let (status, receipt) = submit(&http, body.clone());
        if status == 202 {
            accepted = Some(receipt);
        }
        status == 202 || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    assert!(
        begun.elapsed() >= Duration::from_millis(4500),
        "{:?}",
        begun.elapsed()
    );
    assert_ne!(accepted.expect("accepted")["id"], first["id"]);
    assert_eq!(worker.stop(), 0, "{}", worker.log());
}

/// A duplicate pushed with LPUSH does not run: it ends in a `duplicate` row
/// pointing at the holder, and nothing is left in Redis afterwards.
#[test]
fn lpush_duplicate_ends_as_a_duplicate_row() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[]);
    let http = api.http();
    let (status, held) = submit(
        &http,
        json!({"id": "by-api", "kind": "noop", "unique_key": "shared"}),
    );
    assert_eq!(status, 202, "{held}");
    let lpushed = |id: Option<&str>, key: &str| {
        let mut message: Value =
            serde_json::from_str(&job("noop", id, json!({"n": 1}))).expect("json");
        message["unique_key"] = json!(key);
        message.to_string()
    };
    env.push(
        "default",
        &[
            lpushed(Some("raw-dup"), "shared"),
            lpushed(None, "shared"),
            lpushed(Some("raw-1"), "own"),
            lpushed(Some("raw-2"), "own"),
        ],
    );
    let mut worker = env.worker(&[]);
    env.wait_for_rows(5, LONG);
    assert_eq!(worker.stop(), 0, "{}", worker.log());
    let rows = env.rows();
    let status = |id: &str| env.row(id).status;
    assert_eq!(status("by-api"), "succeeded");
    assert_eq!(status("raw-1"), "succeeded");
    let raw_dup = env.row("raw-dup");
    assert_eq!(raw_dup.status, "duplicate");
    assert_eq!(raw_dup.output, Some(json!({"duplicate_of": "by-api"})));
    assert_eq!(raw_dup.attempts, 0);
    assert_eq!(
        env.row("raw-2").output,
        Some(json!({"duplicate_of": "raw-1"}))
    );
    let idless: Vec<_> = rows
        .iter()
        .filter(|r| !["by-api", "raw-dup", "raw-1", "raw-2"].contains(&r.id.as_str()))
        .collect();
    assert_eq!(idless.len(), 1, "{rows:?}");
    assert_eq!(idless[0].status, "duplicate");
    assert_eq!(idless[0].output, Some(json!({"duplicate_of": "by-api"})));
    assert!(env.leftover_keys().is_empty(), "{:?}", env.leftover_keys());
}

/// A worker killed with kill -9 while it runs a unique job: the duplicate
/// stays refused until another worker recovers the job and it ends; then
/// the lock is gone and the key is free.
#[test]
fn lock_is_released_after_kill9_by_recovery() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &FAST_RECOVERY);
    let http = api.http();
    let body = json!({"kind": "sleep", "payload": {"ms": 30000}, "unique_key": "import", "max_attempts": 1});
    let (status, first) = submit(&http, body.clone());
    assert_eq!(status, 202, "{first}");
    let first_id = first["id"].as_str().expect("id").to_string();
    let mut doomed = env.worker(&FAST_RECOVERY);
    wait_until("the job running", LONG, || {
        status_of(&http, &first_id) == "running"
    });
    doomed.kill9();
    let (status, dup) = submit(&http, body.clone());
    assert_eq!((status, dup["id"].as_str()), (200, Some(first_id.as_str())));
    let mut rescuer = env.worker(&FAST_RECOVERY);
    wait_until("the recovered job's row", LONG, || {
        status_of(&http, &first_id) == "dead"
    });
    wait_until("the lock released by the recovered job's end", LONG, || {
        lock_holder(&env, "import").is_none()
    });
    let quick = json!({"kind": "noop", "unique_key": "import"});
    let (status, again) = submit(&http, quick);
    assert_eq!(status, 202, "{again}");
    wait_until("the new job's row", LONG, || {
        status_of(&http, again["id"].as_str().expect("id")) == "succeeded"
    });
    assert_eq!(rescuer.stop(), 0, "{}", rescuer.log());
    assert!(env
        .row(&first_id)
        .error
        .expect("error")
        .contains("lease expired"));
    assert!(env.leftover_keys().is_empty(), "{:?}", env.leftover_keys());
}

/// A `unique_key` outside 1-128 characters is a 400 naming the field over
/// HTTP, and a dead letter with the reason when pushed.
#[test]
fn unique_key_out_of_range_is_refused() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[]);
    let http = api.http();
    let (status, error) = submit(
        &http,
        json!({"kind": "noop", "unique_key": "k".repeat(129)}),
    );
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["field"], "unique_key");
    let (status, receipt) = submit(
        &http,
        json!({"kind": "noop", "unique_key": "ü".repeat(128)}),
    );
    assert_eq!(
        status, 202,
        "128 characters are fine, whatever their bytes: {receipt}"
    );
    env.push(
        "default",
        &[r#"{"id":"bad","kind":"noop","unique_key":""}"#.to_string()],
    );
    let mut worker = env.worker(&[]);
    env.wait_for_rows(1, LONG);
    wait_until("the dead letter", LONG, || !env.dead_letters().is_empty());
    assert_eq!(worker.stop(), 0, "{}", worker.log());
    let (_, reason) = &env.dead_letters()[0];
    assert!(reason.contains("unique_key"), "{reason}");
    assert!(env.leftover_keys().is_empty(), "{:?}", env.leftover_keys());
}

/// A cancelled job gives its key back: one cancelled before any worker saw
/// it ends `cancelled`, and the key is accepted again.
#[test]
fn cancelling_a_unique_job_releases_its_key() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[]);
    let http = api.http();
    let body = json!({"kind": "noop", "unique_key": "nightly-sync"});
    let (status, first) = submit(&http, body.clone());
    assert_eq!(status, 202, "{first}");
    let first_id = first["id"].as_str().expect("id").to_string();
    let cancel = http.delete(&format!("/jobs/{first_id}"));
    assert_eq!(cancel.status, 202, "{}", cancel.text);
    let mut worker = env.worker(&[]);
    wait_until("the cancelled row", LONG, || {
        status_of(&http, &first_id) == "cancelled"
    });
    wait_until("the lock released", LONG, || {
        lock_holder(&env, "nightly-sync").is_none()
    });
    let (status, again) = submit(&http, body);
    assert_eq!(status, 202, "{again}");
    wait_until("the new job's row", LONG, || {
        status_of(&http, again["id"].as_str().expect("id")) == "succeeded"
    });
    assert_eq!(worker.stop(), 0, "{}", worker.log());
    assert!(env.leftover_keys().is_empty(), "{:?}", env.leftover_keys());
}

/// A dead row of job `id` whose kept message carries `unique_key`.
fn dead_unique_job(env: &TestEnv, id: &str, unique_key: &str) {
    let (code, log) = env.conveyor_output(&["migrate"], &[]);
    assert_eq!(code, 0, "{log}");
    let message = json!({ "id": id, "kind": "noop", "payload": 1, "unique_key": unique_key });
    let sql = format!(
        "INSERT INTO job_results (id, queue, kind, status, attempts, error, finished_at, worker, message)
         VALUES ('{id}', 'default', 'noop', 'dead', 3, 'boom', UTC_TIMESTAMP(6), 'w1', '{message}')"
    );
    let _: Vec<(i64,)> = env.query(&sql);
}

/// The dashboard's "enqueue a copy" is a submission like any other: while
/// another job holds the copied job's `unique_key` no copy is created and
/// the holder's page is shown; once the key is free the copy takes it at
/// once, so a submission with that key meets the copy as its holder.
#[test]
fn a_dashboard_copy_honours_the_unique_key() {
    let env = TestEnv::new();
    dead_unique_job(&env, "mail-old", "mail-42");
    let api = ApiServer::start(&env, &[("CONVEYOR__API__TOKEN", TOKEN)]);
    let http = api.http().with_token(TOKEN);
    let mut visitor = Visitor::new(&api.base);
    assert_eq!(visitor.login(TOKEN).status, 303);
    let first = json!({ "id": "mail-new", "kind": "noop", "unique_key": "mail-42" });
    let (status, answer) = submit(&http, first);
    assert_eq!(status, 202, "{answer}");

    let csrf = csrf_of(&visitor.get("/ui/jobs/mail-old").body);
    let refused = visitor.post("/ui/jobs/mail-old/copy", &[("csrf", &csrf)]);
    assert_eq!(refused.status, 303, "{}", refused.body);
    assert_eq!(
        refused.headers[LOCATION],
        "/ui/jobs/mail-new?notice=duplicate"
    );
    let holder = visitor.get("/ui/jobs/mail-new?notice=duplicate");
    assert_page(&holder, 200, "No copy was enqueued");
    assert_eq!(pending(&env).len(), 1, "no copy was pushed");

    let mut worker = env.worker(&[]);
    wait_until("mail-new to succeed", LONG, || {
        status_of(&http, "mail-new") == "succeeded"
    });
    wait_until("the key to be free", LONG, || {
        lock_holder(&env, "mail-42").is_none()
    });
    assert_eq!(worker.stop(), 0, "{}", worker.log());
    let copied = visitor.post("/ui/jobs/mail-old/copy", &[("csrf", &csrf)]);
    assert_eq!(copied.status, 303, "{}", copied.body);
    let location = copied.headers[LOCATION].to_str().expect("ascii");
    let copy = location
        .strip_prefix("/ui/jobs/")
        .and_then(|rest| rest.strip_suffix("?notice=copied"))
        .unwrap_or_else(|| panic!("not a copy's page: {location}"));
    assert_ne!(copy, "mail-old");
    assert_eq!(lock_holder(&env, "mail-42").as_deref(), Some(copy));
    let (status, answer) = submit(&http, json!({ "kind": "noop", "unique_key": "mail-42" }));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], copy);
    assert_eq!(answer["duplicate"], true);

    let _worker = env.worker(&[]);
    env.wait_for_rows(3, LONG);
    assert_eq!(env.row(copy).status, "succeeded");
    assert_eq!(env.row("mail-old").status, "dead", "the original row stays");
    assert_eq!(env.rows().len(), 3, "one row per job, none for the refused");
}
