//! Queue order (weights, strict) and paused queues.

use std::collections::HashSet;

use super::*;

fn ordered(queues: &[&str], mode: QueueMode, weights: &[u32]) -> ClaimCore {
    ClaimCore::new(CoreConfig {
        order: QueueOrder::new(mode, weights),
        ..config(queues, 100, 5000)
    })
}

fn paused(queues: &[&str]) -> HashSet<Arc<str>> {
    queues.iter().map(|name| q(name)).collect()
}

fn held_back(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::HoldBack(queue) => Some(queue.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn weights_split_a_round_and_interleave_its_starts() {
    let mut core = ordered(&["a", "b"], QueueMode::Weighted, &[3, 1]);
    let effects = core.start(T0);
    assert_eq!(asks(&effects), [("a".into(), 150), ("b".into(), 50)]);
    let request = claim_request(&effects).expect("a claim");
    assert_eq!(request.start_order.len(), 200);
    assert_eq!(request.start_order[..4], [0, 0, 1, 0]);
}

#[test]
fn one_queue_asks_one_batch_in_claim_order() {
    let mut core = ordered(&["a", "b"], QueueMode::Weighted, &[3, 1]);
    core.start(T0);
    let effects = core.on_claimed(
        T0,
        vec![claim("a", 150, 0..150), claim("b", 50, 0..0)],
        None,
    );
    let request = claim_request(&effects).expect("claims again");
    assert_eq!(asks(&effects), [("a".into(), 100)]);
    assert!(request.start_order.is_empty());
}

#[test]
fn strict_asks_the_first_queue_with_work_alone() {
    let mut core = ordered(&["a", "b"], QueueMode::Strict, &[1, 1]);
    let effects = core.start(T0);
    assert_eq!(asks(&effects), [("a".into(), 100)]);
    let effects = core.on_claimed(T0, vec![claim("a", 100, 0..100)], None);
    assert_eq!(asks(&effects), [("a".into(), 100)], "a still has work");
    let effects = core.on_claimed(T0, vec![claim("a", 100, 100..120)], None);
    assert_eq!(asks(&effects), [("b".into(), 100)], "a ran dry");
    let effects = core.on_wait_ended(T0 + 1, q("a"), true);
    assert!(claim_request(&effects).is_none(), "b's round is out");
    let effects = core.on_claimed(T0 + 2, vec![claim("b", 100, 0..100)], None);
    assert_eq!(asks(&effects), [("a".into(), 100)], "a has work again");
}

#[test]
fn a_paused_queue_is_not_claimed_and_its_unstarted_jobs_are_held_back() {
    let mut core = ClaimCore::new(config(&["a", "b"], 100, 5000));
    core.start(T0);
    core.on_claimed(
        T0,
        vec![claim("a", 100, 0..100), claim("b", 100, 0..100)],
        None,
    );
    // The next round is out; the pause arrives meanwhile.
    let effects = core.on_paused(T0, paused(&["a"]));
    assert_eq!(held_back(&effects), ["a"]);
    assert!(claim_request(&effects).is_none(), "a round is still out");
    let effects = core.on_claimed(T0, vec![claim("b", 100, 100..200)], None);
    assert_eq!(asks(&effects), [("b".into(), 100)]);
    let effects = core.on_paused(T0, paused(&["a"]));
    assert!(held_back(&effects).is_empty(), "held back once");
}

#[test]
fn a_claim_that_finds_its_queue_paused_holds_back_and_does_not_wait() {
    let mut core = ClaimCore::new(config(&["a"], 100, 5000));
    core.start(T0);
    let effects = core.on_claimed(
        T0,
        vec![QueueClaim {
            paused: true,
            ..claim("a", 100, 0..2)
        }],
        None,
    );
    assert_eq!(held_back(&effects), ["a"]);
    assert!(!has(&effects, |e| matches!(e, Effect::WaitForJobs(_))));
    assert!(claim_request(&effects).is_none());
    assert_eq!(core.held(), 2, "cancelled jobs taken while paused are held");
    assert!(
        claim_request(&core.on_wake(T0 + 1)).is_none(),
        "still paused"
    );
    let effects = core.on_paused(T0 + 2, HashSet::new());
    assert_eq!(asks(&effects), [("a".into(), 100)], "resumed");
}
