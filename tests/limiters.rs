//! Limiters against real Redis and MariaDB with the real binary and two
//! workers: the running jobs a concurrency limit matches never overlap more
//! than the limit (measured from the rows' started_at/finished_at) and come
//! near it; no window sees more starts than a rate allows; per-key limits
//! hold per key; a killed slot holder's slot comes back after its lease; a
//! limiter changed over HTTP takes effect without a restart; bad limiters and
//! bad keys are refused with the key named.

mod support;

use std::time::Duration;

use serde_json::json;
use support::http::{Http, Response};
use support::{config_file, free_port, job, wait_until, TestEnv};

const LONG: Duration = Duration::from_secs(90);

/// Short leases so the recovery test finishes in seconds.
const FAST_LEASE: [(&str, &str); 2] = [
    ("CONVEYOR__RECOVERY__LEASE_MS", "2000"),
    ("CONVEYOR__RECOVERY__HEARTBEAT_MS", "250"),
];

fn keyed(kind: &str, id: &str, key: Option<&str>, payload: serde_json::Value) -> String {
    let mut envelope: serde_json::Value =
        serde_json::from_str(&job(kind, Some(id), payload)).expect("json");
    if let Some(key) = key {
        envelope["key"] = json!(key);
    }
    envelope.to_string()
}

/// (start µs, end µs) of the succeeded rows whose id starts with `prefix`.
fn spans(env: &TestEnv, prefix: &str) -> Vec<(i64, i64)> {
    env.query(&format!(
        "SELECT TIMESTAMPDIFF(MICROSECOND, '1970-01-01', started_at),
                TIMESTAMPDIFF(MICROSECOND, '1970-01-01', finished_at)
         FROM job_results WHERE id LIKE '{prefix}%' AND status = 'succeeded'"
    ))
}

/// The most spans running at one instant.
fn max_overlap(spans: &[(i64, i64)]) -> usize {
    let mut events: Vec<(i64, i32)> = spans
        .iter()
        .flat_map(|(start, end)| [(*start, 1), (*end, -1)])
        .collect();
    // An end and a start at the same instant do not overlap.
    events.sort_unstable();
    let (mut running, mut most) = (0i32, 0i32);
    for (_, step) in events {
        running += step;
        most = most.max(running);
    }
    most as usize
}

