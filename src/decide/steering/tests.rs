//! The decision rules as scenarios: inputs at injected times, expected actions.
use super::*;
use crate::config::{RouteTableId, Target};
use crate::decide::facts::{Ec2Error, TableRead, TableReads, TargetError};
use crate::decide::plan::CurrentRoute;
use crate::decide::quorum::{self, Answer, Verdict};
use crate::watch::event::Event;
use crate::watch::{MasterView, SentinelId, WatchMsg};

mod reach;
mod storm;

const A: &str = "10.0.1.10";
const B: &str = "10.0.1.11";
const C: &str = "10.0.1.12";
const X: &str = "10.0.9.99";
/// `failover-timeout` as the test sentinels report it.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(60);

fn cfg() -> Config {
    Config::parse(&format!(
        r#"
sentinels: ["127.0.0.2:26379", "127.0.0.3:26379", "127.0.0.4:26379"]
masters:
  m:
    vip: 172.16.0.10/32
    route_tables: [rtb-1, rtb-2]
    nodes:
      "{A}:6379": {{ network_interface_id: eni-a }}
      "{B}:6379": {{ network_interface_id: eni-b }}
      "{C}:6379": {{ network_interface_id: eni-c }}
reconcile:
  interval: 30s
"#
    ))
    .expect("test config parses")
}

fn addr(h: &str) -> Addr {
    Addr::new(h, 6379)
}

fn eni(h: &str) -> &'static str {
    match h {
        A => "eni-a",
        B => "eni-b",
        C => "eni-c",
        _ => "eni-unknown",
    }
}

/// A sentinel's view: master `h` at `epoch`, the other rig nodes as replicas.
fn view(h: &str, epoch: u64) -> Answer {
    Answer::View(MasterView {
        addr: addr(h),
        config_epoch: epoch,
        flags: "master".into(),
        failover_timeout: Some(FAILOVER_TIMEOUT),
        replicas: [A, B, C]
            .iter()
            .filter(|r| **r != h)
            .map(|r| addr(r))
            .collect(),
        down_replicas: vec![],
    })
}

/// The route tables as EC2 would answer: both pointing at `on`'s ENI.
fn tables(on: Option<&str>) -> HashMap<RouteTableId, TableRead> {
    plain_tables(on)
}

fn table_reads(on: Option<&str>) -> TableReads {
    plain_tables(on)
        .into_iter()
        .map(|(t, r)| (t, Ok(r)))
        .collect()
}

fn plain_tables(on: Option<&str>) -> HashMap<RouteTableId, TableRead> {
    let cfg = cfg();
    let vip = cfg.masters["m"].vip.expect("vip").0;
    cfg.masters["m"]
        .route_tables
        .iter()
        .map(|t| {
            let routes = on
                .map(|h| {
                    [(
                        vip,
                        CurrentRoute::Points {
                            instance_id: None,
                            eni_id: Some(eni(h).into()),
                            blackhole: false,
                        },
                    )]
                    .into_iter()
                    .collect()
                })
                .unwrap_or_default();
            (
                t.clone(),
                TableRead {
                    vpc_id: Some("vpc-1".into()),
                    routes,
                },
            )
        })
        .collect()
}

fn read(seq: u64, answers: Vec<Answer>, vip_on: Option<&str>) -> Input {
    let cfg = cfg();
    let m = &cfg.masters["m"];
    let targets = [A, B, C, X]
        .iter()
        .map(|h| {
            let t = crate::config::static_target(m.nodes.as_ref().expect("nodes"), &addr(h)).ok_or(
                TargetError::NotInNodes {
                    master: "m".into(),
                    addr: addr(h),
                },
            );
            (addr(h), t)
        })
        .collect();
    Input::ReadDone(Box::new(ReadOutcome {
        seq,
        answers: [("m".to_owned(), answers)].into_iter().collect(),
        tables: Ok(table_reads(vip_on)),
        carriers: HashMap::new(),
        targets: [("m".to_owned(), targets)].into_iter().collect(),
        sentinels_answering: 3,
        took: Duration::from_millis(5),
    }))
}

fn switch(from: SentinelId, old: &str, new: &str, at: Instant) -> Input {
    Input::Watch(WatchMsg::Event {
        sentinel: from,
        event: Event::SwitchMaster {
            master: "m".into(),
            old: addr(old),
            new: addr(new),
        },
        at,
    })
}

/// The core plus a clock: times are milliseconds since the start.
struct Sim {
    core: Steering,
    t0: Instant,
}

impl Sim {
    fn new() -> Sim {
        let t0 = Instant::now();
        Sim {
            core: Steering::new(&cfg(), t0, 7),
            t0,
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn feed(&mut self, ms: u64, input: Input) -> Vec<Action> {
        self.core.handle(self.at(ms), input)
    }

    fn tick(&mut self, ms: u64) -> Vec<Action> {
        self.core.handle_timeout(self.at(ms))
    }

    /// Start-up: the first read finds master A at epoch 1 and the VIP on A.
    fn started() -> Sim {
        let mut s = Sim::new();
        let a = s.feed(0, Input::ReadRequested("start"));
        assert_eq!(reads(&a), vec![1]);
        let a = s.feed(
            5,
            read(1, vec![view(A, 1), view(A, 1), view(A, 1)], Some(A)),
        );
        assert!(writes(&a).is_empty(), "{a:?}");
        s
    }

    /// Reports the write in `actions` done: verified on its target when `ok`.
    fn complete(&mut self, ms: u64, actions: &[Action], ok: bool) -> Vec<Action> {
        let order = actions
            .iter()
            .find_map(|a| match a {
                Action::StartWrite(o) => Some(o.clone()),
                _ => None,
            })
            .expect("a write was started");
        let target = Target::Eni(
            crate::config::EniId::try_from(eni(&order.addr.host).to_owned()).expect("id"),
        );
        let vip = order.cfg.vip.expect("vip").0;
        let verified = ok.then(|| {
            order
                .cfg
                .route_tables
                .iter()
                .map(|t| {
                    (
                        t.clone().into(),
                        tables(Some(&order.addr.host))[t].route(&vip).into(),
                    )
                })
                .collect()
        });
        let tables = order
            .cfg
            .route_tables
            .iter()
            .map(|t| {
                let r = if ok {
                    Ok(true)
                } else {
                    Err(Ec2Error {
                        operation: "ReplaceRoute",
                        subject: t.to_string(),
                        class: crate::decide::facts::ErrorClass::Transient,
                        code: Some("RequestLimitExceeded".into()),
                        message: "throttled".into(),
                    })
                };
                (t.clone().into(), r)
            })
            .collect();
        self.feed(
            ms,
            Input::WriteDone(Box::new(WriteOutcome {
                id: order.id,
                master: order.master,
                addr: order.addr,
                cause: order.cause,
                target: Ok(target),
                tables,
                verified,
                latency: Duration::from_millis(9),
                write_time: Duration::from_millis(8),
            })),
        )
    }

    fn master(&self) -> MasterStatus {
        self.core.status(self.t0).remove(0)
    }
}

fn writes(actions: &[Action]) -> Vec<(String, Cause)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartWrite(o) => Some((o.addr.host.clone(), o.cause)),
            _ => None,
        })
        .collect()
}

