//! Counters shared by the actors: mailbox depths, in-flight jobs, totals.
//!
//! This module owns the only state the actors share, and it is atomics only:
//! the actors write, the Monitor (log line) and the API (`/metrics`) read. It
//! must never hold a lock or anything an actor would wait on.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
    /// Final outcomes waiting in the DbWriter for their batch.
    pub db_buffered: AtomicU64,
    /// Batches being written to MySQL now.
    pub db_flushing: AtomicU64,
    pub claimed_total: AtomicU64,
    pub succeeded_total: AtomicU64,
    pub dead_total: AtomicU64,
    pub dead_letters_total: AtomicU64,
    pub retried_total: AtomicU64,
    /// Rows committed to MySQL (results and dead letters).
    pub committed_total: AtomicU64,
    pub acked_total: AtomicU64,
    pub db_batches_total: AtomicU64,
    pub db_errors_total: AtomicU64,
    pub panics_total: AtomicU64,
}

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
}
