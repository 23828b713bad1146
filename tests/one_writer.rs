//! Several watchers, one writer: with one sentinel-vip beside each sentinel
//! (`local_sentinel` set), a failover costs one `ReplaceRoute` per route table,
//! not one per watcher, and a designated writer that dies at the switch is
//! stood in for by a standby within `aws.standby_check_after`.
//!
//! Mutating calls are counted by the fault proxy in front of moto (what
//! reached EC2). The benchmark at the end (ignored) gives the figures of
//! docs/performance.md ("Several watchers").

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::*;

const WITHIN: Duration = Duration::from_secs(30);
/// `aws.standby_check_after`'s default.
const STEP: Duration = Duration::from_secs(1);

/// The watcher beside sentinel `local`, reaching EC2 through `endpoint`.
fn watcher(rig: &Rig, endpoint: &str, local: Option<&str>, interval: &str) -> Daemon {
    watcher_with(rig, endpoint, local, interval, "")
}

/// [`watcher`] with `extra` config lines.
fn watcher_with(
    rig: &Rig,
    endpoint: &str,
    local: Option<&str>,
    interval: &str,
    extra: &str,
) -> Daemon {
    let yaml = ConfigYaml {
        endpoint: Some(endpoint.to_owned()),
        extra: local
            .map(|s| format!("local_sentinel: \"{s}\"\n{extra}"))
            .unwrap_or_else(|| extra.to_owned()),
        ..rig.config_yaml(interval)
    }
    .yaml();
    Daemon::start(rig.redis.dir.path(), &yaml)
}

/// Indexes of `sentinels` in the watchers' order (by address): the first is
/// the designated writer, the next the standby of rank 1, ...
fn order(sentinels: &[String]) -> Vec<usize> {
    let key = |s: &String| {
        let (h, p) = s.rsplit_once(':').expect("host:port");
        (
            h.parse::<IpAddr>().expect("ip"),
            p.parse::<u16>().expect("port"),
        )
    };
    let mut idx: Vec<usize> = (0..sentinels.len()).collect();
    idx.sort_by_key(|i| key(&sentinels[*i]));
    idx
}

/// Waits until every watcher has seen all three alive through CLIENT LIST.
async fn all_seen(daemons: &[Daemon]) {
    for d in daemons {
        d.wait_log("gone=[]", WITHIN).await;
    }
}

/// The standbys' log lines about their checks and writes (on stderr).
fn dump_standbys(daemons: &[Daemon], sentinels: &[String], ranks: &[usize], from: &[usize]) {
    for &i in &ranks[1..] {
        for l in log_since(&daemons[i], from[i]).lines().filter(|l| {
            l.contains("standby")
                || l.contains("VIP route")
                || l.contains("watchers seen")
                || l.contains("switch-master")
                || l.contains("majority")
        }) {
            eprintln!("[{}] {l}", sentinels[i]);
        }
    }
}