fn reads(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartRead { seq } => Some(*seq),
            _ => None,
        })
        .collect()
}

/// Majority alerts: (ok, detail).
fn majority_alerts(actions: &[Action]) -> Vec<(bool, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Alert(AlertInput::Majority { ok, detail, .. }) => Some((*ok, detail.clone())),
            _ => None,
        })
        .collect()
}

// --- sentinel-truth §1: the verdict names the promoted replica during a failover

#[test]
fn failover_in_progress_vectors_name_the_promoted_replica() {
    // Views as GET-MASTER-ADDR-BY-NAME gives them (epoch from SENTINEL MASTER).
    // Leader (B, E+1), follower (B, E+1), lagging follower (A, E) → B.
    let v = quorum::decide(&[view(B, 2), view(B, 2), view(A, 1)], 3);
    assert!(
        matches!(v, Verdict::Master { addr: ref got, config_epoch: 2, votes: 2, .. } if *got == addr(B)),
        "{v:?}"
    );
    // The seed's layout: the master's node died with its sentinel; leader and
    // follower agree on B at E+1 → a majority of 3 configured, not a tie.
    let v = quorum::decide(&[Answer::Unreachable, view(B, 2), view(B, 2)], 3);
    assert!(
        matches!(v, Verdict::Master { addr: ref got, votes: 2, .. } if *got == addr(B)),
        "{v:?}"
    );
    // What SENTINEL MASTER said in the same moment (the leader still naming
    // A at E+1) would have been a tie at the top epoch: no majority.
    let v = quorum::decide(&[view(A, 2), view(B, 2), view(A, 1)], 3);
    assert!(!matches!(v, Verdict::Master { addr: ref got, .. } if *got == addr(B)));
}

#[test]
fn confirm_read_during_failover_never_moves_the_vip_back() {
    let mut s = Sim::started();
    let a = s.feed(100, switch(1, A, B, s.at(100)));
    assert_eq!(writes(&a), vec![(B.to_owned(), Cause::SwitchEvent)]);
    s.complete(110, &a, true);
    let a = s.tick(600);
    let seq = reads(&a)[0];
    // Leader and follower at E+1 on B, one lagging at E on A.
    let a = s.feed(
        610,
        read(seq, vec![view(B, 2), view(B, 2), view(A, 1)], Some(B)),
    );
    assert!(writes(&a).is_empty(), "{a:?}");
    assert_eq!(s.master().unconfirmed, None);
    assert_eq!(s.master().majority.as_deref(), Some("10.0.1.11:6379"));
}

// --- §2: guard the fast path, confirm until confirmed

#[test]
fn fast_path_rules() {
    // (event, expected: write at once?)
    let cases: &[(&str, &str, &str, bool)] = &[
        ("from the VIP's master to a known replica", A, B, true),
        ("to a node no sentinel reported", A, X, false),
        ("not from where the VIP is (late or forged)", C, B, false),
    ];
    for (what, old, new, fast) in cases {
        let mut s = Sim::started();
        let a = s.feed(100, switch(0, old, new, s.at(100)));
        assert_eq!(!writes(&a).is_empty(), *fast, "{what}: {a:?}");
        assert_eq!(reads(&a).len(), usize::from(!*fast), "{what}: {a:?}");
    }
}

#[test]
fn duplicate_switches_from_other_sentinels_are_no_ops() {
    let mut s = Sim::started();
    let a = s.feed(100, switch(0, A, B, s.at(100)));
    assert_eq!(writes(&a).len(), 1);
    for (ms, from) in [(101, 1), (102, 2), (103, 0)] {
        let a = s.feed(ms, switch(from, A, B, s.at(ms)));
        assert!(a.is_empty(), "{a:?}");
    }
    s.complete(110, &a, true);
    let a = s.feed(200, switch(2, A, B, s.at(200)));
    assert!(a.is_empty(), "{a:?}");
}

#[test]
fn replica_learned_from_an_event_is_a_fast_path_target() {
    let mut s = Sim::started();
    let slave =
        crate::watch::event::parse("+slave", &format!("slave {X}:6379 {X} 6379 @ m {A} 6379"))
            .expect("parses");
    s.feed(
        50,
        Input::Watch(WatchMsg::Event {
            sentinel: 0,
            event: slave,
            at: s.at(50),
        }),
    );
    let a = s.feed(100, switch(0, A, X, s.at(100)));
    assert_eq!(writes(&a), vec![(X.to_owned(), Cause::SwitchEvent)]);
}

