//! Capacity, claim rounds and waits on empty queues.

use super::*;

#[test]
fn start_claims_a_batch_from_every_queue() {
    let mut core = ClaimCore::new(config(&["a", "b"], 100, 5000));
    let effects = core.start(T0);
    assert_eq!(asks(&effects), [("a".into(), 100), ("b".into(), 100)]);
    let request = claim_request(&effects).expect("a claim");
    assert_eq!(request.budget, 5000);
    assert_eq!(request.lease_deadline_ms, T0 + 30_000);
    assert_eq!(core.round(), Round::Claiming);
}

#[test]
fn the_budget_is_the_free_capacity() {
    let mut core = ClaimCore::new(config(&["a"], 100, 150));
    core.start(T0);
    let effects = core.on_claimed(T0, vec![claim("a", 100, 0..100)], None);
    assert_eq!(claim_request(&effects).expect("claims again").budget, 50);
}

#[test]
fn nothing_is_claimed_at_the_in_flight_limit() {
    let mut core = ClaimCore::new(config(&["a"], 100, 100));
    core.start(T0);
    let effects = core.on_claimed(T0, vec![claim("a", 100, 0..100)], None);
    assert!(claim_request(&effects).is_none(), "{effects:?}");
    assert!(core.on_wake(T0).is_empty());
}

#[test]
fn rounds_never_overlap() {
    let mut core = ClaimCore::new(config(&["a"], 100, 5000));
    core.start(T0);
    assert!(claim_request(&core.on_wake(T0)).is_none());
    assert!(claim_request(&core.on_committed(Vec::new())).is_none());
}

#[test]
fn a_full_claim_claims_again_at_once() {
    let mut core = ClaimCore::new(config(&["a"], 100, 5000));
    core.start(T0);
    let effects = core.on_claimed(T0, vec![claim("a", 100, 0..100)], None);
    assert_eq!(asks(&effects), [("a".into(), 100)]);
    assert!(!has(&effects, |e| matches!(e, Effect::WaitForJobs(_))));
}

#[test]
fn a_short_claim_waits_on_that_queue_and_claims_from_the_others() {
    let mut core = ClaimCore::new(config(&["a", "b"], 100, 5000));
    core.start(T0);
    let effects = core.on_claimed(
        T0,
        vec![claim("a", 100, 0..3), claim("b", 100, 0..100)],
        None,
    );
    assert!(has(
        &effects,
        |e| matches!(e, Effect::WaitForJobs(q) if &**q == "a")
    ));
    assert_eq!(asks(&effects), [("b".into(), 100)]);
}

#[test]
fn a_round_that_finds_every_queue_empty_waits_without_spinning() {
    let mut core = ClaimCore::new(config(&["a"], 100, 5000));
    core.start(T0);
    let effects = core.on_claimed(T0, vec![claim("a", 100, 0..0)], None);
    assert!(claim_request(&effects).is_none());
    assert!(has(&effects, |e| matches!(e, Effect::WaitForJobs(_))));
    assert!(
        core.on_tick(T0 + 10_000).is_empty(),
        "no timer-driven polling"
    );
}

#[test]
fn the_end_of_a_wait_claims_from_that_queue_again() {
    let mut core = holding(0, 5000);
    let effects = core.on_wait_ended(T0 + 5, q("a"), true);
    assert_eq!(asks(&effects), [("a".into(), 100)]);
}

#[test]
fn a_wait_is_not_started_twice() {
    let mut core = holding(0, 5000);
    core.on_wake(T0);
    let effects = core.on_claimed(T0, vec![claim("a", 100, 0..0)], None);
    assert!(
        !has(&effects, |e| matches!(e, Effect::WaitForJobs(_))),
        "the first wait is still under way"
    );
}

#[test]
fn a_failed_wait_looks_at_the_queue_again_later() {
    let mut core = holding(0, 5000);
    let effects = core.on_wait_ended(T0, q("a"), false);
    assert_eq!(ticks(&effects), [T0 + 1000]);
    assert!(claim_request(&core.on_tick(T0 + 999)).is_none());
    assert_eq!(asks(&core.on_tick(T0 + 1000)), [("a".into(), 100)]);
}

