//! EC2 fault paths end right on the first try (issue 10, items 1–3): a route
//! deleted by hand, a route table that is gone, a node whose ENI was replaced,
//! and private IPs that overlap across VPCs. moto is the EC2; the rig tests use
//! real redis + sentinels and the daemon as a process.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use sentinel_vip::act::ec2::Ec2;
use sentinel_vip::act::targets::Targets;
use sentinel_vip::config::{AwsConfig, MasterConfig, RouteTableId, Target};
use sentinel_vip::decide::facts::{DiscoveryMiss, ErrorClass, TargetError};
use sentinel_vip::decide::plan::CurrentRoute;
use sentinel_vip::watch::event::Addr;

const WITHIN: Duration = Duration::from_secs(45);

async fn ec2(moto: &Moto) -> Ec2 {
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    Ec2::new(&AwsConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(moto.url.clone()),
        call_timeout: Some(Duration::from_secs(10)),
        max_attempts: Some(2),
        ..Default::default()
    })
    .await
}

fn rtb(id: &str) -> RouteTableId {
    RouteTableId::try_from(id.to_owned()).expect("route table id")
}

fn eni(id: &str) -> Target {
    Target::Eni(id.to_owned().try_into().expect("eni id"))
}

fn vip() -> ipnet::IpNet {
    VIP.parse().expect("vip")
}

/// A master config without `nodes`: its targets are discovered.
fn discovery_master(tables: &[String]) -> MasterConfig {
    serde_yaml_ng::from_str(&format!(
        "vip: {VIP}\nroute_tables: [{}]\n",
        tables.join(", ")
    ))
    .expect("master config")
}

/// The rig's daemon config with the static `nodes` map taken out.
fn discovery_config(rig: &Rig, interval: &str) -> String {
    let out = ConfigYaml {
        nodes: Vec::new(),
        ..rig.config_yaml(interval)
    }
    .yaml();
    assert!(!out.contains("nodes:"), "{out}");
    out
}

