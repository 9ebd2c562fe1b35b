//! The HTTP API against real redis-server and mariadbd: served in-process
//! (`conveyor::api::serve`) or by the `conveyor worker` binary with api.bind.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::http::{ApiServer, Http};
use support::{MariaDb, TestEnv};

const WAIT: Duration = Duration::from_secs(90);

/// Polls `GET /jobs/{id}` until its status is `status`; returns the body.
fn wait_for_status(http: &Http, id: &str, status: &str) -> Value {
    let mut last = Value::Null;
    support::wait_until(&format!("job {id} to be {status}"), WAIT, || {
        let response = http.get(&format!("/jobs/{id}"));
        last = response.json();
        last["status"] == status
    });
    last
}

fn pending_len(env: &TestEnv, queue: &str) -> i64 {
    redis::cmd("LLEN")
        .arg(env.pending_key(queue))
        .query(&mut env.redis())
        .expect("LLEN")
}

/// A job goes queued → running → succeeded, and its status says so each time.
#[test]
fn a_submitted_job_is_queued_then_running_then_succeeded() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[]);
    let http = api.http();
    let response = http.post("/jobs", r#"{"kind":"sleep","payload":{"ms":1500}}"#);
    assert_eq!(response.status, 202, "{}", response.text);
    let receipt = response.json();
    assert_eq!(receipt["queue"], "default");
    let id = receipt["id"].as_str().expect("id").to_string();
    let queued = http.get(&format!("/jobs/{id}")).json();
    assert_eq!(queued["status"], "queued", "{queued}");
    assert_eq!(queued["attempts"], 0);
    let _worker = env.worker(&[]);
    let running = wait_for_status(&http, &id, "running");
    assert_eq!(running["queue"], "default");
    let done = wait_for_status(&http, &id, "succeeded");
    assert_eq!(done["output"], json!({ "slept_ms": 1500 }));
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["error"], Value::Null);
    for time in ["enqueued_at", "started_at", "finished_at"] {
        let text = done[time]
            .as_str()
            .unwrap_or_else(|| panic!("{time}: {done}"));
        assert!(chrono::DateTime::parse_from_rfc3339(text).is_ok(), "{text}");
    }
    let narrowed = http.get(&format!("/jobs/{id}?queue=default"));
    assert_eq!(narrowed.json()["status"], "succeeded");
    assert_eq!(http.get(&format!("/jobs/{id}?queue=other")).status, 404);
}

/// A batch is accepted in order; a bad element refuses the whole batch.
#[test]
fn batches_are_all_or_nothing() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[("CONVEYOR__QUEUES__NAMES", "default,mail")]);
    let http = api.http();
    let batch = json!([
        { "id": "b-1", "kind": "noop" },
        { "id": "b-2", "kind": "noop", "queue": "mail" },
        { "kind": "noop", "payload": [1, 2] },
    ]);
    let response = http.post("/jobs/batch", batch.to_string());
    assert_eq!(response.status, 202, "{}", response.text);
    let receipts = response.json();
    assert_eq!(receipts[0], json!({ "id": "b-1", "queue": "default" }));
    assert_eq!(receipts[1], json!({ "id": "b-2", "queue": "mail" }));
    let third = receipts[2]["id"].as_str().expect("generated id");
    for id in ["b-1", "b-2", third] {
        assert_eq!(http.get(&format!("/jobs/{id}")).json()["status"], "queued");
    }
    let bad = json!([
        { "id": "c-1", "kind": "noop" },
        { "id": "c-2", "kind": "noop" },
        { "id": "c-3", "kind": "noop" },
        { "id": "c-4", "payload": 1 },
    ]);
    let response = http.post("/jobs/batch", bad.to_string());
    assert_eq!(response.status, 400, "{}", response.text);
    assert_eq!(response.json()["field"], "[3].kind");
    assert_eq!(
        http.get("/jobs/c-1").status,
        404,
        "nothing of a refused batch is queued"
    );
    assert_eq!(pending_len(&env, "default"), 2);
    assert_eq!(pending_len(&env, "mail"), 1);
    let queues = http.get("/queues").json();
    assert_eq!(queues["default"]["pending"], 2, "{queues}");
    assert_eq!(queues["mail"]["pending"], 1, "{queues}");
    assert_eq!(queues["mail"]["dead"], 0, "{queues}");
}

