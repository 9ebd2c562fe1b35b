//! The claim core: every decision the QueueReader makes, as a plain state
//! machine. Events go in (a claim reply, outcomes, a commit, a lost lease, a
//! tick of the clock, a shutdown step), effects come out (claim these counts
//! from these queues, reconcile, write acknowledgements and reschedules, wait
//! on a queue, wake me at T, hand everything back).
//!
//! This module owns capacity (`queues.max_in_flight`), the order of claim
//! rounds, reconcile after an uncertain claim or a lost lease, backoff while
//! Redis fails, the owed acknowledgements and reschedules, and the
//! quiet → drain → hand-back sequence. It must never do I/O, read a clock
//! (time is an argument) or know about actix: the actor carries out the
//! effects and turns their replies back into events.
//!
//! States (see [`Round`], [`Trust`], [`Lifecycle`]):
//!
//! ```text
//!            claim reply ok            ┌──────────── tick ≥ until ───────────┐
//!  Idle ──► Claiming ──────────► Idle  │                                     │
//!   ▲  ╲       │ error                 ▼                                     │
//!   │   ╲      └─────────────► BackingOff{until} ◄── error ── Reconciling ◄──┘
//!   │    ╲ trust ≠ Trusted                                        │
//!   │     └──────────────────────────────────────────────────────►│
//!   └─────────────────────── reconciled (trust := Trusted) ◄──────┘
//!
//!  Running ── shutdown ──► Draining{deadline} ── nothing held, no round out,
//!                                                 or tick ≥ deadline ──► HandingBack ── handed back ──► Stopped
//! ```

mod owed;
#[cfg(test)]
mod tests;
mod types;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use self::owed::{reschedule_of, OwedWrites};
pub(crate) use self::types::{
    ClaimRequest, CoreConfig, Effect, Lifecycle, QueueClaim, Reconciled, Report, Round, Trust,
    Writes,
};
use super::ledger::{HeldJobs, RedisWriteReport};
use crate::job::{JobHandle, Outcome};
use crate::queue_order::QueueMode;
use crate::redis_queue::QueueError;

/// Blocking waits on empty queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiter {
    /// A blocking wait is under way.
    Blocking,
    /// The last wait failed; look at the queue again at this time.
    RetryAt(i64),
}

/// A queue whose waiting jobs a limiter holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limited {
    /// Not claimed from before this time (a rate window turns, or the
    /// recheck of a full concurrency limit), or before one of this worker's
    /// own jobs of the queue ends and releases its slot.
    Until(i64),
}

/// The claim core. See the module documentation.
#[derive(Debug)]
pub(crate) struct ClaimCore {
    config: CoreConfig,
    held: HeldJobs,
    round: Round,
    trust: Trust,
    lifecycle: Lifecycle,
    /// Consecutive failed rounds; 0 when Redis answers.
    failures: u32,
    /// Queues found empty: not claimed from until a wait or a wake says so.
    empty: HashSet<Arc<str>>,
    /// Queues paused in Redis: not claimed from until resumed.
    paused: HashSet<Arc<str>>,
    waiters: HashMap<Arc<str>, Waiter>,
    /// Queues whose jobs limiters hold back: no claim (and no blocking wait,
    /// which would return at once) until the limit may have room.
    limited: HashMap<Arc<str>, Limited>,
    /// Queues with a wait for a released limiter slot under way.
    slot_waits: HashSet<Arc<str>>,
    owed: OwedWrites,
    writes: Writes,
}

type Effects = Vec<Effect>;

impl ClaimCore {
    pub(crate) fn new(config: CoreConfig) -> ClaimCore {
        ClaimCore {
            config,
            held: HeldJobs::default(),
            round: Round::Idle,
            trust: Trust::Trusted,
            lifecycle: Lifecycle::Running,
            failures: 0,
            empty: HashSet::new(),
            paused: HashSet::new(),
            waiters: HashMap::new(),
            limited: HashMap::new(),
            slot_waits: HashSet::new(),
            owed: OwedWrites::new(),
            writes: Writes::Flowing,
        }
    }

