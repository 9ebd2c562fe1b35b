//! The ceiling: what the servers alone take, measured in the same run and
//! on the same servers as the workloads, so a workload's jobs/s can be read
//! as a fraction of it instead of as an absolute number that changes with
//! the machine and the day.
//!
//! - MariaDB: `--ceiling-rows` rows written as 1000-row multi-row INSERTs
//!   (text protocol, autocommit) into a narrow scratch table
//!   `(id VARCHAR(64) PRIMARY KEY, v INT)` → rows/s.
//! - Redis: `--ceiling-rows` LPUSHes, then as many RPOPs, each sent in
//!   pipelines of 1000 single-element commands to a scratch list → commands/s.
//!
//! This module owns the scratch table and the scratch list. It must never
//! touch conveyor's tables or queues, and never leave either scratch behind.

use std::time::Instant;

use mysql_async::prelude::Queryable as _;
use serde::Serialize;

use super::{Bench, Report};

/// Rows per INSERT statement and commands per Redis pipeline.
const CHUNK: usize = 1000;

/// The servers' bare rates.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Ceiling {
    /// Rows per second MariaDB took as 1000-row INSERTs into a narrow table.
    pub(super) mariadb_rows_per_s: f64,
    /// Pipelined single-element LPUSH commands per second.
    pub(super) redis_lpush_per_s: f64,
    /// Pipelined RPOP commands per second.
    pub(super) redis_rpop_per_s: f64,
}

impl Bench {
    /// Measures the ceiling (the scratch table and list are removed even
    /// when a measurement fails).
    pub(super) async fn ceiling(&self) -> anyhow::Result<Report> {
        let rows = self.args.ceiling_rows.max(1);
        let table = format!("conveyor_bench_ceiling_{:08x}", rand::random::<u32>());
        let inserted = self.mariadb_ceiling(&table, rows).await;
        let dropped = self.drop_scratch_table(&table).await;
        let mariadb_seconds = inserted?;
        dropped?;
        let key = format!("conveyor:bench-ceiling-{:08x}", rand::random::<u32>());
        let redis = self.redis_ceiling(&key, rows).await;
        let deleted = self.delete_scratch_list(&key).await;
        let (push_seconds, pop_seconds) = redis?;
        deleted?;
        let ceiling = Ceiling {
            mariadb_rows_per_s: rows as f64 / mariadb_seconds,
            redis_lpush_per_s: rows as f64 / push_seconds,
            redis_rpop_per_s: rows as f64 / pop_seconds,
        };
        Ok(Report {
            workload: "ceiling",
            jobs: rows,
            seconds: mariadb_seconds,
            jobs_per_s: ceiling.mariadb_rows_per_s,
            config: format!(
                "MariaDB {CHUNK}-row INSERTs into (id VARCHAR(64) PK, v INT): {:.0} rows/s; \
                 Redis pipelined LPUSH {:.0}/s, RPOP {:.0}/s",
                ceiling.mariadb_rows_per_s, ceiling.redis_lpush_per_s, ceiling.redis_rpop_per_s
            ),
            ceiling: Some(ceiling),
            ..Report::default()
        })
    }

    /// Creates the scratch table and times `rows` rows into it.
    async fn mariadb_ceiling(&self, table: &str, rows: usize) -> anyhow::Result<f64> {
        let mut conn = self.pool.get_conn().await?;
        conn.query_drop(format!(
            "CREATE TABLE {table} (id VARCHAR(64) NOT NULL PRIMARY KEY, v INT NOT NULL) \
             ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
        ))
        .await?;
        // Statements are built before the clock starts: only the server's
        // work (and the round trip) is timed.
        let statements: Vec<String> = (0..rows)
            .step_by(CHUNK)
            .map(|start| insert_statement(table, start, (start + CHUNK).min(rows)))
            .collect();
        let started = Instant::now();
        for statement in &statements {
            conn.query_drop(statement).await?;
        }
        Ok(started.elapsed().as_secs_f64())
    }

