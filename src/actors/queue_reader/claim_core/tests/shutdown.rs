//! Shutdown: quiet → drain → hand back.

use super::*;

#[test]
fn shutdown_with_nothing_held_hands_back_at_once() {
    let mut core = holding(0, 5000);
    let effects = core.on_shutdown(T0, 25_000);
    assert!(has(&effects, |e| matches!(e, Effect::HandBack)));
    assert_eq!(core.lifecycle(), Lifecycle::HandingBack);
    core.on_handed_back();
    assert_eq!(core.lifecycle(), Lifecycle::Stopped);
    assert!(core.on_wake(T0).is_empty());
}

#[test]
fn shutdown_drains_held_jobs_then_hands_back() {
    let mut core = holding(2, 5000);
    let effects = core.on_shutdown(T0, 25_000);
    assert_eq!(ticks(&effects), [T0 + 25_000]);
    assert!(!has(&effects, |e| matches!(e, Effect::HandBack)));
    assert!(
        claim_request(&core.on_wake(T0)).is_none(),
        "quiet: no claims"
    );
    core.on_committed(handles("a", 0..2));
    let effects = core.on_written(T0 + 10, done(handles("a", 0..2)));
    assert!(has(&effects, |e| matches!(e, Effect::HandBack)));
}

#[test]
fn shutdown_during_a_claim_round_waits_for_its_reply() {
    let mut core = ClaimCore::new(config(&["a"], 100, 5000));
    core.start(T0);
    let effects = core.on_shutdown(T0, 25_000);
    assert!(
        !has(&effects, |e| matches!(e, Effect::HandBack)),
        "the reply may bring jobs"
    );
    let effects = core.on_claimed(T0, vec![claim("a", 100, 0..0)], None);
    assert!(has(&effects, |e| matches!(e, Effect::HandBack)));
    assert!(
        !has(&effects, |e| matches!(e, Effect::WaitForJobs(_))),
        "no waits when quiet"
    );
}

#[test]
fn the_shutdown_deadline_hands_back_what_is_still_held() {
    let mut core = holding(5, 5000);
    core.on_shutdown(T0, 1000);
    assert!(core.on_tick(T0 + 999).is_empty());
    let effects = core.on_tick(T0 + 1000);
    assert!(has(&effects, |e| matches!(e, Effect::HandBack)));
    assert!(
        core.on_shutdown(T0 + 1001, 1000).is_empty(),
        "a second shutdown changes nothing"
    );
}

#[test]
fn draining_still_reconciles_an_uncertain_claim() {
    let mut core = holding(1, 5000);
    core.on_wake(T0);
    core.on_claimed(T0, Vec::new(), down());
    core.on_shutdown(T0, 25_000);
    assert!(has(&core.on_tick(T0 + 100), |e| matches!(
        e,
        Effect::Reconcile(_)
    )));
}

#[test]
fn draining_hands_back_during_a_backoff_once_nothing_is_held() {
    let mut core = holding(1, 5000);
    core.on_wake(T0);
    core.on_claimed(T0, Vec::new(), down());
    core.on_shutdown(T0, 25_000);
    core.on_committed(handles("a", 0..1));
    let effects = core.on_written(T0 + 10, done(handles("a", 0..1)));
    assert!(
        has(&effects, |e| matches!(e, Effect::HandBack)),
        "hand-back covers the unknown jobs too"
    );
}
