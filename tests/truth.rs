//! sentinel-truth on the rig: the sentinels' majority, not one message, decides
//! where the VIP points.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const WITHIN: Duration = Duration::from_secs(45);

/// A TCP proxy in front of one sentinel that can slip a pub/sub message into
/// what the sentinel sends: "anyone on the path can inject a `+switch-master`".
struct InjectingProxy {
    addr: String,
    inject: mpsc::UnboundedSender<Vec<u8>>,
}

impl InjectingProxy {
    async fn start(upstream: String) -> InjectingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        let (inject, mut injected) = mpsc::unbounded_channel::<Vec<u8>>();
        let (conns_tx, mut conns_rx) = mpsc::unbounded_channel::<mpsc::UnboundedSender<Vec<u8>>>();
        // Fan each injection out to every connection accepted so far.
        tokio::spawn(async move {
            let mut conns: Vec<mpsc::UnboundedSender<Vec<u8>>> = Vec::new();
            loop {
                tokio::select! {
                    c = conns_rx.recv() => match c { Some(c) => conns.push(c), None => break },
                    m = injected.recv() => match m {
                        Some(m) => conns.retain(|c| c.send(m.clone()).is_ok()),
                        None => break,
                    },
                }
            }
        });
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
                let _ = conns_tx.send(tx);
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        tokio::select! {
                            n = sr.read(&mut buf) => match n {
                                Ok(0) | Err(_) => break,
                                Ok(n) => if cw.write_all(&buf[..n]).await.is_err() { break },
                            },
                            m = rx.recv() => match m {
                                Some(m) => if cw.write_all(&m).await.is_err() { break },
                                None => break,
                            },
                        }
                    }
                });
            }
        });
        InjectingProxy { addr, inject }
    }

    /// Sends `payload` on `channel` as if the sentinel had published it (to
    /// every connection; only the `PSUBSCRIBE *` one reads it as an event).
    fn publish(&self, channel: &str, payload: &str) {
        let frame = format!(
            "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n${}\r\n{}\r\n${}\r\n{}\r\n",
            channel.len(),
            channel,
            payload.len(),
            payload
        );
        let _ = self.inject.send(frame.into_bytes());
    }
}

/// Waits until the daemon has judged the VIP route once (written or found right)
/// with every sentinel subscribed.
async fn settled(daemon: &Daemon) {
    eventually("the daemon to settle the VIP route", WITHIN, || async {
        let logs = daemon.logs();
        (logs.matches("subscribed to sentinel events").count() >= 3
            && (logs.contains("VIP route already right in every table")
                || logs.contains("VIP route updated and verified")))
        .then_some(())
    })
    .await;
}

/// The rig with sentinel 0 reached through an [`InjectingProxy`], and the
/// daemon settled on master 0 (its first read has learnt the replicas).
async fn daemon_behind_injector(rig: &Rig) -> (InjectingProxy, Daemon) {
    rig.redis.wait_ready_for_failover(2).await;
    let proxy = InjectingProxy::start(rig.redis.sentinel_addrs()[0].clone()).await;
    let mut config = rig.config_yaml("1h");
    config.sentinels[0] = proxy.addr.clone();
    let yaml = config.yaml();
    let daemon = Daemon::start(rig.redis.dir.path(), &yaml);
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    settled(&daemon).await;
    (proxy, daemon)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_switch_to_a_replica_is_moved_back_by_the_majority() {
    let rig = Rig::start(2).await;
    let (proxy, daemon) = daemon_behind_injector(&rig).await;
    let port = rig.redis.redis_port;
    let (a, b) = (&rig.redis.hosts[0], &rig.redis.hosts[1]);
    let started = Instant::now();
    proxy.publish("+switch-master", &format!("mymaster {a} {port} {b} {port}"));
    // The message names a real replica from the VIP's master: the fast path
    // applies it, the confirming read finds every sentinel on the old master
    // and moves the VIP back.
    daemon
        .wait_log("+switch-master: moving the VIP", WITHIN)
        .await;
    daemon
        .wait_log("the sentinel majority names another master", WITHIN)
        .await;
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    eprintln!(
        "forged switch reverted: VIP back on the majority's master {} ms after the message",
        started.elapsed().as_millis()
    );
    assert_eq!(rig.redis.master_index(), Some(0));
    rig.dump(&daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_to_a_node_that_is_not_a_replica_waits_for_the_majority() {
    let rig = Rig::start(2).await;
    let (proxy, daemon) = daemon_behind_injector(&rig).await;
    let port = rig.redis.redis_port;
    let a = &rig.redis.hosts[0];
    proxy.publish(
        "+switch-master",
        &format!("mymaster {a} {port} 127.0.0.99 {port}"),
    );
    daemon.wait_log("did not report as a replica", WITHIN).await;
    // Nothing was written: the majority read that followed kept the VIP on A.
    let logs = daemon.logs();
    assert!(
        !logs.contains("+switch-master: moving the VIP"),
        "the VIP must not move on an unknown node"
    );
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.dump(&daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_after_sentinels_are_remonitored_at_epoch_zero_is_repaired() {
    let rig = Rig::start(2).await;
    let http = free_port();
    let daemon = rig.start_daemon("1s", &format!("http:\n  listen: 127.0.0.1:{http}\n"));
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    // A failover raises the config-epoch to 1 or more.
    let promoted = rig.redis.failover().await;
    rig.vpc
        .wait_all_point_at(&rig.vpc.enis[promoted], WITHIN)
        .await;
    eventually(
        "the daemon to apply the failover's epoch",
        WITHIN,
        || async {
            let s = status(http).await?;
            (s["masters"][0]["config_epoch"].as_u64() >= Some(1)).then_some(())
        },
    )
    .await;
    // Maintenance: every sentinel forgets the master and monitors it again → epoch 0.
    let port = rig.redis.redis_port.to_string();
    let host = rig.redis.hosts[promoted].clone();
    // Every sentinel forgets it first: one still holding epoch ≥ 1 would hand
    // it back to the others through its hello messages.
    for i in 0..3 {
        let h = &rig.redis.hosts[i];
        cli(h, rig.redis.sentinel_port, &["SENTINEL", "REMOVE", MASTER]);
    }
    for i in 0..3 {
        let h = &rig.redis.hosts[i];
        let out = cli(
            h,
            rig.redis.sentinel_port,
            &["SENTINEL", "MONITOR", MASTER, &host, &port, "2"],
        );
        assert_eq!(out, "OK", "SENTINEL MONITOR on sentinel {i}");
        for (k, v) in [
            ("down-after-milliseconds", "1000"),
            ("failover-timeout", "3000"),
        ] {
            cli(
                h,
                rig.redis.sentinel_port,
                &["SENTINEL", "SET", MASTER, k, v],
            );
        }
    }
    // Someone moves the route by hand: it must be repaired, at epoch 0.
    rig.vpc
        .set_route(0, &rig.vpc.enis[(promoted + 1) % 3])
        .await;
    daemon.wait_log("config-epoch went back from", WITHIN).await;
    rig.vpc
        .wait_all_point_at(&rig.vpc.enis[promoted], WITHIN)
        .await;
    rig.dump(&daemon);
}
