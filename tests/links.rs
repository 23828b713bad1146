//! The sentinel links tell the truth (issue #9, sections 1, 4 and 6), on real
//! redis-server/redis-sentinel processes and moto:
//! - the address comes from `GET-MASTER-ADDR-BY-NAME`, which names the promoted
//!   replica while the leader's `SENTINEL MASTER` still shows the old master;
//! - a subscriber that goes silent is found by PING, dropped and reconnected;
//! - a PSUBSCRIBE refused by an ACL is an error naming the permission, retried;
//! - `check` refuses a data node listed as a sentinel and a short sentinel list.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use sentinel_vip::watch;

const WITHIN: Duration = Duration::from_secs(45);

/// Prints the daemon's log when the test fails.
struct LogOnPanic<'a>(&'a Daemon);

impl Drop for LogOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- daemon log ----\n{}", self.0.logs());
        }
    }
}

/// `SENTINEL MASTER mymaster` on sentinel `i` as (ip:port, flags).
fn sentinel_master(redis: &Redis, i: usize) -> (String, String) {
    let out = cli(
        &redis.hosts[i],
        redis.sentinel_port,
        &["SENTINEL", "MASTER", MASTER],
    );
    let field = |k: &str| sentinel_field(&out, k).unwrap_or_default().to_owned();
    (format!("{}:{}", field("ip"), field("port")), field("flags"))
}

