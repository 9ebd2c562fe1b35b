//! What stops a worker that retrying cannot fix: a MySQL problem a person
//! must solve (access denied, a schema that does not match), shared between
//! the DbWriter that finds it, the QueueReader that pauses claiming while it
//! lasts, the `conveyor::mailbox` line and `GET /ready`, which show it.
//!
//! This module owns that shared state, and [`WriteTrouble`]: what a writer
//! does after a failed write — retry, repair the schema and retry, or report
//! the problem and keep retrying slowly until a person fixes it. It must
//! never decide what counts as which (the store's error classification
//! does), never give up on a write, and never block readers of the state:
//! they take a copy of the text.

use std::cell::Cell;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::store::{self, Remedy, StoreError};

/// The current blocking problem, if any.
#[derive(Debug, Default)]
pub(crate) struct Blocker {
    problem: Mutex<Option<String>>,
}

impl Blocker {
    /// Records `problem`; true when it is new (not the one already held).
    pub(crate) fn report(&self, problem: &str) -> bool {
        let mut held = self.problem.lock().unwrap_or_else(PoisonError::into_inner);
        if held.as_deref() == Some(problem) {
            return false;
        }
        *held = Some(problem.to_string());
        true
    }

    /// Clears the problem; returns the one that was held.
    pub(crate) fn clear(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// A copy of the current problem.
    pub(crate) fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Told when a writer becomes blocked (`true`) or unblocked (`false`).
pub(crate) type BlockedNotice = Box<dyn Fn(bool)>;

/// One writer's handling of a run of failed writes, until one commits.
pub(crate) struct WriteTrouble {
    /// `host:port` of MySQL, for messages.
    address: String,
    /// The schema was repaired during this run of failures.
    repaired: Cell<bool>,
    /// Pause between attempts while a person must act.
    blocked_retry: Duration,
    notice: BlockedNotice,
}

impl WriteTrouble {
    pub(crate) fn new(
        mysql_url: &str,
        blocked_retry: Duration,
        notice: BlockedNotice,
    ) -> WriteTrouble {
        WriteTrouble {
            address: store::address(mysql_url),
            repaired: Cell::new(false),
            blocked_retry,
            notice,
        }
    }

    /// Handles a failed write of `what` (e.g. "a batch of 500 rows"): logs
    /// it, repairs the schema when that is the cure, reports a problem that
    /// needs a person to `blocker`. Returns how long to wait before the next
    /// attempt (`backoff` for transient failures).
    pub(crate) async fn after_failure(
        &self,
        pool: &mysql_async::Pool,
        error: &StoreError,
        what: &str,
        backoff: Duration,
        blocker: &Blocker,
    ) -> Duration {
        let remedy = match store::remedy(error) {
            Remedy::Migrate if self.repaired.get() => Remedy::Operator(
                "a table or column is still missing after re-running the migrations: \
                 run `conveyor migrate` and compare the tables with this version's schema"
                    .to_string(),
            ),
            other => other,
        };
        match remedy {
            Remedy::Retry => {
                log::warn!(target: "conveyor::db_writer", "writing {what} to mysql at {} failed, retrying in {} ms: {error}", self.address, backoff.as_millis());
                backoff
            }
            Remedy::Migrate => self.repair(pool, error, what, blocker).await,
            Remedy::Operator(advice) => {
                self.block(
                    blocker,
                    &format!("mysql at {}: {error}; {advice}", self.address),
                );
                self.blocked_retry
            }
        }
    }

    async fn repair(
        &self,
        pool: &mysql_async::Pool,
        error: &StoreError,
        what: &str,
        blocker: &Blocker,
    ) -> Duration {
        log::warn!(target: "conveyor::db_writer", "writing {what} to mysql at {} failed: {error}; the schema is missing or behind, re-running the migrations", self.address);
        self.repaired.set(true);
        match store::repair(pool).await {
            Ok(()) => {
                log::warn!(target: "conveyor::db_writer", "schema repaired (missing tables, columns or indexes re-created); retrying the write");
                Duration::ZERO
            }
            Err(repair_error) => {
                let advice = match store::remedy(&repair_error) {
                    Remedy::Operator(advice) => advice,
                    _ => "it will be tried again".to_string(),
                };
                self.block(
                    blocker,
                    &format!(
                        "mysql at {}: repairing the schema failed: {repair_error}; {advice}",
                        self.address
                    ),
                );
                self.repaired.set(false);
                self.blocked_retry
            }
        }
    }

    fn block(&self, blocker: &Blocker, problem: &str) {
        if blocker.report(problem) {
            log::error!(target: "conveyor::db_writer", "results cannot be written: {problem}. Claiming is paused; every job stays in Redis and is written once this is fixed (retrying every {} ms)", self.blocked_retry.as_millis());
            (self.notice)(true);
        }
    }

    /// A write committed after failures: lifts a block and says so.
    pub(crate) fn after_success(&self, blocker: &Blocker, failures: u32) {
        if let Some(problem) = blocker.clear() {
            log::warn!(target: "conveyor::db_writer", "mysql problem solved, claiming resumes: {problem}");
            (self.notice)(false);
        } else if failures > 0 {
            log::info!(target: "conveyor::db_writer", "batch committed after {failures} failed attempts; MySQL is back");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_held_until_cleared_and_reported_once() {
        let blocker = Blocker::default();
        assert_eq!(blocker.problem(), None);
        assert!(blocker.report("access denied"));
        assert!(!blocker.report("access denied"));
        assert_eq!(blocker.problem().as_deref(), Some("access denied"));
        assert!(blocker.report("unknown column"));
        assert_eq!(blocker.clear().as_deref(), Some("unknown column"));
        assert_eq!(blocker.problem(), None);
    }
}
