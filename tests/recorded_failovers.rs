//! The incident fold over event sequences recorded from real failovers on the
//! rig (three sentinels; see tests/fixtures/record.py): each failover is one
//! message, however many events the sentinels published.

use std::time::{Duration, Instant, SystemTime};

use sentinel_vip::decide::fold::{Fold, Stamp, State};
use sentinel_vip::watch::event::parse;

/// Replays a fixture; returns what the fold sends and how many events it absorbed.
fn replay(
    fixture: &str,
    group_wait: Duration,
) -> (Vec<sentinel_vip::decide::fold::Incident>, usize, usize) {
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
            fold.on_event(
                Stamp {
                    mono: now,
                    wall: SystemTime::now(),
                },
                sentinel,
                &e,
            );
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
        "SIGKILL failover: {events} events from 3 sentinels, {absorbed} absorbed, {} message(s): {:?}",
        sent.len(),
        sent.iter().map(|i| i.summary()).collect::<Vec<_>>()
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

/// Months of failovers, compressed: both recorded fixtures replayed again and
/// again with rising epochs and time, plus the same bursts for a master this
/// watcher does not route for. The fold's state must stay flat.
#[test]
fn fold_state_stays_flat_over_100k_replayed_events() {
    let fixtures = [
        include_str!("fixtures/sentinel_failover.events"),
        include_str!("fixtures/sigkill_failover.events"),
    ];
    let mut fold = Fold::new(Duration::from_secs(10), Duration::from_secs(4 * 3600))
        .for_masters(["mymaster".to_owned()]);
    let t0 = Instant::now();
    let (mut events, mut round, mut sent, mut unwatched) = (0usize, 0u64, 0usize, 0usize);
    let mut sizes = Vec::new();
    while events < 100_000 {
        round += 1;
        // One failover every 10 minutes of replayed time.
        let base = round * 600_000;
        for master in ["mymaster", "unwatched"] {
            let fixture = fixtures[(round % 2) as usize];
            for line in fixture.lines().filter(|l| !l.trim().is_empty()) {
                let mut f = line.splitn(4, ' ');
                let ms: u64 = f.next().and_then(|x| x.parse().ok()).expect("ms");
                let sentinel: usize = f.next().and_then(|x| x.parse().ok()).expect("sentinel");
                let channel = f.next().expect("channel");
                let payload = f.next().unwrap_or("").replace("mymaster", master);
                let payload = if channel == "+new-epoch" {
                    round.to_string()
                } else {
                    payload
                };
                if let Ok(e) = parse(channel, &payload) {
                    events += 1;
                    unwatched += usize::from(e.master() == Some("unwatched"));
                    fold.on_event(
                        Stamp {
                            mono: t0 + Duration::from_millis(base + ms),
                            wall: SystemTime::now(),
                        },
                        sentinel,
                        &e,
                    );
                }
            }
        }
        sent += fold
            .due(t0 + Duration::from_millis(base + 60_000))
            .into_iter()
            .filter(|i| i.state == State::Resolved)
            .count();
        sizes.push(fold.state_size());
    }
    let early = *sizes[..10].iter().max().expect("rounds");
    let late = *sizes[sizes.len() / 2..].iter().max().expect("rounds");
    eprintln!(
        "{events} events in {round} failovers: {sent} told, {} ignored (unwatched master), \
         state size early {early}, late {late}",
        fold.ignored
    );
    assert_eq!(
        fold.ignored, unwatched,
        "the unwatched master's events are not folded"
    );
    assert!(late <= early, "state grows: {early} → {late}");
    assert!(late <= 8, "state size {late}");
    assert_eq!(sent as u64, round, "one message per failover");
}