/// The most starts inside any window of `window_us`.
fn most_starts_in(spans: &[(i64, i64)], window_us: i64) -> usize {
    let mut starts: Vec<i64> = spans.iter().map(|(start, _)| *start).collect();
    starts.sort_unstable();
    let mut most = 0;
    let mut first = 0;
    for last in 0..starts.len() {
        while starts[last] - starts[first] >= window_us {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

/// Nothing of the limiters is left once every job has ended (a job's slot is
/// released with its acknowledgement, just after its row commits): no slot,
/// no slot index entry.
fn assert_no_slots_left(env: &TestEnv) {
    let held = || -> Vec<(String, i64)> {
        env.leftover_keys()
            .into_iter()
            .filter(|(key, size)| {
                (key.contains(":slots") || key.ends_with(":slotted")) && *size > 0
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !held().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(held().is_empty(), "slots still held: {:?}", held());
}

#[test]
fn concurrency_holds_across_two_workers_and_other_kinds_pass() {
    let env = TestEnv::new();
    let config =
        config_file("[[limiters]]\nname = \"sleepers\"\nkind = \"sleep\"\nconcurrency = 4\n");
    let mut jobs: Vec<String> = (0..40)
        .map(|i| keyed("sleep", &format!("slow-{i:03}"), None, json!({ "ms": 150 })))
        .collect();
    jobs.extend((0..30).map(|i| keyed("noop", &format!("quick-{i:03}"), None, json!(i))));
    env.push("default", &jobs);
    let mut a = env.worker_with_config(&config, &[]);
    let mut b = env.worker_with_config(&config, &[]);
    env.wait_for_rows(70, LONG);
    let slow = spans(&env, "slow-");
    assert_eq!(slow.len(), 40);
    let overlap = max_overlap(&slow);
    assert!(overlap <= 4, "{overlap} sleep jobs ran at once, limit 4");
    assert!(
        overlap >= 3,
        "only {overlap} sleep jobs ran at once: the limit is not used"
    );
    assert_eq!(
        spans(&env, "quick-").len(),
        30,
        "other kinds are not held back"
    );
    let attempts: Vec<i64> = env.query("SELECT attempts FROM job_results");
    assert!(
        attempts.iter().all(|a| *a == 1),
        "held-back jobs cost no attempt"
    );
    assert_no_slots_left(&env);
    assert_eq!(a.stop(), 0);
    assert_eq!(b.stop(), 0);
}

#[test]
fn a_rate_holds_across_two_workers_in_every_window() {
    let env = TestEnv::new();
    let config =
        config_file("[[limiters]]\nname = \"steady\"\nqueue = \"default\"\nrate = \"8/1s\"\n");
    let jobs: Vec<String> = (0..40)
        .map(|i| keyed("noop", &format!("r-{i:03}"), None, json!(i)))
        .collect();
    env.push("default", &jobs);
    let mut a = env.worker_with_config(&config, &[]);
    let mut b = env.worker_with_config(&config, &[]);
    env.wait_for_rows(40, LONG);
    let starts = spans(&env, "r-");
    // Fixed windows: over any k seconds at most (k + 1) × 8 starts.
    for k in 1..=3 {
        let most = most_starts_in(&starts, k * 1_000_000);
        assert!(most <= (k as usize + 1) * 8, "{most} starts within {k} s");
    }
    let first = starts.iter().map(|s| s.0).min().unwrap_or(0);
    let last = starts.iter().map(|s| s.0).max().unwrap_or(0);
    assert!(
        last - first >= 3_000_000,
        "40 starts at 8/s took only {} ms",
        (last - first) / 1000
    );
    assert!(
        last - first <= 9_000_000,
        "40 starts at 8/s took {} ms: the limit is not used",
        (last - first) / 1000
    );
    assert_eq!(a.stop(), 0);
    assert_eq!(b.stop(), 0);
}

#[test]
fn per_key_concurrency_holds_per_key_while_keys_run_side_by_side() {
    let env = TestEnv::new();
    let config = config_file("[[limiters]]\nname = \"tenants\"\nper_key_concurrency = 1\n");
    let keys = ["acme", "globex", "initech"];
    let jobs: Vec<String> = (0..18)
        .map(|i| {
            let key = keys[i % 3];
            keyed(
                "sleep",
                &format!("{key}-{i:03}"),
                Some(key),
                json!({ "ms": 100 }),
            )
        })
        .collect();
    env.push("default", &jobs);
    let mut a = env.worker_with_config(&config, &[]);
    let mut b = env.worker_with_config(&config, &[]);
    env.wait_for_rows(18, LONG);
    for key in keys {
        let overlap = max_overlap(&spans(&env, &format!("{key}-")));
        assert_eq!(overlap, 1, "jobs of key {key} overlapped");
    }
    let all = spans(&env, "");
    assert!(
        max_overlap(&all) >= 2,
        "different keys must run side by side"
    );
    assert_no_slots_left(&env);
    assert_eq!(a.stop(), 0);
    assert_eq!(b.stop(), 0);
}

#[test]
fn a_killed_slot_holder_gives_its_slot_back_after_its_lease() {
    let env = TestEnv::new();
    let config = config_file("[[limiters]]\nname = \"single\"\nconcurrency = 1\n");
    env.push(
        "default",
        &[keyed("sleep", "held", None, json!({ "ms": 2500 }))],
    );
    let mut first = env.worker_with_config(&config, &FAST_LEASE);
    let global = format!("{}:limiter:{{single}}:slots", env.prefix);
    let mut redis = env.redis();
    wait_until("the job to take the slot", LONG, || {
        let n: i64 = redis::cmd("ZCARD")
            .arg(&global)
            .query(&mut redis)
            .unwrap_or(0);
        n == 1
    });
    first.kill9();
    env.push("default", &[keyed("noop", "after", None, json!(1))]);
    let mut second = env.worker_with_config(&config, &FAST_LEASE);
    env.wait_for_rows(2, LONG);
    let held = env.row("held");
    assert_eq!(held.status, "succeeded");
    assert_eq!(held.attempts, 2, "the killed attempt counts");
    assert_eq!(env.row("after").status, "succeeded");
    let spans = spans(&env, "");
    assert_eq!(max_overlap(&spans), 1);
    assert_no_slots_left(&env);
    assert_eq!(second.stop(), 0);
}

#[test]
fn bad_limiters_stop_the_worker_naming_the_key() {
    let env = TestEnv::new();
    let cases = [
        ("[[limiters]]\nname = \"a\"\nrate = \"lots\"\n", "limiters[a].rate"),
        ("[[limiters]]\nname = \"a\"\nconcurrency = 0\n", "limiters[a].concurrency"),
        ("[[limiters]]\nname = \"a\"\nconcurrency = -3\n", "limiters[a].concurrency"),
        ("[[limiters]]\nname = \"a\"\nkind = \"http\"\n", "limiters[a].concurrency is missing"),
        (
            "[[limiters]]\nname = \"a\"\nconcurrency = 1\n[[limiters]]\nname = \"a\"\nrate = \"1/s\"\n",
            "limiters[a].name",
        ),
    ];
    for (text, expected) in cases {
        let config = config_file(text);
        let path = config.path().to_str().expect("utf-8 path");
        let (code, out) = env.conveyor_output(&["--config", path, "worker"], &[]);
        assert_ne!(code, 0, "{text}");
        assert!(out.contains(expected), "{expected:?} not in {out}");
    }
}

#[test]
fn a_bad_key_is_a_dead_letter_with_the_reason() {
    let env = TestEnv::new();
    let config = config_file("");
    env.push(
        "default",
        &[
            keyed("noop", "bad-key", Some("no spaces allowed"), json!(1)),
            keyed("noop", "good-key", Some("tenant:7"), json!(2)),
        ],
    );
    let mut w = env.worker_with_config(&config, &[]);
    env.wait_for_rows(1, LONG);
    wait_until("the dead letter", LONG, || !env.dead_letters().is_empty());
    let letters = env.dead_letters();
    assert!(letters[0].1.contains("field key"), "{letters:?}");
    assert_eq!(env.row("good-key").status, "succeeded");
    assert_eq!(w.stop(), 0);
}

fn put(http: &Http, path: &str, body: serde_json::Value) -> Response {
    let request = http
        .client()
        .put(format!("{}{path}", http.base))
        .header("content-type", "application/json")
        .body(body.to_string());
    http.send(request)
}

#[test]
fn a_limiter_put_at_run_time_takes_effect_without_restart() {
    let env = TestEnv::new();
    let config =
        config_file("[[limiters]]\nname = \"sleepers\"\nkind = \"sleep\"\nconcurrency = 1\n");
    let bind = format!("127.0.0.1:{}", free_port());
    let mut w = env.worker_with_config(&config, &[("CONVEYOR__API__BIND", bind.as_str())]);
    w.wait_for_log("api listening", LONG);
    let http = Http::new(&format!("http://{bind}"));
    let first: Vec<String> = (0..6)
        .map(|i| keyed("sleep", &format!("a-{i}"), None, json!({ "ms": 200 })))
        .collect();
    env.push("default", &first);
    wait_until(
        "GET /limiters to show one running and some waiting",
        LONG,
        || {
            let list = http.get("/limiters").json();
            list[0]["running"] == json!(1) && list[0]["waiting"].as_u64().unwrap_or(0) > 0
        },
    );
    env.wait_for_rows(6, LONG);
    assert_eq!(max_overlap(&spans(&env, "a-")), 1);

    let answer = put(
        &http,
        "/limiters/sleepers",
        json!({ "kind": "sleep", "concurrency": 4 }),
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.json(),
        json!({ "name": "sleepers", "kind": "sleep", "concurrency": 4 })
    );
    w.wait_for_log("limiters in force", LONG);
    let second: Vec<String> = (0..16)
        .map(|i| keyed("sleep", &format!("b-{i:02}"), None, json!({ "ms": 200 })))
        .collect();
    env.push("default", &second);
    env.wait_for_rows(22, LONG);
    let overlap = max_overlap(&spans(&env, "b-"));
    assert!(
        (3..=4).contains(&overlap),
        "{overlap} ran at once after the change to 4"
    );

    let path = config.path().to_str().expect("utf-8 path");
    let (code, out) = env.conveyor_output(&["--config", path, "limiters", "--json"], &[]);
    assert_eq!(code, 0, "{out}");
    let listed: serde_json::Value = serde_json::from_str(&out).expect("JSON list");
    assert_eq!(listed[0]["concurrency"], json!(4), "{out}");
    assert_eq!(w.stop(), 0);
}

#[test]
fn a_bad_limiter_put_is_refused_naming_the_field() {
    let env = TestEnv::new();
    let config = config_file("");
    let bind = format!("127.0.0.1:{}", free_port());
    let mut w = env.worker_with_config(&config, &[("CONVEYOR__API__BIND", bind.as_str())]);
    w.wait_for_log("api listening", LONG);
    let http = Http::new(&format!("http://{bind}"));
    let cases = [
        (json!({ "rate": "fast" }), "rate"),
        (json!({ "concurrency": 0 }), "concurrency"),
        (json!({ "concurrency": "ten" }), "concurrency"),
        (json!({ "per_key_rate": "0/1s" }), "per_key_rate"),
        (json!({ "kind": "http" }), "concurrency"),
        (json!({ "concurrency": 1, "colour": "red" }), "colour"),
        (json!({ "name": "other", "concurrency": 1 }), "name"),
    ];
    for (body, field) in cases {
        let answer = put(&http, "/limiters/api", body.clone());
        assert_eq!(answer.status, 400, "{body}: {}", answer.text);
        assert_eq!(
            answer.json()["field"],
            json!(field),
            "{body}: {}",
            answer.text
        );
    }
    assert_eq!(
        http.get("/limiters").json(),
        json!([]),
        "nothing was stored"
    );
    assert_eq!(w.stop(), 0);
}
