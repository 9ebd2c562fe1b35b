//! A real local Redis Cluster for tests: six `redis-server` processes
//! (three masters, three replicas) joined by `redis-cli --cluster create`.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::{wait_until, RedisServer};

/// Three masters and three replicas on free loopback ports.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                RedisServer::start_with(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                    ]
                    .map(String::from)
                    .to_vec(),
                )
            })
            .collect();
        let mut command = Command::new("redis-cli");
        command.arg("--cluster").arg("create");
        for node in &nodes {
            command.arg(format!("127.0.0.1:{}", node.port));
        }
        let output = command
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = RedisCluster { nodes };
        wait_until("the cluster to settle", Duration::from_secs(60), || {
            cluster.nodes.iter().all(|node| {
                let info = cluster_info(node);
                info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:6")
            }) && cluster.replicas_in_sync()
        });
        cluster
    }

    /// `redis://` URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// A cluster-aware client connection.
    pub fn connection(&self) -> redis::cluster::ClusterConnection {
        redis::cluster::ClusterClient::new(self.urls())
            .expect("cluster client")
            .get_connection()
            .expect("cluster connection")
    }

    /// Every key under `pattern` on the masters, with its size.
    pub fn keys(&self, pattern: &str) -> Vec<(String, i64)> {
        let mut found = Vec::new();
        for node in self.nodes.iter().filter(|n| role(n) == "master") {
            let mut conn = node.connection();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query(&mut conn)
                .expect("KEYS");
            for key in keys {
                let size = key_size(&mut conn, &key);
                found.push((key, size));
            }
        }
        found
    }

    /// Promotes the replica of the master that owns `key`'s slot with a
    /// manual `CLUSTER FAILOVER`, and waits until it serves as master.
    /// Returns the port of the new master.
    pub fn fail_over(&self, key: &str) -> u16 {
        let (master, replica) = self.master_and_replica(key);
        let node = self
            .nodes
            .iter()
            .find(|n| n.port == replica)
            .expect("the replica is ours");
        let _: () = redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .query(&mut node.connection())
            .expect("CLUSTER FAILOVER");
        let old = self
            .nodes
            .iter()
            .find(|n| n.port == master)
            .expect("the master is ours");
        wait_until("the replica to take over", Duration::from_secs(60), || {
            role(node) == "master" && replication_info(old).contains("master_link_status:up")
        });
        node.port
    }

    /// The port of the master that owns `key`'s slot.
    pub fn master_of(&self, key: &str) -> u16 {
        self.master_and_replica(key).0
    }

    /// Kills the master that owns `key`'s slot with SIGKILL, and waits until
    /// its replica has been elected in its place. Returns the killed port.
    pub fn kill_master(&mut self, key: &str) -> u16 {
        let (master, replica) = self.master_and_replica(key);
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == master)
            .expect("the master is ours");
        node.kill9();
        let replica = self
            .nodes
            .iter()
            .find(|n| n.port == replica)
            .expect("the replica is ours");
        let start = std::time::Instant::now();
        while !(role(replica) == "master" && cluster_info(replica).contains("cluster_state:ok")) {
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "the replica on port {} was not elected after its master on port {master} died:\n{}",
                replica.port,
                cluster_nodes_text(replica)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        master
    }

    /// Ports of the master owning `key`'s slot and of its replica, once the
    /// cluster's view shows both (it settles a moment after a failover).
    fn master_and_replica(&self, key: &str) -> (u16, u16) {
        let mut found = None;
        wait_until(
            "the slot's master and replica",
            Duration::from_secs(60),
            || {
                found = self.try_master_and_replica(key);
                found.is_some()
            },
        );
        found.expect("found above")
    }

    fn try_master_and_replica(&self, key: &str) -> Option<(u16, u16)> {
        let any = self.nodes.iter().find(|n| role(n) == "master")?;
        let mut conn = connect(any)?;
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)
            .ok()?;
        let table = cluster_nodes(any);
        let live = |n: &&NodeLine| !n.flags.contains("fail");
        let master = table
            .iter()
            .filter(live)
            .find(|n| n.flags.contains("master") && n.owns(slot))?;
        let replica = table
            .iter()
            .filter(live)
            .find(|n| n.master_id == master.id)?;
        Some((master.port, replica.port))
    }

    fn replicas_in_sync(&self) -> bool {
        self.nodes.iter().filter(|n| role(n) == "slave").count() == 3
    }
}

fn connect(node: &RedisServer) -> Option<redis::Connection> {
    redis::Client::open(node.url()).ok()?.get_connection().ok()
}

fn replication_info(node: &RedisServer) -> String {
    connect(node)
        .and_then(|mut c| redis::cmd("INFO").arg("replication").query(&mut c).ok())
        .unwrap_or_default()
}

fn cluster_nodes_text(node: &RedisServer) -> String {
    connect(node)
        .and_then(|mut c| redis::cmd("CLUSTER").arg("NODES").query(&mut c).ok())
        .unwrap_or_default()
}

fn cluster_info(node: &RedisServer) -> String {
    connect(node)
        .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query(&mut c).ok())
        .unwrap_or_default()
}

/// `master` or `slave`.
fn role(node: &RedisServer) -> String {
    let reply: Vec<redis::Value> = connect(node)
        .and_then(|mut c| redis::cmd("ROLE").query(&mut c).ok())
        .unwrap_or_default();
    match reply.first() {
        Some(redis::Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        _ => String::new(),
    }
}

fn key_size(conn: &mut redis::Connection, key: &str) -> i64 {
    let kind: String = redis::cmd("TYPE").arg(key).query(conn).unwrap_or_default();
    let command = match kind.as_str() {
        "list" => "LLEN",
        "hash" => "HLEN",
        "zset" => "ZCARD",
        _ => return 1,
    };
    redis::cmd(command).arg(key).query(conn).unwrap_or(0)
}

/// One line of `CLUSTER NODES`.
struct NodeLine {
    id: String,
    port: u16,
    flags: String,
    master_id: String,
    slots: Vec<(i64, i64)>,
}

impl NodeLine {
    fn owns(&self, slot: i64) -> bool {
        self.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
    }
}

fn cluster_nodes(node: &RedisServer) -> Vec<NodeLine> {
    cluster_nodes_text(node)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let address = fields.get(1)?.split('@').next()?;
            let port = address.rsplit(':').next()?.parse().ok()?;
            let slots = fields
                .iter()
                .skip(8)
                .filter_map(|range| {
                    let (a, b) = range.split_once('-').unwrap_or((range, range));
                    Some((a.parse().ok()?, b.parse().ok()?))
                })
                .collect();
            Some(NodeLine {
                id: fields.first()?.to_string(),
                port,
                flags: fields.get(2)?.to_string(),
                master_id: fields.get(3)?.to_string(),
                slots,
            })
        })
        .collect()
}
