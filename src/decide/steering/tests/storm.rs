//! 1,000 masters: the cost of one input and of judging one majority read.

use super::*;
use crate::decide::steering::reads::JUDGE_SLICE;

const N: usize = 1_000;

fn node(i: usize, new: bool) -> Addr {
    Addr::new(
        format!("10.{}.{}.{}", u8::from(new), i / 250, 1 + i % 250),
        6379,
    )
}

fn many_cfg() -> Config {
    let mut y = String::from(
        "sentinels: [\"127.0.0.2:26379\", \"127.0.0.3:26379\", \"127.0.0.4:26379\"]\nreconcile:\n  interval: 2s\nmasters:\n",
    );
    for i in 0..N {
        let (a, b) = (i / 250, 1 + i % 250);
        y += &format!(
            "  m{i}:\n    vip: 172.16.{a}.{b}/32\n    route_tables: [rtb-{i:08x}]\n    nodes:\n      \"{}\": {{ network_interface_id: eni-old }}\n      \"{}\": {{ network_interface_id: eni-new }}\n",
            node(i, false),
            node(i, true)
        );
    }
    Config::parse(&y).expect("test config parses")
}

/// A read of every master: the majority on the old node, every route on it.
fn many_read(cfg: &Config, seq: u64) -> Input {
    let mut answers = HashMap::new();
    let mut tables = TableReads::new();
    let mut targets = HashMap::new();
    for (i, (name, m)) in cfg.masters.iter().enumerate() {
        let i: usize = name[1..].parse().unwrap_or(i);
        let on = node(i, false);
        let v = Answer::View(MasterView {
            addr: on.clone(),
            config_epoch: 1,
            flags: "master".into(),
            failover_timeout: Some(FAILOVER_TIMEOUT),
            replicas: vec![node(i, true)],
            down_replicas: vec![],
        });
        answers.insert(name.clone(), vec![v.clone(), v.clone(), v]);
        let vip = m.vip.expect("vip").0;
        for t in &m.route_tables {
            let routes = [(
                vip,
                CurrentRoute::Points {
                    instance_id: None,
                    eni_id: Some("eni-old".into()),
                    blackhole: false,
                },
            )]
            .into_iter()
            .collect();
            tables.insert(
                t.clone(),
                Ok(TableRead {
                    vpc_id: Some("vpc-1".into()),
                    routes,
                }),
            );
        }
        let nodes = m.nodes.as_ref().expect("nodes");
        let t: HashMap<Addr, Result<Target, TargetError>> = [node(i, false), node(i, true)]
            .into_iter()
            .filter_map(|a| Some((a.clone(), Ok(crate::config::static_target(nodes, &a)?))))
            .collect();
        targets.insert(name.clone(), t);
    }
    Input::ReadDone(Box::new(ReadOutcome {
        seq,
        answers,
        tables: Ok(tables),
        carriers: HashMap::new(),
        targets,
        sentinels_answering: 3,
        took: Duration::from_millis(500),
    }))
}

fn sdown(i: usize, up: bool) -> Input {
    let kind = if up { "-sdown" } else { "+sdown" };
    let event =
        crate::watch::event::parse(kind, &format!("master m{i} {} 6379", node(i, false).host))
            .expect("event parses");
    Input::Watch(WatchMsg::Event {
        sentinel: 0,
        event,
        at: Instant::now(),
    })
}

fn master_reads(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Alert(AlertInput::MasterRead(_))))
        .count()
}

#[test]
fn a_read_of_a_thousand_masters_is_judged_a_slice_at_a_time() {
    let cfg = many_cfg();
    let t0 = Instant::now();
    let mut core = Steering::new(&cfg, t0, 7);
    assert_eq!(
        reads(&core.handle(t0, Input::ReadRequested("start"))),
        vec![1]
    );
    let a = core.handle(t0, many_read(&cfg, 1));
    assert_eq!(master_reads(&a), JUDGE_SLICE, "one slice judged per step");
    assert!(core.judging());
    // Between slices: a read asked for waits for the judging to end.
    assert!(reads(&core.handle(t0, Input::ReadRequested("asked"))).is_empty());
    let mut judged = master_reads(&a);
    let mut steps = 1;
    let mut last = Vec::new();
    while core.judging() {
        last = core.judge_more(t0);
        let n = master_reads(&last);
        assert!(n <= JUDGE_SLICE, "{n} masters judged in one step");
        judged += n;
        steps += 1;
    }
    assert_eq!(judged, N, "every master judged once");
    assert_eq!(steps, N.div_ceil(JUDGE_SLICE));
    assert!(core.last_read_ok(), "every route right: a good read");
    assert_eq!(
        reads(&last),
        vec![2],
        "the read asked for meanwhile follows"
    );
    assert!(core.judge_more(t0).is_empty(), "nothing left to judge");
}

#[test]
fn a_switch_between_slices_is_not_judged_by_the_older_read() {
    let (cfg, t0, mut core) = settled_core();
    core.handle(t0, Input::ReadRequested("interval"));
    core.handle(t0, many_read(&cfg, 2));
    assert!(core.judging());
    // m999 sorts last: not judged yet. Its master fails over (fast path).
    let (old, new) = (node(999, false), node(999, true));
    let a = core.handle(
        t0,
        Input::Watch(WatchMsg::Event {
            sentinel: 0,
            event: Event::SwitchMaster {
                master: "m999".into(),
                old,
                new: new.clone(),
            },
            at: t0,
        }),
    );
    let w = write_orders(&a);
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].master.as_str(), &w[0].addr), ("m999", &new));
    let mut rest = Vec::new();
    while core.judging() {
        rest.extend(core.judge_more(t0));
    }
    assert!(
        writes(&rest).is_empty(),
        "the older read (majority on the old node) does not move m999 back"
    );
    assert_eq!(reads(&rest), vec![3], "m999 is judged by a follow-up read");
}

#[test]
fn an_event_other_than_a_switch_keeps_the_next_timeout() {
    let (_, t0, mut core) = settled_core();
    let due = core.poll_timeout();
    let computed = core.timeouts_computed.get();
    for i in 0..100 {
        core.handle(t0, sdown(i, i % 2 == 1));
        assert_eq!(core.poll_timeout(), due);
    }
    assert_eq!(
        core.timeouts_computed.get(),
        computed,
        "+sdown/-sdown do not walk the masters again"
    );
    // A switch does move it: the confirming read is due soon.
    let a = core.handle(
        t0,
        Input::Watch(WatchMsg::Event {
            sentinel: 0,
            event: Event::SwitchMaster {
                master: "m7".into(),
                old: node(7, false),
                new: node(7, true),
            },
            at: t0,
        }),
    );
    assert_eq!(write_orders(&a).len(), 1);
    assert_eq!(core.poll_timeout(), t0 + CONFIRM_FIRST);
    // So does a write that starts (its deadline counts from then).
    let id = write_orders(&a)[0].id;
    let later = t0 + Duration::from_secs(1000);
    core.write_started(later, "m7", id);
    assert!(core.poll_timeout() == t0 + CONFIRM_FIRST);
    core.forget_write("m7");
    assert!(core.timeouts_computed.get() > computed + 1);
}

/// A core for [`many_cfg`] whose first majority read (routes right) is
/// judged in full.
fn settled_core() -> (Config, Instant, Steering) {
    let cfg = many_cfg();
    let t0 = Instant::now();
    let mut core = Steering::new(&cfg, t0, 7);
    core.handle(t0, Input::ReadRequested("start"));
    core.handle(t0, many_read(&cfg, 1));
    while core.judging() {
        core.judge_more(t0);
    }
    (cfg, t0, core)
}