#[test]
fn read_started_before_the_switch_does_not_judge_it() {
    let mut s = Sim::started();
    let a = s.feed(90, Input::ReadRequested("interval"));
    let before = reads(&a)[0];
    let w = s.feed(100, switch(0, A, B, s.at(100)));
    s.complete(110, &w, true);
    // That read still saw A everywhere: it must not revert, but read again.
    let a = s.feed(
        120,
        read(before, vec![view(A, 1), view(A, 1), view(A, 1)], Some(B)),
    );
    assert!(writes(&a).is_empty(), "{a:?}");
    assert_eq!(reads(&a).len(), 1, "a fresh read follows: {a:?}");
}

#[test]
fn unconfirmed_switch_is_reverted_when_the_majority_names_another_master() {
    let mut s = Sim::started();
    let w = s.feed(100, switch(0, A, B, s.at(100)));
    s.complete(110, &w, true);
    let seq = reads(&s.tick(600))[0];
    let a = s.feed(
        620,
        read(seq, vec![view(A, 1), view(A, 1), view(A, 1)], Some(B)),
    );
    assert_eq!(writes(&a), vec![(A.to_owned(), Cause::Reconcile)]);
    // Pending until the route is back on A.
    assert_eq!(s.master().unconfirmed.as_deref(), Some("10.0.1.11:6379"));
    s.complete(640, &a, true);
    assert_eq!(s.master().unconfirmed, None);
}

#[test]
fn unconfirmed_switch_keeps_being_read_then_alerts_and_fails_readiness() {
    let mut s = Sim::started();
    let w = s.feed(100, switch(0, A, B, s.at(100)));
    s.complete(110, &w, true);
    let mut ms = 600;
    let mut reads_done = 0;
    let mut alerted_at = None;
    // No majority (one sentinel switched, one down, one lagging) for 15 s.
    while ms <= 15_100 {
        let a = s.tick(ms);
        if let Some((false, d)) = majority_alerts(&a).into_iter().next() {
            assert!(d.contains("unconfirmed switch"), "{d}");
            alerted_at.get_or_insert(ms);
        }
        for seq in reads(&a) {
            reads_done += 1;
            let a = s.feed(
                ms + 5,
                read(
                    seq,
                    vec![view(B, 2), Answer::Unreachable, view(A, 1)],
                    Some(B),
                ),
            );
            assert!(
                writes(&a).is_empty(),
                "no majority never moves the VIP: {a:?}"
            );
        }
        ms = s.core.poll_timeout().duration_since(s.t0).as_millis() as u64;
    }
    assert!(
        reads_done >= 9,
        "read every 1.5 s while unconfirmed: {reads_done}"
    );
    assert_eq!(alerted_at, Some(10_100));
    let st = s.core.status(s.at(ms)).remove(0);
    assert!(st.unconfirmed_too_long);
    // Then the majority catches up: confirmed, alert resolved, no write.
    let seq = reads(&s.feed(ms, Input::ReadRequested("test")))[0];
    let a = s.feed(
        ms + 5,
        read(seq, vec![view(B, 2), view(B, 2), view(A, 1)], Some(B)),
    );
    assert!(writes(&a).is_empty());
    assert_eq!(
        majority_alerts(&a)
            .into_iter()
            .filter(|(ok, _)| *ok)
            .count(),
        2,
        "{a:?}"
    );
    let st = s.core.status(s.at(ms + 5)).remove(0);
    assert!(!st.unconfirmed_too_long && st.unconfirmed.is_none());
    // And no more confirm reads are scheduled.
    assert!(s.core.poll_timeout() >= s.at(30_000));
}

// --- §3: a config-epoch that goes back

#[test]
fn epoch_going_back_is_followed_after_two_reads() {
    let mut s = Sim::started();
    // Majority at epoch 5 on A.
    let seq = reads(&s.feed(100, Input::ReadRequested("t")))[0];
    s.feed(
        110,
        read(seq, vec![view(A, 5), view(A, 5), view(A, 5)], Some(A)),
    );
    // Sentinels re-monitored: all at epoch 0, now naming B.
    let seq = reads(&s.feed(200, Input::ReadRequested("t")))[0];
    let a = s.feed(
        210,
        read(seq, vec![view(B, 0), view(B, 0), view(B, 0)], Some(A)),
    );
    assert!(writes(&a).is_empty(), "one read is not enough: {a:?}");
    // A second read is scheduled soon, and it follows the majority.
    assert_eq!(s.core.poll_timeout(), s.at(210) + EPOCH_BACK_RECHECK);
    let seq = reads(&s.tick(1210))[0];
    let a = s.feed(
        1220,
        read(seq, vec![view(B, 0), view(B, 0), view(B, 0)], Some(A)),
    );
    assert_eq!(writes(&a), vec![(B.to_owned(), Cause::Reconcile)]);
    // Alerted (see silent.rs: an_accepted_config_epoch_regression_is_told_…).
    assert!(
        a.iter().any(
            |x| matches!(x, Action::Alert(AlertInput::Condition { bad: true, detail, .. })
            if detail.contains("config-epoch went back from 5 to 0"))
        ),
        "{a:?}"
    );
    assert_eq!(s.master().config_epoch, Some(0));
}

#[test]
fn epoch_back_seen_once_then_the_high_epoch_again_is_ignored() {
    let mut s = Sim::started();
    let seq = reads(&s.feed(100, Input::ReadRequested("t")))[0];
    s.feed(
        110,
        read(seq, vec![view(A, 5), view(A, 5), view(A, 5)], Some(A)),
    );
    let seq = reads(&s.feed(200, Input::ReadRequested("t")))[0];
    s.feed(
        210,
        read(
            seq,
            vec![view(B, 0), view(B, 0), Answer::Unreachable],
            Some(A),
        ),
    );
    let seq = reads(&s.feed(300, Input::ReadRequested("t")))[0];
    s.feed(
        310,
        read(seq, vec![view(A, 5), view(A, 5), view(A, 5)], Some(A)),
    );
    let seq = reads(&s.tick(1300))
        .into_iter()
        .next()
        .unwrap_or_else(|| reads(&s.feed(1300, Input::ReadRequested("t")))[0]);
    let a = s.feed(
        1310,
        read(
            seq,
            vec![view(B, 0), view(B, 0), Answer::Unreachable],
            Some(A),
        ),
    );
    assert!(writes(&a).is_empty(), "not two *consecutive* reads: {a:?}");
}

