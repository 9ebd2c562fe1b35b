//! Pause flags and cancel marks in Redis, script by script, against a real
//! redis-server: what a claim takes from a paused queue, where a cancelled
//! job goes from each place it can be, and that nothing is left behind.

mod support;

use std::sync::Arc;

use conveyor::job::ClaimedJob;
use conveyor::redis_queue::{CancelState, RedisQueue, Reschedule};
use serde_json::json;
use support::{job, TestEnv};

fn setup() -> (TestEnv, RedisQueue, Arc<str>) {
    let env = TestEnv::new();
    let redis = env.queue_client();
    (env, redis, "default".into())
}

fn far_future() -> i64 {
    conveyor::job::now_ms() + 60_000
}

async fn claim(redis: &RedisQueue, q: &Arc<str>, worker: &str) -> (Vec<ClaimedJob>, bool) {
    let claimed = redis
        .claim(q, worker, 10, far_future())
        .await
        .expect("claim");
    (claimed.jobs, claimed.paused)
}

async fn state(redis: &RedisQueue, id: &str) -> Option<String> {
    redis
        .job_state("default", id)
        .await
        .expect("state")
        .map(|s| s.state)
}

async fn ack_all(redis: &RedisQueue, worker: &str, jobs: &[ClaimedJob]) {
    let tokens: Vec<String> = jobs.iter().map(|j| j.handle.token.clone()).collect();
    let acked = redis.ack("default", worker, &tokens).await.expect("ack");
    assert_eq!(acked, tokens.len());
}

/// `w1`'s first attempt at `job` failed: a retry, due much later. Returns
/// how many jobs the reschedule moved.
async fn fail_attempt(redis: &RedisQueue, job: &ClaimedJob) -> usize {
    let retry = Reschedule {
        token: job.handle.token.clone(),
        due_ms: far_future(),
        failure: Some((1, "boom".to_string())),
        hold: None,
    };
    redis
        .reschedule("default", "w1", &[retry])
        .await
        .expect("reschedule")
}

