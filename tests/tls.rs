//! TLS to the sentinels (`sentinel_tls`): TLS-only sentinels and Redis
//! (`port 0`, `tls-port`, `tls-replication yes`), certificates made by openssl
//! in the test. A failover moves the VIP as on plaintext; a wrong CA, an expired
//! certificate, a name mismatch or a missing client certificate is named by
//! `check` and by the daemon's log, quickly, without a hang or a panic.

mod common;

use std::time::{Duration, Instant};

use common::*;

const WITHIN: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_on_tls_only_sentinels_with_client_certificate_moves_the_vip() {
    let certs_dir = tempfile::tempdir().expect("tempdir");
    let certs = Certs::make(certs_dir.path());
    let moto = Moto::start();
    let vpc = Vpc::create(&moto.url, 2, 3).await;
    let redis = Redis::start_tls(3, 3, &certs, "server", true);
    let cli = TlsCli::new(&certs);
    let yaml = config_yaml(
        &redis,
        &moto,
        &vpc,
        "30s",
        &certs.yaml("ca.crt", true, None),
    );

    let (out, _, _) = run_check(redis.dir.path(), &yaml);
    for s in redis.sentinel_addrs() {
        assert!(
            out.contains(&format!("ok    sentinel {s}: reachable over TLS")),
            "{out}"
        );
    }
    assert!(!out.contains("FAIL  sentinel"), "{out}");

    let daemon = Daemon::start(redis.dir.path(), &yaml);
    vpc.wait_all_point_at(&vpc.enis[0], WITHIN).await;
    let first = redis.failover_with(&cli, 2).await;
    assert_ne!(first, 0);
    vpc.wait_all_point_at(&vpc.enis[first], WITHIN).await;
    daemon
        .wait_log("VIP route updated and verified", Duration::from_secs(5))
        .await;
    let logs = daemon.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    eprintln!("---- daemon log ----\n{logs}");
}

/// One TLS-only sentinel presenting `cert`, monitoring one TLS-only redis.
fn one_sentinel(certs: &Certs, cert: &str, auth_clients: bool) -> Redis {
    Redis::start_tls(1, 1, certs, cert, auth_clients)
}

