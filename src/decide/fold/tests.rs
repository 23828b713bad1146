//! The fold's unit tests: grouping, keys, aborts and retries, route outcomes
//! and memory, on a clock passed in.

use super::*;
use crate::watch::event::parse;

const GW: Duration = Duration::from_secs(10);

fn fold() -> Fold {
    Fold::new(GW, Duration::from_secs(4 * 3600))
}

fn feed(f: &mut Fold, t0: Instant, at_ms: u64, sentinel: usize, channel: &str, payload: &str) {
    let e = parse(channel, payload).unwrap();
    f.on_event(stamp(t0 + Duration::from_millis(at_ms)), sentinel, &e);
}

/// `mono` on the fold's clock, with the wall clock now.
fn stamp(mono: Instant) -> Stamp {
    Stamp {
        mono,
        wall: SystemTime::now(),
    }
}

/// A SIGKILL failover as three sentinels publish it, written by hand after
/// `tests/fixtures/sigkill_failover.events` with round timings and port 6379 so
/// the assertions can name them; `tests/recorded_failovers.rs` replays the
/// recordings themselves through the fold.
fn sigkill_burst(f: &mut Fold, t0: Instant) {
    for s in 0..3 {
        feed(
            f,
            t0,
            1000 + s as u64,
            s,
            "+sdown",
            "master mymaster 127.0.0.2 6379",
        );
    }
    for s in 0..3 {
        feed(
            f,
            t0,
            1100 + s as u64,
            s,
            "+odown",
            "master mymaster 127.0.0.2 6379 #quorum 2/2",
        );
    }
    feed(f, t0, 1200, 0, "+new-epoch", "1");
    feed(
        f,
        t0,
        1201,
        0,
        "+try-failover",
        "master mymaster 127.0.0.2 6379",
    );
    feed(
        f,
        t0,
        1300,
        0,
        "+elected-leader",
        "master mymaster 127.0.0.2 6379",
    );
    feed(
        f,
        t0,
        1400,
        0,
        "+selected-slave",
        "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379",
    );
    feed(
        f,
        t0,
        2000,
        0,
        "+failover-end",
        "master mymaster 127.0.0.2 6379",
    );
    for s in [1, 2, 0] {
        feed(f, t0, 2100 + s as u64, s, "+new-epoch", "1");
        feed(
            f,
            t0,
            2200 + s as u64,
            s,
            "+switch-master",
            "mymaster 127.0.0.2 6379 127.0.0.3 6379",
        );
        feed(
            f,
            t0,
            2300 + s as u64,
            s,
            "+slave",
            "slave 127.0.0.4:6379 127.0.0.4 6379 @ mymaster 127.0.0.3 6379",
        );
    }
}

#[test]
fn burst_from_three_sentinels_sends_one_alert() {
    let t0 = Instant::now();
    let mut f = fold();
    sigkill_burst(&mut f, t0);
    assert!(
        f.due(t0 + Duration::from_secs(5)).is_empty(),
        "held for group_wait"
    );
    let sent = f.due(t0 + Duration::from_secs(12));
    assert_eq!(sent.len(), 1, "{sent:?}");
    let i = &sent[0];
    assert_eq!(i.state, State::Resolved);
    assert!(
        i.summary()
            .starts_with("mymaster failed over 127.0.0.2:6379 → 127.0.0.3:6379"),
        "{}",
        i.summary()
    );
    assert_eq!(i.leader, Some(0));
    assert!(i.annotations.iter().any(|a| a == "+elected-leader"));
    assert!(i.events >= 10, "{}", i.events);
    assert!(f.due(t0 + Duration::from_secs(100)).is_empty(), "sent once");
    // A late duplicate switch from a healed sentinel is absorbed.
    feed(
        &mut f,
        t0,
        30_000,
        2,
        "+switch-master",
        "mymaster 127.0.0.2 6379 127.0.0.3 6379",
    );
    assert!(f.due(t0 + Duration::from_secs(60)).is_empty());
}

#[test]
fn route_outcome_is_quoted_in_the_message() {
    let t0 = Instant::now();
    let mut f = fold();
    sigkill_burst(&mut f, t0);
    f.on_route(
        stamp(t0 + Duration::from_millis(2210)),
        &RouteReport {
            master: "mymaster".into(),
            addr: "127.0.0.3:6379".into(),
            ok: true,
            target: "eni-1".into(),
            tables_written: 2,
            tables_total: 2,
            carriers: Vec::new(),
            latency_ms: 9.0,
            error: None,
        },
    );
    let sent = f.due(t0 + GW + Duration::from_secs(2));
    assert!(
        sent[0]
            .summary()
            .ends_with("VIP route updated in 2 tables in 9 ms"),
        "{}",
        sent[0].summary()
    );
}

#[test]
fn slow_failover_sends_firing_then_resolved() {
    let t0 = Instant::now();
    let mut f = fold();
    feed(
        &mut f,
        t0,
        0,
        0,
        "+odown",
        "master mymaster 127.0.0.2 6379 #quorum 2/2",
    );
    let firing = f.due(t0 + GW);
    assert_eq!(firing.len(), 1);
    assert_eq!(firing[0].state, State::Firing);
    feed(
        &mut f,
        t0,
        30_000,
        1,
        "+switch-master",
        "mymaster 127.0.0.2 6379 127.0.0.3 6379",
    );
    assert!(
        f.due(t0 + Duration::from_secs(31)).is_empty(),
        "waits briefly for the route outcome"
    );
    let resolved = f.due(t0 + Duration::from_secs(36));
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].state, State::Resolved);
    assert_eq!(resolved[0].key, firing[0].key);
}

