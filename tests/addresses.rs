//! Addresses other than IPv4 literals (secure-links §3): sentinels and Redis
//! on IPv6 (`::1`, events print `::1 6379`) with an IPv6 VIP route
//! (`DestinationIpv6CidrBlock`), and sentinels that announce host names
//! (`resolve-hostnames yes`, `announce-hostnames yes`), matched to the static
//! `nodes` map through the resolver and case-insensitively. Every node of these
//! rigs shares one host, so each has its own port.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const WITHIN: Duration = Duration::from_secs(45);
const VIP6: &str = "fd00::10/128";

/// Redis nodes and sentinels on one host, each on its own port.
struct OneHost {
    dir: tempfile::TempDir,
    /// How sentinels and replicas name the host (`::1`, `localhost`).
    host: String,
    bind: String,
    redis_ports: Vec<u16>,
    sentinel_ports: Vec<u16>,
    _procs: Vec<Proc>,
}

impl OneHost {
    fn start(host: &str, bind: &str, names: bool) -> OneHost {
        let dir = tempfile::tempdir().expect("tempdir");
        let redis_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let sentinel_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut procs = Vec::new();
        for (i, p) in redis_ports.iter().enumerate() {
            let d = dir.path().join(format!("redis-{i}"));
            std::fs::create_dir_all(&d).expect("dir");
            let master = (i > 0).then_some((host, redis_ports[0]));
            let mut cmd = Command::new(tool("redis-server"));
            cmd.args(redis_server_args(bind, host, *p, &d, master));
            procs.push(Proc::spawn(cmd, &format!("redis-{i}")));
        }
        for p in &redis_ports {
            wait_port(bind, *p, Duration::from_secs(10), "redis-server");
        }
        for (i, p) in sentinel_ports.iter().enumerate() {
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            let hostnames = if names {
                "sentinel resolve-hostnames yes\nsentinel announce-hostnames yes\n"
            } else {
                ""
            };
            let text = SentinelConf {
                i,
                bind,
                host,
                port: *p,
                dir: dir.path(),
                monitor: Some((host, redis_ports[0])),
                extra: hostnames,
            }
            .text();
            std::fs::write(&conf, text).expect("sentinel conf");
            let mut cmd = Command::new(tool("redis-server"));
            cmd.arg(&conf).arg("--sentinel");
            procs.push(Proc::spawn(cmd, &format!("sentinel-{i}")));
        }
        for p in &sentinel_ports {
            wait_port(bind, *p, Duration::from_secs(10), "redis-sentinel");
        }
        OneHost {
            dir,
            host: host.to_owned(),
            bind: bind.to_owned(),
            redis_ports,
            sentinel_ports,
            _procs: procs,
        }
    }

    fn sentinel(&self, i: usize, args: &[&str]) -> String {
        cli(&self.bind, self.sentinel_ports[i], args)
    }

    /// The majority's master as a node index.
    fn master_index(&self) -> Option<usize> {
        let ports = (0..3).filter_map(|i| {
            let out = self.sentinel(i, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER]);
            master_addr(&out).map(|(_, port)| port)
        });
        let port = majority(ports, 3)?;
        self.redis_ports.iter().position(|p| p.to_string() == port)
    }

    async fn wait_ready(&self) {
        eventually(
            "sentinels to see both replicas and each other",
            Duration::from_secs(30),
            || async {
                (0..3)
                    .all(|i| {
                        let info = self.sentinel(i, &["SENTINEL", "MASTER", MASTER]);
                        ready_for_failover(&info, 2, 3)
                    })
                    .then_some(())
            },
        )
        .await
    }

    async fn failover(&self) -> usize {
        let before = self.master_index();
        eventually(
            "SENTINEL FAILOVER to be accepted",
            Duration::from_secs(60),
            || async {
                (self.sentinel(0, &["SENTINEL", "FAILOVER", MASTER]) == "OK").then_some(())
            },
        )
        .await;
        eventually(
            "the sentinels to agree on a new master",
            Duration::from_secs(60),
            || async { self.master_index().filter(|m| Some(*m) != before) },
        )
        .await
    }
}

async fn wait_routes(vpc: &Vpc, vip: &str, eni: &str) {
    eventually(
        &format!("every {vip} route to point at {eni}"),
        WITHIN,
        || async {
            vpc.routes_to(vip)
                .await
                .iter()
                .all(|r| r.as_deref() == Some(eni))
                .then_some(())
        },
    )
    .await
}

