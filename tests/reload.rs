//! SIGHUP reloads in place: what did not change keeps running (the fold and its
//! open incidents included), what changed is swapped, and nothing leaks.

mod common;

use std::time::Duration;

use common::*;

const WITHIN: Duration = Duration::from_secs(45);

/// The daemon's config with `interval`, the sentinels in `order`, an HTTP
/// listener and one generic webhook.
fn yaml(rig: &Rig, http: u16, hooks: &str, interval: &str, reversed: bool) -> String {
    let mut y = ConfigYaml {
        extra: format!(
            "http:\n  listen: 127.0.0.1:{http}\nalerts:\n  group_wait: 1s\n  webhooks:\n    - {{ name: gen, kind: generic, url: \"{hooks}/generic\" }}\n"
        ),
        ..rig.config_yaml(interval)
    };
    if reversed {
        y.sentinels.reverse();
    }
    y.yaml()
}

async fn reload(daemon: &Daemon, text: &str, n: usize) {
    std::fs::write(&daemon.config, text).expect("write config");
    daemon.signal("HUP");
    eventually("the reload to be taken", WITHIN, || async {
        (daemon
            .logs()
            .matches("SIGHUP: config reloaded in place")
            .count()
            >= n)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_keep_the_task_count_flat_and_the_vip_right() {
    let rig = Rig::start(2).await;
    let hooks = Receiver::start().await;
    let http = free_port();
    let daemon = Daemon::start(
        rig.redis.dir.path(),
        &yaml(&rig, http, &hooks.url, "30s", false),
    );
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    let tasks = || async { status(http).await?["tasks_alive"].as_u64() };
    let before = eventually("/status", WITHIN, tasks).await;
    // Even reloads change the interval only (links kept); odd ones reverse the
    // sentinel list (links made anew, the old ones closed).
    for n in 1..=50 {
        let interval = if n % 2 == 0 { "30s" } else { "31s" };
        reload(
            &daemon,
            &yaml(&rig, http, &hooks.url, interval, n % 2 == 1),
            n,
        )
        .await;
    }
    eventually("every sentinel subscribed again", WITHIN, || async {
        (status(http).await?["sentinels_connected"].as_u64()? == 3).then_some(())
    })
    .await;
    let after = tasks().await.expect("/status answers");
    eprintln!("tokio tasks alive: {before} before, {after} after 50 reloads");
    assert!(
        after <= before + 5,
        "tasks leak on reload: {before} → {after}"
    );
    // Still the same daemon doing its job: a failover moves the VIP.
    let promoted = rig.redis.failover().await;
    rig.vpc
        .wait_all_point_at(&rig.vpc.enis[promoted], WITHIN)
        .await;
    rig.dump(&daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firing_incident_survives_a_reload_and_resolves_after_it() {
    let mut rig = Rig::start(1).await;
    let hooks = Receiver::start().await;
    let http = free_port();
    let daemon = Daemon::start(
        rig.redis.dir.path(),
        &yaml(&rig, http, &hooks.url, "1s", false),
    );
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    // Two of three sentinels gone: no majority, an incident fires.
    rig.redis.kill_sentinel(1);
    rig.redis.kill_sentinel(2);
    let firing = eventually("a firing no-majority message", WITHIN, || async {
        hooks
            .delivered("/generic")
            .into_iter()
            .find(|h| h.body["status"] == "firing")
    })
    .await;
    reload(&daemon, &yaml(&rig, http, &hooks.url, "2s", false), 1).await;
    reload(&daemon, &yaml(&rig, http, &hooks.url, "1s", false), 2).await;
    rig.redis.restart_sentinel(1);
    rig.redis.restart_sentinel(2);
    let resolved = eventually(
        "its resolution after the reloads",
        Duration::from_secs(60),
        || async {
            hooks.delivered("/generic").into_iter().find(|h| {
                h.body["status"] == "resolved" && h.body["groupKey"] == firing.body["groupKey"]
            })
        },
    )
    .await;
    assert_eq!(resolved.body["groupKey"], firing.body["groupKey"]);
    rig.dump(&daemon);
}
