//! The core pipeline end to end: the real `conveyor worker` binary against
//! real redis-server and mariadbd processes.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{job, TestEnv};

const WAIT: Duration = Duration::from_secs(90);

/// Waits until Redis holds nothing of this test but worker leases.
fn assert_redis_drained(env: &TestEnv) {
    support::wait_until("redis to drain", WAIT, || {
        env.leftover_keys().iter().all(|(_, size)| *size == 0)
    });
}

/// A batch of jobs with ids: exactly one succeeded row each, output = payload.
#[test]
fn every_job_gets_exactly_one_row_with_its_output() {
    let env = TestEnv::new();
    let jobs: Vec<String> = (0..500)
        .map(|i| job("noop", Some(&format!("job-{i:04}")), json!({ "n": i })))
        .collect();
    env.push("default", &jobs);
    let mut worker = env.worker(&[]);
    env.wait_for_rows(500, WAIT);
    assert_redis_drained(&env);
    let rows = env.rows();
    assert_eq!(rows.len(), 500);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.id, format!("job-{i:04}"));
        assert_eq!(row.status, "succeeded");
        assert_eq!(row.attempts, 1);
        assert_eq!(row.kind, "noop");
        assert_eq!(row.queue, "default");
        assert_eq!(row.output, Some(json!({ "n": i })));
        assert!(
            row.worker.contains(&format!("-{}-", worker.pid())),
            "{}",
            row.worker
        );
    }
    assert_eq!(worker.stop(), 0, "{}", worker.log());
}

/// Outputs, errors and kept messages holding quotes, backslashes, control
/// characters, non-ASCII text and SQL come back from the table exactly.
#[test]
fn awkward_text_round_trips_through_the_result_table() {
    let env = TestEnv::new();
    let awkward = [
        "it's",
        "back\\slash and \\' both",
        "quote \"x\"",
        "line\nbreak\ttab\r",
        "unicode é ✓ 😀",
        "nul \u{0} and del \u{7f}",
        "x'); DROP TABLE job_results; --",
        "",
    ];
    let mut messages: Vec<String> = awkward
        .iter()
        .enumerate()
        .map(|(i, text)| job("noop", Some(&format!("awkward-{i}")), json!({ "s": text })))
        .collect();
    let dead = job(
        "no-such-kind",
        Some("awkward-dead"),
        json!({ "s": awkward }),
    );
    messages.push(dead.clone());
    env.push("default", &messages);
    let _worker = env.worker(&[]);
    env.wait_for_rows(messages.len() as i64, WAIT);
    for (i, text) in awkward.iter().enumerate() {
        let row = env.row(&format!("awkward-{i}"));
        assert_eq!(row.output, Some(json!({ "s": text })), "{row:?}");
    }
    let kept: Vec<Vec<u8>> = env.query("SELECT message FROM job_results WHERE id = 'awkward-dead'");
    assert_eq!(kept, vec![dead.into_bytes()]);
}

/// Jobs without an id get one each; two identical id-less messages are two jobs.
#[test]
fn id_less_jobs_get_distinct_ids() {
    let env = TestEnv::new();
    let same = job("noop", None, json!("same"));
    let mut jobs = vec![same.clone(), same];
    jobs.extend((0..98).map(|i| job("noop", None, json!(i))));
    env.push("default", &jobs);
    let _worker = env.worker(&[]);
    env.wait_for_rows(100, WAIT);
    let rows = env.rows();
    assert_eq!(rows.len(), 100);
    let same_rows = rows
        .iter()
        .filter(|r| r.output == Some(json!("same")))
        .count();
    assert_eq!(same_rows, 2);
    assert!(rows.iter().all(|r| conveyor::job::is_valid_job_id(&r.id)));
}

/// A handler that fails twice, then succeeds on its third attempt.
#[test]
fn failed_attempts_are_retried_until_success() {
    let env = TestEnv::new();
    env.push(
        "default",
        &[job(
            "fail",
            Some("flaky"),
            json!({ "times": 2, "message": "boom" }),
        )],
    );
    let _worker = env.worker(&[]);
    env.wait_for_rows(1, WAIT);
    let row = env.row("flaky");
    assert_eq!(row.status, "succeeded");
    assert_eq!(row.attempts, 3);
    assert_eq!(row.output, Some(json!({ "attempt": 3 })));
}

