//! alerts: one message per incident per sink, on the real rig with a real HTTP
//! receiver; retries, Retry-After, a hanging receiver, several watchers.

mod common;

use std::time::Duration;

use common::*;

const WITHIN: Duration = Duration::from_secs(45);

fn sinks(url: &str) -> String {
    format!(
        "alerts:\n  group_wait: 1s\n  webhooks:\n\
         \x20   - {{ name: gen, kind: generic, url: \"{url}/generic\", secret_env: SV_TEST_HOOK_SECRET }}\n\
         \x20   - {{ name: slack, kind: slack, url: \"{url}/slack\" }}\n\
         \x20   - {{ name: discord, kind: discord, url: \"{url}/discord\" }}\n\
         \x20   - {{ name: teams, kind: teams, url: \"{url}/teams\" }}\n\
         \x20   - {{ name: pd, kind: pagerduty, url: \"{url}/pd\", routing_key_env: SV_TEST_PD_KEY }}\n"
    )
}

fn start_with_secrets(rig: &Rig, yaml: &str) -> Daemon {
    std::env::set_var(
        "SV_TEST_HOOK_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    );
    std::env::set_var("SV_TEST_PD_KEY", "pd-routing-key-SECRET-123");
    Daemon::start(rig.redis.dir.path(), yaml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failover_gives_exactly_one_message_per_chat_sink_with_the_route_outcome() {
    let rig = Rig::start(2).await;
    let hooks = Receiver::start().await;
    let daemon = start_with_secrets(&rig, &rig.config("30s", &sinks(&hooks.url)));
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    for expected in 1..=2 {
        rig.redis.wait_ready_for_failover(2).await;
        let m = rig.redis.failover().await;
        rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
        eventually("one slack message per failover", WITHIN, || async {
            (hooks.delivered("/slack").len() >= expected).then_some(())
        })
        .await;
    }
    // Let any straggling duplicate arrive before counting (group_wait is 1 s).
    daemon.wait_log("incident", Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for path in ["/slack", "/discord", "/teams", "/generic"] {
        assert_eq!(
            hooks.delivered(path).len(),
            2,
            "{path}: {:#?}",
            hooks.all(path)
        );
    }
    let slack = hooks.delivered("/slack");
    let text = slack[0].body["text"].as_str().unwrap();
    // `SENTINEL FAILOVER` with the master up: a planned switchover.
    assert!(
        text.contains("planned switchover of mymaster:") && text.contains("VIP moved in"),
        "{text}"
    );
    assert!(slack[0].body["blocks"].is_array());
    assert_eq!(hooks.delivered("/discord")[0].query, "wait=true");
    assert!(hooks.delivered("/discord")[0].body["embeds"].is_array());
    assert_eq!(
        hooks.delivered("/teams")[0].body["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let g = &hooks.delivered("/generic")[0];
    assert_eq!(g.body["version"], "4");
    assert_eq!(g.body["status"], "resolved");
    let key = g.body["groupKey"].as_str().unwrap();
    assert_eq!(key.len(), 64);
    let header = |h: &Hook, k: &str| {
        h.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header(g, "webhook-id"), Some(format!("{key}-resolved")));
    assert!(header(g, "webhook-signature").unwrap().starts_with("v1,"));
    assert!(header(g, "webhook-timestamp").is_some());
    assert_eq!(g.body["alerts"][0]["labels"]["master"], "mymaster");
    // The deployment (derived from the sentinel list: no `cluster` set) and
    // the sending host, in every message.
    let cluster = g.body["alerts"][0]["labels"]["cluster"].as_str().unwrap();
    assert!(cluster.starts_with("sentinels-"), "{cluster}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(g.body["alerts"][0]["annotations"]["sent_by"], host.trim());
    assert!(
        text.starts_with(&format!(
            ":white_check_mark: [{cluster}] planned switchover of mymaster"
        )),
        "{text}"
    );
    assert_eq!(g.body["alerts"][0]["labels"]["severity"], "info");
    // PagerDuty: a planned switchover pages nobody (a SIGKILL failover's
    // trigger and resolve: tests/incidents.rs).
    let pd = hooks.delivered("/pd");
    assert!(pd.is_empty(), "{pd:#?}");
    // Secrets never reach the logs.
    let logs = daemon.logs();
    assert!(
        !logs.contains("pd-routing-key-SECRET-123") && !logs.contains("whsec_"),
        "secret in logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_down_with_no_replica_fires_then_resolves_when_it_returns() {
    let moto = Moto::start();
    let vpc = Vpc::create(&moto.url, 1, 3).await;
    let mut redis = Redis::start(1, 3);
    let hooks = Receiver::start().await;
    let yaml = config_yaml(&redis, &moto, &vpc, "30s", &sinks(&hooks.url));
    let _daemon = start_with_secrets_dir(redis.dir.path(), &yaml);
    vpc.wait_all_point_at(&vpc.enis[0], WITHIN).await;
    redis.wait_ready_for_failover(0).await;
    redis.kill_server(0);
    let firing = eventually("a firing message", WITHIN, || async {
        hooks
            .delivered("/generic")
            .into_iter()
            .find(|h| h.body["status"] == "firing")
    })
    .await;
    assert!(firing.body["commonAnnotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("is down"));
    redis.restart_server(0);
    let resolved = eventually("a resolved message", Duration::from_secs(60), || async {
        hooks
            .delivered("/generic")
            .into_iter()
            .find(|h| h.body["status"] == "resolved")
    })
    .await;
    assert_eq!(resolved.body["groupKey"], firing.body["groupKey"]);
    // The VIP never moved: there was nowhere to move it.
    assert!(vpc
        .vip_targets()
        .await
        .iter()
        .all(|t| t.as_deref() == Some(vpc.enis[0].as_str())));
}

fn start_with_secrets_dir(dir: &std::path::Path, yaml: &str) -> Daemon {
    std::env::set_var(
        "SV_TEST_HOOK_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    );
    std::env::set_var("SV_TEST_PD_KEY", "pd-routing-key-SECRET-123");
    Daemon::start(dir, yaml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_failing_twice_then_ok_gets_it_once_and_retry_after_is_honoured() {
    let rig = Rig::start(1).await;
    let hooks = Receiver::start().await;
    {
        let mut s = hooks.script.lock().unwrap();
        s.script.push_back((500, None));
        s.script.push_back((500, None));
        s.script.push_back((429, Some("2".into())));
    }
    let yaml = rig.config(
        "30s",
        &format!("alerts:\n  group_wait: 1s\n  webhooks:\n    - {{ name: gen, kind: generic, url: \"{}/generic\" }}\n", hooks.url),
    );
    let _daemon = Daemon::start(rig.redis.dir.path(), &yaml);
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    rig.redis.failover().await;
    eventually("delivery after 500, 500, 429", WITHIN, || async {
        (!hooks.delivered("/generic").is_empty()).then_some(())
    })
    .await;
    let all = hooks.all("/generic");
    assert_eq!(
        all.iter().map(|h| h.status).collect::<Vec<_>>(),
        vec![500, 500, 429, 200]
    );
    let gap = all[3].at.duration_since(all[2].at);
    assert!(
        gap >= Duration::from_millis(1900),
        "Retry-After: 2 not honoured ({gap:?})"
    );
    let id = |h: &Hook| {
        h.headers
            .iter()
            .find(|(k, _)| k == "webhook-id")
            .map(|(_, v)| v.clone())
    };
    assert!(id(&all[0]).is_some());
    assert_eq!(id(&all[0]), id(&all[3]), "the same message is retried");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hooks.delivered("/generic").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_receiver_does_not_delay_the_route() {
    let rig = Rig::start(1).await;
    let hooks = Receiver::start().await;
    hooks.script.lock().unwrap().hang = true;
    let daemon = start_with_secrets(&rig, &rig.config("30s", &sinks(&hooks.url)));
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    for _ in 0..2 {
        rig.redis.wait_ready_for_failover(2).await;
        let m = rig.redis.failover().await;
        rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
    }
    daemon
        .wait_log("cause=\"+switch-master\"", Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_watchers_send_one_chat_message_per_incident_state() {
    let rig = Rig::start(1).await;
    let hooks = Receiver::start().await;
    let mut daemons = Vec::new();
    for s in rig.redis.sentinel_addrs() {
        let extra = format!(
            "alerts:\n  group_wait: 2s\n  local_sentinel: {s}\n  webhooks:\n\
             \x20   - {{ name: slack, kind: slack, url: \"{u}/slack\" }}\n\
             \x20   - {{ name: gen, kind: generic, url: \"{u}/generic\" }}\n",
            u = hooks.url
        );
        daemons.push(rig.start_daemon("30s", &extra));
    }
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    let m = rig.redis.failover().await;
    rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
    eventually(
        "three generic messages (one per watcher)",
        WITHIN,
        || async { (hooks.delivered("/generic").len() >= 3).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        hooks.delivered("/slack").len(),
        1,
        "{:#?}",
        hooks.all("/slack")
    );
    let ids: std::collections::HashSet<String> =
        hooks.webhook_ids("/generic").into_iter().collect();
    assert_eq!(
        ids.len(),
        1,
        "every watcher computes the same incident key: {ids:?}"
    );
}

/// Three watchers, one beside each sentinel, chat + generic sinks.
fn start_three_watchers(rig: &Rig, hooks: &Receiver, group_wait: &str) -> Vec<Daemon> {
    rig.redis
        .sentinel_addrs()
        .iter()
        .map(|s| {
            let extra = format!(
                "alerts:\n  group_wait: {group_wait}\n  local_sentinel: {s}\n  webhooks:\n\
                 \x20   - {{ name: slack, kind: slack, url: \"{u}/slack\" }}\n\
                 \x20   - {{ name: gen, kind: generic, url: \"{u}/generic\" }}\n",
                u = hooks.url
            );
            rig.start_daemon("30s", &extra)
        })
        .collect()
}

/// How many sentinels list a connection named `name` (CLIENT LIST).
fn connected_on(rig: &Rig, name: &str) -> usize {
    (0..rig.redis.sentinels.len())
        .filter(|i| {
            cli(
                &rig.redis.hosts[*i],
                rig.redis.sentinel_port,
                &["CLIENT", "LIST"],
            )
            .contains(&format!("name={name} "))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leaders_watcher_is_stood_in_for_by_the_next_live_one() {
    let rig = Rig::start(1).await;
    let hooks = Receiver::start().await;
    let group_wait = Duration::from_secs(2);
    let mut daemons = start_three_watchers(&rig, &hooks, "2s");
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    // `SENTINEL FAILOVER` goes to sentinel 0, which leads it: its watcher is
    // the designated one. Kill that sentinel-vip process only (SIGKILL).
    let leaders = format!("sentinel-vip:{}", rig.redis.sentinel_addrs()[0]);
    eventually(
        "every watcher connected to every sentinel",
        WITHIN,
        || async { (connected_on(&rig, &leaders) == 3).then_some(()) },
    )
    .await;
    daemons[0].kill();
    eventually(
        "the killed watcher gone from CLIENT LIST",
        WITHIN,
        || async { (connected_on(&rig, &leaders) == 0).then_some(()) },
    )
    .await;
    let gone = format!("gone=[\"{}\"]", rig.redis.sentinel_addrs()[0]);
    for d in &daemons[1..] {
        d.wait_log(&gone, WITHIN).await;
    }
    let asked = std::time::Instant::now();
    let m = rig.redis.failover().await;
    rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
    let first = eventually("a stand-in watcher's slack message", WITHIN, || async {
        hooks.delivered("/slack").into_iter().next()
    })
    .await;
    let took = first.at.duration_since(asked);
    eprintln!("stand-in watcher posted {took:?} after SENTINEL FAILOVER was asked");
    assert!(
        took <= group_wait + Duration::from_secs(5) + Duration::from_secs(3),
        "took {took:?}"
    );
    let text = first.body["text"].as_str().unwrap_or_default().to_owned();
    assert!(text.contains("planned switchover of mymaster:"), "{text}");
    // Exactly one: the next in order (sentinel 1's watcher), not both survivors.
    eventually("both survivors' generic messages", WITHIN, || async {
        (hooks.delivered("/generic").len() >= 2).then_some(())
    })
    .await;
    daemons[1]
        .wait_log("designated=true", Duration::from_secs(5))
        .await;
    assert_eq!(
        hooks.delivered("/slack").len(),
        1,
        "{:#?}",
        hooks.all("/slack")
    );
    assert!(
        !daemons[2].logs().contains("designated=true"),
        "the third watcher spoke too"
    );
}