// --- drift, failures, supervision

#[test]
fn drift_is_repaired_and_a_right_route_is_left_alone() {
    let cases: &[(Option<&str>, bool)] = &[(Some(A), false), (Some(B), true), (None, true)];
    for (vip_on, write) in cases {
        let mut s = Sim::started();
        let seq = reads(&s.feed(100, Input::ReadRequested("t")))[0];
        let a = s.feed(
            110,
            read(seq, vec![view(A, 1), view(A, 1), view(A, 1)], *vip_on),
        );
        assert_eq!(!writes(&a).is_empty(), *write, "{vip_on:?}: {a:?}");
    }
}

#[test]
fn failed_write_is_retried_with_backoff_through_a_fresh_read() {
    let mut s = Sim::started();
    let w = s.feed(100, switch(0, A, B, s.at(100)));
    let a = s.complete(110, &w, false);
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::Alert(AlertInput::Route(r)) if !r.ok)));
    let due = s.core.poll_timeout();
    assert!(due <= s.at(110 + 600), "first retry within ~0.5 s");
    let a = s.core.handle_timeout(due);
    assert_eq!(reads(&a).len(), 1);
}

#[test]
fn a_wish_during_a_write_is_queued_and_sent_after_it() {
    let mut s = Sim::started();
    let w = s.feed(100, switch(0, A, B, s.at(100)));
    // A majority read (started after the switch) names C while the write flies.
    let seq = reads(&s.tick(600))[0];
    let a = s.feed(
        610,
        read(seq, vec![view(C, 3), view(C, 3), view(C, 3)], Some(A)),
    );
    assert!(
        writes(&a).is_empty(),
        "one write in flight at a time: {a:?}"
    );
    let a = s.complete(700, &w, true);
    assert_eq!(writes(&a), vec![(C.to_owned(), Cause::Reconcile)]);
}

#[test]
fn a_read_that_never_finished_does_not_wedge_the_scheduler() {
    let mut s = Sim::started();
    let seq = reads(&s.feed(100, Input::ReadRequested("t")))[0];
    assert!(reads(&s.feed(150, Input::ReadRequested("again"))).is_empty());
    s.feed(
        200,
        Input::ReadDone(Box::new(ReadOutcome::failed(
            seq,
            "the task panicked".into(),
            Duration::ZERO,
        ))),
    );
    // The queued wish runs right away, and later wishes start reads again.
    assert!(!s.core.last_read_ok());
    let a = s.feed(300, Input::ReadRequested("t"));
    assert!(reads(&a).len() <= 1);
}

#[test]
fn missing_route_table_is_an_error_not_already_right() {
    let mut s = Sim::started();
    let seq = reads(&s.feed(100, Input::ReadRequested("t")))[0];
    let Input::ReadDone(mut o) = read(seq, vec![view(A, 1), view(A, 1), view(A, 1)], Some(A))
    else {
        unreachable!()
    };
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
    s.feed(110, Input::ReadDone(o));
    assert!(!s.core.last_read_ok());
    let st = s.master();
    assert!(
        st.last_error.as_deref().unwrap_or("").contains("rtb-2"),
        "{st:?}"
    );
    assert_eq!(st.tables[1].route, "table-not-found");
}

#[test]
fn no_majority_is_alerted_once_and_its_return_once() {
    let mut s = Sim::started();
    let mut alerts = Vec::new();
    for i in 0..3 {
        let seq = reads(&s.feed(100 + i * 100, Input::ReadRequested("t")))[0];
        let a = s.feed(
            110 + i * 100,
            read(
                seq,
                vec![view(A, 1), Answer::Unreachable, Answer::Tilt],
                Some(A),
            ),
        );
        assert!(writes(&a).is_empty());
        alerts.extend(majority_alerts(&a));
    }
    let seq = reads(&s.feed(500, Input::ReadRequested("t")))[0];
    alerts.extend(majority_alerts(&s.feed(
        510,
        read(seq, vec![view(A, 1), view(A, 1), Answer::Tilt], Some(A)),
    )));
    assert_eq!(
        alerts.iter().map(|(ok, _)| *ok).collect::<Vec<_>>(),
        vec![false, true]
    );
}

#[test]
fn failed_write_found_right_by_a_later_read_resolves_the_failure() {
    let mut s = Sim::started();
    let w = s.feed(100, switch(0, A, B, s.at(100)));
    s.complete(110, &w, false);
    // Another watcher wrote it meanwhile: the next read finds B everywhere.
    let seq = reads(&s.feed(700, Input::ReadRequested("retry")))
        .into_iter()
        .next()
        .or_else(|| reads(&s.tick(700)).into_iter().next())
        .expect("a read");
    let a = s.feed(
        710,
        read(seq, vec![view(B, 2), view(B, 2), view(B, 2)], Some(B)),
    );
    assert!(writes(&a).is_empty(), "{a:?}");
    assert!(
        a.iter().any(|x| matches!(x, Action::Alert(AlertInput::RouteVerified { addr, .. }) if addr == "10.0.1.11:6379")),
        "{a:?}"
    );
    assert_eq!(s.master().last_error, None);
    // Once resolved, a further right read says nothing more.
    let seq = reads(&s.feed(800, Input::ReadRequested("t")))[0];
    let a = s.feed(
        810,
        read(seq, vec![view(B, 2), view(B, 2), view(B, 2)], Some(B)),
    );
    assert!(!a
        .iter()
        .any(|x| matches!(x, Action::Alert(AlertInput::RouteVerified { .. }))));
}

