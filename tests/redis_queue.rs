//! The Redis scripts on their own, against a real redis-server: every move
//! of a job between pending, a worker's hold, scheduled and ready.

mod support;

use std::sync::Arc;

use conveyor::job::ClaimedJob;
use conveyor::redis_queue::{JobState, RedisQueue, Reschedule};
use serde_json::json;
use support::{job, TestEnv};

fn queue(env: &TestEnv) -> RedisQueue {
    env.queue_client()
}

fn far_future() -> i64 {
    conveyor::job::now_ms() + 60_000
}

/// A test's own space, a client for its queues, and the queue `default`.
fn setup() -> (TestEnv, RedisQueue, Arc<str>) {
    let env = TestEnv::new();
    let redis = queue(&env);
    (env, redis, "default".into())
}

/// noop jobs with these ids and the payloads 1, 2, …
fn noops(ids: &[&str]) -> Vec<String> {
    ids.iter()
        .zip(1..)
        .map(|(id, n)| job("noop", Some(id), json!(n)))
        .collect()
}

/// `worker` claims up to `max` jobs of `q`, its lease running until `lease_until`.
async fn claim(
    redis: &RedisQueue,
    q: &Arc<str>,
    worker: &str,
    max: usize,
    lease_until: i64,
) -> Vec<ClaimedJob> {
    redis
        .claim(q, worker, max, lease_until)
        .await
        .expect("claim")
        .jobs
}

/// A fresh `default` queue given noop jobs with these ids, of which `w1`
/// has claimed up to `max`: the space, the client, the queue and the claim.
async fn claimed_by_w1(
    ids: &[&str],
    max: usize,
) -> (TestEnv, RedisQueue, Arc<str>, Vec<ClaimedJob>) {
    let (env, redis, q) = setup();
    env.push("default", &noops(ids));
    let claimed = claim(&redis, &q, "w1", max, far_future()).await;
    (env, redis, q, claimed)
}

/// The state of a job the queue knows.
async fn known_state(redis: &RedisQueue, id: &str) -> JobState {
    redis
        .job_state("default", id)
        .await
        .expect("state")
        .expect("known")
}

/// No key of the test's space holds anything.
fn assert_nothing_left(env: &TestEnv) {
    assert!(
        env.leftover_keys().iter().all(|(_, n)| *n == 0),
        "{:?}",
        env.leftover_keys()
    );
}

/// Claims are FIFO, bounded by `max`, and acks remove every trace.
#[tokio::test]
async fn claim_is_fifo_and_ack_leaves_nothing() {
    let (env, redis, q) = setup();
    let messages: Vec<String> = (0..5)
        .map(|i| job("noop", Some(&format!("j{i}")), json!(i)))
        .collect();
    env.push("default", &messages);
    let first = claim(&redis, &q, "w1", 3, far_future()).await;
    assert_eq!(first.len(), 3);
    assert_eq!(first[0].raw, messages[0].as_bytes());
    assert_eq!(first[2].raw, messages[2].as_bytes());
    let state = known_state(&redis, "j1").await;
    assert_eq!(state.state, "running");
    let rest = claim(&redis, &q, "w1", 10, far_future()).await;
    assert_eq!(rest.len(), 2);
    let tokens: Vec<String> = first
        .iter()
        .chain(&rest)
        .map(|j| j.handle.token.clone())
        .collect();
    assert_eq!(redis.ack("default", "w1", &tokens).await.expect("ack"), 5);
    assert_eq!(redis.job_state("default", "j1").await.expect("state"), None);
    assert_nothing_left(&env);
}