#[test]
fn a_wake_reopens_every_empty_queue() {
    let mut core = ClaimCore::new(config(&["a", "b"], 100, 5000));
    core.start(T0);
    core.on_claimed(T0, vec![claim("a", 100, 0..0), claim("b", 100, 0..0)], None);
    let effects = core.on_wake(T0 + 1);
    assert_eq!(asks(&effects), [("a".into(), 100), ("b".into(), 100)]);
}

#[test]
fn nothing_is_claimed_while_writes_are_blocked_and_claiming_resumes_after() {
    let mut core = ClaimCore::new(config(&["a"], 100, 5000));
    core.start(T0);
    let effects = core.on_writes(T0, Writes::Blocked);
    assert!(claim_request(&effects).is_none(), "a round was already out");
    let effects = core.on_claimed(T0, vec![claim("a", 100, 0..100)], None);
    assert!(claim_request(&effects).is_none(), "{effects:?}");
    assert!(claim_request(&core.on_wake(T0)).is_none());
    let effects = core.on_writes(T0, Writes::Flowing);
    assert_eq!(asks(&effects), [("a".into(), 100)]);
}

fn held_back(queue: &str, asked: usize, range: std::ops::Range<usize>, for_ms: u64) -> QueueClaim {
    QueueClaim {
        held_back_for_ms: Some(for_ms),
        ..claim(queue, asked, range)
    }
}

#[test]
fn a_queue_a_limiter_holds_back_is_left_alone_until_the_limit_may_have_room() {
    let mut core = ClaimCore::new(config(&["a", "b"], 100, 5000));
    core.start(T0);
    let effects = core.on_claimed(
        T0,
        vec![held_back("a", 100, 0..2, 400), claim("b", 100, 0..100)],
        None,
    );
    assert!(
        !has(
            &effects,
            |e| matches!(e, Effect::WaitForJobs(q) if &**q == "a")
        ),
        "a blocking wait would return at once: the jobs are still there"
    );
    assert!(ticks(&effects).contains(&(T0 + 400)));
    assert_eq!(asks(&effects), [("b".into(), 100)]);
    core.on_claimed(T0, vec![claim("b", 100, 0..0)], None);
    assert!(claim_request(&core.on_tick(T0 + 399)).is_none());
    assert_eq!(asks(&core.on_tick(T0 + 400)), [("a".into(), 100)]);
}

#[test]
fn a_full_concurrency_limit_waits_for_a_released_slot_once() {
    let mut core = ClaimCore::new(config(&["a"], 100, 5000));
    core.start(T0);
    let full = QueueClaim {
        slot_full: true,
        ..held_back("a", 100, 0..2, 1000)
    };
    let effects = core.on_claimed(T0, vec![full.clone()], None);
    let slot_waits = |effects: &[Effect]| {
        effects
            .iter()
            .filter(|e| matches!(e, Effect::WaitForSlot(q) if &**q == "a"))
            .count()
    };
    assert_eq!(slot_waits(&effects), 1);
    let effects = core.on_slot_released(T0 + 5, q("a"));
    assert_eq!(
        asks(&effects),
        [("a".into(), 100)],
        "a released slot: claim at once"
    );
    let effects = core.on_claimed(T0 + 6, vec![full.clone()], None);
    assert_eq!(
        slot_waits(&effects),
        1,
        "the next wait starts once the last ended"
    );
    core.on_tick(T0 + 1006);
    let effects = core.on_claimed(T0 + 1007, vec![full], None);
    assert_eq!(slot_waits(&effects), 0, "a wait is still under way");
}

#[test]
fn a_job_of_a_held_back_queue_ending_here_looks_at_it_again_at_once() {
    let mut core = ClaimCore::new(config(&["a"], 100, 5000));
    core.start(T0);
    core.on_claimed(T0, vec![held_back("a", 100, 0..2, 1000)], None);
    assert!(claim_request(&core.on_wake(T0 + 1)).is_none());
    let effects = core.on_written(T0 + 2, done(handles("a", 0..1)));
    assert_eq!(asks(&effects), [("a".into(), 100)]);
}