    /// Jobs held: claimed and not yet acknowledged or rescheduled.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    #[cfg(test)]
    pub(crate) fn round(&self) -> Round {
        self.round
    }

    #[cfg(test)]
    pub(crate) fn trust(&self) -> Trust {
        self.trust
    }

    pub(crate) fn lifecycle(&self) -> Lifecycle {
        self.lifecycle
    }

    /// The actor started: claim.
    pub(crate) fn start(&mut self, now_ms: i64) -> Effects {
        self.step(now_ms, Vec::new())
    }

    /// The writer became blocked by a MySQL problem that needs a person
    /// (stop claiming), or the problem was solved (claim again).
    pub(crate) fn on_writes(&mut self, now_ms: i64, writes: Writes) -> Effects {
        self.writes = writes;
        self.step(now_ms, Vec::new())
    }

    /// Something may be waiting (retries came due, jobs were recovered).
    pub(crate) fn on_wake(&mut self, now_ms: i64) -> Effects {
        self.empty.clear();
        self.step(now_ms, Vec::new())
    }

    /// A claim round ended: `claims` in order, then the error that ended it early.
    pub(crate) fn on_claimed(
        &mut self,
        now_ms: i64,
        claims: Vec<QueueClaim>,
        error: Option<QueueError>,
    ) -> Effects {
        self.round = Round::Idle;
        let mut effects = Vec::new();
        for claim in claims {
            if !claim.lease_was_held && !self.held.is_empty() {
                self.lease_lost(claim.queue.clone(), &mut effects);
            }
            self.redis_answered(&mut effects);
            if claim.paused {
                // The QueueWatch says when it is resumed; no wait meanwhile.
                self.pause(claim.queue.clone(), &mut effects);
            } else if let Some(delay_ms) = claim.held_back_for_ms {
                self.hold_back(now_ms, &claim, delay_ms, &mut effects);
            } else if claim.handles.len() < claim.asked {
                self.empty.insert(claim.queue.clone());
                self.start_wait(claim.queue, &mut effects);
            }
            for handle in &claim.handles {
                self.held.add(handle);
            }
        }
        if let Some(error) = error {
            self.redis_failed(now_ms, &error, &mut effects);
            return self.step(now_ms, effects);
        }
        // Queues that gave less than asked are marked empty, so a round that
        // claimed nothing starts no other: the waits say when to look again.
        self.step(now_ms, effects)
    }

    /// The queues paused now, as the QueueWatch read them: claim nothing
    /// from them, and hold back their jobs that have not started.
    pub(crate) fn on_paused(&mut self, now_ms: i64, paused: HashSet<Arc<str>>) -> Effects {
        let mut effects = Vec::new();
        let resumed: Vec<Arc<str>> = self.paused.difference(&paused).cloned().collect();
        for queue in resumed {
            self.paused.remove(&queue);
            self.empty.remove(&queue);
        }
        for queue in paused {
            self.pause(queue, &mut effects);
        }
        self.step(now_ms, effects)
    }

    /// A reconcile round ended.
    pub(crate) fn on_reconciled(
        &mut self,
        now_ms: i64,
        result: Result<Reconciled, QueueError>,
    ) -> Effects {
        self.round = Round::Idle;
        let mut effects = Vec::new();
        match result {
            Ok(found) => {
                self.trust = Trust::Trusted;
                if found.released > 0 {
                    effects.push(Effect::Report(Report::Released(found.released)));
                }
                if !found.gone.is_empty() {
                    effects.push(Effect::Report(Report::Forgotten(found.gone.len())));
                    for handle in &found.gone {
                        self.held.remove(handle);
                    }
                }
            }
            Err(error) => self.redis_failed(now_ms, &error, &mut effects),
        }
        self.step(now_ms, effects)
    }

