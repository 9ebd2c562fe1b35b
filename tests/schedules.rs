//! Schedules against real Redis and MariaDB with the real binary: exactly one
//! row per tick across workers, catch-up after all workers stopped, changed
//! and removed schedules, and trigger/pause/resume over HTTP and the CLI.
//! (Daylight saving and the catch-up arithmetic are unit tests with a fixed
//! clock in `src/schedules/ticks.rs`.)

mod support;

use std::collections::BTreeMap;
use std::thread::sleep;
use std::time::Duration;

use serde_json::Value;
use support::http::Http;
use support::{config_file, free_port, wait_until, ConveyorProcess, TestEnv};

const LONG: Duration = Duration::from_secs(60);

fn per_second(name: &str, extra: &str) -> String {
    format!("[[schedules]]\nname = \"{name}\"\ncron = \"* * * * * *\"\nkind = \"noop\"\n{extra}\n")
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// (tick ms, enqueued_at ms) of every row of schedule `name`'s ticks.
fn tick_rows(env: &TestEnv, name: &str) -> Vec<(i64, i64)> {
    if env.count_rows() == 0 {
        return Vec::new();
    }
    let rows: Vec<(String, i64)> = env.query(&format!(
        "SELECT id, TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', enqueued_at) DIV 1000
         FROM job_results WHERE id LIKE 'sched:{name}:%' AND status = 'succeeded'"
    ));
    let mut ticks: Vec<(i64, i64)> = rows
        .into_iter()
        .filter_map(|(id, enqueued)| Some((id.rsplit(':').next()?.parse().ok()?, enqueued)))
        .collect();
    ticks.sort_unstable();
    ticks
}

fn ticks_of(env: &TestEnv, name: &str) -> Vec<i64> {
    tick_rows(env, name).into_iter().map(|(t, _)| t).collect()
}

fn assert_no_gaps(ticks: &[i64]) {
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            1000,
            "ticks not one second apart: {ticks:?}"
        );
    }
}

/// Sum of `metric{schedule="name"}` in a Prometheus text page.
fn metric(page: &str, metric: &str, name: &str) -> f64 {
    let wanted = format!("{metric}{{schedule=\"{name}\"}} ");
    page.lines()
        .filter_map(|line| line.strip_prefix(&wanted))
        .filter_map(|value| value.trim().parse::<f64>().ok())
        .sum()
}

fn accepted_left(env: &TestEnv) -> i64 {
    redis::cmd("HLEN")
        .arg(format!("{}:{{default}}:accepted", env.prefix))
        .query(&mut env.redis())
        .expect("HLEN")
}

/// Three workers and a per-second schedule: every tick is enqueued once (by
/// one of them) and gets exactly one row, with no gap.
#[test]
fn three_workers_enqueue_each_tick_once_without_gaps() {
    let env = TestEnv::new();
    let config = config_file(&per_second("beat", ""));
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let binds: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut workers: Vec<ConveyorProcess> = binds
        .iter()
        .map(|bind| env.worker_with_config(&config, &[("CONVEYOR__API__BIND", bind.as_str())]))
        .collect();
    wait_until("8 ticks committed", LONG, || {
        ticks_of(&env, "beat").len() >= 8
    });
    let path = config.path().to_str().expect("utf-8 path");
    let (code, out) = env.conveyor_output(&["--config", path, "schedules", "pause", "beat"], &[]);
    assert_eq!(code, 0, "{out}");
    sleep(Duration::from_millis(1500));
    wait_until("every tick job finished", LONG, || accepted_left(&env) == 0);
    let ticks = ticks_of(&env, "beat");
    let enqueued: f64 = binds
        .iter()
        .map(|bind| {
            let page = Http::new(&format!("http://{bind}")).get("/metrics").text;
            metric(&page, "conveyor_schedule_ticks_enqueued_total", "beat")
        })
        .sum();
    for w in &mut workers {
        assert_eq!(w.stop(), 0, "{}", w.log());
    }
    assert!(ticks.len() >= 8, "{ticks:?}");
    assert_no_gaps(&ticks);
    assert_eq!(
        enqueued as usize,
        ticks.len(),
        "each tick enqueued once: {ticks:?}"
    );
    assert_eq!(env.count_rows() as usize, ticks.len());
}

