//! The API against its own OpenAPI document: `GET /openapi.json` is the
//! checked-in `docs/openapi.json`, and Schemathesis (installed by
//! `scripts/test.sh`) generates requests from it — valid and invalid — against
//! a real worker with real Redis and MariaDB: no 5xx, every status, header
//! and body as documented, every 4xx JSON naming the field, and the worker
//! still up and ready afterwards.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::http::Http;
use support::TestEnv;

/// The Schemathesis CLI: `CONVEYOR_SCHEMATHESIS`, or the one
/// `scripts/install-schemathesis.sh` puts under `target/tools/`.
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("CONVEYOR_SCHEMATHESIS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/schemathesis/bin/st"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: run bash scripts/install-schemathesis.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A worker serving the API, with a schedule and a limiter configured so
/// their routes have something to show.
fn worker_with_api(env: &TestEnv) -> (support::ConveyorProcess, Http) {
    let bind = format!("127.0.0.1:{}", support::free_port());
    let config = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("config file");
    std::fs::write(
        config.path(),
        r#"
[[schedules]]
name = "nightly"
cron = "0 3 * * *"
kind = "noop"

[[limiters]]
name = "slow"
kind = "sleep"
concurrency = 2
"#,
    )
    .expect("config written");
    let config_path = config.path().to_string_lossy().into_owned();
    let worker = env.conveyor(
        &["--config", &config_path, "worker"],
        &[("CONVEYOR__API__BIND", bind.as_str())],
    );
    worker.wait_for_log("api listening", Duration::from_secs(60));
    worker.wait_for_log("schema ready", Duration::from_secs(60));
    // The config is read at start; the file may go.
    drop(config);
    (worker, Http::new(&format!("http://{bind}")))
}

/// `GET /openapi.json` is `docs/openapi.json`; a path the API has, asked
/// with a method it does not take, is a JSON 405 whose `Allow` lists the
/// methods it takes (unknown paths stay 404).
#[test]
fn the_served_document_is_the_checked_in_one_and_wrong_methods_are_405() {
    let env = TestEnv::new();
    let (_worker, http) = worker_with_api(&env);
    let served = http.get("/openapi.json");
    assert_eq!(served.status, 200);
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
            .expect("docs/openapi.json");
    assert!(
        served.text == checked_in,
        "served /openapi.json differs from docs/openapi.json: \
         CONVEYOR_WRITE_OPENAPI=1 cargo test --lib openapi"
    );
    for (method, path, allow) in [
        ("PATCH", "/jobs/abc", "GET, DELETE"),
        ("GET", "/jobs", "POST"),
        ("DELETE", "/limiters/slow", "PUT"),
        ("PUT", "/queues/default/pause", "POST"),
    ] {
        let response = http.request(method, path, "");
        assert_eq!(response.status, 405, "{method} {path}: {}", response.text);
        assert_eq!(
            response.header("allow").as_deref(),
            Some(allow),
            "{method} {path}"
        );
        assert_eq!(response.json()["field"], serde_json::Value::Null);
        assert!(response.json()["error"].as_str().is_some());
    }
    let unknown = http.request("PATCH", "/no/such/path", "");
    assert_eq!(unknown.status, 404, "{}", unknown.text);
}

/// Generated requests, valid and invalid, on every operation. Bounded by
/// `CONVEYOR_SCHEMATHESIS_EXAMPLES` cases per operation (default 40) and
/// `CONVEYOR_SCHEMATHESIS_SECONDS` in all (default 90).
#[test]
fn generated_requests_get_documented_answers_and_the_worker_stays_up() {
    let env = TestEnv::new();
    let (mut worker, http) = worker_with_api(&env);
    let hooks = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis");
    let report = tempfile::tempdir().expect("report dir");
    let examples = std::env::var("CONVEYOR_SCHEMATHESIS_EXAMPLES").unwrap_or("40".into());
    let seconds = std::env::var("CONVEYOR_SCHEMATHESIS_SECONDS").unwrap_or("90".into());
    let output = Command::new(schemathesis())
        .args(["run", &format!("{}/openapi.json", http.base)])
        .args(["--checks", "all"])
        // positive_data_acceptance: valid-looking data the schema cannot
        // rule out is refused on purpose (a queue not in queues.names, a
        // rate that is not "N/DURATION", a job over limits.max_job_bytes).
        // use_after_free: DELETE /jobs/{id} cancels a job, it does not
        // delete it; the job stays readable with status `cancelled`.
        .args([
            "--exclude-checks",
            "positive_data_acceptance,use_after_free",
        ])
        .args(["--max-examples", &examples, "--max-time", &seconds])
        // One worker: Python 3.11's parser is not safe in several threads at
        // once, which Schemathesis' generator runs into with more.
        .args([
            "--seed",
            "17",
            "--workers",
            "1",
            "--generation-database",
            "none",
        ])
        .args(["--request-timeout", "30", "--no-color"])
        .arg("--report-dir")
        .arg(report.path())
        .env("SCHEMATHESIS_HOOKS", "conveyor_checks")
        .env("PYTHONPATH", &hooks)
        .env("HOME", report.path())
        // Schemathesis keeps state in its working directory: not ours.
        .current_dir(report.path())
        .output()
        .expect("schemathesis runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{text}");
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{text}"
    );
    assert!(worker.is_running(), "the worker died:\n{}", worker.log());
    assert_eq!(http.get("/health").status, 200);
    assert_eq!(http.get("/ready").status, 200);
    assert!(!worker.log().contains("panicked"), "{}", worker.log());
}
