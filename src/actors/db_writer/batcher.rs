//! The DbWriter's batching as a plain type: which rows go into which batch,
//! when a partial batch goes (at once while the writer is nearly idle, else
//! on the flush timer), and how many batches are written at once.
//!
//! This module owns those decisions only. It must never do I/O, read a clock
//! or drop a row: every row pushed leaves in exactly one batch.

use crate::job::{DeadLetter, ResultRow};

/// Sizes and limits of the batches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    /// Rows (results and dead letters together) per batch at most.
    pub(crate) batch_size: usize,
    /// Batches written at the same time at most.
    pub(crate) max_concurrent: usize,
    /// While fewer batches than this are being written, rows go at once in
    /// a partial batch; from this many on, a partial batch waits for the
    /// flush timer (or for a write to end). 0: always the timer.
    pub(crate) eager_below: usize,
}

/// One batch to write in one statement per table.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Result rows.
    pub(crate) rows: Vec<ResultRow>,
    /// Dead letters.
    pub(crate) letters: Vec<DeadLetter>,
}

impl Batch {
    /// Rows in the batch.
    pub(crate) fn len(&self) -> usize {
        self.rows.len() + self.letters.len()
    }
}

/// What the actor must do.
#[derive(Debug)]
pub(crate) enum BatchEffect {
    /// Write this batch until it commits, then call `on_written`.
    Write(Batch),
    /// Call `on_timer` after the flush interval.
    ArmTimer,
}

/// The flush timer of a partial batch: armed only while rows wait, so an
/// idle writer sets no timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Disarmed,
    Armed,
}

/// Rows waiting for a batch, and the batches being written.
#[derive(Debug)]
pub(crate) struct Batcher {
    limits: BatchLimits,
    rows: Vec<ResultRow>,
    letters: Vec<DeadLetter>,
    flushing: usize,
    timer: Timer,
}

impl Batcher {
    pub(crate) fn new(limits: BatchLimits) -> Batcher {
        Batcher {
            limits,
            rows: Vec::new(),
            letters: Vec::new(),
            flushing: 0,
            timer: Timer::Disarmed,
        }
    }

    /// Rows waiting for a batch.
    pub(crate) fn buffered(&self) -> usize {
        self.rows.len() + self.letters.len()
    }

    /// Batches being written.
    pub(crate) fn flushing(&self) -> usize {
        self.flushing
    }

    /// New rows: full batches go at once; a partial one too while the writer
    /// is nearly idle, else it waits for the timer or a write's end.
    pub(crate) fn push(
        &mut self,
        rows: Vec<ResultRow>,
        letters: Vec<DeadLetter>,
    ) -> Vec<BatchEffect> {
        self.rows.extend(rows);
        self.letters.extend(letters);
        self.flush(false)
    }

    /// The flush timer fired: a partial batch goes too.
    pub(crate) fn on_timer(&mut self) -> Vec<BatchEffect> {
        self.timer = Timer::Disarmed;
        self.flush(true)
    }

    /// A batch committed: its slot is free for the next full batch, and for
    /// a partial one if the writer is now nearly idle.
    pub(crate) fn on_written(&mut self) -> Vec<BatchEffect> {
        self.flushing = self.flushing.saturating_sub(1);
        self.flush(false)
    }

    /// Starts as many batches as the limits allow; rows left waiting arm the
    /// timer. A partial batch goes when the timer fired (`timer_fired`) or
    /// while fewer than `eager_below` batches are being written, so rows
    /// that come while the writer is idle wait for nobody, and rows that
    /// come while it is busy gather into one batch (a group commit).
    fn flush(&mut self, timer_fired: bool) -> Vec<BatchEffect> {
        let mut effects = Vec::new();
        while self.flushing < self.limits.max_concurrent {
            let ready = self.buffered();
            let partial_may_go = timer_fired || self.flushing < self.limits.eager_below;
            if ready == 0 || (ready < self.limits.batch_size && !partial_may_go) {
                break;
            }
            self.flushing += 1;
            effects.push(BatchEffect::Write(self.take_batch()));
        }
        if self.buffered() > 0 && self.timer == Timer::Disarmed {
            self.timer = Timer::Armed;
            effects.push(BatchEffect::ArmTimer);
        }
        effects
    }