/// All workers stop for a while; on restart, `none` skips the missed ticks,
/// `last` runs the latest of them, `all` runs those inside its window.
#[test]
fn catch_up_after_all_workers_stopped() {
    let env = TestEnv::new();
    let config = config_file(&format!(
        "{}{}{}",
        per_second("skip", "catch_up = \"none\""),
        per_second("latest", "catch_up = \"last\""),
        per_second("every", "catch_up = \"all\"\ncatch_up_window = \"4s\""),
    ));
    let misfire = [("CONVEYOR__SCHEDULER__MISFIRE_MS", "1000")];
    let mut first = env.worker_with_config(&config, &misfire);
    wait_until("ticks of every schedule", LONG, || {
        ["skip", "latest", "every"]
            .iter()
            .all(|s| ticks_of(&env, s).len() >= 2)
    });
    assert_eq!(first.stop(), 0, "{}", first.log());
    let stopped_at = now_ms();
    sleep(Duration::from_secs(8));
    let mut second = env.worker_with_config(&config, &misfire);
    let after_restart = |name: &str| -> Vec<(i64, i64)> {
        tick_rows(&env, name)
            .into_iter()
            .filter(|(tick, _)| *tick > stopped_at)
            .collect()
    };
    wait_until("ticks after the restart", LONG, || {
        ["skip", "latest", "every"]
            .iter()
            .all(|s| after_restart(s).len() >= 3)
    });
    assert_eq!(second.stop(), 0, "{}", second.log());
    for (name, expected_missed_runs) in [("skip", 0), ("latest", 1), ("every", 3)] {
        let rows = after_restart(name);
        // The first round after the restart enqueued its ticks at `round`.
        let round = rows
            .iter()
            .map(|(_, enqueued)| *enqueued)
            .min()
            .expect("rows");
        let missed_until = round - 1000;
        assert!(missed_until - stopped_at >= 5000, "ticks were missed");
        let caught_up: Vec<i64> = rows
            .iter()
            .map(|(tick, _)| *tick)
            .filter(|tick| *tick <= missed_until)
            .collect();
        let latest_missed = missed_until.div_euclid(1000) * 1000;
        let expected: Vec<i64> = (0..expected_missed_runs)
            .rev()
            .map(|back| latest_missed - back * 1000)
            .collect();
        assert_eq!(caught_up, expected, "{name}: round at {round}");
        let on_time: Vec<i64> = rows
            .iter()
            .map(|(tick, _)| *tick)
            .filter(|tick| *tick > missed_until)
            .collect();
        assert_no_gaps(&on_time);
    }
}

/// A changed cron expression counts from now (nothing missed is caught up);
/// a schedule removed from the configuration stops.
#[test]
fn changed_cron_counts_from_now_and_removed_schedule_stops() {
    let env = TestEnv::new();
    let before = config_file(&format!(
        "{}{}",
        per_second("changing", "catch_up = \"all\""),
        per_second("removed", "")
    ));
    let mut first = env.worker_with_config(&before, &[]);
    wait_until("ticks of both", LONG, || {
        ticks_of(&env, "changing").len() >= 2 && ticks_of(&env, "removed").len() >= 2
    });
    assert_eq!(first.stop(), 0, "{}", first.log());
    let stopped_at = now_ms();
    sleep(Duration::from_secs(3));
    let restarted_at = now_ms();
    let after = config_file(
        "[[schedules]]\nname = \"changing\"\ncron = \"*/2 * * * * *\"\nkind = \"noop\"\ncatch_up = \"all\"\n",
    );
    let mut second = env.worker_with_config(&after, &[]);
    wait_until("ticks of the new cron", LONG, || {
        ticks_of(&env, "changing")
            .iter()
            .filter(|t| **t > restarted_at)
            .count()
            >= 2
    });
    assert_eq!(second.stop(), 0, "{}", second.log());
    let changing = ticks_of(&env, "changing");
    assert!(
        !changing
            .iter()
            .any(|t| *t > stopped_at && *t <= restarted_at),
        "ticks of the down time ran: {changing:?}"
    );
    let new_ticks: Vec<i64> = changing.into_iter().filter(|t| *t > restarted_at).collect();
    assert!(new_ticks.iter().all(|t| t % 2000 == 0), "{new_ticks:?}");
    let removed = ticks_of(&env, "removed");
    assert!(removed.iter().all(|t| *t <= stopped_at), "{removed:?}");
}

fn view<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no schedule {name} in {list}"))
}