/// A handler that always fails ends `dead` after max_attempts, with its error.
#[test]
fn exhausted_retries_end_dead_with_the_last_error() {
    let env = TestEnv::new();
    let mut envelope: serde_json::Value = serde_json::from_str(&job(
        "fail",
        Some("hopeless"),
        json!({ "message": "always broken" }),
    ))
    .expect("json");
    envelope["max_attempts"] = json!(4);
    env.push("default", &[envelope.to_string()]);
    let _worker = env.worker(&[]);
    env.wait_for_rows(1, WAIT);
    let row = env.row("hopeless");
    assert_eq!(row.status, "dead");
    assert_eq!(row.attempts, 4);
    assert_eq!(row.error.as_deref(), Some("always broken"));
    assert_eq!(row.output, None);
    let kept: Vec<Vec<u8>> = env.query("SELECT message FROM job_results WHERE id = 'hopeless'");
    assert_eq!(
        kept,
        vec![envelope.to_string().into_bytes()],
        "dead jobs keep their message"
    );
}

/// Panicking handlers count as failed attempts and the pool keeps its size:
/// with two processor threads, thirty panics later a thousand jobs still run.
#[test]
fn panics_are_failed_attempts_and_the_pool_survives() {
    let env = TestEnv::new();
    let mut jobs: Vec<String> = (0..10)
        .map(|i| {
            job(
                "fail",
                Some(&format!("panics-{i}")),
                json!({ "mode": "panic", "message": "kaboom" }),
            )
        })
        .collect();
    jobs.push(job(
        "fail",
        Some("panics-once"),
        json!({ "mode": "panic", "times": 1 }),
    ));
    env.push("default", &jobs);
    let worker = env.worker(&[("CONVEYOR__PROCESSORS__COUNT", "2")]);
    env.wait_for_rows(11, WAIT);
    let after: Vec<String> = (0..1000)
        .map(|i| job("noop", Some(&format!("after-{i:04}")), json!(i)))
        .collect();
    env.push("default", &after);
    env.wait_for_rows(1011, WAIT);
    let rows = env.rows();
    for i in 0..10 {
        let row = rows
            .iter()
            .find(|r| r.id == format!("panics-{i}"))
            .expect("row");
        assert_eq!(row.status, "dead");
        assert_eq!(row.attempts, 3);
        assert_eq!(row.error.as_deref(), Some("handler panicked: kaboom"));
    }
    let once = env.row("panics-once");
    assert_eq!((once.status.as_str(), once.attempts), ("succeeded", 2));
    assert_eq!(
        rows.iter().filter(|r| r.status == "succeeded").count(),
        1001
    );
    assert!(worker.log().contains("handler panicked"));
}

