//! The incident fold over event sequences recorded from real failovers on the
//! rig (three sentinels; see tests/fixtures/record.py): each failover is one
//! message, however many events the sentinels published.

use std::time::{Duration, Instant, SystemTime};

use sentinel_vip::alerts::fold::{Fold, State};
use sentinel_vip::event::parse;

/// Replays a fixture; returns what the fold sends and how many events it absorbed.
fn replay(
    fixture: &str,
    group_wait: Duration,
) -> (Vec<sentinel_vip::alerts::fold::Incident>, usize, usize) {
    let mut fold = Fold::new(group_wait, Duration::from_secs(4 * 3600));
    let t0 = Instant::now();
    let mut sent = Vec::new();
    let mut events = 0;
    let mut last = 0;
    for line in fixture.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.splitn(4, ' ');
        let ms: u64 = f.next().and_then(|x| x.parse().ok()).expect("ms");
        let sentinel: usize = f.next().and_then(|x| x.parse().ok()).expect("sentinel");
        let channel = f.next().expect("channel");
        let payload = f.next().unwrap_or("");
        let now = t0 + Duration::from_millis(ms);
        sent.extend(fold.due(now));
        if let Ok(e) = parse(channel, payload) {
            events += 1;
            fold.on_event(now, SystemTime::now(), sentinel, &e);
        }
        last = ms;
    }
    sent.extend(fold.due(t0 + Duration::from_millis(last) + group_wait + Duration::from_secs(10)));
    (sent, events, fold.absorbed)
}

#[test]
fn manual_failover_recorded_from_three_sentinels_sends_one_alert() {
    let (sent, events, absorbed) = replay(
        include_str!("fixtures/sentinel_failover.events"),
        Duration::from_secs(10),
    );
    eprintln!(
        "manual failover: {events} events from 3 sentinels, {absorbed} absorbed, {} message(s)",
        sent.len()
    );
    assert!(events >= 15, "fixture too small: {events}");
    let failovers: Vec<_> = sent
        .iter()
        .filter(|i| i.summary().contains("failed over"))
        .collect();
    assert_eq!(failovers.len(), 1, "{sent:#?}");
    assert_eq!(failovers[0].state, State::Resolved);
    assert_eq!(sent.len(), 1, "{sent:#?}");
}

#[test]
fn sigkill_failover_recorded_from_three_sentinels_sends_one_alert() {
    let (sent, events, absorbed) = replay(
        include_str!("fixtures/sigkill_failover.events"),
        Duration::from_secs(10),
    );
    eprintln!(
        "SIGKILL failover: {events} events from 3 sentinels, {absorbed} absorbed, {} message(s)",
        sent.len()
    );
    assert!(events >= 15, "fixture too small: {events}");
    let failovers: Vec<_> = sent
        .iter()
        .filter(|i| i.summary().contains("failed over"))
        .collect();
    assert_eq!(failovers.len(), 1, "{sent:#?}");
    assert!(
        failovers[0]
            .annotations
            .iter()
            .any(|a| a.starts_with("+odown")),
        "{:?}",
        failovers[0].annotations
    );
}