#[test]
fn refused_subscription_is_alerted_once_and_cleared_on_connect() {
    let mut s = Sim::started();
    let why = || {
        Input::Watch(WatchMsg::Disconnected(
            1,
            "PSUBSCRIBE refused: NOPERM (grant &*)".into(),
        ))
    };
    let a = s.feed(10, why());
    let b = s.feed(5010, why());
    let refusals = |a: &[Action]| {
        a.iter()
            .filter(|x| {
                matches!(
                    x,
                    Action::Alert(AlertInput::SentinelRefused { ok: false, .. })
                )
            })
            .count()
    };
    assert_eq!(refusals(&a) + refusals(&b), 1, "told once: {a:?} {b:?}");
    assert_eq!(s.core.refused().len(), 1);
    // A plain disconnect is not a refusal.
    assert!(s
        .feed(
            5020,
            Input::Watch(WatchMsg::Disconnected(2, "connection reset".into()))
        )
        .is_empty());
    let a = s.feed(6000, Input::Watch(WatchMsg::Connected(1)));
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Alert(AlertInput::SentinelRefused { ok: true, .. })
    )));
    assert!(s.core.refused().is_empty());
}

#[test]
fn reload_keeps_unchanged_masters_and_rereads() {
    let mut s = Sim::started();
    let w = s.feed(100, switch(0, A, B, s.at(100)));
    s.complete(110, &w, true);
    let mut cfg = cfg();
    cfg.reconcile.interval = Duration::from_secs(5);
    let a = s.core.reconfigure(s.at(200), &cfg);
    assert_eq!(reads(&a).len(), 1, "a read under the new config: {a:?}");
    let st = s.master();
    assert_eq!(st.applied.as_deref(), Some("10.0.1.11:6379"), "state kept");
    assert!(
        st.unconfirmed.is_some(),
        "the unconfirmed switch is still followed"
    );
    assert!(s.core.poll_timeout() <= s.at(200) + Duration::from_secs(5));
    // A master whose tables changed forgets its routes; a removed one is gone.
    let mut cfg2 = cfg.clone();
    let m = cfg2.masters.remove("m").expect("m");
    cfg2.masters.insert("other".into(), m);
    s.core.reconfigure(s.at(300), &cfg2);
    let names: Vec<String> = s
        .core
        .status(s.at(300))
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, vec!["other".to_owned()]);
}

fn write_orders(actions: &[Action]) -> Vec<WriteOrder> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartWrite(o) => Some(o.clone()),
            _ => None,
        })
        .collect()
}

fn route_alerts(actions: &[Action]) -> Vec<bool> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Alert(AlertInput::Route(r)) => Some(r.ok),
            _ => None,
        })
        .collect()
}

/// The core's deadline for a result, in ms after the job was handed out
/// (the test config's default `aws.call_timeout`).
fn read_due_ms() -> u64 {
    (job_bounds(&cfg()).0 + RESULT_GRACE).as_millis() as u64
}

fn write_due_ms() -> u64 {
    (job_bounds(&cfg()).1 + RESULT_GRACE).as_millis() as u64
}

#[test]
fn a_lost_read_result_ends_at_its_deadline_and_a_late_one_is_ignored() {
    let mut s = Sim::started();
    let seq = reads(&s.feed(100, Input::ReadRequested("t")))[0];
    // Its ReadDone is lost. Wishes meanwhile wait behind the running read...
    assert!(reads(&s.feed(200, Input::ReadRequested("again"))).is_empty());
    let due = 100 + read_due_ms();
    assert!(
        s.core.poll_timeout() <= s.at(due),
        "the deadline is a timer"
    );
    assert!(
        reads(&s.tick(due - 1)).is_empty(),
        "not before its deadline"
    );
    // ...and the deadline ends it: counted, and a new read starts.
    let again = reads(&s.tick(due));
    assert_eq!(again, vec![seq + 1]);
    assert_eq!(s.core.lost_results(), (1, 0));
    assert!(!s.core.last_read_ok());
    // The lost one arrives late, naming another master: ignored.
    let a = s.feed(
        due + 10,
        read(seq, vec![view(B, 2), view(B, 2), view(B, 2)], Some(A)),
    );
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(s.master().majority.as_deref(), Some("10.0.1.10:6379"));
    // The read that replaced it judges, once; a duplicate of it is ignored too.
    let a = s.feed(
        due + 20,
        read(seq + 1, vec![view(A, 1), view(A, 1), view(A, 1)], Some(A)),
    );
    assert!(writes(&a).is_empty(), "{a:?}");
    assert!(s.core.last_read_ok());
    let a = s.feed(
        due + 30,
        read(seq + 1, vec![view(B, 2), view(B, 2), view(B, 2)], Some(A)),
    );
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(s.master().majority.as_deref(), Some("10.0.1.10:6379"));
}

