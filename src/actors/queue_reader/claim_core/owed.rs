//! What the claim core owes Redis: acknowledgements of committed jobs and
//! reschedules of retries and deferrals, sent one write round at a time.
//!
//! This module owns that queue of writes. It must never drop one: what a
//! round fails to write is owed again and tried after a pause.

use std::sync::Arc;

use super::types::Effect;
use crate::job::{JobHandle, Outcome};
use crate::redis_queue::Reschedule;

/// The write round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteRound {
    Idle,
    Writing,
    /// The last round failed; try again at this time (or sooner, when more
    /// comes in).
    RetryAt(i64),
}

/// Owed acknowledgements and reschedules.
#[derive(Debug)]
pub(super) struct OwedWrites {
    acks: Vec<JobHandle>,
    reschedules: Vec<(Arc<str>, Reschedule)>,
    round: WriteRound,
}

impl OwedWrites {
    pub(super) fn new() -> OwedWrites {
        OwedWrites {
            acks: Vec::new(),
            reschedules: Vec::new(),
            round: WriteRound::Idle,
        }
    }

    pub(super) fn owe_acks(&mut self, jobs: Vec<JobHandle>) {
        self.acks.extend(jobs);
    }

    pub(super) fn owe_reschedule(&mut self, queue: Arc<str>, reschedule: Reschedule) {
        self.reschedules.push((queue, reschedule));
    }

    /// A write round of everything owed, unless one is out or nothing is owed.
    pub(super) fn next_round(&mut self) -> Option<Effect> {
        if self.round == WriteRound::Writing
            || (self.acks.is_empty() && self.reschedules.is_empty())
        {
            return None;
        }
        self.round = WriteRound::Writing;
        Some(Effect::Write {
            acks: std::mem::take(&mut self.acks),
            reschedules: std::mem::take(&mut self.reschedules),
        })
    }

    /// A round ended; what it could not write is owed again and waits
    /// until `retry_at` (returned when there is such a wait).
    pub(super) fn round_ended(
        &mut self,
        unsent_acks: Vec<JobHandle>,
        unsent_reschedules: Vec<(Arc<str>, Reschedule)>,
        retry_at: i64,
    ) -> Option<i64> {
        let failed = !unsent_acks.is_empty() || !unsent_reschedules.is_empty();
        self.acks.extend(unsent_acks);
        self.reschedules.extend(unsent_reschedules);
        self.round = if failed {
            WriteRound::RetryAt(retry_at)
        } else {
            WriteRound::Idle
        };
        failed.then_some(retry_at)
    }

    /// The clock moved on: a failed round is tried again once its pause is over.
    pub(super) fn on_tick(&mut self, now_ms: i64) -> Option<Effect> {
        match self.round {
            WriteRound::RetryAt(at) if at <= now_ms => {
                self.round = WriteRound::Idle;
                self.next_round()
            }
            _ => None,
        }
    }
}

/// The reschedule a non-final outcome asks for, and whether it is a retry
/// (as opposed to a deferral). `None` for final outcomes.
pub(super) fn reschedule_of(outcome: Outcome) -> Option<(Arc<str>, Reschedule, bool)> {
    match outcome {
        Outcome::Retry {
            handle,
            due_ms,
            attempts,
            error,
        } => Some((
            handle.queue,
            Reschedule {
                token: handle.token,
                due_ms,
                failure: (attempts > 0).then_some((attempts, error)),
                hold: None,
            },
            true,
        )),
        Outcome::Defer { handle, due_ms } => Some((
            handle.queue,
            Reschedule {
                token: handle.token,
                due_ms,
                failure: None,
                hold: None,
            },
            false,
        )),
        Outcome::RateLimited {
            handle,
            due_ms,
            hold,
        } => Some((
            handle.queue,
            Reschedule {
                token: handle.token,
                due_ms,
                failure: None,
                hold: Some(hold),
            },
            false,
        )),
        Outcome::Finished(_) | Outcome::Malformed(_) => None,
    }
}