/// Every refused body is a 400 naming its field; oversize bodies are 413;
/// unknown jobs and routes are 404; every error is JSON.
#[test]
fn invalid_requests_name_their_field() {
    let env = TestEnv::new();
    let api = ApiServer::start(
        &env,
        &[
            ("CONVEYOR__API__MAX_BODY_BYTES", "4000"),
            ("CONVEYOR__LIMITS__MAX_JOB_BYTES", "1000"),
        ],
    );
    let http = api.http();
    let cases: Vec<(String, Value)> = vec![
        (json!({ "payload": 1 }).to_string(), json!("kind")),
        (json!({ "kind": "" }).to_string(), json!("kind")),
        (json!({ "kind": "k".repeat(65) }).to_string(), json!("kind")),
        (json!({ "kind": 7 }).to_string(), json!("kind")),
        (
            json!({ "kind": "noop", "id": "no spaces" }).to_string(),
            json!("id"),
        ),
        (
            json!({ "kind": "noop", "id": "x".repeat(65) }).to_string(),
            json!("id"),
        ),
        (
            json!({ "kind": "noop", "queue": "a b" }).to_string(),
            json!("queue"),
        ),
        (
            json!({ "kind": "noop", "queue": "unconfigured" }).to_string(),
            json!("queue"),
        ),
        (
            json!({ "kind": "noop", "max_attempts": 0 }).to_string(),
            json!("max_attempts"),
        ),
        (
            json!({ "kind": "noop", "run_at": "soon" }).to_string(),
            json!("run_at"),
        ),
        (
            json!({ "kind": "noop", "timeout_ms": "fast" }).to_string(),
            json!("timeout_ms"),
        ),
        (
            json!({ "kind": "noop", "payload": "x".repeat(2000) }).to_string(),
            json!("payload"),
        ),
        (
            json!({ "kind": "noop", "colour": "red" }).to_string(),
            json!("colour"),
        ),
        (
            json!({ "kind": "noop", "key": "tenant/7" }).to_string(),
            json!("key"),
        ),
        (
            json!({ "kind": "noop", "key": 7 }).to_string(),
            json!("key"),
        ),
        ("{not json".to_string(), Value::Null),
        ("[1, 2]".to_string(), Value::Null),
        ("\"a string\"".to_string(), Value::Null),
    ];
    for (body, field) in &cases {
        let response = http.post("/jobs", body.clone());
        assert_eq!(response.status, 400, "{body}: {}", response.text);
        let error = response.json();
        assert_eq!(&error["field"], field, "{body}: {error}");
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{error}"
        );
    }
    let batch = http.post("/jobs/batch", r#"{"kind":"noop"}"#);
    assert_eq!(batch.status, 400);
    assert_eq!(batch.json()["field"], Value::Null);
    let huge = json!({ "kind": "noop", "payload": "y".repeat(5000) }).to_string();
    let response = http.post("/jobs", huge);
    assert_eq!(response.status, 413, "{}", response.text);
    assert!(response.json()["error"]
        .as_str()
        .is_some_and(|e| e.contains("api.max_body_bytes")));
    assert_eq!(pending_len(&env, "default"), 0, "no refused job was queued");
    let unknown = http.get("/jobs/never-seen");
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["error"]
        .as_str()
        .is_some_and(|e| e.contains("never-seen")));
    assert_eq!(http.get("/jobs/bad%20id").json()["field"], "id");
    assert_eq!(http.get("/jobs/x?queue=a%20b").json()["field"], "queue");
    assert_eq!(http.get("/nowhere").status, 404);
    let alone = http.get("/metrics").text;
    assert!(alone.contains("conveyor_api_requests_total"), "{alone}");
    assert!(
        !alone.contains("conveyor_jobs_succeeded_total"),
        "an API without a worker shows no worker metrics"
    );
}