    /// Result rows first, then dead letters, `batch_size` in all.
    fn take_batch(&mut self) -> Batch {
        let take_rows = self.rows.len().min(self.limits.batch_size);
        let rows: Vec<ResultRow> = self.rows.drain(..take_rows).collect();
        let take_letters = self.letters.len().min(self.limits.batch_size - take_rows);
        let letters: Vec<DeadLetter> = self.letters.drain(..take_letters).collect();
        Batch { rows, letters }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobHandle;

    fn handle(i: usize) -> JobHandle {
        JobHandle {
            queue: "q".into(),
            token: format!("t{i}"),
        }
    }

    fn rows(range: std::ops::Range<usize>) -> Vec<ResultRow> {
        range.map(|i| ResultRow::succeeded(handle(i))).collect()
    }

    fn letters(range: std::ops::Range<usize>) -> Vec<DeadLetter> {
        range
            .map(|i| DeadLetter {
                handle: handle(i),
                raw: Vec::new(),
                reason: "bad".into(),
                received_at_ms: 0,
            })
            .collect()
    }

    /// A batcher whose partial batches always wait for the timer.
    fn batcher(batch_size: usize, max_concurrent: usize) -> Batcher {
        eager(batch_size, max_concurrent, 0)
    }

    fn eager(batch_size: usize, max_concurrent: usize, eager_below: usize) -> Batcher {
        Batcher::new(BatchLimits {
            batch_size,
            max_concurrent,
            eager_below,
        })
    }

    fn sizes(effects: &[BatchEffect]) -> Vec<usize> {
        effects
            .iter()
            .filter_map(|e| match e {
                BatchEffect::Write(batch) => Some(batch.len()),
                BatchEffect::ArmTimer => None,
            })
            .collect()
    }

    fn arms(effects: &[BatchEffect]) -> usize {
        effects
            .iter()
            .filter(|e| matches!(e, BatchEffect::ArmTimer))
            .count()
    }

    #[test]
    fn a_partial_batch_waits_for_the_timer() {
        let mut b = batcher(10, 4);
        let effects = b.push(rows(0..3), Vec::new());
        assert_eq!(sizes(&effects), Vec::<usize>::new());
        assert_eq!(arms(&effects), 1);
        assert_eq!(b.buffered(), 3);
        let effects = b.on_timer();
        assert_eq!(sizes(&effects), [3]);
        assert_eq!(arms(&effects), 0, "nothing left waiting: no timer");
    }

    #[test]
    fn full_batches_go_at_once_and_the_rest_arms_the_timer_once() {
        let mut b = batcher(10, 4);
        let effects = b.push(rows(0..25), Vec::new());
        assert_eq!(sizes(&effects), [10, 10]);
        assert_eq!(arms(&effects), 1);
        let effects = b.push(rows(25..27), Vec::new());
        assert!(effects.is_empty(), "timer already armed: {effects:?}");
        assert_eq!(b.buffered(), 7);
    }

    #[test]
    fn concurrent_writes_are_capped_and_a_commit_frees_a_slot() {
        let mut b = batcher(10, 2);
        let effects = b.push(rows(0..50), Vec::new());
        assert_eq!(sizes(&effects), [10, 10]);
        assert_eq!(b.flushing(), 2);
        assert_eq!(b.buffered(), 30);
        assert!(
            sizes(&b.on_timer()).is_empty(),
            "no slot free for the timer either"
        );
        assert_eq!(sizes(&b.on_written()), [10]);
        assert_eq!(b.flushing(), 2);
    }

    #[test]
    fn a_batch_mixes_rows_and_dead_letters_up_to_its_size() {
        let mut b = batcher(10, 1);
        let effects = b.push(rows(0..6), letters(100..108));
        match &effects[0] {
            BatchEffect::Write(batch) => {
                assert_eq!((batch.rows.len(), batch.letters.len()), (6, 4));
            }
            other => panic!("expected a write, got {other:?}"),
        }
        assert_eq!(b.buffered(), 4);
    }

    /// Tokens of the rows in the batches written.
    fn written(effects: Vec<BatchEffect>, into: &mut Vec<String>) {
        for effect in effects {
            if let BatchEffect::Write(batch) = effect {
                into.extend(batch.rows.into_iter().map(|r| r.handle.token));
                into.extend(batch.letters.into_iter().map(|l| l.handle.token));
            }
        }
    }

    #[test]
    fn every_row_leaves_in_exactly_one_batch() {
        for eager_below in 0..=3 {
            let mut b = eager(7, 3, eager_below);
            let mut tokens: Vec<String> = Vec::new();
            written(b.push(rows(0..40), letters(40..45)), &mut tokens);
            written(b.push(rows(45..47), Vec::new()), &mut tokens);
            while b.flushing() > 0 || b.buffered() > 0 {
                let effects = if b.flushing() > 0 {
                    b.on_written()
                } else {
                    b.on_timer()
                };
                written(effects, &mut tokens);
            }
            let count = tokens.len();
            tokens.sort();
            tokens.dedup();
            assert_eq!((count, tokens.len()), (47, 47), "eager_below {eager_below}");
        }
    }

    #[test]
    fn a_lone_row_on_an_idle_writer_goes_at_once() {
        let mut b = eager(1000, 4, 1);
        let effects = b.push(rows(0..1), Vec::new());
        assert_eq!(sizes(&effects), [1]);
        assert_eq!(arms(&effects), 0, "nothing waits: no timer");
        assert_eq!(b.buffered(), 0);
    }

    #[test]
    fn rows_that_come_during_a_write_go_together_when_it_ends() {
        let mut b = eager(1000, 4, 1);
        assert_eq!(sizes(&b.push(rows(0..1), Vec::new())), [1]);
        let effects = b.push(rows(1..2), Vec::new());
        assert!(
            sizes(&effects).is_empty(),
            "the writer is busy: the row waits"
        );
        assert_eq!(arms(&effects), 1, "the timer bounds the wait");
        assert!(b.push(rows(2..4), Vec::new()).is_empty());
        let effects = b.on_written();
        assert_eq!(sizes(&effects), [3], "one batch for what gathered");
        assert_eq!(b.flushing(), 1);
        assert!(
            sizes(&b.on_timer()).is_empty(),
            "the timer finds nothing left"
        );
    }

    #[test]
    fn a_busy_writer_still_sends_full_batches_and_the_timer_sends_the_rest() {
        let mut b = eager(10, 4, 1);
        assert_eq!(sizes(&b.push(rows(0..1), Vec::new())), [1]);
        let effects = b.push(rows(1..26), Vec::new());
        assert_eq!(sizes(&effects), [10, 10], "full batches do not wait");
        assert_eq!(arms(&effects), 1);
        assert_eq!(b.buffered(), 5);
        assert_eq!(sizes(&b.on_timer()), [5]);
        assert_eq!(b.flushing(), 4);
    }

    #[test]
    fn eager_below_two_lets_two_partial_batches_overlap() {
        let mut b = eager(1000, 4, 2);
        assert_eq!(sizes(&b.push(rows(0..1), Vec::new())), [1]);
        assert_eq!(sizes(&b.push(rows(1..3), Vec::new())), [2]);
        let effects = b.push(rows(3..4), Vec::new());
        assert!(sizes(&effects).is_empty(), "two writes in flight: it waits");
        assert_eq!(sizes(&b.on_written()), [1]);
    }

    #[test]
    fn eager_below_zero_always_waits_for_the_timer() {
        let mut b = eager(1000, 4, 0);
        let effects = b.push(rows(0..1), Vec::new());
        assert!(sizes(&effects).is_empty());
        assert_eq!(arms(&effects), 1);
    }

    #[test]
    fn an_idle_writer_arms_no_timer() {
        let mut b = batcher(10, 4);
        assert!(b.push(Vec::new(), Vec::new()).is_empty());
        assert!(b.on_timer().is_empty());
    }
}
