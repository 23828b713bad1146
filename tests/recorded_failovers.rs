//! The incident fold over event sequences recorded from real failovers on the
//! rig (three sentinels; see tests/fixtures/record.py): each failover is one
//! message, however many events the sentinels published.

use std::time::{Duration, Instant, SystemTime};

use sentinel_vip::decide::fold::{Fold, MasterRead, Severity, Stamp, State};
use sentinel_vip::watch::event::parse;

/// Replays a fixture; returns what the fold sends and how many events it absorbed.
fn replay(
    fixture: &str,
    group_wait: Duration,
) -> (Vec<sentinel_vip::decide::fold::Incident>, usize, usize) {
    replay_with(fixture, group_wait, false)
}

/// The master's address as the fixture's first master event names it.
fn first_master(fixture: &str) -> String {
    let w: Vec<&str> = fixture
        .split_whitespace()
        .skip_while(|w| *w != "mymaster")
        .take(3)
        .collect();
    format!("{}:{}", w[1], w[2])
}

/// [`replay`], with a majority read first (`read_first`: the master up at
/// config-epoch 0, as a watcher running before the failover knows it) and
/// flap damping at its default (5 min).
fn replay_with(
    fixture: &str,
    group_wait: Duration,
    read_first: bool,
) -> (Vec<sentinel_vip::decide::fold::Incident>, usize, usize) {
    let mut fold = Fold::new(group_wait, Duration::from_secs(4 * 3600))
        .with_group_interval(Duration::from_secs(300));
    let t0 = Instant::now();
    if read_first {
        fold.on_master_read(
            Stamp {
                mono: t0,
                wall: SystemTime::now(),
            },
            &MasterRead {
                master: "mymaster".into(),
                addr: first_master(fixture),
                config_epoch: 0,
                odown: false,
                failover_in_progress: false,
                replicas_down: Vec::new(),
                started: t0,
            },
        );
    }
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

#[test]
fn sigkill_failover_with_the_old_master_back_as_a_replica_is_one_incident() {
    // SIGKILL of the master, restarted 5 s later: it comes back as a replica
    // (-sdown, -role-change, +convert-to-slave from every sentinel).
    // group_wait 1 s (as the rig tests run): the old master's 2 s as a down
    // replica would be told on its own if it were an incident of its own.
    let fixture = include_str!("fixtures/sigkill_return.events");
    let (sent, events, absorbed) = replay(fixture, Duration::from_secs(1));
    eprintln!(
        "SIGKILL failover, old master back: {events} events, {absorbed} absorbed, {} message(s): {:?}",
        sent.len(),
        sent.iter().map(|i| i.summary()).collect::<Vec<_>>()
    );
    assert!(events >= 30, "fixture too small: {events}");
    // One incident: told firing (the failover took longer than group_wait)
    // and resolved, nothing else (no "replica down" / "back up" of its own).
    let keys: std::collections::BTreeSet<&str> = sent.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys.len(), 1, "{sent:#?}");
    let last = sent.last().expect("a message");
    assert!(last.summary().contains("failed over"), "{}", last.summary());
    assert!(
        last.annotations.iter().any(|a| a.contains("old master")),
        "{:?}",
        sent[0].annotations
    );
}

/// Every recorded failover, as a watcher that read the master up before it:
/// one incident each, planned only where Sentinel was asked to fail over.
#[test]
fn recorded_failovers_are_one_incident_each_and_planned_only_when_asked() {
    for (name, fixture, planned) in [
        (
            "SENTINEL FAILOVER",
            include_str!("fixtures/sentinel_failover.events"),
            true,
        ),
        (
            "SIGKILL",
            include_str!("fixtures/sigkill_failover.events"),
            false,
        ),
        (
            "SIGKILL, old master back",
            include_str!("fixtures/sigkill_return.events"),
            false,
        ),
    ] {
        let (sent, _, _) = replay_with(fixture, Duration::from_secs(1), true);
        let keys: std::collections::BTreeSet<&str> = sent.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys.len(), 1, "{name}: {sent:#?}");
        let i = sent.last().expect("a message");
        assert_eq!(i.state, State::Resolved, "{name}");
        assert_eq!(i.planned, planned, "{name}: {}", i.summary());
        assert_eq!(
            i.severity,
            if planned {
                Severity::Info
            } else {
                Severity::Critical
            },
            "{name}"
        );
        assert_eq!(
            i.summary().starts_with("planned switchover of mymaster:"),
            planned,
            "{name}: {}",
            i.summary()
        );
    }
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
