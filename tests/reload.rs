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

/// `/metrics` as text.
async fn metrics(http: u16) -> Option<String> {
    http_get(format!("http://127.0.0.1:{http}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_shows_in_metrics_and_a_reload_removes_the_series_of_what_it_removed() {
    let rig = Rig::start(1).await;
    let http = free_port();
    // A sentinel nobody runs, and a master no sentinel monitors: their series
    // read 0 (disconnected, route not OK) until a reload removes them.
    let ghost_sentinel = format!("127.0.0.9:{}", free_port());
    let config = |ghosts: bool| {
        let mut y = ConfigYaml {
            extra: format!("http:\n  listen: 127.0.0.1:{http}\n"),
            ..rig.config_yaml("1s")
        };
        if ghosts {
            y.sentinels.push(ghost_sentinel.clone());
        }
        let text = y.yaml();
        if ghosts {
            text.replacen(
                "masters:\n",
                &format!(
                    "masters:\n  ghost:\n    vip: 172.16.9.9/32\n    route_tables: [{}]\n",
                    rig.vpc.tables[0]
                ),
                1,
            )
        } else {
            text
        }
    };
    let daemon = Daemon::start(rig.redis.dir.path(), &config(true));
    let ghost_connected =
        format!("sentinel_vip_sentinel_connected{{sentinel=\"{ghost_sentinel}\"}}");
    const GHOST_ROUTE: &str = "sentinel_vip_route_ok{master=\"ghost\"}";
    const OK: &str = "sentinel_vip_config_last_reload_successful";
    const AT: &str = "sentinel_vip_config_last_reload_success_timestamp_seconds";
    let started = eventually(
        "the ghosts' series at 0 and the start's load",
        WITHIN,
        || async {
            let m = metrics(http).await?;
            (sample(&m, &ghost_connected)? == 0.0
                && sample(&m, GHOST_ROUTE)? == 0.0
                && sample(&m, OK)? == 1.0)
                .then_some(sample(&m, AT)?)
        },
    )
    .await;
    assert!(started > 1.0e9, "the start sets the timestamp: {started}");

    // A config that does not parse: refused, the metric says so, the time of
    // the last good load stays.
    std::fs::write(&daemon.config, "sentinels: [\n").unwrap();
    daemon.signal("HUP");
    let m = eventually("the refused reload in /metrics", WITHIN, || async {
        let m = metrics(http).await?;
        (sample(&m, OK)? == 0.0).then_some(m)
    })
    .await;
    assert_eq!(sample(&m, AT), Some(started), "{m}");
    assert!(daemon.logs().contains("SIGHUP: new config is invalid"));

    // The good config again, without the ghosts: accepted, later, and their
    // series are gone.
    std::fs::write(&daemon.config, config(false)).unwrap();
    daemon.signal("HUP");
    let m = eventually("the accepted reload in /metrics", WITHIN, || async {
        let m = metrics(http).await?;
        (sample(&m, OK)? == 1.0).then_some(m)
    })
    .await;
    assert!(sample(&m, AT).unwrap() > started, "{m}");
    // They stay gone across the next reconciles (1 s), whatever the closed
    // links and the controller still do.
    let ok = "sentinel_vip_reconciles_total{result=\"ok\"}";
    let now = sample(&m, ok).unwrap_or(0.0);
    let m = eventually("three more reconciles", WITHIN, || async {
        let m = metrics(http).await?;
        (sample(&m, ok)? >= now + 3.0).then_some(m)
    })
    .await;
    assert!(
        !m.contains(&ghost_sentinel),
        "a removed sentinel's series stayed:\n{m}"
    );
    assert!(
        !m.contains("master=\"ghost\""),
        "a removed master's series stayed:\n{m}"
    );
    assert!(m.contains(&format!("master=\"{MASTER}\"")), "{m}");
    rig.dump(&daemon);
}