fn assert_nothing_left(env: &TestEnv) {
    let left: Vec<(String, i64)> = env
        .leftover_keys()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_paused_queue_keeps_its_jobs_until_resumed() {
    let (env, redis, q) = setup();
    env.push("default", &[job("noop", Some("p1"), json!(1))]);
    redis.pause("default").await.expect("pause");
    assert!(redis.is_paused("default").await.expect("read"));
    let (jobs, paused) = claim(&redis, &q, "w1").await;
    assert!(paused);
    assert!(jobs.is_empty(), "a paused queue starts nothing");
    assert_eq!(state(&redis, "p1").await, None, "still only in pending");
    assert!(redis.depths("default").await.expect("depths").paused);
    redis.resume("default").await.expect("resume");
    let (jobs, paused) = claim(&redis, &q, "w1").await;
    assert!(!paused);
    assert_eq!(jobs.len(), 1);
    assert!(!jobs[0].cancelled);
    ack_all(&redis, "w1", &jobs).await;
    assert_nothing_left(&env);
}

/// A job cancelled in `pending` is claimed (even while paused) marked
/// cancelled, so the worker writes its row without running it.
#[tokio::test]
async fn a_queued_job_is_cancelled_and_finished_without_running() {
    let (env, redis, q) = setup();
    let messages: Vec<String> = (1..=3)
        .map(|i| job("noop", Some(&format!("c{i}")), json!(i)))
        .collect();
    env.push("default", &messages);
    let answer = redis.cancel("default", "c2").await.expect("cancel");
    assert_eq!(answer, Some(CancelState::Cancelled));
    assert_eq!(state(&redis, "c2").await.as_deref(), Some("cancelled"));
    assert_eq!(
        redis.cancel("default", "c2").await.expect("cancel twice"),
        Some(CancelState::Cancelled)
    );
    assert_eq!(redis.cancel("default", "nope").await.expect("cancel"), None);
    redis.pause("default").await.expect("pause");
    let (jobs, _) = claim(&redis, &q, "w1").await;
    assert_eq!(jobs.len(), 1, "only the cancelled job comes while paused");
    assert!(jobs[0].cancelled);
    assert_eq!(jobs[0].raw, messages[1].as_bytes());
    ack_all(&redis, "w1", &jobs).await;
    redis.resume("default").await.expect("resume");
    let (rest, _) = claim(&redis, &q, "w1").await;
    let ids: Vec<&[u8]> = rest.iter().map(|j| j.raw.as_slice()).collect();
    assert_eq!(ids, [messages[0].as_bytes(), messages[2].as_bytes()]);
    assert!(rest.iter().all(|j| !j.cancelled));
    ack_all(&redis, "w1", &rest).await;
    assert_nothing_left(&env);
}

/// A held job is signalled to its worker only; if its attempt fails and is
/// rescheduled meanwhile, it goes to `cancelled` instead of `scheduled`.
#[tokio::test]
async fn a_running_job_is_signalled_and_a_retry_of_it_is_cancelled() {
    let (env, redis, q) = setup();
    env.push("default", &[job("fail", Some("r1"), json!({}))]);
    let (jobs, _) = claim(&redis, &q, "w1").await;
    let answer = redis.cancel("default", "r1").await.expect("cancel");
    assert_eq!(answer, Some(CancelState::Cancelling));
    assert_eq!(state(&redis, "r1").await.as_deref(), Some("cancelling"));
    let queues = [q.clone()];
    let w1 = redis.control_state(&queues, "w1").await.expect("w1");
    assert_eq!(w1[0].cancelled_tokens, [jobs[0].handle.token.clone()]);
    let w2 = redis.control_state(&queues, "w2").await.expect("w2");
    assert!(w2[0].cancelled_tokens.is_empty());
    assert_eq!(fail_attempt(&redis, &jobs[0]).await, 1);
    assert_eq!(state(&redis, "r1").await.as_deref(), Some("cancelled"));
    let (again, _) = claim(&redis, &q, "w2").await;
    assert_eq!(again.len(), 1);
    assert!(again[0].cancelled);
    assert_eq!(again[0].attempts_made, 1);
    ack_all(&redis, "w2", &again).await;
    assert_nothing_left(&env);
}

/// A retrying (scheduled) job is taken out of `scheduled` at once.
#[tokio::test]
async fn a_scheduled_job_is_cancelled() {
    let (env, redis, q) = setup();
    env.push("default", &[job("fail", Some("s1"), json!({}))]);
    let (jobs, _) = claim(&redis, &q, "w1").await;
    fail_attempt(&redis, &jobs[0]).await;
    assert_eq!(state(&redis, "s1").await.as_deref(), Some("retrying"));
    let answer = redis.cancel("default", "s1").await.expect("cancel");
    assert_eq!(answer, Some(CancelState::Cancelled));
    assert_eq!(redis.depths("default").await.expect("depths").scheduled, 0);
    let (again, _) = claim(&redis, &q, "w1").await;
    assert!(again[0].cancelled);
    ack_all(&redis, "w1", &again).await;
    assert_nothing_left(&env);
}

/// The jobs of a dead worker that were cancelled come back cancelled.
#[tokio::test]
async fn a_cancelled_job_of_a_dead_worker_is_not_run_again() {
    let (env, redis, q) = setup();
    env.push("default", &[job("noop", Some("k1"), json!(1))]);
    let lease_gone = conveyor::job::now_ms() - 1;
    redis
        .claim(&q, "dead", 10, lease_gone)
        .await
        .expect("claim");
    assert_eq!(
        redis.cancel("default", "k1").await.expect("cancel"),
        Some(CancelState::Cancelling)
    );
    let reaped = redis
        .reap_expired("default", conveyor::job::now_ms())
        .await
        .expect("reap");
    assert_eq!(reaped, [("dead".to_string(), 1)]);
    let (again, _) = claim(&redis, &q, "w2").await;
    assert_eq!(again.len(), 1);
    assert!(again[0].cancelled);
    ack_all(&redis, "w2", &again).await;
    assert_nothing_left(&env);
}

/// One round trip claims from several queues, each as asked, answering in
/// order; a paused one gives nothing; it works after Redis lost its scripts.
#[tokio::test]
async fn one_round_claims_from_several_queues() {
    let (env, redis, _) = setup();
    for queue in ["a", "b", "c"] {
        let messages: Vec<String> = (0..5)
            .map(|i| job("noop", Some(&format!("{queue}{i}")), json!(i)))
            .collect();
        env.push(queue, &messages);
    }
    redis.pause("c").await.expect("pause");
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut env.redis())
        .expect("flush scripts");
    let asks: Vec<(Arc<str>, usize)> = vec![("a".into(), 3), ("b".into(), 1), ("c".into(), 2)];
    let claimed = redis
        .claim_many(&asks, "w1", far_future())
        .await
        .expect("claim");
    let sizes: Vec<usize> = claimed.iter().map(|c| c.jobs.len()).collect();
    assert_eq!(sizes, [3, 1, 0]);
    assert!(claimed[2].paused && !claimed[0].paused);
    assert_eq!(&*claimed[1].jobs[0].handle.queue, "b");
    assert_eq!(
        claimed[0].jobs[0].raw,
        job("noop", Some("a0"), json!(0)).as_bytes()
    );
    redis.resume("c").await.expect("resume");
    for (queue, held) in [("a", 3), ("b", 1)] {
        let tokens = redis.held_tokens(queue, "w1").await.expect("held");
        assert_eq!(tokens.len(), held);
        redis.ack(queue, "w1", &tokens).await.expect("ack");
    }
}
