//! Writes acknowledged by Redis replicas: every command or pipeline sent
//! through a [`ReplicaWait`] connection is followed, in the same pipeline on
//! the same connection to the same master, by `WAIT <replicas> <timeout>`.
//!
//! This module owns that pairing and the count of replicas that
//! acknowledged. It must never send the `WAIT` apart from the writes it
//! covers: a `WAIT` on another connection, or on a master elected after a
//! failover, would count replicas that never received them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use super::connection::RedisConn;
use super::RedisQueue;

/// A connection that appends `WAIT` to everything it sends.
#[derive(Debug)]
pub struct ReplicaWait {
    inner: RedisConn,
    replicas: u32,
    timeout: Duration,
    /// The fewest replicas any `WAIT` of this connection reported
    /// (`i64::MAX` while nothing was sent).
    acknowledged: Arc<AtomicI64>,
}

/// How many replicas acknowledged the writes of one [`RedisQueue`] made by
/// [`RedisQueue::acknowledged_by`].
#[derive(Debug, Clone)]
pub struct ReplicaAcks {
    wanted: u32,
    acknowledged: Arc<AtomicI64>,
}

impl ReplicaAcks {
    /// Replicas asked for.
    pub fn wanted(&self) -> u32 {
        self.wanted
    }

    /// The fewest replicas that acknowledged one of the writes; `None` when
    /// nothing was sent.
    pub fn fewest(&self) -> Option<i64> {
        Some(self.acknowledged.load(Ordering::Acquire)).filter(|n| *n != i64::MAX)
    }

    /// Whether every write reached `wanted` replicas (or nothing was sent).
    pub fn all_acknowledged(&self) -> bool {
        self.fewest().is_none_or(|n| n >= i64::from(self.wanted))
    }
}

impl RedisQueue {
    /// This queue client with every write followed by `WAIT replicas
    /// timeout` on the same connection, and the handle that reports how many
    /// replicas acknowledged. Meant for one request's writes: build one per
    /// request. A write whose replicas do not answer in time is still done;
    /// only the count says so.
    pub fn acknowledged_by(&self, replicas: u32, timeout: Duration) -> (RedisQueue, ReplicaAcks) {
        let acknowledged = Arc::new(AtomicI64::new(i64::MAX));
        let conn = RedisConn::Replicated(Arc::new(ReplicaWait {
            inner: self.conn.clone(),
            replicas,
            timeout,
            acknowledged: acknowledged.clone(),
        }));
        let queue = RedisQueue {
            target: self.target.clone(),
            conn,
            prefix: self.prefix.clone(),
        };
        let acks = ReplicaAcks {
            wanted: replicas,
            acknowledged,
        };
        (queue, acks)
    }
}

impl ReplicaWait {
    /// The `WAIT` that follows every send.
    fn wait_cmd(&self) -> Cmd {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(self.replicas).arg(self.timeout.as_millis() as u64);
        cmd
    }

    /// Sends `pipeline` and the `WAIT` as one pipeline; records the count
    /// and returns the pipeline's own replies.
    async fn send(&self, pipeline: Pipeline) -> RedisResult<Vec<Value>> {
        let mut whole = pipeline;
        whole.add_command(self.wait_cmd());
        let mut values = self.inner.whole_pipeline(&whole).await?;
        match values.pop() {
            Some(Value::Int(count)) => {
                self.acknowledged.fetch_min(count, Ordering::AcqRel);
                Ok(values)
            }
            other => Err(unexpected(format!("WAIT answered {other:?}"))),
        }
    }

    pub(super) fn db(&self) -> i64 {
        self.inner.get_db()
    }

    pub(super) fn command<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut pipeline = redis::pipe();
            pipeline.add_command(cmd.clone());
            let mut values = self.send(pipeline).await?;
            values
                .pop()
                .ok_or_else(|| unexpected("no reply to a command".into()))
        })
    }

    /// A pipeline; an atomic one (the only kind sent with an `offset`) is
    /// spelled out as `MULTI … EXEC` so the `WAIT` can follow its `EXEC`.
    pub(super) fn commands<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut plain = redis::pipe();
            let atomic = offset > 0;
            if atomic {
                plain.cmd("MULTI");
            }
            for cmd in pipeline.cmd_iter() {
                plain.add_command(cmd.clone());
            }
            if atomic {
                plain.cmd("EXEC");
            }
            let values = self.send(plain).await?;
            values
                .get(offset..offset + count)
                .map(<[Value]>::to_vec)
                .ok_or_else(|| unexpected(format!("{} replies to a pipeline", values.len())))
        })
    }
}

fn unexpected(detail: String) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected reply",
        detail,
    ))
}
