//! Throughput history and worker beacons, for the dashboard.
//!
//! Each worker folds its own counters into Redis about once a second (never
//! per job): the jobs finished since its last fold go into a hash per minute
//! (`P:{stats}:min:<unix minute>`, kept 25 hours) and into all-time totals
//! (`P:{stats}:totals`), and a beacon (`P:{stats}:beacon:<worker>`, expiring
//! after [`BEACON_TTL_MS`]) says what the worker is and how busy it is. All
//! keys share the `{stats}` hash tag, so one fold is one atomic
//! `MULTI`/`EXEC`, also on Redis Cluster.
//!
//! This module owns those keys. It must never touch a queue's keys.

use serde::{Deserialize, Serialize};

use super::{QueueError, RedisQueue};

/// How long a minute bucket is kept: the 24 h history plus an hour.
pub const MINUTE_TTL_MS: i64 = 25 * 3600 * 1000;
/// A beacon not renewed for this long is gone (its worker stopped).
pub const BEACON_TTL_MS: i64 = 15_000;

/// Jobs finished, by outcome; one minute's worth or all-time totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throughput {
    /// Jobs that succeeded.
    pub succeeded: u64,
    /// Jobs that ended dead.
    pub dead: u64,
    /// Failed attempts that will be retried.
    pub retried: u64,
    /// Messages stored as dead letters.
    pub dead_letters: u64,
}

impl Throughput {
    const FIELDS: [&'static str; 4] = ["succeeded", "dead", "retried", "dead_letters"];

    fn values(&self) -> [u64; 4] {
        [self.succeeded, self.dead, self.retried, self.dead_letters]
    }

    fn from_values(values: &[Option<u64>]) -> Throughput {
        let at = |i: usize| values.get(i).copied().flatten().unwrap_or(0);
        Throughput {
            succeeded: at(0),
            dead: at(1),
            retried: at(2),
            dead_letters: at(3),
        }
    }

    /// What `self` (counters now) adds to `earlier` (counters at the last fold).
    pub fn since(&self, earlier: &Throughput) -> Throughput {
        Throughput {
            succeeded: self.succeeded.saturating_sub(earlier.succeeded),
            dead: self.dead.saturating_sub(earlier.dead),
            retried: self.retried.saturating_sub(earlier.retried),
            dead_letters: self.dead_letters.saturating_sub(earlier.dead_letters),
        }
    }

    /// Is zero.
    pub fn is_zero(&self) -> bool {
        self.values() == [0; 4]
    }

    /// Failed attempts: retried ones and final failures.
    pub fn failed(&self) -> u64 {
        self.retried + self.dead
    }
}

/// What a worker says about itself once a second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerBeacon {
    /// The worker id.
    pub worker: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// conveyor version.
    pub version: String,
    /// Start time (unix ms).
    pub started_at_ms: i64,
    /// Time of this beacon (unix ms).
    pub seen_at_ms: i64,
    /// Queues it serves.
    pub queues: Vec<String>,
    /// Processor threads.
    pub processors: usize,
    /// Jobs per processor thread.
    pub concurrency: usize,
    /// `queues.max_in_flight`.
    pub max_in_flight: usize,
    /// Jobs claimed and not yet acknowledged.
    pub in_flight: u64,
    /// Jobs running in handlers.
    pub running: u64,
    /// Claimed jobs waiting for a processor slot.
    pub feed: u64,
    /// The QueueReader's mailbox depth.
    pub mailbox_reader: u64,
    /// The processors' mailbox depth.
    pub mailbox_processors: u64,
    /// The DbWriter's mailbox depth.
    pub mailbox_db_writer: u64,
    /// Rows waiting to be written.
    pub db_buffered: u64,
}

/// The unix minute of a unix-millisecond time.
pub fn minute_of(unix_ms: i64) -> i64 {
    unix_ms.div_euclid(60_000)
}

impl RedisQueue {
    fn stats_key(&self, rest: &str) -> String {
        format!("{}:{{stats}}:{rest}", self.prefix)
    }

