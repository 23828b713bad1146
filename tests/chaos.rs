//! Chaos on the real rig: faults injected on purpose; each scenario asserts
//! outcomes (route on the majority's master, one alert per incident), never
//! timings. `CHAOS_FAILOVERS=20 cargo test --test chaos` runs the long form.

mod common;

use std::time::Duration;

use common::*;

const WITHIN: Duration = Duration::from_secs(60);

fn failovers() -> usize {
    std::env::var("CHAOS_FAILOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

fn slack(url: &str, extra_sink: &str) -> String {
    format!(
        "alerts:\n  group_wait: 2s\n  webhooks:\n    - {{ name: slack, kind: slack, url: \"{url}/slack\" }}\n{extra_sink}"
    )
}

fn failed_over(hooks: &Receiver) -> Vec<String> {
    hooks
        .delivered("/slack")
        .iter()
        .filter_map(|h| h.body["text"].as_str().map(str::to_owned))
        .filter(|t| t.contains("failed over") || t.contains("planned switchover"))
        .collect()
}

/// Waits until every replica of `master` has its link to it up and is not
/// syncing: a master killed or paused while a replica still loads the last
/// failover's full sync leaves Sentinel no good replica to promote (it
/// retries, but the test would wait for the killed master forever).
async fn wait_replicas_linked(rig: &Rig, master: usize) {
    eventually(
        "every replica linked to the master and in sync",
        WITHIN,
        || async {
            (0..rig.redis.hosts.len())
                .filter(|i| *i != master && rig.redis.servers.get(*i).is_some_and(|s| s.is_some()))
                .all(|i| {
                    let info = cli(
                        &rig.redis.hosts[i],
                        rig.redis.redis_port,
                        &["INFO", "replication"],
                    );
                    info.contains("master_link_status:up")
                        && info.contains("master_sync_in_progress:0")
                })
                .then_some(())
        },
    )
    .await
}

/// Waits until sentinels agree on a master other than `old`; returns it.
async fn new_master(rig: &Rig, old: usize) -> usize {
    eventually(
        "sentinels to agree on a new master",
        Duration::from_secs(120),
        || async { rig.redis.master_index().filter(|m| *m != old) },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_failovers_in_a_row_keep_the_vip_on_the_majoritys_master_and_alert_once_each() {
    let mut rig = Rig::start(2).await;
    let hooks = Receiver::start().await;
    // The receiver misbehaves now and then: 5xx, 429 with Retry-After.
    {
        let mut s = hooks.script.lock().unwrap();
        s.script.extend([
            (503, None),
            (200, None),
            (429, Some("1".into())),
            (200, None),
            (500, None),
        ]);
    }
    let gen = format!(
        "    - {{ name: gen, kind: generic, url: \"{}/generic\" }}\n",
        hooks.url
    );
    let _daemon = rig.start_daemon("5s", &slack(&hooks.url, &gen));
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    let mut master = 0;
    let n = failovers();
    for i in 0..n {
        rig.redis.wait_ready_for_failover(2).await;
        let next = match i % 3 {
            0 => rig.redis.failover().await,
            1 => {
                wait_replicas_linked(&rig, master).await;
                rig.redis.kill_server(master);
                let m = new_master(&rig, master).await;
                rig.redis.restart_server(master);
                m
            }
            _ => {
                wait_replicas_linked(&rig, master).await;
                rig.redis.pause_server(master, true);
                let m = new_master(&rig, master).await;
                rig.redis.pause_server(master, false);
                m
            }
        };
        rig.vpc.wait_all_point_at(&rig.vpc.enis[next], WITHIN).await;
        eventually(&format!("alert for failover {}", i + 1), WITHIN, || async {
            (failed_over(&hooks).len() > i).then_some(())
        })
        .await;
        master = next;
    }
    // Nothing straggles in after the last one.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ids: Vec<String> = hooks.webhook_ids("/generic");
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "an incident state was sent twice: {ids:#?}"
    );
    let texts: Vec<String> = hooks
        .delivered("/slack")
        .iter()
        .map(|h| h.body["text"].as_str().unwrap_or("").to_owned())
        .collect();
    // Exactly one resolution per failover; each incident state told once (a
    // killed master's firing "is down" and its replica warning are separate
    // incidents, each at most once).
    assert_eq!(failed_over(&hooks).len(), n, "{texts:#?}");

    assert_eq!(rig.redis.master_index(), Some(master));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_killed_mid_failover_and_restarted_ends_on_the_majoritys_master() {
    let rig = Rig::start(2).await;
    let mut daemon = rig.start_daemon("30s", "");
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    // Sentinel answers NOGOODSLAVE until it has fresh INFO from a replica
    // (it may not yet right after the rig is up): ask until it accepts.
    eventually(
        "SENTINEL FAILOVER to be accepted",
        Duration::from_secs(60),
        || async {
            let out = cli(
                &rig.redis.hosts[0],
                rig.redis.sentinel_port,
                &["SENTINEL", "FAILOVER", MASTER],
            );
            (out == "OK").then_some(())
        },
    )
    .await;
    daemon.kill();
    let m = new_master(&rig, 0).await;
    daemon.spawn();
    rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sentinel_down_during_failover_still_moves_the_vip() {
    let mut rig = Rig::start(2).await;
    let _daemon = rig.start_daemon("30s", "");
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    rig.redis.kill_sentinel(2);
    rig.redis.kill_server(0);
    let m = new_master(&rig, 0).await;
    rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_unreachable_for_30s_during_failover_is_alerted_and_ends_right() {
    let rig = Rig::start(2).await;
    let proxy = FaultProxy::start(&rig.moto.url).await;
    let hooks = Receiver::start().await;
    let gen = format!(
        "    - {{ name: gen, kind: generic, url: \"{}/generic\" }}\n",
        hooks.url
    );
    let yaml = ConfigYaml {
        endpoint: Some(proxy.url.clone()),
        extra: slack(&hooks.url, &gen),
        ..rig.config_yaml("30s")
    }
    .yaml();
    let _daemon = Daemon::start(rig.redis.dir.path(), &yaml);
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    proxy.set(HANG);
    let m = rig.redis.failover().await;
    // The route-failure incident is told while EC2 is away.
    eventually(
        "a firing alert about the failed route update",
        WITHIN,
        || async {
            hooks.delivered("/generic").into_iter().find(|h| {
                h.body["status"] == "firing"
                    && h.body["commonLabels"]["alertname"] == "VipRouteUpdateFailed"
            })
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    proxy.set(PASS);
    rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
    eventually("the route-failure incident to resolve", WITHIN, || async {
        hooks.delivered("/generic").into_iter().find(|h| {
            h.body["status"] == "resolved"
                && h.body["commonLabels"]["alertname"] == "VipRouteUpdateFailed"
        })
    })
    .await;
    // The failover itself (a planned switchover) was told once.
    assert_eq!(failed_over(&hooks).len(), 1);
}
