//! Counters shared by the actors: mailbox depths, in-flight jobs, totals, and
//! the Prometheus collectors `/metrics` exposes.
//!
//! This module owns the only state the actors share: atomics (the actors
//! write, the Monitor log line and the API read) and, when a worker asks for
//! them, Prometheus collectors recorded per job. It must never hold a lock an
//! actor would wait on: the collectors are atomics too (a label lookup takes
//! the crate's short read lock, never across an await), and the only mutex
//! here is taken by scrapes alone.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::job::{FinalStatus, ResultRow};

/// Messages sent to and handled by one actor (actix has no public mailbox
/// length, so the depth is counted: sent − handled).
#[derive(Debug, Default)]
pub struct MailboxGauge {
    sent: AtomicU64,
    handled: AtomicU64,
}

impl MailboxGauge {
    pub fn on_send(&self) {
        self.sent.fetch_add(1, Relaxed);
    }

    pub fn on_handle(&self) {
        self.handled.fetch_add(1, Relaxed);
    }

    /// Messages waiting in the mailbox (or being handled).
    pub fn depth(&self) -> u64 {
        self.sent
            .load(Relaxed)
            .saturating_sub(self.handled.load(Relaxed))
    }
}

/// Every counter of one worker process.
#[derive(Debug, Default)]
pub struct Metrics {
    pub reader_mailbox: MailboxGauge,
    pub processor_mailbox: MailboxGauge,
    pub db_writer_mailbox: MailboxGauge,
    /// Jobs claimed and not yet acknowledged or rescheduled.
    pub in_flight: AtomicU64,
    /// Jobs inside a processor right now.
    pub running: AtomicU64,
    /// Claimed jobs waiting in the feed for a processor slot.
    pub feed_depth: AtomicU64,
    /// Final outcomes waiting in the DbWriter for their batch.
    pub db_buffered: AtomicU64,
    /// Batches being written to MySQL now.
    pub db_flushing: AtomicU64,
    pub claimed_total: AtomicU64,
    pub succeeded_total: AtomicU64,
    pub dead_total: AtomicU64,
    pub dead_letters_total: AtomicU64,
    pub retried_total: AtomicU64,
    /// Jobs that ended `cancelled`.
    pub cancelled_total: AtomicU64,
    /// Rows committed to MySQL (results and dead letters).
    pub committed_total: AtomicU64,
    pub acked_total: AtomicU64,
    pub db_batches_total: AtomicU64,
    pub db_errors_total: AtomicU64,
    pub panics_total: AtomicU64,
    /// A MySQL problem that retrying cannot fix, while it lasts.
    pub(crate) blocker: crate::health::Blocker,
    /// Jobs limiters hold back, from the latest claims.
    pub limited: crate::limiters::waiting::LimitedJobs,
    /// Prometheus collectors; `None` (the default) records nothing.
    pub collectors: Option<Collectors>,
}

/// The Prometheus collectors could not be built (a name the crate refuses).
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn sub(counter: &AtomicU64, n: u64) {
        // Saturating: a counter is never meant to go below zero, and a
        // miscount must not wrap into a huge number in the logs.
        let _ = counter.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n)));
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    /// Counters with Prometheus collectors. `kinds` are the registered job
    /// kinds: any other kind is labelled `unregistered`, so producers cannot
    /// create series at will.
    pub fn with_prometheus(kinds: &[&str]) -> Result<Metrics, MetricsError> {
        Ok(Metrics {
            collectors: Some(Collectors::new(kinds)?),
            ..Metrics::default()
        })
    }

    /// A job's final result: succeeded or dead, its duration and latency.
    pub fn record_final(&self, row: &ResultRow) {
        if let Some(c) = &self.collectors {
            c.record_final(row);
        }
    }

    /// A message that could not be a job.
    pub fn record_dead_letter(&self, queue: &str) {
        if let Some(c) = &self.collectors {
            c.dead_letters.with_label_values(&[queue]).inc();
        }
    }

    /// A failed attempt that will be retried.
    pub fn record_retry(&self, kind: &str, queue: &str) {
        if let Some(c) = &self.collectors {
            c.retried
                .with_label_values(&[c.kind_label(kind), queue])
                .inc();
        }
    }

    /// A committed DB batch: its rows and how long it took, retries included.
    pub fn record_db_batch(&self, rows: usize, seconds: f64) {
        if let Some(c) = &self.collectors {
            c.db_batch_rows.observe(rows as f64);
            c.db_flush_seconds.observe(seconds);
        }
    }

    /// What one advance of schedule `name` did with its due ticks.
    pub fn record_ticks(&self, name: &str, enqueued: u64, missed: u64, skipped: u64) {
        if let Some(c) = &self.collectors {
            let s = &c.schedules;
            for (counter, n) in [
                (&s.enqueued, enqueued),
                (&s.missed, missed),
                (&s.skipped, skipped),
            ] {
                if n > 0 {
                    counter.with_label_values(&[name]).inc_by(n);
                }
            }
        }
    }

    /// Every Prometheus family of this worker, the atomics' values included.
    pub fn gather(&self) -> Vec<MetricFamily> {
        match &self.collectors {
            Some(c) => {
                c.mirror(self);
                c.registry.gather()
            }
            None => Vec::new(),
        }
    }
}