/// A config for one sentinel; EC2 is unreachable (and given up on quickly):
/// only the sentinel lines matter here.
fn one_sentinel_yaml(redis: &Redis, tls: &str) -> String {
    ConfigYaml {
        endpoint: Some("http://127.0.0.1:9".into()),
        aws_extra: "  call_timeout: 1s\n  max_attempts: 1\n".into(),
        tables: vec!["rtb-0123".into()],
        extra: tls.to_owned(),
        ..ConfigYaml::new([redis.sentinel_addrs()[0].clone()])
    }
    .yaml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_client_certificate_when_sentinels_do_not_ask_for_one() {
    let certs_dir = tempfile::tempdir().expect("tempdir");
    let certs = Certs::make(certs_dir.path());
    let redis = one_sentinel(&certs, "server", false);
    let s = &redis.sentinel_addrs()[0];
    for tls in [
        certs.yaml("ca.crt", false, None),
        certs.yaml("ca.crt", true, None),
    ] {
        let (out, _, _) = run_check(redis.dir.path(), &one_sentinel_yaml(&redis, &tls));
        assert!(
            out.contains(&format!("ok    sentinel {s}: reachable over TLS")),
            "{out}"
        );
        assert!(out.contains("ROLE is sentinel"), "{out}");
        assert!(out.contains("PSUBSCRIBE * allowed"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_are_named_by_check_and_the_daemon_quickly() {
    let certs_dir = tempfile::tempdir().expect("tempdir");
    let certs = Certs::make(certs_dir.path());
    let good = one_sentinel(&certs, "server", true);
    let expired = one_sentinel(&certs, "expired", true);
    let named = one_sentinel(&certs, "named", true);
    // (sentinel, sentinel_tls block, what check and the log must say)
    let cases = [
        (
            &good,
            certs.yaml("other-ca.crt", true, None),
            "not signed by the configured CA",
        ),
        (&expired, certs.yaml("ca.crt", true, None), "has expired"),
        (
            &named,
            certs.yaml("ca.crt", true, None),
            "not valid for the address dialled",
        ),
        (
            &good,
            certs.yaml("ca.crt", false, None),
            "client certificate",
        ),
    ];
    for (redis, tls, reason) in &cases {
        let s = &redis.sentinel_addrs()[0];
        let yaml = one_sentinel_yaml(redis, tls);
        let (out, ok, took) = run_check(redis.dir.path(), &yaml);
        assert!(!ok, "{out}");
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("FAIL  sentinel {s}: cannot connect")))
            .unwrap_or_else(|| panic!("no FAIL line for {s} ({reason}):\n{out}"));
        assert!(line.contains(reason), "expected {reason:?} in {line}");
        // Not a 3 s wait for the connection: the refusal is conclusive at once
        // (the EC2 part gives up after its own 1 s).
        assert!(
            took < Duration::from_millis(2500),
            "check took {took:?}:\n{out}"
        );
        eprintln!("check {took:?}: {line}");

        let t0 = Instant::now();
        let daemon = Daemon::start(redis.dir.path(), &yaml);
        eventually(
            &format!("daemon log to name {s} and {reason:?}"),
            Duration::from_secs(10),
            || async {
                daemon
                    .logs()
                    .lines()
                    .any(|l| {
                        l.contains("cannot connect to sentinel")
                            && l.contains(s.as_str())
                            && l.contains(reason)
                    })
                    .then_some(())
            },
        )
        .await;
        let named_after = t0.elapsed();
        // Well under the 2 s connection timeout (process start included).
        assert!(named_after < Duration::from_millis(1500), "{named_after:?}");
        let logs = daemon.logs();
        assert!(!logs.contains("panicked"), "{logs}");
        // Logged once per reason and link, not on every retry.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let logs = daemon.logs();
        let n = logs
            .lines()
            .filter(|l| l.contains("cannot connect to sentinel"))
            .count();
        assert!(n <= 2, "logged {n} times:\n{logs}");
        eprintln!("daemon named it after {named_after:?}");
    }

    // The name mismatch is fixed by `server_name`.
    let s = &named.sentinel_addrs()[0];
    let yaml = one_sentinel_yaml(
        &named,
        &certs.yaml("ca.crt", true, Some("sentinel.internal")),
    );
    let (out, _, _) = run_check(named.dir.path(), &yaml);
    assert!(
        out.contains(&format!(
            "ok    sentinel {s}: reachable over TLS (verified against"
        )),
        "{out}"
    );
    assert!(out.contains("as sentinel.internal"), "{out}");
}

/// Connect → subscribed (the watcher's `Connected`: TCP, TLS handshake, AUTH,
/// fred's setup, CLIENT SETNAME, PSUBSCRIBE * and its PING proof), 20 times
/// each on one plaintext and one TLS sentinel (client certificate); prints the
/// medians. Run: `cargo test --test tls handshake_cost -- --nocapture`.
/// Benchmark, not a test (no timing is asserted): median of 20 connects, from
/// start to subscribed. `cargo test --test tls handshake_cost -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn handshake_cost_plaintext_vs_tls() {
    use sentinel_vip::config::Config;
    use sentinel_vip::shutdown::Shutdown;
    use sentinel_vip::watch::{spawn_watchers, WatchMsg};

    let certs_dir = tempfile::tempdir().expect("tempdir");
    let certs = Certs::make(certs_dir.path());
    let plain = Redis::start(1, 1);
    let tls = Redis::start_tls(1, 1, &certs, "server", true);
    let mut medians = Vec::new();
    for (what, redis, extra) in [
        ("plaintext", &plain, String::new()),
        ("TLS", &tls, certs.yaml("ca.crt", true, None)),
    ] {
        let yaml = ConfigYaml {
            tables: vec!["rtb-0123".into()],
            extra,
            ..ConfigYaml::new([redis.sentinel_addrs()[0].clone()])
        }
        .yaml();
        let cfg = Config::parse(&yaml).expect("config");
        let mut took = Vec::new();
        for _ in 0..20 {
            let (trigger, shutdown) = Shutdown::new();
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            let t0 = Instant::now();
            let links = spawn_watchers(
                &cfg.sentinels,
                cfg.sentinel_auth.as_ref(),
                "bench",
                tx,
                &shutdown,
            );
            loop {
                match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                    Ok(Some(WatchMsg::Connected(_))) => break,
                    Ok(Some(WatchMsg::Disconnected(_, why))) => panic!("{what}: {why}"),
                    Ok(Some(_)) => {}
                    other => panic!("{what}: no Connected: {other:?}"),
                }
            }
            took.push(t0.elapsed());
            trigger.trigger();
            for l in &links {
                l.close().await;
            }
        }
        took.sort();
        let median = took[took.len() / 2];
        println!(
            "connect → subscribed, {what}: median {:.2} ms, min {:.2} ms, max {:.2} ms (n=20)",
            median.as_secs_f64() * 1e3,
            took[0].as_secs_f64() * 1e3,
            took[took.len() - 1].as_secs_f64() * 1e3
        );
        medians.push(median);
    }
    println!(
        "TLS / plaintext: {:.2}",
        medians[1].as_secs_f64() / medians[0].as_secs_f64()
    );
}

/// Benchmark: the daemon's `+switch-master` → route verified time (its own
/// `since_event_ms`) over `SV_BENCH_FAILOVERS` (default 20) failovers each, on
/// plaintext and on TLS-only sentinels with client certificates.
/// `cargo test --test tls failover_latency -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn failover_latency_plaintext_vs_tls() {
    let n: usize = std::env::var("SV_BENCH_FAILOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let certs_dir = tempfile::tempdir().expect("tempdir");
    let certs = Certs::make(certs_dir.path());
    let cli = TlsCli::new(&certs);
    let mut medians = Vec::new();
    for tls in [false, true] {
        let moto = Moto::start();
        let vpc = Vpc::create(&moto.url, 2, 3).await;
        let (redis, extra) = if tls {
            (
                Redis::start_tls(3, 3, &certs, "server", true),
                certs.yaml("ca.crt", true, None),
            )
        } else {
            (Redis::start(3, 3), String::new())
        };
        let daemon = Daemon::start(
            redis.dir.path(),
            &config_yaml(&redis, &moto, &vpc, "30s", &extra),
        );
        vpc.wait_all_point_at(&vpc.enis[0], WITHIN).await;
        for _ in 0..n {
            let new = if tls {
                redis.failover_with(&cli, 2).await
            } else {
                redis.wait_ready_for_failover(2).await;
                redis.failover().await
            };
            vpc.wait_all_point_at(&vpc.enis[new], WITHIN).await;
        }
        let mut ms = switch_write_ms(&daemon.logs());
        ms.sort_by(f64::total_cmp);
        let what = if tls { "TLS" } else { "plaintext" };
        // A failover whose route was moved by a read (not the event) logs no
        // `+switch-master` write: left out of the figure.
        assert!(
            ms.len() * 4 >= n * 3,
            "{what}: {} switch writes logged for {n} failovers",
            ms.len()
        );
        let p95 = ms[(ms.len() * 95).div_ceil(100) - 1];
        println!(
            "+switch-master → route verified, {what}: median {:.1} ms, p95 {:.1} ms (n={})",
            ms[ms.len() / 2],
            p95,
            ms.len()
        );
        medians.push(ms[ms.len() / 2]);
    }
    println!("TLS / plaintext: {:.2}", medians[1] / medians[0]);
}