/// Trigger, pause and resume over HTTP and the CLI: a paused schedule
/// enqueues nothing on any worker, and resuming does not catch up.
#[test]
fn trigger_pause_and_resume() {
    let env = TestEnv::new();
    let config = config_file(&format!(
        "{}[[schedules]]\nname = \"yearly\"\ncron = \"0 0 1 1 *\"\ntimezone = \"Europe/Berlin\"\nkind = \"noop\"\npayload = {{ reportId = 7 }}\n",
        per_second("fast", "")
    ));
    let bind = format!("127.0.0.1:{}", free_port());
    let mut w = env.worker_with_config(&config, &[("CONVEYOR__API__BIND", bind.as_str())]);
    w.wait_for_log("api listening", LONG);
    let http = Http::new(&format!("http://{bind}"));

    let triggered = http.post("/schedules/yearly/trigger", "");
    assert_eq!(triggered.status, 202, "{}", triggered.text);
    let id = triggered.json()["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("sched:yearly:"), "{id}");
    wait_until("the triggered run's row", LONG, || {
        env.rows().iter().any(|r| r.id == id)
    });
    assert_eq!(
        env.row(&id).output,
        Some(serde_json::json!({"reportId": 7}))
    );
    let list = http.get("/schedules").json();
    let yearly = view(&list, "yearly");
    assert_eq!(yearly["timezone"], "Europe/Berlin");
    assert_eq!(yearly["paused"], false);
    assert!(yearly["next_run_at"]
        .as_str()
        .expect("next")
        .ends_with("-12-31T23:00:00.000Z"));
    assert_eq!(yearly["last_runs"][0]["id"], id.as_str());
    assert_eq!(yearly["last_runs"][0]["status"], "succeeded");
    assert_eq!(http.post("/schedules/nope/trigger", "").status, 404);

    wait_until("fast ticks", LONG, || ticks_of(&env, "fast").len() >= 2);
    assert_eq!(http.post("/schedules/fast/pause", "").status, 204);
    sleep(Duration::from_millis(1500));
    let paused_at = ticks_of(&env, "fast");
    let path = config.path().to_str().expect("utf-8 path");
    let (code, out) = env.conveyor_output(&["--config", path, "schedules", "list", "--json"], &[]);
    assert_eq!(code, 0, "{out}");
    let listed: Value = serde_json::from_str(out.lines().last().expect("output")).expect("json");
    assert_eq!(view(&listed, "fast")["paused"], true);
    sleep(Duration::from_secs(2));
    assert_eq!(
        ticks_of(&env, "fast"),
        paused_at,
        "a paused schedule ticked"
    );
    let resumed_at = now_ms();
    let (code, out) = env.conveyor_output(&["--config", path, "schedules", "resume", "fast"], &[]);
    assert_eq!(code, 0, "{out}");
    wait_until("ticks after resume", LONG, || {
        ticks_of(&env, "fast").len() >= paused_at.len() + 2
    });
    assert_eq!(w.stop(), 0, "{}", w.log());
    let last_before = *paused_at.last().expect("ticks");
    let resumed: Vec<i64> = ticks_of(&env, "fast")
        .into_iter()
        .filter(|t| *t > last_before)
        .collect();
    assert!(
        resumed.iter().all(|t| *t > resumed_at - 1000),
        "paused ticks were caught up: {resumed:?} (resumed at {resumed_at})"
    );
    let (code, out) = env.conveyor_output(&["--config", path, "schedules", "trigger", "nope"], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no schedule \"nope\""), "{out}");
    let by_id: BTreeMap<String, String> =
        env.rows().into_iter().map(|r| (r.id, r.status)).collect();
    assert!(by_id.values().all(|s| s == "succeeded"), "{by_id:?}");
}

/// A schedule that cannot be used stops the worker at start, naming it and the key.
#[test]
fn bad_schedule_refuses_to_start() {
    let env = TestEnv::new();
    for (entry, expected) in [
        ("cron = \"61 * * * *\"", "schedules[broken].cron"),
        (
            "cron = \"0 * * * *\"\ntimezone = \"Mars/Base\"",
            "schedules[broken].timezone",
        ),
        (
            "cron = \"0 * * * *\"\ncatch_up_window = \"later\"",
            "schedules[broken].catch_up_window",
        ),
    ] {
        let config = config_file(&format!(
            "[[schedules]]\nname = \"broken\"\nkind = \"noop\"\n{entry}\n"
        ));
        let path = config.path().to_str().expect("utf-8 path");
        let (code, out) = env.conveyor_output(&["--config", path, "worker"], &[]);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains(expected), "{expected}: {out}");
    }
    let twice = config_file(&format!(
        "{}{}",
        per_second("dup", ""),
        per_second("dup", "")
    ));
    let path = twice.path().to_str().expect("utf-8 path");
    let (code, out) = env.conveyor_output(&["--config", path, "worker"], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("schedules[dup].name is used by more than one schedule"),
        "{out}"
    );
}

/// `overlap = "skip"`: while a tick's job runs, the ticks that come due are
/// dropped (and counted), so runs never overlap.
#[test]
fn overlap_skip_drops_ticks_while_the_previous_runs() {
    let env = TestEnv::new();
    let config = config_file(
        "[[schedules]]\nname = \"slow\"\ncron = \"* * * * * *\"\nkind = \"sleep\"\npayload = { ms = 2500 }\noverlap = \"skip\"\n",
    );
    let bind = format!("127.0.0.1:{}", free_port());
    let mut w = env.worker_with_config(&config, &[("CONVEYOR__API__BIND", bind.as_str())]);
    wait_until("three runs", LONG, || ticks_of(&env, "slow").len() >= 3);
    let page = Http::new(&format!("http://{bind}")).get("/metrics").text;
    assert_eq!(w.stop(), 0, "{}", w.log());
    let ticks = ticks_of(&env, "slow");
    for pair in ticks.windows(2) {
        assert!(
            pair[1] - pair[0] >= 3000,
            "a tick overlapped its predecessor: {ticks:?}"
        );
    }
    assert!(
        metric(&page, "conveyor_schedule_ticks_skipped_total", "slow") >= 4.0,
        "{page}"
    );
}