fn yaml(
    rig: &OneHost,
    moto: &Moto,
    vpc: &Vpc,
    sentinel_host: &str,
    vip: &str,
    node_keys: &[String],
) -> String {
    ConfigYaml {
        endpoint: Some(moto.url.clone()),
        vip: vip.to_owned(),
        tables: vpc.tables.clone(),
        nodes: node_keys.iter().cloned().zip(vpc.enis.clone()).collect(),
        interval: Some("30s".into()),
        ..ConfigYaml::new(
            rig.sentinel_ports
                .iter()
                .map(|p| format!("{sentinel_host}:{p}")),
        )
    }
    .yaml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_sentinels_and_nodes_move_an_ipv6_vip_route() {
    let rig = OneHost::start("::1", "::1", false);
    let moto = Moto::start();
    let vpc = Vpc::create(&moto.url, 2, 3).await;
    let keys: Vec<String> = rig
        .redis_ports
        .iter()
        .map(|p| format!("[::1]:{p}"))
        .collect();
    let yaml = yaml(&rig, &moto, &vpc, "[::1]", VIP6, &keys);

    // check reads the sentinels over IPv6 and names them as the config does.
    let (out, _, _) = run_check(rig.dir.path(), &yaml);
    for p in &rig.sentinel_ports {
        assert!(out.contains(&format!("sentinel [::1]:{p}")), "{out}");
    }
    assert!(!out.contains("FAIL  sentinel"), "{out}");

    let daemon = Daemon::start(rig.dir.path(), &yaml);
    wait_routes(&vpc, VIP6, &vpc.enis[0]).await;
    rig.wait_ready().await;
    let new = rig.failover().await;
    assert_ne!(new, 0);
    wait_routes(&vpc, VIP6, &vpc.enis[new]).await;
    daemon
        .wait_log("VIP route updated and verified", Duration::from_secs(5))
        .await;
    let logs = daemon.logs();
    // Events print `::1 <port>`; the daemon shows the address as the config spells it.
    assert!(
        logs.contains(&format!("[::1]:{}", rig.redis_ports[new])),
        "{logs}"
    );
    assert!(!logs.contains("panicked"), "{logs}");
    assert!(!logs.contains("not in masters"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_names_announced_by_sentinel_are_resolved_and_matched_without_case() {
    // Sentinel reports every node as `localhost <port>`.
    let rig = OneHost::start("localhost", "127.0.0.1", true);
    let moto = Moto::start();
    let vpc = Vpc::create(&moto.url, 2, 3).await;
    let p = &rig.redis_ports;
    // Node 0 keyed by its name in another case, node 1 by the IP its name
    // resolves to, node 2 by name without a port.
    let keys = vec![
        format!("LocalHost:{}", p[0]),
        format!("127.0.0.1:{}", p[1]),
        format!("127.0.0.1:{}", p[2]),
    ];
    let yaml = yaml(&rig, &moto, &vpc, "LOCALHOST", "172.16.0.10/32", &keys);
    let daemon = Daemon::start(rig.dir.path(), &yaml);
    wait_routes(&vpc, VIP, &vpc.enis[0]).await;
    rig.wait_ready().await;
    let replicas = rig.sentinel(0, &["SENTINEL", "REPLICAS", MASTER]);
    assert!(
        replicas.contains("localhost"),
        "sentinel should name replicas by host name: {replicas}"
    );
    let new = rig.failover().await;
    wait_routes(&vpc, VIP, &vpc.enis[new]).await;
    // And back: the other way round exercises the other kind of key.
    let again = rig.failover().await;
    wait_routes(&vpc, VIP, &vpc.enis[again]).await;
    let logs = daemon.logs();
    assert!(logs.contains(&format!("localhost:{}", p[again])), "{logs}");
    assert!(!logs.contains("not in masters"), "{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
    let _ = &rig.host;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_resolves_a_host_name_to_the_eni_holding_its_address() {
    use sentinel_vip::act::resolve::{fixed, Names};
    use sentinel_vip::act::targets::Targets;
    let moto = Moto::start();
    let vpc = Vpc::create(&moto.url, 1, 3).await;
    let yaml = ConfigYaml {
        endpoint: Some(moto.url.clone()),
        tables: vec![vpc.tables[0].clone()],
        ..ConfigYaml::new(["127.0.0.2:26379".to_owned()])
    }
    .yaml();
    let cfg = sentinel_vip::config::Config::parse(&yaml).expect("config");
    let ec2 = sentinel_vip::act::ec2::Ec2::for_config(&cfg).await;
    let names = Names::new(fixed([
        (
            "redis-b.internal".to_owned(),
            vec!["10.0.1.12".parse().unwrap()],
        ),
        (
            "redis-x.internal".to_owned(),
            vec!["10.0.9.9".parse().unwrap()],
        ),
    ]));
    let targets = Targets::with_names(std::sync::Arc::new(std::time::Instant::now), names);
    let m = &cfg.masters[MASTER];
    let b = sentinel_vip::addr::Addr::new("Redis-B.Internal", 6379);
    let t = targets.resolve(&ec2, MASTER, m, &b).await.expect("found");
    assert_eq!(t.to_string(), vpc.enis[1]);
    assert!(
        targets.is_cached(&b),
        "the switch path finds it without I/O"
    );
    let e = targets
        .resolve(
            &ec2,
            MASTER,
            m,
            &sentinel_vip::addr::Addr::new("redis-x.internal", 6379),
        )
        .await
        .expect_err("no ENI holds 10.0.9.9");
    assert!(e.to_string().contains("10.0.9.9"), "{e}");
    let e = targets
        .resolve(
            &ec2,
            MASTER,
            m,
            &sentinel_vip::addr::Addr::new("nowhere.internal", 6379),
        )
        .await
        .expect_err("does not resolve");
    assert!(e.to_string().contains("does not resolve"), "{e}");
}