#[test]
fn a_lost_write_result_ends_at_its_deadline_and_a_late_one_is_ignored() {
    let mut s = Sim::started();
    let w = s.feed(100, switch(0, A, B, s.at(100)));
    let first = write_orders(&w).remove(0);
    s.core.write_started(s.at(100), "m", first.id);
    assert_eq!(s.master().writing.as_deref(), Some("10.0.1.11:6379"));
    // Its WriteDone is lost. The confirming read sees B but must not clear
    // the write (a write in flight reads its own result back).
    let seq = reads(&s.tick(600))[0];
    let a = s.feed(
        620,
        read(seq, vec![view(B, 2), view(B, 2), view(B, 2)], Some(B)),
    );
    assert!(writes(&a).is_empty(), "{a:?}");
    let due = 100 + write_due_ms();
    assert!(
        s.core.poll_timeout() <= s.at(due),
        "the deadline is a timer"
    );
    // Interval reads meanwhile see B and leave the write alone.
    let a = s.tick(due - 1);
    assert!(route_alerts(&a).is_empty());
    for seq in reads(&a) {
        let a = s.feed(
            due - 1,
            read(seq, vec![view(B, 2), view(B, 2), view(B, 2)], Some(B)),
        );
        assert!(writes(&a).is_empty(), "{a:?}");
    }
    // The deadline ends it as a failed write: alerted, counted, retried.
    let a = s.tick(due);
    assert_eq!(route_alerts(&a), vec![false], "{a:?}");
    assert_eq!(s.core.lost_results(), (0, 1));
    assert_eq!(s.master().writing, None);
    assert!(s.master().last_error.is_some());
    let retry = s.core.poll_timeout();
    let seq = reads(&s.core.handle_timeout(retry))[0];
    let a = s.core.handle(
        retry,
        read(seq, vec![view(B, 2), view(B, 2), view(B, 2)], Some(A)),
    );
    let second = write_orders(&a).remove(0);
    assert_eq!(second.addr, addr(B));
    assert_ne!(second.id, first.id);
    // The lost result arrives late (written, verified): ignored, the new
    // write stays in flight.
    let late = s.complete(due + 10_000, &w, true);
    assert!(late.is_empty(), "{late:?}");
    assert_eq!(s.master().writing.as_deref(), Some("10.0.1.11:6379"));
    // The new write's result settles it; a duplicate of it is ignored.
    let done = s.complete(due + 10_100, &a, true);
    assert_eq!(route_alerts(&done), vec![true]);
    assert_eq!(s.master().applied.as_deref(), Some("10.0.1.11:6379"));
    assert_eq!(s.master().last_error, None);
    assert!(s.complete(due + 10_200, &a, false).is_empty());
    assert_eq!(s.master().last_error, None);
}

#[test]
fn a_write_waiting_for_the_write_rate_is_not_given_up_before_it_starts() {
    let mut s = Sim::started();
    let w = s.feed(100, switch(0, A, B, s.at(100)));
    let order = write_orders(&w).remove(0);
    // Held by the pacer past the job's own bound: not lost yet.
    let wait = write_due_ms() + 1_000;
    s.core.write_started(s.at(100 + wait), "m", order.id);
    s.tick(100 + wait);
    assert_eq!(s.core.lost_results().1, 0);
    assert_eq!(s.master().writing.as_deref(), Some("10.0.1.11:6379"));
    // From its start, the job's bound applies.
    s.tick(100 + wait + write_due_ms());
    assert_eq!(s.core.lost_results().1, 1);
}

fn permission_refused(ms: u64, s: &mut Sim, actions: &[Action]) -> Vec<Action> {
    let order = write_orders(actions).remove(0);
    let target =
        Target::Eni(crate::config::EniId::try_from(eni(&order.addr.host).to_owned()).expect("id"));
    s.feed(
        ms,
        Input::WriteDone(Box::new(WriteOutcome {
            id: order.id,
            master: order.master,
            addr: order.addr,
            cause: order.cause,
            target: Ok(target),
            tables: order
                .cfg
                .route_tables
                .iter()
                .map(|t| {
                    let e = Ec2Error {
                        operation: "ReplaceRoute",
                        subject: t.to_string(),
                        class: crate::decide::facts::ErrorClass::Permission,
                        code: Some("UnauthorizedOperation".into()),
                        message: "not authorized".into(),
                    };
                    (t.clone().into(), Err(e))
                })
                .collect(),
            verified: None,
            latency: Duration::from_millis(9),
            write_time: Duration::from_millis(8),
        })),
    )
}

#[test]
fn a_write_refused_at_every_interval_is_not_a_good_reconcile() {
    let mut s = Sim::started();
    // The majority moved to B; every write of B's route is refused.
    let seq = reads(&s.feed(100, Input::ReadRequested("t")))[0];
    let a = s.feed(
        110,
        read(seq, vec![view(B, 2), view(B, 2), view(B, 2)], Some(A)),
    );
    permission_refused(120, &mut s, &a);
    assert!(!s.master().route_wrong_too_long, "within the bound");
    // Each interval reads again and sends the write again: still refused.
    let mut ms = 30_000;
    for _ in 0..3 {
        let a = s.tick(ms);
        for seq in reads(&a) {
            let a = s.feed(
                ms + 10,
                read(seq, vec![view(B, 2), view(B, 2), view(B, 2)], Some(A)),
            );
            assert_eq!(writes(&a), vec![(B.to_owned(), Cause::Reconcile)]);
            assert!(
                !s.core.last_read_ok(),
                "a route still wrong after 10 s is a failed reconcile"
            );
            permission_refused(ms + 20, &mut s, &a);
        }
        let st = s.core.status(s.at(ms + 30)).remove(0);
        assert!(st.route_wrong_too_long, "/readyz fails: {st:?}");
        ms = (s.core.poll_timeout().duration_since(s.t0).as_micros() as u64).div_ceil(1000);
    }
    // Once a write goes through, ready again.
    let a = s.tick(ms);
    let seq = reads(&a)[0];
    let a = s.feed(
        ms + 10,
        read(seq, vec![view(B, 2), view(B, 2), view(B, 2)], Some(A)),
    );
    s.complete(ms + 20, &a, true);
    assert!(!s.core.status(s.at(ms + 30)).remove(0).route_wrong_too_long);
}