#[test]
fn manual_failover_is_one_message_even_when_slower_than_group_wait() {
    let t0 = Instant::now();
    let mut f = Fold::new(Duration::from_secs(1), Duration::from_secs(3600));
    feed(
        &mut f,
        t0,
        0,
        0,
        "+elected-leader",
        "master mymaster 127.0.0.2 6379",
    );
    assert!(
        f.due(t0 + Duration::from_secs(3)).is_empty(),
        "not 'down': nobody saw +odown"
    );
    feed(
        &mut f,
        t0,
        3000,
        1,
        "+switch-master",
        "mymaster 127.0.0.2 6379 127.0.0.3 6379",
    );
    let sent = f.due(t0 + Duration::from_secs(9));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].state, State::Resolved);
    assert_eq!(sent[0].leader, Some(0));
    // One that never finishes is told after a minute.
    feed(&mut f, t0, 99_000, 0, "+new-epoch", "2");
    feed(
        &mut f,
        t0,
        100_000,
        0,
        "+elected-leader",
        "master mymaster 127.0.0.3 6379",
    );
    assert!(f.due(t0 + Duration::from_secs(150)).is_empty());
    let stuck = f.due(t0 + Duration::from_secs(161));
    assert_eq!(stuck.len(), 1);
    assert!(
        stuck[0].summary().contains("has not finished"),
        "{}",
        stuck[0].summary()
    );
}

#[test]
fn master_back_without_failover_resolves_on_minus_odown() {
    let t0 = Instant::now();
    let mut f = fold();
    feed(
        &mut f,
        t0,
        0,
        0,
        "+odown",
        "master mymaster 127.0.0.2 6379 #quorum 2/2",
    );
    assert_eq!(f.due(t0 + GW).len(), 1);
    feed(
        &mut f,
        t0,
        20_000,
        0,
        "-odown",
        "master mymaster 127.0.0.2 6379",
    );
    let r = f.due(t0 + Duration::from_secs(21));
    assert_eq!(r.len(), 1);
    assert!(r[0].summary().contains("back up"), "{}", r[0].summary());
}

#[test]
fn lone_sdown_of_master_is_not_an_incident_and_short_replica_blip_is_silent() {
    let t0 = Instant::now();
    let mut f = fold();
    feed(&mut f, t0, 0, 0, "+sdown", "master mymaster 127.0.0.2 6379");
    feed(
        &mut f,
        t0,
        0,
        1,
        "+sdown",
        "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379",
    );
    feed(
        &mut f,
        t0,
        3000,
        1,
        "-sdown",
        "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379",
    );
    assert!(f.due(t0 + Duration::from_secs(60)).is_empty());
}

#[test]
fn replica_down_longer_than_group_wait_is_one_warning_then_resolved() {
    let t0 = Instant::now();
    let mut f = fold();
    for s in 0..3 {
        feed(
            &mut f,
            t0,
            s,
            s as usize,
            "+sdown",
            "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379",
        );
    }
    let w = f.due(t0 + GW);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].severity, Severity::Warning);
    feed(
        &mut f,
        t0,
        60_000,
        0,
        "-sdown",
        "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379",
    );
    let r = f.due(t0 + Duration::from_secs(61));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].state, State::Resolved);
}

#[test]
fn open_incident_repeats_every_repeat_interval() {
    let t0 = Instant::now();
    let mut f = Fold::new(GW, Duration::from_secs(3600));
    feed(
        &mut f,
        t0,
        0,
        0,
        "+odown",
        "master mymaster 127.0.0.2 6379 #quorum 2/2",
    );
    assert_eq!(f.due(t0 + GW).len(), 1);
    assert!(f.due(t0 + GW + Duration::from_secs(1800)).is_empty());
    assert_eq!(f.due(t0 + GW + Duration::from_secs(3600)).len(), 1);
}

#[test]
fn same_replica_down_twice_in_one_epoch_is_two_incidents() {
    let t0 = Instant::now();
    let mut f = fold();
    let p = "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379";
    feed(&mut f, t0, 0, 0, "+sdown", p);
    let first = f.due(t0 + GW);
    feed(&mut f, t0, 20_000, 0, "-sdown", p);
    assert_eq!(f.due(t0 + Duration::from_secs(21)).len(), 1);
    feed(&mut f, t0, 30_000, 0, "+sdown", p);
    let second = f.due(t0 + Duration::from_secs(41));
    assert_eq!(second.len(), 1);
    assert_ne!(first[0].key, second[0].key);
}

#[test]
fn keys_are_the_same_on_every_watcher() {
    let k = |c: &str, m: &str, e: u64, w: Option<&str>| incident_key(c, m, e, w);
    assert_eq!(k("prod", "m", 3, None), k("prod", "m", 3, None));
    assert_ne!(k("prod", "m", 3, None), k("prod", "m", 4, None));
    assert_ne!(k("prod", "m", 3, None), k("prod", "m", 3, Some("route#1")));
    assert_eq!(k("prod", "m", 3, None).len(), 64);
    // No two identities hash alike whatever the names hold.
    assert_ne!(k("a", "b", 3, None), k("ab", "", 3, None));
    assert_ne!(k("a", "m", 3, Some("")), k("a", "m", 3, None));
}

/// What two watchers of `cluster` tell about the same SIGKILL failover.
fn told_by_watcher(cluster: &str) -> Vec<Incident> {
    let t0 = Instant::now();
    let mut f = Fold::new(GW, Duration::from_secs(4 * 3600)).for_cluster(cluster);
    f.observe_epoch(7);
    sigkill_burst(&mut f, t0);
    let p = "slave 127.0.0.4:6379 127.0.0.4 6379 @ mymaster 127.0.0.3 6379";
    feed(&mut f, t0, 20_000, 1, "+sdown", p);
    let mut told = f.due(t0 + Duration::from_secs(60));
    told.sort_by_key(|i| i.kind.alertname());
    told
}

