//! The CLI from an operator's shell, which holds none of the service's
//! secrets: webhook variables (`url_env`, `secret_env`, `routing_key_env`) are
//! unset and `sentinel_auth.password_file` names a `/run/credentials/...` file
//! that exists only while the service runs. `status`, `reconcile` and
//! `iam-policy` work (the password given with `--sentinel-password-file`);
//! `check` reports each missing secret as a failed line naming the sink and the
//! variable; `check --offline` does the same with no network, for `ExecReload=`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(45);

use common::*;

const USER: &str = "vipshell";
const PW: &str = "shell-test-password-0b5e";
const CREDENTIAL: &str = "/run/credentials/sentinel-vip.service/sentinel-password";

/// Webhooks naming variables this test never sets.
const HOOKS: &str = "alerts:
  webhooks:
    - { name: ops-slack, kind: slack, url_env: SV_SHELL_UNSET_SLACK }
    - { name: pager, kind: pagerduty, routing_key_env: SV_SHELL_UNSET_PD }
    - { name: audit, kind: generic, url: \"https://alerts.example.com/hook\", secret_env: SV_SHELL_UNSET_WHSEC }
";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// `sentinel-vip <args> --config <config>` with only what a shell would have.
fn sv(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let t0 = Instant::now();
    let out = cmd.output().expect("sentinel-vip runs");
    let o = Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t0.elapsed(),
    };
    assert!(
        !o.stdout.contains(PW) && !o.stderr.contains(PW),
        "a secret was printed:\n{}{}",
        o.stdout,
        o.stderr
    );
    o
}

fn fail_lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| l.starts_with("FAIL")).collect()
}

const MISSING: [&str; 3] = [
    "FAIL  webhook ops-slack: alerts.webhooks[0].url_env: environment variable SV_SHELL_UNSET_SLACK is not set; `run` and `test-alert` need it",
    "FAIL  webhook pager: alerts.webhooks[1].routing_key_env: environment variable SV_SHELL_UNSET_PD is not set; `run` and `test-alert` need it",
    "FAIL  webhook audit: alerts.webhooks[2].secret_env: environment variable SV_SHELL_UNSET_WHSEC is not set; `run` and `test-alert` need it",
];