    /// Outcomes from the processors: final ones to the DbWriter, retries and
    /// deferrals back to Redis. Outcomes of jobs no longer held are dropped.
    pub(crate) fn on_outcomes(&mut self, outcomes: Vec<Outcome>) -> Effects {
        let mut effects = Vec::new();
        let (ours, fenced): (Vec<Outcome>, Vec<Outcome>) = outcomes
            .into_iter()
            .partition(|outcome| self.held.contains(outcome.handle()));
        if !fenced.is_empty() {
            effects.push(Effect::Report(Report::Fenced(fenced.len())));
        }
        let (finals, rest): (Vec<Outcome>, Vec<Outcome>) =
            ours.into_iter().partition(Outcome::is_final);
        if !finals.is_empty() {
            effects.push(Effect::Record(finals));
        }
        let mut retried = 0;
        for (queue, reschedule, is_retry) in rest.into_iter().filter_map(reschedule_of) {
            retried += usize::from(is_retry);
            self.owed.owe_reschedule(queue, reschedule);
        }
        if retried > 0 {
            effects.push(Effect::Report(Report::Retried(retried)));
        }
        effects.extend(self.owed.next_round());
        effects
    }

    /// These jobs' rows are committed: acknowledge them.
    pub(crate) fn on_committed(&mut self, jobs: Vec<JobHandle>) -> Effects {
        self.owed.owe_acks(jobs);
        self.owed.next_round().into_iter().collect()
    }

    /// A write round ended. What Redis took frees capacity; the rest stays owed.
    pub(crate) fn on_written(&mut self, now_ms: i64, report: RedisWriteReport) -> Effects {
        let mut effects = Vec::new();
        if report.lease_lost > 0 {
            effects.push(Effect::Report(Report::NotHeld(report.lease_lost)));
        }
        if report.acked > 0 {
            effects.push(Effect::Report(Report::Acked(report.acked)));
        }
        for handle in &report.done {
            self.held.remove(handle);
            // Its end released its limiter slots: look at its queue again.
            self.limited.remove(&handle.queue);
        }
        if let Some(error) = report.error {
            effects.push(Effect::Report(Report::WriteFailed {
                retry_ms: self.config.write_retry_ms,
                error: error.to_string(),
            }));
        }
        let retry_at = now_ms + ms(self.config.write_retry_ms);
        match self
            .owed
            .round_ended(report.unsent_acks, report.unsent_reschedules, retry_at)
        {
            Some(at) => effects.push(Effect::TickAt(at)),
            None => effects.extend(self.owed.next_round()),
        }
        self.step(now_ms, effects)
    }

    /// A heartbeat found the lease on `queue` expired.
    pub(crate) fn on_lease_lost(&mut self, now_ms: i64, queue: Arc<str>) -> Effects {
        let mut effects = Vec::new();
        if !self.held.is_empty() {
            self.lease_lost(queue, &mut effects);
        }
        self.step(now_ms, effects)
    }

    /// The blocking wait on `queue` ended: it may have work (`ok`), or the
    /// wait failed and the queue is looked at again a little later.
    pub(crate) fn on_wait_ended(&mut self, now_ms: i64, queue: Arc<str>, ok: bool) -> Effects {
        if ok {
            self.waiters.remove(&queue);
            self.empty.remove(&queue);
            return self.step(now_ms, Vec::new());
        }
        let at = now_ms + ms(self.config.wait_retry_ms);
        self.waiters.insert(queue, Waiter::RetryAt(at));
        vec![Effect::TickAt(at)]
    }

    /// The wait for a released slot on `queue` ended (a slot was released
    /// somewhere, or the wait timed out or failed): look at the queue again.
    pub(crate) fn on_slot_released(&mut self, now_ms: i64, queue: Arc<str>) -> Effects {
        self.slot_waits.remove(&queue);
        self.limited.remove(&queue);
        self.step(now_ms, Vec::new())
    }