#[test]
fn two_deployments_with_the_same_master_and_epoch_never_share_a_key() {
    let prod = told_by_watcher("prod-cache");
    let staging = told_by_watcher("staging-cache");
    assert_eq!(prod.len(), 2, "{prod:?}");
    assert_eq!(prod.len(), staging.len());
    for (p, s) in prod.iter().zip(&staging) {
        assert_eq!((p.master.as_str(), &p.kind), (s.master.as_str(), &s.kind));
        assert_ne!(p.key, s.key, "{:?}", p.kind);
        assert_eq!(p.cluster, "prod-cache");
        assert_eq!(s.cluster, "staging-cache");
    }
}

#[test]
fn one_deployment_gives_the_same_keys_on_every_watcher_and_after_a_restart() {
    // Two watchers (or one before and after a restart) fed the same events.
    let a = told_by_watcher("prod-cache");
    let b = told_by_watcher("prod-cache");
    let keys = |v: &[Incident]| v.iter().map(|i| i.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&a), keys(&b));
    // The failover's key is the deployment's, the master's and the epoch's.
    let failover = a.iter().find(|i| i.kind == Kind::Failover).unwrap();
    assert_eq!(
        failover.key,
        incident_key("prod-cache", "mymaster", 7, None)
    );
}

#[test]
fn a_renamed_deployment_keeps_the_keys_of_open_incidents() {
    let t0 = Instant::now();
    let mut f = fold().for_cluster("old-name");
    let p = "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379";
    feed(&mut f, t0, 0, 0, "+sdown", p);
    let fired = f.due(t0 + GW);
    f.set_cluster("new-name");
    feed(&mut f, t0, 20_000, 0, "-sdown", p);
    let resolved = f.due(t0 + Duration::from_secs(21));
    assert_eq!(fired[0].key, resolved[0].key);
    assert_eq!(resolved[0].cluster, "old-name");
    feed(&mut f, t0, 30_000, 0, "+sdown", p);
    let next = f.due(t0 + Duration::from_secs(41));
    assert_eq!(next[0].cluster, "new-name");
}

#[test]
fn failed_route_write_is_an_incident_resolved_by_a_good_one() {
    let t0 = Instant::now();
    let mut f = fold();
    let mut r = RouteReport {
        master: "mymaster".into(),
        addr: "127.0.0.3:6379".into(),
        ok: false,
        target: "eni-1".into(),
        tables_written: 0,
        tables_total: 2,
        carriers: Vec::new(),
        latency_ms: 1.0,
        error: Some("rtb-1: UnauthorizedOperation".into()),
    };
    f.on_route(stamp(t0), &r);
    let s = f.due(t0 + GW);
    assert_eq!(s.len(), 1);
    assert!(s[0].summary().contains("FAILED"));
    r.ok = true;
    r.error = None;
    f.on_route(stamp(t0 + GW), &r);
    assert_eq!(f.due(t0 + GW * 2)[0].state, State::Resolved);
}

fn report(ok: bool) -> RouteReport {
    RouteReport {
        master: "mymaster".into(),
        addr: "127.0.0.3:6379".into(),
        ok,
        target: "eni-3".into(),
        tables_written: if ok { 2 } else { 0 },
        tables_total: 2,
        carriers: Vec::new(),
        latency_ms: 7.0,
        error: (!ok).then(|| "rtb-1: RequestLimitExceeded".into()),
    }
}

fn at(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

const ODOWN: &str = "master mymaster 127.0.0.2 6379 #quorum 2/2";
const MASTER: &str = "master mymaster 127.0.0.2 6379";
const SWITCH: &str = "mymaster 127.0.0.2 6379 127.0.0.3 6379";

#[test]
fn route_failure_resolves_when_a_read_finds_the_route_right_without_a_write() {
    let t0 = Instant::now();
    let mut f = fold();
    let w = SystemTime::now();
    let st = |mono| Stamp { mono, wall: w };
    // A verification with nothing failing is nothing (and duplicates too).
    f.on_route_verified(st(t0), "mymaster", "127.0.0.3:6379", "eni-3");
    f.on_route(st(t0), &report(false));
    let fired = f.due(t0 + GW);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].state, State::Firing);
    // Another watcher fixed it: our next read finds it right, no write.
    f.on_route_verified(st(at(t0, 20_000)), "mymaster", "127.0.0.3:6379", "eni-3");
    let r = f.due(at(t0, 20_000));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].state, State::Resolved);
    assert_eq!(
        r[0].key, fired[0].key,
        "resolves the same incident (PagerDuty)"
    );
    assert_eq!(
        r[0].summary(),
        "mymaster: VIP route is right again: 127.0.0.3:6379 → eni-3 (found by a read; no write needed)"
    );
    // Duplicated verification, and no more repeats of the old failure.
    f.on_route_verified(st(at(t0, 21_000)), "mymaster", "127.0.0.3:6379", "eni-3");
    assert!(f.due(at(t0, 22_000)).is_empty());
    assert_eq!(f.open_count(), 0, "no repeats every repeat_interval");
    // A later failure is a new incident with a new key.
    f.on_route(st(at(t0, 30_000)), &report(false));
    let again = f.due(at(t0, 30_000) + GW);
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].key, fired[0].key);
}

#[test]
fn route_failure_fixed_before_it_was_told_is_dropped() {
    let t0 = Instant::now();
    let w = SystemTime::now();
    let st = |mono| Stamp { mono, wall: w };
    // Fixed by our own retry…
    let mut f = fold();
    f.on_route(st(t0), &report(false));
    f.on_route(st(at(t0, 600)), &report(true));
    assert!(
        f.due(t0 + GW * 10).is_empty(),
        "no 'recovered', no PagerDuty pair"
    );
    assert_eq!(f.open_count(), 0);
    // …or found right by a read.
    let mut f = fold();
    f.on_route(st(t0), &report(false));
    f.on_route(st(at(t0, 300)), &report(false));
    f.on_route_verified(st(at(t0, 900)), "mymaster", "127.0.0.3:6379", "eni-3");
    assert!(f.due(t0 + GW * 10).is_empty());
    assert_eq!(f.state_size(), 1, "only the occurrence counter is left");
}

