//! Redis errors, backoff, reconcile and lost leases.

use super::*;

#[test]
fn a_failed_claim_backs_off_then_reconciles_before_claiming() {
    let mut core = holding(5, 5000);
    core.on_wake(T0);
    let effects = core.on_claimed(T0, Vec::new(), down());
    assert_eq!(ticks(&effects), [T0 + 100]);
    assert!(matches!(
        reports(&effects)[..],
        [Report::ClaimFailed {
            delay_ms: 100,
            held: 5,
            ..
        }]
    ));
    assert_eq!(core.round(), Round::BackingOff { until_ms: T0 + 100 });
    assert_eq!(core.trust(), Trust::ClaimUncertain);
    assert!(
        core.on_wake(T0 + 50).is_empty(),
        "a wake does not cut the pause short"
    );
    let effects = core.on_tick(T0 + 100);
    let known = effects.iter().find_map(|e| match e {
        Effect::Reconcile(known) => Some(known.clone()),
        _ => None,
    });
    let known = known.expect("a reconcile");
    assert_eq!(known[0].1.len(), 5, "the tokens held are listed");
    assert!(claim_request(&effects).is_none());
    assert_eq!(core.round(), Round::Reconciling);
}

#[test]
fn the_pause_doubles_with_each_failure_up_to_five_seconds() {
    let mut core = holding(0, 5000);
    let mut now = T0;
    let mut pauses = Vec::new();
    core.on_wake(now);
    for _ in 0..8 {
        let effects = core.on_claimed(now, Vec::new(), down());
        let at = ticks(&effects)[0];
        pauses.push(at - now);
        now = at;
        core.on_tick(now); // reconcile starts
        let effects = core.on_reconciled(now, Ok(Reconciled::default()));
        assert!(claim_request(&effects).is_some());
    }
    assert_eq!(pauses, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
}

#[test]
fn a_failed_reconcile_backs_off_and_stays_uncertain() {
    let mut core = holding(0, 5000);
    core.on_wake(T0);
    core.on_claimed(T0, Vec::new(), down());
    core.on_tick(T0 + 100);
    let effects = core.on_reconciled(T0 + 100, Err(QueueError::Protocol("timeout".into())));
    assert_eq!(ticks(&effects), [T0 + 300]);
    assert_eq!(core.trust(), Trust::ClaimUncertain);
    assert!(has(&core.on_tick(T0 + 300), |e| matches!(
        e,
        Effect::Reconcile(_)
    )));
}

#[test]
fn claiming_resumes_after_a_reconcile_and_says_redis_is_back() {
    let mut core = holding(0, 5000);
    core.on_wake(T0);
    core.on_claimed(T0, Vec::new(), down());
    core.on_tick(T0 + 100);
    let effects = core.on_reconciled(
        T0 + 100,
        Ok(Reconciled {
            released: 7,
            gone: Vec::new(),
        }),
    );
    assert!(reports(&effects).contains(&Report::Released(7)));
    assert_eq!(core.trust(), Trust::Trusted);
    let effects = core.on_claimed(T0 + 101, vec![claim("a", 100, 0..100)], None);
    assert!(reports(&effects).contains(&Report::RedisBack));
}

#[test]
fn jobs_claimed_before_the_error_in_a_round_are_held() {
    let mut core = ClaimCore::new(config(&["a", "b"], 100, 5000));
    core.start(T0);
    core.on_claimed(T0, vec![claim("a", 100, 0..100)], down());
    assert_eq!(core.held(), 100);
    assert!(matches!(core.round(), Round::BackingOff { .. }));
}

#[test]
fn a_lost_lease_seen_by_a_claim_reconciles_and_forgets_recovered_jobs() {
    let mut core = holding(10, 5000);
    core.on_wake(T0);
    let effects = core.on_claimed(
        T0,
        vec![QueueClaim {
            lease_was_held: false,
            ..claim("a", 100, 10..12)
        }],
        None,
    );
    assert!(reports(&effects).contains(&Report::LeaseLost(q("a"))));
    assert!(has(&effects, |e| matches!(e, Effect::Reconcile(_))));
    assert_eq!(core.held(), 12, "the new jobs are held");
    let effects = core.on_reconciled(
        T0,
        Ok(Reconciled {
            released: 0,
            gone: handles("a", 0..10),
        }),
    );
    assert!(reports(&effects).contains(&Report::Forgotten(10)));
    assert_eq!(core.held(), 2);
    let late = core.on_outcomes(vec![finished(handles("a", 0..1)[0].clone())]);
    assert!(reports(&late).contains(&Report::Fenced(1)));
}

#[test]
fn a_new_lease_without_held_jobs_is_no_loss() {
    let mut core = ClaimCore::new(config(&["a"], 100, 5000));
    core.start(T0);
    let effects = core.on_claimed(
        T0,
        vec![QueueClaim {
            lease_was_held: false,
            ..claim("a", 100, 0..100)
        }],
        None,
    );
    assert_eq!(core.trust(), Trust::Trusted);
    assert!(claim_request(&effects).is_some());
}

#[test]
fn a_lease_lost_during_a_claim_round_reconciles_after_it() {
    let mut core = holding(3, 5000);
    core.on_wake(T0);
    let effects = core.on_lease_lost(T0, q("a"));
    assert!(
        !has(&effects, |e| matches!(e, Effect::Reconcile(_))),
        "a round is out"
    );
    assert_eq!(core.trust(), Trust::LeaseLost);
    let effects = core.on_claimed(T0, vec![claim("a", 100, 3..4)], None);
    assert!(has(&effects, |e| matches!(e, Effect::Reconcile(_))));
}

#[test]
fn a_heartbeat_loss_with_nothing_held_changes_nothing() {
    let mut core = holding(0, 5000);
    core.on_lease_lost(T0, q("a"));
    assert_eq!(core.trust(), Trust::Trusted);
}