/// Label for jobs whose kind no handler is registered under.
pub(crate) const UNREGISTERED_KIND: &str = "unregistered";

/// Seconds: from a millisecond job up to hours of `run_at` delays.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0, 21600.0, 86400.0,
];
const DB_ROWS_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];
const DB_SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A worker's Prometheus collectors in a registry of their own.
#[derive(Debug)]
pub struct Collectors {
    registry: Registry,
    kinds: HashSet<String>,
    succeeded: IntCounterVec,
    dead: IntCounterVec,
    cancelled: IntCounterVec,
    duplicate: IntCounterVec,
    retried: IntCounterVec,
    dead_letters: IntCounterVec,
    duration: HistogramVec,
    latency: HistogramVec,
    db_batch_rows: Histogram,
    db_flush_seconds: Histogram,
    schedules: ScheduleCounters,
    mirrored: Mirrored,
    /// Serialises scrapes while they copy the atomics (actors never take it).
    mirror_lock: Mutex<()>,
}

/// Ticks of each schedule, by what became of them.
#[derive(Debug)]
struct ScheduleCounters {
    enqueued: IntCounterVec,
    missed: IntCounterVec,
    skipped: IntCounterVec,
}

impl ScheduleCounters {
    fn new(reg: &Reg<'_>) -> prometheus::Result<ScheduleCounters> {
        let labels = &["schedule"];
        Ok(ScheduleCounters {
            enqueued: reg.counter_vec(
                "conveyor_schedule_ticks_enqueued_total",
                "Schedule ticks enqueued as jobs (by this worker).",
                labels,
            )?,
            missed: reg.counter_vec(
                "conveyor_schedule_ticks_missed_total",
                "Schedule ticks missed while no worker ran that got no job (catch_up).",
                labels,
            )?,
            skipped: reg.counter_vec(
                "conveyor_schedule_ticks_skipped_total",
                "Schedule ticks dropped because the previous tick was unfinished (overlap = skip).",
                labels,
            )?,
        })
    }
}

/// Collectors whose values are copied from the atomics at each scrape.
#[derive(Debug)]
struct Mirrored {
    mailbox: IntGaugeVec,
    in_flight: IntGauge,
    running: IntGauge,
    db_buffered: IntGauge,
    db_flushing: IntGauge,
    claimed: IntCounter,
    acked: IntCounter,
    db_errors: IntCounter,
    panics: IntCounter,
    limited: IntGaugeVec,
}

