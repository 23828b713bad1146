//! Foundation: sentinel failovers move the VIP route in every table, on real
//! redis-server/redis-sentinel processes and the moto EC2 emulator.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const WITHIN: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_moves_vip_in_every_table_and_back_and_repairs_wrong_route_at_start() {
    let rig = Rig::start(2).await;
    // Wrong at start: table 0 points at a replica's ENI, table 1 has no route.
    rig.vpc.set_route(0, &rig.vpc.enis[2]).await;
    let daemon = rig.start_daemon("30s", "");
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;

    let first = rig.redis.failover().await;
    assert_ne!(first, 0);
    rig.vpc
        .wait_all_point_at(&rig.vpc.enis[first], WITHIN)
        .await;

    rig.redis.wait_ready_for_failover(2).await;
    let second = rig.redis.failover().await;
    assert_ne!(second, first);
    rig.vpc
        .wait_all_point_at(&rig.vpc.enis[second], WITHIN)
        .await;
    daemon
        .wait_log("VIP route updated and verified", Duration::from_secs(5))
        .await;
    rig.dump(&daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_master_moves_vip_to_promoted_replica() {
    let mut rig = Rig::start(2).await;
    let daemon = rig.start_daemon("30s", "");
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    rig.redis.kill_server(0);
    let promoted = eventually(
        "sentinels to promote a replica after SIGKILL",
        Duration::from_secs(60),
        || async { rig.redis.master_index().filter(|m| *m != 0) },
    )
    .await;
    rig.vpc
        .wait_all_point_at(&rig.vpc.enis[promoted], WITHIN)
        .await;
    rig.dump(&daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_of_a_master_not_in_the_config_is_ignored() {
    let rig = Rig::start(1).await;
    // Announce a second master name to the sentinels (same redis), then switch it away.
    let daemon = rig.start_daemon("30s", "");
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    for i in 0..3 {
        let out = cli(
            &rig.redis.hosts[i],
            rig.redis.sentinel_port,
            &["SENTINEL", "MONITOR", "othermaster", "127.0.0.9", "1", "2"],
        );
        assert_eq!(out, "OK", "SENTINEL MONITOR othermaster");
    }
    // A +monitor event for othermaster reached the daemon and changed nothing.
    daemon.wait_log("+monitor", Duration::from_secs(10)).await;
    assert!(rig
        .vpc
        .vip_targets()
        .await
        .iter()
        .all(|t| t.as_deref() == Some(rig.vpc.enis[0].as_str())));
    // A real failover of mymaster still works after it.
    let m = rig.redis.failover().await;
    rig.vpc.wait_all_point_at(&rig.vpc.enis[m], WITHIN).await;
    let logs = daemon.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}

#[test]
fn malformed_config_fails_naming_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "sentinels: [\"127.0.0.2:26379\"]\nmasters:\n  m:\n    vip: 172.16.0.10/32\n    route_tables: [rtb-1]\n    nodez: {}\n",
    )
    .unwrap();
    for verb in ["run", "check"] {
        let out = Command::new(bin())
            .args([verb, "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{verb}: {err}");
        assert!(
            err.contains("nodez") && err.contains("line 6"),
            "{verb}: {err}"
        );
    }
    let missing = Command::new(bin())
        .args(["check", "--config", "/nonexistent/x.yaml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/x.yaml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_each_sentinel_master_and_table() {
    let mut rig = Rig::start(2).await;
    rig.vpc.set_route(0, &rig.vpc.enis[0]).await;
    let cfg = rig.redis.dir.path().join("check.yaml");
    std::fs::write(&cfg, rig.config("30s", "")).unwrap();
    let run = || {
        Command::new(bin())
            .args(["check", "--config"])
            .arg(&cfg)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .unwrap()
    };
    let out = run();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    for s in rig.redis.sentinel_addrs() {
        assert!(
            text.contains(&format!("ok    sentinel {s}: reachable")),
            "{text}"
        );
    }
    assert!(
        text.contains(&format!(
            "majority (3/3) says {}:{}",
            rig.redis.hosts[0], rig.redis.redis_port
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("route table {}: no route", rig.vpc.tables[1])),
        "{text}"
    );
    assert!(text.contains("ReplaceRoute permitted"), "{text}");
    // One sentinel down: named, and check fails.
    rig.redis.kill_sentinel(2);
    let out = run();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "FAIL  sentinel {}: unreachable",
            rig.redis.sentinel_addrs()[2]
        )),
        "{text}"
    );
}

/// The Python rig (scripts/rig.py: the demo, the benchmarks, the fixture
/// recorder) fills in `tests/common/sentinel.conf` and `redis.conf` exactly as
/// this rig does: the same sentinels and redis-servers everywhere.
#[test]
fn scripts_rig_py_writes_the_sentinel_config_and_redis_arguments_of_this_rig() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = root.join(".venv/bin/python");
    assert!(py.exists(), "{} missing: {SETUP}", py.display());
    let out = Command::new(&py)
        .current_dir(root)
        .args(["-c", r#"
import json, sys
sys.path.insert(0, "scripts")
import rig
print(json.dumps([
    rig.sentinel_conf(1, "127.0.0.3", "127.0.0.3", 26379, "/tmp/rig", ("127.0.0.2", 6379)),
    rig.sentinel_conf(0, "127.0.0.1", "localhost", 26380, "/tmp/rig", None, "sentinel resolve-hostnames yes\n"),
    rig.redis_args("127.0.0.3", "127.0.0.3", 6379, "/tmp/rig/redis-1", ("127.0.0.2", 6379)),
    rig.redis_args("127.0.0.1", "localhost", 6380, "/tmp/rig/redis-0"),
]))
"#])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let dir = std::path::Path::new("/tmp/rig");
    let rust = serde_json::json!([
        SentinelConf {
            i: 1,
            bind: "127.0.0.3",
            host: "127.0.0.3",
            port: 26379,
            dir,
            monitor: Some(("127.0.0.2", 6379)),
            extra: "",
        }
        .text(),
        SentinelConf {
            i: 0,
            bind: "127.0.0.1",
            host: "localhost",
            port: 26380,
            dir,
            monitor: None,
            extra: "sentinel resolve-hostnames yes\n",
        }
        .text(),
        redis_server_args(
            "127.0.0.3",
            "127.0.0.3",
            6379,
            &dir.join("redis-1"),
            Some(("127.0.0.2", 6379))
        ),
        redis_server_args("127.0.0.1", "localhost", 6380, &dir.join("redis-0"), None),
    ]);
    assert_eq!(py, rust);
    assert!(rust[0]
        .as_str()
        .unwrap()
        .contains("sentinel monitor mymaster 127.0.0.2 6379 2\n"));
    assert!(!rust[1].as_str().unwrap().contains("sentinel monitor"));
}
