//! The failover drill (issue 26): `switchover` (pre-checks, SENTINEL FAILOVER,
//! the VIP verified by its own read, a timeline), the switch journal and
//! `history`, on the real rig (redis + 3 sentinels + moto + the daemon).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const WITHIN: Duration = Duration::from_secs(45);

/// Runs `sentinel-vip <args> --config <config>`; (exit code, stdout, stderr).
fn verb(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("NO_COLOR", "1")
        .output()
        .expect("sentinel-vip runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `history --json` as records (newest first).
fn history(config: &Path) -> Vec<serde_json::Value> {
    let (code, out, err) = verb(config, &["history", "--json"]);
    assert_eq!(code, 0, "history: {out}{err}");
    serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Waits until sentinel 0 reports a replica Sentinel would promote with its
/// link up (what switchover's replica pre-check asks for).
async fn wait_replica_ready(rig: &Rig) {
    rig.redis.wait_ready_for_failover(2).await;
    eventually("a replica online with its link up", WITHIN, || async {
        let reply = cli(
            &rig.redis.hosts[0],
            rig.redis.sentinel_port,
            &["SENTINEL", "REPLICAS", MASTER],
        );
        sentinel_records(&reply)
            .iter()
            .any(|r| {
                let f = |k: &str| r.iter().find(|(x, _)| *x == k).map(|(_, v)| *v);
                f("flags") == Some("slave")
                    && f("master-link-status") == Some("ok")
                    && f("slave-repl-offset").and_then(|o| o.parse::<u64>().ok()) > Some(0)
            })
            .then_some(())
    })
    .await;
}

/// The operator rule as the docs give it (`watch::OPERATOR_ACL_RULE`, held
/// equal to the docs by a unit test).
fn sentinel_vip_operator_rule() -> &'static str {
    let rule = "resetchannels -@all +sentinel|failover +info +ping +client|setname";
    let doc = include_str!("../docs/operations.md");
    assert!(
        doc.contains(rule),
        "docs/operations.md gives another operator rule"
    );
    rule
}

fn eni_of(rig: &Rig, addr: &str) -> String {
    let host = addr.split(':').next().unwrap();
    let i = rig.redis.hosts.iter().position(|h| h == host).unwrap();
    rig.vpc.enis[i].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_moves_the_vip_with_a_timeline_and_history_keeps_every_switch_across_restarts() {
    let mut rig = Rig::start(2).await;
    let state = rig.redis.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let yaml = rig.config("30s", &format!("state_dir: {}\n", state.display()));
    let mut daemon = Daemon::start(rig.redis.dir.path(), &yaml);
    let config = daemon.config.clone();
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    wait_replica_ready(&rig).await;

    // 1. switchover --json: one object, old -> new, the timeline in order.
    let (code, out, err) = verb(&config, &["switchover", "--json", "--timeout", "30s"]);
    eprintln!("switchover --json:\n{out}{err}");
    assert_eq!(code, 0, "{out}{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["ok"], true);
    let old = format!("{}:{}", rig.redis.hosts[0], rig.redis.redis_port);
    assert_eq!(r["old"], old.as_str());
    let new = r["new"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let t = &r["timeline_ms"];
    let (asked, seen, verified) = (
        t["failover_asked"].as_f64().unwrap(),
        t["switch_master_seen"].as_f64().unwrap(),
        t["vip_verified"].as_f64().unwrap(),
    );
    assert!(asked <= verified && seen <= verified, "{t}");
    assert!(r["prechecks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ok"] == true));
    // Its own read agrees with moto: every table on the new master's ENI.
    let eni = eni_of(&rig, &new);
    assert!(rig
        .vpc
        .vip_targets()
        .await
        .iter()
        .all(|t| t.as_deref() == Some(eni.as_str())));
    let journalled = eventually("the switch journalled", WITHIN, || async {
        let h = history(&config);
        (!h.is_empty()).then_some(h)
    })
    .await;
    assert_eq!(journalled.len(), 1, "{journalled:?}\n{}", daemon.logs());

    // 2. A corrupt line and a restart: the daemon restores from what is left,
    // says so, and goes on.
    std::fs::OpenOptions::new()
        .append(true)
        .open(state.join("switches.jsonl"))
        .unwrap()
        .write_all(b"{\"time\": torn line\n")
        .unwrap();
    daemon.kill();
    daemon.spawn();
    daemon
        .wait_log("skipped, not a journal record", WITHIN)
        .await;
    wait_replica_ready(&rig).await;

    // 3. The operator ACL user: the default user may no longer run SENTINEL
    // FAILOVER; without the operator's credentials switchover says how to fix
    // it, with them (the documented rule, nothing more) it works.
    let rule = sentinel_vip_operator_rule();
    for i in 0..3 {
        let mut args = vec!["ACL", "SETUSER", "operator", "on", ">s3cret"];
        args.extend(rule.split(' '));
        assert_eq!(
            cli(&rig.redis.hosts[i], rig.redis.sentinel_port, &args),
            "OK"
        );
        let deny = ["ACL", "SETUSER", "default", "-sentinel|failover"];
        assert_eq!(
            cli(&rig.redis.hosts[i], rig.redis.sentinel_port, &deny),
            "OK"
        );
    }
    let (code, out, err) = verb(&config, &["switchover", "--timeout", "30s"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("NOPERM") && out.contains("SENTINEL_VIP_OPERATOR_USERNAME"),
        "{out}"
    );
    assert!(!out.contains("s3cret") && !err.contains("s3cret"));
    // 4. switchover (text): old -> new and the three timeline lines.
    let out = Command::new(bin())
        .args(["switchover", "--timeout", "30s", "--config"])
        .arg(&config)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("SENTINEL_VIP_OPERATOR_USERNAME", "operator")
        .env("SENTINEL_VIP_OPERATOR_PASSWORD", "s3cret")
        .output()
        .unwrap();
    let (code, out, err) = (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("switchover:\n{out}{err}");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("switchover of {MASTER}: {new} -> ")),
        "{out}"
    );
    for line in [
        "SENTINEL FAILOVER answered by",
        "+switch-master seen",
        "VIP verified on",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert!(!out.contains("not seen"), "{out}");

    // 5. An outage: SIGKILL of the master (Sentinel publishes +odown first).
    let master = rig.redis.master_index().unwrap();
    wait_replica_ready(&rig).await;
    rig.redis.kill_server(master);
    let promoted = eventually(
        "a replica promoted after SIGKILL",
        Duration::from_secs(60),
        || async { rig.redis.master_index().filter(|m| *m != master) },
    )
    .await;
    rig.vpc
        .wait_all_point_at(&rig.vpc.enis[promoted], WITHIN)
        .await;

    // history --json: the three switches, newest first, the first one kept
    // across the restart; planned only where no +odown came before.
    let h = eventually("three switches journalled", WITHIN, || async {
        let h = history(&config);
        (h.len() == 3).then_some(h)
    })
    .await;
    eprintln!(
        "history --json:\n{}",
        serde_json::to_string_pretty(&h).unwrap()
    );
    assert_eq!(h[2]["old"], old.as_str());
    assert_eq!(h[2]["new"], new.as_str());
    assert_eq!(
        h[1]["old"],
        new.as_str(),
        "restored across the restart: {h:?}"
    );
    assert_eq!(h[0]["planned"], false, "SIGKILL: +odown first: {h:?}");
    for r in &h[1..] {
        assert_eq!(r["planned"], true, "SENTINEL FAILOVER: no +odown: {r}");
    }
    for r in &h {
        assert_eq!(r["cause"], "event", "{r}");
        assert_eq!(r["wrote"], true, "{r}");
        assert_eq!(r["tables"].as_array().unwrap().len(), 2, "{r}");
        assert!(r["event_to_verified_ms"].as_f64().is_some(), "{r}");
    }
    // The text table, newest first; the torn line is a warning, not a failure.
    let (code, out, err) = verb(&config, &["history", "--limit", "2"]);
    eprintln!("history:\n{out}{err}");
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 3, "header + 2 rows: {out}");
    assert!(err.contains("switches.jsonl:2: skipped"), "{err}");

    // 6. No daemon: Sentinel switches, the VIP does not move; the timeout says
    // why and what to run, and that command moves it.
    rig.dump(&daemon);
    daemon.kill();
    wait_replica_ready(&rig).await;
    // The VIP on the master as it is now, so any switch leaves it behind.
    let now_master = rig.redis.master_index().unwrap();
    for t in 0..2 {
        rig.vpc.set_route(t, &rig.vpc.enis[now_master]).await;
    }
    let op = [
        ("SENTINEL_VIP_OPERATOR_USERNAME", "operator"),
        ("SENTINEL_VIP_OPERATOR_PASSWORD", "s3cret"),
    ];
    let out = Command::new(bin())
        .args(["switchover", "--timeout", "3s", "--config"])
        .arg(&config)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .envs(op)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("switchover without a daemon:\n{text}");
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("if no daemon is running the route never moves")
            && text.contains("sentinel-vip reconcile"),
        "{text}"
    );
    let moved_to = rig.redis.master_index().unwrap();
    let (code, out, err) = verb(&config, &["reconcile"]);
    assert_eq!(code, 0, "{out}{err}");
    rig.vpc
        .wait_all_point_at(&rig.vpc.enis[moved_to], WITHIN)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_precheck_exits_1_and_never_asks_sentinel() {
    let mut rig = Rig::start(1).await;
    rig.redis.wait_ready_for_failover(2).await;
    let dir = rig.redis.dir.path().to_owned();
    let sentinel_logs = || {
        (0..3)
            .map(|i| {
                std::fs::read_to_string(dir.join(format!("sentinel-{i}.log"))).unwrap_or_default()
            })
            .collect::<String>()
    };
    let (hosts, port) = (rig.redis.hosts.clone(), rig.redis.sentinel_port);
    let epochs = || {
        (0..3)
            .map(|i| {
                let m = cli(&hosts[i], port, &["SENTINEL", "MASTER", MASTER]);
                sentinel_field(&m, "config-epoch").unwrap_or("?").to_owned()
            })
            .collect::<Vec<_>>()
    };
    let before = epochs();

    // A: healthy replicas, but a configured route table that does not exist.
    // Sentinel would accept this failover; the pre-check must not ask it.
    let mut yaml = rig.config_yaml("30s");
    yaml.tables.push("rtb-00000000deadbeef0".into());
    let config = dir.join("bad-table.yaml");
    std::fs::write(&config, yaml.yaml()).unwrap();
    let (code, out, err) = verb(&config, &["switchover"]);
    eprintln!("switchover (unreadable table):\n{out}{err}");
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("FAIL pre-check carriers readable"), "{out}");
    assert!(out.contains("SENTINEL FAILOVER was not sent"), "{out}");
    // SENTINEL FAILOVER logs +try-failover and +new-epoch synchronously
    // (sentinelStartFailover) before it answers OK.
    let logs = sentinel_logs();
    assert!(
        !logs.contains("+try-failover") && !logs.contains("+new-epoch"),
        "{logs}"
    );

    // B: no replica Sentinel would promote (both stopped).
    rig.redis.kill_server(1);
    rig.redis.kill_server(2);
    eventually("the sentinels to flag both replicas", WITHIN, || async {
        let reply = cli(
            &rig.redis.hosts[0],
            rig.redis.sentinel_port,
            &["SENTINEL", "REPLICAS", MASTER],
        );
        let recs = sentinel_records(&reply);
        (recs.len() == 2
            && recs.iter().all(|r| {
                r.iter().any(|(k, v)| {
                    *k == "flags" && (v.contains("disconnected") || v.contains("s_down"))
                })
            }))
        .then_some(())
    })
    .await;
    let good = dir.join("good.yaml");
    std::fs::write(&good, rig.config("30s", "")).unwrap();
    let (code, out, err) = verb(&good, &["switchover", "--json"]);
    eprintln!("switchover --json (no replica):\n{out}{err}");
    assert_eq!(code, 1, "{out}{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["ok"], false);
    assert!(r["asked"].is_null(), "{r}");
    let replica = r["prechecks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "replica ready")
        .unwrap();
    assert_eq!(replica["ok"], false);
    assert!(
        replica["detail"]
            .as_str()
            .unwrap()
            .contains("no replica ready"),
        "{replica}"
    );
    let logs = sentinel_logs();
    assert!(
        !logs.contains("+try-failover") && !logs.contains("+new-epoch"),
        "{logs}"
    );
    assert_eq!(epochs(), before, "config-epoch unchanged");
    assert_eq!(rig.redis.master_index(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_journal_is_a_warning_and_a_metric_and_routes_still_move() {
    let rig = Rig::start(1).await;
    let http = free_port();
    // A path under a regular file: no user (root included) can create it.
    let blocker = rig.redis.dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let extra = format!(
        "state_dir: {}\nhttp:\n  listen: 127.0.0.1:{http}\n",
        blocker.join("state").display()
    );
    let daemon = rig.start_daemon("30s", &extra);
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    let m = rig.redis.failover().await;
    rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
    daemon
        .wait_log("cannot write the switch journal", WITHIN)
        .await;
    eventually("journal_errors counted in /metrics", WITHIN, || async {
        let text = http_get(format!("http://127.0.0.1:{http}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains("sentinel_vip_journal_errors_total{kind=\"write\"} 1")
            .then_some(())
    })
    .await;
    // Still working: the route follows a second failover.
    rig.redis.wait_ready_for_failover(2).await;
    let back = rig.redis.failover().await;
    rig.vpc.wait_all_point_at(&rig.vpc.enis[back], WITHIN).await;
    let logs = daemon.logs();
    assert_eq!(
        logs.matches("cannot write the switch journal").count(),
        1,
        "warned once per run of failures"
    );
    assert!(!logs.contains("panicked"), "{logs}");
}
