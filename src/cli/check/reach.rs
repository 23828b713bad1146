//! `check` for the carriers besides route tables: each is read, and the write
//! is probed where the API has DryRun (AssociateAddress; not
//! AssignPrivateIpAddresses) — towards where the address is now, so
//! that an emulator that ignores DryRun changes nothing. Route 53 has no DryRun:
//! the zone and the record are read.

use super::Checklist;
use crate::act::ec2::Ec2;
use crate::config::{MasterConfig, Target};
use crate::decide::facts::{Ec2Error, ErrorClass};
use crate::decide::plan::{carriers, Carrier, Held};

/// Reads each of the master's secondary IP, Elastic IP and DNS record, says
/// whether it carries the master's target, and probes the write permission.
pub(super) async fn check_carriers(
    r: &mut Checklist,
    ec2: &Ec2,
    name: &str,
    m: &MasterConfig,
    target: Option<&Target>,
) {
    for c in carriers(m).iter().filter(|c| c.route_table().is_none()) {
        let read = match c {
            Carrier::SecondaryIp(ip) => {
                let nodes: Vec<Target> = m
                    .nodes
                    .iter()
                    .flat_map(|n| n.values().cloned())
                    .chain(target.cloned())
                    .collect();
                ec2.read_secondary_ip(*ip, &nodes).await
            }
            Carrier::ElasticIp(a) => ec2.read_elastic_ip(a).await,
            Carrier::Dns(d) => match ec2.read_zone(d).await {
                Ok(zone) => {
                    r.ok(format!(
                        "{c} (masters.{name}.dns): hosted zone {zone} readable"
                    ));
                    ec2.read_record(d).await
                }
                Err(e) => Err(e),
            },
            Carrier::RouteTable(_) => continue,
        };
        let held = match read {
            Ok(h) => h,
            Err(e) => {
                r.fail(format!(
                    "{c} (masters.{name}.{}): {e}{}",
                    c.kind(),
                    hint(c, &e)
                ));
                continue;
            }
        };
        let state = held.describe();
        match target {
            Some(t) if held.points_at(t) => r.ok(format!("{c}: on {state} (the master's target)")),
            Some(_) => r.warn(format!(
                "{c}: on {state}, not the master's target; the daemon will move it"
            )),
            None => r.ok(format!("{c}: on {state}")),
        }
        probe(r, ec2, c, &held).await;
    }
}

/// DryRun of the write towards where the carrier is now (Route 53: none).
async fn probe(r: &mut Checklist, ec2: &Ec2, c: &Carrier, held: &Held) {
    let (op, result) = match (c, held) {
        (Carrier::SecondaryIp(_), _) => {
            r.ok(format!(
                "{c}: AssignPrivateIpAddresses/UnassignPrivateIpAddresses have no DryRun in EC2; permission not probed (grant what `iam-policy` prints)"
            ));
            return;
        }
        (Carrier::ElasticIp(a), Held::ElasticIp(Some(h))) => {
            let Some(t) = h
                .eni_id
                .clone()
                .and_then(|e| e.try_into().ok().map(Target::Eni))
            else {
                return;
            };
            (
                "ec2:AssociateAddress",
                ec2.associate_elastic_ip(a, &t, true).await,
            )
        }
        _ => return,
    };
    match result {
        Err(e) if e.code.as_deref() == Some("DryRunOperation") => {
            r.ok(format!("{c}: {op} permitted"))
        }
        Ok(()) => r.ok(format!("{c}: {op} answered (DryRun not honoured here)")),
        Err(e) if e.class == ErrorClass::Permission => {
            r.fail(format!("{c}: missing permission {op} ({e})"))
        }
        Err(e) => r.warn(format!("{c}: {op} probe inconclusive: {e}")),
    }
}

fn hint(c: &Carrier, e: &Ec2Error) -> &'static str {
    match (c, e.class) {
        (Carrier::SecondaryIp(_), ErrorClass::Permission) => {
            " (grant ec2:DescribeNetworkInterfaces)"
        }
        (Carrier::ElasticIp(_), ErrorClass::Permission) => " (grant ec2:DescribeAddresses)",
        (Carrier::Dns(_), ErrorClass::Permission) => {
            " (grant route53:GetHostedZone and route53:ListResourceRecordSets on the zone)"
        }
        _ => "",
    }
}
