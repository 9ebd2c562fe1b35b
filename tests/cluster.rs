//! Redis Cluster: workers on a real local cluster (three masters, three
//! replicas) run jobs of several queues, survive a master failover, and
//! keep exactly one row per job.

mod support;

use std::time::Duration;

use serde_json::json;
use support::cluster::RedisCluster;
use support::{job, TestEnv};

const WAIT: Duration = Duration::from_secs(120);
const QUEUES: [&str; 3] = ["alpha", "beta", "gamma"];
const PER_QUEUE: usize = 2000;

/// A test's space: its own prefix on the cluster, its own database.
fn env_on(cluster: &RedisCluster) -> TestEnv {
    let (database, mysql_url) = support::shared().mysql.create_database();
    TestEnv {
        redis_url: cluster.urls()[0].clone(),
        mysql_url,
        prefix: format!("cl{}", std::process::id()),
        database,
    }
}

fn push(cluster: &RedisCluster, env: &TestEnv, queue: &str) {
    let mut conn = cluster.connection();
    let jobs: Vec<String> = (0..PER_QUEUE)
        .map(|i| {
            job(
                "sleep",
                Some(&format!("{queue}-{i:05}")),
                json!({ "ms": 1 + i % 3 }),
            )
        })
        .collect();
    for chunk in jobs.chunks(500) {
        let _: () = redis::cmd("LPUSH")
            .arg(env.pending_key(queue))
            .arg(chunk)
            .query(&mut conn)
            .expect("LPUSH");
    }
}

#[test]
fn workers_on_a_cluster_survive_a_failover_with_one_row_per_job() {
    let mut cluster = RedisCluster::start();
    let env = env_on(&cluster);
    for queue in QUEUES {
        push(&cluster, &env, queue);
    }
    let nodes = cluster.urls().join(",");
    let settings = [
        ("CONVEYOR__REDIS__CLUSTER_NODES", nodes.as_str()),
        ("CONVEYOR__QUEUES__NAMES", "alpha,beta,gamma"),
        ("CONVEYOR__QUEUES__CLAIM_BATCH", "100"),
        ("CONVEYOR__QUEUES__MAX_IN_FLIGHT", "400"),
    ];
    let mut workers: Vec<_> = (0..3).map(|_| env.worker(&settings)).collect();
    let total = (QUEUES.len() * PER_QUEUE) as i64;
    let start = std::time::Instant::now();
    while env.count_rows() < total / 4 {
        assert!(
            start.elapsed() < WAIT,
            "a quarter of the rows did not come; a worker's log:\n{}",
            workers[0].log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let new_master = cluster.fail_over(&env.pending_key("alpha"));
    support::wait_until("half of the rows", WAIT, || env.count_rows() >= total / 2);
    // A master dies without warning; its replica is elected after the node
    // timeout. Every job was pushed long before, so each one is on the replica.
    // Preferably a master the failover above did not touch.
    let victim = QUEUES
        .iter()
        .map(|q| env.pending_key(q))
        .find(|key| cluster.master_of(key) != new_master)
        .unwrap_or_else(|| env.pending_key("beta"));
    let killed = cluster.kill_master(&victim);
    env.wait_for_rows(total, WAIT);
    support::wait_until("the cluster to drain", WAIT, || {
        cluster
            .keys(&format!("{}:*", env.prefix))
            .iter()
            .all(|(key, size)| {
                // Leases of live workers and the dashboard's history are not jobs.
                *size == 0 || key.ends_with(":workers") || key.contains(":{stats}:")
            })
    });
    let rows = env.rows();
    assert_eq!(rows.len(), QUEUES.len() * PER_QUEUE, "one row per job id");
    assert!(rows.iter().all(|r| r.status == "succeeded"));
    for queue in QUEUES {
        let count = rows.iter().filter(|r| r.queue == queue).count();
        assert_eq!(count, PER_QUEUE, "queue {queue}");
    }
    let logs: String = workers.iter().map(|w| w.log()).collect();
    assert!(logs.contains("starting: redis cluster redis://"), "{logs}");
    for worker in &mut workers {
        assert_eq!(worker.stop(), 0, "{}", worker.log());
    }
    eprintln!("alpha's slot failed over to the replica on port {new_master}; the master on port {killed} was killed");
    for line in logs
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
    {
        eprintln!("{line}");
    }
}

/// A node list that points at a Redis without cluster mode: the worker
/// keeps running and says which setting to check.
#[test]
fn a_node_without_cluster_mode_is_named() {
    let env = TestEnv::new();
    let url = env.redis_url.clone();
    let mut worker = env.worker(&[("CONVEYOR__REDIS__CLUSTER_NODES", url.as_str())]);
    worker.wait_for_log("check redis.cluster_nodes", WAIT);
    assert!(worker.is_running(), "{}", worker.log());
}