// ---- item 1: the CreateRoute / ReplaceRoute fallback ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_of_a_route_deleted_by_hand_creates_it_without_an_error() {
    let moto = Moto::start();
    let vpc = Vpc::create(&moto.url, 1, 1).await;
    let ec2 = ec2(&moto).await;
    vpc.set_route(0, &vpc.enis[0]).await;
    vpc.delete_route(0).await;
    // The caller still believes the route exists: ReplaceRoute first.
    ec2.write_route(&rtb(&vpc.tables[0]), vip(), &eni(&vpc.enis[0]), false)
        .await
        .expect("ReplaceRoute on a deleted route falls back to CreateRoute");
    assert_eq!(vpc.vip_targets().await, vec![Some(vpc.enis[0].clone())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_over_an_existing_route_replaces_it_without_an_error() {
    let moto = Moto::start();
    let vpc = Vpc::create(&moto.url, 1, 1).await;
    let ec2 = ec2(&moto).await;
    let (_, subnet) = vpc.vpc_and_subnet().await;
    // moto answers RouteAlreadyExists only for an instance target (an ENI target
    // overwrites silently); EC2 answers it for both.
    let instance = vpc.create_instance(&subnet).await;
    vpc.set_route(0, &vpc.enis[0]).await;
    let target = Target::Instance(instance.clone().try_into().expect("instance id"));
    ec2.write_route(&rtb(&vpc.tables[0]), vip(), &target, true)
        .await
        .expect("CreateRoute over a route falls back to ReplaceRoute");
    let read = ec2
        .read_tables(
            &[rtb(&vpc.tables[0])].into_iter().collect(),
            &[vip()].into_iter().collect(),
        )
        .await
        .expect("read");
    assert!(read[&rtb(&vpc.tables[0])].route(&vip()).points_at(&target));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_after_routes_deleted_by_hand_creates_them_on_the_first_try() {
    let rig = Rig::start(2).await;
    // A long interval: no reconcile sees the deletion; the switch path meets it.
    let daemon = rig.start_daemon("1h", "");
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    rig.vpc.delete_route(0).await;
    rig.vpc.delete_route(1).await;
    assert_eq!(rig.vpc.vip_targets().await, vec![None, None]);

    let new = rig.redis.failover().await;
    rig.vpc.wait_all_point_at(&rig.vpc.enis[new], WITHIN).await;
    let ms = eventually(
        "the daemon to log the +switch-master write as verified",
        Duration::from_secs(10),
        || async { Some(switch_write_ms(&daemon.logs())).filter(|m| !m.is_empty()) },
    )
    .await;
    // Confirmation reads run at +0.5 s and +2 s: a failed write would be retried by then.
    daemon
        .wait_log("confirm switch", Duration::from_secs(10))
        .await;
    let logs = daemon.logs();
    eprintln!("route-deleted failover: +switch-master -> both routes written: {ms:?} ms");
    rig.dump(&daemon);
    assert!(
        !logs.contains("VIP route update failed"),
        "a write failed on the way"
    );
    assert!(
        !logs.contains("retry failed route write"),
        "a retry was needed"
    );
    assert_eq!(
        ms.len(),
        1,
        "one write caused by +switch-master, right the first time"
    );
}

// ---- item 2: a configured route table that is gone ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_route_table_is_an_error_for_that_table_and_the_others_are_read() {
    let moto = Moto::start();
    let vpc = Vpc::create(&moto.url, 3, 1).await;
    let ec2 = ec2(&moto).await;
    vpc.set_route(0, &vpc.enis[0]).await;
    vpc.client
        .delete_route_table()
        .route_table_id(&vpc.tables[2])
        .send()
        .await
        .expect("DeleteRouteTable");
    let never = "rtb-0123456789abcdef0";
    let tables: BTreeSet<RouteTableId> = vpc
        .tables
        .iter()
        .map(|t| rtb(t))
        .chain([rtb(never)])
        .collect();
    let reads = ec2
        .read_each_table(&tables, &[vip()].into_iter().collect())
        .await
        .expect("the read as a whole succeeds");
    assert_eq!(reads.len(), 4, "every table asked for has an answer");
    let first = reads[&rtb(&vpc.tables[0])].as_ref().expect("table 0 read");
    assert!(first.route(&vip()).points_at(&eni(&vpc.enis[0])));
    let second = reads[&rtb(&vpc.tables[1])].as_ref().expect("table 1 read");
    assert_eq!(second.route(&vip()), CurrentRoute::Missing);
    for gone in [vpc.tables[2].as_str(), never] {
        let e = reads[&rtb(gone)]
            .as_ref()
            .expect_err("gone table is an error");
        assert!(e.is_table_gone(), "{e}");
        assert_eq!(e.class, ErrorClass::NotFound);
        let shown = e.to_string();
        assert!(
            shown.contains(gone) && shown.contains("route_tables"),
            "{shown}"
        );
    }
    // The map-shaped read keeps working for existing callers (gone tables absent).
    let legacy = ec2
        .read_tables(&tables, &[vip()].into_iter().collect())
        .await
        .expect("read");
    assert_eq!(legacy.len(), 2);
}

// ---- item 3: discovery scoped to the tables' VPC, and healed on "target gone" ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_the_eni_in_the_route_tables_vpc_not_an_overlapping_one() {
    let moto = Moto::start();
    // Another VPC with the same CIDR and an ENI holding the same IP, created first
    // so that an unscoped lookup meets it first.
    let decoy = Vpc::create(&moto.url, 1, 1).await;
    let vpc = Vpc::create(&moto.url, 2, 1).await;
    let ec2 = ec2(&moto).await;
    let ip = "10.0.1.11";
    let unscoped = ec2
        .find_interface(ip)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(
        unscoped.eni_id.to_string(),
        decoy.enis[0],
        "precondition: unscoped lookup picks the other VPC's ENI"
    );
    let cfg = discovery_master(&vpc.tables);
    let targets = Targets::default();
    let t = targets
        .resolve(&ec2, MASTER, &cfg, &Addr::new(ip, 6379))
        .await
        .expect("resolved");
    assert_eq!(t, eni(&vpc.enis[0]));
    assert!(targets.is_cached(&Addr::new(ip, 6379)));
    // The decoy's tables resolve to the decoy's ENI: one cache, two scopes.
    let decoy_cfg = discovery_master(&decoy.tables);
    let d = targets
        .resolve(&ec2, MASTER, &decoy_cfg, &Addr::new(ip, 6379))
        .await
        .expect("resolved");
    assert_eq!(d, eni(&decoy.enis[0]));
    // An IP nobody holds: an error naming the IP and the VPC, cached briefly.
    let e = targets
        .resolve(&ec2, MASTER, &cfg, &Addr::new("10.0.1.99", 6379))
        .await
        .expect_err("nobody holds it");
    assert!(
        matches!(e, TargetError::NotFound(DiscoveryMiss::InVpcs { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("10.0.1.99"), "{e}");
    assert!(matches!(
        targets.cached(MASTER, &cfg, &Addr::new("10.0.1.99", 6379)),
        Some(Err(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_to_a_replaced_eni_says_target_gone_and_evict_finds_the_new_one() {
    let moto = Moto::start();
    let vpc = Vpc::create(&moto.url, 1, 1).await;
    let ec2 = ec2(&moto).await;
    let (_, subnet) = vpc.vpc_and_subnet().await;
    let instance = vpc.create_instance(&subnet).await;
    let cfg = discovery_master(&vpc.tables);
    let addr = Addr::new("10.0.1.11", 6379);
    let targets = Targets::default();
    let old = targets
        .resolve(&ec2, MASTER, &cfg, &addr)
        .await
        .expect("resolved");
    assert_eq!(old, eni(&vpc.enis[0]));

    let new = vpc
        .replace_eni(&vpc.enis[0], &subnet, "10.0.1.11", &instance)
        .await;
    let table = rtb(&vpc.tables[0]);
    let e = ec2
        .write_route(&table, vip(), &old, false)
        .await
        .expect_err("the old ENI is gone");
    assert!(e.is_target_gone(), "{e}");
    assert_eq!(
        e.code.as_deref(),
        Some("InvalidNetworkInterfaceID.NotFound")
    );
    let shown = e.to_string();
    assert!(
        shown.contains(&vpc.enis[0]) && shown.contains(&vpc.tables[0]),
        "{shown}"
    );

    // Still cached until evicted; then resolved again to the new ENI.
    assert_eq!(
        targets.cached(MASTER, &cfg, &addr).map(|r| r.ok()),
        Some(Some(old.clone()))
    );
    assert!(targets.evict(&addr));
    assert!(targets.cached(MASTER, &cfg, &addr).is_none());
    let healed = targets
        .resolve(&ec2, MASTER, &cfg, &addr)
        .await
        .expect("resolved");
    assert_eq!(healed, eni(&new));
    ec2.write_route(&table, vip(), &healed, false)
        .await
        .expect("write to the new ENI");
    assert_eq!(vpc.vip_targets().await, vec![Some(new)]);
}

/// Needs the controller to evict a target that a write says is gone
/// (`Ec2Error::is_target_gone` → `Targets::evict(&addr)`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_a_node_whose_eni_was_replaced_points_the_route_at_the_new_eni() {
    let rig = Rig::start(2).await;
    let (_, subnet) = rig.vpc.vpc_and_subnet().await;
    // Discovery goes by the address Sentinel reports (127.0.0.x). Decoys holding
    // the same IPs in another VPC first, then one ENI (and instance) per node in
    // the rig's VPC.
    let decoy = Vpc::create(&rig.moto.url, 1, 1).await;
    let (_, decoy_subnet) = decoy.vpc_and_subnet().await;
    for host in &rig.redis.hosts {
        decoy.create_eni(&decoy_subnet, host).await;
    }
    let mut node_eni = Vec::new();
    let mut instances = Vec::new();
    for host in &rig.redis.hosts {
        node_eni.push(rig.vpc.create_eni(&subnet, host).await);
        instances.push(rig.vpc.create_instance(&subnet).await);
    }
    let daemon = Daemon::start(rig.redis.dir.path(), &discovery_config(&rig, "2s"));
    rig.vpc.wait_all_point_at(&node_eni[0], WITHIN).await;
    rig.redis.wait_ready_for_failover(2).await;
    // Let two more reconciles run: each warms the replicas' ENIs into the cache.
    let reconciles = |logs: &str| logs.matches("majority read").count();
    let seen = reconciles(&daemon.logs());
    eventually(
        "two more reconciles (warm-up)",
        Duration::from_secs(20),
        || async { (reconciles(&daemon.logs()) >= seen + 2).then_some(()) },
    )
    .await;

    // Both replicas get a new ENI with the same private IP.
    let mut new_eni = node_eni.clone();
    for i in 1..3 {
        new_eni[i] = rig
            .vpc
            .replace_eni(&node_eni[i], &subnet, &rig.redis.hosts[i], &instances[i])
            .await;
    }
    let promoted = rig.redis.failover().await;
    let want = Some(new_eni[promoted].clone());
    let deadline = std::time::Instant::now() + WITHIN;
    while rig.vpc.vip_targets().await.iter().any(|t| *t != want) {
        if std::time::Instant::now() > deadline {
            rig.dump(&daemon);
            panic!(
                "routes {:?} never pointed at node {promoted}'s new ENI {:?} (old {})",
                rig.vpc.vip_targets().await,
                want,
                node_eni[promoted]
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = daemon.logs();
    rig.dump(&daemon);
    assert!(
        logs.contains("InvalidNetworkInterfaceID.NotFound"),
        "the write met the replaced ENI (the cache was warm): the heal path ran"
    );
}

// ---- issue 22 rule 5: an unreadable route table is an incident ----

/// A route table that cannot be read (a typo in `route_tables`: the same
/// answer as a deleted table) fires a webhook and nothing about the route
/// resolves while it lasts; once the config names the real table (SIGHUP)
/// every table reads again and the incident resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_route_table_fires_a_webhook_until_it_reads_again() {
    let rig = Rig::start(2).await;
    let hooks = Receiver::start().await;
    let config = |tables: Vec<String>| {
        ConfigYaml {
            tables,
            extra: format!(
                "alerts:\n  group_wait: 1s\n  webhooks:\n    - {{ name: gen, kind: generic, url: \"{}/generic\" }}\n",
                hooks.url
            ),
            ..rig.config_yaml("3s")
        }
        .yaml()
    };
    let typo = "rtb-0123456789abcdef0".to_owned();
    let daemon = Daemon::start(
        rig.redis.dir.path(),
        &config(vec![rig.vpc.tables[0].clone(), typo.clone()]),
    );
    let of = |name: &'static str, status: &'static str| {
        let hooks = &hooks;
        move || async move {
            hooks
                .delivered("/generic")
                .into_iter()
                .find(|h| h.body["commonLabels"]["alertname"] == name && h.body["status"] == status)
        }
    };
    let firing = eventually(
        "a firing VipRouteTableUnreadable webhook",
        WITHIN,
        of("VipRouteTableUnreadable", "firing"),
    )
    .await;
    let summary = firing.body["commonAnnotations"]["summary"]
        .as_str()
        .unwrap_or_default();
    assert!(summary.contains(&typo), "{summary}");
    // Table 0 is right (the daemon wrote it), the other cannot be read: a few
    // reads (every 3 s) later nothing has been resolved.
    eventually("table 0 to point at the master", WITHIN, || async {
        (rig.vpc.vip_targets().await[0].as_deref() == Some(rig.vpc.enis[0].as_str())).then_some(())
    })
    .await;
    let reads = daemon.logs().matches("cannot be read (deleted").count();
    eventually("three more reads", WITHIN, || async {
        (daemon.logs().matches("cannot be read (deleted").count() >= reads + 3).then_some(())
    })
    .await;
    let resolved: Vec<Hook> = hooks
        .delivered("/generic")
        .into_iter()
        .filter(|h| h.body["status"] == "resolved")
        .collect();
    assert!(
        resolved.is_empty(),
        "resolved while a table is unreadable: {resolved:#?}"
    );
    // The operator fixes the typo.
    std::fs::write(
        &daemon.config,
        config(vec![rig.vpc.tables[0].clone(), rig.vpc.tables[1].clone()]),
    )
    .expect("write config");
    daemon.signal("HUP");
    let done = eventually(
        "a resolved VipRouteTableUnreadable webhook",
        WITHIN,
        of("VipRouteTableUnreadable", "resolved"),
    )
    .await;
    assert_eq!(done.body["groupKey"], firing.body["groupKey"]);
    rig.vpc.wait_all_point_at(&rig.vpc.enis[0], WITHIN).await;
}