/// A failed attempt goes to scheduled with its count, comes back when due,
/// and keeps its token (so an id-less job keeps its id).
#[tokio::test]
async fn rescheduled_jobs_come_back_with_their_attempts() {
    let (_env, redis, q, claimed) = claimed_by_w1(&["r1"], 1).await;
    let token = claimed[0].handle.token.clone();
    let due = conveyor::job::now_ms() + 100;
    let moved = redis
        .reschedule(
            "default",
            "w1",
            &[Reschedule {
                token: token.clone(),
                due_ms: due,
                failure: Some((1, "boom".into())),
                hold: None,
            }],
        )
        .await
        .expect("reschedule");
    assert_eq!(moved, 1);
    let state = known_state(&redis, "r1").await;
    assert_eq!((state.state.as_str(), state.attempts), ("retrying", 1));
    assert_eq!(
        redis
            .promote_due("default", due - 50, 10)
            .await
            .expect("promote"),
        0
    );
    assert_eq!(
        redis
            .promote_due("default", due, 10)
            .await
            .expect("promote"),
        1
    );
    let again = claim(&redis, &q, "w2", 5, far_future()).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].handle.token, token);
    assert_eq!(again[0].attempts_made, 1);
    assert_eq!(again[0].last_error.as_deref(), Some("boom"));
}

/// An expired lease returns the worker's jobs with one more attempt; the old
/// worker can no longer ack them (fencing).
#[tokio::test]
async fn expired_leases_are_reaped_and_fenced() {
    let (env, redis, q) = setup();
    env.push("default", &noops(&["x1", "x2"]));
    let now = conveyor::job::now_ms();
    let claimed = claim(&redis, &q, "dying", 2, now + 50).await;
    assert!(redis
        .reap_expired("default", now)
        .await
        .expect("reap")
        .is_empty());
    let reaped = redis
        .reap_expired("default", now + 100)
        .await
        .expect("reap");
    assert_eq!(reaped, vec![("dying".to_string(), 2)]);
    let tokens: Vec<String> = claimed.iter().map(|j| j.handle.token.clone()).collect();
    assert_eq!(
        redis.ack("default", "dying", &tokens).await.expect("ack"),
        0
    );
    let recovered = claim(&redis, &q, "alive", 5, far_future()).await;
    assert_eq!(recovered.len(), 2);
    assert!(
        recovered.iter().all(|j| j.attempts_made == 1),
        "{recovered:?}"
    );
    assert!(recovered[0]
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("lease expired"));
    assert!(!redis
        .heartbeat("default", "dying", far_future())
        .await
        .expect("beat"));
}

/// Hand-back puts a worker's jobs first in line, without counting an attempt.
#[tokio::test]
async fn hand_back_returns_jobs_first_in_line() {
    let (_env, redis, q, held) = claimed_by_w1(&["h1", "h2"], 1).await;
    assert_eq!(
        redis.hand_back("default", "w1").await.expect("hand back"),
        1
    );
    let depths = redis.depths("default").await.expect("depths");
    assert_eq!((depths.pending, depths.running), (2, 0));
    let next = claim(&redis, &q, "w2", 1, far_future()).await;
    assert_eq!(next[0].handle.token, held[0].handle.token);
    assert_eq!(next[0].attempts_made, 0);
}

/// Jobs accepted through the API read `queued` before any worker sees them.
#[tokio::test]
async fn accepted_jobs_are_queued_until_acknowledged() {
    let (env, redis, q) = setup();
    let message = job("noop", Some("api-1"), json!(1));
    redis
        .accept("default", &[("api-1".to_string(), message.into_bytes())])
        .await
        .expect("accept");
    let state = known_state(&redis, "api-1").await;
    assert_eq!(state.state, "queued");
    let claimed = claim(&redis, &q, "w1", 1, far_future()).await;
    let tokens = vec![claimed[0].handle.token.clone()];
    redis.ack("default", "w1", &tokens).await.expect("ack");
    assert_eq!(
        redis.job_state("default", "api-1").await.expect("state"),
        None
    );
    assert_nothing_left(&env);
}