fn calls(proxy: &FaultProxy) -> Vec<String> {
    proxy.mutating.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_watchers_spend_one_write_per_route_table_per_failover() {
    let rig = Rig::start(2).await;
    let proxy = FaultProxy::start(&rig.moto.url).await;
    let sentinels = rig.redis.sentinel_addrs();
    let http: Vec<u16> = sentinels.iter().map(|_| free_port()).collect();
    let daemons: Vec<Daemon> = sentinels
        .iter()
        .zip(&http)
        .map(|(s, h)| {
            let listen = format!("http:\n  listen: 127.0.0.1:{h}\n");
            watcher_with(&rig, &proxy.url, Some(s), "30s", &listen)
        })
        .collect();
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    all_seen(&daemons).await;
    // `/status` says who is who: ranks 0, 1, 2 in the order of the addresses.
    let ranks = order(&sentinels);
    for (rank, &i) in ranks.iter().enumerate() {
        eventually(
            &format!("{} to show writer_rank {rank}", sentinels[i]),
            WITHIN,
            || async {
                let st = status(http[i]).await?;
                (st["writer_rank"].as_u64() == Some(rank as u64)).then_some(())
            },
        )
        .await;
    }
    rig.redis.wait_ready_for_failover(2).await;
    let from: Vec<usize> = daemons.iter().map(|d| d.logs().len()).collect();
    proxy.mutating.lock().unwrap().clear();
    let m = rig.redis.failover().await;
    rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
    let writer = ranks[0];
    // Each standby finds the writer's routes: in its confirmation read, or in
    // its own check (rank x 1 s after the switch).
    for &i in &ranks[1..] {
        eventually(
            &format!("standby {i} to find the routes right"),
            WITHIN,
            || async { standby_found_right(&log_since(&daemons[i], from[i])).then_some(()) },
        )
        .await;
    }
    let w = eventually("the designated writer's verified write", WITHIN, || async {
        let l = log_since(&daemons[writer], from[writer]);
        l.contains("VIP route updated and verified").then_some(l)
    })
    .await;
    let made = calls(&proxy);
    eprintln!("mutating calls that reached EC2 for one failover, 3 watchers, 2 tables: {made:?}");
    let tables = rig.vpc.tables.len();
    assert!(
        !made.is_empty() && made.len() <= tables + 1,
        "a failover must cost <= K + 1 = {} mutating calls with 3 watchers: {made:?}",
        tables + 1
    );
    assert!(made.iter().all(|a| a == "ReplaceRoute"), "{made:?}");
    assert!(
        w.contains(&format!("written={tables}")),
        "the designated writer ({}) writes every table itself:\n{w}",
        sentinels[writer]
    );
    for &i in &ranks[1..] {
        let l = log_since(&daemons[i], from[i]);
        assert!(
            !l.contains("written in its place"),
            "standby {} wrote although the writer was alive:\n{l}",
            sentinels[i]
        );
    }
}

/// Whether a standby's log says it found the designated writer's routes.
fn standby_found_right(log: &str) -> bool {
    log.contains("standby: every carrier already right")
        || log.contains("standby: the majority read shows the designated writer's routes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_designated_writer_killed_at_the_switch_is_stood_in_for_within_one_step() {
    stood_in(true).await;
}

/// The writer alive (its sentinel links up, so the others still rank it
/// first) but cut off from EC2: the first standby writes after its wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_designated_writer_cut_off_from_ec2_is_stood_in_for_within_one_step() {
    stood_in(false).await;
}

/// The designated writer loses EC2 at the switch (and is killed with
/// SIGKILL when `kill`); the standbys put the routes right.
async fn stood_in(kill: bool) {
    let rig = Rig::start(2).await;
    // The standbys' path to EC2 (counted), and the writer's own (cut at the switch).
    let shared = FaultProxy::start(&rig.moto.url).await;
    let cut = FaultProxy::start(&rig.moto.url).await;
    let sentinels = rig.redis.sentinel_addrs();
    let ranks = order(&sentinels);
    let writer = ranks[0];
    let mut daemons: Vec<Daemon> = sentinels
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let url = if i == writer { &cut.url } else { &shared.url };
            watcher(&rig, url, Some(s), "30s")
        })
        .collect();
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    all_seen(&daemons).await;
    rig.redis.wait_ready_for_failover(2).await;
    let from: Vec<usize> = daemons.iter().map(|d| d.logs().len()).collect();
    // The writer can no longer reach EC2, hears the switch (and dies).
    cut.set(HANG);
    shared.mutating.lock().unwrap().clear();
    let m = rig.redis.failover().await;
    eventually(
        "the designated writer to hear +switch-master",
        WITHIN,
        || async {
            log_since(&daemons[writer], from[writer])
                .contains("channel=+switch-master")
                .then_some(())
        },
    )
    .await;
    if kill {
        daemons[writer].kill();
    }
    rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
    // The standby of rank 1 (or rank 0, once CLIENT LIST shows the writer
    // gone) wrote; its since_event_ms is the failover's cost.
    let first = ranks[1];
    let deadline = Instant::now() + WITHIN;
    let l = loop {
        let l = log_since(&daemons[first], from[first]);
        if !switch_write_ms(&l).is_empty() {
            break l;
        }
        if Instant::now() > deadline {
            dump_standbys(&daemons, &sentinels, &ranks, &from);
            panic!("no verified write from the first standby within {WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ms = switch_write_ms(&l)[0];
    let what = if kill { "killed" } else { "cut off from EC2" };
    eprintln!(
        "designated writer {what} at +switch-master: routes right {ms:.0} ms after the event (first standby)"
    );
    let bound = STEP + Duration::from_secs(5);
    assert!(
        Duration::from_secs_f64(ms / 1e3) <= bound,
        "the standby stands in within standby_check_after + the write ({bound:?}): {ms} ms\n{l}"
    );
    // The second standby finds the routes right.
    let second = ranks[2];
    eventually(
        "the second standby to find the routes right",
        WITHIN,
        || async { standby_found_right(&log_since(&daemons[second], from[second])).then_some(()) },
    )
    .await;
    let made = calls(&shared);
    eprintln!("mutating calls that reached EC2 with the writer {what}: {made:?}");
    dump_standbys(&daemons, &sentinels, &ranks, &from);
    let tables = rig.vpc.tables.len();
    assert!(
        made.len() <= tables + 1,
        "<= K + 1 mutating calls even when the writer is dead: {made:?}"
    );
}

/// A standby restarted at the `+switch-master` (its start read may find the
/// routes still on the old master): until it has seen the others in `CLIENT
/// LIST` it keeps its place by address, so it leaves the write to the writer
/// instead of writing as a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_restarted_at_the_switch_leaves_the_write_to_the_writer() {
    let rig = Rig::start(2).await;
    let proxy = FaultProxy::start(&rig.moto.url).await;
    let sentinels = rig.redis.sentinel_addrs();
    let mut daemons: Vec<Daemon> = sentinels
        .iter()
        .map(|s| watcher(&rig, &proxy.url, Some(s), "30s"))
        .collect();
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    all_seen(&daemons).await;
    rig.redis.wait_ready_for_failover(2).await;
    let ranks = order(&sentinels);
    let restarted = ranks[1];
    proxy.mutating.lock().unwrap().clear();
    let m = rig.redis.failover().await;
    daemons[restarted].kill();
    let from = daemons[restarted].logs().len();
    daemons[restarted].spawn();
    rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
    // Its first majority read after the start has judged the master.
    eventually(
        "the restarted standby to find the routes right",
        WITHIN,
        || async {
            let l = log_since(&daemons[restarted], from);
            (standby_found_right(&l) || l.contains("VIP route already right in every table"))
                .then_some(())
        },
    )
    .await;
    let l = log_since(&daemons[restarted], from);
    let wrote = l.lines().any(|line| {
        line.contains("VIP route updated and verified") && !line.contains(" written=0 ")
    });
    assert!(
        !l.contains("written in its place") && !wrote,
        "the restarted standby wrote over the designated writer:\n{l}"
    );
    let made = calls(&proxy);
    eprintln!("mutating calls with a standby restarted at the switch: {made:?}");
    assert!(made.len() <= rig.vpc.tables.len() + 1, "{made:?}");
}

/// Figures for docs/performance.md: per failover, the mutating calls and the
/// designated writer's `since_event_ms` with 1 watcher, 3 watchers as before
/// this change (no `local_sentinel`: each writes alone) and 3 watchers with
/// `local_sentinel`.
///
/// `cargo test --release --test one_writer -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand"]
async fn bench_mutating_calls_and_latency_one_vs_three_watchers() {
    const ROUNDS: usize = 5;
    for (name, n, local) in [
        ("1 watcher", 1, false),
        ("3 watchers, no local_sentinel", 3, false),
        ("3 watchers, local_sentinel", 3, true),
    ] {
        let rig = Rig::start(2).await;
        let proxy = FaultProxy::start(&rig.moto.url).await;
        let sentinels = rig.redis.sentinel_addrs();
        let ranks = order(&sentinels);
        let daemons: Vec<Daemon> = ranks[..n]
            .iter()
            .map(|&i| {
                watcher(
                    &rig,
                    &proxy.url,
                    local.then_some(sentinels[i].as_str()),
                    "30s",
                )
            })
            .collect();
        rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
        if local {
            all_seen(&daemons).await;
        }
        let (mut counts, mut ms) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            rig.redis.wait_ready_for_failover(2).await;
            let from = daemons[0].logs().len();
            proxy.mutating.lock().unwrap().clear();
            let t0 = Instant::now();
            let m = rig.redis.failover().await;
            rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
            // Every watcher's checks are over after 2 steps (rank 2).
            tokio::time::sleep((STEP * 3).saturating_sub(t0.elapsed())).await;
            counts.push(calls(&proxy).len());
            let l = eventually("the writer's verified write", WITHIN, || async {
                let l = log_since(&daemons[0], from);
                (!switch_write_ms(&l).is_empty()).then_some(l)
            })
            .await;
            ms.push(switch_write_ms(&l)[0]);
        }
        ms.sort_by(f64::total_cmp);
        counts.sort();
        eprintln!(
            "{name}: mutating calls per failover {counts:?} (median {}); designated writer's route right after +switch-master: median {:.1} ms (min {:.1}, max {:.1})",
            counts[ROUNDS / 2],
            ms[ROUNDS / 2],
            ms[0],
            ms[ROUNDS - 1]
        );
    }
}
