//! Core liveness on the real rig: what `/readyz` says while EC2 refuses every
//! route write, and what a stopped sentinel costs a majority read.

mod common;

use std::time::{Duration, Instant};

use common::*;

const WITHIN: Duration = Duration::from_secs(60);

async fn readyz(http: u16) -> u16 {
    match http_get(format!("http://127.0.0.1:{http}/readyz")).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_every_route_write_is_refused_and_recovers_when_one_lands() {
    let rig = Rig::start(2).await;
    let proxy = FaultProxy::start(&rig.moto.url).await;
    let http = free_port();
    let yaml = ConfigYaml {
        endpoint: Some(proxy.url.clone()),
        extra: format!("http:\n  listen: 127.0.0.1:{http}\n"),
        ..rig.config_yaml("2s")
    }
    .yaml();
    let daemon = Daemon::start(rig.redis.dir.path(), &yaml);
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    eventually("/readyz to answer 200", WITHIN, || async {
        (readyz(http).await == 200).then_some(())
    })
    .await;
    rig.redis.wait_ready_for_failover(2).await;
    // The policy loses ec2:ReplaceRoute; then the master fails over.
    proxy.set(DENY_WRITES);
    let m = rig.redis.failover().await;
    let t0 = Instant::now();
    while readyz(http).await != 503 {
        assert!(
            t0.elapsed() < WITHIN,
            "/readyz never failed while the route is wrong:\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // It keeps failing however often the write is retried (every 2 s read).
    let refused = proxy.faults.load(std::sync::atomic::Ordering::SeqCst);
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let code = readyz(http).await;
        assert_eq!(
            code,
            503,
            "ready while every write is refused:\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        proxy.faults.load(std::sync::atomic::Ordering::SeqCst) > refused,
        "the write is retried"
    );
    // The permission comes back: the route moves, ready again.
    proxy.set(PASS);
    rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
    eventually("/readyz to answer 200 again", WITHIN, || async {
        (readyz(http).await == 200).then_some(())
    })
    .await;
}

/// `SILENCE_LIMIT`: a majority read may wait this long for a silent sentinel.
const SILENCE_BOUND: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_sentinel_costs_a_majority_read_at_most_the_silence_bound() {
    let mut rig = Rig::start(2).await;
    let http = free_port();
    let yaml = ConfigYaml {
        extra: format!("http:\n  listen: 127.0.0.1:{http}\n"),
        ..rig.config_yaml("1s")
    }
    .yaml();
    let daemon = Daemon::start(rig.redis.dir.path(), &yaml);
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    eventually("/readyz to answer 200", WITHIN, || async {
        (readyz(http).await == 200).then_some(())
    })
    .await;
    // Frozen, sockets open: only silence tells.
    rig.redis.pause_sentinel(2, true);
    let stopped = Instant::now();
    let reconciles = |s: &serde_json::Value| s["reconciles"].as_u64().unwrap_or(0);
    let before = reconciles(&status(http).await.expect("/status"));
    // Reads keep finishing, each within the bound, with the stopped sentinel
    // counted as not answering.
    let mut seen = 0;
    while seen < 3 {
        let s = status(http).await.expect("/status");
        if reconciles(&s) > before && s["sentinels_answering"] == 2 {
            let took = s["last_reconcile_ms"].as_f64().unwrap_or(f64::MAX);
            assert!(
                took <= (SILENCE_BOUND + Duration::from_secs(1)).as_secs_f64() * 1e3,
                "a read took {took} ms with one sentinel stopped:\n{}",
                daemon.logs()
            );
            seen += 1;
        }
        assert!(
            stopped.elapsed() < WITHIN,
            "reads did not finish with one sentinel stopped: {s}\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        readyz(http).await,
        200,
        "two of three answer: still a majority"
    );
    rig.redis.pause_sentinel(2, false);
    rig.redis.kill_sentinel(2);
}
