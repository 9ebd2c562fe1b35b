//! The `http` and `gather` kinds end to end: the real `conveyor worker`
//! against a local actix-web server on 127.0.0.1 that records every request
//! it receives, so the tests can count what the worker really sent.
//!
//! The local server is on a loopback address, which the kinds refuse by
//! default; tests that must reach it opt in with
//! `CONVEYOR__KINDS__HTTP__ALLOW_PRIVATE=true` or `..._ALLOW_HOSTS`.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};
use support::{config_file, job, wait_until, ConveyorProcess, ResultRow, TestEnv};

const WAIT: Duration = Duration::from_secs(90);
const ALLOW_PRIVATE: (&str, &str) = ("CONVEYOR__KINDS__HTTP__ALLOW_PRIVATE", "true");

// ---------------------------------------------------------------- the local server

#[derive(Default)]
struct ServerState {
    /// Arrival time of every request, by path.
    hits: Mutex<HashMap<String, Vec<Instant>>>,
    /// Calculator requests being served right now, and the most at once.
    calc_now: AtomicUsize,
    calc_max: AtomicUsize,
}

/// An actix-web app on 127.0.0.1:0, in a thread with its own actix System.
///
/// Routes: `/page` (HTML), `/json`, `/echo` (method, content type, a header
/// and the body back as JSON), `/text`, `/calc/{op}[/{delay_ms}]` (POST
/// `{"a","b"}` → a JSON number, 400 on division by zero, 200 ms each), `/status/{code}/{tag}`,
/// `/limited/{tag}` (429 with `Retry-After: 1` the first time, then 200),
/// `/busy/first` (429 with `Retry-After: 2` the first time, then 200) and
/// `/busy/{tag}` (200),
/// `/big/{n}` and `/big-stream/{n}` (n bytes with and without
/// Content-Length), `/slow/{ms}`, `/redirect/{host}/{tag}` (302 to
/// `http://{host}:{port}/target/{tag}`), `/hops/{n}` (n redirects in a
/// row), `/target/{tag}`.
struct TestServer {
    port: u16,
    state: Arc<ServerState>,
}

impl TestServer {
    fn start() -> TestServer {
        let state = Arc::new(ServerState::default());
        let app_state = web::Data::from(state.clone());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(app_state.clone())
                        .default_service(web::to(route))
                })
                .workers(2)
                .disable_signals()
                .bind(("127.0.0.1", 0))
                .expect("bind 127.0.0.1:0");
                let port = server.addrs()[0].port();
                let running = server.run();
                tx.send(port).expect("test thread waits");
                running.await
            })
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server starts");
        TestServer { port, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn localhost_url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.port)
    }

    fn hits(&self, path: &str) -> Vec<Instant> {
        self.state
            .hits
            .lock()
            .expect("hits")
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    fn total_hits(&self) -> usize {
        self.state
            .hits
            .lock()
            .expect("hits")
            .values()
            .map(Vec::len)
            .sum()
    }
}