impl Collectors {
    fn new(kinds: &[&str]) -> Result<Collectors, MetricsError> {
        let registry = Registry::new();
        let reg = Reg(&registry);
        let kind_queue = &["kind", "queue"];
        Ok(Collectors {
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            succeeded: reg.counter_vec(
                "conveyor_jobs_succeeded_total",
                "Jobs that succeeded.",
                kind_queue,
            )?,
            dead: reg.counter_vec(
                "conveyor_jobs_dead_total",
                "Jobs that ended dead.",
                kind_queue,
            )?,
            cancelled: reg.counter_vec(
                "conveyor_jobs_cancelled_total",
                "Jobs that ended cancelled.",
                kind_queue,
            )?,
            duplicate: reg.counter_vec(
                "conveyor_jobs_duplicate_total",
                "Pushed jobs refused because another job held their unique_key (duplicate rows).",
                kind_queue,
            )?,
            retried: reg.counter_vec(
                "conveyor_jobs_retried_total",
                "Failed attempts that will be retried.",
                kind_queue,
            )?,
            dead_letters: reg.counter_vec(
                "conveyor_dead_letters_total",
                "Messages stored as dead letters.",
                &["queue"],
            )?,
            duration: reg.histogram_vec(
                "conveyor_job_duration_seconds",
                "Run time of a job's last attempt.",
                &["kind"],
                SECONDS_BUCKETS,
            )?,
            latency: reg.histogram_vec(
                "conveyor_job_latency_seconds",
                "From enqueued_at to the job's final result.",
                &["kind"],
                SECONDS_BUCKETS,
            )?,
            db_batch_rows: reg.histogram(
                "conveyor_db_batch_rows",
                "Rows per committed MySQL batch.",
                DB_ROWS_BUCKETS,
            )?,
            db_flush_seconds: reg.histogram(
                "conveyor_db_flush_seconds",
                "Time to commit one MySQL batch, retries included.",
                DB_SECONDS_BUCKETS,
            )?,
            schedules: ScheduleCounters::new(&reg)?,
            mirrored: Mirrored {
                mailbox: reg.gauge_vec(
                    "conveyor_mailbox_depth",
                    "Messages waiting in an actor's mailbox.",
                    &["actor"],
                )?,
                in_flight: reg.gauge(
                    "conveyor_jobs_in_flight",
                    "Jobs claimed and not yet acknowledged or rescheduled.",
                )?,
                running: reg.gauge("conveyor_jobs_running", "Jobs inside a processor now.")?,
                db_buffered: reg.gauge(
                    "conveyor_db_buffered_rows",
                    "Final outcomes waiting for their MySQL batch.",
                )?,
                db_flushing: reg.gauge(
                    "conveyor_db_flushing_batches",
                    "MySQL batches being written now.",
                )?,
                claimed: reg.counter("conveyor_jobs_claimed_total", "Jobs claimed from Redis.")?,
                acked: reg.counter(
                    "conveyor_jobs_acked_total",
                    "Jobs acknowledged in Redis after their row committed.",
                )?,
                db_errors: reg.counter(
                    "conveyor_db_errors_total",
                    "Failed attempts to write a MySQL batch.",
                )?,
                panics: reg.counter(
                    "conveyor_handler_panics_total",
                    "Handler panics (each a failed attempt).",
                )?,
                limited: reg.gauge_vec(
                    "conveyor_limited_jobs",
                    "Jobs waiting only because a limiter holds them back, as this worker's latest claims saw them.",
                    &["limiter"],
                )?,
            },
            registry,
            mirror_lock: Mutex::new(()),
        })
    }

    fn kind_label<'a>(&self, kind: &'a str) -> &'a str {
        if self.kinds.contains(kind) {
            kind
        } else {
            UNREGISTERED_KIND
        }
    }

    fn record_final(&self, row: &ResultRow) {
        let kind = self.kind_label(&row.kind);
        let counter = match row.status {
            FinalStatus::Succeeded => &self.succeeded,
            FinalStatus::Dead => &self.dead,
            FinalStatus::Cancelled => &self.cancelled,
            FinalStatus::Duplicate => &self.duplicate,
        };
        counter.with_label_values(&[kind, &row.handle.queue]).inc();
        let seconds_since = |start_ms: i64| (row.finished_at_ms - start_ms).max(0) as f64 / 1000.0;
        if let Some(started) = row.started_at_ms {
            self.duration
                .with_label_values(&[kind])
                .observe(seconds_since(started));
        }
        if let Some(enqueued) = row.enqueued_at_ms.filter(|ms| *ms > 0) {
            self.latency
                .with_label_values(&[kind])
                .observe(seconds_since(enqueued));
        }
    }

    /// Copies the atomics into their collectors.
    fn mirror(&self, metrics: &Metrics) {
        let _scrape = self
            .mirror_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let m = &self.mirrored;
        for (actor, gauge) in [
            ("queue_reader", &metrics.reader_mailbox),
            ("processors", &metrics.processor_mailbox),
            ("db_writer", &metrics.db_writer_mailbox),
        ] {
            m.mailbox
                .with_label_values(&[actor])
                .set(gauge_value(gauge.depth()));
        }
        m.in_flight
            .set(gauge_value(Metrics::get(&metrics.in_flight)));
        m.running.set(gauge_value(Metrics::get(&metrics.running)));
        m.db_buffered
            .set(gauge_value(Metrics::get(&metrics.db_buffered)));
        m.db_flushing
            .set(gauge_value(Metrics::get(&metrics.db_flushing)));
        m.limited.reset();
        for (limiter, n) in metrics.limited.by_limiter() {
            m.limited.with_label_values(&[&limiter]).set(gauge_value(n));
        }
        for (counter, total) in [
            (&m.claimed, &metrics.claimed_total),
            (&m.acked, &metrics.acked_total),
            (&m.db_errors, &metrics.db_errors_total),
            (&m.panics, &metrics.panics_total),
        ] {
            counter.inc_by(Metrics::get(total).saturating_sub(counter.get()));
        }
    }
}

