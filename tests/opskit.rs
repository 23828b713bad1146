//! ops-kit: what an operator plugs in on day one, each proven on the rig.
//!
//! - `contrib/prometheus`: `promtool check rules` and `promtool test rules`;
//! - every PromQL expression in the rules and the Grafana dashboard names only
//!   metrics a running daemon exports (no panel or rule that can never show data);
//! - `sentinel-vip iam-policy` against moto (tables' real ARNs, owner account);
//! - `aws.assume_role_arn` / `masters.<name>.assume_role_arn` on moto's STS, whose
//!   assumed-role credentials see only the role's account (moto is multi-account):
//!   tables created there are reachable only through the role.
//!
//! Missing tools (promtool, moto, redis) are failures naming the setup command.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const WITHIN: Duration = Duration::from_secs(45);
const ROLE: &str = "arn:aws:iam::111111111111:role/vip-mover";
const ROLE_ACCOUNT: &str = "111111111111";
/// moto's account for the plain `testing` credentials.
const MOTO_ACCOUNT: &str = "123456789012";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn promtool() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
        .expect("promtool missing: run scripts/setup.sh (apt installs prometheus)")
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn alerting_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = repo().join("contrib/prometheus");
    let rules = dir.join("sentinel-vip.rules.yml");
    let out = run_ok(
        Command::new(promtool())
            .args(["check", "rules"])
            .arg(&rules),
    );
    assert!(out.contains("SUCCESS"), "{out}");
    let tests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("_test.yml"))
        .collect();
    assert!(!tests.is_empty(), "no *_test.yml in {}", dir.display());
    // promtool resolves `rule_files` relative to the test file's directory.
    let out = run_ok(
        Command::new(promtool())
            .current_dir(&dir)
            .args(["test", "rules"])
            .args(&tests),
    );
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert of the rules file has a test that expects it to fire.
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    let tests_text: String = tests
        .iter()
        .map(|t| std::fs::read_to_string(t).unwrap())
        .collect();
    for alert in rules_text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        let fires = tests_text
            .split("alertname: ")
            .skip(1)
            .any(|chunk| chunk.starts_with(alert) && chunk.contains("exp_labels"));
        assert!(fires, "no test where {alert} fires");
    }
}

/// Metric names in a PromQL expression: identifiers that start with
/// `sentinel_vip_`, or are `up`, outside quoted strings (label values) and
/// outside `{...}` (label names in a matcher).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    let mut in_matcher = false;
    while i < b.len() {
        let c = b[i];
        if c == b'{' || c == b'}' {
            in_matcher = c == b'{';
            i += 1;
            continue;
        }
        if c == b'"' || c == b'\'' || c == b'`' {
            i += 1;
            while i < b.len() && b[i] != c {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let word = &expr[start..i];
            if !in_matcher && (word.starts_with("sentinel_vip_") || word == "up") {
                out.insert(word.to_owned());
            }
            continue;
        }
        i += 1;
    }
    out
}

/// Every string under an `expr`, `query` or `definition` key in the dashboard.
fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        out.push(s.clone())
                    }
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

fn rule_exprs(yaml: &str) -> Vec<String> {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("rules YAML");
    v["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").iter())
        .map(|r| r["expr"].as_str().expect("expr").to_owned())
        .collect()
}

/// Names a scrape exports: sample names, and every family declared by
/// `# TYPE` (a family with no sample yet, e.g. drops before the first drop, is
/// still exported) with its histogram suffixes.
fn exported(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (Some(name), Some(kind)) = (it.next(), it.next()) else {
                continue;
            };
            names.insert(name.to_owned());
            match kind {
                "histogram" => {
                    for s in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{s}"));
                    }
                }
                "counter" if !name.ends_with("_total") => {
                    names.insert(format!("{name}_total"));
                }
                _ => {}
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

#[test]
fn metric_name_extraction_skips_labels_and_strings() {
    let got = metric_names(
        r#"sum by (sentinel) (rate(sentinel_vip_events_total{type="+switch-master", sentinel_vip_x!~"sentinel_vip_nope"}[5m])) / up{job="sentinel-vip"} and sentinel_vip_no_majority == 1 unless sentinel_vip_incidents_open != 0"#,
    );
    let want: BTreeSet<String> = [
        "sentinel_vip_events_total",
        "up",
        "sentinel_vip_no_majority",
        "sentinel_vip_incidents_open",
    ]
    .map(String::from)
    .into();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_promql_expression_names_a_metric_the_daemon_exports() {
    let mut exprs = Vec::new();
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("contrib/grafana/sentinel-vip.json")).unwrap(),
    )
    .expect("dashboard JSON");
    dashboard_exprs(&dash, &mut exprs);
    let dash_count = exprs.len();
    assert!(
        dash_count >= 14,
        "only {dash_count} expressions in the dashboard"
    );
    exprs.extend(rule_exprs(
        &std::fs::read_to_string(repo().join("contrib/prometheus/sentinel-vip.rules.yml")).unwrap(),
    ));

    let rig = Rig::start(1).await;
    let http = free_port();
    let daemon = rig.start_daemon("30s", &format!("http:\n  listen: 127.0.0.1:{http}\n"));
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    let url = format!("http://127.0.0.1:{http}/metrics");
    let scrape = eventually("a reconcile and events in /metrics", WITHIN, || async {
        let m = http_get(&url).await.ok()?.text().await.ok()?;
        (m.contains("sentinel_vip_events_total{") && m.contains("sentinel_vip_reconciles_total{"))
            .then_some(m)
    })
    .await;
    let have = exported(&scrape);
    let mut missing = Vec::new();
    let mut named = BTreeSet::new();
    for e in &exprs {
        for name in metric_names(e) {
            // `up` is made by Prometheus for every target, never by the target.
            if name != "up" && !have.contains(&name) {
                missing.push(format!("{name} (in `{}`)", e.trim()));
            }
            named.insert(name);
        }
    }
    if !missing.is_empty() {
        rig.dump(&daemon);
    }
    assert!(
        missing.is_empty(),
        "not exported by the daemon:\n{}\n\nscrape:\n{scrape}",
        missing.join("\n")
    );
    // The dashboard and rules cover every family the daemon exports.
    let families: BTreeSet<&str> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for f in families {
        assert!(
            named.iter().any(|n| n.starts_with(f)),
            "metric {f} is in no panel and no rule"
        );
    }
}

