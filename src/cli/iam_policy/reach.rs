//! The least privilege of the carriers besides route tables, per kind. They go
//! through the base principal (`aws.assume_role_arn`, else the default
//! credentials), as every call that names no route table does.
//!
//! | kind | actions | resource |
//! |---|---|---|
//! | `secondary_ip` | `ec2:AssignPrivateIpAddresses`, `ec2:UnassignPrivateIpAddresses` (+ `ec2:DescribeNetworkInterfaces`) | the account's network interfaces (which ENI is the master's is known only at failover) |
//! | `elastic_ip` | `ec2:AssociateAddress` (+ `ec2:DescribeAddresses`) | that Elastic IP and the account's network interfaces / instances |
//! | `dns` | `route53:ChangeResourceRecordSets` (that record name, A/AAAA only), `route53:ListResourceRecordSets`, `route53:GetHostedZone` (`check`) (+ `ec2:DescribeNetworkInterfaces`: the ENI's private IP) | that hosted zone only |

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::config::Config;

/// Describe actions (Resource `*`) and the write statements the config's
/// secondary IPs, Elastic IPs and DNS records need.
pub(super) fn statements(cfg: &Config, region: &str) -> (Vec<&'static str>, Vec<Value>) {
    let p = super::partition(region);
    let ms = || cfg.masters.values();
    let mut describe = Vec::new();
    let mut out = Vec::new();
    let ip = ms().any(|m| m.secondary_ip.is_some());
    let eips: BTreeSet<String> = ms()
        .filter_map(|m| m.elastic_ip.as_ref().map(|a| a.to_string()))
        .collect();
    let zones: BTreeSet<(String, String)> = ms()
        .filter_map(|m| m.dns.as_ref())
        .map(|d| (d.zone_id.to_string(), d.name.clone()))
        .collect();
    let enis = format!("arn:{p}:ec2:{region}:*:network-interface/*");
    if ip || !zones.is_empty() {
        describe.push("ec2:DescribeNetworkInterfaces");
    }
    if ip {
        out.push(json!({
            "Sid": "MoveTheSecondaryIp",
            "Effect": "Allow",
            "Action": ["ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"],
            "Resource": [enis],
        }));
    }
    if !eips.is_empty() {
        describe.push("ec2:DescribeAddresses");
        let mut res: Vec<String> = eips
            .iter()
            .map(|a| format!("arn:{p}:ec2:{region}:*:elastic-ip/{a}"))
            .collect();
        res.push(enis.clone());
        res.push(format!("arn:{p}:ec2:{region}:*:instance/*"));
        out.push(json!({
            "Sid": "MoveTheElasticIp",
            "Effect": "Allow",
            "Action": ["ec2:AssociateAddress"],
            "Resource": res,
        }));
    }
    let zone_ids: BTreeSet<&str> = zones.iter().map(|(z, _)| z.as_str()).collect();
    if !zone_ids.is_empty() {
        let arns: Vec<String> = zone_ids
            .iter()
            .map(|z| format!("arn:{p}:route53:::hostedzone/{z}"))
            .collect();
        let names: BTreeSet<&str> = zones.iter().map(|(_, n)| n.as_str()).collect();
        out.push(json!({
            "Sid": "UpsertTheMasterRecord",
            "Effect": "Allow",
            "Action": ["route53:ChangeResourceRecordSets"],
            "Resource": arns,
            "Condition": {
                "ForAllValues:StringEquals": {
                    "route53:ChangeResourceRecordSetsNormalizedRecordNames": names,
                    "route53:ChangeResourceRecordSetsRecordTypes": ["A", "AAAA"],
                    "route53:ChangeResourceRecordSetsActions": ["UPSERT"],
                }
            }
        }));
        out.push(json!({
            "Sid": "ReadTheMasterRecord",
            "Effect": "Allow",
            "Action": ["route53:ListResourceRecordSets", "route53:GetHostedZone"],
            "Resource": arns,
        }));
    }
    (describe, out)
}