    /// The time asked for by a `TickAt` (or later) has come.
    pub(crate) fn on_tick(&mut self, now_ms: i64) -> Effects {
        let mut effects = Vec::new();
        if let Round::BackingOff { until_ms } = self.round {
            if now_ms >= until_ms {
                self.round = Round::Idle;
            }
        }
        let due: Vec<Arc<str>> = self
            .waiters
            .iter()
            .filter(|(_, waiter)| matches!(waiter, Waiter::RetryAt(at) if *at <= now_ms))
            .map(|(queue, _)| queue.clone())
            .collect();
        for queue in due {
            self.waiters.remove(&queue);
            self.empty.remove(&queue);
        }
        self.limited
            .retain(|_, Limited::Until(until)| *until > now_ms);
        effects.extend(self.owed.on_tick(now_ms));
        if let Lifecycle::Draining { deadline_ms } = self.lifecycle {
            if now_ms >= deadline_ms {
                self.lifecycle = Lifecycle::HandingBack;
                effects.push(Effect::HandBack);
                return effects;
            }
        }
        self.step(now_ms, effects)
    }

    /// Stop claiming; hand back what is still held once it has drained or
    /// `timeout_ms` has passed.
    pub(crate) fn on_shutdown(&mut self, now_ms: i64, timeout_ms: u64) -> Effects {
        if self.lifecycle != Lifecycle::Running {
            return Vec::new();
        }
        let deadline_ms = now_ms + ms(timeout_ms);
        self.lifecycle = Lifecycle::Draining { deadline_ms };
        self.step(now_ms, vec![Effect::TickAt(deadline_ms)])
    }

    /// Every held job was handed back (or left for recovery).
    pub(crate) fn on_handed_back(&mut self) {
        self.lifecycle = Lifecycle::Stopped;
    }

    /// Decides what comes next: the hand-back once a shutdown has drained,
    /// a reconcile if the held set is in doubt, else a claim round if there
    /// is room and a queue may have work. New guards on claiming go in
    /// `claim_request`.
    fn step(&mut self, now_ms: i64, mut effects: Effects) -> Effects {
        let round_out = matches!(self.round, Round::Claiming | Round::Reconciling);
        match self.lifecycle {
            Lifecycle::HandingBack | Lifecycle::Stopped => return effects,
            Lifecycle::Draining { .. } if self.held.is_empty() && !round_out => {
                self.lifecycle = Lifecycle::HandingBack;
                effects.push(Effect::HandBack);
                return effects;
            }
            Lifecycle::Running | Lifecycle::Draining { .. } => {}
        }
        if self.round != Round::Idle {
            return effects;
        }
        if self.trust != Trust::Trusted {
            self.round = Round::Reconciling;
            effects.push(Effect::Reconcile(self.known_tokens()));
        } else if self.lifecycle == Lifecycle::Running {
            if let Some(request) = self.claim_request(now_ms) {
                self.round = Round::Claiming;
                effects.push(Effect::Claim(request));
            }
        }
        effects
    }

