//! CancelSignals: which of this worker's jobs were cancelled, shared by the
//! QueueWatch (which reads the cancel signals from Redis) and the processor
//! threads (which stop those jobs).
//!
//! It owns the hand-over between the two: a job signalled before it starts
//! never starts, and a running job's cancellation token fires as soon as its
//! signal arrives. It must never decide a job's outcome (the processor does)
//! and never hold its lock across an await.

use std::sync::{Arc, Mutex, MutexGuard};

// Every job start and end hashes its handle here: foldhash is several times
// faster than SipHash on short strings, and the maps hold only this
// worker's in-flight jobs, so keyed hashing buys nothing against collisions.
use foldhash::{HashMap, HashSet};

use tokio_util::sync::CancellationToken;

use crate::job::JobHandle;

#[derive(Default)]
struct State {
    /// Tokens cancelled while this worker holds them, by queue (as Redis says).
    signalled: HashMap<Arc<str>, HashSet<String>>,
    /// Jobs running now and the token that cancels each.
    running: HashMap<JobHandle, CancellationToken>,
}

#[derive(Default)]
pub(crate) struct CancelSignals {
    state: Mutex<State>,
}

impl CancelSignals {
    /// A panic elsewhere cannot leave the maps inconsistent (every critical
    /// section is a few map updates), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cancelled jobs this worker holds in `queue`, as Redis lists them
    /// now; running ones among them are cancelled at once.
    pub(crate) fn set_signalled(&self, queue: &Arc<str>, tokens: Vec<String>) {
        let mut state = self.lock();
        if tokens.is_empty() {
            state.signalled.remove(queue);
            return;
        }
        for token in &tokens {
            let handle = JobHandle {
                queue: queue.clone(),
                token: token.clone(),
            };
            if let Some(cancel) = state.running.get(&handle) {
                cancel.cancel();
            }
        }
        state
            .signalled
            .insert(queue.clone(), tokens.into_iter().collect());
    }

    /// A job is about to start: its cancellation token, or `None` when it
    /// was cancelled already and must not start.
    pub(crate) fn start(&self, handle: &JobHandle) -> Option<CancellationToken> {
        let mut state = self.lock();
        let signalled = state
            .signalled
            .get(&handle.queue)
            .is_some_and(|tokens| tokens.contains(&handle.token));
        if signalled {
            return None;
        }
        let cancel = CancellationToken::new();
        state.running.insert(handle.clone(), cancel.clone());
        Some(cancel)
    }

    /// A job ended (whatever its outcome).
    pub(crate) fn finish(&self, handle: &JobHandle) {
        self.lock().running.remove(handle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(token: &str) -> JobHandle {
        JobHandle {
            queue: "q".into(),
            token: token.to_string(),
        }
    }

    #[test]
    fn a_signalled_job_does_not_start() {
        let signals = CancelSignals::default();
        signals.set_signalled(&"q".into(), vec!["t1".to_string()]);
        assert!(signals.start(&handle("t1")).is_none());
        assert!(signals.start(&handle("t2")).is_some());
    }

    #[test]
    fn a_running_job_is_cancelled_when_its_signal_arrives() {
        let signals = CancelSignals::default();
        let cancel = signals.start(&handle("t1")).expect("not cancelled");
        signals.set_signalled(&"q".into(), vec!["t2".to_string()]);
        assert!(!cancel.is_cancelled());
        signals.set_signalled(&"q".into(), vec!["t1".to_string(), "t2".to_string()]);
        assert!(cancel.is_cancelled());
        signals.finish(&handle("t1"));
        signals.set_signalled(&"q".into(), Vec::new());
        assert!(
            signals.start(&handle("t1")).is_some(),
            "signal gone after the ack"
        );
    }
}
