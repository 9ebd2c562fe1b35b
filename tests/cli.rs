//! The `conveyor` binary's commands against real redis-server and mariadbd:
//! enqueue (one job and a file), stats, dead list/show/retry/purge, api,
//! exit codes and redacted errors.

mod support;

use std::io::Write as _;
use std::time::Duration;

use serde_json::{json, Value};
use support::http::Http;
use support::{job, TestEnv};

const WAIT: Duration = Duration::from_secs(90);

fn run(env: &TestEnv, args: &[&str]) -> (i32, String) {
    env.conveyor_output(args, &[("RUST_LOG", "warn")])
}

/// The JSON document on the last line of a command's output.
fn last_json(output: &str) -> Value {
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with(['{', '[']))
        .unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("no JSON ({e}) in:\n{output}"))
}

fn stats(env: &TestEnv) -> Value {
    let (code, output) = run(env, &["stats", "--json"]);
    assert_eq!(code, 0, "{output}");
    last_json(&output)
}

/// One job, a file of jobs, a refused file that pushes nothing; then stats
/// shows the depths, the worker and its lease.
#[test]
fn enqueue_one_and_a_file_then_stats() {
    let env = TestEnv::new();
    let (code, output) = run(
        &env,
        &["enqueue", "--kind", "noop", "--id", "one", "--payload", "1"],
    );
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        last_json(&output),
        json!({ "id": "one", "queue": "default" })
    );
    let mut file = tempfile::NamedTempFile::new().expect("file");
    for i in 0..2500 {
        writeln!(file, "{}", job("noop", Some(&format!("f-{i}")), json!(i))).expect("write");
        if i == 10 {
            writeln!(file).expect("blank lines are skipped");
        }
    }
    file.flush().expect("flush");
    let path = file.path().to_str().expect("utf8 path");
    let (code, output) = run(&env, &["enqueue", "--file", path]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(last_json(&output)["enqueued"], 2500, "{output}");
    assert_eq!(stats(&env)["default"]["pending"], 2501);

    let mut bad = tempfile::NamedTempFile::new().expect("file");
    writeln!(bad, r#"{{"kind":"noop"}}"#).expect("write");
    writeln!(bad, r#"{{"kind":"noop","id":"ok-2"}}"#).expect("write");
    writeln!(bad, r#"{{"payload":{{"no":"kind"}}}}"#).expect("write");
    let bad_path = bad.path().to_str().expect("utf8 path");
    let (code, output) = run(&env, &["enqueue", "--file", bad_path]);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains(&format!("{bad_path}:3:")), "{output}");
    assert!(output.contains("field kind"), "{output}");
    assert_eq!(
        stats(&env)["default"]["pending"],
        2501,
        "nothing of a bad file is pushed"
    );

    let mut worker = env.worker(&[]);
    env.wait_for_rows(2501, WAIT);
    support::wait_until("stats to show the queue drained", WAIT, || {
        stats(&env)["default"]["running"] == 0 && stats(&env)["default"]["pending"] == 0
    });
    let now = stats(&env);
    let workers = now["default"]["workers"]
        .as_array()
        .expect("workers")
        .clone();
    assert_eq!(workers.len(), 1, "{now}");
    assert_eq!(workers[0]["alive"], true);
    assert!(workers[0]["id"]
        .as_str()
        .is_some_and(|w| w.contains(&format!("-{}-", worker.pid()))));
    assert!(workers[0]["lease_deadline_ms"].as_i64() > Some(conveyor::job::now_ms()));
    assert_eq!(now["default"]["dead"], 0);
    let (code, table) = run(&env, &["stats"]);
    assert_eq!(code, 0, "{table}");
    assert!(
        table.contains("workers") && table.contains("left"),
        "{table}"
    );
    assert_eq!(worker.stop(), 0);
}

/// Jobs of a kind the worker lacks die; once a worker with that kind runs,
/// `dead retry` brings them back (id-less ones under the id they were given)
/// and they succeed, overwriting their dead rows.
#[test]
fn dead_retry_brings_jobs_back_once_their_kind_exists() {
    let env = TestEnv::new();
    let text = json!({ "text": "to be or not to be" });
    let (code, output) = run(
        &env,
        &[
            "enqueue",
            "--kind",
            "word_count",
            "--id",
            "wc-1",
            "--payload",
            &text.to_string(),
        ],
    );
    assert_eq!(code, 0, "{output}");
    env.push("default", &[job("word_count", None, text.clone())]);
    env.push("default", &[job("noop", Some("fine"), json!(1))]);
    let mut worker = env.worker(&[]);
    env.wait_for_rows(3, WAIT);
    assert_eq!(worker.stop(), 0);

    let (code, output) = run(&env, &["dead", "list", "--json"]);
    assert_eq!(code, 0, "{output}");
    let dead = last_json(&output);
    assert_eq!(dead.as_array().map(Vec::len), Some(2), "{dead}");
    assert!(
        dead[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown kind")),
        "{dead}"
    );
    let (code, output) = run(&env, &["dead", "show", "wc-1"]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("unknown kind") && output.contains("to be or not"),
        "{output}"
    );
    assert_eq!(run(&env, &["dead", "show", "no-such-job"]).0, 1);
    assert_eq!(
        run(&env, &["dead", "list", "--kind", "noop", "--json"])
            .1
            .trim(),
        "[]"
    );
    assert_eq!(
        run(&env, &["dead", "retry"]).0,
        2,
        "retry without a selection is refused"
    );

    let (code, output) = run(&env, &["dead", "retry", "--kind", "word_count"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("wc-1\tdefault"), "{output}");
    assert!(output.contains("retried 2 dead jobs"), "{output}");
    let custom = support::example_binary("custom_kind");
    let _custom_worker = env.program(&custom, &[], &[]);
    support::wait_until("retried jobs to succeed", WAIT, || {
        env.rows().iter().all(|r| r.status == "succeeded")
    });
    let rows = env.rows();
    assert_eq!(
        rows.len(),
        3,
        "the retries overwrote their dead rows: {rows:?}"
    );
    for row in rows.iter().filter(|r| r.kind == "word_count") {
        assert_eq!(
            row.output,
            Some(json!({ "words": 6, "distinct": 4 })),
            "{row:?}"
        );
        assert_eq!(row.attempts, 1);
    }
    assert_eq!(
        run(&env, &["dead", "retry", "--all"]).0,
        1,
        "nothing is dead any more"
    );
}

/// Malformed messages are listed with --letters and purged; purge needs a selection.
#[test]
fn dead_letters_are_listed_and_purged() {
    let env = TestEnv::new();
    env.push(
        "default",
        &["not json at all".to_string(), "[1]".to_string()],
    );
    env.push(
        "default",
        &[job("fail", Some("doomed"), json!({ "message": "x" }))],
    );
    let mut worker = env.worker(&[("CONVEYOR__RETRY__MAX_ATTEMPTS", "1")]);
    env.wait_for_rows(1, WAIT);
    support::wait_until("two dead letters", WAIT, || env.dead_letters().len() == 2);
    assert_eq!(worker.stop(), 0);

    let (code, output) = run(&env, &["dead", "list", "--letters", "--json"]);
    assert_eq!(code, 0, "{output}");
    let letters = last_json(&output);
    assert_eq!(letters.as_array().map(Vec::len), Some(2), "{letters}");
    assert_eq!(letters[0]["raw"], "not json at all");
    let first = letters[0]["id"].to_string();
    let (code, output) = run(&env, &["dead", "show", "--letters", &first]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("not a valid job envelope"), "{output}");
    assert_eq!(run(&env, &["dead", "purge", "--letters"]).0, 2);
    let (code, output) = run(&env, &["dead", "purge", "--letters", "--older-than", "1h"]);
    assert_eq!(code, 1, "nothing that old: {output}");
    let (code, output) = run(&env, &["dead", "purge", "--letters", "--all"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("purged 2 dead letters"), "{output}");
    assert!(env.dead_letters().is_empty());
    let (code, output) = run(&env, &["dead", "purge", "doomed"]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(env.count_rows(), 0);
}

/// Unreachable servers are named in errors, passwords masked, exit code 2.
#[test]
fn unreachable_servers_are_named_with_the_password_redacted() {
    let env = TestEnv::new();
    let port = support::free_port();
    let mysql = format!("mysql://conveyor:hunter2@127.0.0.1:{port}/nothing");
    let (code, output) =
        env.conveyor_output(&["dead", "list"], &[("CONVEYOR__MYSQL__URL", &mysql)]);
    assert_eq!(code, 2, "{output}");
    assert!(
        output.contains(&format!("mysql://conveyor:***@127.0.0.1:{port}/nothing")),
        "{output}"
    );
    assert!(!output.contains("hunter2"), "{output}");
    let redis = format!("redis://:hunter2@127.0.0.1:{port}/");
    let (code, output) = env.conveyor_output(
        &["enqueue", "--kind", "noop"],
        &[("CONVEYOR__REDIS__URL", &redis)],
    );
    assert_eq!(code, 2, "{output}");
    assert!(output.contains(&format!("127.0.0.1:{port}")), "{output}");
    assert!(!output.contains("hunter2"), "{output}");
}

/// Every command documents itself with an example.
#[test]
fn every_command_has_help_with_an_example() {
    let env = TestEnv::new();
    let commands: [&[&str]; 11] = [
        &["worker"],
        &["migrate"],
        &["enqueue"],
        &["stats"],
        &["api"],
        &["dead"],
        &["dead", "list"],
        &["dead", "show"],
        &["dead", "retry"],
        &["dead", "purge"],
        &[],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let (code, output) = run(&env, &args);
        assert_eq!(code, 0, "{args:?}: {output}");
        if !command.is_empty() {
            assert!(output.contains("Example"), "{args:?}: {output}");
        }
    }
}

/// `conveyor api` serves alone until SIGTERM, before any worker created the schema.
#[test]
fn api_command_serves_until_sigterm() {
    let env = TestEnv::new();
    let bind = format!("127.0.0.1:{}", support::free_port());
    let mut api = env.conveyor(&["api", "--bind", &bind], &[]);
    api.wait_for_log("api listening on", WAIT);
    let http = Http::new(&format!("http://{bind}"));
    assert_eq!(http.get("/health").status, 200);
    assert_eq!(http.get("/ready").status, 200);
    assert_eq!(
        http.get("/jobs/nothing-yet").status,
        404,
        "no schema yet is no job yet"
    );
    let receipt = http.post("/jobs", r#"{"kind":"noop","id":"via-api"}"#);
    assert_eq!(receipt.status, 202, "{}", receipt.text);
    assert_eq!(http.get("/jobs/via-api").json()["status"], "queued");
    assert_eq!(api.stop(), 0, "{}", api.log());
}
