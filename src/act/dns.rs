//! A Route 53 record that names the master: UPSERT of an A record (AAAA when
//! Sentinel names the master by an IPv6 address) whose value is the **private
//! IP of the master's ENI** as EC2 reports it — so it holds when Sentinel
//! announces host names or addresses that are not the ENI's. Read back with
//! ListResourceRecordSets; each value is mapped to the ENI whose private IP it is.
//!
//! Route 53 has no DryRun: `check` reads the zone and the record instead.

use std::net::IpAddr;

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};

use crate::act::ec2::{checked, Ec2, Interface};
use crate::config::DnsRecord;
use crate::decide::facts::{Ec2Error, ErrorClass};
use crate::decide::plan::Held;
use crate::watch::event::Addr;

fn subject(d: &DnsRecord) -> String {
    format!("record {} in hosted zone {}", d.name, d.zone_id)
}

fn refused(operation: &'static str, d: &DnsRecord, message: String) -> Ec2Error {
    Ec2Error {
        operation,
        subject: subject(d),
        class: ErrorClass::Refused,
        code: None,
        message,
    }
}

impl Ec2 {
    /// The record's A/AAAA values, each with the ENI whose private IP it is.
    pub async fn read_record(&self, d: &DnsRecord) -> Result<Held, Ec2Error> {
        let r = self
            .route53()
            .list_resource_record_sets()
            .hosted_zone_id(d.zone_id.as_str())
            .start_record_name(&d.name)
            .max_items(10)
            .send()
            .await;
        let out = checked("ListResourceRecordSets", || subject(d), r)?;
        let values: Vec<IpAddr> = out
            .resource_record_sets()
            .iter()
            .filter(|s| s.name().trim_end_matches('.').eq_ignore_ascii_case(&d.name))
            .filter(|s| matches!(s.r#type(), RrType::A | RrType::Aaaa))
            .flat_map(|s| s.resource_records())
            .filter_map(|v| v.value().parse().ok())
            .collect();
        let holders = futures::future::join_all(values.iter().map(|ip| async move {
            let found = self.holders_of(*ip).await?;
            Ok::<_, Ec2Error>(
                found
                    .into_iter()
                    .find(|i| i.private_ip == Some(*ip) || i.ipv6 == Some(*ip))
                    .map(|i| i.holder()),
            )
        }))
        .await;
        let mut held = Vec::new();
        for (ip, h) in values.into_iter().zip(holders) {
            held.push((ip, h?));
        }
        Ok(Held::Dns(held))
    }

    /// The hosted zone's name (`check`: the zone is there and readable).
    pub async fn read_zone(&self, d: &DnsRecord) -> Result<String, Ec2Error> {
        let r = self
            .route53()
            .get_hosted_zone()
            .id(d.zone_id.as_str())
            .send()
            .await;
        let out = checked("GetHostedZone", || subject(d), r)?;
        Ok(out
            .hosted_zone()
            .map(|z| format!("{} ({})", d.zone_id, z.name()))
            .unwrap_or_else(|| d.zone_id.to_string()))
    }

    /// UPSERTs the record with the private IP of `eni` (its IPv6 address and
    /// an AAAA record when Sentinel names the master by an IPv6 address).
    pub async fn upsert_record(
        &self,
        d: &DnsRecord,
        eni: &Interface,
        addr: &Addr,
    ) -> Result<(), Ec2Error> {
        let v6 = addr.host.parse::<std::net::Ipv6Addr>().is_ok();
        let (value, kind) = if v6 {
            (eni.ipv6, RrType::Aaaa)
        } else {
            (eni.private_ip, RrType::A)
        };
        let Some(value) = value else {
            return Err(refused(
                "ChangeResourceRecordSets",
                d,
                format!(
                    "{} has no private {} address to put in the record",
                    eni.eni_id,
                    if v6 { "IPv6" } else { "IPv4" }
                ),
            ));
        };
        let built = ResourceRecordSet::builder()
            .name(&d.name)
            .r#type(kind)
            .ttl(i64::from(d.ttl))
            .resource_records(
                ResourceRecord::builder()
                    .value(value.to_string())
                    .build()
                    .map_err(|e| refused("ChangeResourceRecordSets", d, e.to_string()))?,
            )
            .build()
            .and_then(|set| {
                Change::builder()
                    .action(ChangeAction::Upsert)
                    .resource_record_set(set)
                    .build()
            })
            .and_then(|change| ChangeBatch::builder().changes(change).build())
            .map_err(|e| refused("ChangeResourceRecordSets", d, e.to_string()))?;
        let r = self
            .route53()
            .change_resource_record_sets()
            .hosted_zone_id(d.zone_id.as_str())
            .change_batch(built)
            .send()
            .await;
        let out = checked("ChangeResourceRecordSets", || subject(d), r)?;
        tracing::debug!(record = %d.name, %value, change = ?out.change_info().map(|c| (c.id(), c.status().as_str())),
            "Route 53 record upserted");
        Ok(())
    }
}