/// A unique lock taken on claim is released by the holder's ack only while
/// it still holds that job's id; a duplicate is claimed with its holder named.
#[tokio::test]
async fn unique_locks_are_released_only_by_their_holder() {
    let (env, redis, q) = setup();
    let unique = |id: &str| {
        let mut message: serde_json::Value =
            serde_json::from_str(&job("noop", Some(id), json!(1))).expect("json");
        message["unique_key"] = json!("k");
        message.to_string()
    };
    env.push("default", &[unique("first"), unique("second")]);
    let claimed = claim(&redis, &q, "w1", 10, far_future()).await;
    assert_eq!(claimed[0].duplicate_of, None);
    assert_eq!(claimed[1].duplicate_of.as_deref(), Some("first"));
    let lock = format!("{}:{{default}}:unique:k", env.prefix);
    let mut conn = env.redis();
    // Someone else took the key over meanwhile: the old holder's ack keeps it.
    let _: () = redis::cmd("SET")
        .arg(&lock)
        .arg("newer")
        .query(&mut conn)
        .expect("SET");
    let tokens: Vec<String> = claimed.iter().map(|j| j.handle.token.clone()).collect();
    assert_eq!(redis.ack("default", "w1", &tokens).await.expect("ack"), 2);
    let holder: Option<String> = redis::cmd("GET").arg(&lock).query(&mut conn).expect("GET");
    assert_eq!(holder.as_deref(), Some("newer"));
    let _: () = redis::cmd("DEL").arg(&lock).query(&mut conn).expect("DEL");
    // Through the API path: refused while held, the holder named.
    let first = redis
        .accept_unique("default", "a1", unique("a1").as_bytes(), "k", None)
        .await
        .expect("accept");
    assert_eq!(first, None);
    let second = redis
        .accept_unique("default", "a2", unique("a2").as_bytes(), "k", None)
        .await
        .expect("accept")
        .expect("refused");
    assert_eq!(second.id, "a1");
    assert!(second.unreleased);
    assert_eq!(second.hold_until_ms, None, "not claimed yet");
    let claimed = claim(&redis, &q, "w1", 10, far_future()).await;
    assert_eq!(claimed.len(), 1);
    let tokens = vec![claimed[0].handle.token.clone()];
    redis.ack("default", "w1", &tokens).await.expect("ack");
    assert_nothing_left(&env);
}

/// Keyed messages are claimed round-robin by key, oldest first within a
/// key; jobs without a key share one key; the claim sorts the backlog, so a
/// key pushed last gets its turn at once.
#[tokio::test]
async fn keyed_jobs_are_claimed_round_robin_by_key() {
    let (env, redis, q) = setup();
    let keyed = |id: String, key: Option<&str>| {
        let mut envelope: serde_json::Value =
            serde_json::from_str(&job("noop", Some(&id), json!(1))).expect("json");
        if let Some(key) = key {
            envelope["key"] = json!(key);
        }
        envelope.to_string()
    };
    let mut messages: Vec<String> = (0..6).map(|i| keyed(format!("a{i}"), Some("a"))).collect();
    messages.extend((0..2).map(|i| keyed(format!("b{i}"), Some("b"))));
    messages.push(keyed("u0".into(), None));
    messages.push(keyed("c0".into(), Some("c")));
    env.push("default", &messages);
    let ids = |jobs: Vec<ClaimedJob>| -> Vec<String> {
        jobs.iter()
            .map(|j| {
                let v: serde_json::Value = serde_json::from_slice(&j.raw).expect("json");
                v["id"].as_str().expect("id").to_string()
            })
            .collect()
    };
    // The first keyed message makes the claim sort the backlog; every key
    // then gets its turn, in the order keys first had work.
    let first = ids(claim(&redis, &q, "w1", 3, far_future()).await);
    assert_eq!(first, ["a0", "b0", "u0"]);
    let second = ids(claim(&redis, &q, "w1", 6, far_future()).await);
    assert_eq!(second, ["c0", "a1", "b1", "a2", "a3", "a4"]);
    assert_eq!(redis.depths("default").await.expect("depths").pending, 1);
    let state = known_state(&redis, "a5").await;
    assert_eq!(state.state, "queued");
    let last = ids(claim(&redis, &q, "w1", 6, far_future()).await);
    assert_eq!(last, ["a5"]);
    assert_eq!(redis.depths("default").await.expect("depths").pending, 0);
}
