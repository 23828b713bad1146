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
