//! Every silent failure is an incident: an unreadable route table (and no
//! "route verified" while one is), no EC2 target for the majority's master,
//! an accepted config-epoch regression — each reaches the alerter as an
//! input that opens an incident, not only a log line.

use super::*;
use crate::decide::fold::{Condition, Fold, Kind, Stamp, State};

/// A read of the majority on `on` at `epoch`, the VIP on `vip_on`, with
/// rtb-2 unreadable when `rtb2_gone`.
fn read_with(seq: u64, on: &str, epoch: u64, vip_on: &str, rtb2_gone: bool) -> Input {
    let Input::ReadDone(mut o) = read(
        seq,
        vec![view(on, epoch), view(on, epoch), view(on, epoch)],
        Some(vip_on),
    ) else {
        unreachable!()
    };
    if rtb2_gone {
        if let Ok(t) = o.tables.as_mut() {
            let id = RouteTableId::try_from("rtb-2".to_owned()).expect("id");
            t.insert(
                id.clone(),
                Err(Ec2Error {
                    operation: "DescribeRouteTables",
                    subject: id.to_string(),
                    class: crate::decide::facts::ErrorClass::NotFound,
                    code: Some("InvalidRouteTableID.NotFound".into()),
                    message: "The routeTable ID 'rtb-2' does not exist".into(),
                }),
            );
        }
    }
    Input::ReadDone(o)
}

/// The next read's sequence number (asked for now).
fn next_read(s: &mut Sim, ms: u64) -> u64 {
    reads(&s.feed(ms, Input::ReadRequested("t")))[0]
}

fn conditions(actions: &[Action], which: Condition) -> Vec<(bool, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Alert(AlertInput::Condition {
                condition,
                bad,
                detail,
                ..
            }) if *condition == which => Some((*bad, detail.clone())),
            _ => None,
        })
        .collect()
}

fn verified(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Alert(AlertInput::RouteVerified { .. })))
}

/// Feeds the alert inputs of `actions` to `f` at `at` (as `daemon/alerts.rs` does).
fn fold_in(f: &mut Fold, at: Instant, actions: &[Action]) {
    let at = Stamp {
        mono: at,
        wall: std::time::SystemTime::now(),
    };
    for a in actions {
        match a {
            Action::Alert(AlertInput::Route(r)) => f.on_route(at, r),
            Action::Alert(AlertInput::RouteVerified {
                master,
                addr,
                target,
            }) => f.on_route_verified(at, master, addr, target),
            Action::Alert(AlertInput::Condition {
                master,
                condition,
                bad,
                detail,
            }) => f.on_failure_condition(at, master, *condition, *bad, detail),
            Action::Alert(AlertInput::Majority { master, ok, detail }) => {
                f.on_majority(at, master, *ok, detail)
            }
            _ => {}
        }
    }
}

const GW: Duration = Duration::from_secs(10);

