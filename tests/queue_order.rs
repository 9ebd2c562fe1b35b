//! Weighted and strict queues with the real `conveyor` binary against real
//! Redis and MariaDB: the order jobs of several queues start in, read from
//! their rows' `started_at`.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{job, TestEnv};

const WAIT: Duration = Duration::from_secs(120);

/// One processor slot, so jobs start one after another in the order claimed.
const SERIAL: [(&str, &str); 2] = [
    ("CONVEYOR__PROCESSORS__COUNT", "1"),
    ("CONVEYOR__PROCESSORS__CONCURRENCY", "1"),
];

fn fill(env: &TestEnv, queue: &str, count: usize) {
    let jobs: Vec<String> = (0..count)
        .map(|i| job("noop", Some(&format!("{queue}-{i:05}")), json!(i)))
        .collect();
    env.push(queue, &jobs);
}

/// The queues of all rows, by start time.
fn start_order(env: &TestEnv) -> Vec<String> {
    env.query::<String>("SELECT queue FROM job_results ORDER BY started_at, id")
}

/// Weights 3:1: while both queues have jobs, any 1 000 consecutive starts
/// hold 750 ± 10 % jobs of the heavier queue.
#[test]
fn weights_three_to_one_share_the_starts() {
    let env = TestEnv::new();
    fill(&env, "heavy", 2000);
    fill(&env, "light", 2000);
    let mut worker = env.worker(&[
        SERIAL[0],
        SERIAL[1],
        ("CONVEYOR__QUEUES__NAMES", "light,heavy"),
        ("CONVEYOR__QUEUES__WEIGHTS__HEAVY", "3"),
        ("CONVEYOR__QUEUES__WEIGHTS__LIGHT", "1"),
    ]);
    env.wait_for_rows(4000, WAIT);
    assert_eq!(worker.stop(), 0);
    let order = start_order(&env);
    assert_eq!(order.len(), 4000);
    // The heavy queue runs dry after about 2 667 starts.
    let both_waiting = &order[..2400];
    let mut shares = Vec::new();
    for window in both_waiting.windows(1000) {
        let heavy = window.iter().filter(|q| *q == "heavy").count();
        assert!(
            (675..=825).contains(&heavy),
            "{heavy} of 1000 starts from the heavy queue"
        );
        shares.push(heavy);
    }
    let (min, max) = (shares.iter().min(), shares.iter().max());
    eprintln!("heavy share over 1 000 consecutive starts: min {min:?} max {max:?}");
    let first_thousand = order[..1000].iter().filter(|q| *q == "heavy").count();
    eprintln!(
        "first 1 000 starts: heavy {first_thousand}, light {}",
        1000 - first_thousand
    );
}

/// Strict: the second queue starts nothing while the first has jobs (more
/// of them than one claim takes).
#[test]
fn strict_order_serves_a_queue_only_after_those_before_it() {
    let env = TestEnv::new();
    fill(&env, "second", 300);
    fill(&env, "first", 1200);
    let mut worker = env.worker(&[
        SERIAL[0],
        SERIAL[1],
        ("CONVEYOR__QUEUES__NAMES", "first,second"),
        ("CONVEYOR__QUEUES__MODE", "strict"),
    ]);
    env.wait_for_rows(1500, WAIT);
    assert_eq!(worker.stop(), 0);
    let order = start_order(&env);
    let first_done = order.iter().rposition(|q| q == "first").expect("first ran");
    let second_begun = order
        .iter()
        .position(|q| q == "second")
        .expect("second ran");
    assert!(
        first_done < second_begun,
        "a job of `second` started at {second_begun}, before the last of `first` at {first_done}"
    );
}