/// Two nodes (10.0.1.11 and .12) on `enis`; one sentinel that is never dialled.
fn static_config(moto: &str, tables: &[String], enis: &[String]) -> ConfigYaml {
    ConfigYaml {
        endpoint: Some(moto.to_owned()),
        tables: tables.to_vec(),
        nodes: vec![
            ("10.0.1.11:6379".into(), enis[0].clone()),
            ("10.0.1.12:6379".into(), enis[1].clone()),
        ],
        ..ConfigYaml::new(["127.0.0.2:26379".to_owned()])
    }
}

fn iam_policy(config: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin())
        .args(["iam-policy", "--config"])
        .arg(config)
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .expect("iam-policy runs");
    assert!(
        out.status.success(),
        "iam-policy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("iam-policy prints JSON")
}

fn actions(doc: &serde_json::Value) -> BTreeSet<String> {
    doc["Statement"]
        .as_array()
        .expect("Statement")
        .iter()
        .flat_map(|s| s["Action"].as_array().expect("Action").iter())
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

/// The tables' ARNs as `iam-policy` lists them (sorted by table id).
fn arns(account: &str, tables: &[String]) -> serde_json::Value {
    tables
        .iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|t| format!("arn:aws:ec2:us-east-1:{account}:route-table/{t}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_policy_names_the_configs_tables_and_only_the_describes_it_needs() {
    let moto = Moto::start();
    let vpc = Vpc::create(&moto.url, 2, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("static.yaml");
    let static_nodes = static_config(&moto.url, &vpc.tables, &vpc.enis);
    std::fs::write(&config, static_nodes.yaml()).unwrap();

    let p = iam_policy(&config, &[]);
    let writes = &p["Statement"][1];
    assert_eq!(
        writes["Action"],
        serde_json::json!(["ec2:ReplaceRoute", "ec2:CreateRoute"])
    );
    assert_eq!(writes["Resource"], arns(MOTO_ACCOUNT, &vpc.tables), "{p:#}");
    let a = actions(&p);
    assert!(a.contains("ec2:DescribeRouteTables"), "{a:?}");
    assert!(
        !a.contains("ec2:DescribeNetworkInterfaces"),
        "static nodes: {a:?}"
    );
    assert!(
        !a.contains("ec2:DescribeInstances"),
        "no instance targets: {a:?}"
    );

    let p = iam_policy(&config, &["--account", "999988887777"]);
    assert_eq!(
        p["Statement"][1]["Resource"],
        arns("999988887777", &vpc.tables)
    );

    // Without `nodes` the target is discovered by private IP.
    let discovery = dir.path().join("discovery.yaml");
    let no_nodes = ConfigYaml {
        nodes: Vec::new(),
        ..static_nodes
    };
    std::fs::write(&discovery, no_nodes.yaml()).unwrap();
    let a = actions(&iam_policy(&discovery, &[]));
    assert!(a.contains("ec2:DescribeNetworkInterfaces"), "{a:?}");

    // A table that does not exist: no guessed ARN, an error that says what to do.
    let gone = dir.path().join("gone.yaml");
    let dead = ["rtb-0000000000000dead".to_owned()];
    std::fs::write(&gone, static_config(&moto.url, &dead, &vpc.enis).yaml()).unwrap();
    let out = Command::new(bin())
        .args(["iam-policy", "--config"])
        .arg(&gone)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--account"), "{err}");
}

/// A VPC with `tables` route tables and one ENI per Redis node, created in the
/// account of `role` (moto gives assumed-role credentials that account).
async fn vpc_in_role_account(url: &str, role: &str, tables: usize) -> Vpc {
    let base = sdk_config(url).await;
    let provider = aws_config::sts::AssumeRoleProvider::builder(role)
        .configure(&base)
        .session_name("opskit-setup")
        .build()
        .await;
    let conf = base
        .to_builder()
        .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
            provider,
        ))
        .build();
    Vpc::create_with(aws_sdk_ec2::Client::new(&conf), tables, 3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_tables_in_another_account_are_moved_through_a_cached_assumed_role() {
    let moto = Moto::start();
    let vpc = vpc_in_role_account(&moto.url, ROLE, 2).await;
    let redis = Redis::start(3, 3);
    // The tables exist only in the role's account: the default credentials cannot see them.
    let plain = ec2_client(&moto.url).await;
    assert!(plain
        .describe_route_tables()
        .route_table_ids(&vpc.tables[0])
        .send()
        .await
        .is_err());

    // Per master: `check` names the role for each table and reads them.
    let per_master = ConfigYaml {
        master_extra: format!("    assume_role_arn: {ROLE}\n"),
        ..ConfigYaml::rig(&redis, &moto.url, &vpc, "1s")
    }
    .yaml();
    let dir = redis.dir.path();
    let cfg = dir.join("per-master.yaml");
    std::fs::write(&cfg, &per_master).unwrap();
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(&cfg)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for t in &vpc.tables {
        assert!(
            text.contains(&format!("ok    route table {t}: reached as role {ROLE}")),
            "{text}"
        );
        assert!(
            !text.contains(&format!("route table {t} (masters.")),
            "{text}"
        );
    }
    assert!(out.status.success(), "check failed:\n{text}");
    // iam-policy reads the owner through the role too.
    let p = iam_policy(&cfg, &[]);
    assert_eq!(
        p["roles"][ROLE]["Statement"][1]["Resource"],
        arns(ROLE_ACCOUNT, &vpc.tables),
        "{p:#}"
    );
    assert!(p["default_credentials"]
        .to_string()
        .contains("sts:AssumeRole"));

    // For every call: the daemon moves the route, and assumes the role once
    // however many reconciles (each a DescribeRouteTables) it runs.
    let http = free_port();
    let global = ConfigYaml {
        aws_extra: format!("  assume_role_arn: {ROLE}\n"),
        extra: format!("http:\n  listen: 127.0.0.1:{http}\n"),
        ..ConfigYaml::rig(&redis, &moto.url, &vpc, "1s")
    }
    .yaml();
    let daemon = Daemon::start(dir, &global);
    let master = redis.master_index().expect("a master");
    vpc.wait_all_point_at(&vpc.enis[master], WITHIN).await;
    vpc.set_route(0, &vpc.enis[(master + 1) % 3]).await;
    vpc.wait_all_point_at(&vpc.enis[master], WITHIN).await;
    let url = format!("http://127.0.0.1:{http}/metrics");
    let reads = eventually("5 DescribeRouteTables calls", WITHIN, || async {
        let m = http_get(&url).await.ok()?.text().await.ok()?;
        let n: f64 = m
            .lines()
            .find(|l| {
                l.starts_with("sentinel_vip_ec2_calls_total{")
                    && l.contains("DescribeRouteTables")
                    && l.contains("\"ok\"")
            })?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()?;
        (n >= 5.0).then_some(n)
    })
    .await;
    let logs = daemon.logs();
    let assumed = logs.matches("assumed role").count();
    if assumed != 1 {
        eprintln!("---- daemon log ----\n{logs}");
    }
    assert_eq!(
        assumed, 1,
        "one STS session for {reads} DescribeRouteTables calls"
    );
    assert!(logs.contains(ROLE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_when_a_table_is_in_another_vpc_than_the_nodes() {
    let moto = Moto::start();
    let vpc = Vpc::create(&moto.url, 1, 2).await;
    let other_vpc = vpc
        .client
        .create_vpc()
        .cidr_block("10.9.0.0/16")
        .send()
        .await
        .expect("CreateVpc")
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_owned();
    let foreign = vpc
        .client
        .create_route_table()
        .vpc_id(&other_vpc)
        .send()
        .await
        .expect("CreateRouteTable")
        .route_table()
        .and_then(|t| t.route_table_id())
        .expect("rtb")
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("two-vpcs.yaml");
    let tables = [vpc.tables[0].clone(), foreign.clone()];
    std::fs::write(&config, static_config(&moto.url, &tables, &vpc.enis).yaml()).unwrap();
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(&config)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "warn  route table {foreign}: in {other_vpc}, but the nodes of masters.mymaster are in"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("ok    route table {}: same VPC", vpc.tables[0])),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "ok    route table {}: reached with the default credentials",
            vpc.tables[0]
        )),
        "{text}"
    );
}
