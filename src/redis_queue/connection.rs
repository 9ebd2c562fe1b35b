//! The connection under [`RedisQueue`](super::RedisQueue): one Redis server
//! (`redis.url`) or a Redis Cluster (`redis.cluster_nodes`), behind one type
//! that every command and script runs on.
//!
//! This module owns opening, reopening and routing. It must never hide an
//! error (a failed command is returned to its caller, who keeps the job safe
//! and retries), and never route a command by anything but its keys: every
//! script touches the keys of one hash tag, so the cluster client sends it
//! to the one master that owns that slot, following MOVED and ASK replies
//! and new masters after a failover.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use tokio::sync::OnceCell;

/// A cloneable connection that opens on first use and reopens after failures.
#[derive(Clone)]
pub enum RedisConn {
    /// One server, through a connection manager that reconnects.
    Single(ConnectionManager),
    /// A cluster, through the cluster client's connection.
    Cluster(LazyCluster),
}

/// A cluster connection opened on first use (so a worker can start while
/// the cluster is unreachable); a failed first attempt is retried by the
/// next command.
#[derive(Clone)]
pub struct LazyCluster(Arc<(ClusterClient, OnceCell<ClusterConnection>)>);

impl std::fmt::Debug for LazyCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LazyCluster")
    }
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisConn::Single(_) => f.write_str("RedisConn::Single"),
            RedisConn::Cluster(_) => f.write_str("RedisConn::Cluster"),
        }
    }
}

impl LazyCluster {
    pub fn new(client: ClusterClient) -> LazyCluster {
        LazyCluster(Arc::new((client, OnceCell::new())))
    }

    async fn connection(&self) -> RedisResult<ClusterConnection> {
        let (client, cell) = &*self.0;
        let conn = cell
            .get_or_try_init(|| client.get_async_connection())
            .await?;
        Ok(conn.clone())
    }
}

impl RedisConn {
    /// A lazy connection to one server.
    pub fn single(
        client: &redis::Client,
        response_timeout: Option<Duration>,
        connection_timeout: Duration,
    ) -> RedisResult<RedisConn> {
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(response_timeout)
            .set_connection_timeout(Some(connection_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        Ok(RedisConn::Single(ConnectionManager::new_lazy_with_config(
            client.clone(),
            config,
        )?))
    }
}

/// A plain pipeline on a cluster may hold commands for several queues, so
/// several slots and masters (Redis refuses one that crosses slots): each
/// command goes to its own master, all at once. The first error is the
/// pipeline's error, as on one server.
async fn split_across_slots(
    conn: &ClusterConnection,
    pipeline: &Pipeline,
) -> RedisResult<Vec<Value>> {
    let requests = pipeline.cmd_iter().map(|cmd| {
        let mut conn = conn.clone();
        async move { conn.req_packed_command(cmd).await }
    });
    futures::future::join_all(requests)
        .await
        .into_iter()
        .collect()
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(conn) => conn.req_packed_command(cmd),
            RedisConn::Cluster(lazy) => Box::pin(async move {
                let mut conn = lazy.connection().await?;
                conn.req_packed_command(cmd).await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(lazy) => Box::pin(async move {
                let mut conn = lazy.connection().await?;
                if offset == 0 && count == pipeline.len() {
                    split_across_slots(&conn, pipeline).await
                } else {
                    // A transaction (MULTI/EXEC): its keys share one slot.
                    conn.req_packed_commands(pipeline, offset, count).await
                }
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(conn) => conn.get_db(),
            RedisConn::Cluster(_) => 0,
        }
    }
}
