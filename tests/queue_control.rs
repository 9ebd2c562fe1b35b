//! Pause, resume and cancel with the real `conveyor` binary against real
//! Redis and MariaDB: what operators rely on when they stop a queue or take
//! a job back, and that every job still ends in exactly one row.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::http::{ApiServer, Http};
use support::{job, TestEnv};

const WAIT: Duration = Duration::from_secs(90);

/// Polls `GET /jobs/{id}` until its status is `status`; returns the body.
fn wait_for_status(http: &Http, id: &str, status: &str) -> Value {
    let mut last = Value::Null;
    support::wait_until(&format!("job {id} to be {status}"), WAIT, || {
        last = http.get(&format!("/jobs/{id}")).json();
        last["status"] == status
    });
    last
}

fn count(env: &TestEnv, sql: &str) -> i64 {
    env.query::<i64>(sql).first().copied().unwrap_or(0)
}

fn assert_nothing_left(env: &TestEnv) {
    support::wait_until("redis to drain", WAIT, || {
        env.leftover_keys().iter().all(|(_, n)| *n == 0)
    });
}

fn utc_text(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .expect("time")
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

/// A pause stops every worker from starting the queue's jobs within a
/// second (one worker running before the pause, one started after it);
/// a resume lets them all finish, one row each.
#[test]
fn a_pause_holds_every_worker_and_a_resume_releases_them() {
    let env = TestEnv::new();
    let total = 400;
    let jobs: Vec<String> = (0..total)
        .map(|i| job("sleep", Some(&format!("p-{i:04}")), json!({ "ms": 40 })))
        .collect();
    env.push("default", &jobs);
    let slots = [
        ("CONVEYOR__PROCESSORS__COUNT", "2"),
        ("CONVEYOR__PROCESSORS__CONCURRENCY", "4"),
    ];
    let _before = env.worker(&slots);
    env.wait_for_rows(16, WAIT);
    let (code, out) = env.conveyor_output(&["queue", "pause", "default"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("queue default paused"), "{out}");
    let paused_at = conveyor::job::now_ms();
    let _after = env.worker(&slots);
    std::thread::sleep(Duration::from_secs(3));
    let late = count(
        &env,
        &format!(
            "SELECT COUNT(*) FROM job_results WHERE started_at > '{}'",
            utc_text(paused_at + 1000)
        ),
    );
    assert_eq!(
        late,
        0,
        "no job starts more than 1 s after the pause\n{}\n-----\n{}",
        _before.log(),
        _after.log()
    );
    let done = env.count_rows();
    assert!(done < total as i64, "jobs wait while paused ({done} done)");
    let (code, stats) = env.conveyor_output(&["stats", "--json"], &[]);
    assert_eq!(code, 0, "{stats}");
    let line = stats.lines().find(|l| l.starts_with('{')).expect("json");
    let stats: Value = serde_json::from_str(line).expect("stats json");
    assert_eq!(stats["default"]["paused"], true, "{stats}");
    let (code, out) = env.conveyor_output(&["queue", "resume", "default"], &[]);
    assert_eq!(code, 0, "{out}");
    env.wait_for_rows(total as i64, WAIT);
    let rows = env.rows();
    assert_eq!(rows.len(), total, "one row per job");
    assert!(rows.iter().all(|r| r.status == "succeeded"));
    assert_nothing_left(&env);
}

/// The API's pause and resume: 204, the flag in `GET /queues`, 404 for an
/// unknown queue (named), 400 for a name outside the charset.
#[test]
fn pause_and_resume_over_the_api() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[("CONVEYOR__QUEUES__NAMES", "default,mail")]);
    let http = api.http();
    let response = http.post("/queues/mail/pause", "");
    assert_eq!(response.status, 204, "{}", response.text);
    let queues = http.get("/queues").json();
    assert_eq!(queues["mail"]["paused"], true, "{queues}");
    assert_eq!(queues["default"]["paused"], false, "{queues}");
    let response = http.post("/jobs", r#"{"kind":"noop","queue":"mail"}"#);
    assert_eq!(response.status, 202, "a paused queue still accepts jobs");
    let missing = http.post("/queues/nosuch/pause", "");
    assert_eq!(missing.status, 404, "{}", missing.text);
    assert!(missing.text.contains("nosuch"), "{}", missing.text);
    assert_eq!(missing.json()["queue"], "nosuch");
    let bad = http.post("/queues/bad%20name/pause", "");
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(bad.json()["field"], "queue");
    let response = http.post("/queues/mail/resume", "");
    assert_eq!(response.status, 204, "{}", response.text);
    assert_eq!(http.get("/queues").json()["mail"]["paused"], false);
    let metrics = http.get("/metrics").text;
    assert!(
        metrics.contains("conveyor_queue_paused{queue=\"mail\"} 0"),
        "{metrics}"
    );
}

/// Cancel of a queued, a scheduled and a retrying job (no worker running
/// yet), twice, of an unknown job; then the worker writes `cancelled` rows
/// without running them, and a finished job answers 409.
#[test]
fn waiting_jobs_are_cancelled_and_never_run() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[]);
    let http = api.http();
    let later = conveyor::job::now_ms() + 3_600_000;
    let submit = |body: Value| {
        let response = http.post("/jobs", body.to_string());
        assert_eq!(response.status, 202, "{}", response.text);
    };
    submit(json!({"id": "queued-1", "kind": "fail", "payload": {"mode": "panic"}}));
    env.push("default", &[job("fail", Some("raw-1"), json!({}))]);
    submit(json!({"id": "later-1", "kind": "fail", "run_at": later}));
    submit(json!({"id": "retry-1", "kind": "fail", "max_attempts": 5}));
    submit(json!({"id": "done-1", "kind": "noop"}));
    for id in ["queued-1", "raw-1"] {
        let response = http.delete(&format!("/jobs/{id}"));
        assert_eq!(response.status, 202, "{}", response.text);
        assert_eq!(response.json()["status"], "cancelled");
        assert_eq!(
            http.get(&format!("/jobs/{id}")).json()["status"],
            "cancelled"
        );
    }
    let twice = http.delete("/jobs/queued-1");
    assert_eq!(twice.status, 202, "{}", twice.text);
    assert_eq!(twice.json()["status"], "cancelled");
    let unknown = http.delete("/jobs/nobody");
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    let bad = http.delete("/jobs/bad%20id");
    assert_eq!(bad.status, 400, "{}", bad.text);
    let _worker = env.worker(&[
        ("CONVEYOR__RETRY__BASE_MS", "600000"),
        ("CONVEYOR__RETRY__MAX_MS", "600000"),
    ]);
    wait_for_status(&http, "later-1", "queued");
    let retrying = wait_for_status(&http, "retry-1", "retrying");
    assert_eq!(retrying["attempts"], 1);
    wait_for_status(&http, "done-1", "succeeded");
    for id in ["later-1", "retry-1"] {
        let response = http.delete(&format!("/jobs/{id}"));
        assert_eq!(response.status, 202, "{}", response.text);
        assert_eq!(response.json()["status"], "cancelled");
    }
    for id in ["queued-1", "raw-1", "later-1", "retry-1"] {
        let row = wait_for_status(&http, id, "cancelled");
        assert_eq!(row["output"], Value::Null, "{row}");
        assert_eq!(row["started_at"], Value::Null, "never started again: {row}");
    }
    env.wait_for_rows(5, WAIT);
    assert_eq!(env.row("retry-1").attempts, 1);
    assert_eq!(env.row("queued-1").attempts, 0, "never ran");
    let finished = http.delete("/jobs/done-1");
    assert_eq!(finished.status, 409, "{}", finished.text);
    assert_eq!(finished.json()["status"], "succeeded");
    let again = http.delete("/jobs/queued-1");
    assert_eq!(again.status, 202, "{}", again.text);
    assert_eq!(again.json()["status"], "cancelled");
    assert_eq!(env.rows().len(), 5, "one row per job");
    assert_nothing_left(&env);
}

