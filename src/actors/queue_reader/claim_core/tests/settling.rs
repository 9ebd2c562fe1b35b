//! Outcomes, commits, acknowledgements and reschedules.

use super::*;

#[test]
fn final_outcomes_go_to_the_db_writer_and_retries_back_to_redis() {
    let mut core = holding(3, 5000);
    let held = handles("a", 0..3);
    let effects = core.on_outcomes(vec![
        finished(held[0].clone()),
        retry(held[1].clone(), 1),
        Outcome::Defer {
            handle: held[2].clone(),
            due_ms: T0 + 60_000,
        },
    ]);
    let recorded = effects.iter().find_map(|e| match e {
        Effect::Record(finals) => Some(finals.len()),
        _ => None,
    });
    assert_eq!(recorded, Some(1));
    assert_eq!(writes(&effects), [(0, 2)]);
    assert!(reports(&effects).contains(&Report::Retried(1)));
    assert_eq!(core.held(), 3, "held until Redis takes the writes");
}

#[test]
fn a_retry_that_never_ran_counts_no_attempt() {
    let mut core = holding(1, 5000);
    let effects = core.on_outcomes(vec![retry(handles("a", 0..1)[0].clone(), 0)]);
    let failure = effects.iter().find_map(|e| match e {
        Effect::Write { reschedules, .. } => Some(reschedules[0].1.failure.clone()),
        _ => None,
    });
    assert_eq!(failure, Some(None));
}

#[test]
fn outcomes_of_jobs_not_held_are_fenced() {
    let mut core = holding(1, 5000);
    let effects = core.on_outcomes(vec![
        finished(handles("a", 0..1)[0].clone()),
        finished(handles("a", 7..8)[0].clone()),
    ]);
    assert!(reports(&effects).contains(&Report::Fenced(1)));
    let recorded = effects.iter().find_map(|e| match e {
        Effect::Record(finals) => Some(finals.len()),
        _ => None,
    });
    assert_eq!(recorded, Some(1));
}

#[test]
fn a_commit_is_acknowledged_and_frees_capacity_once_redis_takes_it() {
    let mut core = holding(100, 100);
    let committed = handles("a", 0..40);
    let effects = core.on_committed(committed.clone());
    assert_eq!(writes(&effects), [(40, 0)]);
    assert_eq!(core.held(), 100, "not before the ack");
    let effects = core.on_written(T0, done(committed));
    assert_eq!(core.held(), 60);
    assert!(reports(&effects).contains(&Report::Acked(40)));
    assert_eq!(claim_request(&effects).expect("room again").budget, 40);
}

#[test]
fn backpressure_while_mysql_is_down_stops_claiming_at_the_limit() {
    let mut core = holding(100, 100);
    let effects = core.on_outcomes(handles("a", 0..100).into_iter().map(finished).collect());
    assert!(has(&effects, |e| matches!(e, Effect::Record(_))));
    // No commit ever comes: nothing is acknowledged, nothing more claimed.
    for step in 0..10 {
        let effects = core.on_wake(T0 + step);
        assert!(claim_request(&effects).is_none());
        assert!(core.on_tick(T0 + step * 1000).is_empty());
    }
    assert_eq!(core.held(), 100);
}

#[test]
fn one_write_round_at_a_time_and_what_came_meanwhile_follows() {
    let mut core = holding(10, 5000);
    assert_eq!(writes(&core.on_committed(handles("a", 0..4))), [(4, 0)]);
    assert!(writes(&core.on_committed(handles("a", 4..6))).is_empty());
    let effects = core.on_written(T0, done(handles("a", 0..4)));
    assert_eq!(writes(&effects), [(2, 0)]);
}

#[test]
fn a_failed_write_stays_owed_and_is_tried_again() {
    let mut core = holding(10, 5000);
    let owed = handles("a", 0..4);
    core.on_committed(owed.clone());
    let effects = core.on_written(
        T0,
        RedisWriteReport {
            unsent_acks: owed.clone(),
            error: down(),
            ..RedisWriteReport::default()
        },
    );
    assert_eq!(ticks(&effects), [T0 + 250]);
    assert!(writes(&effects).is_empty());
    assert!(matches!(
        reports(&effects)[..],
        [Report::WriteFailed { retry_ms: 250, .. }]
    ));
    assert!(writes(&core.on_tick(T0 + 100)).is_empty());
    assert_eq!(writes(&core.on_tick(T0 + 250)), [(4, 0)]);
    assert_eq!(core.held(), 10);
}

#[test]
fn a_commit_during_the_retry_pause_writes_everything_owed_at_once() {
    let mut core = holding(10, 5000);
    core.on_committed(handles("a", 0..4));
    core.on_written(
        T0,
        RedisWriteReport {
            unsent_acks: handles("a", 0..4),
            error: down(),
            ..RedisWriteReport::default()
        },
    );
    assert_eq!(writes(&core.on_committed(handles("a", 4..5))), [(5, 0)]);
}

#[test]
fn writes_of_jobs_no_longer_held_are_reported_and_forgotten() {
    let mut core = holding(2, 5000);
    core.on_committed(handles("a", 0..2));
    let effects = core.on_written(
        T0,
        RedisWriteReport {
            acked: 1,
            lease_lost: 1,
            done: handles("a", 0..2),
            ..RedisWriteReport::default()
        },
    );
    assert!(reports(&effects).contains(&Report::NotHeld(1)));
    assert_eq!(core.held(), 0);
}