fn run_cli(verb: &[&str], cfg: &std::path::Path) -> (bool, String) {
    let out = Command::new(bin())
        .args(verb)
        .arg("--config")
        .arg(cfg)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .expect("run sentinel-vip");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_in_reconfiguration_is_read_at_the_promoted_replica_not_the_old_master() {
    let rig = Rig::start(1).await;
    let redis = &rig.redis;
    redis.wait_ready_for_failover(2).await;
    // Node 2 must not be the one promoted (priority 0 = never), so that stopping
    // it holds the leader in the reconfiguration phase instead of failing the
    // promotion. Sentinel reads the priority from INFO every 10 s.
    cli(
        &redis.hosts[2],
        redis.redis_port,
        &["CONFIG", "SET", "replica-priority", "0"],
    );
    eventually(
        "the leader to see node 2's replica-priority 0",
        Duration::from_secs(30),
        || async {
            let out = cli(
                &redis.hosts[0],
                redis.sentinel_port,
                &["SENTINEL", "REPLICAS", MASTER],
            );
            // Node 2's record.
            let replicas = sentinel_records(&out);
            let node = replicas
                .iter()
                .find(|r| r.contains(&("ip", redis.hosts[2].as_str())))?;
            node.contains(&("slave-priority", "0")).then_some(())
        },
    )
    .await;
    let old = format!("{}:{}", redis.hosts[0], redis.redis_port);
    let promoted = format!("{}:{}", redis.hosts[1], redis.redis_port);
    let cfg = redis.dir.path().join("status.yaml");
    std::fs::write(&cfg, rig.config("30s", "")).unwrap();
    let links = watch::command_links(
        &redis
            .sentinel_addrs()
            .iter()
            .map(|s| s.parse().unwrap())
            .collect::<Vec<_>>(),
        None,
        "links-test",
    );
    assert!(watch::wait_connected(&links, Duration::from_secs(5))
        .await
        .iter()
        .all(|up| *up));

    // Hold the leader (sentinel 0, which takes SENTINEL FAILOVER) in reconf-slaves.
    redis.pause_server(2, true);
    let out = cli(
        &redis.hosts[0],
        redis.sentinel_port,
        &["SENTINEL", "FAILOVER", MASTER],
    );
    assert_eq!(out, "OK", "SENTINEL FAILOVER refused: {out}");

    // While the leader's SENTINEL MASTER still shows the old address, its report
    // (and the status verb's view) name the promoted replica.
    let started = Instant::now();
    let mut side_by_side = 0;
    let mut status_seen = false;
    let mut window = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(30) {
        let (before, flags) = sentinel_master(redis, 0);
        if before != old {
            break;
        }
        if !flags.contains("failover_in_progress") {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let report = links[0].report().await.expect("leader answers");
        let view = &report.masters[MASTER];
        let (after, _) = sentinel_master(redis, 0);
        if view.addr.to_string() != promoted {
            // Before +promoted-slave: GET-MASTER-ADDR still names the old master too.
            assert_eq!(view.addr.to_string(), old);
            continue;
        }
        if after != old {
            break;
        }
        side_by_side += 1;
        window = started.elapsed();
        assert_eq!(
            report.stale_addrs.get(MASTER).map(|a| a.to_string()),
            Some(old.clone()),
            "the report keeps SENTINEL MASTER's old address beside it"
        );
        eprintln!(
            "{:?}: SENTINEL MASTER on the leader says {old} ({flags}); report says {} at epoch {}",
            started.elapsed(),
            view.addr,
            view.config_epoch
        );
        if !status_seen {
            let (_, text) = run_cli(&["status", "--json"], &cfg);
            let (still, _) = sentinel_master(redis, 0);
            if still == old {
                let v: serde_json::Value =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
                let m = &v[0];
                let says = m["sentinels"][0]["says"].as_str().unwrap_or_default();
                assert!(says.starts_with(&promoted), "{text}");
                assert!(
                    says.contains(&format!("SENTINEL MASTER still shows {old}")),
                    "{text}"
                );
                // The followers may not have the new epoch yet: then there is
                // no majority (the lagging ones never outvote the leader's newer
                // epoch). Either way it never names the old master.
                assert_ne!(m["majority"].as_str(), Some(old.as_str()), "{text}");
                status_seen = true;
            }
        }
    }
    redis.pause_server(2, false);
    eprintln!(
        "reconfiguration window: {side_by_side} side-by-side reads over {window:?}; status verb checked: {status_seen}"
    );
    assert!(
        side_by_side > 0,
        "never saw the leader's SENTINEL MASTER lag behind GET-MASTER-ADDR-BY-NAME"
    );
    assert!(status_seen, "the status verb never ran inside the window");
    for l in &links {
        l.close().await;
    }
}

fn switch_lines_from(log: &str, sentinel: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("+switch-master") && l.contains(&format!("sentinel={sentinel}")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_subscriber_is_dropped_and_reconnected_and_still_sees_the_next_failover() {
    let rig = Rig::start(1).await;
    let proxy = SilentProxy::start(rig.redis.sentinel_addrs()[0].clone()).await;
    let mut config = rig.config_yaml("1h");
    config.sentinels[0] = proxy.addr.clone();
    let yaml = config.yaml();
    let daemon = Daemon::start(rig.redis.dir.path(), &yaml);
    let _log = LogOnPanic(&daemon);
    let subscribed = format!("subscribed to sentinel events sentinel={}", proxy.addr);
    daemon.wait_log(&subscribed, WITHIN).await;
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;

    let mark = daemon.logs().len();
    let t0 = Instant::now();
    proxy.silence_open_connections();
    let silent = "sentinel subscriber silent";
    eventually(
        "the daemon to notice the silent subscriber",
        Duration::from_secs(10),
        || async { log_since(&daemon, mark).contains(silent).then_some(()) },
    )
    .await;
    let detected = t0.elapsed();
    eventually(
        "the daemon to resubscribe through a new connection",
        Duration::from_secs(10),
        || async { log_since(&daemon, mark).contains(&subscribed).then_some(()) },
    )
    .await;
    let reconnected = t0.elapsed();
    eprintln!(
        "silent subscriber: detected after {detected:?}, resubscribed after {reconnected:?} ({} proxy connections)",
        proxy.connections_accepted()
    );
    assert!(
        reconnected < Duration::from_secs(8),
        "took {reconnected:?} to replace a silent subscriber"
    );

    // The reconnected link carries the next failover's events.
    let mark = daemon.logs().len();
    let m = rig.redis.failover().await;
    rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
    eventually(
        "a +switch-master through the reconnected link",
        Duration::from_secs(10),
        || async { (switch_lines_from(&log_since(&daemon, mark), &proxy.addr) > 0).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psubscribe_refused_by_acl_is_logged_naming_the_permission_and_retried() {
    const PW: &str = "links-acl-pw-7f3a";
    let rig = Rig::start(1).await;
    let redis = &rig.redis;
    // The watcher's user: everything but channel access on sentinel 0.
    for i in 0..3 {
        let channels = if i == 0 {
            "resetchannels"
        } else {
            "allchannels"
        };
        let out = cli(
            &redis.hosts[i],
            redis.sentinel_port,
            &[
                "ACL",
                "SETUSER",
                "vipwatch",
                "on",
                &format!(">{PW}"),
                "+@all",
                channels,
            ],
        );
        assert_eq!(out, "OK", "ACL SETUSER on sentinel {i}: {out}");
    }
    std::env::set_var("SV_LINKS_ACL_PW", PW);
    let daemon = rig.start_daemon(
        "30s",
        "sentinel_auth:\n  username: vipwatch\n  password_env: SV_LINKS_ACL_PW\n",
    );
    let _log = LogOnPanic(&daemon);
    let first = &redis.sentinel_addrs()[0];
    // Retried (every 5 s), but logged at error level once per connection:
    // the retries refused the same way say so at debug.
    eventually(
        "a refused PSUBSCRIBE on sentinel 0, then a retry refused again",
        Duration::from_secs(20),
        || async {
            daemon
                .logs()
                .lines()
                .any(|l| {
                    l.contains("PSUBSCRIBE * still refused")
                        && l.contains(&format!("sentinel={first}"))
                })
                .then_some(())
        },
    )
    .await;
    let log = daemon.logs();
    let errors = log
        .lines()
        .filter(|l| {
            l.contains("ERROR")
                && l.contains("PSUBSCRIBE * refused")
                && l.contains(&format!("sentinel={first}"))
        })
        .count();
    assert_eq!(
        errors, 1,
        "logged at error level once per connection:\n{log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("PSUBSCRIBE * refused"))
        .unwrap_or_default();
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains("&*"),
        "names the missing channel permission: {line}"
    );
    assert!(line.contains("vipwatch"), "names the user: {line}");
    // Granting it is picked up by the retry timer, with no reconnect.
    let out = cli(
        &redis.hosts[0],
        redis.sentinel_port,
        &["ACL", "SETUSER", "vipwatch", "allchannels"],
    );
    assert_eq!(out, "OK");
    daemon
        .wait_log(
            &format!("subscribed to sentinel events sentinel={first}"),
            Duration::from_secs(15),
        )
        .await;
    assert!(
        !daemon.logs().contains(PW),
        "the password leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_on_a_redis_data_node_listed_as_a_sentinel() {
    let rig = Rig::start(1).await;
    let data_node = format!("{}:{}", rig.redis.hosts[1], rig.redis.redis_port);
    let mut config = rig.config_yaml("30s");
    config.sentinels[2] = data_node.clone();
    let cfg = rig.redis.dir.path().join("check-role.yaml");
    std::fs::write(&cfg, config.yaml()).unwrap();
    let (ok, text) = run_cli(&["check"], &cfg);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "FAIL  sentinel {data_node}: ROLE says \"slave\": this is a Redis data node, not a sentinel"
        )),
        "{text}"
    );
    for s in &rig.redis.sentinel_addrs()[..2] {
        assert!(
            text.contains(&format!("ok    sentinel {s}: ROLE is sentinel")),
            "{text}"
        );
        assert!(
            text.contains(&format!("ok    sentinel {s}: PSUBSCRIBE * allowed")),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_when_the_sentinel_list_is_shorter_than_the_sentinels_own_count() {
    let rig = Rig::start(1).await;
    rig.redis.wait_ready_for_failover(2).await;
    let mut config = rig.config_yaml("30s");
    config.sentinels.truncate(2);
    let cfg = rig.redis.dir.path().join("check-short.yaml");
    std::fs::write(&cfg, config.yaml()).unwrap();
    let (_, text) = run_cli(&["check"], &cfg);
    assert!(
        text.contains("knows 3 sentinels (num-other-sentinels + 1) but `sentinels` lists 2"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("warn") && l.contains("knows 3 sentinels")),
        "{text}"
    );
}