#[test]
fn an_unreadable_table_fires_until_it_reads_again_and_the_route_is_not_verified_meanwhile() {
    let mut s = Sim::started();
    let mut f = Fold::new(GW, Duration::from_secs(4 * 3600));
    // A write to B fails: a route failure is open.
    let w = s.feed(100, switch(0, A, B, s.at(100)));
    let a = s.complete(110, &w, false);
    fold_in(&mut f, s.at(110), &a);
    // Reads find B in rtb-1 but rtb-2 cannot be read.
    let mut told = f.due(s.at(110) + GW);
    for (n, ms) in [(0, 20_000), (1, 50_000)] {
        let seq = next_read(&mut s, ms);
        let a = s.feed(ms + 10, read_with(seq, B, 2, B, true));
        // Said at every read while it lasts (a lost input is healed by the
        // next read); the fold tells it once.
        let alerted = conditions(&a, Condition::TableUnreadable);
        assert_eq!(alerted.len(), 1, "read {n}: {a:?}");
        assert!(
            alerted[0].0 && alerted[0].1.contains("rtb-2"),
            "{alerted:?}"
        );
        assert!(
            !verified(&a),
            "no RouteVerified while rtb-2 is unreadable: {a:?}"
        );
        fold_in(&mut f, s.at(ms + 10), &a);
        told.extend(f.due(s.at(ms + 10) + GW));
    }
    let firing: Vec<&str> = told
        .iter()
        .filter(|i| i.state == State::Firing)
        .map(|i| i.kind.alertname())
        .collect();
    assert!(firing.contains(&"VipRouteTableUnreadable"), "{told:?}");
    assert!(firing.contains(&"VipRouteUpdateFailed"), "{told:?}");
    assert!(
        !told.iter().any(|i| i.state == State::Resolved),
        "nothing resolves while a table is unreadable: {told:?}"
    );
    assert_eq!(
        told.iter()
            .filter(|i| i.kind == Kind::RouteTableUnreadable)
            .count(),
        1,
        "told once though said at every read: {told:?}"
    );
    // rtb-2 reads again, pointing at B: both resolve.
    let seq = next_read(&mut s, 80_000);
    let a = s.feed(80_010, read_with(seq, B, 2, B, false));
    assert_eq!(
        conditions(&a, Condition::TableUnreadable)
            .iter()
            .map(|c| c.0)
            .collect::<Vec<_>>(),
        vec![false]
    );
    assert!(verified(&a), "{a:?}");
    fold_in(&mut f, s.at(80_010), &a);
    let mut resolved: Vec<&str> = Vec::new();
    let done = f.due(s.at(80_010) + GW);
    for i in &done {
        assert_eq!(i.state, State::Resolved, "{i:?}");
        resolved.push(i.kind.alertname());
    }
    resolved.sort();
    assert_eq!(
        resolved,
        vec!["VipRouteTableUnreadable", "VipRouteUpdateFailed"]
    );
}

#[test]
fn the_fold_does_not_resolve_a_route_failure_while_a_table_is_unreadable() {
    let t0 = Instant::now();
    let at = |ms: u64| Stamp {
        mono: t0 + Duration::from_millis(ms),
        wall: std::time::SystemTime::now(),
    };
    let mut f = Fold::new(GW, Duration::from_secs(4 * 3600));
    let failed = crate::decide::fold::RouteReport {
        master: "m".into(),
        addr: "10.0.1.11:6379".into(),
        ok: false,
        target: "eni-b".into(),
        tables_written: 1,
        tables_total: 2,
        latency_ms: 5.0,
        error: Some("rtb-2: InvalidRouteTableID.NotFound".into()),
        carriers: Vec::new(),
    };
    f.on_route(at(0), &failed);
    f.on_failure_condition(at(1), "m", Condition::TableUnreadable, true, "rtb-2");
    assert_eq!(f.due(t0 + GW + Duration::from_secs(1)).len(), 2);
    f.on_route_verified(at(20_000), "m", "10.0.1.11:6379", "eni-b");
    assert!(f.due(t0 + 3 * GW).is_empty(), "not verified");
    f.on_failure_condition(at(40_000), "m", Condition::TableUnreadable, false, "ok");
    f.on_route_verified(at(40_001), "m", "10.0.1.11:6379", "eni-b");
    let done = f.due(t0 + 6 * GW);
    assert_eq!(done.len(), 2, "{done:?}");
    assert!(done.iter().all(|i| i.state == State::Resolved));
}

