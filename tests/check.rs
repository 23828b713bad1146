//! `sentinel-vip check` checks what the README says it checks: source/dest
//! check on every node the VIP can move to (ENIs too, replicas too, static or
//! discovered), write permission where the VIP route does not exist yet (a
//! DryRun CreateRoute only where the endpoint honours DryRun: moto performs a
//! DryRun write, so there nothing is sent), and a VIP wider than one address.

mod common;

use aws_sdk_ec2::types::AttributeBooleanValue;
use common::*;

async fn set_source_dest(vpc: &Vpc, eni: &str, on: bool) {
    vpc.client
        .modify_network_interface_attribute()
        .network_interface_id(eni)
        .source_dest_check(AttributeBooleanValue::builder().value(on).build())
        .send()
        .await
        .expect("ModifyNetworkInterfaceAttribute");
}

fn line<'a>(out: &'a str, starts: &str, has: &str) -> Option<&'a str> {
    out.lines()
        .find(|l| l.starts_with(starts) && l.contains(has))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_source_dest_on_every_node_and_never_writes_a_missing_route() {
    let rig = Rig::start(2).await;
    rig.redis.wait_ready_for_failover(2).await;
    let dir = rig.redis.dir.path();
    let port = rig.redis.redis_port;
    // Static nodes: ENIs 0 and 2 are right, ENI 1 (a replica, not the master)
    // still has source/dest check on.
    set_source_dest(&rig.vpc, &rig.vpc.enis[0], false).await;
    set_source_dest(&rig.vpc, &rig.vpc.enis[2], false).await;
    let (out, _, _) = run_check(dir, &rig.config("30s", ""));
    let bad = &rig.vpc.enis[1];
    assert!(
        line(
            &out,
            "warn  master mymaster: source/dest check is ON for",
            &format!("{bad} (node {}:{port})", rig.redis.hosts[1])
        )
        .is_some(),
        "{out}"
    );
    for i in [0, 2] {
        let want = format!(
            "ok    master mymaster: source/dest check is off for {} (node {}:{port})",
            rig.vpc.enis[i], rig.redis.hosts[i]
        );
        assert!(out.contains(&want), "want {want}\n{out}");
    }

    // No VIP route in any table yet (a first deployment): moto ignores DryRun,
    // so CreateRoute is not sent, the line says so, and no route appears.
    for t in &rig.vpc.tables {
        assert!(
            line(
                &out,
                "warn  route table",
                &format!("{t}: ec2:CreateRoute not probed: this EC2 endpoint ignores DryRun")
            )
            .is_some(),
            "{out}"
        );
    }
    assert_eq!(
        rig.vpc.vip_targets().await,
        vec![None, None],
        "check wrote a route"
    );

    // Discovery (no `nodes`): the master and the replicas the sentinels report
    // are resolved to their ENIs by private IP, each one checked.
    let (_, subnet) = rig.vpc.vpc_and_subnet().await;
    let mut found = Vec::new();
    for (i, host) in rig.redis.hosts.iter().enumerate() {
        let eni = rig.vpc.create_eni(&subnet, host).await;
        set_source_dest(&rig.vpc, &eni, i == 2).await;
        found.push(eni);
    }
    let yaml = ConfigYaml {
        nodes: Vec::new(),
        ..rig.config_yaml("30s")
    }
    .yaml();
    let (out, _, _) = run_check(dir, &yaml);
    let replica = format!("{} (replica {}:{port})", found[2], rig.redis.hosts[2]);
    assert!(
        line(
            &out,
            "warn  master mymaster: source/dest check is ON for",
            &replica
        )
        .is_some(),
        "{out}"
    );
    for (i, role) in [(0, "master"), (1, "replica")] {
        let want = format!(
            "ok    master mymaster: source/dest check is off for {} ({role} {}:{port})",
            found[i], rig.redis.hosts[i]
        );
        assert!(out.contains(&want), "want {want}\n{out}");
    }
    assert_eq!(
        rig.vpc.vip_targets().await,
        vec![None, None],
        "check wrote a route"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_for_a_vip_wider_than_one_address() {
    let rig = Rig::start(1).await;
    let dir = rig.redis.dir.path();
    let wide = ConfigYaml {
        vip: "172.16.0.8/29".into(),
        ..rig.config_yaml("30s")
    }
    .yaml();
    let (out, _, _) = run_check(dir, &wide);
    assert!(
        out.contains("warn  masters.mymaster.vip: 172.16.0.8/29 is wider than one address"),
        "{out}"
    );
    let (out, _, _) = run_check(dir, &rig.config("30s", ""));
    assert!(!out.contains("wider than one address"), "{out}");
}