/// odown, a try by `leader`, its election; returns the time of the election.
fn down_and_elected(f: &mut Fold, t0: Instant, from_ms: u64, epoch: u64, leader: usize) {
    if from_ms == 0 {
        feed(f, t0, 0, 0, "+odown", ODOWN);
    }
    feed(
        f,
        t0,
        from_ms + 100,
        leader,
        "+new-epoch",
        &epoch.to_string(),
    );
    feed(f, t0, from_ms + 100, leader, "+try-failover", MASTER);
    feed(f, t0, from_ms + 200, leader, "+elected-leader", MASTER);
}

#[test]
fn aborted_failover_while_the_master_stays_down_keeps_firing_with_the_reason_and_the_retry_reports_its_own_duration(
) {
    let t0 = Instant::now();
    let mut f = fold();
    down_and_elected(&mut f, t0, 0, 1, 0);
    feed(&mut f, t0, 300, 0, "-failover-abort-no-good-slave", MASTER);
    let told = f.due(t0 + GW);
    assert_eq!(told.len(), 1, "{told:?}");
    // The master is still down: the page stays firing, saying why.
    assert_eq!(told[0].state, State::Firing);
    assert_eq!(
        told[0].summary(),
        "mymaster is down at 127.0.0.2:6379 (objectively down); failover ABORTED: no replica \
         fit to be promoted (-failover-abort-no-good-slave); Sentinel will retry"
    );
    assert_eq!(f.open_count(), 1);
    // An hour later Sentinel retries (new epoch) and succeeds in 2 s: the
    // same incident resolves, its failover time counted from the retry.
    let retry = 3600 * 1000;
    down_and_elected(&mut f, t0, retry, 2, 1);
    feed(&mut f, t0, retry + 2100, 1, "+switch-master", SWITCH);
    let sent = f.due(at(t0, retry + 2100) + GW);
    let resolved: Vec<&Incident> = sent.iter().filter(|i| i.state == State::Resolved).collect();
    assert_eq!(resolved.len(), 1, "{sent:?}");
    let s = resolved[0].summary();
    assert!(
        s.starts_with("mymaster failed over 127.0.0.2:6379 → 127.0.0.3:6379 in 2.0 s"),
        "{s}"
    );
    assert!(resolved[0].down, "the retry knows the master is down");
}

#[test]
fn each_abort_reason_is_told() {
    for (event, reason) in [
        (
            "-failover-abort-not-elected",
            "no sentinel was elected leader",
        ),
        (
            "-failover-abort-no-good-slave",
            "no replica fit to be promoted",
        ),
        (
            "-failover-abort-slave-timeout",
            "did not become master within failover-timeout",
        ),
    ] {
        let t0 = Instant::now();
        let mut f = fold();
        feed(&mut f, t0, 0, 0, "+odown", ODOWN);
        feed(&mut f, t0, 100, 0, "+try-failover", MASTER);
        if event != "-failover-abort-not-elected" {
            feed(&mut f, t0, 200, 0, "+elected-leader", MASTER);
        }
        feed(&mut f, t0, 20_000, 0, event, MASTER);
        let sent = f.due(at(t0, 20_000));
        // The master stays down: one firing message, with the reason.
        assert_eq!(sent.len(), 1, "{event}: {sent:?}");
        assert_eq!(sent[0].state, State::Firing, "{event}");
        assert!(sent[0].summary().contains(reason), "{}", sent[0].summary());
    }
}

#[test]
fn not_elected_from_a_sentinel_that_lost_the_vote_does_not_end_the_failover() {
    let t0 = Instant::now();
    let mut f = fold();
    feed(&mut f, t0, 0, 0, "+odown", ODOWN);
    feed(&mut f, t0, 100, 1, "+try-failover", MASTER);
    feed(&mut f, t0, 150, 0, "+try-failover", MASTER);
    feed(&mut f, t0, 300, 0, "+elected-leader", MASTER);
    // Sentinel 1 lost the vote; it says so after its election timeout.
    feed(&mut f, t0, 4300, 1, "-failover-abort-not-elected", MASTER);
    assert_eq!(f.open_count(), 1, "sentinel 0 is still failing over");
    feed(&mut f, t0, 5000, 2, "+switch-master", SWITCH);
    let sent = f.due(t0 + GW * 2);
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].summary().contains("failed over"),
        "{}",
        sent[0].summary()
    );
    assert!(
        sent[0].summary().contains("in 5.0 s"),
        "{}",
        sent[0].summary()
    );
    // Late: another loser's abort after the switch is absorbed, and does
    // not touch the next failover.
    feed(&mut f, t0, 9000, 2, "-failover-abort-not-elected", MASTER);
    assert!(f.due(t0 + GW * 3).is_empty());
    assert_eq!(f.open_count(), 0);
}

#[test]
fn the_same_abort_on_every_retry_is_told_once_while_the_master_stays_down() {
    let t0 = Instant::now();
    let mut f = fold();
    down_and_elected(&mut f, t0, 0, 1, 0);
    feed(&mut f, t0, 300, 0, "-failover-abort-no-good-slave", MASTER);
    assert_eq!(f.due(t0 + GW).len(), 1);
    // Sentinel retries every 2 × failover-timeout, failing the same way.
    for n in 1..=5u64 {
        let t = n * 360_000;
        down_and_elected(&mut f, t0, t, 1 + n, 0);
        feed(
            &mut f,
            t0,
            t + 300,
            0,
            "-failover-abort-no-good-slave",
            MASTER,
        );
        // Duplicated abort (a reconnect replays nothing, but be safe).
        feed(
            &mut f,
            t0,
            t + 301,
            0,
            "-failover-abort-no-good-slave",
            MASTER,
        );
        assert!(f.due(at(t0, t) + GW).is_empty(), "retry {n} told again");
    }
    // A different outcome is news again: the retry that works.
    down_and_elected(&mut f, t0, 3_000_000, 10, 0);
    feed(&mut f, t0, 3_001_000, 0, "+switch-master", SWITCH);
    let sent = f.due(at(t0, 3_001_000) + GW);
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].summary().contains("in 0.9 s"),
        "{}",
        sent[0].summary()
    );
    // The master came back: the next down/abort is told again.
    feed(
        &mut f,
        t0,
        4_000_000,
        0,
        "+odown",
        "master mymaster 127.0.0.3 6379 #quorum 2/2",
    );
    feed(&mut f, t0, 4_000_100, 0, "+new-epoch", "11");
    feed(
        &mut f,
        t0,
        4_000_100,
        0,
        "+try-failover",
        "master mymaster 127.0.0.3 6379",
    );
    feed(
        &mut f,
        t0,
        4_000_200,
        0,
        "+elected-leader",
        "master mymaster 127.0.0.3 6379",
    );
    feed(
        &mut f,
        t0,
        4_000_300,
        0,
        "-failover-abort-no-good-slave",
        "master mymaster 127.0.0.3 6379",
    );
    assert_eq!(f.due(at(t0, 4_000_000) + GW).len(), 1);
}