#[test]
fn no_target_for_the_majoritys_master_is_an_incident_not_only_a_log_line() {
    let mut s = Sim::started();
    let mut f = Fold::new(GW, Duration::from_secs(4 * 3600));
    // The majority names X, which is not in masters.m.nodes.
    let seq = next_read(&mut s, 100);
    let a = s.feed(110, read_with(seq, X, 2, A, false));
    assert!(writes(&a).is_empty(), "{a:?}");
    let report = a
        .iter()
        .find_map(|x| match x {
            Action::Alert(AlertInput::Route(r)) => Some(r.clone()),
            _ => None,
        })
        .expect("a route failure is alerted");
    assert!(!report.ok);
    let error = report.error.clone().unwrap_or_default();
    assert!(
        error.contains("no EC2 target") && error.contains("10.0.9.99:6379"),
        "{error}"
    );
    fold_in(&mut f, s.at(110), &a);
    let told = f.due(s.at(110) + GW);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].kind, Kind::RouteFailure);
    assert!(
        told[0].summary().contains("no EC2 target"),
        "{}",
        told[0].summary()
    );
    // Still no target at the next read: the same incident, no new message.
    let seq = next_read(&mut s, 30_000);
    let a = s.feed(30_010, read_with(seq, X, 2, A, false));
    fold_in(&mut f, s.at(30_010), &a);
    assert!(f.due(s.at(30_010) + GW).is_empty());
}

#[test]
fn an_accepted_config_epoch_regression_is_told_then_resolved_once_it_held() {
    let mut s = Sim::started();
    let mut f = Fold::new(GW, Duration::from_secs(4 * 3600));
    let seq = next_read(&mut s, 100);
    s.feed(110, read_with(seq, A, 5, A, false));
    // Sentinels re-monitored: epoch 0, naming B; accepted at the second read.
    let seq = next_read(&mut s, 200);
    s.feed(210, read_with(seq, B, 0, A, false));
    let seq = reads(&s.tick(1210))[0];
    let a = s.feed(1220, read_with(seq, B, 0, A, false));
    assert_eq!(writes(&a), vec![(B.to_owned(), Cause::Reconcile)]);
    let alerted = conditions(&a, Condition::EpochWentBack);
    assert_eq!(alerted.len(), 1, "{a:?}");
    assert!(alerted[0].0, "an alert, not a no-op resolve: {alerted:?}");
    assert!(alerted[0].1.contains("config-epoch went back from 5 to 0"));
    fold_in(&mut f, s.at(1220), &a);
    let told = f.due(s.at(1220) + GW);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].state, State::Firing);
    assert_eq!(told[0].kind, Kind::EpochWentBack);
    assert_eq!(told[0].severity, crate::decide::fold::Severity::Warning);
    assert!(told[0].summary().contains("went back from 5 to 0"));
    // Reads before the hold say nothing more; the first after resolves it.
    let seq = next_read(&mut s, 300_000);
    let a = s.feed(300_010, read_with(seq, B, 0, B, false));
    assert!(conditions(&a, Condition::EpochWentBack).is_empty(), "{a:?}");
    let after = 1220 + EPOCH_BACK_HOLD.as_millis() as u64;
    let seq = next_read(&mut s, after);
    let a = s.feed(after + 10, read_with(seq, B, 0, B, false));
    let cleared = conditions(&a, Condition::EpochWentBack);
    assert_eq!(cleared.iter().map(|c| c.0).collect::<Vec<_>>(), vec![false]);
    fold_in(&mut f, s.at(after + 10), &a);
    let told = f.due(s.at(after + 10) + GW);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].state, State::Resolved);
}

#[test]
fn a_regression_resolved_before_it_was_told_is_still_told() {
    // group_wait longer than the hold (an odd config): never lost.
    let t0 = Instant::now();
    let mut f = Fold::new(Duration::from_secs(900), Duration::from_secs(4 * 3600));
    let at = |s: u64| Stamp {
        mono: t0 + Duration::from_secs(s),
        wall: std::time::SystemTime::now(),
    };
    f.on_failure_condition(at(0), "m", Condition::EpochWentBack, true, "went back");
    f.on_failure_condition(at(600), "m", Condition::EpochWentBack, false, "held");
    let told = f.due(t0 + Duration::from_secs(900));
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].state, State::Resolved);
}