    /// Adds `delta` to the minute of `now_ms` and to the totals, and renews
    /// `beacon`, in one atomic step: a fold that fails changed nothing and
    /// can be repeated with the same delta.
    pub async fn fold_stats(
        &self,
        now_ms: i64,
        delta: &Throughput,
        beacon: &WorkerBeacon,
    ) -> Result<(), QueueError> {
        let minute = self.stats_key(&format!("min:{}", minute_of(now_ms)));
        let totals = self.stats_key("totals");
        let index = self.stats_key("beacons");
        let json =
            serde_json::to_string(beacon).map_err(|e| QueueError::Protocol(e.to_string()))?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (field, value) in Throughput::FIELDS.iter().zip(delta.values()) {
            if value > 0 {
                pipe.hincr(&minute, field, value).ignore();
                pipe.hincr(&totals, field, value).ignore();
            }
        }
        if !delta.is_zero() {
            pipe.pexpire(&minute, MINUTE_TTL_MS).ignore();
        }
        pipe.cmd("SET")
            .arg(self.stats_key(&format!("beacon:{}", beacon.worker)))
            .arg(json)
            .arg("PX")
            .arg(BEACON_TTL_MS)
            .ignore();
        pipe.zadd(&index, &beacon.worker, now_ms).ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(now_ms - BEACON_TTL_MS)
            .ignore();
        let () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Jobs finished per minute for `minutes` minutes ending with the
    /// minute of `now_ms` (oldest first): (unix minute, counts).
    pub async fn throughput_history(
        &self,
        now_ms: i64,
        minutes: i64,
    ) -> Result<Vec<(i64, Throughput)>, QueueError> {
        let last = minute_of(now_ms);
        let first = last - minutes.max(1) + 1;
        let mut pipe = redis::pipe();
        for minute in first..=last {
            pipe.cmd("HMGET")
                .arg(self.stats_key(&format!("min:{minute}")))
                .arg(&Throughput::FIELDS[..]);
        }
        let rows: Vec<Vec<Option<u64>>> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok((first..=last)
            .zip(rows)
            .map(|(minute, values)| (minute, Throughput::from_values(&values)))
            .collect())
    }

    /// All-time totals of every worker's folds.
    pub async fn throughput_totals(&self) -> Result<Throughput, QueueError> {
        let values: Vec<Option<u64>> = redis::cmd("HMGET")
            .arg(self.stats_key("totals"))
            .arg(&Throughput::FIELDS[..])
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(Throughput::from_values(&values))
    }

    /// Beacons of the workers seen within [`BEACON_TTL_MS`], by worker id.
    pub async fn worker_beacons(&self) -> Result<Vec<WorkerBeacon>, QueueError> {
        let workers: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.stats_key("beacons"))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn.clone())
            .await?;
        if workers.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for worker in &workers {
            pipe.get(self.stats_key(&format!("beacon:{worker}")));
        }
        let beacons: Vec<Option<String>> = pipe.query_async(&mut self.conn.clone()).await?;
        let mut out: Vec<WorkerBeacon> = beacons
            .into_iter()
            .flatten()
            .filter_map(|json| serde_json::from_str(&json).ok())
            .collect();
        out.sort_by(|a, b| a.worker.cmp(&b.worker));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_are_the_growth_since_the_last_fold() {
        let earlier = Throughput {
            succeeded: 10,
            dead: 1,
            retried: 2,
            dead_letters: 0,
        };
        let now = Throughput {
            succeeded: 15,
            dead: 1,
            retried: 5,
            dead_letters: 1,
        };
        let delta = now.since(&earlier);
        assert_eq!(delta.values(), [5, 0, 3, 1]);
        assert_eq!(delta.failed(), 3);
        assert!(now.since(&now).is_zero());
    }

    #[test]
    fn missing_fields_read_as_zero() {
        let t = Throughput::from_values(&[Some(3), None]);
        assert_eq!(t.values(), [3, 0, 0, 0]);
    }

    #[test]
    fn minutes_round_down_also_before_1970() {
        assert_eq!(minute_of(119_999), 1);
        assert_eq!(minute_of(-1), -1);
    }
}