fn assert_missing_lines(out: &Out) {
    let fails = fail_lines(&out.stdout);
    assert_eq!(fails.len(), 3, "{}{}", out.stdout, out.stderr);
    for (line, want) in fails.iter().zip(MISSING) {
        assert!(line.starts_with(want), "want {want:?}\ngot  {line:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reconcile_iam_policy_and_check_work_from_a_shell_without_the_services_secrets() {
    let rig = Rig::start(1).await;
    for i in 0..rig.redis.sentinels.len() {
        let pw = format!(">{PW}");
        let out = cli(
            &rig.redis.hosts[i],
            rig.redis.sentinel_port,
            &[
                "ACL",
                "SETUSER",
                USER,
                "reset",
                "on",
                &pw,
                "allcommands",
                "allchannels",
            ],
        );
        assert_eq!(out, "OK", "ACL SETUSER on sentinel {i}");
    }
    let dir = rig.redis.dir.path();
    let config = dir.join("shell.yaml");
    std::fs::write(
        &config,
        rig.config(
            "30s",
            &format!("sentinel_auth:\n  username: {USER}\n  password_file: {CREDENTIAL}\n{HOOKS}"),
        ),
    )
    .unwrap();
    let pw_file = dir.join("pw");
    std::fs::write(&pw_file, format!("{PW}\n")).unwrap();
    let wrong_pw = dir.join("wrong-pw");
    std::fs::write(&wrong_pw, "not-the-password\n").unwrap();
    let pw_env = [(
        "SENTINEL_VIP_SENTINEL_PASSWORD_FILE",
        pw_file.to_str().unwrap(),
    )];

    // iam-policy needs no secret at all.
    let out = sv(&config, &["iam-policy"], &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let policy: serde_json::Value = serde_json::from_str(&out.stdout).expect("policy JSON");
    assert!(policy.to_string().contains("ec2:ReplaceRoute"), "{policy}");

    // status without a daemon reads the sentinels: without the password it
    // says which key and how to give it, and tries nothing.
    let out = sv(&config, &["status"], &[]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "sentinel_auth.password_file: cannot read {CREDENTIAL}"
        )) && out.stderr.contains("--sentinel-password-file PATH"),
        "{}",
        out.stderr
    );
    // With the password given from the shell, it answers; the override is
    // what is read (a wrong one fails the sentinels' AUTH).
    let out = sv(&config, &["status"], &pw_env);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(MASTER), "{}", out.stdout);
    let out = sv(
        &config,
        &[
            "status",
            "--sentinel-password-file",
            wrong_pw.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(
        out.code, 1,
        "a wrong password must fail: {}{}",
        out.stdout, out.stderr
    );
    let out = sv(&config, &["reconcile", "--dry-run"], &pw_env);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    // check: every missing webhook secret is one failed line naming the sink
    // and the variable; everything else passes.
    let out = sv(&config, &["check"], &pw_env);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert_missing_lines(&out);
    assert!(
        out.stdout
            .contains("ok    sentinel_auth.password_file: the sentinel password is readable"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("ACL allows every command"),
        "{}",
        out.stdout
    );
    // check without the password: a failed line too, not exit 2.
    let out = sv(&config, &["check"], &[]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "FAIL  sentinel_auth.password_file: cannot read {CREDENTIAL}"
        )),
        "{}",
        out.stdout
    );
}

/// A config whose sentinels and EC2 endpoint do not exist: anything that
/// touched the network would hang or fail.
fn offline_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let yaml = ConfigYaml {
        endpoint: Some("http://127.0.0.1:9".into()),
        tables: vec!["rtb-0123".into()],
        extra: extra.to_owned(),
        ..ConfigYaml::new(vec![
            "192.0.2.1:26379".into(),
            "192.0.2.2:26379".into(),
            "192.0.2.3:26379".into(),
        ])
    }
    .yaml();
    let path = dir.join(format!("offline-{}.yaml", free_port()));
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn check_offline_validates_the_config_and_its_secrets_without_network() {
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, PW).unwrap();
    let auth = format!(
        "sentinel_auth:\n  username: {USER}\n  password_file: {}\n",
        pw_file.display()
    );

    // Good config, every secret readable: 0, quickly, no sentinel line.
    let good = offline_config(dir.path(), &format!("{auth}{HOOKS}"));
    let set = [
        (
            "SV_SHELL_UNSET_SLACK",
            "https://hooks.slack.com/services/T/B/x",
        ),
        ("SV_SHELL_UNSET_PD", "pd-key"),
        (
            "SV_SHELL_UNSET_WHSEC",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
    ];
    let out = sv(&good, &["check", "--offline"], &set);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.took < Duration::from_secs(2), "took {:?}", out.took);
    assert!(!out.stdout.contains("sentinel 192.0.2"), "{}", out.stdout);
    assert!(out.stdout.contains("0 checks failed"), "{}", out.stdout);

    // Secrets missing from this environment: 1, each named.
    let out = sv(&good, &["check", "--offline"], &[]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert_missing_lines(&out);
    assert!(out.took < Duration::from_secs(2), "took {:?}", out.took);

    // test-alert reads a sink's secrets where it sends: a missing one is that
    // sink's failure, and nothing is sent.
    let out = sv(&good, &["test-alert", "--sink", "audit"], &[]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.starts_with(
            "FAIL  audit: alerts.webhooks[2].secret_env: environment variable SV_SHELL_UNSET_WHSEC is not set after 0 attempt(s)"
        ),
        "{}",
        out.stdout
    );

    // The password file gone (the service's credential, outside it): 1.
    let gone = offline_config(
        dir.path(),
        &format!("sentinel_auth:\n  password_file: {CREDENTIAL}\n"),
    );
    let out = sv(&gone, &["check", "--offline"], &[]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "FAIL  sentinel_auth.password_file: cannot read {CREDENTIAL}"
        )),
        "{}",
        out.stdout
    );

    // A secret that is set but of the wrong shape is a config error: 2.
    let bad_whsec = [
        (
            "SV_SHELL_UNSET_SLACK",
            "https://hooks.slack.com/services/T/B/x",
        ),
        ("SV_SHELL_UNSET_PD", "pd-key"),
        ("SV_SHELL_UNSET_WHSEC", "whsec_not*base64"),
    ];
    let out = sv(&good, &["check", "--offline"], &bad_whsec);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("alerts.webhooks[2].secret_env (webhook audit)"),
        "{}",
        out.stderr
    );

    // An invalid config: 2, naming the key.
    let invalid = offline_config(dir.path(), "reconcile:\n  intervall: 30s\n");
    let out = sv(&invalid, &["check", "--offline"], &[]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("intervall"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_a_running_daemon_shows_each_sentinels_view_and_the_expected_target() {
    let rig = Rig::start(1).await;
    let http = free_port();
    let daemon = rig.start_daemon("1s", &format!("http:\n  listen: 127.0.0.1:{http}\n"));
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    let dir = rig.redis.dir.path();
    let config = dir.join("status.yaml");
    std::fs::write(
        &config,
        rig.config("1s", &format!("http:\n  listen: 127.0.0.1:{http}\n")),
    )
    .unwrap();
    let master = format!("{}:{}", rig.redis.hosts[0], rig.redis.redis_port);
    let out = eventually("status with every sentinel's view", WITHIN, || async {
        let out = sv(&config, &["status"], &[]);
        (out.code == 0 && out.stdout.matches(&format!("{master} @ epoch")).count() == 3)
            .then_some(out)
    })
    .await;
    assert!(
        out.stdout.starts_with("daemon "),
        "not the daemon's view: {}",
        out.stdout
    );
    for s in rig.redis.sentinel_addrs() {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("sentinel {s}"))
                    && l.contains(&format!("{master} @ epoch"))),
            "no line for sentinel {s}:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout
            .contains(&format!("  expected target: {}", rig.vpc.enis[0])),
        "{}",
        out.stdout
    );
    let json = sv(&config, &["status", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("status JSON");
    let m = &v["masters"][0];
    assert_eq!(m["target"], rig.vpc.enis[0].as_str(), "{v}");
    assert_eq!(m["sentinels"].as_array().map(Vec::len), Some(3), "{v}");
    rig.dump(&daemon);
}