/// With api.token set, every route but /health wants the bearer token.
#[test]
fn the_token_guards_every_route_but_health() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[("CONVEYOR__API__TOKEN", "s3cret-token")]);
    let anonymous = api.http();
    assert_eq!(anonymous.get("/health").status, 200);
    for path in ["/queues", "/ready", "/metrics", "/jobs/some-id"] {
        let response = anonymous.get(path);
        assert_eq!(response.status, 401, "{path}");
        assert!(response.json()["error"].as_str().is_some(), "{path}");
    }
    assert_eq!(anonymous.post("/jobs", r#"{"kind":"noop"}"#).status, 401);
    let wrong = Http::new(&api.base).with_token("s3cret-tokeN");
    assert_eq!(wrong.get("/queues").status, 401);
    assert_eq!(
        Http::new(&api.base)
            .with_token("s3cret")
            .get("/queues")
            .status,
        401
    );
    let basic = anonymous
        .client()
        .get(format!("{}/queues", api.base))
        .basic_auth("u", Some("s3cret-token"));
    assert_eq!(anonymous.send(basic).status, 401);
    let lowercase = anonymous
        .client()
        .get(format!("{}/queues", api.base))
        .header("authorization", "bearer s3cret-token");
    assert_eq!(
        anonymous.send(lowercase).status,
        200,
        "the scheme is case-insensitive"
    );
    let right = Http::new(&api.base).with_token("s3cret-token");
    assert_eq!(right.get("/queues").status, 200);
    assert_eq!(right.post("/jobs", r#"{"kind":"noop"}"#).status, 202);
    assert_eq!(right.get("/health").status, 200);
}

/// /ready is 503 naming MySQL while it is down; /health stays 200.
#[test]
fn ready_fails_while_mysql_is_down() {
    let mut mysql = MariaDb::start();
    let env = TestEnv::on(&support::shared().redis, &mysql);
    let api = ApiServer::start(&env, &[]);
    let http = api.http();
    let ready = http.get("/ready");
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json(), json!({ "redis": "ok", "mysql": "ok" }));
    mysql.stop();
    let down = http.get("/ready");
    assert_eq!(down.status, 503, "{}", down.text);
    let body = down.json();
    assert_eq!(body["redis"], "ok");
    assert_ne!(body["mysql"], "ok");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("mysql")),
        "{body}"
    );
    assert!(!down.text.contains("conveyor:conveyor@"), "{body}");
    assert_eq!(http.get("/health").status, 200);
    assert_eq!(http.get("/queues").status, 503);
}

/// The value of one sample: a counter, gauge, or a histogram's count.
fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

/// A worker with api.bind serves /metrics with its own counters: what it ran
/// is what it counts.
#[test]
fn worker_metrics_count_the_jobs_it_ran() {
    let env = TestEnv::new();
    let port = support::free_port().to_string();
    let bind = format!("127.0.0.1:{port}");
    let mut worker = env.worker(&[("CONVEYOR__API__BIND", &bind)]);
    worker.wait_for_log("api listening on", WAIT);
    let http = Http::new(&format!("http://{bind}"));
    let mut jobs: Vec<Value> = (0..30)
        .map(|i| json!({ "id": format!("m-{i}"), "kind": "noop", "payload": i }))
        .collect();
    jobs.push(json!({ "id": "m-dies", "kind": "fail", "max_attempts": 2, "payload": { "message": "no" } }));
    assert_eq!(
        http.post("/jobs/batch", Value::Array(jobs).to_string())
            .status,
        202
    );
    env.wait_for_rows(31, WAIT);
    support::wait_until("the dead job in /queues", WAIT, || {
        http.get("/queues").json()["default"]["dead"] == 1
    });
    let text = http.get("/metrics").text;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("prometheus text format");
    let noop = [("kind", "noop"), ("queue", "default")];
    let fail = [("kind", "fail"), ("queue", "default")];
    assert_eq!(
        sample(&scrape, "conveyor_jobs_succeeded_total", &noop),
        Some(30.0),
        "{text}"
    );
    assert_eq!(
        sample(&scrape, "conveyor_jobs_dead_total", &fail),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&scrape, "conveyor_jobs_retried_total", &fail),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &scrape,
            "conveyor_job_duration_seconds",
            &[("kind", "noop")]
        ),
        Some(30.0)
    );
    assert_eq!(
        sample(&scrape, "conveyor_job_latency_seconds", &[("kind", "noop")]),
        Some(30.0)
    );
    let rows = sample(&scrape, "conveyor_db_batch_rows_sum", &[]).expect("batch rows");
    assert_eq!(rows, 31.0, "every row went through a counted batch");
    assert!(sample(&scrape, "conveyor_db_flush_seconds", &[]).is_some_and(|n| n >= 1.0));
    assert_eq!(
        sample(&scrape, "conveyor_jobs_claimed_total", &[]),
        Some(32.0),
        "31 jobs, one retried"
    );
    for actor in ["queue_reader", "processors", "db_writer"] {
        assert!(
            sample(&scrape, "conveyor_mailbox_depth", &[("actor", actor)]).is_some(),
            "{actor}"
        );
    }
    assert_eq!(sample(&scrape, "conveyor_jobs_in_flight", &[]), Some(0.0));
    assert_eq!(
        sample(
            &scrape,
            "conveyor_queue_depth",
            &[("queue", "default"), ("state", "pending")]
        ),
        Some(0.0)
    );
    let batch_requests = [
        ("method", "POST"),
        ("route", "/jobs/batch"),
        ("status", "202"),
    ];
    assert_eq!(
        sample(&scrape, "conveyor_api_requests_total", &batch_requests),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &scrape,
            "conveyor_api_jobs_accepted_total",
            &[("queue", "default")]
        ),
        Some(31.0)
    );
    assert_eq!(worker.stop(), 0, "{}", worker.log());
}
