//! The carriers of a master's address, read and written each the way its API
//! wants (`decide::plan` judges them all alike: keep or replace per carrier,
//! read back). Route tables are read for every master at once
//! ([`Ec2::read_each_table`]); the other kinds are read here, per master.

use std::collections::{BTreeSet, HashMap};

use ipnet::IpNet;

use crate::act::ec2::Ec2;
use crate::act::targets::Targets;
use crate::config::{MasterConfig, Target};
use crate::decide::facts::{CarrierReads, Ec2Error};
use crate::decide::plan::{carriers, Carrier, Held, RouteAction};
use crate::watch::event::Addr;

/// Whether `m` has carriers besides route tables.
pub fn has_others(m: &MasterConfig) -> bool {
    m.secondary_ip.is_some() || m.elastic_ip.is_some() || m.dns.is_some()
}

/// The targets of the master's nodes known without I/O: its static `nodes`,
/// and the cached targets of `addrs` (the master and replicas the sentinels
/// named). A secondary IP is looked for on each of them.
pub fn node_targets<'a>(
    targets: &Targets,
    name: &str,
    m: &MasterConfig,
    addrs: impl IntoIterator<Item = &'a Addr>,
) -> Vec<Target> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    let mut v = Vec::new();
    let mut add = |t: Target| {
        if out.insert(t.to_string()) {
            v.push(t);
        }
    };
    for t in m.nodes.iter().flat_map(|n| n.values()) {
        add(t.clone());
    }
    for a in addrs {
        if let Some(Ok(t)) = targets.cached(name, m, a) {
            add(t);
        }
    }
    v
}

/// Reads every carrier of `m` but its route tables, at once; `nodes` are the
/// master's nodes' targets ([`node_targets`]).
pub async fn read_others(ec2: &Ec2, m: &MasterConfig, nodes: &[Target]) -> CarrierReads {
    let others: Vec<Carrier> = carriers(m)
        .into_iter()
        .filter(|c| c.route_table().is_none())
        .collect();
    let reads = futures::future::join_all(others.into_iter().map(|c| async move {
        let r = read_other(ec2, &c, nodes).await;
        (c, r)
    }));
    // A DNS write needs the private IP of the new master's ENI: looked up
    // now, beside the reads (once per node: cached), so that a failover's
    // UPSERT is its only round trip.
    let warm = async {
        if m.dns.is_some() {
            futures::future::join_all(nodes.iter().map(|t| ec2.interface_of(t))).await;
        }
    };
    let (reads, ()) = tokio::join!(reads, warm);
    reads.into_iter().collect()
}

async fn read_other(ec2: &Ec2, c: &Carrier, nodes: &[Target]) -> Result<Held, Ec2Error> {
    match c {
        Carrier::RouteTable(t) => Err(Ec2Error {
            operation: "DescribeRouteTables",
            subject: format!("route table {t}"),
            class: crate::decide::facts::ErrorClass::Refused,
            code: None,
            message: "route tables are read with the others of every master".into(),
        }),
        Carrier::SecondaryIp(ip) => ec2.read_secondary_ip(*ip, nodes).await,
        Carrier::ElasticIp(a) => ec2.read_elastic_ip(a).await,
        Carrier::Dns(d) => ec2.read_record(d).await,
    }
}

/// Every carrier of `m` as it reads now (route tables included), for the
/// read-back after a write: `Err` when the read failed as a whole.
pub async fn read_back(
    ec2: &Ec2,
    m: &MasterConfig,
    nodes: &[Target],
) -> Result<HashMap<Carrier, Held>, Ec2Error> {
    let tables: BTreeSet<_> = m.route_tables.iter().cloned().collect();
    let cidrs: BTreeSet<IpNet> = m.vip.iter().map(|v| v.0).collect();
    let routes = async {
        if tables.is_empty() {
            return Ok(HashMap::new());
        }
        ec2.read_tables(&tables, &cidrs).await
    };
    let (routes, others) = tokio::join!(routes, read_others(ec2, m, nodes));
    let mut held: HashMap<Carrier, Held> = HashMap::new();
    if let Some(vip) = m.vip {
        for (t, r) in routes? {
            held.insert(Carrier::RouteTable(t), r.route(&vip.0).into());
        }
    }
    for (c, r) in others {
        held.insert(c, r?);
    }
    Ok(held)
}

/// The nodes a write reads a secondary IP back on: the target, the ENIs the
/// last read found holding it, and the static `nodes`.
pub fn write_nodes(
    m: &MasterConfig,
    target: &Target,
    known: &HashMap<Carrier, Held>,
) -> Vec<Target> {
    let mut v = vec![target.clone()];
    for h in known.values() {
        for e in h.other_holders(target) {
            if let Ok(e) = crate::config::EniId::try_from(e) {
                v.push(Target::Eni(e));
            }
        }
    }
    v.extend(m.nodes.iter().flat_map(|n| n.values()).cloned());
    v
}

/// Brings one carrier to `target` as `action` says: Ok(true) written,
/// Ok(false) already right. `addr` is the master's address as Sentinel names
/// it (an IPv6 one asks for an AAAA record); `known` is the carrier as last read.
pub async fn write(
    ec2: &Ec2,
    m: &MasterConfig,
    c: &Carrier,
    target: &Target,
    addr: &Addr,
    action: RouteAction,
    known: Option<&Held>,
) -> Result<bool, Ec2Error> {
    if action == RouteAction::Keep {
        return Ok(false);
    }
    match c {
        Carrier::RouteTable(t) => {
            let Some(vip) = m.vip else {
                return Err(Ec2Error {
                    operation: "ReplaceRoute",
                    subject: format!("route table {t}"),
                    class: crate::decide::facts::ErrorClass::Refused,
                    code: None,
                    message: "no vip configured for this master".into(),
                });
            };
            ec2.write_route(t, vip.0, target, action == RouteAction::Create)
                .await?;
        }
        Carrier::SecondaryIp(ip) => {
            let eni = match target {
                Target::Eni(e) => e.as_str().to_owned(),
                Target::Instance(_) => ec2.interface_of(target).await?.eni_id,
            };
            let others = known.map(|k| k.other_holders(target)).unwrap_or_default();
            ec2.move_secondary_ip(*ip, &eni, &others).await?;
        }
        Carrier::ElasticIp(a) => ec2.associate_elastic_ip(a, target, false).await?,
        Carrier::Dns(d) => {
            let i = ec2.interface_of(target).await?;
            ec2.upsert_record(d, &i, addr).await?;
        }
    }
    Ok(true)
}
