//! The watcher's least-privilege ACL user on Redis 7 sentinels: a failover
//! with exactly the README's rule moves the VIP and leaves `ACL LOG` empty
//! (nothing the daemon sent was refused); a user missing any one permission
//! makes `check` name the refused command or channel (`NOPERM`).

mod common;

use std::time::Duration;

use common::*;

const WITHIN: Duration = Duration::from_secs(45);

/// The rule as the README gives it (besides `on` and the password).
const RULE: &str = "resetchannels &* -@all +psubscribe +ping +info +sentinel|masters \
+sentinel|get-master-addr-by-name +sentinel|replicas +sentinel|master +role \
+client|setname +client|list +client|id";

const USER: &str = "vipwatch";
const PW: &str = "acl-test-password";

fn set_user(redis: &Redis, rule: &str) {
    for i in 0..redis.sentinels.len() {
        let mut args = vec!["ACL", "SETUSER", USER, "reset", "on"];
        let pw = format!(">{PW}");
        args.push(&pw);
        args.extend(rule.split_whitespace());
        let out = cli(&redis.hosts[i], redis.sentinel_port, &args);
        assert_eq!(out, "OK", "ACL SETUSER on sentinel {i}: {out}");
        cli(
            &redis.hosts[i],
            redis.sentinel_port,
            &["ACL", "LOG", "RESET"],
        );
    }
}

fn auth_yaml(redis: &Redis, var: &str) -> String {
    std::env::set_var(var, PW);
    format!(
        "sentinel_auth:\n  username: {USER}\n  password_env: {var}\nalerts:\n  local_sentinel: \"{}\"\n",
        redis.sentinel_addrs()[0]
    )
}