    async fn drop_scratch_table(&self, table: &str) -> anyhow::Result<()> {
        let mut conn = self.pool.get_conn().await?;
        conn.query_drop(format!("DROP TABLE IF EXISTS {table}"))
            .await?;
        Ok(())
    }

    /// Times `rows` LPUSHes, then `rows` RPOPs, in pipelines of [`CHUNK`].
    async fn redis_ceiling(&self, key: &str, rows: usize) -> anyhow::Result<(f64, f64)> {
        let mut conn = self.redis.waiter().await?;
        let value = vec![b'x'; 64];
        let started = Instant::now();
        for start in (0..rows).step_by(CHUNK) {
            let mut pipe = redis::pipe();
            for _ in start..(start + CHUNK).min(rows) {
                pipe.lpush(key, &value).ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
        let pushed = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut popped = 0;
        for start in (0..rows).step_by(CHUNK) {
            let mut pipe = redis::pipe();
            for _ in start..(start + CHUNK).min(rows) {
                pipe.rpop(key, None);
            }
            let values: Vec<Option<Vec<u8>>> = pipe.query_async(&mut conn).await?;
            popped += values.iter().flatten().count();
        }
        let pops = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            popped == rows,
            "ceiling: popped {popped} of {rows} from Redis"
        );
        Ok((pushed, pops))
    }

    async fn delete_scratch_list(&self, key: &str) -> anyhow::Result<()> {
        let mut conn = self.redis.waiter().await?;
        redis::cmd("DEL")
            .arg(key)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
}

/// One multi-row INSERT of rows `start..end` (ids 64 characters at most).
fn insert_statement(table: &str, start: usize, end: usize) -> String {
    let mut sql = format!("INSERT INTO {table} (id, v) VALUES ");
    for i in start..end {
        if i > start {
            sql.push(',');
        }
        sql.push_str(&format!("('ceiling-{i:012}',{})", i % 1000));
    }
    sql
}

/// Sets "fraction of the MariaDB ceiling" on every W1 report when the run
/// measured the ceiling.
pub(super) fn apply_fraction(reports: &mut [Report]) {
    let Some(rows_per_s) = reports
        .iter()
        .find_map(|r| r.ceiling.map(|c| c.mariadb_rows_per_s))
    else {
        return;
    };
    for report in reports.iter_mut().filter(|r| r.workload.starts_with("W1")) {
        report.fraction_of_mariadb_ceiling = Some(report.jobs_per_s / rows_per_s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_statement_lists_each_row_once() {
        let sql = insert_statement("t", 5, 8);
        assert_eq!(
            sql,
            "INSERT INTO t (id, v) VALUES ('ceiling-000000000005',5),\
             ('ceiling-000000000006',6),('ceiling-000000000007',7)"
        );
    }

    #[test]
    fn w1_gets_its_fraction_of_the_ceiling() {
        let mut reports = vec![
            Report {
                workload: "W1 throughput",
                jobs_per_s: 250.0,
                ..Report::default()
            },
            Report {
                workload: "ceiling",
                ceiling: Some(Ceiling {
                    mariadb_rows_per_s: 1000.0,
                    redis_lpush_per_s: 1.0,
                    redis_rpop_per_s: 1.0,
                }),
                ..Report::default()
            },
            Report {
                workload: "W2 I/O concurrency",
                jobs_per_s: 100.0,
                ..Report::default()
            },
        ];
        apply_fraction(&mut reports);
        assert_eq!(reports[0].fraction_of_mariadb_ceiling, Some(0.25));
        assert_eq!(reports[2].fraction_of_mariadb_ceiling, None);
    }

    #[test]
    fn without_a_ceiling_nothing_is_set() {
        let mut reports = vec![Report {
            workload: "W1 throughput",
            jobs_per_s: 250.0,
            ..Report::default()
        }];
        apply_fraction(&mut reports);
        assert_eq!(reports[0].fraction_of_mariadb_ceiling, None);
    }
}