#[test]
fn a_lost_abort_does_not_stretch_the_next_failover_time() {
    let t0 = Instant::now();
    let mut f = fold();
    down_and_elected(&mut f, t0, 0, 1, 0);
    // (the abort was lost while our connection was down)
    assert_eq!(f.due(t0 + GW).len(), 1, "told firing");
    let retry = 2 * 3600 * 1000;
    feed(&mut f, t0, retry, 1, "+new-epoch", "2");
    feed(&mut f, t0, retry, 1, "+try-failover", MASTER);
    feed(&mut f, t0, retry + 1500, 2, "+switch-master", SWITCH);
    let sent = f.due(at(t0, retry + 1500) + GW);
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].summary().contains("in 1.5 s"),
        "{}",
        sent[0].summary()
    );
}

#[test]
fn a_retry_in_the_same_epoch_after_an_abort_is_told_not_absorbed() {
    // +new-epoch of the retry missed: the retry and its switch must still
    // be told, with the failover time of the retry.
    let t0 = Instant::now();
    let mut f = fold();
    down_and_elected(&mut f, t0, 0, 1, 0);
    feed(&mut f, t0, 300, 0, "-failover-abort-slave-timeout", MASTER);
    let aborted = f.due(t0 + GW);
    assert_eq!(aborted.len(), 1);
    feed(&mut f, t0, 60_000, 0, "+try-failover", MASTER);
    feed(&mut f, t0, 61_000, 0, "+switch-master", SWITCH);
    let sent = f.due(at(t0, 61_000) + GW);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].summary().contains("failed over") && sent[0].summary().contains("in 1.0 s"),
        "{}",
        sent[0].summary()
    );
    // Two watchers that saw the same events agree on that key.
    let mut g = fold();
    down_and_elected(&mut g, t0, 0, 1, 0);
    feed(&mut g, t0, 300, 0, "-failover-abort-slave-timeout", MASTER);
    g.due(t0 + GW);
    feed(&mut g, t0, 60_000, 0, "+try-failover", MASTER);
    feed(&mut g, t0, 61_000, 0, "+switch-master", SWITCH);
    assert_eq!(g.due(at(t0, 61_000) + GW)[0].key, sent[0].key);
}

#[test]
fn manual_failover_aborted_says_the_master_was_not_changed() {
    let t0 = Instant::now();
    let mut f = fold();
    feed(&mut f, t0, 0, 0, "+new-epoch", "1");
    feed(&mut f, t0, 0, 0, "+try-failover", MASTER);
    feed(&mut f, t0, 10, 0, "+elected-leader", MASTER);
    feed(&mut f, t0, 4100, 0, "-failover-abort-slave-timeout", MASTER);
    let sent = f.due(t0 + GW);
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].summary().ends_with("the master was not changed"),
        "{}",
        sent[0].summary()
    );
}

#[test]
fn events_of_masters_not_configured_are_not_folded() {
    let t0 = Instant::now();
    let mut f = fold().for_masters(["mymaster".to_owned()]);
    feed(
        &mut f,
        t0,
        0,
        0,
        "+odown",
        "master other 10.0.0.9 6379 #quorum 2/2",
    );
    feed(
        &mut f,
        t0,
        1,
        0,
        "+switch-master",
        "other 10.0.0.9 6379 10.0.0.8 6379",
    );
    feed(
        &mut f,
        t0,
        2,
        0,
        "+sdown",
        "slave 10.0.0.8:6379 10.0.0.8 6379 @ other 10.0.0.9 6379",
    );
    assert_eq!(f.ignored, 3);
    assert_eq!(f.state_size(), 0);
    assert!(f.due(t0 + GW).is_empty());
    // Configured ones still are.
    feed(&mut f, t0, 3, 0, "+odown", ODOWN);
    assert_eq!(f.open_count(), 1);
}

#[test]
fn occurrence_counters_are_forgotten_when_the_epoch_moves_on_or_after_an_idle_hour() {
    let t0 = Instant::now();
    let mut f = fold();
    let p = "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379";
    feed(&mut f, t0, 0, 0, "+sdown", p);
    feed(&mut f, t0, 1000, 0, "-sdown", p);
    f.due(at(t0, 1000));
    assert_eq!(f.state_size(), 1, "one counter");
    // Kept while the condition is open, however long.
    feed(&mut f, t0, 2000, 0, "+sdown", p);
    let first = f.due(at(t0, 2000) + GW);
    assert_eq!(first.len(), 1);
    f.due(at(t0, 5 * 3600 * 1000));
    feed(&mut f, t0, 5 * 3600 * 1000, 0, "-sdown", p);
    assert_eq!(f.due(at(t0, 5 * 3600 * 1000)).len(), 1);
    // Down again at once: a new key, not the remembered one (absorbed).
    feed(&mut f, t0, 5 * 3600 * 1000 + 1, 0, "+sdown", p);
    let again = f.due(at(t0, 5 * 3600 * 1000 + 1) + GW);
    assert_eq!(again.len(), 1, "not absorbed as a duplicate");
    assert_ne!(again[0].key, first[0].key);
    feed(&mut f, t0, 5 * 3600 * 1000 + 20_000, 0, "-sdown", p);
    f.due(at(t0, 5 * 3600 * 1000 + 20_000));
    // An idle hour later, nothing is left.
    f.due(at(t0, 7 * 3600 * 1000));
    assert_eq!(f.state_size(), 0);
    // A new epoch drops the old epoch's counters.
    feed(&mut f, t0, 7 * 3600 * 1000, 0, "+sdown", p);
    feed(&mut f, t0, 7 * 3600 * 1000 + 10, 0, "-sdown", p);
    feed(&mut f, t0, 7 * 3600 * 1000 + 20, 0, "+new-epoch", "9");
    f.due(at(t0, 7 * 3600 * 1000 + 30));
    assert_eq!(f.state_size(), 0);
}

