//! Monitor: the periodic `conveyor::mailbox` log line.
//!
//! It owns observability in the logs: every `metrics.log_interval_ms` one
//! INFO line with each actor's mailbox depth and in-flight counts, each
//! queue's depth in Redis and the throughput since the previous line, and a
//! WARN line for every mailbox above `metrics.mailbox_high_water`. It must
//! never change anything: it only reads counters and queue depths.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::metrics::Metrics;
use crate::redis_queue::{QueueDepths, QueueError, RedisQueue};

pub(crate) struct Monitor {
    redis: RedisQueue,
    queues: Vec<Arc<str>>,
    metrics: Arc<Metrics>,
    interval: Duration,
    high_water: u64,
    max_in_flight: usize,
    processor_slots: usize,
    last: Snapshot,
}

/// Totals at the previous line, for the rates.
struct Snapshot {
    at: Instant,
    claimed: u64,
    committed: u64,
}

impl Monitor {
    pub(crate) fn new(
        redis: RedisQueue,
        queues: Vec<Arc<str>>,
        metrics: Arc<Metrics>,
        settings: &crate::config::Settings,
    ) -> Monitor {
        Monitor {
            redis,
            queues,
            metrics,
            interval: Duration::from_millis(settings.metrics.log_interval_ms),
            high_water: settings.metrics.mailbox_high_water,
            max_in_flight: settings.queues.max_in_flight,
            processor_slots: settings.processor_slots(),
            last: Snapshot {
                at: Instant::now(),
                claimed: 0,
                committed: 0,
            },
        }
    }

    fn report(&mut self, ctx: &mut Context<Self>) {
        let redis = self.redis.clone();
        let queues = self.queues.clone();
        let depths = async move {
            let mut out = Vec::with_capacity(queues.len());
            for queue in queues {
                let depth = redis.depths(&queue).await;
                out.push((queue, depth));
            }
            out
        };
        ctx.spawn(
            depths
                .into_actor(self)
                .map(|depths, act, _| act.log_line(&depths)),
        );
    }

    fn log_line(&mut self, depths: &[(Arc<str>, Result<QueueDepths, QueueError>)]) {
        let m = &self.metrics;
        let mailboxes = [
            ("queue_reader", m.reader_mailbox.depth()),
            ("processors", m.processor_mailbox.depth()),
            ("db_writer", m.db_writer_mailbox.depth()),
        ];
        let elapsed = self.last.at.elapsed().as_secs_f64().max(1e-3);
        let claimed = Metrics::get(&m.claimed_total);
        let committed = Metrics::get(&m.committed_total);
        let mut line = String::from("mailbox");
        for (name, depth) in mailboxes {
            let _ = write!(line, " {name}={depth}");
        }
        let _ = write!(
            line,
            " | in_flight={}/{} feed={} running={}/{} db_buffered={} db_flushing={}",
            Metrics::get(&m.in_flight),
            self.max_in_flight,
            Metrics::get(&m.feed_depth),
            Metrics::get(&m.running),
            self.processor_slots,
            Metrics::get(&m.db_buffered),
            Metrics::get(&m.db_flushing),
        );
        for (queue, depth) in depths {
            match depth {
                Ok(d) => {
                    let _ = write!(
                        line,
                        " | queue {queue}: pending={} running={} scheduled={}",
                        d.pending, d.running, d.scheduled
                    );
                }
                Err(error) => {
                    let _ = write!(line, " | queue {queue}: depth unknown ({error})");
                }
            }
        }
        let limited = m.limited.by_limiter();
        if !limited.is_empty() {
            line.push_str(" | limited:");
            for (limiter, n) in limited {
                let _ = write!(line, " {limiter}={n}");
            }
        }
        let _ = write!(
            line,
            " | last {:.1}s: claimed={} committed={} ({:.0}/s) | totals: succeeded={} dead={} cancelled={} retried={} dead_letters={} panics={}",
            elapsed,
            claimed - self.last.claimed,
            committed - self.last.committed,
            (committed - self.last.committed) as f64 / elapsed,
            Metrics::get(&m.succeeded_total),
            Metrics::get(&m.dead_total),
            Metrics::get(&m.cancelled_total),
            Metrics::get(&m.retried_total),
            Metrics::get(&m.dead_letters_total),
            Metrics::get(&m.panics_total),
        );
        if let Some(problem) = m.blocker.problem() {
            let _ = write!(line, " | BLOCKED (claiming paused): {problem}");
            log::error!(target: "conveyor::mailbox", "{line}");
        } else {
            log::info!(target: "conveyor::mailbox", "{line}");
        }
        for warning in high_water_warnings(&mailboxes, self.high_water) {
            log::warn!(target: "conveyor::mailbox", "{warning}");
        }
        self.last = Snapshot {
            at: Instant::now(),
            claimed,
            committed,
        };
    }
}

/// One warning per mailbox deeper than `high_water`.
fn high_water_warnings(mailboxes: &[(&str, u64)], high_water: u64) -> Vec<String> {
    mailboxes
        .iter()
        .filter(|(_, depth)| *depth > high_water)
        .map(|(name, depth)| {
            format!("mailbox of {name} holds {depth} messages, above metrics.mailbox_high_water = {high_water}: it cannot keep up")
        })
        .collect()
}

impl Actor for Monitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |act, ctx| act.report(ctx));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mailboxes_above_the_high_water_mark_warn() {
        let mailboxes = [("queue_reader", 3), ("processors", 201), ("db_writer", 200)];
        let warnings = high_water_warnings(&mailboxes, 200);
        assert_eq!(
            warnings,
            vec!["mailbox of processors holds 201 messages, above metrics.mailbox_high_water = 200: it cannot keep up"]
        );
    }
}