#[test]
fn a_revert_is_written_without_a_table_read_and_stays_pending_until_written() {
    let mut s = Sim::started();
    let w = s.feed(100, switch(0, A, B, s.at(100)));
    s.complete(110, &w, true);
    // The majority still names A, but EC2 cannot be read.
    let seq = reads(&s.tick(600))[0];
    let Input::ReadDone(mut o) = read(seq, vec![view(A, 1), view(A, 1), view(A, 1)], Some(B))
    else {
        unreachable!()
    };
    o.tables = Err(Ec2Error {
        operation: "DescribeRouteTables",
        subject: "rtb-1".into(),
        class: crate::decide::facts::ErrorClass::Transient,
        code: None,
        message: "timed out".into(),
    });
    let a = s.feed(620, Input::ReadDone(o));
    assert_eq!(
        writes(&a),
        vec![(A.to_owned(), Cause::Reconcile)],
        "the revert is written at once: {a:?}"
    );
    assert_eq!(s.master().unconfirmed.as_deref(), Some("10.0.1.11:6379"));
    // The revert fails: still pending (gauge, readiness, alert).
    s.complete(700, &a, false);
    assert_eq!(s.master().unconfirmed.as_deref(), Some("10.0.1.11:6379"));
    let mut ms = (s.core.poll_timeout().duration_since(s.t0).as_micros() as u64).div_ceil(1000);
    let mut alerted = false;
    let mut written = false;
    let mut rounds = 0;
    while ms < 12_000 && !written {
        rounds += 1;
        assert!(
            rounds < 100,
            "stuck at {ms} ms: {:?}",
            s.core.poll_timeout().duration_since(s.t0)
        );
        let a = s.tick(ms);
        alerted |= majority_alerts(&a).iter().any(|(ok, _)| !ok);
        for seq in reads(&a) {
            // EC2 reads again; the route is still on B: repaired.
            let a = s.feed(
                ms + 5,
                read(seq, vec![view(A, 1), view(A, 1), view(A, 1)], Some(B)),
            );
            if !writes(&a).is_empty() && alerted {
                let done = s.complete(ms + 10, &a, true);
                assert!(
                    majority_alerts(&done).iter().any(|(ok, _)| *ok),
                    "the alert resolves when the revert is written: {done:?}"
                );
                written = true;
            } else if !writes(&a).is_empty() {
                s.complete(ms + 10, &a, false);
            }
        }
        ms = (s.core.poll_timeout().duration_since(s.t0).as_micros() as u64).div_ceil(1000);
    }
    assert!(alerted, "a revert not written in 10 s is alerted");
    assert!(written);
    assert_eq!(s.master().unconfirmed, None);
    assert_eq!(s.master().applied.as_deref(), Some("10.0.1.10:6379"));
}

/// Details of the config-epoch regression alerts in `actions`.
fn epoch_alerts(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Alert(AlertInput::Condition {
                bad: true, detail, ..
            }) if detail.contains("config-epoch went back") => Some(detail.clone()),
            _ => None,
        })
        .collect()
}

/// Majority at epoch 5 on A, read at 110 ms.
fn at_epoch_5() -> Sim {
    let mut s = Sim::started();
    let seq = reads(&s.feed(100, Input::ReadRequested("t")))[0];
    s.feed(
        110,
        read(seq, vec![view(A, 5), view(A, 5), view(A, 5)], Some(A)),
    );
    s
}

/// Reads at `ms` (requested) and answers with `answers`, VIP on A.
fn read_at(s: &mut Sim, ms: u64, answers: Vec<Answer>) -> Vec<Action> {
    let a = s.feed(ms, Input::ReadRequested("t"));
    let seq = reads(&a)
        .into_iter()
        .next()
        .expect("no read running at this point");
    s.feed(ms + 10, read(seq, answers, Some(A)))
}

#[test]
fn a_lower_epoch_is_not_followed_while_the_higher_sentinels_are_only_silent() {
    for silent in [Answer::Unreachable, Answer::Tilt] {
        let mut s = at_epoch_5();
        // One sentinel with epoch 5 is cut off (or in TILT); the other two
        // hold an older configuration (epoch 3, naming B).
        let stale = || vec![view(B, 3), view(B, 3), silent.clone()];
        let mut ms = 1_000;
        // Read after read, a second apart and then some: held.
        while ms < 50_000 {
            let a = read_at(&mut s, ms, stale());
            assert!(writes(&a).is_empty(), "{silent:?} at {ms}: {a:?}");
            assert!(!s.core.last_read_ok(), "held is said");
            ms += 7_000;
        }
        assert_eq!(s.master().config_epoch, Some(5));
        // Silent for longer than failover-timeout since epoch 5 was last
        // seen: it is a reset, followed and said which.
        let a = read_at(&mut s, 110 + FAILOVER_TIMEOUT.as_millis() as u64, stale());
        assert_eq!(
            writes(&a),
            vec![(B.to_owned(), Cause::Reconcile)],
            "{silent:?}"
        );
        let alerts = epoch_alerts(&a);
        assert!(
            alerts
                .iter()
                .any(|d| d.contains("gone") && d.contains("failover-timeout")),
            "{alerts:?}"
        );
    }
}

#[test]
fn a_lower_epoch_on_every_sentinel_is_a_restart_and_followed_after_two_reads() {
    let mut s = at_epoch_5();
    let a = read_at(&mut s, 1_000, vec![view(B, 3), view(B, 3), view(B, 3)]);
    assert!(writes(&a).is_empty());
    let a = read_at(&mut s, 2_100, vec![view(B, 3), view(B, 3), view(B, 3)]);
    assert_eq!(writes(&a), vec![(B.to_owned(), Cause::Reconcile)]);
    assert!(epoch_alerts(&a).iter().any(|d| d.contains("restarted")));
}

#[test]
fn a_lower_epoch_of_zero_is_a_re_monitor_even_with_a_sentinel_silent() {
    let mut s = at_epoch_5();
    let a = read_at(
        &mut s,
        1_000,
        vec![view(B, 0), view(B, 0), Answer::Unreachable],
    );
    assert!(writes(&a).is_empty());
    let a = read_at(
        &mut s,
        2_100,
        vec![view(B, 0), view(B, 0), Answer::Unreachable],
    );
    assert_eq!(writes(&a), vec![(B.to_owned(), Cause::Reconcile)]);
    assert!(epoch_alerts(&a).iter().any(|d| d.contains("re-monitored")));
}
mod silent;

fn check_orders(actions: &[Action]) -> Vec<(String, bool)> {
    write_orders(actions)
        .into_iter()
        .map(|o| (o.addr.host.clone(), o.check_first))
        .collect()
}

