//! Unit tests of the claim core: every transition, no server, no clock.
//! Shared helpers here; the tests by concern in the submodules.

mod claiming;
mod control;
mod faults;
mod settling;
mod shutdown;

use std::sync::Arc;

use super::{
    ClaimCore, ClaimRequest, CoreConfig, Effect, Lifecycle, QueueClaim, Reconciled, Report, Round,
    Trust, Writes,
};
use crate::actors::queue_reader::ledger::RedisWriteReport;
use crate::backoff::Backoff;
use crate::job::{JobHandle, Outcome, ResultRow};
use crate::queue_order::{QueueMode, QueueOrder};
use crate::redis_queue::QueueError;

pub(super) const T0: i64 = 1_000_000;

pub(super) fn q(name: &str) -> Arc<str> {
    Arc::from(name)
}

pub(super) fn config(queues: &[&str], claim_batch: usize, max_in_flight: usize) -> CoreConfig {
    CoreConfig {
        queues: queues.iter().map(|name| q(name)).collect(),
        claim_batch,
        order: QueueOrder::new(QueueMode::Weighted, &vec![1; queues.len()]),
        max_in_flight,
        lease_ms: 30_000,
        claim_backoff: Backoff::exponential(100, 5000),
        write_retry_ms: 250,
        wait_retry_ms: 1000,
    }
}

pub(super) fn handles(queue: &str, range: std::ops::Range<usize>) -> Vec<JobHandle> {
    range
        .map(|i| JobHandle {
            queue: q(queue),
            token: format!("{queue}-{i}"),
        })
        .collect()
}

pub(super) fn claim(queue: &str, asked: usize, range: std::ops::Range<usize>) -> QueueClaim {
    QueueClaim {
        queue: q(queue),
        asked,
        handles: handles(queue, range),
        lease_was_held: true,
        paused: false,
        held_back_for_ms: None,
        slot_full: false,
    }
}

pub(super) fn finished(handle: JobHandle) -> Outcome {
    Outcome::Finished(ResultRow::succeeded(handle))
}

pub(super) fn retry(handle: JobHandle, attempts: u32) -> Outcome {
    Outcome::Retry {
        handle,
        due_ms: T0 + 1000,
        attempts,
        error: "boom".into(),
    }
}

pub(super) fn claim_request(effects: &[Effect]) -> Option<&ClaimRequest> {
    effects.iter().find_map(|effect| match effect {
        Effect::Claim(request) => Some(request),
        _ => None,
    })
}

pub(super) fn asks(effects: &[Effect]) -> Vec<(String, usize)> {
    claim_request(effects)
        .map(|request| {
            request
                .asks
                .iter()
                .map(|(queue, n)| (queue.to_string(), *n))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn has(effects: &[Effect], wanted: fn(&Effect) -> bool) -> bool {
    effects.iter().any(wanted)
}

pub(super) fn ticks(effects: &[Effect]) -> Vec<i64> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::TickAt(at) => Some(*at),
            _ => None,
        })
        .collect()
}

pub(super) fn reports(effects: &[Effect]) -> Vec<Report> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Report(report) => Some(report.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn writes(effects: &[Effect]) -> Vec<(usize, usize)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Write { acks, reschedules } => Some((acks.len(), reschedules.len())),
            _ => None,
        })
        .collect()
}

pub(super) fn done(handles: Vec<JobHandle>) -> RedisWriteReport {
    RedisWriteReport {
        acked: handles.len(),
        done: handles,
        ..RedisWriteReport::default()
    }
}

pub(super) fn down() -> Option<QueueError> {
    Some(QueueError::Protocol("connection refused".into()))
}

/// A core on one queue that has claimed `held` jobs and is idle again
/// (the queue gave less than asked, so it waits).
pub(super) fn holding(held: usize, max_in_flight: usize) -> ClaimCore {
    let mut core = ClaimCore::new(config(&["a"], 100, max_in_flight));
    core.start(T0);
    core.on_claimed(T0, vec![claim("a", 100.min(max_in_flight), 0..held)], None);
    assert_eq!(core.held(), held);
    assert_eq!(core.round(), Round::Idle);
    core
}