#[test]
fn the_readme_rule_is_the_one_the_code_needs() {
    assert_eq!(sentinel_vip::watch::acl_rule(), RULE);
    let readme = include_str!("../README.md");
    assert!(
        readme.contains(&format!("ACL SETUSER watcher on >PASSWORD {RULE}")),
        "README's Security section must give the rule the code needs: {RULE}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_with_the_least_privilege_user_moves_the_vip_and_nothing_is_refused() {
    let rig = Rig::start(2).await;
    set_user(&rig.redis, RULE);
    let extra = auth_yaml(&rig.redis, "SV_ACL_PW_FAILOVER");
    let (out, _, _) = run_check(rig.redis.dir.path(), &rig.config("30s", &extra));
    assert!(!out.contains("FAIL  sentinel"), "{out}");
    assert_eq!(
        out.matches("ACL allows every command the daemon sends")
            .count(),
        3,
        "{out}"
    );

    let daemon = rig.start_daemon("30s", &extra);
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    let first = rig.redis.failover().await;
    rig.vpc
        .wait_all_point_at(&rig.vpc.enis[first], WITHIN)
        .await;
    // A few live-watcher polls (CLIENT LIST every 2 s) and PINGs happen too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Our connections carry their name (CLIENT SETNAME was allowed).
    let clients = cli(
        &rig.redis.hosts[0],
        rig.redis.sentinel_port,
        &["CLIENT", "LIST"],
    );
    assert!(
        clients.contains("name=sentinel-vip:") && clients.contains(&format!("user={USER}")),
        "{clients}"
    );
    for i in 0..3 {
        let log = cli(
            &rig.redis.hosts[i],
            rig.redis.sentinel_port,
            &["ACL", "LOG"],
        );
        assert!(
            log.is_empty(),
            "sentinel {i} refused something:\n{log}\n{}",
            daemon.logs()
        );
    }
    let logs = daemon.logs();
    assert!(!logs.contains("NOPERM"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_one_permission_the_user_lacks() {
    let rig = Rig::start(1).await;
    let extra = auth_yaml(&rig.redis, "SV_ACL_PW_CHECK");
    // (what is taken away, what check must name)
    let cases = [
        ("-sentinel|masters", "`SENTINEL MASTERS`"),
        (
            "-sentinel|get-master-addr-by-name",
            "`SENTINEL GET-MASTER-ADDR-BY-NAME mymaster`",
        ),
        ("-sentinel|replicas", "`SENTINEL REPLICAS mymaster`"),
        ("-info", "`INFO sentinel`"),
        ("-role", "`ROLE`"),
        ("-client|setname", "`CLIENT SETNAME"),
        ("-client|list", "`CLIENT LIST`"),
        ("-psubscribe", "+psubscribe"),
        ("resetchannels", "&*"),
    ];
    for (take, named) in cases {
        set_user(&rig.redis, &format!("{RULE} {take}"));
        let (out, ok, _) = run_check(rig.redis.dir.path(), &rig.config("30s", &extra));
        assert!(!ok, "{take}: {out}");
        let fails: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("FAIL  sentinel"))
            .collect();
        assert!(
            fails
                .iter()
                .any(|l| l.contains(named) && (l.contains("NOPERM") || l.contains("ACL"))),
            "{take}: no FAIL naming {named}:\n{out}"
        );
        eprintln!("{take}: {}", fails.first().unwrap_or(&""));
    }
}

/// A TCP proxy to `upstream` (a real sentinel) that forwards both ways until
/// the client sends `PSUBSCRIBE`; from then on that connection forwards
/// nothing either way: a sentinel that stopped answering right after the
/// handshake (stopped, overloaded, or a path dropping packets). Returns its port.
async fn mute_from_psubscribe(upstream: String) -> u16 {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let muted = Arc::new(AtomicBool::new(false));
                let m = muted.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let upper = buf[..n].to_ascii_uppercase();
                        if upper.windows(10).any(|w| w == b"PSUBSCRIBE") {
                            m.store(true, Ordering::SeqCst);
                        }
                        if !m.load(Ordering::SeqCst) && sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if !muted.load(Ordering::SeqCst) && cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// A PSUBSCRIBE that gets no answer is a link problem, not "refused by ACL":
/// `check` says unanswered (not refused, no ACL advice), and the daemon logs it
/// as such, counts it as `no_answer`, and neither lists the sentinel as
/// refusing nor sends a SentinelSubscriptionRefused alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_psubscribe_that_gets_no_answer_is_a_link_problem_not_an_acl_refusal() {
    let rig = Rig::start(1).await;
    let hooks = Receiver::start().await;
    let addrs = rig.redis.sentinel_addrs();
    let port = mute_from_psubscribe(addrs[0].clone()).await;
    let muted = format!("127.0.0.1:{port}");
    let http = free_port();
    let yaml = ConfigYaml {
        sentinels: vec![muted.clone(), addrs[1].clone(), addrs[2].clone()],
        extra: format!(
            "http:\n  listen: 127.0.0.1:{http}\nalerts:\n  group_wait: 1s\n  webhooks:\n    - {{ name: gen, kind: generic, url: \"{}/generic\" }}\n",
            hooks.url
        ),
        ..rig.config_yaml("30s")
    }
    .yaml();
    let (out, ok, _) = run_check(rig.redis.dir.path(), &yaml);
    assert!(!ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains(&muted) && l.contains("PSUBSCRIBE"))
        .unwrap_or_else(|| panic!("no FAIL line for {muted}:\n{out}"));
    assert!(
        line.contains("unanswered") && line.contains("not an ACL refusal"),
        "{line}"
    );
    assert!(
        !line.contains("refused,") && !line.contains("ACL SETUSER"),
        "{line}"
    );

    let daemon = Daemon::start(rig.redis.dir.path(), &yaml);
    daemon
        .wait_log("PSUBSCRIBE * unanswered (link problem)", WITHIN)
        .await;
    let metrics = eventually("the no_answer counter", WITHIN, || async {
        let m = http_get(format!("http://127.0.0.1:{http}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        m.contains(&format!(
            "sentinel_vip_subscribe_failures_total{{sentinel=\"{muted}\",reason=\"no_answer\"}}"
        ))
        .then_some(m)
    })
    .await;
    assert!(!metrics.contains("reason=\"refused\""), "{metrics}");
    let s = eventually("/status", WITHIN, || status(http)).await;
    assert_eq!(s["sentinels_refused"], serde_json::json!([]), "{s}");
    // Past group_wait: no refusal incident was told.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let logs = daemon.logs();
    assert!(!logs.contains("PSUBSCRIBE * refused"), "{logs}");
    assert!(
        !hooks
            .delivered("/generic")
            .iter()
            .any(|h| h.body["commonLabels"]["alertname"] == "SentinelSubscriptionRefused"),
        "{:#?}",
        hooks.delivered("/generic")
    );
}
