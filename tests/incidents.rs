//! incidents: an incident is Sentinel's state, on the real rig (redis + 3
//! sentinels, moto, a real webhook receiver): it survives a watcher restart,
//! a flapping replica is damped, one failover is one incident, and a planned
//! switchover does not page.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

const WITHIN: Duration = Duration::from_secs(45);

fn sinks(url: &str, alerts_extra: &str) -> String {
    std::env::set_var("SV_INCIDENTS_PD_KEY", "pd-routing-key-incidents");
    format!(
        "alerts:\n  group_wait: 1s\n{alerts_extra}  webhooks:\n\
         \x20   - {{ name: gen, kind: generic, url: \"{url}/generic\" }}\n\
         \x20   - {{ name: slack, kind: slack, url: \"{url}/slack\" }}\n\
         \x20   - {{ name: pd, kind: pagerduty, url: \"{url}/pd\", routing_key_env: SV_INCIDENTS_PD_KEY }}\n"
    )
}

async fn get(url: &str) -> (u16, String) {
    match http_get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

fn group_keys(hooks: &Receiver) -> BTreeSet<String> {
    hooks
        .delivered("/generic")
        .iter()
        .filter_map(|h| h.body["groupKey"].as_str().map(str::to_owned))
        .collect()
}

fn summaries(hooks: &Receiver, path: &str) -> Vec<String> {
    hooks
        .delivered(path)
        .iter()
        .map(|h| match path {
            "/generic" => format!(
                "{} {}: {}",
                h.body["status"], h.body["groupKey"], h.body["commonAnnotations"]["summary"]
            ),
            "/pd" => format!(
                "{} {}: {}",
                h.body["event_action"], h.body["dedup_key"], h.body["payload"]["summary"]
            ),
            _ => h.body["text"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// Prints the daemon's log when the test fails.
struct DumpOnPanic<'a>(&'a Daemon);

impl Drop for DumpOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- daemon log ----\n{}", self.0.logs());
        }
    }
}

/// [`eventually`], printing what every sink got when it times out.
async fn waiting<T, F, Fut>(hooks: &Receiver, what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if std::time::Instant::now() > deadline {
            for path in ["/generic", "/slack", "/pd"] {
                eprintln!("{path}: {:#?}", summaries(hooks, path));
            }
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sets `replica-priority 0` on every replica and waits until every sentinel
/// has read it (from INFO, every 10 s): no failover can promote anyone.
async fn no_replica_may_be_promoted(redis: &Redis) {
    for i in 1..redis.servers.len() {
        cli(
            &redis.hosts[i],
            redis.redis_port,
            &["CONFIG", "SET", "replica-priority", "0"],
        );
    }
    eventually(
        "every sentinel to see replica-priority 0 on every replica",
        Duration::from_secs(40),
        || async {
            (0..redis.sentinels.len())
                .all(|s| {
                    let out = cli(
                        &redis.hosts[s],
                        redis.sentinel_port,
                        &["SENTINEL", "REPLICAS", MASTER],
                    );
                    let rs = sentinel_records(&out);
                    rs.len() == redis.servers.len() - 1
                        && rs.iter().all(|r| r.contains(&("slave-priority", "0")))
                })
                .then_some(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_restarted_mid_incident_reports_the_master_down_and_resolves_the_same_key() {
    let mut rig = Rig::start(1).await;
    let hooks = Receiver::start().await;
    rig.redis.wait_ready_for_failover(2).await;
    no_replica_may_be_promoted(&rig.redis).await;
    let yaml = |http: u16| {
        rig.config(
            "30s",
            &format!(
                "http:\n  listen: 127.0.0.1:{http}\n{}",
                sinks(&hooks.url, "")
            ),
        )
    };
    let http2 = free_port();
    let (yaml1, yaml2) = (yaml(free_port()), yaml(http2));
    let mut first = Daemon::start(rig.redis.dir.path(), &yaml1);
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.kill_server(0);
    let fired = eventually("the first watcher's firing message", WITHIN, || async {
        hooks
            .delivered("/generic")
            .into_iter()
            .find(|h| h.body["status"] == "firing")
    })
    .await;
    let key = fired.body["groupKey"].as_str().unwrap().to_owned();
    // Restarted (an upgrade, a crash) while Sentinel still says o_down.
    first.kill();
    let second = Daemon::start(rig.redis.dir.path(), &yaml2);
    let base = format!("http://127.0.0.1:{http2}");
    let st = eventually(
        "the new process to say the master is down",
        WITHIN,
        || async {
            let st = status(http2).await?;
            (st["masters_down"] == serde_json::json!(["mymaster"])).then_some(st)
        },
    )
    .await;
    eprintln!(
        "/status of the new process: masters_down = {}",
        st["masters_down"]
    );
    let (code, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("DOWN") && body.contains("mymaster"), "{body}");
    // The master comes back: the first process's incident is resolved.
    rig.redis.restart_server(0);
    let resolved = eventually("a resolved message", Duration::from_secs(60), || async {
        hooks
            .delivered("/generic")
            .into_iter()
            .find(|h| h.body["status"] == "resolved")
    })
    .await;
    // A quiet period in which a stray incident would show up.
    second
        .wait_log("state=\"resolved\"", Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let all = summaries(&hooks, "/generic");
    eprintln!("generic: {all:#?}");
    eprintln!("pagerduty: {:#?}", summaries(&hooks, "/pd"));
    assert_eq!(resolved.body["groupKey"], key.as_str(), "{all:#?}");
    assert_eq!(
        group_keys(&hooks),
        BTreeSet::from([key.clone()]),
        "no other incident: {all:#?}"
    );
    let resolves: Vec<_> = hooks
        .delivered("/generic")
        .into_iter()
        .filter(|h| h.body["status"] == "resolved")
        .collect();
    assert_eq!(resolves.len(), 1, "{all:#?}");
    let pd = hooks.delivered("/pd");
    assert!(pd.iter().all(|h| h.body["dedup_key"] == key.as_str()));
    assert_eq!(
        pd.iter()
            .filter(|h| h.body["event_action"] == "resolve")
            .count(),
        1
    );
    let (code, body) = get(&format!("{base}/readyz")).await;
    assert!(!body.contains("DOWN"), "{code} {body}");
}

/// Waits until sentinel 0 flags node `i` `s_down` (`down`) or not.
async fn wait_replica_flag(redis: &Redis, i: usize, down: bool) {
    eventually(
        if down {
            "the replica flagged s_down"
        } else {
            "the replica's s_down cleared"
        },
        Duration::from_secs(20),
        || async {
            let out = cli(
                &redis.hosts[0],
                redis.sentinel_port,
                &["SENTINEL", "REPLICAS", MASTER],
            );
            let rs = sentinel_records(&out);
            let r = rs
                .iter()
                .find(|r| r.contains(&("ip", redis.hosts[i].as_str())))?;
            let flags = r.iter().find(|(k, _)| *k == "flags")?.1;
            (flags.contains("s_down") == down).then_some(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_flapping_five_times_is_two_chat_messages_and_one_page() {
    let rig = Rig::start(1).await;
    let hooks = Receiver::start().await;
    rig.redis.wait_ready_for_failover(2).await;
    let _daemon = rig.start_daemon("30s", &sinks(&hooks.url, "  group_interval: 40s\n"));
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    let started = std::time::Instant::now();
    for _ in 0..5 {
        rig.redis.pause_server(2, true);
        wait_replica_flag(&rig.redis, 2, true).await;
        rig.redis.pause_server(2, false);
        wait_replica_flag(&rig.redis, 2, false).await;
    }
    eprintln!("five flaps in {:?}", started.elapsed());
    let summary = waiting(
        &hooks,
        "the flap summary",
        Duration::from_secs(90),
        || async {
            hooks
                .delivered("/slack")
                .into_iter()
                .find(|h| h.body["text"].as_str().unwrap_or("").contains("up now"))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let slack = summaries(&hooks, "/slack");
    let pd = summaries(&hooks, "/pd");
    eprintln!("slack: {slack:#?}\npagerduty: {pd:#?}");
    assert!(slack.len() <= 2, "{slack:#?}");
    assert!(
        summary.body["text"].as_str().unwrap().contains("went down"),
        "{slack:#?}"
    );
    let pd = hooks.delivered("/pd");
    let actions: Vec<&str> = pd
        .iter()
        .map(|h| h.body["event_action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(actions, ["trigger", "resolve"], "{pd:#?}");
    assert_eq!(pd[0].body["dedup_key"], pd[1].body["dedup_key"]);
}

/// Waits until every sentinel lists node `i` as a replica that is up and
/// reports itself a replica (Sentinel turned the restarted old master into one).
async fn back_as_replica(redis: &Redis, i: usize) {
    eventually(
        "the old master back as a replica on every sentinel",
        Duration::from_secs(60),
        || async {
            (0..redis.sentinels.len())
                .all(|s| {
                    let out = cli(
                        &redis.hosts[s],
                        redis.sentinel_port,
                        &["SENTINEL", "REPLICAS", MASTER],
                    );
                    sentinel_records(&out).iter().any(|r| {
                        r.contains(&("ip", redis.hosts[i].as_str()))
                            && r.contains(&("flags", "slave"))
                            && r.contains(&("role-reported", "slave"))
                    })
                })
                .then_some(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sigkill_failovers_with_the_old_master_back_are_three_incidents() {
    let mut rig = Rig::start(1).await;
    let hooks = Receiver::start().await;
    let daemon = rig.start_daemon("30s", &sinks(&hooks.url, ""));
    let _dump = DumpOnPanic(&daemon);
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    for round in 1..=3 {
        rig.redis.wait_ready_for_failover(2).await;
        let old = rig.redis.master_index().expect("a master");
        rig.redis.kill_server(old);
        let new = eventually("a new master", Duration::from_secs(60), || async {
            rig.redis.master_index().filter(|m| *m != old)
        })
        .await;
        rig.vpc.wait_all_point_at(&rig.vpc.enis[new], WITHIN).await;
        rig.redis.restart_server(old);
        back_as_replica(&rig.redis, old).await;
        waiting(&hooks, "this failover's message", WITHIN, || async {
            (hooks
                .delivered("/generic")
                .iter()
                .filter(|h| {
                    h.body["commonAnnotations"]["summary"]
                        .as_str()
                        .unwrap_or("")
                        .contains("failed over")
                })
                .count()
                >= round)
                .then_some(())
        })
        .await;
    }
    // A quiet period after the last old master is back.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let all = summaries(&hooks, "/generic");
    eprintln!("generic: {all:#?}");
    // group_wait 1 s: a failover slower than that is told firing, then
    // resolved ("failed over"); a quicker one is one resolved message. One
    // incident per failover: three (more only if the loaded box made Sentinel
    // fail over on its own: its config-epoch counts every failover).
    let failovers: usize = sentinel_field(
        &cli(
            &rig.redis.hosts[0],
            rig.redis.sentinel_port,
            &["SENTINEL", "MASTER", MASTER],
        ),
        "config-epoch",
    )
    .and_then(|e| e.parse().ok())
    .expect("config-epoch");
    eprintln!(
        "{failovers} failovers, {} incidents",
        group_keys(&hooks).len()
    );
    assert!(failovers >= 3);
    assert_eq!(group_keys(&hooks).len(), failovers, "{all:#?}");
    for key in group_keys(&hooks) {
        let msgs: Vec<_> = hooks
            .delivered("/generic")
            .into_iter()
            .filter(|h| h.body["groupKey"] == key.as_str())
            .collect();
        let last = msgs.last().unwrap();
        assert_eq!(last.body["status"], "resolved", "{all:#?}");
        assert!(
            last.body["commonAnnotations"]["summary"]
                .as_str()
                .unwrap()
                .contains("failed over"),
            "{all:#?}"
        );
        assert!(msgs.len() <= 2, "{all:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_is_a_planned_switchover_and_a_sigkill_failover_still_pages() {
    let mut rig = Rig::start(1).await;
    let hooks = Receiver::start().await;
    let _daemon = rig.start_daemon("30s", &sinks(&hooks.url, ""));
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    let m = rig.redis.failover().await;
    rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
    let chat = eventually("the chat message", WITHIN, || async {
        hooks.delivered("/slack").into_iter().next()
    })
    .await;
    let text = chat.body["text"].as_str().unwrap().to_owned();
    eprintln!("chat: {text}");
    assert!(
        text.contains("planned switchover of mymaster:") && text.contains("VIP moved in"),
        "{text}"
    );
    let generic = eventually("the generic message", WITHIN, || async {
        hooks.delivered("/generic").into_iter().next()
    })
    .await;
    assert_eq!(generic.body["commonLabels"]["severity"], "info");
    // A SIGKILL failover still pages; the planned one never did.
    rig.redis.wait_ready_for_failover(2).await;
    rig.redis.kill_server(m);
    let page = waiting(
        &hooks,
        "a PagerDuty trigger",
        Duration::from_secs(60),
        || async {
            hooks
                .delivered("/pd")
                .into_iter()
                .find(|h| h.body["payload"]["class"] == "RedisMasterFailover")
        },
    )
    .await;
    eprintln!("pagerduty: {:#?}", summaries(&hooks, "/pd"));
    assert_eq!(page.body["event_action"], "trigger");
    assert_eq!(page.body["payload"]["severity"], "critical");
    assert_eq!(page.body["routing_key"], "pd-routing-key-incidents");
    assert_ne!(page.body["dedup_key"], generic.body["groupKey"]);
    let slack = summaries(&hooks, "/slack");
    assert_eq!(
        slack
            .iter()
            .filter(|t| t.contains("planned switchover"))
            .count(),
        1,
        "{slack:#?}"
    );
}