async fn route(req: HttpRequest, body: web::Bytes, state: web::Data<ServerState>) -> HttpResponse {
    let path = req.path().to_string();
    let hits_here = {
        let mut hits = state.hits.lock().expect("hits");
        let entry = hits.entry(path.clone()).or_default();
        entry.push(Instant::now());
        entry.len()
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let number = |i: usize| {
        segments
            .get(i)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    match segments[0] {
        "page" => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(
                "<!doctype html><html><head><title> Quarterly   report </title></head><body>\
             <h1 class=\"headline\">Sales <em>up</em></h1>\
             <ul id=\"regions\"><li>North</li><li>South</li><li>East</li></ul>\
             </body></html>",
            ),
        "json" => HttpResponse::Ok().json(json!({ "items": [1, 2, 3], "next": null })),
        "text" => HttpResponse::Ok()
            .content_type("text/plain")
            .body("just text"),
        "echo" => HttpResponse::Ok().json(json!({
            "method": req.method().as_str(),
            "content_type": header(&req, "content-type"),
            "token": header(&req, "x-token"),
            "body": String::from_utf8_lossy(&body),
        })),
        "calc" => {
            let delay_ms = segments.get(2).and_then(|s| s.parse().ok());
            calc(
                segments.get(1).copied().unwrap_or(""),
                delay_ms,
                &body,
                &state,
            )
            .await
        }
        "status" => HttpResponse::build(
            actix_web::http::StatusCode::from_u16(number(1) as u16).expect("status code"),
        )
        .body("status"),
        "limited" if hits_here == 1 => HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", "1"))
            .body("slow down"),
        "limited" => HttpResponse::Ok().json(json!({ "ok": true })),
        "busy" if segments.get(1) == Some(&"first") && hits_here == 1 => {
            HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", "2"))
                .body("slow down")
        }
        "busy" => HttpResponse::Ok().json(json!({ "ok": true })),
        "big" => HttpResponse::Ok().body(vec![b'x'; number(1) as usize]),
        "big-stream" => {
            let chunks = (number(1) as usize).div_ceil(100);
            let last = number(1) as usize - (chunks.saturating_sub(1)) * 100;
            let stream = futures::stream::iter((0..chunks).map(move |i| {
                let size = if i + 1 == chunks { last } else { 100 };
                Ok::<_, actix_web::Error>(web::Bytes::from(vec![b'y'; size]))
            }));
            HttpResponse::Ok().streaming(stream)
        }
        "slow" => {
            actix_rt::time::sleep(Duration::from_millis(number(1))).await;
            HttpResponse::Ok().body("finally")
        }
        "redirect" => {
            let port = req.app_config().local_addr().port();
            let location = format!("http://{}:{port}/target/{}", segments[1], segments[2]);
            HttpResponse::Found()
                .insert_header(("Location", location))
                .finish()
        }
        "hops" if number(1) > 0 => HttpResponse::Found()
            .insert_header(("Location", format!("/hops/{}", number(1) - 1)))
            .finish(),
        "hops" | "target" => HttpResponse::Ok().body(format!("reached {path}")),
        _ => HttpResponse::NotFound().finish(),
    }
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The four calculator services: 200 ms each unless the path names another
/// delay (`/calc/add/0`), so overlapping calls show.
async fn calc(op: &str, delay_ms: Option<u64>, body: &[u8], state: &ServerState) -> HttpResponse {
    let now = state.calc_now.fetch_add(1, Ordering::SeqCst) + 1;
    state.calc_max.fetch_max(now, Ordering::SeqCst);
    let delay = Duration::from_millis(delay_ms.unwrap_or(200));
    if !delay.is_zero() {
        actix_rt::time::sleep(delay).await;
    }
    state.calc_now.fetch_sub(1, Ordering::SeqCst);
    let Ok(input) = serde_json::from_slice::<Value>(body) else {
        return HttpResponse::BadRequest().json(json!({ "error": "body must be JSON" }));
    };
    let (Some(a), Some(b)) = (input["a"].as_f64(), input["b"].as_f64()) else {
        return HttpResponse::BadRequest().json(json!({ "error": "a and b must be numbers" }));
    };
    let result = match op {
        "add" => a + b,
        "subtract" => a - b,
        "multiply" => a * b,
        "divide" if b == 0.0 => {
            return HttpResponse::BadRequest().json(json!({ "error": "division by zero" }))
        }
        "divide" => a / b,
        _ => return HttpResponse::NotFound().finish(),
    };
    HttpResponse::Ok().json(result)
}

// ---------------------------------------------------------------- helpers

/// A job envelope with its own `max_attempts` and `timeout_ms`.
fn job_with(kind: &str, id: &str, payload: Value, max_attempts: u32, timeout_ms: u64) -> String {
    let mut envelope: Value = serde_json::from_str(&job(kind, Some(id), payload)).expect("json");
    envelope["max_attempts"] = json!(max_attempts);
    envelope["timeout_ms"] = json!(timeout_ms);
    envelope.to_string()
}

/// Pushes `messages` to `default` in a fresh space and starts a worker with
/// `extra` settings; returns both once every job has its row.
fn run_all(messages: &[String], extra: &[(&str, &str)]) -> (TestEnv, ConveyorProcess) {
    let env = TestEnv::new();
    env.push("default", messages);
    let worker = env.worker(extra);
    env.wait_for_rows(messages.len() as i64, WAIT);
    (env, worker)
}

/// [`run_all`] with the one job `message`, whose id is `id`; its row too.
fn run_one(
    message: String,
    id: &str,
    extra: &[(&str, &str)],
) -> (TestEnv, ConveyorProcess, ResultRow) {
    let (env, worker) = run_all(&[message], extra);
    let row = env.row(id);
    (env, worker, row)
}

fn error_of(row: &ResultRow) -> &str {
    row.error.as_deref().unwrap_or("")
}

fn calculator_requests(server: &TestServer, a: f64, b: f64) -> Vec<Value> {
    calculator_requests_with_delay(server, a, b, None)
}

fn calculator_requests_with_delay(
    server: &TestServer,
    a: f64,
    b: f64,
    delay_ms: Option<u64>,
) -> Vec<Value> {
    let suffix = delay_ms.map_or(String::new(), |ms| format!("/{ms}"));
    ["add", "subtract", "multiply", "divide"]
        .into_iter()
        .map(|op| {
            json!({
                "name": op,
                "url": server.url(&format!("/calc/{op}{suffix}")),
                "method": "POST",
                "body": { "a": a, "b": b },
            })
        })
        .collect()
}

// ---------------------------------------------------------------- http

/// Title and CSS selections come from the parsed HTML, `json` is the parsed
/// body, and method, headers and a JSON body reach the server.
#[test]
fn http_extracts_title_json_and_selections() {
    let server = TestServer::start();
    let (env, _worker) = run_all(
        &[
            job(
                "http",
                Some("page"),
                json!({
                    "url": server.url("/page"),
                    "extract": ["title"],
                    "select": { "regions": "#regions li", "headline": "h1.headline", "none": "table" },
                }),
            ),
            job(
                "http",
                Some("json"),
                json!({ "url": server.url("/json"), "extract": ["json"] }),
            ),
            job(
                "http",
                Some("echo"),
                json!({
                    "url": server.url("/echo"),
                    "method": "put",
                    "headers": { "X-Token": "t-123" },
                    "body": { "n": 1 },
                    "extract": ["json"],
                }),
            ),
            job(
                "http",
                Some("text-body"),
                json!({
                    "url": server.url("/echo"),
                    "method": "POST",
                    "headers": { "Content-Type": "text/csv" },
                    "body": "a,b\n1,2",
                    "extract": ["json"],
                }),
            ),
            job(
                "http",
                Some("not-json"),
                json!({ "url": server.url("/text"), "extract": ["json"] }),
            ),
        ],
        &[ALLOW_PRIVATE],
    );

    let page = env.row("page");
    assert_eq!(page.status, "succeeded", "{page:?}");
    let output = page.output.expect("output");
    assert_eq!(output["status"], 200);
    assert_eq!(output["title"], "Quarterly report");
    assert_eq!(
        output["selected"],
        json!({ "regions": ["North", "South", "East"], "headline": ["Sales up"], "none": [] })
    );
    assert!(output["bytes"].as_u64().expect("bytes") > 100, "{output}");
    assert!(output["elapsed_ms"].is_u64(), "{output}");
    assert!(output.get("json").is_none(), "{output}");

    let parsed = env.row("json").output.expect("output");
    assert_eq!(parsed["json"], json!({ "items": [1, 2, 3], "next": null }));
    assert!(parsed.get("title").is_none(), "{parsed}");

    let echo = env.row("echo").output.expect("output");
    assert_eq!(
        echo["json"],
        json!({
            "method": "PUT",
            "content_type": "application/json",
            "token": "t-123",
            "body": "{\"n\":1}",
        })
    );
    let text = env.row("text-body").output.expect("output");
    assert_eq!(text["json"]["content_type"], "text/csv");
    assert_eq!(text["json"]["body"], "a,b\n1,2");

    let not_json = env.row("not-json");
    assert_eq!((not_json.status.as_str(), not_json.attempts), ("dead", 1));
    assert!(error_of(&not_json).contains("not JSON"), "{not_json:?}");
}

/// 500 is retried with backoff until max_attempts: exactly that many requests.
#[test]
fn server_errors_are_retried_until_dead() {
    let server = TestServer::start();
    let (_env, _worker, row) = run_one(
        job_with(
            "http",
            "five-hundred",
            json!({ "url": server.url("/status/500/a") }),
            3,
            10_000,
        ),
        "five-hundred",
        &[ALLOW_PRIVATE],
    );
    assert_eq!((row.status.as_str(), row.attempts), ("dead", 3), "{row:?}");
    assert!(error_of(&row).contains("HTTP 500"), "{row:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.hits("/status/500/a").len(), 3);
}

/// 429 with `Retry-After: 1` is tried again no sooner than a second later,
/// and the 429 costs no attempt.
#[test]
fn too_many_requests_is_retried_after_retry_after() {
    let server = TestServer::start();
    let (_env, _worker, row) = run_one(
        job_with(
            "http",
            "limited",
            json!({ "url": server.url("/limited/x"), "extract": ["json"] }),
            3,
            10_000,
        ),
        "limited",
        // A rate limit is not a failure: no backoff applies, attempts stay 1.
        &[ALLOW_PRIVATE, ("CONVEYOR__RETRY__MAX_MS", "50")],
    );
    assert_eq!(
        (row.status.as_str(), row.attempts),
        ("succeeded", 1),
        "{row:?}"
    );
    assert_eq!(row.output.expect("output")["json"], json!({ "ok": true }));
    let hits = server.hits("/limited/x");
    assert_eq!(hits.len(), 2);
    let gap = hits[1] - hits[0];
    assert!(gap >= Duration::from_millis(990), "retried after {gap:?}");
}

/// A 429 holds back the limiter of its kind for every worker: jobs pushed
/// after it start on neither worker before `Retry-After` has passed, and the
/// job that met the 429 succeeds with one attempt counted.
#[test]
fn too_many_requests_hold_back_the_limiter_on_every_worker() {
    let server = TestServer::start();
    let env = TestEnv::new();
    let config =
        config_file("[[limiters]]\nname = \"partner\"\nkind = \"http\"\nconcurrency = 8\n");
    let _a = env.worker_with_config(&config, &[ALLOW_PRIVATE]);
    let _b = env.worker_with_config(&config, &[ALLOW_PRIVATE]);
    let busy = |tag: &str| {
        job_with(
            "http",
            tag,
            json!({ "url": server.url(&format!("/busy/{tag}")) }),
            3,
            10_000,
        )
    };
    env.push("default", &[busy("first")]);
    wait_until("the 429 and its hold", WAIT, || {
        env.leftover_keys()
            .iter()
            .any(|(key, _)| key.contains("partner") && key.ends_with(":held"))
    });
    let path = config.path().to_str().expect("utf-8 path");
    let (code, out) = env.conveyor_output(&["--config", path, "limiters", "--json"], &[]);
    assert_eq!(code, 0, "{out}");
    let listed: Value = serde_json::from_str(&out).expect("JSON list");
    let held = listed[0]["held_for_ms"].as_u64();
    assert!(
        held.is_some_and(|ms| ms > 0 && ms <= 2000),
        "the hold is shown: {out}"
    );
    let later: Vec<String> = (0..6).map(|i| busy(&format!("later-{i}"))).collect();
    env.push("default", &later);
    env.wait_for_rows(7, WAIT);
    for row in env.rows() {
        assert_eq!(
            (row.status.as_str(), row.attempts),
            ("succeeded", 1),
            "{row:?}"
        );
    }
    let refused = server.hits("/busy/first");
    assert_eq!(refused.len(), 2, "one 429, one success");
    let hold_ends = refused[0] + Duration::from_millis(1990);
    assert!(
        refused[1] >= hold_ends,
        "tried again {:?} after the 429",
        refused[1] - refused[0]
    );
    for i in 0..6 {
        let hits = server.hits(&format!("/busy/later-{i}"));
        assert_eq!(hits.len(), 1);
        assert!(
            hits[0] >= hold_ends,
            "later-{i} started {:?} after the 429, inside the hold",
            hits[0] - refused[0]
        );
    }
}

/// 404 will not pass: dead after one attempt, one request.
#[test]
fn client_errors_are_dead_after_one_attempt() {
    let server = TestServer::start();
    let (_env, _worker, row) = run_one(
        job_with(
            "http",
            "missing",
            json!({ "url": server.url("/status/404/b?secret=s3cret") }),
            5,
            10_000,
        ),
        "missing",
        &[ALLOW_PRIVATE],
    );
    assert_eq!((row.status.as_str(), row.attempts), ("dead", 1), "{row:?}");
    assert!(error_of(&row).contains("HTTP 404 Not Found"), "{row:?}");
    assert!(!error_of(&row).contains("s3cret"), "query leaked: {row:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.hits("/status/404/b").len(), 1);
}

/// Bodies over kinds.http.max_body_bytes are dead, whether announced by
/// Content-Length or only found out while reading a chunked body.
#[test]
fn bodies_over_the_cap_are_dead() {
    let server = TestServer::start();
    let fetch =
        |id: &str, path: &str| job_with("http", id, json!({ "url": server.url(path) }), 3, 10_000);
    let (env, _worker) = run_all(
        &[
            fetch("announced", "/big/5000"),
            fetch("streamed", "/big-stream/5000"),
            fetch("small", "/big-stream/800"),
            fetch("exact", "/big/1000"),
            job_with(
                "gather",
                "gathered",
                json!({ "requests": [{ "name": "big", "url": server.url("/big-stream/1001") }] }),
                3,
                10_000,
            ),
        ],
        &[
            ALLOW_PRIVATE,
            ("CONVEYOR__KINDS__HTTP__MAX_BODY_BYTES", "1000"),
        ],
    );
    for id in ["announced", "streamed", "gathered"] {
        let row = env.row(id);
        assert_eq!((row.status.as_str(), row.attempts), ("dead", 1), "{row:?}");
        assert!(
            error_of(&row).contains("response body over kinds.http.max_body_bytes"),
            "{row:?}"
        );
    }
    assert_eq!(env.row("small").output.expect("output")["bytes"], 800);
    assert_eq!(env.row("exact").output.expect("output")["bytes"], 1000);
}

/// An endpoint slower than the job's timeout_ms: every attempt times out.
#[test]
fn slow_endpoints_time_out_at_the_job_deadline() {
    let server = TestServer::start();
    let env = TestEnv::new();
    env.push(
        "default",
        &[
            job_with(
                "http",
                "slow",
                json!({ "url": server.url("/slow/20000") }),
                2,
                300,
            ),
            job_with(
                "gather",
                "slow-gather",
                json!({ "requests": [
                    { "name": "fast", "url": server.url("/json") },
                    { "name": "slow", "url": server.url("/slow/20001") },
                ] }),
                1,
                300,
            ),
        ],
    );
    let begun = Instant::now();
    let _worker = env.worker(&[ALLOW_PRIVATE]);
    env.wait_for_rows(2, WAIT);
    assert!(
        begun.elapsed() < Duration::from_secs(15),
        "took {:?}",
        begun.elapsed()
    );
    let row = env.row("slow");
    assert_eq!((row.status.as_str(), row.attempts), ("dead", 2), "{row:?}");
    assert!(error_of(&row).contains("timed out"), "{row:?}");
    assert_eq!(server.hits("/slow/20000").len(), 2);
    let gathered = env.row("slow-gather");
    assert_eq!(gathered.status, "dead", "{gathered:?}");
    assert!(error_of(&gathered).contains("timed out"), "{gathered:?}");
}

// ---------------------------------------------------------------- gather

/// One job calls four services at once and stores the four results.
#[test]
fn gather_calls_four_services_at_once() {
    let server = TestServer::start();
    let (_env, _worker, row) = run_one(
        job(
            "gather",
            Some("calc"),
            // A second each: the four overlap even on a busy machine.
            json!({ "requests": calculator_requests_with_delay(&server, 7.0, 2.0, Some(1000)) }),
        ),
        "calc",
        &[ALLOW_PRIVATE],
    );
    assert_eq!(
        (row.status.as_str(), row.attempts),
        ("succeeded", 1),
        "{row:?}"
    );
    assert_eq!(
        row.output.expect("output"),
        json!({
            "add": { "status": 200, "body": 9.0 },
            "subtract": { "status": 200, "body": 5.0 },
            "multiply": { "status": 200, "body": 14.0 },
            "divide": { "status": 200, "body": 3.5 },
        })
    );
    assert_eq!(
        server.state.calc_max.load(Ordering::SeqCst),
        4,
        "the four requests overlapped"
    );
}

/// With fail_fast (the default) a failed request fails the job; with
/// fail_fast false it is recorded and the job succeeds.
#[test]
fn gather_failures_fail_fast_or_are_recorded() {
    let server = TestServer::start();
    let closed_port = support::free_port();
    let mut with_errors = calculator_requests(&server, 1.0, 0.0);
    with_errors.push(json!({ "name": "text", "url": server.url("/text") }));
    with_errors.push(json!({
        "name": "down",
        "url": format!("http://127.0.0.1:{closed_port}/"),
    }));
    with_errors.push(json!({ "name": "broken", "url": server.url("/status/503/g") }));
    let (env, _worker) = run_all(
        &[
            job_with(
                "gather",
                "fast-permanent",
                json!({ "requests": calculator_requests(&server, 1.0, 0.0) }),
                3,
                10_000,
            ),
            job_with(
                "gather",
                "fast-retryable",
                json!({ "requests": [
                { "name": "ok", "url": server.url("/json") },
                { "name": "broken", "url": server.url("/status/503/f") },
            ], "fail_fast": true }),
                3,
                10_000,
            ),
            job_with(
                "gather",
                "recorded",
                json!({ "requests": with_errors, "fail_fast": false }),
                3,
                10_000,
            ),
        ],
        &[ALLOW_PRIVATE],
    );

    let permanent = env.row("fast-permanent");
    assert_eq!(
        (permanent.status.as_str(), permanent.attempts),
        ("dead", 1),
        "{permanent:?}"
    );
    assert!(
        error_of(&permanent).starts_with("gather request \"divide\" failed"),
        "{permanent:?}"
    );
    assert!(error_of(&permanent).contains("HTTP 400"), "{permanent:?}");

    let retryable = env.row("fast-retryable");
    assert_eq!(
        (retryable.status.as_str(), retryable.attempts),
        ("dead", 3),
        "{retryable:?}"
    );
    assert!(error_of(&retryable).contains("HTTP 503"), "{retryable:?}");
    assert_eq!(server.hits("/status/503/f").len(), 3);

    let recorded = env.row("recorded");
    assert_eq!(
        (recorded.status.as_str(), recorded.attempts),
        ("succeeded", 1),
        "{recorded:?}"
    );
    let output = recorded.output.expect("output");
    assert_eq!(output["add"], json!({ "status": 200, "body": 1.0 }));
    assert_eq!(output["multiply"], json!({ "status": 200, "body": 0.0 }));
    assert_eq!(
        output["text"],
        json!({ "status": 200, "body": "just text" })
    );
    assert_eq!(output["divide"]["status"], 400, "{output}");
    assert!(output["divide"]["error"]
        .as_str()
        .expect("error")
        .contains("HTTP 400"));
    assert_eq!(output["broken"]["status"], 503, "{output}");
    assert!(output["down"].get("status").is_none(), "{output}");
    assert!(
        output["down"]["error"]
            .as_str()
            .expect("error")
            .contains("connect"),
        "{output}"
    );
    assert_eq!(
        server.hits("/status/503/g").len(),
        1,
        "recorded, not retried"
    );
}

// ---------------------------------------------------------------- the address guard

/// With the default settings the local server is out of reach: by IP
/// literal, by a name that resolves to loopback, and through gather. It
/// never sees a request.
#[test]
fn private_addresses_are_refused_by_default() {
    let server = TestServer::start();
    let (env, _worker) = run_all(
        &[
            job(
                "http",
                Some("literal"),
                json!({ "url": server.url("/target/a") }),
            ),
            job(
                "http",
                Some("name"),
                json!({ "url": server.localhost_url("/target/b") }),
            ),
            job(
                "http",
                Some("metadata"),
                json!({ "url": "http://169.254.169.254/latest/meta-data/" }),
            ),
            job(
                "gather",
                Some("gathered"),
                json!({ "requests": [{ "name": "x", "url": server.url("/target/c") }] }),
            ),
        ],
        &[],
    );
    for (id, address) in [
        ("literal", "127.0.0.1"),
        ("name", "for host localhost"),
        ("metadata", "169.254.169.254"),
        ("gathered", "127.0.0.1"),
    ] {
        let row = env.row(id);
        assert_eq!((row.status.as_str(), row.attempts), ("dead", 1), "{row:?}");
        let error = error_of(&row);
        assert!(error.contains("refused to connect to"), "{row:?}");
        assert!(error.contains(address), "{row:?}");
        assert!(error.contains("kinds.http.allow_private = true"), "{row:?}");
        assert!(error.contains("kinds.http.allow_hosts"), "{row:?}");
    }
    assert!(error_of(&env.row("metadata")).contains("cloud metadata"));
    assert_eq!(server.total_hits(), 0);
}

/// `allow_hosts` opens a name, not its addresses: a redirect from the
/// allowed `localhost` to the literal 127.0.0.1 is refused at the hop, and
/// the target never sees a request.
#[test]
fn allow_hosts_admits_a_name_and_redirects_are_checked() {
    let server = TestServer::start();
    let (env, _worker) = run_all(
        &[
            job(
                "http",
                Some("allowed"),
                json!({ "url": server.localhost_url("/target/ok") }),
            ),
            job(
                "http",
                Some("redirect-to-ip"),
                json!({ "url": server.localhost_url("/redirect/127.0.0.1/r1") }),
            ),
            job(
                "http",
                Some("redirect-to-name"),
                json!({ "url": server.localhost_url("/redirect/localhost/r2") }),
            ),
            job(
                "http",
                Some("literal"),
                json!({ "url": server.url("/target/lit") }),
            ),
        ],
        &[("CONVEYOR__KINDS__HTTP__ALLOW_HOSTS", "localhost")],
    );

    let allowed = env.row("allowed");
    assert_eq!(allowed.status, "succeeded", "{allowed:?}");
    assert_eq!(server.hits("/target/ok").len(), 1);

    let refused = env.row("redirect-to-ip");
    assert_eq!(
        (refused.status.as_str(), refused.attempts),
        ("dead", 1),
        "{refused:?}"
    );
    assert!(
        error_of(&refused).contains(&format!(
            "redirected to http://127.0.0.1:{}/target/r1: refused to connect to 127.0.0.1: \
             it is a loopback address",
            server.port
        )),
        "{refused:?}"
    );
    assert_eq!(server.hits("/redirect/127.0.0.1/r1").len(), 1);
    assert_eq!(
        server.hits("/target/r1").len(),
        0,
        "the redirect was followed"
    );

    let followed = env.row("redirect-to-name");
    assert_eq!(followed.status, "succeeded", "{followed:?}");
    assert_eq!(server.hits("/target/r2").len(), 1);

    let literal = env.row("literal");
    assert_eq!(
        (literal.status.as_str(), literal.attempts),
        ("dead", 1),
        "{literal:?}"
    );
    assert_eq!(server.hits("/target/lit").len(), 0);
}

/// Redirects are followed up to kinds.http.max_redirects; one more is dead.
#[test]
fn redirects_are_limited() {
    let server = TestServer::start();
    let (env, _worker) = run_all(
        &[
            job("http", Some("two"), json!({ "url": server.url("/hops/2") })),
            job(
                "http",
                Some("three"),
                json!({ "url": server.url("/hops/3") }),
            ),
        ],
        &[ALLOW_PRIVATE, ("CONVEYOR__KINDS__HTTP__MAX_REDIRECTS", "2")],
    );
    let two = env.row("two");
    assert_eq!(two.status, "succeeded", "{two:?}");
    assert_eq!(server.hits("/hops/0").len(), 1);
    let three = env.row("three");
    assert_eq!(
        (three.status.as_str(), three.attempts),
        ("dead", 1),
        "{three:?}"
    );
    assert!(
        error_of(&three).contains("kinds.http.max_redirects (2)"),
        "{three:?}"
    );
}

// ---------------------------------------------------------------- throughput

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Throughput of 5,000 `gather` jobs of four requests each against the local
/// server (20,000 requests, loopback only). Not run by default:
///
/// ```text
/// CARGO_TARGET_DIR=... cargo test --release --test http_kinds gather_throughput -- --ignored --nocapture
/// ```
///
/// `BENCH_JOBS` (5000), `BENCH_PROCESSORS` (4), `BENCH_CONCURRENCY` (50),
/// `BENCH_DELAY_MS` (0, the services' latency) and `BENCH_TAIL_EVERY` (0:
/// every n-th job's services take `BENCH_TAIL_MS`, 1000, instead) change
/// the run.
#[test]
#[ignore]
fn gather_throughput() {
    let jobs: usize = env_or("BENCH_JOBS", 5000);
    let processors: usize = env_or("BENCH_PROCESSORS", 4);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 50);
    let delay_ms: u64 = env_or("BENCH_DELAY_MS", 0);
    let tail_every: usize = env_or("BENCH_TAIL_EVERY", 0);
    let tail_ms: u64 = env_or("BENCH_TAIL_MS", 1000);
    let server = TestServer::start();
    let env = TestEnv::new();
    let messages: Vec<String> = (0..jobs)
        .map(|i| {
            let slow = tail_every > 0 && i % tail_every == tail_every - 1;
            let delay = if slow { tail_ms } else { delay_ms };
            let requests = calculator_requests_with_delay(&server, i as f64, 4.0, Some(delay));
            job(
                "gather",
                Some(&format!("g-{i:05}")),
                json!({ "requests": requests }),
            )
        })
        .collect();
    env.push("default", &messages);
    let processors_text = processors.to_string();
    let concurrency_text = concurrency.to_string();
    let begun = Instant::now();
    let mut worker = env.worker(&[
        ALLOW_PRIVATE,
        ("CONVEYOR__PROCESSORS__COUNT", &processors_text),
        ("CONVEYOR__PROCESSORS__CONCURRENCY", &concurrency_text),
        ("CONVEYOR__METRICS__LOG_INTERVAL_MS", "1000"),
        ("RUST_LOG", "warn"),
    ]);
    support::wait_until("every gather row", Duration::from_secs(600), || {
        env.count_rows() >= jobs as i64
    });
    let wall = begun.elapsed();
    let span_ms: Vec<(i64, i64)> = env.query(
        "SELECT COUNT(*), CAST((UNIX_TIMESTAMP(MAX(finished_at)) - UNIX_TIMESTAMP(MIN(started_at))) * 1000 AS SIGNED)
         FROM job_results WHERE status = 'succeeded'",
    );
    let (succeeded, span_ms) = span_ms[0];
    assert_eq!(succeeded, jobs as i64, "{}", worker.log());
    let sample = env.row("g-00010");
    assert_eq!(sample.output.expect("output")["divide"]["body"], json!(2.5));
    assert_eq!(server.total_hits(), jobs * 4);
    let tail = if tail_every > 0 {
        format!(" (every {tail_every}th job: {tail_ms} ms)")
    } else {
        String::new()
    };
    println!(
        "gather throughput: {jobs} jobs x 4 requests, processors {processors}x{concurrency}, \
         service delay {delay_ms} ms{tail}: {:.0} jobs/s ({:.0} requests/s) first start to last finish \
         over {span_ms} ms; {:.0} jobs/s wall clock including worker start-up ({:.2} s); \
         most calculator requests at once: {}",
        jobs as f64 * 1000.0 / span_ms.max(1) as f64,
        jobs as f64 * 4000.0 / span_ms.max(1) as f64,
        jobs as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
        server.state.calc_max.load(Ordering::SeqCst),
    );
    assert_eq!(worker.stop(), 0);
}