/// A running async job is cut off and ends `cancelled`; the CLI cancels too.
#[test]
fn a_running_job_is_stopped() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[]);
    let http = api.http();
    let envelope = json!({"id": "long-1", "kind": "sleep", "payload": {"ms": 600_000}});
    assert_eq!(http.post("/jobs", envelope.to_string()).status, 202);
    let envelope = json!({"id": "long-2", "kind": "sleep", "payload": {"ms": 600_000}});
    assert_eq!(http.post("/jobs", envelope.to_string()).status, 202);
    let _worker = env.worker(&[]);
    wait_for_status(&http, "long-1", "running");
    wait_for_status(&http, "long-2", "running");
    let response = http.delete("/jobs/long-1");
    assert_eq!(response.status, 202, "{}", response.text);
    assert_eq!(response.json()["status"], "cancelling");
    let (code, out) = env.conveyor_output(&["cancel", "long-2"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("cancelling"), "{out}");
    for id in ["long-1", "long-2"] {
        let row = wait_for_status(&http, id, "cancelled");
        assert_eq!(row["attempts"], 1, "{row}");
        assert!(row["started_at"].is_string(), "{row}");
    }
    let (code, out) = env.conveyor_output(&["cancel", "long-1"], &[]);
    assert_eq!(code, 0, "cancelling twice is no error: {out}");
    let (code, out) = env.conveyor_output(&["cancel", "nobody"], &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(env.rows().len(), 2);
    assert_nothing_left(&env);
}

/// A cancel accepted for a running job, then its worker is killed before it
/// saw the signal: the recovered job is not run again, it ends `cancelled`.
#[test]
fn a_cancel_survives_a_kill_9_of_the_worker() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[]);
    let http = api.http();
    let envelope =
        json!({"id": "victim", "kind": "sleep", "payload": {"ms": 600_000}, "max_attempts": 5});
    assert_eq!(http.post("/jobs", envelope.to_string()).status, 202);
    let fast_lease = [
        ("CONVEYOR__RECOVERY__LEASE_MS", "2000"),
        ("CONVEYOR__RECOVERY__HEARTBEAT_MS", "250"),
    ];
    // This worker never reads cancel signals in time: it dies holding the job.
    let mut first = env.worker(&[
        fast_lease[0],
        fast_lease[1],
        ("CONVEYOR__QUEUES__CONTROL_POLL_MS", "600000"),
    ]);
    wait_for_status(&http, "victim", "running");
    std::thread::sleep(Duration::from_millis(500));
    let response = http.delete("/jobs/victim");
    assert_eq!(response.status, 202, "{}", response.text);
    assert_eq!(response.json()["status"], "cancelling");
    first.kill9();
    let _second = env.worker(&fast_lease);
    env.wait_for_rows(1, WAIT);
    let row = wait_for_status(&http, "victim", "cancelled");
    assert_eq!(row["started_at"], Value::Null, "not run again: {row}");
    assert_eq!(row["attempts"], 1, "{row}\n{}", _second.log());
    assert_eq!(env.rows().len(), 1);
    assert_nothing_left(&env);
}