/// Every kind of malformed message is kept in dead_letters with its reason,
/// and the worker goes on with the next job.
#[test]
fn malformed_messages_become_dead_letters() {
    let env = TestEnv::new();
    let oversize = format!(r#"{{"kind":"noop","payload":"{}"}}"#, "x".repeat(300_000));
    let nested = "[".repeat(100_000);
    let cases: Vec<(String, &str)> = vec![
        ("this is not json".into(), "not a valid job envelope"),
        ("[1, 2, 3]".into(), "not a JSON object"),
        (r#"["an-id", "noop"]"#.into(), "not a JSON object"),
        (r#"{"payload": 1}"#.into(), "missing field `kind`"),
        (
            r#"{"kind": "noop", "id": "spaces are bad"}"#.into(),
            "field id",
        ),
        (oversize.clone(), "over limits.max_job_bytes = 200000"),
        (nested.clone(), "not a JSON object"),
        (
            format!(r#"{{"kind":"noop","payload":{nested}}}"#),
            "recursion limit",
        ),
        ("\u{0}\u{1}binary\u{ff}".into(), "not a valid job envelope"),
    ];
    let mut messages: Vec<String> = cases.iter().map(|(m, _)| m.clone()).collect();
    messages.push(job("noop", Some("still-alive"), json!(1)));
    env.push("default", &messages);
    let mut worker = env.worker(&[("CONVEYOR__LIMITS__MAX_JOB_BYTES", "200000")]);
    env.wait_for_rows(1, WAIT);
    support::wait_until("dead letters", WAIT, || {
        env.dead_letters().len() == cases.len()
    });
    let letters = env.dead_letters();
    for (message, reason) in &cases {
        let letter = letters
            .iter()
            .find(|(raw, _)| raw == message.as_bytes())
            .unwrap_or_else(|| panic!("no dead letter for {:.40}", message));
        assert!(letter.1.contains(reason), "{:.40}: {}", message, letter.1);
    }
    assert_eq!(env.row("still-alive").status, "succeeded");
    assert_redis_drained(&env);
    assert!(worker.is_running());
    assert_eq!(worker.stop(), 0);
}

/// A kind no handler knows is dead after one attempt.
#[test]
fn unknown_kind_is_dead_after_one_attempt() {
    let env = TestEnv::new();
    env.push("default", &[job("no-such-kind", Some("lost"), json!({}))]);
    let _worker = env.worker(&[]);
    env.wait_for_rows(1, WAIT);
    let row = env.row("lost");
    assert_eq!((row.status.as_str(), row.attempts), ("dead", 1));
    assert!(
        row.error.as_deref().unwrap_or("").contains("unknown kind"),
        "{row:?}"
    );
}

/// A payload its handler rejects is dead at once, without retries.
#[test]
fn invalid_payload_is_dead_without_retries() {
    let env = TestEnv::new();
    env.push(
        "default",
        &[job("sleep", Some("bad-sleep"), json!({ "seconds": 1 }))],
    );
    let _worker = env.worker(&[]);
    env.wait_for_rows(1, WAIT);
    let row = env.row("bad-sleep");
    assert_eq!((row.status.as_str(), row.attempts), ("dead", 1));
    assert!(
        row.error
            .as_deref()
            .unwrap_or("")
            .contains("invalid sleep payload"),
        "{row:?}"
    );
}

/// A job with `run_at` in the future is not started before it.
#[test]
fn run_at_in_the_future_waits() {
    let env = TestEnv::new();
    let due = conveyor::job::now_ms() + 2_000;
    let envelope = json!({ "id": "later", "kind": "noop", "payload": 1, "run_at": due });
    env.push(
        "default",
        &[envelope.to_string(), job("noop", Some("now"), json!(2))],
    );
    let _worker = env.worker(&[]);
    env.wait_for_rows(1, WAIT);
    assert_eq!(env.rows().len(), 1, "only the immediate job ran first");
    env.wait_for_rows(2, WAIT);
    let started: Vec<i64> = env.query(
        "SELECT CAST(UNIX_TIMESTAMP(started_at) * 1000 AS SIGNED) FROM job_results WHERE id = 'later'",
    );
    assert!(
        started[0] >= due - 1,
        "started {} before run_at {due}",
        started[0]
    );
}

/// The built-in kinds produce their documented output.
#[test]
fn builtin_kinds_produce_their_output() {
    let env = TestEnv::new();
    env.push(
        "default",
        &[
            job("stats", Some("stats"), json!({ "values": [1, 2, 3, 4] })),
            job("sleep", Some("sleep"), json!({ "ms": 30 })),
        ],
    );
    let _worker = env.worker(&[]);
    env.wait_for_rows(2, WAIT);
    let stats = env.row("stats").output.expect("output");
    assert_eq!(stats["count"], 4);
    assert_eq!(stats["mean"], 2.5);
    assert_eq!(stats["p50"], 2.0);
    assert_eq!(env.row("sleep").output, Some(json!({ "slept_ms": 30 })));
}

/// Jobs of every configured queue are processed.
#[test]
fn several_queues_are_consumed() {
    let env = TestEnv::new();
    env.push("alpha", &[job("noop", Some("a1"), json!(1))]);
    env.push("beta.2", &[job("noop", Some("b1"), json!(2))]);
    let _worker = env.worker(&[("CONVEYOR__QUEUES__NAMES", "alpha,beta.2")]);
    env.wait_for_rows(2, WAIT);
    assert_eq!(env.row("a1").queue, "alpha");
    assert_eq!(env.row("b1").queue, "beta.2");
}

/// An idle worker picks up a job pushed later (blocking wait wakes it).
#[test]
fn idle_worker_wakes_for_new_jobs() {
    let env = TestEnv::new();
    let worker = env.worker(&[("CONVEYOR__QUEUES__IDLE_WAIT_MS", "30000")]);
    worker.wait_for_log("schema ready", WAIT);
    std::thread::sleep(Duration::from_millis(500));
    env.push("default", &[job("noop", Some("late"), json!(1))]);
    env.wait_for_rows(1, Duration::from_secs(10));
}

/// Invalid configuration stops the binary at start, naming the key.
#[test]
fn config_errors_name_the_key() {
    let env = TestEnv::new();
    let cases = [
        ("CONVEYOR__PROCESSORS__COUNT", "abc", "processors.count"),
        ("CONVEYOR__DB__BATCH_SIZE", "0", "db.batch_size"),
        ("CONVEYOR__QUEUES__NAMES", "bad queue", "queues.names"),
        ("CONVEYOR__MYSQL__URL", "mysql://u:hunter2@", "mysql.url"),
    ];
    for (key, value, named) in cases {
        let (code, output) = env.conveyor_output(&["worker"], &[(key, value)]);
        assert_eq!(code, 2, "{key}={value}: {output}");
        assert!(output.contains(named), "{key}={value}: {output}");
        assert!(!output.contains("hunter2"), "password leaked: {output}");
    }
}

/// The mailbox line appears with every actor's depth and the queue depths.
#[test]
fn mailbox_line_is_logged() {
    let env = TestEnv::new();
    env.push("default", &[job("noop", Some("m"), json!(1))]);
    let worker = env.worker(&[]);
    env.wait_for_rows(1, WAIT);
    worker.wait_for_log("conveyor::mailbox", WAIT);
    let log = worker.log();
    let line = log
        .lines()
        .find(|l| l.contains("conveyor::mailbox") && l.contains("committed=1"))
        .or_else(|| log.lines().find(|l| l.contains("conveyor::mailbox")))
        .expect("mailbox line");
    for field in [
        "queue_reader=",
        "processors=",
        "db_writer=",
        "in_flight=",
        "feed=",
        "queue default: pending=",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    assert!(
        log.contains("mysql://conveyor:***@"),
        "the start line names the redacted URL"
    );
    assert!(
        !log.contains("conveyor:conveyor@"),
        "a password reached the log"
    );
}

/// SIGTERM on an idle worker exits 0.
#[test]
fn sigterm_exits_cleanly() {
    let env = TestEnv::new();
    let mut worker = env.worker(&[]);
    worker.wait_for_log("schema ready", WAIT);
    assert_eq!(worker.stop(), 0, "{}", worker.log());
    assert!(worker.log().contains("SIGTERM received"));
}

/// The registry example runs as a worker and handles its own kind.
#[test]
fn custom_kind_example_handles_its_kind() {
    let env = TestEnv::new();
    env.push(
        "default",
        &[job(
            "word_count",
            Some("wc"),
            json!({ "text": "to be or not to be" }),
        )],
    );
    let example = support::example_binary("custom_kind");
    let _worker = env.program(&example, &[], &[]);
    env.wait_for_rows(1, WAIT);
    assert_eq!(
        env.row("wc").output,
        Some(json!({ "words": 6, "distinct": 4 }))
    );
}

/// A slow job holds only its own slot: quick jobs keep flowing through the
/// other slots of the same processor thread while it runs.
#[test]
fn a_slow_job_does_not_hold_the_other_slots() {
    let env = TestEnv::new();
    let mut jobs = vec![job("sleep", Some("slow"), json!({ "ms": 4000 }))];
    jobs.extend((0..30).map(|i| job("sleep", Some(&format!("quick-{i:02}")), json!({ "ms": 50 }))));
    env.push("default", &jobs);
    let _worker = env.worker(&[
        ("CONVEYOR__PROCESSORS__COUNT", "1"),
        ("CONVEYOR__PROCESSORS__CONCURRENCY", "4"),
    ]);
    env.wait_for_rows(30, WAIT);
    let rows = env.rows();
    assert!(
        rows.iter().all(|r| r.id != "slow"),
        "the quick jobs waited for the slow one"
    );
    env.wait_for_rows(31, WAIT);
}