    /// The next claim round, or `None` when full or every queue is empty or
    /// paused. The round's slots (a claim batch per queue that may have work,
    /// one batch in strict mode, never more than the free capacity) are
    /// split by the queue order: weights or strict.
    fn claim_request(&mut self, now_ms: i64) -> Option<ClaimRequest> {
        let budget = self.room();
        if budget == 0 || self.writes == Writes::Blocked {
            return None;
        }
        let eligible: Vec<bool> = self
            .config
            .queues
            .iter()
            .map(|queue| {
                !self.empty.contains(queue)
                    && !self.paused.contains(queue)
                    && !self.limited.contains_key(queue)
            })
            .collect();
        let open = eligible.iter().filter(|e| **e).count();
        let batches = match self.config.order.mode() {
            QueueMode::Weighted => open,
            QueueMode::Strict => open.min(1),
        };
        let slots = budget.min(self.config.claim_batch.saturating_mul(batches));
        let picks = self.config.order.picks(&eligible, slots);
        let counts = self.config.order.counts(&picks);
        let mut ask_of = vec![usize::MAX; counts.len()];
        let mut asks: Vec<(Arc<str>, usize)> = Vec::new();
        for (index, count) in counts.into_iter().enumerate().filter(|(_, c)| *c > 0) {
            ask_of[index] = asks.len();
            asks.push((self.config.queues[index].clone(), count));
        }
        if asks.is_empty() {
            return None;
        }
        let start_order = if asks.len() > 1 {
            picks.iter().map(|pick| ask_of[*pick]).collect()
        } else {
            Vec::new()
        };
        Some(ClaimRequest {
            asks,
            start_order,
            budget,
            lease_deadline_ms: now_ms + ms(self.config.lease_ms),
        })
    }

    /// `queue` is paused: hold back its unstarted jobs the first time.
    fn pause(&mut self, queue: Arc<str>, effects: &mut Effects) {
        if self.paused.insert(queue.clone()) {
            effects.push(Effect::HoldBack(queue));
        }
    }

    fn room(&self) -> usize {
        self.config.max_in_flight.saturating_sub(self.held.len())
    }

    fn known_tokens(&self) -> Vec<(Arc<str>, HashSet<String>)> {
        self.config
            .queues
            .iter()
            .map(|queue| (queue.clone(), self.held.tokens_of(queue)))
            .collect()
    }

    fn lease_lost(&mut self, queue: Arc<str>, effects: &mut Effects) {
        effects.push(Effect::Report(Report::LeaseLost(queue)));
        self.trust = Trust::LeaseLost;
    }

    fn redis_answered(&mut self, effects: &mut Effects) {
        if self.failures > 0 {
            self.failures = 0;
            effects.push(Effect::Report(Report::RedisBack));
        }
    }

    /// Any failed round may have moved jobs: reconcile after a backoff.
    fn redis_failed(&mut self, now_ms: i64, error: &QueueError, effects: &mut Effects) {
        self.failures += 1;
        self.trust = match self.trust {
            Trust::LeaseLost => Trust::LeaseLost,
            _ => Trust::ClaimUncertain,
        };
        let delay_ms = self.config.claim_backoff.delay_ms(self.failures);
        let until_ms = now_ms + ms(delay_ms);
        self.round = Round::BackingOff { until_ms };
        effects.push(Effect::Report(Report::ClaimFailed {
            delay_ms,
            held: self.held.len(),
            error: error.to_string(),
        }));
        effects.push(Effect::TickAt(until_ms));
    }

    /// Limiters held jobs of the claim's queue back: leave the queue alone
    /// until the limit may have room (and wait for a released slot when a
    /// concurrency limit is full).
    fn hold_back(&mut self, now_ms: i64, claim: &QueueClaim, delay_ms: u64, effects: &mut Effects) {
        let until = now_ms + ms(delay_ms).max(1);
        self.limited
            .insert(claim.queue.clone(), Limited::Until(until));
        effects.push(Effect::TickAt(until));
        if claim.slot_full && self.slot_waits.insert(claim.queue.clone()) {
            effects.push(Effect::WaitForSlot(claim.queue.clone()));
        }
    }

    fn start_wait(&mut self, queue: Arc<str>, effects: &mut Effects) {
        let blocking = self.waiters.get(&queue) == Some(&Waiter::Blocking);
        if self.lifecycle != Lifecycle::Running || blocking {
            return;
        }
        self.waiters.insert(queue.clone(), Waiter::Blocking);
        effects.push(Effect::WaitForJobs(queue));
    }
}

/// Milliseconds as a time offset; settings are far below `i64::MAX`.
fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
