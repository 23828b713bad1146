//! ops: systemd notify protocol, HTTP endpoints, CLI verbs, secrets in logs.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const WITHIN: Duration = Duration::from_secs(45);

async fn get(url: &str) -> (u16, String) {
    match http_get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_speaks_sd_notify_and_serves_metrics_readyz_status() {
    let rig = Rig::start(2).await;
    let http = free_port();
    let yaml = rig.config("30s", &format!("http:\n  listen: 127.0.0.1:{http}\n"));
    let dir = rig.redis.dir.path();
    let cfg = dir.join("ops.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        for _ in 0..600 {
            if let Ok(n) = sock.recv(&mut buf) {
                g.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    });
    // systemd sets WATCHDOG_PID to the service's pid: exec keeps the shell's pid.
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "WATCHDOG_PID=$$ exec {} run --config {}",
            bin(),
            cfg.display()
        ))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "2000000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _daemon = Proc {
        child,
        name: "sentinel-vip".into(),
    };
    let has = |needle: &'static str| {
        let got = got.clone();
        move || {
            let found = got.lock().unwrap().iter().any(|m| m.contains(needle));
            async move { found.then_some(()) }
        }
    };
    eventually("READY=1 on NOTIFY_SOCKET", WITHIN, has("READY=1")).await;
    eventually(
        "STATUS= summary",
        WITHIN,
        has("STATUS=1 masters (1 healthy), sentinels 3/3 connected"),
    )
    .await;
    eventually("WATCHDOG=1 while the loop turns", WITHIN, has("WATCHDOG=1")).await;
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    let base = format!("http://127.0.0.1:{http}");
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    let (code, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(code, 200, "{body}");
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    for m in [
        "sentinel_vip_route_updates_total{",
        "sentinel_vip_route_update_seconds_bucket",
        "sentinel_vip_reconcile_duration_seconds",
        "sentinel_vip_reconcile_last_success_timestamp_seconds",
        "sentinel_vip_sentinel_connected{",
        "sentinel_vip_incidents_open",
    ] {
        assert!(metrics.contains(m), "{m} missing from /metrics:\n{metrics}");
    }
    rig.redis.wait_ready_for_failover(2).await;
    rig.redis.failover().await;
    // The switch event is counted on arrival, the route update once it is verified.
    eventually(
        "the switch and its route update counted in /metrics",
        WITHIN,
        || async {
            let (_, m) = get(&format!("{base}/metrics")).await;
            (m.contains("type=\"+switch-master\"") && m.contains("cause=\"+switch-master\""))
                .then_some(())
        },
    )
    .await;
    let (_, status) = get(&format!("{base}/status")).await;
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["sentinels_connected"], 3);
    assert_eq!(v["masters"][0]["name"], "mymaster");
    // `status` prefers the running daemon's /status.
    let out = Command::new(bin())
        .args(["status", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("daemon ") && text.contains("master mymaster"),
        "{text}"
    );
    // A majority of sentinels gone: not ready.
    let mut rig = rig;
    rig.redis.kill_sentinel(1);
    rig.redis.kill_sentinel(2);
    eventually(
        "/readyz to fail without a sentinel majority",
        WITHIN,
        || async { (get(&format!("{base}/readyz")).await.0 == 503).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_dry_run_changes_nothing_and_reconcile_repairs() {
    let rig = Rig::start(2).await;
    rig.vpc.set_route(0, &rig.vpc.enis[1]).await;
    let cfg = rig.redis.dir.path().join("cli.yaml");
    std::fs::write(&cfg, rig.config("30s", "")).unwrap();
    let run = |args: &[&str]| {
        Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .unwrap()
    };
    let dry = run(&["reconcile", "--dry-run"]);
    let text = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(dry.status.success(), "{text}");
    assert!(
        text.contains(&format!("route_table  {}", rig.vpc.tables[0])) && text.contains("replace"),
        "{text}"
    );
    assert!(text.contains("create"), "{text}");
    assert_eq!(
        rig.vpc.vip_targets().await,
        vec![Some(rig.vpc.enis[1].clone()), None],
        "dry run wrote"
    );
    let json = run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        v[0]["majority"],
        format!("{}:{}", rig.redis.hosts[0], rig.redis.redis_port)
    );
    assert_eq!(v[0]["tables"][0]["action"], "replace");
    let fix = run(&["reconcile"]);
    let text = String::from_utf8_lossy(&fix.stdout).to_string();
    assert!(fix.status.success(), "{text}");
    // The daemon's write job: written, then read back as written.
    assert_eq!(text.matches("-> written").count(), 2, "{text}");
    assert!(!text.contains("does not read back"), "{text}");
    rig.vpc
        .wait_all_point_at(&rig.vpc.enis[0], Duration::from_secs(5))
        .await;

    // A table deleted by hand: the other is still repaired, the gone one is
    // reported and never written blind, and the run fails.
    rig.vpc.set_route(1, &rig.vpc.enis[1]).await;
    rig.vpc
        .client
        .delete_route_table()
        .route_table_id(&rig.vpc.tables[0])
        .send()
        .await
        .expect("delete the table");
    let gone = run(&["reconcile"]);
    let text = String::from_utf8_lossy(&gone.stdout).to_string();
    assert_eq!(gone.status.code(), Some(1), "{text}");
    assert!(
        text.contains("problem:") && text.contains(&rig.vpc.tables[0]),
        "{text}"
    );
    assert_eq!(text.matches("-> written").count(), 1, "{text}");
    assert!(
        !text.contains("-> failed"),
        "wrote the gone table blind: {text}"
    );
    assert_eq!(
        rig.vpc.vip_targets().await[1].as_deref(),
        Some(rig.vpc.enis[0].as_str()),
        "the readable table was not repaired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_or_errors() {
    let rig = Rig::start(1).await;
    let hooks = Receiver::start().await;
    {
        let mut s = hooks.script.lock().unwrap();
        for _ in 0..4 {
            s.script.push_back((404, None));
        }
    }
    std::env::set_var("SV_OPS_PW", "hunter2-SENTINEL-SECRET");
    std::env::set_var(
        "SV_OPS_SLACK",
        format!("{}/services/T000/B000/XOXB-SLACK-TOKEN-SECRET", hooks.url),
    );
    std::env::set_var("SV_OPS_PD", "PD-ROUTING-KEY-SECRET");
    std::env::set_var("SV_OPS_HMAC", "HMAC-SECRET-VALUE");
    let extra = "sentinel_auth:\n  password_env: SV_OPS_PW\n\
                 alerts:\n  group_wait: 1s\n  webhooks:\n\
                 \x20   - { name: ops-slack, kind: slack, url_env: SV_OPS_SLACK }\n\
                 \x20   - { name: pd, kind: pagerduty, url: \"http://127.0.0.1:9/enqueue\", routing_key_env: SV_OPS_PD }\n\
                 \x20   - { name: gen, kind: generic, url: \"http://127.0.0.1:9/x?token=QUERY-TOKEN-SECRET\", secret_env: SV_OPS_HMAC }\n";
    let mut daemon = rig.start_daemon("2s", extra);
    // The sentinels have no password (Redis answers AUTH with a warning); every sink fails.
    daemon.wait_log("ready", WITHIN).await;
    daemon.signal("TERM");
    daemon.kill();
    let out = Command::new(bin())
        .args(["test-alert", "--config"])
        .arg(&daemon.config)
        .output()
        .unwrap();
    let cli = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cli.contains("ops-slack: HTTP 404"), "{cli}");
    assert!(cli.contains("pd:") && cli.contains("gen:"), "{cli}");
    let check = Command::new(bin())
        .args(["check", "--config"])
        .arg(&daemon.config)
        .output()
        .unwrap();
    let all = format!(
        "{}\n{cli}\n{}{}",
        daemon.logs(),
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    for secret in [
        "hunter2-SENTINEL-SECRET",
        "XOXB-SLACK-TOKEN-SECRET",
        "PD-ROUTING-KEY-SECRET",
        "HMAC-SECRET-VALUE",
        "QUERY-TOKEN-SECRET",
    ] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
}