#[test]
fn a_master_removed_from_the_config_leaves_nothing_behind_and_no_open_page() {
    let t0 = Instant::now();
    let w = SystemTime::now();
    let st = |mono| Stamp { mono, wall: w };
    let mut f = fold().for_masters(["mymaster".to_owned(), "other".to_owned()]);
    feed(
        &mut f,
        t0,
        0,
        0,
        "+odown",
        "master other 10.0.0.9 6379 #quorum 2/2",
    );
    feed(
        &mut f,
        t0,
        0,
        0,
        "+switch-master",
        "mymaster 127.0.0.2 6379 127.0.0.3 6379",
    );
    assert_eq!(f.due(t0 + GW).len(), 2);
    f.set_masters(st(at(t0, 20_000)), ["mymaster".to_owned()]);
    let closed = f.due(at(t0, 20_000));
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].state, State::Resolved);
    assert!(
        closed[0].summary().contains("no longer watched"),
        "{}",
        closed[0].summary()
    );
    f.due(at(t0, 3 * 3600 * 1000));
    assert_eq!(f.state_size(), 1, "mymaster's last switch only");
}

#[test]
fn a_late_switch_to_the_failing_master_does_not_end_its_incident() {
    let t0 = Instant::now();
    let mut f = fold();
    // 127.0.0.2 goes down; a lagging sentinel now publishes the *previous*
    // failover's switch (… → 127.0.0.2).
    feed(&mut f, t0, 0, 0, "+odown", ODOWN);
    feed(
        &mut f,
        t0,
        100,
        2,
        "+switch-master",
        "mymaster 127.0.0.4 6379 127.0.0.2 6379",
    );
    assert_eq!(f.open_count(), 1, "still failing over");
    feed(&mut f, t0, 900, 0, "+switch-master", SWITCH);
    let sent = f.due(at(t0, 900) + GW);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let s = sent[0].summary();
    assert!(s.contains("127.0.0.2:6379 → 127.0.0.3:6379"), "{s}");
}

// --- level-triggered state: the majority read ---

/// A majority read of mymaster at `addr` (config-epoch `epoch`) that started
/// at `started_ms` and reached the fold at `at_ms`.
fn read(
    f: &mut Fold,
    t0: Instant,
    at_ms: u64,
    started_ms: u64,
    addr: &str,
    epoch: u64,
    odown: bool,
) {
    read_with(f, t0, (at_ms, started_ms), addr, epoch, odown, &[]);
}

/// [`read`], with replicas flagged down.
fn read_with(
    f: &mut Fold,
    t0: Instant,
    (at_ms, started_ms): (u64, u64),
    addr: &str,
    epoch: u64,
    odown: bool,
    replicas_down: &[&str],
) {
    f.on_master_read(
        stamp(at(t0, at_ms)),
        &MasterRead {
            master: "mymaster".into(),
            addr: addr.into(),
            config_epoch: epoch,
            odown,
            failover_in_progress: false,
            replicas_down: replicas_down.iter().map(|r| r.to_string()).collect(),
            started: at(t0, started_ms),
        },
    );
}

const M2: &str = "127.0.0.2:6379";
const M3: &str = "127.0.0.3:6379";

/// The first watcher: a read at config-epoch 4, then the master down, no
/// replica to promote (Sentinel retries, bumping only the *current* epoch).
fn down_no_good_replica(f: &mut Fold, t0: Instant) {
    read(f, t0, 0, 0, M2, 4, false);
    feed(f, t0, 1000, 0, "+sdown", MASTER);
    feed(f, t0, 1100, 0, "+odown", ODOWN);
    down_and_elected(f, t0, 1100, 9, 0);
    feed(f, t0, 1400, 0, "-failover-abort-no-good-slave", MASTER);
}

#[test]
fn a_watcher_restarted_mid_incident_opens_the_same_key_from_the_read_and_resolves_it() {
    let t0 = Instant::now();
    let mut first = fold();
    down_no_good_replica(&mut first, t0);
    let fired = first.due(at(t0, 1100) + GW);
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].state, State::Firing);
    // Restarted: nothing folded, the first read says o_down at config-epoch 4
    // (Sentinel's retries bumped the current epoch to 9+, not the config-epoch).
    let mut second = fold();
    feed(&mut second, t0, 30_000, 0, "+new-epoch", "11");
    read(&mut second, t0, 30_100, 30_000, M2, 4, true);
    assert!(second.master_down("mymaster"), "/status says down");
    assert_eq!(second.masters_down(), vec!["mymaster".to_owned()]);
    // Sentinel's next retry aborts again: the same incident, still firing.
    down_and_elected(&mut second, t0, 32_000, 12, 1);
    feed(
        &mut second,
        t0,
        32_300,
        1,
        "-failover-abort-no-good-slave",
        MASTER,
    );
    let again = second.due(at(t0, 32_300) + GW);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].state, State::Firing);
    assert_eq!(again[0].key, fired[0].key, "same incident, same key");
    assert!(
        again[0].summary().contains("ABORTED"),
        "{}",
        again[0].summary()
    );
    // The master returns: -odown resolves that key.
    feed(&mut second, t0, 60_000, 0, "-odown", MASTER);
    let resolved = second.due(at(t0, 60_000) + GW);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].state, State::Resolved);
    assert_eq!(resolved[0].key, fired[0].key);
    assert!(!second.master_down("mymaster"));
    assert!(second.due(at(t0, 600_000)).is_empty(), "nothing else");
}