#[test]
fn a_standby_leaves_a_switch_to_the_writer_then_checks_it_by_reading_first() {
    let mut s = Sim::started();
    s.core.set_standby(Duration::from_secs(2));
    let a = s.feed(100, switch(0, A, B, s.at(100)));
    assert!(
        write_orders(&a).is_empty(),
        "a standby does not write at once: {a:?}"
    );
    // The same switch from another sentinel keeps the check where it was.
    let a = s.feed(1_500, switch(1, A, B, s.at(1_500)));
    assert!(write_orders(&a).is_empty(), "{a:?}");
    assert!(check_orders(&s.tick(2_099)).is_empty());
    assert_eq!(
        check_orders(&s.tick(2_100)),
        vec![(B.to_owned(), true)],
        "its check is due one wait after the switch, and reads first"
    );
}

/// A standby (2 s wait) hears A → B at 100 ms; its confirmation read answers
/// at 800 ms with the majority on `majority` and the tables on `tables`.
fn standby_confirms(majority: &str, tables: &str) -> Sim {
    let mut s = Sim::started();
    s.core.set_standby(Duration::from_secs(2));
    s.feed(100, switch(0, A, B, s.at(100)));
    let seq = reads(&s.tick(100 + CONFIRM_FIRST.as_millis() as u64))[0];
    let v = view(majority, 2);
    let a = s.feed(800, read(seq, vec![v.clone(), v.clone(), v], Some(tables)));
    assert!(
        write_orders(&a).is_empty(),
        "a standby does not write at once: {a:?}"
    );
    s
}

#[test]
fn a_standby_whose_majority_read_shows_the_writers_routes_needs_no_check() {
    let mut s = standby_confirms(B, B);
    assert!(
        check_orders(&s.tick(5_000)).is_empty(),
        "nothing left to check"
    );
    assert_eq!(s.master().applied.as_deref(), Some("10.0.1.11:6379"));
}

#[test]
fn a_newer_wish_replaces_a_standbys_pending_check_and_becoming_the_writer_makes_it_due() {
    // B was a mistake: the majority names C (the tables still on A).
    let mut s = standby_confirms(C, A);
    // The writer is gone: this watcher is first now, and checks at once.
    s.core.set_standby(Duration::ZERO);
    assert_eq!(check_orders(&s.tick(801)), vec![(C.to_owned(), true)]);
}

#[test]
fn the_designated_writer_writes_at_once_without_reading_first() {
    let mut s = Sim::started();
    let a = s.feed(100, switch(0, A, B, s.at(100)));
    assert_eq!(check_orders(&a), vec![(B.to_owned(), false)]);
}

#[test]
fn a_newer_switch_replaces_a_standbys_pending_check_and_waits_its_own_turn() {
    let mut s = Sim::started();
    s.core.set_standby(Duration::from_secs(1));
    s.feed(100, switch(0, A, B, s.at(100)));
    // B fails over to C at once; the writer's burst (default write_rate:
    // 180 tokens held) takes both at once: C is checked 1 s after its switch.
    s.feed(200, switch(0, B, C, s.at(200)));
    assert!(
        check_orders(&s.tick(1_199)).is_empty(),
        "B's check is gone, C's not due"
    );
    assert_eq!(check_orders(&s.tick(1_200)), vec![(C.to_owned(), true)]);
}

#[test]
fn a_standbys_wish_the_majority_refutes_is_dropped_not_written() {
    // A switch to B that the writer did not act on: the majority stays on A,
    // and so do the tables.
    let mut s = standby_confirms(A, A);
    assert!(
        check_orders(&s.tick(10_000)).is_empty(),
        "never checked, never written"
    );
    assert_eq!(s.master().applied.as_deref(), Some("10.0.1.10:6379"));
}

#[test]
fn a_standbys_check_due_while_its_last_one_runs_waits_for_it_and_still_reads_first() {
    let mut s = Sim::started();
    s.core.set_standby(Duration::from_secs(1));
    s.feed(100, switch(0, A, B, s.at(100)));
    let b = s.tick(1_100);
    assert_eq!(check_orders(&b), vec![(B.to_owned(), true)]);
    // B fails over to C while B's check still runs.
    s.feed(1_200, switch(0, B, C, s.at(1_200)));
    assert!(
        check_orders(&s.tick(2_200)).is_empty(),
        "queued behind B's check"
    );
    let c = s.complete(2_300, &b, true);
    assert_eq!(
        check_orders(&c),
        vec![(C.to_owned(), true)],
        "C is checked, not written blind"
    );
}

#[test]
fn becoming_the_writer_moves_the_cores_next_wake_up_to_the_pending_check() {
    let mut s = Sim::started();
    s.core.set_standby(Duration::from_secs(2));
    s.feed(100, switch(0, A, B, s.at(100)));
    assert!(s.core.poll_timeout() <= s.at(2_100));
    assert!(s.core.poll_timeout() > s.at(100));
    // The writer is seen gone: the check is due at its place in the line
    // now, and the cached wake-up follows.
    s.core.set_standby(Duration::ZERO);
    assert_eq!(s.core.poll_timeout(), s.at(100));
}

#[test]
fn a_slice_of_the_status_is_the_status_of_those_masters_and_busy_ones_are_named() {
    let mut s = Sim::started();
    let now = s.at(10);
    let all = s.core.status(now);
    let slice = s.core.status_at(now, &[0, 0]);
    assert_eq!(slice.len(), 1, "a position named twice is built once");
    assert_eq!(slice[0].0, 0);
    assert_eq!(
        serde_json::to_string(&slice[0].1).unwrap(),
        serde_json::to_string(&all[0]).unwrap()
    );
    assert!(s.core.status_at(now, &[5]).is_empty(), "no such master");
    assert!(
        s.core.busy_masters(8).is_empty(),
        "settled: nothing to refresh each time"
    );
    s.feed(100, switch(0, A, B, s.at(100)));
    assert_eq!(
        s.core.busy_masters(8),
        vec![0],
        "a write in flight is refreshed at every publish"
    );
    assert!(
        s.core.busy_masters(0).is_empty(),
        "at most as many as asked"
    );
}