/// A `succeeded` row for `claimed`, as a worker's DbWriter commits it.
fn succeeded_row(claimed: &conveyor::job::ClaimedJob, id: &str) -> conveyor::job::ResultRow {
    let now = conveyor::job::now_ms();
    conveyor::job::ResultRow {
        handle: claimed.handle.clone(),
        id: id.to_string(),
        kind: "noop".into(),
        status: conveyor::job::FinalStatus::Succeeded,
        attempts: 1,
        output: Some("1".into()),
        error: None,
        enqueued_at_ms: None,
        started_at_ms: Some(now),
        finished_at_ms: now,
        message: None,
    }
}

/// The window between a job's row committing and its acknowledgement in
/// Redis, held open by claiming, writing and acknowledging through the
/// library by hand: a cancel in that window answers "finished" (409), and a
/// cancel that was answered `cancelling` just before the row committed
/// leaves the job `succeeded`.
#[test]
fn a_cancel_between_commit_and_ack_finds_the_job_finished() {
    use conveyor::control::{cancel_job, CancelAnswer};
    use conveyor::redis_queue::CancelState;
    use conveyor::store::write_batch;

    let env = TestEnv::new();
    env.push(
        "default",
        &[
            job("noop", Some("done-early"), json!(1)),
            job("noop", Some("done-late"), json!(2)),
        ],
    );
    let configured = vec!["default".to_string()];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let redis = env.queue_client();
        let pool = mysql_async::Pool::new(env.mysql_url.as_str());
        conveyor::store::migrate(&pool).await.expect("migrate");
        let queue: std::sync::Arc<str> = "default".into();
        let lease = conveyor::job::now_ms() + 600_000;
        let claimed = redis
            .claim(&queue, "w-race", 2, lease)
            .await
            .expect("claim");
        let [early, late] = &claimed.jobs[..] else {
            panic!("claimed {:?}", claimed.jobs)
        };
        let cancel = |id: &'static str| cancel_job(&redis, &pool, &configured, None, id);
        let finished = CancelAnswer::Finished {
            queue: "default".into(),
            status: "succeeded".into(),
        };

        write_batch(&pool, "w-race", &[succeeded_row(early, "done-early")], &[])
            .await
            .expect("commit");
        assert_eq!(cancel("done-early").await.expect("cancel"), finished);

        let signalled = cancel("done-late").await.expect("cancel");
        assert_eq!(
            signalled,
            CancelAnswer::Accepted {
                queue: "default".into(),
                state: CancelState::Cancelling
            }
        );
        write_batch(&pool, "w-race", &[succeeded_row(late, "done-late")], &[])
            .await
            .expect("commit");
        let tokens = [early.handle.token.clone(), late.handle.token.clone()];
        let acked = redis.ack("default", "w-race", &tokens).await.expect("ack");
        assert_eq!(acked, 2);
        for id in ["done-early", "done-late"] {
            assert_eq!(cancel(id).await.expect("cancel"), finished, "{id}");
        }
        pool.disconnect().await.expect("disconnect");
    });
    for id in ["done-early", "done-late"] {
        assert_eq!(env.row(id).status, "succeeded", "{id}");
    }
    assert_eq!(env.rows().len(), 2, "one row per job");
    assert_nothing_left(&env);
}