fn gauge_value(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Builds collectors and registers them in one registry.
pub(crate) struct Reg<'a>(pub(crate) &'a Registry);

impl Reg<'_> {
    pub(crate) fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        let collector = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(collector.clone()))?;
        Ok(collector)
    }

    pub(crate) fn counter(&self, name: &str, help: &str) -> prometheus::Result<IntCounter> {
        let collector = IntCounter::new(name, help)?;
        self.0.register(Box::new(collector.clone()))?;
        Ok(collector)
    }

    pub(crate) fn gauge(&self, name: &str, help: &str) -> prometheus::Result<IntGauge> {
        let collector = IntGauge::new(name, help)?;
        self.0.register(Box::new(collector.clone()))?;
        Ok(collector)
    }

    pub(crate) fn gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntGaugeVec> {
        let collector = IntGaugeVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(collector.clone()))?;
        Ok(collector)
    }

    pub(crate) fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> prometheus::Result<Histogram> {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        let collector = Histogram::with_opts(opts)?;
        self.0.register(Box::new(collector.clone()))?;
        Ok(collector)
    }

    pub(crate) fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> prometheus::Result<HistogramVec> {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        let collector = HistogramVec::new(opts, labels)?;
        self.0.register(Box::new(collector.clone()))?;
        Ok(collector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobHandle;

    fn row(kind: &str, status: FinalStatus) -> ResultRow {
        ResultRow {
            handle: JobHandle {
                queue: "default".into(),
                token: "t-1".into(),
            },
            id: "j1".into(),
            kind: kind.into(),
            status,
            attempts: 1,
            output: None,
            error: None,
            enqueued_at_ms: Some(1_000),
            started_at_ms: Some(1_500),
            finished_at_ms: 2_000,
            message: None,
        }
    }

    fn family<'a>(families: &'a [MetricFamily], name: &str) -> &'a MetricFamily {
        families
            .iter()
            .find(|f| f.name() == name)
            .unwrap_or_else(|| panic!("no family {name}"))
    }

    #[test]
    fn outcomes_are_counted_per_kind_and_queue() {
        let metrics = Metrics::with_prometheus(&["noop"]).expect("collectors build");
        metrics.record_final(&row("noop", FinalStatus::Succeeded));
        metrics.record_final(&row("noop", FinalStatus::Succeeded));
        metrics.record_final(&row("made-up", FinalStatus::Dead));
        let mut never_started = row("noop", FinalStatus::Cancelled);
        never_started.started_at_ms = None;
        metrics.record_final(&never_started);
        metrics.record_retry("noop", "default");
        Metrics::add(&metrics.in_flight, 7);
        Metrics::add(&metrics.claimed_total, 3);
        let families = metrics.gather();
        let succeeded = family(&families, "conveyor_jobs_succeeded_total");
        assert_eq!(succeeded.get_metric()[0].get_counter().get_value(), 2.0);
        let dead = family(&families, "conveyor_jobs_dead_total");
        let labels = dead.get_metric()[0].get_label();
        assert!(labels
            .iter()
            .any(|l| l.name() == "kind" && l.value() == UNREGISTERED_KIND));
        let cancelled = family(&families, "conveyor_jobs_cancelled_total");
        assert_eq!(cancelled.get_metric()[0].get_counter().get_value(), 1.0);
        let in_flight = family(&families, "conveyor_jobs_in_flight");
        assert_eq!(in_flight.get_metric()[0].get_gauge().get_value(), 7.0);
        metrics.gather();
        let families = metrics.gather();
        let claimed = family(&families, "conveyor_jobs_claimed_total");
        assert_eq!(claimed.get_metric()[0].get_counter().get_value(), 3.0);
        let duration = family(&families, "conveyor_job_duration_seconds");
        assert_eq!(
            duration.get_metric()[0].get_histogram().get_sample_sum(),
            1.0
        );
    }

    #[test]
    fn without_collectors_nothing_is_recorded() {
        let metrics = Metrics::default();
        metrics.record_final(&row("noop", FinalStatus::Succeeded));
        assert!(metrics.gather().is_empty());
    }
}
