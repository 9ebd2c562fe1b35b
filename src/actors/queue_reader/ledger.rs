//! The QueueReader's ledger: which claim tokens this worker holds, and the
//! round trips that settle them in Redis (acknowledgements after commit,
//! reschedules of retries and deferrals, the hand-back at shutdown).
//!
//! It must never forget a held job: a token leaves `HeldJobs` only once Redis
//! took its acknowledgement or reschedule (or no longer held it).

use std::collections::HashSet;
use std::sync::Arc;

// Held tokens are hashed twice per job (claim, ack): foldhash is several
// times faster than SipHash on short strings. The maps hold only this
// worker's in-flight tokens (bounded by its capacity), so the keyed
// hashing's protection against crafted collisions buys nothing here.
use foldhash::{HashMap, HashMapExt};

use crate::job::JobHandle;
use crate::job_queue::JobQueue;
use crate::redis_queue::{QueueError, Reschedule};

/// Claim tokens this worker holds, by queue.
#[derive(Debug, Default)]
pub(crate) struct HeldJobs {
    tokens: HashMap<Arc<str>, foldhash::HashSet<String>>,
    count: usize,
}

impl HeldJobs {
    pub(super) fn add(&mut self, handle: &JobHandle) {
        let tokens = self.tokens.entry(handle.queue.clone()).or_default();
        if tokens.insert(handle.token.clone()) {
            self.count += 1;
        }
    }

    pub(super) fn remove(&mut self, handle: &JobHandle) {
        let removed = self
            .tokens
            .get_mut(&handle.queue)
            .is_some_and(|tokens| tokens.remove(&handle.token));
        if removed {
            self.count -= 1;
        }
    }

    pub(super) fn contains(&self, handle: &JobHandle) -> bool {
        self.tokens
            .get(&handle.queue)
            .is_some_and(|tokens| tokens.contains(&handle.token))
    }

    pub(super) fn len(&self) -> usize {
        self.count
    }

    pub(super) fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub(super) fn tokens_of(&self, queue: &str) -> HashSet<String> {
        self.tokens
            .get(queue)
            .map(|tokens| tokens.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// What one round of acknowledgements and reschedules achieved.
#[derive(Debug, Default)]
pub(crate) struct RedisWriteReport {
    pub(crate) acked: usize,
    /// Jobs whose ack or reschedule Redis took: no longer ours to track.
    pub(crate) done: Vec<JobHandle>,
    /// Jobs this worker no longer held (recovered elsewhere, or moved by an
    /// earlier try whose reply was lost): done for us all the same.
    pub(crate) lease_lost: usize,
    pub(crate) unsent_acks: Vec<JobHandle>,
    pub(crate) unsent_reschedules: Vec<(Arc<str>, Reschedule)>,
    pub(crate) error: Option<QueueError>,
}

/// Acknowledges and reschedules, queue by queue; what fails stays in the
/// report to be tried again.
pub(super) async fn write_to_redis(
    queue_side: &impl JobQueue,
    acks: Vec<JobHandle>,
    reschedules: Vec<(Arc<str>, Reschedule)>,
) -> RedisWriteReport {
    let mut report = RedisWriteReport::default();
    for (queue, handles) in group_by_queue(acks, |h| h.queue.clone()) {
        let tokens: Vec<String> = handles.iter().map(|h| h.token.clone()).collect();
        match queue_side.ack(&queue, &tokens).await {
            Ok(held) => {
                let held = held.min(tokens.len());
                report.acked += held;
                report.lease_lost += tokens.len() - held;
                report.done.extend(handles);
            }
            Err(error) => {
                report.error = Some(error);
                report.unsent_acks.extend(handles);
            }
        }
    }
    for (queue, items) in group_by_queue(reschedules, |(q, _)| q.clone()) {
        let jobs: Vec<Reschedule> = items.iter().map(|(_, r)| r.clone()).collect();
        match queue_side.reschedule(&queue, &jobs).await {
            Ok(moved) => {
                report.lease_lost += jobs.len() - moved.min(jobs.len());
                report
                    .done
                    .extend(items.into_iter().map(|(queue, r)| JobHandle {
                        queue,
                        token: r.token,
                    }));
            }
            Err(error) => {
                report.error = Some(error);
                report.unsent_reschedules.extend(items);
            }
        }
    }
    report
}

pub(super) fn group_by_queue<T>(
    items: Vec<T>,
    queue_of: impl Fn(&T) -> Arc<str>,
) -> HashMap<Arc<str>, Vec<T>> {
    let mut groups: HashMap<Arc<str>, Vec<T>> = HashMap::new();
    for item in items {
        groups.entry(queue_of(&item)).or_default().push(item);
    }
    groups
}

/// Returns every job this worker holds to the front of its queue.
pub(super) async fn hand_back_all(queue_side: &impl JobQueue, queues: &[Arc<str>]) -> usize {
    let mut handed_back = 0;
    for queue in queues {
        match queue_side.hand_back(queue).await {
            Ok(n) => handed_back += n,
            Err(error) => log::error!(
                target: "conveyor::queue_reader",
                "could not hand jobs of queue {queue} back ({error}); another worker recovers them when this worker's lease expires"
            ),
        }
    }
    if handed_back > 0 {
        log::warn!(target: "conveyor::queue_reader", "shutdown: {handed_back} unfinished jobs handed back to their queues");
    }
    handed_back
}