/// A job cancelled while its queue is paused gets its `cancelled` row at
/// once, from a worker that keeps the queue paused: the other jobs, sorted
/// by key or raw, stay queued until the resume, then run once each — also
/// when the resume comes right after that row, before the worker's next
/// look at the pause flags (it reads them every 2 s here).
#[test]
fn a_job_cancelled_in_a_paused_queue_gets_its_row_while_the_queue_stays_paused() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[]);
    let http = api.http();
    let _worker = env.worker(&[("CONVEYOR__QUEUES__CONTROL_POLL_MS", "2000")]);
    let submit = |body: Value| {
        let response = http.post("/jobs", body.to_string());
        assert_eq!(response.status, 202, "{}", response.text);
    };
    submit(json!({"id": "first", "kind": "noop", "key": "tenant-a"}));
    wait_for_status(&http, "first", "succeeded");
    let response = http.post("/queues/default/pause", "");
    assert_eq!(response.status, 204, "{}", response.text);
    // The worker has seen the pause once a job pushed now stays queued.
    std::thread::sleep(Duration::from_millis(2500));
    submit(json!({"id": "keyed-1", "kind": "noop", "key": "tenant-a"}));
    submit(json!({"id": "keyed-2", "kind": "noop", "key": "tenant-b"}));
    env.push("default", &[job("noop", Some("raw-1"), json!({}))]);
    for id in ["keyed-2", "raw-1"] {
        let response = http.delete(&format!("/jobs/{id}"));
        assert_eq!(response.status, 202, "{}", response.text);
    }
    // Their rows, not only their state in Redis (which reads `cancelled`
    // from the moment of the cancel).
    env.wait_for_rows(3, WAIT);
    for id in ["keyed-2", "raw-1"] {
        let row = env.row(id);
        assert_eq!(row.status, "cancelled", "{row:?}");
        assert_eq!(row.attempts, 0, "never ran: {row:?}");
    }
    assert_eq!(http.get("/jobs/keyed-1").json()["status"], "queued");
    assert_eq!(http.get("/queues").json()["default"]["paused"], true);
    let response = http.post("/queues/default/resume", "");
    assert_eq!(response.status, 204, "{}", response.text);
    wait_for_status(&http, "keyed-1", "succeeded");
    env.wait_for_rows(4, WAIT);
    assert_eq!(env.rows().len(), 4, "one row per job");
    assert_nothing_left(&env);
}
