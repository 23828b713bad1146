//! quorum: the sentinel majority is the truth — lost, late and forged events,
//! reconnects, hand edits, EC2 faults and signals, on the real rig.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const WITHIN: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_while_daemon_is_stopped_is_repaired_at_start() {
    let rig = Rig::start(2).await;
    let mut daemon = rig.start_daemon("1h", "");
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    daemon.kill();
    let m = rig.redis.failover().await;
    // Nobody moved the route while the daemon was down.
    assert!(rig
        .vpc
        .vip_targets()
        .await
        .iter()
        .all(|t| t.as_deref() == Some(rig.vpc.enis[0].as_str())));
    let started = Instant::now();
    daemon.spawn();
    rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
    eprintln!(
        "missed failover: route right {:?} after the daemon started",
        started.elapsed()
    );
    daemon
        .wait_log("drifted from the majority's master", Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_while_pubsub_connections_are_killed_is_repaired_after_reconnect() {
    let rig = Rig::start(2).await;
    let daemon = rig.start_daemon("1h", "");
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    // Keep killing the daemon's pub/sub connections until the failover is over,
    // so its events are lost; only the reconnect's majority read can fix the route.
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let stop = stop.clone();
        let hosts = rig.redis.hosts.clone();
        let port = rig.redis.sentinel_port;
        std::thread::spawn(move || {
            let mut kills = 0;
            while !stop.load(Ordering::Relaxed) {
                for h in &hosts {
                    let out = cli(h, port, &["CLIENT", "KILL", "TYPE", "pubsub"]);
                    kills += out.parse::<u32>().unwrap_or(0);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            kills
        })
    };
    let m = rig.redis.failover().await;
    stop.store(true, Ordering::Relaxed);
    let kills = killer.join().unwrap();
    assert!(kills > 0, "no pub/sub connection was killed");
    let t = Instant::now();
    rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
    eprintln!(
        "route right {:?} after the last kill ({kills} connections killed)",
        t.elapsed()
    );
    daemon
        .wait_log("sentinel connection lost", Duration::from_secs(5))
        .await;
}

/// Starts a plain redis-server posing as a 4th "sentinel": the test can PUBLISH
/// anything on it, the way a healed minority sentinel would publish late.
fn forger(rig: &Rig) -> (Proc, String) {
    let port = {
        let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.5",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--protected-mode",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.5", port)).is_err() {
        assert!(Instant::now() < deadline, "forger did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = rig;
    (
        Proc {
            child,
            name: "forger".into(),
        },
        format!("127.0.0.5:{port}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_and_forged_switch_events_do_not_keep_the_vip_off_the_majoritys_master() {
    let rig = Rig::start(1).await;
    let (_forger, forged_addr) = forger(&rig);
    let mut config = rig.config_yaml("1h");
    config.sentinels.push(forged_addr.clone());
    let yaml = config.yaml();
    let daemon = Daemon::start(rig.redis.dir.path(), &yaml);
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    let m = rig.redis.failover().await;
    rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
    let (fh, fp) = forged_addr.split_once(':').unwrap();
    let fp: u16 = fp.parse().unwrap();
    let rp = rig.redis.redis_port;
    let master = &rig.redis.hosts[m];
    let other = (1..3).map(|i| (m + i) % 3).next().unwrap();

    // 1. Late: the switch that already happened, published again.
    let late = format!("mymaster {} {rp} {master} {rp}", rig.redis.hosts[0]);
    cli(fh, fp, &["PUBLISH", "+switch-master", &late]);
    // 2. Stale: a switch from an old master to a non-master: does not start where the VIP is.
    let stale = format!(
        "mymaster {} {rp} {} {rp}",
        rig.redis.hosts[0], rig.redis.hosts[other]
    );
    cli(fh, fp, &["PUBLISH", "+switch-master", &stale]);
    if tokio::time::timeout(
        Duration::from_secs(10),
        daemon.wait_log(
            "does not start from the VIP's master",
            Duration::from_secs(10),
        ),
    )
    .await
    .is_err()
    {
        panic!("{}", daemon.logs());
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let t = rig.vpc.vip_targets().await;
        assert!(
            t.iter()
                .all(|x| x.as_deref() == Some(rig.vpc.enis[m].as_str())),
            "VIP moved on a stale event: {t:?}"
        );
    }
    // 3. Forged from where the VIP is: applied by the fast path, then put back by
    //    the confirming majority read (reconcile interval is 1h: only confirmation can).
    let forged = format!("mymaster {master} {rp} {} {rp}", rig.redis.hosts[other]);
    cli(fh, fp, &["PUBLISH", "+switch-master", &forged]);
    daemon
        .wait_log(
            &format!("new={}:{rp}", rig.redis.hosts[other]),
            Duration::from_secs(10),
        )
        .await;
    rig.vpc
        .wait_all_point_at(&rig.vpc.enis[m], Duration::from_secs(15))
        .await;
    // Malformed and unknown payloads are skipped, the daemon keeps going.
    cli(fh, fp, &["PUBLISH", "+switch-master", "garbage"]);
    cli(fh, fp, &["PUBLISH", "+brand-new-event", "x y z"]);
    daemon
        .wait_log("skipped sentinel message", Duration::from_secs(10))
        .await;
    assert!(!daemon.logs().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_changed_deleted_by_hand_is_repaired_within_one_interval() {
    let rig = Rig::start(2).await;
    let daemon = rig.start_daemon("1s", "");
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.vpc.set_route(0, &rig.vpc.enis[2]).await;
    rig.vpc
        .client
        .delete_route()
        .route_table_id(&rig.vpc.tables[1])
        .destination_cidr_block(VIP)
        .send()
        .await
        .expect("DeleteRoute");
    rig.vpc
        .wait_all_point_at(&rig.vpc.enis[0], Duration::from_secs(10))
        .await;
    daemon.wait_log("drifted", Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_restarted_during_failover_still_ends_on_the_majoritys_master() {
    let mut rig = Rig::start(2).await;
    let _daemon = rig.start_daemon("2s", "");
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    rig.redis.kill_sentinel(2);
    let out = cli(
        &rig.redis.hosts[0],
        rig.redis.sentinel_port,
        &["SENTINEL", "FAILOVER", MASTER],
    );
    assert_eq!(out, "OK");
    rig.redis.restart_sentinel(2);
    let m = eventually(
        "majority to name a new master",
        Duration::from_secs(60),
        || async { rig.redis.master_index().filter(|m| *m != 0) },
    )
    .await;
    rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_broken_config_keeps_running_and_sigterm_exits_zero() {
    let rig = Rig::start(1).await;
    let mut daemon = rig.start_daemon("30s", "");
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    let good = std::fs::read_to_string(&daemon.config).unwrap();
    std::fs::write(
        &daemon.config,
        good.replace("interval: 30s", "interval: soon"),
    )
    .unwrap();
    daemon.signal("HUP");
    daemon
        .wait_log("keeping the running one", Duration::from_secs(10))
        .await;
    rig.redis.wait_ready_for_failover(2).await;
    let m = rig.redis.failover().await;
    rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
    // A valid reload is applied and the daemon keeps working.
    std::fs::write(
        &daemon.config,
        good.replace("interval: 30s", "interval: 20s"),
    )
    .unwrap();
    daemon.signal("HUP");
    daemon
        .wait_log("SIGHUP: config reloaded", Duration::from_secs(10))
        .await;
    daemon.signal("TERM");
    let child = &mut daemon.proc.as_mut().unwrap().child;
    let status = eventually(
        "daemon to exit after SIGTERM",
        Duration::from_secs(20),
        || {
            let s = child.try_wait().ok().flatten();
            async move { s }
        },
    )
    .await;
    assert_eq!(status.code(), Some(0), "{}", daemon.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_throttling_and_503_for_20s_is_retried_and_the_route_is_right_after() {
    let rig = Rig::start(2).await;
    let proxy = FaultProxy::start(&rig.moto.url).await;
    let yaml = ConfigYaml {
        endpoint: Some(proxy.url.clone()),
        ..rig.config_yaml("30s")
    }
    .yaml();
    let daemon = Daemon::start(rig.redis.dir.path(), &yaml);
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    proxy.set(THROTTLE);
    let m = rig.redis.failover().await;
    // The fault lasts 20 s (this sleep is the scenario, not synchronisation).
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(rig
        .vpc
        .vip_targets()
        .await
        .iter()
        .all(|t| t.as_deref() == Some(rig.vpc.enis[0].as_str())));
    proxy.set(PASS);
    let faults = proxy.faults.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        faults >= 5,
        "only {faults} faults served: did the daemon retry?"
    );
    rig.vpc
        .wait_all_point_at(&rig.vpc.enis[m], Duration::from_secs(45))
        .await;
    let logs = daemon.logs();
    assert!(
        logs.contains("RequestLimitExceeded") || logs.contains("Unavailable"),
        "{logs}"
    );
}