#[test]
fn an_incident_whose_closing_event_was_lost_resolves_from_the_read() {
    let t0 = Instant::now();
    let mut f = fold();
    down_no_good_replica(&mut f, t0);
    let fired = f.due(at(t0, 1100) + GW);
    assert_eq!(fired.len(), 1);
    // A read that started before the +odown says "up": older news, ignored.
    read(&mut f, t0, 20_000, 500, M2, 4, false);
    assert_eq!(f.open_count(), 1);
    // The master came back and every -odown was lost: the next read says up.
    read(&mut f, t0, 40_000, 39_900, M2, 4, false);
    let r = f.due(at(t0, 40_000) + GW);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].state, State::Resolved);
    assert_eq!(r[0].key, fired[0].key);
    assert!(r[0].summary().contains("back up"), "{}", r[0].summary());
    assert_eq!(f.open_count(), 0, "not re-sent every repeat_interval");
}

#[test]
fn a_failover_whose_events_were_all_missed_is_told_from_the_read() {
    let t0 = Instant::now();
    let mut f = fold();
    read(&mut f, t0, 0, 0, M2, 4, false);
    read(&mut f, t0, 30_000, 29_900, M3, 5, false);
    let sent = f.due(at(t0, 30_000) + GW + Duration::from_secs(5));
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0]
            .summary()
            .starts_with("mymaster failed over 127.0.0.2:6379 → 127.0.0.3:6379"),
        "{}",
        sent[0].summary()
    );
    assert!(!sent[0].planned, "not known to be planned");
    // Its +switch-master arriving late is absorbed.
    feed(&mut f, t0, 31_000, 1, "+switch-master", SWITCH);
    assert!(f.due(at(t0, 100_000)).is_empty());
}

#[test]
fn a_replica_down_is_opened_and_resolved_from_the_read_when_its_events_are_missed() {
    let t0 = Instant::now();
    let mut f = fold();
    // A watcher started while a replica is down: the read opens its warning.
    read_with(&mut f, t0, (0, 0), M2, 4, false, &[M3]);
    let w = f.due(at(t0, 0) + GW);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].summary(), "mymaster replica 127.0.0.3:6379 is down");
    // Its -sdown is lost; a read that started before the last event is
    // older news; a later one that no sentinel flags it resolves it.
    let p = "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379";
    feed(&mut f, t0, 20_000, 1, "+sdown", p);
    read_with(&mut f, t0, (21_000, 19_000), M2, 4, false, &[]);
    assert_eq!(f.open_count(), 1);
    read_with(&mut f, t0, (40_000, 39_000), M2, 4, false, &[]);
    let r = f.due(at(t0, 40_000));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].state, State::Resolved);
    assert_eq!(r[0].key, w[0].key);
    // The failover's old master, down as a replica, is not a replica incident.
    feed(&mut f, t0, 50_000, 0, "+switch-master", SWITCH);
    read_with(&mut f, t0, (51_000, 50_500), M3, 5, false, &[M2]);
    let sent = f.due(at(t0, 80_000));
    assert!(
        sent.iter().all(|i| i.kind == Kind::Failover),
        "{:?}",
        sent.iter().map(|i| i.summary()).collect::<Vec<_>>()
    );
}

// --- one failover, one incident ---

#[test]
fn the_leaders_minus_odown_before_the_switch_is_the_same_failover() {
    let t0 = Instant::now();
    let mut f = fold();
    feed(&mut f, t0, 0, 0, "+odown", ODOWN);
    down_and_elected(&mut f, t0, 0, 1, 0);
    // The leader clears o_down a moment before its switch; the others'
    // +switch-master come after it.
    feed(&mut f, t0, 1500, 0, "-odown", MASTER);
    feed(&mut f, t0, 1501, 0, "+failover-end", MASTER);
    feed(&mut f, t0, 1502, 0, "+switch-master", SWITCH);
    feed(&mut f, t0, 1600, 1, "+switch-master", SWITCH);
    let sent = f.due(at(t0, 1600) + GW);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].summary().contains("failed over"),
        "{}",
        sent[0].summary()
    );
}

#[test]
fn the_old_master_back_as_a_replica_is_not_an_incident_of_its_own() {
    let t0 = Instant::now();
    let mut f = fold();
    sigkill_burst(&mut f, t0);
    let old = "slave 127.0.0.2:6379 127.0.0.2 6379 @ mymaster 127.0.0.3 6379";
    for s in 0..3 {
        feed(&mut f, t0, 3300 + s as u64, s, "+sdown", old);
    }
    let sent = f.due(at(t0, 3400) + GW);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0]
            .annotations
            .iter()
            .any(|a| a.contains("old master 127.0.0.2:6379")),
        "{:?}",
        sent[0].annotations
    );
    // Restarted a minute later: -sdown, +convert-to-slave, role changes.
    for s in 0..3 {
        feed(&mut f, t0, 60_000 + s as u64, s, "-sdown", old);
        feed(&mut f, t0, 70_000 + s as u64, s, "+convert-to-slave", old);
    }
    assert!(f.due(at(t0, 200_000)).is_empty(), "nothing resolved-only");
    // Later, the same node down as an ordinary replica is one warning.
    feed(&mut f, t0, 300_000, 0, "+sdown", old);
    assert_eq!(f.due(at(t0, 300_000) + GW).len(), 1);
}

// --- planned switchovers ---

#[test]
fn a_sentinel_failover_of_a_master_known_up_is_a_planned_switchover() {
    let t0 = Instant::now();
    let mut f = fold();
    read(&mut f, t0, 0, 0, M2, 0, false);
    feed(&mut f, t0, 1000, 0, "+new-epoch", "1");
    feed(&mut f, t0, 1000, 0, "+try-failover", MASTER);
    feed(&mut f, t0, 1010, 0, "+elected-leader", MASTER);
    feed(&mut f, t0, 2000, 1, "+switch-master", SWITCH);
    f.on_route(stamp(at(t0, 2010)), &report(true));
    let sent = f.due(at(t0, 2010) + GW);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].planned);
    assert_eq!(sent[0].severity, Severity::Info);
    assert_eq!(
        sent[0].summary(),
        "planned switchover of mymaster: 127.0.0.2:6379 → 127.0.0.3:6379, VIP moved in 7 ms"
    );
    // The same switch with the master seen down first pages.
    let mut g = fold();
    read(&mut g, t0, 0, 0, M2, 0, false);
    sigkill_burst(&mut g, t0);
    let sent = g.due(t0 + GW * 2);
    assert!(!sent[0].planned);
    assert_eq!(sent[0].severity, Severity::Critical);
    // A watcher that never read the master (started mid-switchover) says unplanned.
    let mut h = fold();
    feed(&mut h, t0, 1000, 0, "+try-failover", MASTER);
    feed(&mut h, t0, 2000, 1, "+switch-master", SWITCH);
    assert!(!h.due(t0 + GW * 2)[0].planned);
}

// --- flap damping ---

/// A replica down 4 s, up 3 s, five times, through `f`; `due` polled every
/// 100 ms for ten minutes.
fn flap_five_times(f: &mut Fold, t0: Instant) -> Vec<Incident> {
    let p = "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379";
    let mut sent = Vec::new();
    for ms in (0..700_000).step_by(100) {
        if ms < 35_000 {
            match ms % 7000 {
                0 => feed(f, t0, ms, 0, "+sdown", p),
                4000 => feed(f, t0, ms, 0, "-sdown", p),
                _ => {}
            }
        }
        sent.extend(f.due(at(t0, ms)));
    }
    sent
}

#[test]
fn a_replica_flapping_five_times_in_a_minute_is_two_messages() {
    let t0 = Instant::now();
    // Without damping (group_interval 0: every change told, as before) and
    // group_wait 1 s, each down and each up is a message: ten.
    let mut undamped = Fold::new(Duration::from_secs(1), Duration::from_secs(4 * 3600));
    assert_eq!(flap_five_times(&mut undamped, t0).len(), 10);
    let mut f = fold().with_group_interval(Duration::from_secs(300));
    let sent = flap_five_times(&mut f, t0);
    let states: Vec<(State, String)> = sent.iter().map(|i| (i.state, i.summary())).collect();
    assert_eq!(sent.len(), 2, "{states:#?}");
    assert_eq!(sent[0].state, State::Firing);
    assert_eq!(sent[1].state, State::Resolved);
    assert_eq!(sent[0].key, sent[1].key, "one incident");
    assert_eq!(
        sent[1].summary(),
        "mymaster replica 127.0.0.3:6379 went down again 3 times in 18 s; up now"
    );
    assert_eq!(
        f.state_size(),
        2,
        "the occurrence counter and the closed key"
    );
}

#[test]
fn replica_blips_shorter_than_group_wait_are_silent_alone_and_a_flap_together() {
    let t0 = Instant::now();
    let p = "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379";
    let mut f = fold().with_group_interval(Duration::from_secs(60));
    feed(&mut f, t0, 0, 0, "+sdown", p);
    feed(&mut f, t0, 500, 0, "-sdown", p);
    assert!(f.due(at(t0, 30_000)).is_empty(), "one blip: silent");
    feed(&mut f, t0, 30_000, 0, "+sdown", p);
    let told = f.due(at(t0, 30_000));
    assert_eq!(told.len(), 1, "a second blip within the window: a flap");
    assert_eq!(
        told[0].summary(),
        "mymaster replica 127.0.0.3:6379 went down 2 times in 30 s; down now"
    );
    feed(&mut f, t0, 30_500, 0, "-sdown", p);
    assert!(f.due(at(t0, 89_000)).is_empty(), "held for group_interval");
    let r = f.due(at(t0, 90_000));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].state, State::Resolved);
    // Alone, after the window: forgotten, silent.
    let mut g = fold().with_group_interval(Duration::from_secs(60));
    feed(&mut g, t0, 0, 0, "+sdown", p);
    feed(&mut g, t0, 500, 0, "-sdown", p);
    assert!(g.due(at(t0, 80_000)).is_empty());
    assert_eq!(g.state_size(), 1, "the occurrence counter only");
}

#[test]
fn a_damped_group_down_again_after_its_resolve_was_told_is_summarised_once_per_interval() {
    let t0 = Instant::now();
    let gi = Duration::from_secs(60);
    let mut f = fold().with_group_interval(gi);
    let p = "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379";
    feed(&mut f, t0, 0, 0, "+sdown", p);
    assert_eq!(f.due(at(t0, 10_000)).len(), 1, "told at group_wait");
    feed(&mut f, t0, 20_000, 0, "-sdown", p);
    assert!(
        f.due(at(t0, 69_000)).is_empty(),
        "the resolve waits for group_interval"
    );
    let r = f.due(at(t0, 70_000));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].state, State::Resolved);
    // Down again within the window: the same group, held until the interval.
    feed(&mut f, t0, 80_000, 0, "+sdown", p);
    assert!(f.due(at(t0, 129_000)).is_empty());
    let d = f.due(at(t0, 130_000));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].state, State::Firing);
    assert_eq!(d[0].key, r[0].key);
    assert_eq!(
        d[0].summary(),
        "mymaster replica 127.0.0.3:6379 went down again once in 0 s; down now"
    );
}
